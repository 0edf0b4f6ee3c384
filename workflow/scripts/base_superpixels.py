from adaspx.pipeline import base_superpixels, log_to

with log_to(snakemake.log[0]):
    base_superpixels(
        snakemake.input.manifest,
        snakemake.output[0],
        method=snakemake.params.method,
        params=snakemake.params.method_params,
        shards=snakemake.params.shards,
        shard=int(snakemake.wildcards.shard),
        config={"method": snakemake.params.method, snakemake.params.method: snakemake.params.method_params},
    )
