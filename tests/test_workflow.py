"""End-to-end: the real workflow through Snakemake on a tiny synthetic config, checking real artifacts."""

import copy
import json
import re
import time

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image
from workflow_helpers import TINY_CONFIG, planned_rules, run_snakemake

from adaspx.artifacts import AnswerMaps

pytestmark = pytest.mark.e2e

R = "results/tiny"


def test_summary_and_curves(tiny_run):
    summary = pd.read_csv(tiny_run / R / "summary.csv")
    assert list(summary.columns[:6]) == ["experiment", "seed", "round", "clicks", "labeled_pixels", "miou"]
    assert len(summary) == 3 * 3  # 3 experiments x rounds 0..2
    assert summary["miou"].between(0, 1).all()
    for (name, seed), g in summary.groupby(["experiment", "seed"]):
        g = g.sort_values("round")
        assert g["clicks"].tolist() == [12, 22, 32]
        # each round's annotation stats; round 0 is the shared warm-up
        folders = [f"warmup/seed{seed}/round0"] + [f"{name}/seed{seed}/round{r}" for r in g["round"].iloc[1:]]
        stats = [json.loads((tiny_run / R / d / "annotation_stats.json").read_text()) for d in folders]
        assert g["labeled_pixels"].tolist() == [s["labeled_pixels"] for s in stats]
        # answers only accumulate, so the pixels labeled before sieving never decrease; sieving (which reconsiders
        # every answer with each round's model) may drop pixels, so only the count before it is monotonic
        before = pd.Series([s["labeled_pixels_before_sieve"] for s in stats])
        assert before.is_monotonic_increasing and before.iloc[-1] > before.iloc[0]
        if name == "cb_adaptive_sieve":
            assert (g["labeled_pixels"].iloc[1:].to_numpy() <= before.iloc[1:].to_numpy()).all()
        else:
            assert g["labeled_pixels"].tolist() == before.tolist()  # nothing sieved
    # the warm-up (round 0) is shared: same clicks, pixels and model for every experiment
    assert summary[summary["round"] == 0][["labeled_pixels", "miou"]].nunique().max() == 1
    assert summary["correct_pixels_kept"].between(0, 1).all()
    per_class = pd.read_csv(tiny_run / R / "summary_per_class.csv")
    manifest = json.loads((tiny_run / R / "manifest.json").read_text())
    assert len(per_class) == len(summary) * manifest["num_classes"]
    assert per_class["class"].head(manifest["num_classes"]).tolist() == manifest["classes"]
    # per-class labeled pixels add up to the round's labeled pixels
    totals = per_class.groupby(["experiment", "seed", "round"])["labeled_pixels"].sum()
    merged = summary.set_index(["experiment", "seed", "round"])["labeled_pixels"]
    assert totals.sort_index().tolist() == merged.sort_index().tolist()
    png = (tiny_run / R / "learning_curves.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 5000


def test_superpixel_and_probability_artifacts(tiny_run):
    manifest = json.loads((tiny_run / R / "manifest.json").read_text())
    pool = manifest["splits"]["train"]["ids"]
    seen = []
    for k in range(2):
        with h5py.File(tiny_run / R / f"superpixels/base_shard{k}.h5") as f:
            assert f.attrs["schema"] == "adaspx.superpixels/1"
            assert json.loads(f.attrs["config"])["method"] == "slic"
            for name, ds in f["labels"].items():
                assert ds.shape == (48, 64) and ds.dtype == np.uint16  # ids fit: stored as uint16
                seen.append(name)
        with h5py.File(tiny_run / R / f"warmup/seed0/round0/probs_shard{k}.h5") as f:
            assert f.attrs["schema"] == "adaspx.probs/1"
            for ds in f["probs"].values():
                assert ds.dtype == np.float16 and ds.shape == (manifest["num_classes"], 48, 64)
                np.testing.assert_allclose(ds[()].astype(np.float32).sum(axis=0), 1, atol=1e-2)
    assert seen == pool  # shards partition the pool in list order


def test_adaptive_regions_are_unions_of_base_superpixels(tiny_run):
    d = tiny_run / R / "cb_adaptive_sieve/seed0/round1"
    with h5py.File(d / "regions_shard0.h5") as f, h5py.File(tiny_run / R / "superpixels/base_shard0.h5") as b:
        assert f.attrs["schema"] == "adaspx.regions/1" and f.attrs["round"] == 1
        assert set(f["stats"].keys()) >= {"image", "region", "size", "uncertainty", "predicted", "classes"}
        assert set(f["image_stats"].keys()) >= {"image", "start", "count", "class_pixels"}
        for name in f["labels"]:
            merged, base = f["labels"][name][()], b["labels"][name][()]
            assert merged.shape == base.shape
            # every base superpixel lies inside one merged region, which keeps one of its members' ids
            pairs = np.unique(np.stack([base.ravel(), merged.ravel()]), axis=1)
            assert len(np.unique(pairs[0])) == pairs.shape[1]
            assert np.isin(np.unique(merged), np.unique(base)).all()
            assert len(np.unique(merged)) <= len(np.unique(base))


def test_selection_answers_targets(tiny_run):
    base = tiny_run / R / "cb_oracle/seed0"
    sel = pd.read_csv(base / "round2/selection.csv")
    columns = ["round", "rank", "image", "region", "score", "size", "clicks", "predicted", "uncertainty", "reserve"]
    assert list(sel.columns) == columns and (sel["round"] == 2).all()
    assert sel["clicks"].sum() == 10 and sel["score"].is_monotonic_decreasing and not sel["reserve"].any()
    a1 = pd.read_csv(base / "round1/answers.csv")
    a2 = pd.read_csv(base / "round2/answers.csv")
    assert list(a2.columns) == [
        "round",
        "image",
        "region",
        "label",
        "pixels",
        "clicks",
        "classes",
        "annotator",
        "time",
        "asked",
    ]
    assert (a2["classes"] == a2["label"]).all()  # a dominant answer's class set is its label
    # the simulator answered each of its own round's queries, at no recorded time
    assert (a2["annotator"] == "simulated").all() and a2["time"].isna().all() and (a2["asked"] == a2["round"]).all()
    pd.testing.assert_frame_equal(a2.iloc[: len(a1)], a1)  # answers are append-only
    assert (a2[len(a1) :]["round"] == 2).all()
    stats = json.loads((base / "round2/annotation_stats.json").read_text())
    assert stats["clicks"] == 32 and stats["clicks_round"] == 10
    # oracle regions are pure: every pixel answered after the (base-superpixel) warm-up is correct
    later = a2.index[a2["round"] >= 1].to_numpy()
    with AnswerMaps(base / "round2/answers.h5") as amaps:
        for image in a2.loc[later, "image"].unique():
            local, rows = amaps.read(image)
            amap = np.r_[-1, rows][local]  # the row of each pixel's answer, -1: none
            gt = np.asarray(Image.open(tiny_run / "resources/datasets/tiny/labels" / f"{image}.png"))
            mask = np.isin(amap, later)
            assert mask.any()
            np.testing.assert_array_equal(gt[mask], a2["label"].to_numpy()[amap[mask]])
    with h5py.File(base / "round2/targets.h5") as t:
        labeled = sum(int((ds[()] != 255).sum()) for ds in t["labels"].values())
        values = np.unique(np.concatenate([np.unique(ds[()]) for ds in t["labels"].values()]))
    assert labeled == stats["labeled_pixels"]
    num_classes = json.loads((tiny_run / R / "manifest.json").read_text())["num_classes"]
    assert set(values.tolist()) <= set(range(num_classes)) | {255}


def test_sieving_statistics(tiny_run):
    stats = json.loads((tiny_run / R / "cb_adaptive_sieve/seed0/round2/annotation_stats.json").read_text())
    assert stats["sieve"] and stats["sieve_min_pixels"] == 20
    assert stats["labeled_pixels"] <= stats["labeled_pixels_before_sieve"]
    assert 0 < stats["correct_pixels_kept"] <= 1
    metrics = json.loads((tiny_run / R / "cb_adaptive_sieve/seed0/round2/metrics.json").read_text())
    assert 0 <= metrics["miou"] <= 1 and len(metrics["iou"]) == len(metrics["classes"])


def test_second_run_does_nothing(tiny_run):
    proc = run_snakemake(tiny_run, None, "-n")
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_changing_merge_eps_reruns_only_merge_and_downstream(tiny_run):
    config = copy.deepcopy(TINY_CONFIG)
    config["merge"]["eps"] = 0.2
    workdir = tiny_run
    (workdir / "config_eps.yaml").write_text(__import__("yaml").safe_dump(config))
    proc = run_snakemake(workdir, None, "-n", "--configfile", str(workdir / "config_eps.yaml"))
    planned = planned_rules(proc.stdout + proc.stderr)
    assert planned.get("merge_superpixels") == 4  # rounds 0 and 1 x 2 shards, adaptive experiment only
    assert set(planned) <= {
        "merge_superpixels",
        "acquire",
        "annotate",
        "train",
        "evaluate",
        "infer",
        "summarize",
        "usage",
        "gallery",
        "all",
    }
    assert planned["train"] == 2  # rounds 1 and 2 of the adaptive experiment; the shared warm-up stays


def _dry_run_with(workdir, change):
    config = copy.deepcopy(TINY_CONFIG)
    change(config)
    (workdir / "config_changed.yaml").write_text(yaml.safe_dump(config))
    proc = run_snakemake(workdir, None, "-n", "--configfile", str(workdir / "config_changed.yaml"))
    return proc.stdout + proc.stderr


@pytest.mark.parametrize(
    "change",
    [
        lambda c: c["train"].update(checkpoint_every=7),  # how often training saves its state
        lambda c: c["infer"].update(batch_size=3),  # how many images inference runs at once
    ],
    ids=["train.checkpoint_every", "infer.batch_size"],
)
def test_settings_that_cannot_change_results_rerun_nothing(tiny_run, change):
    assert "Nothing to be done" in _dry_run_with(tiny_run, change)


def test_a_sieve_setting_reruns_only_what_the_sieving_experiment_built_from_it(tiny_run):
    out = _dry_run_with(tiny_run, lambda c: c["sieve"].update(min_pixels=10))
    planned = planned_rules(out)
    assert planned["annotate"] == 2  # rounds 1 and 2 of cb_adaptive_sieve; round 0 and the others do not sieve
    assert set(re.findall(r"experiment=(\w+)", out)) == {"cb_adaptive_sieve"}
    assert "merge_superpixels" in planned and "summarize" in planned  # downstream of its round-1 targets


def test_same_config_gives_identical_selections_and_targets(tiny_run, tmp_path):
    target = "results/tiny/cb_adaptive_sieve/seed0/round1/targets.h5"
    run_snakemake(tmp_path, TINY_CONFIG, target)
    for rel in [
        "results/tiny/cb_adaptive_sieve/seed0/round1/selection.csv",
        "results/tiny/cb_adaptive_sieve/seed0/round1/answers.csv",
    ]:
        assert (tmp_path / rel).read_bytes() == (tiny_run / rel).read_bytes(), rel
    with h5py.File(tmp_path / target) as a, h5py.File(tiny_run / target) as b:
        for name in a["labels"]:
            np.testing.assert_array_equal(a["labels"][name][()], b["labels"][name][()])


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda c: c["al"].update(clicks_per_round=-5), "clicks_per_round"),
        (lambda c: c["train"].update(learning_rate=0.1), "learning_rate"),
        (lambda c: c["model"].update(name=3), "name"),
        (lambda c: c["dataset"].update(kind="folder", root="no/such/folder"), "no/such/folder"),
        (lambda c: c["experiments"].append(dict(c["experiments"][0])), "random appears more than once"),
        (lambda c: c["dataset"].update(val_split="train"), "dataset.val_split: 'train' is also dataset.pool_split"),
        (lambda c: c["model"].update(weights="no/such/model.pt"), "model.weights: no/such/model.pt not found"),
        (lambda c: c["merge"].update(eps=0.9), "eps"),
        (
            lambda c: c["experiments"][0].update(answer="classes"),
            "experiments: random answers class sets (answer: classes), which cost one click per class: set "
            "al.click_cost: classes",
        ),
        (lambda c: c.update(annotator={"trim": 4}), "trim"),
        (
            lambda c: (c.update(fidelity="official"), c["al"].update(click_cost="classes")),
            "fidelity: official cannot honour al.click_cost: classes (the reference code charges one click per region)",
        ),
    ],
)
def test_bad_config_fails_before_any_job(tmp_path, mutate, message):
    config = copy.deepcopy(TINY_CONFIG)
    mutate(config)
    proc = run_snakemake(tmp_path, config, check=False)
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists() and not (tmp_path / "resources").exists()


