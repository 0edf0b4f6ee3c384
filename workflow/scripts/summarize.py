from adaspx.pipeline import log_to, summarize

o = snakemake.output
with log_to(snakemake.log[0]):
    summarize(snakemake.params.entries, o.summary, o.curves, per_class_csv=o.per_class, comparisons_csv=o.comparisons)
