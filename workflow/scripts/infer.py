from adaspx.pipeline import infer, log_to

with log_to(snakemake.log[0]):
    infer(
        snakemake.input.manifest,
        snakemake.input.model,
        snakemake.output.probs,
        shards=snakemake.params.shards,
        shard=int(snakemake.wildcards.shard),
        batch_size=snakemake.config["infer"]["batch_size"],
        stride=snakemake.params.stride,
        half_resolution=snakemake.params.half_resolution,
        dtype=snakemake.params.dtype,
        threads=snakemake.threads,
        **snakemake.params.provenance,
    )