@pytest.mark.parametrize(("al", "infers"), [({}, 0), ({"click_cost": "classes"}, 2), ({"max_per_class": 0.5}, 2)])
def test_random_selection_gets_a_model_only_for_click_estimates_or_quotas(tmp_path, al, infers):
    # random scores need no model, but class costs and class quotas are estimated from one, as for every strategy:
    # then rounds 0 and 1 (of 2) infer the pool, one job per shard
    config = copy.deepcopy(TINY_CONFIG)
    config["al"].update(al)
    config["experiments"] = [{"name": "random", "regions": "base", "acquisition": "random"}]
    proc = run_snakemake(tmp_path, config, "-n")
    assert planned_rules(proc.stdout + proc.stderr).get("infer", 0) == infers * config["pool"]["shards"]


def test_classes_cost_spends_every_budget_exactly_on_official_oracle_regions(tmp_path):
    # MulActSeg's cost model through the rules: selection with a reserve, the annotator charging ground-truth
    # classes; and the reference's polygon-fill oracle regions
    config = copy.deepcopy(TINY_CONFIG)
    config["superpixels"]["oracle"] = "official"
    config["al"].update(click_cost="classes")
    config["experiments"] = [
        {"name": "cb_base", "regions": "base", "acquisition": "class_balanced"},
        {"name": "cb_oracle", "regions": "oracle", "acquisition": "class_balanced"},
    ]
    run_snakemake(tmp_path, config)
    summary = pd.read_csv(tmp_path / R / "summary.csv")
    for _, g in summary.groupby("experiment"):
        assert g.sort_values("round")["clicks"].tolist() == [12, 22, 32]
    for exp in ("cb_base", "cb_oracle"):
        for r in (1, 2):
            d = tmp_path / R / f"{exp}/seed0/round{r}"
            sel = pd.read_csv(d / "selection.csv")
            stats = json.loads((d / "annotation_stats.json").read_text())
            assert stats["clicks_round"] == stats["clicks_budget_round"] == 10
            assert sel["reserve"].any() and not sel["reserve"].iloc[: (~sel["reserve"]).sum()].any()
            answers = pd.read_csv(d / "answers.csv")
            assert answers.loc[answers["round"] == r, "clicks"].sum() == 10
    with h5py.File(tmp_path / R / "superpixels/oracle_shard0.h5") as f:
        assert json.loads(f.attrs["config"]) == {"oracle": "official"}


