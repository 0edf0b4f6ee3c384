from adaspx.pipeline import log_to, prepare_dataset

with log_to(snakemake.log[0]):
    prepare_dataset(snakemake.params.kind, snakemake.input.root, snakemake.params.splits, snakemake.output.manifest)
