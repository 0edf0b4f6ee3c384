from adaspx.pipeline import annotate, log_to

i, o = snakemake.input, snakemake.output
params = dict(snakemake.params.items())
attrs = params.pop("attrs")
params.update(params.pop("sieving"))
with log_to(snakemake.log[0]):
    annotate(
        i.manifest,
        i.selection,
        list(i.regions),
        i.prev_answers_csv or None,
        i.prev_answers_h5 or None,
        list(i.probs),
        list(i.base),
        answers_csv=o.answers_csv,
        answers_h5=o.answers_h5,
        targets_h5=o.targets,
        stats_json=o.stats,
        prev_targets_h5=i.prev_targets or None,
        threads=snakemake.threads,
        config=params,
        **params,
        **attrs,
    )