def test_class_set_answers_run_end_to_end(tmp_path):
    # MulActSeg's family beside the dominant one: class-set answers charged per member, sets trained with the
    # set loss and, here, its pseudo-label second stage; keys of the class-set family rerun only that experiment
    from adaspx.annotation import class_sets
    from adaspx.datasets import read_label

    config = copy.deepcopy(TINY_CONFIG)
    config["al"].update(click_cost="classes")
    config["train"].update(pseudo_labels=True)
    config["experiments"] = [
        {"name": "cb_base", "regions": "base", "acquisition": "class_balanced"},
        {"name": "sets", "regions": "adaptive", "acquisition": "mulactseg", "answer": "classes", "sieve": True},
    ]
    run_snakemake(tmp_path, config)
    labels = tmp_path / "resources/datasets/tiny/labels"
    several = 0
    for r in (1, 2):
        d = tmp_path / R / f"sets/seed0/round{r}"
        answers = pd.read_csv(d / "answers.csv", dtype={"image": str, "classes": str}).fillna({"classes": ""})
        earlier = answers[answers["round"] < r]
        previous = tmp_path / R / (f"sets/seed0/round{r - 1}" if r > 1 else "warmup/seed0/round0") / "answers.csv"
        assert csv_rows(previous) == csv_rows(d / "answers.csv")[: len(earlier) + 1]  # append-only
        mine = answers[answers["round"] == r]
        assert 0 < mine["clicks"].sum() <= 10
        merged = "warmup/seed0/round0" if r == 1 else f"sets/seed0/round{r - 1}"  # the previous round's merge
        regions = sorted((tmp_path / R / merged).glob("regions_shard*.h5"))
        assert regions
        for image_id, g in mine.groupby("image"):
            rmap = next(_map(f, image_id) for f in regions if _has(f, image_id))
            gt = read_label(labels / f"{image_id}.png")
            sets = class_sets(rmap, gt, g["region"].to_numpy(), trim=5, void="class")
            assert g["classes"].tolist() == [" ".join(map(str, s.tolist())) for s in sets]
            assert g["clicks"].tolist() == [len(s) for s in sets]
            several += sum(int((s != 255).sum() >= 2) for s in sets)
        with h5py.File(d / "targets.h5") as f:
            assert set(f["sets"]) <= set(mine["image"]) | set(earlier["image"])
        meta = torch.load(d / "model.pt", weights_only=True)["meta"]
        assert meta["stages"] == 2 and meta["set_loss"]["mc_weight"] == 8.0
    assert several > 0
    assert json.loads((tmp_path / R / "sets/seed0/round2/annotation_stats.json").read_text())["set_pixels"] > 0
    warmup = pd.read_csv(tmp_path / R / "warmup/seed0/round0/answers.csv", dtype={"classes": str})
    assert (warmup["classes"] == warmup["label"].astype(str)).all()  # the shared warm-up answers dominant labels
    for change, rule in (
        (lambda c: c.update(annotator={"trim": 3}), "annotate"),
        (lambda c: c["train"].update(set_loss={"group_weight": 2.0}), "train"),
    ):
        changed = copy.deepcopy(config)
        change(changed)
        (tmp_path / "changed.yaml").write_text(yaml.safe_dump(changed))
        proc = run_snakemake(tmp_path, None, "-n", "--configfile", str(tmp_path / "changed.yaml"))
        out = proc.stdout + proc.stderr
        assert planned_rules(out)[rule] == 2 and set(re.findall(r"experiment=(\w+)", out)) == {"sets"}


