from adaspx.pipeline import annotate, log_to

i, o = snakemake.input, snakemake.output
p = snakemake.params
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
        people_csv=i.people or None,
        earlier_regions={int(k[len("asked") :]): list(v) for k, v in i.items() if k.startswith("asked")},
        threads=snakemake.threads,
        click_cost=p.click_cost,
        budget=p.budget,
        overshoot=p.overshoot,
        **p.sieving,
        **p.answer,
        **p.targets,
        **p.provenance,
    )
