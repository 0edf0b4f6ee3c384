from adaspx.pipeline import log_to
from adaspx.pipeline.usage import usage

with log_to(snakemake.log[0]):
    usage(snakemake.params.results, snakemake.output.table, snakemake.output.plot)
