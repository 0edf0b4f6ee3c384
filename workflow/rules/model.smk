ROUND = f"{RESULTS}/{{experiment}}/seed{{seed}}/round{{round}}"
ROUND_LOGS = f"{LOGS}/{{experiment}}/seed{{seed}}/round{{round}}"
# One thread per model job: CPU results are then bit-identical on any machine (torch's CPU kernels are not
# reduction-order stable across thread counts) and the default small model gains little from more threads.
# For a large model on a many-core CPU, raise it with `--set-threads train=16` (results then depend on it).


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
    threads: 1
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
    threads: 1
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
    threads: 1
    params:
        batch_size=config["infer"]["batch_size"],
        shards=len(SHARDS),
    script:
        "../scripts/infer.py"
