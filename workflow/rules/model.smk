ROUND = f"{RESULTS}/{{experiment}}/seed{{seed}}/round{{round}}"
ROUND_LOGS = f"{LOGS}/{{experiment}}/seed{{seed}}/round{{round}}"


rule train:
    input:
        manifest=rules.prepare_dataset.output.manifest,
        targets=f"{ROUND}/targets.h5",
    output:
        model=f"{ROUND}/model.pt",
    params:
        model=config["model"]["name"],
        train=config["train"],
        seed=lambda w: int(w.seed),
    threads: 2
    log:
        f"{ROUND_LOGS}/train.log",
    benchmark:
        f"{ROUND}/benchmarks/train.tsv"
    script:
        "../scripts/train.py"


rule evaluate:
    input:
        manifest=rules.prepare_dataset.output.manifest,
        model=rules.train.output.model,
    output:
        metrics=f"{ROUND}/metrics.json",
    params:
        batch_size=config["infer"]["batch_size"],
    threads: 2
    log:
        f"{ROUND_LOGS}/evaluate.log",
    script:
        "../scripts/evaluate.py"


rule infer:
    input:
        manifest=rules.prepare_dataset.output.manifest,
        model=rules.train.output.model,
    output:
        probs=f"{ROUND}/probs_shard{{shard}}.h5",
    params:
        batch_size=config["infer"]["batch_size"],
        shards=len(SHARDS),
    threads: 2
    log:
        f"{ROUND_LOGS}/infer_shard{{shard}}.log",
    benchmark:
        f"{ROUND}/benchmarks/infer_shard{{shard}}.tsv"
    script:
        "../scripts/infer.py"
