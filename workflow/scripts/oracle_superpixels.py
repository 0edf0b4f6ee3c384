from adaspx.pipeline import log_to, oracle_superpixels

with log_to(snakemake.log[0]):
    oracle_superpixels(
        snakemake.input.manifest,
        snakemake.output[0],
        method=snakemake.params.method,
        shards=snakemake.params.shards,
        shard=int(snakemake.wildcards.shard),
        config={"oracle": snakemake.params.method},
    )
