from adaspx.pipeline import log_to
from adaspx.pipeline.gallery import gallery

with log_to(snakemake.log[0]):
    gallery(snakemake.input.manifest, snakemake.params.folders, snakemake.output[0], images=snakemake.params.images)
