from adaspx.pipeline import evaluate, log_to

with log_to(snakemake.log[0]):
    evaluate(
        snakemake.input.manifest,
        snakemake.input.model,
        snakemake.output.metrics,
        batch_size=snakemake.config["infer"]["batch_size"],
        threads=snakemake.threads,
        **snakemake.params.provenance,
    )
