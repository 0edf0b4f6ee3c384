# Config access, paths and input functions. Rule files stay declarative.

import json
import os
from pathlib import Path
from types import SimpleNamespace

from snakemake.exceptions import WorkflowError

from adaspx.acquisition import STRATEGIES
from adaspx.datasets import DatasetError, source_files
from adaspx.fidelity import conflicts, explicit_keys, resolve
from adaspx.synthetic import SUMMARY, check_generated_root

# fidelity: official sets the reference's value of every key the user's config leaves out: the keys of the
# --configfile files and --config (or, without a --configfile, of config/config.yaml) are the user's.
USER_KEYS = explicit_keys(workflow.config_settings.overwrite_config)
if not workflow.config_settings.configfiles:
    USER_KEYS |= explicit_keys(RAW_CONFIG)
for line in conflicts(config):
    raise WorkflowError(line)
config.update(resolve(config, USER_KEYS))

DS = config["dataset"]
DATASET_ROOT = DS["root"]
RESULTS = f"results/{DS['name']}"
LOGS = f"logs/{DS['name']}"
SHARDS = list(range(config["pool"]["shards"]))
SEEDS = config["al"]["seeds"]
ROUNDS = config["al"]["rounds"]
# relative to workflow/rules/, where every rule is defined
CONDA_ENV = "../../environment.yml"
WARMUP = "warmup"  # round 0: random clicks on base superpixels, shared by all experiments of a seed
# Every round's folder; round 0 is the experiment `warmup` (see round_dir), so one pattern serves all rounds.
ROUND = f"{RESULTS}/{{experiment}}/seed{{seed}}/round{{round}}"
ROUND_LOGS = f"{LOGS}/{{experiment}}/seed{{seed}}/round{{round}}"
EXPERIMENTS = {e["name"]: e for e in config["experiments"]}
ORACLE_WARMUP = "warmup_oracle"  # with al.oracle_warmup: round 0 of the oracle experiments, on oracle regions
WARMUPS = {
    name: {
        "name": name,
        "regions": regions,
        "acquisition": "random",
        "sieve": False,
        "answer": "dominant",
    }
    for name, regions in ((WARMUP, "base"), (ORACLE_WARMUP, "oracle"))
}

if len(EXPERIMENTS) != len(config["experiments"]):
    names = [e["name"] for e in config["experiments"]]
    twice = sorted({n for n in names if names.count(n) > 1})
    raise WorkflowError(
        f"experiments: experiment names must be unique; {', '.join(twice)} appears more than once"
    )
if DS["pool_split"] == DS["val_split"]:
    raise WorkflowError(
        f"dataset.val_split: {DS['val_split']!r} is also dataset.pool_split: the model would be "
        "evaluated on the images it is trained on"
    )
if config["annotator"]["kind"] == "label_studio":
    if config["al"]["click_cost"] != "region" or any(
        e["answer"] != "dominant" for e in config["experiments"]
    ):
        raise WorkflowError(
            "annotator.kind: label_studio: people answer one class per region, one click each: every experiment "
            "needs answer: dominant, and al.click_cost: region"
        )
for e in config["experiments"]:
    if e["answer"] == "classes" and config["al"]["click_cost"] != "classes":
        raise WorkflowError(
            f"experiments: {e['name']} answers class sets (answer: classes), which cost one click per class: "
            "set al.click_cost: classes, so that every experiment is charged the same way"
        )
WEIGHTS = config["model"]["weights"]
if WEIGHTS not in (None, "torchvision") and not Path(WEIGHTS).is_file():
    raise WorkflowError(
        f"model.weights: {WEIGHTS} not found (expected null, torchvision or a checkpoint path)"
    )
LIST_FILES = [f for f in (DS["pool_list"], DS["val_list"]) if f]
for key in ("pool_list", "val_list"):
    if DS[key] and not Path(DS[key]).is_file():
        raise WorkflowError(f"dataset.{key}: {DS[key]} does not exist")
if DS["kind"] != "synthetic" and not Path(DATASET_ROOT).is_dir():
    raise WorkflowError(
        f"dataset.root: {DATASET_ROOT} does not exist or is not a directory"
    )
# A synthetic dataset is generated into its own folder; the rule's output is the summary written last, never the
# folder, so no run (not even `snakemake -F`) deletes a folder the generator did not create.
SYNTHETIC_SUMMARY = f"{DATASET_ROOT}/{SUMMARY}"
if DS["kind"] == "synthetic":
    try:
        check_generated_root(DATASET_ROOT)
    except ValueError as err:
        raise WorkflowError(f"dataset.root: {err}")
    DATASET_FILES = [SYNTHETIC_SUMMARY]
