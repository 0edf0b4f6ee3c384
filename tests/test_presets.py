"""The dataset presets: a user who has the data changes only dataset.root."""

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from test_datasets import make_cityscapes, make_voc
from workflow_helpers import planned_rules, run_snakemake

ROOT = Path(__file__).resolve().parents[1]


def expected_jobs(config: dict) -> dict[str, int]:
    """The jobs a fresh run of ``config`` plans, counted from the config alone.

    Every seed has one warm-up round (round 0, shared by the experiments) and every experiment rounds 1..R of it,
    each round acquiring, annotating, training and evaluating once; the report adds one gallery job per experiment
    and seed and one usage job. The probabilities of a round (one inference
    per pool shard) are needed only by the next round: to merge adaptive regions, to score base or oracle regions
    with a model-based acquisition (random too, with class costs or quotas), or to sieve; so the last round infers
    nothing. Adaptive regions of a round are merged per shard from that round's probabilities; round 0's once per
    seed, shared by the adaptive experiments.
    """
    seeds, rounds, shards = len(config["al"]["seeds"]), config["al"]["rounds"], config["pool"]["shards"]
    experiments = config["experiments"]
    adaptive = [e for e in experiments if e["regions"] == "adaptive"]

    al = config["al"]
    model_costs = al.get("click_cost", "region") == "classes" or al.get("max_per_class") is not None

    def needs_probs(e):  # random selection too, for its click estimates or class quotas
        model_scored = (e["acquisition"] != "random" or model_costs) and e["regions"] != "adaptive"
        return model_scored or e["regions"] == "adaptive" or e.get("sieve", False)

    rounds_run = seeds * (1 + len(experiments) * rounds)
    inferring = seeds * (any(needs_probs(e) for e in experiments) + sum(map(needs_probs, experiments)) * (rounds - 1))
    merging = seeds * (1 + len(adaptive) * (rounds - 1)) if adaptive else 0
    jobs = {
        "prepare_dataset": 1,
        "base_superpixels": shards,
        "oracle_superpixels": shards if any(e["regions"] == "oracle" for e in experiments) else 0,
        "acquire": rounds_run,
        "annotate": rounds_run,
        "train": rounds_run,
        "evaluate": rounds_run,
        "infer": inferring * shards,
        "merge_superpixels": merging * shards,
        "summarize": 1,
        "usage": 1,
        # one picture folder per experiment and seed, unless report.gallery_images is 0
        "gallery": len(experiments) * seeds if config.get("report", {}).get("gallery_images", 2) else 0,
        "all": 1,
    }
    return {rule: n for rule, n in jobs.items() if n}


@pytest.mark.parametrize(
    "preset, make, splits",
    [
        ("cityscapes", make_cityscapes, ("train", "val")),
        ("cityscapes_official", make_cityscapes, ("train", "val")),
        ("voc", make_voc, ("train", "val")),
    ],
)
def test_preset_prepares_a_real_layout_changing_only_the_root(tmp_path, preset, make, splits):
    data = tmp_path / "data"
    if preset.startswith("cityscapes"):
        for split in splits:
            make(data, split=split)
    else:
        make(data)
        sets = data / "VOC2012/ImageSets/Segmentation"
        (sets / "val.txt").write_text("2007_000032\n")
    config = yaml.safe_load((ROOT / "config" / f"{preset}.yaml").read_text())
    config["dataset"]["root"] = str(data)
    proc = run_snakemake(tmp_path / "run", config, "-n")
    planned = planned_rules(proc.stdout + proc.stderr)
    expected = expected_jobs(config)
    assert planned == expected
    # the presets' 3 seeds x (warm-up + 4 experiments x 5 rounds), 2 of them on adaptive regions
    assert expected["train"] == 3 * (1 + 4 * 5)
    assert expected["merge_superpixels"] == 3 * (1 + 2 * 4) * config["pool"]["shards"]
    run_snakemake(tmp_path / "run", None, f"results/{preset}/manifest.json")
    manifest = json.loads((tmp_path / "run" / f"results/{preset}/manifest.json").read_text())
    assert manifest["num_classes"] == {"cityscapes": 19, "cityscapes_official": 19, "voc": 21}[preset]
    assert manifest["splits"][config["dataset"]["val_split"]]["ids"]
    assert np.sum(manifest["splits"]["train"]["class_pixels"]) > 0


def test_preset_with_wrong_root_names_it(tmp_path):
    config = yaml.safe_load((ROOT / "config" / "cityscapes.yaml").read_text())
    proc = run_snakemake(tmp_path, config, "-n", check=False)
    assert proc.returncode != 0 and "dataset.root: /path/to/cityscapes does not exist" in proc.stdout + proc.stderr
