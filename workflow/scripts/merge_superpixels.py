from adaspx.pipeline import log_to, merge_superpixels

with log_to(snakemake.log[0]):
    merge_superpixels(
        snakemake.input.base,
        snakemake.input.probs,
        snakemake.output.regions,
        eps=snakemake.params.merge["eps"],
        max_visited=snakemake.params.merge["max_visited"],
        loop=snakemake.params.merge["loop"],
        threads=snakemake.threads,
        **snakemake.params.statistics,
        **snakemake.params.provenance,
    )