else:
    # every file of the pool and val splits: one edited, added or deleted reruns prepare_dataset and what follows
    try:
        DATASET_FILES = source_files(
            DS["kind"],
            DATASET_ROOT,
            [DS["pool_split"], DS["val_split"]],
            {
                DS["pool_split"]: DS["pool_list"],
                DS["val_split"]: DS["val_list"],
            },
        )
    except DatasetError as err:
        raise WorkflowError(f"dataset: {err}")


wildcard_constraints:
    experiment=r"[A-Za-z0-9][A-Za-z0-9_.-]*",
    seed=r"\d+",
    round=r"\d+",
    shard=r"\d+",


def experiment(name):
    return WARMUPS[name] if name in WARMUPS else EXPERIMENTS[name]


def warmup_of(exp):
    """The warm-up an experiment starts from: the shared one on base superpixels, or with al.oracle_warmup (the
    reference) one on oracle regions for the oracle experiments."""
    oracle = experiment(exp)["regions"] == "oracle"
    return ORACLE_WARMUP if oracle and config["al"]["oracle_warmup"] else WARMUP


def round_dir(exp, seed, r):
    """Folder of round r of an experiment; round 0 is the warm-up of that seed it shares (warmup_of)."""
    r = int(r)
    if r == 0:
        return f"{RESULTS}/{warmup_of(exp)}/seed{seed}/round0"
    return f"{RESULTS}/{exp}/seed{seed}/round{r}"


def shards(folder, name):
    """One file per pool shard: <folder>/<name>_shard<k>.h5."""
    return [f"{folder}/{name}_shard{k}.h5" for k in SHARDS]


BASE_SHARDS = shards(f"{RESULTS}/superpixels", "base")
ORACLE_SHARDS = shards(f"{RESULTS}/superpixels", "oracle")


def region_maps(w):
    """The region maps that round w.round selects from: base, oracle, or the experiment's adaptive
    regions merged with the previous round's model."""
    exp = experiment(w.experiment)
    if (
        exp["regions"] == "oracle"
    ):  # in round 0 only the oracle warm-up (al.oracle_warmup) is an oracle experiment
        return ORACLE_SHARDS
    if int(w.round) == 0 or exp["regions"] == "base":
        return BASE_SHARDS
    # Round-0 regions come from the warm-up model alone: merged once per seed beside the warm-up.
    return shards(round_dir(w.experiment, w.seed, int(w.round) - 1), "regions")


def previous(w, name):
    """A file of the previous round, or [] in round 0."""
    r = int(w.round)
    return [] if r == 0 else f"{round_dir(w.experiment, w.seed, r - 1)}/{name}"


def previous_probs(w):
    r = int(w.round)
    return [] if r == 0 else shards(round_dir(w.experiment, w.seed, r - 1), "probs")


def acquire_probs(w):
    """Scores need region statistics: adaptive regions carry them (merge_superpixels), base and oracle regions
    are scored from the previous round's probabilities. A strategy that scores without a model (random) uses one
    only to estimate class costs (al.click_cost: classes) and for class quotas (al.max_per_class), as every other
    strategy does.
    """
    exp = experiment(w.experiment)
    model_free = (
        config["al"]["click_cost"] == "region" and config["al"]["max_per_class"] is None
    )
    scores_need_model = STRATEGIES[exp["acquisition"]].uses_model
    if (not scores_need_model and model_free) or exp["regions"] == "adaptive":
        return []
    return previous_probs(w)


def merge_statistics(w):
    """Optional region statistics the merge stores for the experiments that read its regions (round 0's regions
    serve every adaptive experiment of the seed): the features their strategies need (adaspx.acquisition).
    """
    users = (
        EXPERIMENTS.values() if w.experiment == WARMUP else [experiment(w.experiment)]
    )
    strategies = {e["acquisition"] for e in users if e["regions"] == "adaptive"}
    return {
        "features": sorted({f for s in strategies for f in STRATEGIES[s].features}),
        "grid": config["al"]["statistics"],
    }


def sieve_probs(w):
    return previous_probs(w) if experiment(w.experiment)["sieve"] else []


def sieve_settings(w):
    """The sieve.* settings of an experiment that sieves; for one that does not, only that fact, so that changing
    them reruns nothing of it."""
    if not experiment(w.experiment)["sieve"]:
        return {"sieve": False}
    s = config["sieve"]
    return {
        "sieve": True,
        "min_pixels": s["min_pixels"],
        "sieve_method": s["method"],
        "disagree_threshold": s["disagree_threshold"],
        "freeze_sieve": s["freeze"],
    }


