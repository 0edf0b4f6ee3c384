from adaspx.pipeline import log_to, summarize

with log_to(snakemake.log[0]):
    summarize(snakemake.params.entries, snakemake.output.summary, snakemake.output.curves)
