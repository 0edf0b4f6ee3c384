from adaspx.pipeline import log_to, prepare_dataset

p = snakemake.params
with log_to(snakemake.log[0]):
    prepare_dataset(p.kind, p.root, p.splits, snakemake.output.manifest, list_files=p.list_files)
