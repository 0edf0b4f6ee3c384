from adaspx.pipeline import annotate, log_to

i, o, p = snakemake.input, snakemake.output, snakemake.params
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
        sieve=p.sieve,
        min_pixels=p.min_pixels,
        sieve_method=p.sieve_method,
        disagree_threshold=p.disagree_threshold,
        freeze_sieve=p.freeze,
        prev_targets_h5=i.prev_targets or None,
        click_cost=p.click_cost,
        config={
            "sieve": p.sieve,
            "min_pixels": p.min_pixels,
            "method": p.sieve_method,
            "disagree_threshold": p.disagree_threshold,
            "freeze": p.freeze,
            "click_cost": p.click_cost,
        },
        **p.attrs,
    )