def answer_settings(w):
    """What the annotator answers for an experiment; the annotator.* settings only for class sets, so that
    changing them reruns nothing of an experiment answering dominant labels. The shared warm-up answers dominant
    labels: every experiment of a seed starts from the same answers."""
    if experiment(w.experiment)["answer"] != "classes":
        return {"answer": "dominant"}
    return {
        "answer": "classes",
        "trim": config["annotator"]["trim"],
        "void": config["annotator"]["void"],
    }


PEOPLE = config["annotator"]["kind"] == "label_studio"


def people_answers(w):
    """people.csv of the round (rule ask_people) when people answer; the simulator needs none."""
    return f"{round_dir(w.experiment, w.seed, w.round)}/people.csv" if PEOPLE else []


def project_key(exp, seed, r):
    """A round's key, the description of its Label Studio project: the round's folder made absolute, so that two
    workflows on one server never share a project."""
    return f"adaspx {os.path.abspath(round_dir(exp, seed, r))}"


def label_studio_projects(w):
    """The round's project key and those of the rounds before it, read again for answers changed since they were
    recorded. (annotator.label_studio.*, where the server is, changes no answer: ask_people reads it from the
    config, so that moving the server reruns nothing.)"""
    return {
        "project": project_key(w.experiment, w.seed, w.round),
        "earlier_projects": [
            project_key(w.experiment, w.seed, k) for k in range(int(w.round))
        ],
    }


def earlier_people(w):
    """people.csv of every round before w.round: what was recorded of each region (ask_people compares)."""
    return [
        f"{round_dir(w.experiment, w.seed, k)}/people.csv" for k in range(int(w.round))
    ]


def earlier_region_maps(w):
    """With people: the region maps each round before w.round selected from, as inputs asked<k>, for answers
    corrected in Label Studio after they were recorded."""
    if not PEOPLE:
        return {}
    out = {}
    for k in range(int(w.round)):
        name = warmup_of(w.experiment) if k == 0 else w.experiment
        out[f"asked{k}"] = region_maps(
            SimpleNamespace(experiment=name, seed=w.seed, round=k)
        )
    return out


def target_settings(w):
    """targets.overlap for rounds >= 1 (round 0 answers a fresh pool: nothing overlaps, so the key cannot change
    it and reruns nothing of the shared warm-up)."""
    return {} if int(w.round) == 0 else {"overlap": config["targets"]["overlap"]}


def class_set_training(w):
    """train.set_loss and train.pseudo_labels, for the experiments answering class sets only."""
    if experiment(w.experiment)["answer"] != "classes":
        return {}
    t = config["train"]
    return {"set_loss": t["set_loss"], "pseudo_labels": t["pseudo_labels"]}


def result_settings(block, *neutral):
    """A config block without the keys that cannot change a job's outputs (how often training checkpoints, how
    many images inference runs at once): rule params are rerun triggers, so those keys are read by the scripts
    from the config instead."""
    return {k: v for k, v in config[block].items() if k not in neutral}


def budget(w):
    return config["al"]["warmup_clicks" if int(w.round) == 0 else "clicks_per_round"]


def merge_probs(w):
    return f"{round_dir(w.experiment, w.seed, w.round)}/probs_shard{w.shard}.h5"


def intermediate(path):
    """Probabilities are deleted once every job that reads them has run, unless infer.keep."""
    return path if config["infer"]["keep"] else temp(path)


def provenance(w):
    """What every round rule passes to its stage, which records it in what it writes."""
    return {"experiment": w.experiment, "seed": int(w.seed), "round": int(w.round)}


def summary_entries():
    entries = []
    for name in EXPERIMENTS:
        for seed in SEEDS:
            for r in range(ROUNDS + 1):
                d = round_dir(name, seed, r)
                entries.append(
                    {
                        "experiment": name,
                        "seed": seed,
                        "round": r,
                        "metrics": f"{d}/metrics.json",
                        "stats": f"{d}/annotation_stats.json",
                    }
                )
    return entries


def gallery_rounds(w):
    """Every round of an experiment and seed, by its targets.h5 (the last file a round's annotate writes)."""
    return [
        f"{round_dir(w.experiment, w.seed, r)}/targets.h5" for r in range(ROUNDS + 1)
    ]


def gallery_dirs():
    """The gallery folder of every experiment and seed; none when report.gallery_images is 0."""
    if not config["report"]["gallery_images"]:
        return []
    return [f"{RESULTS}/gallery/{e}/seed{s}" for e in EXPERIMENTS for s in SEEDS]


def frozen_targets(w):
    """With sieve.freeze, the previous round's targets: earlier answers keep the sieving of their own round."""
    sieving = experiment(w.experiment)["sieve"]
    freeze = config["sieve"]["freeze"]
    return previous(w, "targets.h5") if sieving and freeze else []