def csv_rows(path):
    return path.read_text().splitlines()


def _has(path, image_id):
    with h5py.File(path) as f:
        return image_id in f["labels"]


def _map(path, image_id):
    with h5py.File(path) as f:
        return f["labels"][image_id][()]


def test_official_fidelity_runs_with_the_reference_behaviour_and_the_usual_artifacts(tmp_path):
    # the switch on the tiny demo: half-resolution float32 softmax stored at stride 2, statistics on that grid, the
    # reference's class weights, no exclusion; sieve.min_pixels, set in the config, wins over the switch's 512
    config = copy.deepcopy(TINY_CONFIG)
    config["fidelity"] = "official"
    run_snakemake(tmp_path, config)
    d = tmp_path / R / "cb_adaptive_sieve/seed0/round1"
    with h5py.File(d / "probs_shard0.h5") as f:
        name = next(iter(f["probs"]))
        assert f.attrs["stride"] == 2 and f.attrs["half_resolution"] and f["probs"][name].dtype == np.float32
        assert f["probs"][name].shape[1:] == (24, 32)  # 48x64 images
    with h5py.File(d / "regions_shard0.h5") as f:
        assert json.loads(f.attrs["config"])["grid"] == "probabilities"
    for exp in ("cb_oracle", "cb_adaptive_sieve"):
        sel = pd.read_csv(tmp_path / R / f"{exp}/seed0/round2/selection.csv")
        assert {"image", "region", "score", "clicks"} <= set(sel.columns) and len(sel) == 10
    stats = json.loads((d / "annotation_stats.json").read_text())
    assert stats["sieve_min_pixels"] == 20
    oracle = {}
    for k in (0, 1):
        with h5py.File(tmp_path / R / f"superpixels/oracle_shard{k}.h5") as f:
            assert json.loads(f.attrs["config"]) == {"oracle": "official"}
            oracle |= {name: f["labels"][name][()] for name in f["labels"]}
    # the oracle experiment starts from its own warm-up, on oracle regions
    warm = pd.read_csv(tmp_path / R / "warmup_oracle/seed0/round0/answers.csv", dtype={"image": str})
    assert len(warm) and all(r in oracle[i] for i, r in zip(warm["image"], warm["region"], strict=True))
    first = pd.read_csv(tmp_path / R / "cb_oracle/seed0/round1/answers.csv", dtype={"image": str})
    assert first.iloc[: len(warm)].equals(warm)
    summary = pd.read_csv(tmp_path / R / "summary.csv")
    assert len(summary) == 9 and summary["miou"].between(0, 1).all()


