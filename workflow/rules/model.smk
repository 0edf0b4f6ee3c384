# One thread per model job: CPU results are then bit-identical on any machine (torch's CPU kernels are not
# reduction-order stable across thread counts) and the default small model gains little from more threads.
# For a large model on a many-core CPU, raise it with `--set-threads train=16` (results then depend on it).
# GPUs are not requested here: a cluster profile sets resources (e.g. slurm_extra/gres) for train, evaluate and
# infer; the code uses CUDA whenever it is visible.
#
# infer.batch_size and train.checkpoint_every are read by the scripts from the config, not passed as params: in eval
# mode every image is computed on its own (no batch statistics), and checkpoints resume bit-identically, so neither
# can change an output, and changing them reruns nothing.
#
# train writes its in-progress state to {ROUND}/train_checkpoint.pt every train.checkpoint_every iterations. It
# is deliberately not an output (Snakemake deletes the outputs of failed jobs): rerunning the failed job resumes
# from it, and train deletes it after writing model.pt.


# train.init: previous fine-tunes the previous round's model (an input then; none in round 0); scratch (default,
# the reference code) retrains from model.weights every round.
FINE_TUNE = config["train"]["init"] == "previous"


rule train:
    input:
        manifest=rules.prepare_dataset.output.manifest,
        targets=f"{ROUND}/targets.h5",
        previous_model=lambda w: previous(w, "model.pt") if FINE_TUNE else [],
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
        weights=config["model"]["weights"],
        train=result_settings("train", "checkpoint_every", "set_loss", "pseudo_labels"),
        class_sets=class_set_training,
        provenance=provenance,
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
    benchmark:
        f"{ROUND}/benchmarks/evaluate.tsv"
    conda:
        CONDA_ENV
    threads: 1
    params:
        provenance=provenance,
    script:
        "../scripts/evaluate.py"


rule infer:
    input:
        manifest=rules.prepare_dataset.output.manifest,
        model=rules.train.output.model,
    output:
        probs=intermediate(f"{ROUND}/probs_shard{{shard}}.h5"),
    log:
        f"{ROUND_LOGS}/infer_shard{{shard}}.log",
    benchmark:
        f"{ROUND}/benchmarks/infer_shard{{shard}}.tsv"
    conda:
        CONDA_ENV
    threads: 1
    params:
        stride=config["infer"]["stride"],
        half_resolution=config["infer"]["half_resolution"],
        dtype=config["infer"]["dtype"],
        shards=len(SHARDS),
        provenance=provenance,
    script:
        "../scripts/infer.py"
