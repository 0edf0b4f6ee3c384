from adaspx.pipeline import log_to, synthesize_dataset

with log_to(snakemake.log[0]):
    synthesize_dataset(snakemake.params.root, snakemake.params.synthetic)