def test_every_job_writes_its_benchmark(tiny_run):
    # runtime and peak memory of every job are on disk, beside the job's outputs
    found = {re.sub(r"_shard\d+$", "", p.stem) for p in (tiny_run / R).rglob("benchmarks/*.tsv")}
    ran = {"synthesize_dataset", "prepare_dataset", "base_superpixels", "oracle_superpixels", "train", "evaluate",
           "infer", "merge_superpixels", "acquire", "annotate", "summarize", "usage", "gallery"}  # fmt: skip
    assert found == ran
    table = pd.read_csv(next((tiny_run / R).rglob("benchmarks/annotate.tsv")), sep="\t")
    assert {"s", "max_rss"} <= set(table.columns)


def test_round_zero_regions_are_merged_once_per_seed(tmp_path):
    # two adaptive experiments share the warm-up's adaptive regions: round 0 is merged once per seed and shard
    config = copy.deepcopy(TINY_CONFIG)
    config["experiments"] = [
        {"name": "cb_adaptive", "regions": "adaptive", "acquisition": "class_balanced"},
        {"name": "margin_adaptive", "regions": "adaptive", "acquisition": "margin"},
    ]
    proc = run_snakemake(tmp_path, config, "-n", "--quiet", "rules")
    planned = planned_rules(proc.stdout + proc.stderr)
    # 2 shards x (round 0 once + round 1 of each experiment); round 2's regions are not needed
    assert planned["merge_superpixels"] == 2 * (1 + 2)


