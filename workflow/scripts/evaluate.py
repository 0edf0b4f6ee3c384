from adaspx.pipeline import evaluate, log_to

w = snakemake.wildcards
with log_to(snakemake.log[0]):
    evaluate(
        snakemake.input.manifest,
        snakemake.input.model,
        snakemake.output.metrics,
        batch_size=snakemake.config["infer"]["batch_size"],
        threads=snakemake.threads,
        experiment=w.experiment,
        seed=int(w.seed),
        round=int(w.round),
    )
