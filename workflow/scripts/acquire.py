from adaspx.pipeline import acquire, log_to

i, p = snakemake.input, snakemake.params
with log_to(snakemake.log[0]):
    acquire(
        i.manifest,
        list(i.regions),
        list(i.probs),
        i.answers or None,
        snakemake.output.selection,
        strategy=p.strategy,
        budget=p.budget,
        exclude_labeled=p.exclude_labeled,
        size_exponent=p.size_exponent,
        click_cost=p.click_cost,
        max_per_image=p.max_per_image,
        max_per_class=p.max_per_class,
        statistics=p.statistics,
        **p.provenance,
    )