def test_a_synthetic_root_pointing_at_a_users_dataset_is_refused_untouched(tmp_path):
    # neither a first run (which would silently use it) nor `snakemake -F` (which would delete it) may touch it
    users = tmp_path / "my_dataset"
    (users / "labels").mkdir(parents=True)
    (users / "labels" / "a.png").write_bytes(b"a user's label")
    config = copy.deepcopy(TINY_CONFIG)
    config["dataset"]["root"] = str(users)
    for extra in ((), ("-F",)):
        proc = run_snakemake(tmp_path, config, *extra, check=False)
        assert proc.returncode != 0
        assert re.search(r"dataset\.root: \S+my_dataset: not empty and not generated by adaspx", proc.stderr)
        assert sorted(p.name for p in users.rglob("*")) == ["a.png", "labels"]
        assert not (tmp_path / "results").exists()


def test_the_local_profile_is_picked_up(tmp_path):
    # profiles/default beside the Snakefile: rerun-incomplete after a crash without extra flags
    proc = run_snakemake(tmp_path, copy.deepcopy(TINY_CONFIG), "-n")
    assert re.search(r"Using workflow specific profile \S*profiles/default", proc.stdout + proc.stderr)


def test_an_edited_file_of_a_folder_dataset_reruns_what_depends_on_it(tiny_run, tmp_path):
    # a folder dataset (the tiny synthetic one, copied): its manifest lists the files it was read from
    import shutil

    data = tmp_path / "data"
    shutil.copytree(tiny_run / "resources/datasets/tiny", data)
    config = copy.deepcopy(TINY_CONFIG)
    config["dataset"] = {"name": "tinyfolder", "kind": "folder", "root": str(data)}
    manifest = "results/tinyfolder/manifest.json"
    run_snakemake(tmp_path, config, manifest)
    dry = run_snakemake(tmp_path, config, manifest, "-n")
    assert "Nothing to be done" in dry.stdout + dry.stderr

    label = data / "labels/train_0001.png"
    fixed = np.asarray(Image.open(label)).copy()
    fixed[0, 0] = 0  # a corrected pixel
    time.sleep(0.01)
    Image.fromarray(fixed).save(label)
    dry = run_snakemake(tmp_path, config, manifest, "-n")
    assert planned_rules(dry.stdout + dry.stderr) == {"prepare_dataset": 1}
    run_snakemake(tmp_path, config, manifest)
    (data / "splits/train.txt").write_text("train_0000\ntrain_0001\n")  # a shorter split
    dry = run_snakemake(tmp_path, config, manifest, "-n")
    assert planned_rules(dry.stdout + dry.stderr) == {"prepare_dataset": 1}


