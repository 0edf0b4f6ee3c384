rule acquire:
    input:
        manifest=rules.prepare_dataset.output.manifest,
        regions=region_maps,
        probs=acquire_probs,
        answers=lambda w: previous(w, "answers.h5"),
    output:
        selection=f"{ROUND}/selection.csv",
    log:
        f"{ROUND_LOGS}/acquire.log",
    benchmark:
        f"{ROUND}/benchmarks/acquire.tsv"
    conda:
        CONDA_ENV
    params:
        strategy=lambda w: experiment(w.experiment)["acquisition"],
        budget=budget,
        exclude_labeled=config["al"]["exclude_labeled"],
        size_exponent=config["al"]["size_exponent"],
        click_cost=config["al"]["click_cost"],
        max_per_image=config["al"]["max_per_image"],
        max_per_class=config["al"]["max_per_class"],
        statistics=config["al"]["statistics"],
        provenance=provenance,
    script:
        "../scripts/acquire.py"
