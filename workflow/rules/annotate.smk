# With annotator.kind: label_studio, people answer the round's queries in Label Studio; the job stops, writing
# nothing, while regions are open, and running the workflow again continues (README, "Annotating with people").
rule ask_people:
    input:
        manifest=rules.prepare_dataset.output.manifest,
        selection=rules.acquire.output.selection,
        regions=region_maps,
        earlier=earlier_people,
    output:
        people=f"{ROUND}/people.csv",
    log:
        f"{ROUND_LOGS}/ask_people.log",
    localrule: True
    conda:
        CONDA_ENV
    params:
        projects=label_studio_projects,
        provenance=provenance,
    script:
        "../scripts/ask_people.py"


rule annotate:
    input:
        unpack(earlier_region_maps),
        manifest=rules.prepare_dataset.output.manifest,
        selection=rules.acquire.output.selection,
        regions=region_maps,
        prev_answers_csv=lambda w: previous(w, "answers.csv"),
        prev_answers_h5=lambda w: previous(w, "answers.h5"),
        prev_targets=frozen_targets,
        people=people_answers,
        probs=sieve_probs,
        base=BASE_SHARDS,
    output:
        answers_csv=f"{ROUND}/answers.csv",
        answers_h5=f"{ROUND}/answers.h5",
        targets=f"{ROUND}/targets.h5",
        stats=f"{ROUND}/annotation_stats.json",
    log:
        f"{ROUND_LOGS}/annotate.log",
    benchmark:
        f"{ROUND}/benchmarks/annotate.tsv"
    conda:
        CONDA_ENV
    threads: 2
    params:
        sieving=sieve_settings,
        click_cost=config["al"]["click_cost"],
        overshoot=config["al"]["overshoot"],
        answer=answer_settings,
        targets=target_settings,
        budget=budget,
        provenance=provenance,
    script:
        "../scripts/annotate.py"
