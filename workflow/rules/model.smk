ROUND = f"{RESULTS}/{{experiment}}/seed{{seed}}/round{{round}}"
ROUND_LOGS = f"{LOGS}/{{experiment}}/seed{{seed}}/round{{round}}"


rule train:
    input:
        manifest=rules.prepare_dataset.output.manifest,
        targets=f"{ROUND}/targets.h5",
    output:
        model=f"{ROUND}/model.pt",
    log:
        f"{ROUND_LOGS}/train.log",
    benchmark:
        f"{ROUND}/benchmarks/train.tsv"
    conda:
        CONDA_ENV
    threads: 2
    params:
        model=config["model"]["name"],
        train=config["train"],
        seed=lambda w: int(w.seed),
    script:
        "../scripts/train.py"


rule evaluate:
    input:
        manifest=rules.prepare_dataset.output.manifest,
        model=rules.train.output.model,
    output:
        metrics=f"{ROUND}/metrics.json",
    log:
        f"{ROUND_LOGS}/evaluate.log",
    conda:
        CONDA_ENV
    threads: 2
    params:
        batch_size=config["infer"]["batch_size"],
    script:
        "../scripts/evaluate.py"


rule infer:
    input:
        manifest=rules.prepare_dataset.output.manifest,
        model=rules.train.output.model,
    output:
        probs=f"{ROUND}/probs_shard{{shard}}.h5",
    log:
        f"{ROUND_LOGS}/infer_shard{{shard}}.log",
    benchmark:
        f"{ROUND}/benchmarks/infer_shard{{shard}}.tsv"
    conda:
        CONDA_ENV
    threads: 2
    params:
        batch_size=config["infer"]["batch_size"],
        shards=len(SHARDS),
    script:
        "../scripts/infer.py"