def _artifacts(run_dir):
    """What a run decided, file by file: selections, answers, training targets, evaluation and summary."""
    out = {}
    for path in sorted((run_dir / R).rglob("*")):
        rel = str(path.relative_to(run_dir))
        if path.name in ("selection.csv", "answers.csv", "summary.csv", "metrics.json"):
            out[rel] = path.read_bytes()
        elif path.name == "targets.h5":
            with h5py.File(path) as f:
                out[rel] = {name: ds[()].tobytes() for name, ds in f["labels"].items()}
    return out


@pytest.mark.parametrize(
    "kill_when",
    [
        "results/tiny/warmup/seed0/round0/train_checkpoint.pt",  # after a training checkpoint
        "logs/tiny/cb_adaptive_sieve/seed0/round1/annotate.log",  # while annotate runs
        "logs/tiny/summarize.log",  # while summarize runs
    ],
    ids=["after-checkpoint", "mid-annotate", "mid-summarize"],
)
def test_a_killed_run_resumes_with_the_documented_commands_to_identical_results(tiny_run, tmp_path, kill_when):
    import os
    import signal
    import subprocess

    from workflow_helpers import ROOT, SNAKEMAKE

    config = copy.deepcopy(TINY_CONFIG)
    config["train"]["checkpoint_every"] = 5  # cannot change results: tiny_run saved every 100 iterations
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    cmd = [*SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "--directory", str(tmp_path), "--configfile",
           str(tmp_path / "config.yaml"), "--cores", "2"]  # fmt: skip
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 600
    while not (tmp_path / kill_when).exists():
        assert proc.poll() is None, f"the run ended before {kill_when} appeared"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)  # the whole process group, as a power cut or an OOM kill would
    proc.wait()
    assert not (tmp_path / R / "summary.csv").exists() or kill_when.endswith("summarize.log")
    # README, "After a crash": snakemake --unlock && snakemake --cores all
    run_snakemake(tmp_path, None, "--unlock")
    run_snakemake(tmp_path, None)
    assert _artifacts(tmp_path) == _artifacts(tiny_run)
    assert not list((tmp_path / R).rglob("*.tmp")), "leftover temporary files"


def test_a_broken_dataset_stops_with_one_line_before_any_job(tiny_run, tmp_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(tiny_run / "resources/datasets/tiny", data)
    (data / "classes.yaml").write_text("names: [road, sky\n")
    config = copy.deepcopy(TINY_CONFIG)
    config["dataset"] = {"name": "broken", "kind": "folder", "root": str(data)}
    proc = run_snakemake(tmp_path, config, check=False)
    assert proc.returncode != 0
    err = proc.stdout + proc.stderr
    assert re.search(r"dataset: \S+classes\.yaml: not valid YAML \(", err) and "Traceback" not in err
    assert not (tmp_path / "results").exists()
