from adaspx.pipeline import acquire, log_to

p = snakemake.params
with log_to(snakemake.log[0]):
    acquire(
        snakemake.input.manifest,
        list(snakemake.input.regions),
        list(snakemake.input.probs),
        snakemake.input.answers or None,
        snakemake.output.selection,
        strategy=p.acquisition,
        budget=p.budget,
        seed=p.seed,
        round=p.round,
        exclude_labeled=p.exclude_labeled,
        size_exponent=p.size_exponent,
        click_cost=p.click_cost,
        max_per_image=p.max_per_image,
        max_per_class=p.max_per_class,
    )
