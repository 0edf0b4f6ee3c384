from adaspx.pipeline import infer, log_to

w = snakemake.wildcards
with log_to(snakemake.log[0]):
    infer(
        snakemake.input.manifest,
        snakemake.input.model,
        snakemake.output.probs,
        shards=snakemake.params.shards,
        shard=int(w.shard),
        batch_size=snakemake.config["infer"]["batch_size"],
        stride=snakemake.params.stride,
        threads=snakemake.threads,
        experiment=w.experiment,
        seed=int(w.seed),
        round=int(w.round),
    )
