from adaspx.pipeline import log_to, train

with log_to(snakemake.log[0]):
    train(
        snakemake.input.manifest,
        snakemake.input.targets,
        snakemake.output.model,
        model=snakemake.params.model,
        params={**snakemake.params.train, "checkpoint_every": snakemake.config["train"]["checkpoint_every"]},
        **snakemake.params.provenance,
        threads=snakemake.threads,
        weights=snakemake.params.weights,
        previous_model=snakemake.input.previous_model or None,
        **snakemake.params.class_sets,
    )
