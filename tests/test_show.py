"""``adaspx show``: pictures of real artifacts, checked pixel by pixel against the files they are drawn from.

The run is made by the stages themselves on a 3-image pool of 32 x 40 synthetic scenes: a random warm-up on base
superpixels, its adaptive regions, and one class-balanced round on them that sieves its answers and trains a
model. The warm-up's probabilities are the stage helper's (confidently wrong on the left quarter of every image,
so that the sieve has pixels to drop).
"""

import json
import shutil

import h5py
import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image
from scipy import ndimage
from skimage.segmentation import find_boundaries
from stage_helpers import H, W, small_pool

from adaspx import IGNORE_INDEX, show
from adaspx.cli import main

ROUND_PANELS = ("image", "regions", "queried", "targets", "truth", "prediction")


def confidently_wrong_quarter(gt, c):
    guess = np.where(gt == 255, 0, gt)
    guess[:, :10] = (guess[:, :10] + 1) % c
    p = np.full((c, *gt.shape), 0.1 / (c - 1), np.float32)
    np.put_along_axis(p, guess[None], 0.9, axis=0)
    return p


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """``results/tiny/`` of a run: manifest, base superpixels, the warm-up round and round 1 of ``cb``."""
    from adaspx import pipeline

    d = tmp_path_factory.mktemp("show") / "results" / "tiny"
    _, ids = small_pool(d, seed=2, n_segments=10, probs=confidently_wrong_quarter)
    manifest = d / "manifest.json"
    base = d / "superpixels" / "base_shard0.h5"
    base.parent.mkdir()
    (d / "base.h5").rename(base)
    warm, r1 = d / "warmup" / "seed0" / "round0", d / "cb" / "seed0" / "round1"
    warm.mkdir(parents=True)
    r1.mkdir(parents=True)
    (d / "probs.h5").rename(warm / "probs_shard0.h5")

    def annotate(folder, regions, previous, probs, **kw):
        pipeline.annotate(manifest, folder / "selection.csv", [str(regions)], *previous, [str(p) for p in probs],
                          [str(base)], answers_csv=folder / "answers.csv", answers_h5=folder / "answers.h5",
                          targets_h5=folder / "targets.h5", stats_json=folder / "annotation_stats.json", threads=1,
                          **kw)  # fmt: skip

    pipeline.acquire(manifest, [str(base)], [], None, warm / "selection.csv", strategy="random", budget=6,
                     experiment="warmup", seed=0, round=0)  # fmt: skip
    annotate(warm, base, (None, None), [], experiment="warmup", seed=0, round=0, sieve=False)
    pipeline.merge_superpixels(base, warm / "probs_shard0.h5", warm / "regions_shard0.h5", eps=0.1,
                               experiment="warmup", seed=0, round=0, threads=1)  # fmt: skip
    regions = warm / "regions_shard0.h5"
    pipeline.acquire(manifest, [str(regions)], [], str(warm / "answers.h5"), r1 / "selection.csv",
                     strategy="class_balanced", budget=6, experiment="cb", seed=0, round=1)  # fmt: skip
    annotate(r1, regions, (str(warm / "answers.csv"), str(warm / "answers.h5")), [warm / "probs_shard0.h5"],
             experiment="cb", seed=0, round=1, sieve=True, min_pixels=4, sieve_method="knee_disagree")  # fmt: skip
    train = {"iterations": 5, "batch_size": 2, "checkpoint_every": 0, "init": "scratch"}
    pipeline.train(manifest, r1 / "targets.h5", r1 / "model.pt", model="small", params=train, experiment="cb",
                   seed=0, round=1, threads=1, progress=False)  # fmt: skip
    pipeline.infer(manifest, r1 / "model.pt", r1 / "probs_shard0.h5", shards=1, shard=0, experiment="cb", seed=0,
                   round=1, threads=1)  # fmt: skip
    return d, ids


def colors_of(d):
    """The class colours of the dataset's own class table."""
    table = yaml.safe_load((d / "data" / "classes.yaml").read_text())
    return np.asarray(table["colors"], dtype=np.uint8)


def png(path):
    return np.asarray(Image.open(path).convert("RGB"))


def panels(picture, count, columns):
    """The panels of a picture, cut where :func:`adaspx.show.layout` puts them."""
    boxes, size = show.layout(show.Scale.of((H, W)), count, columns, 0)
    assert picture.shape[1] == size[0]  # the width does not depend on the legend
    return [picture[y : y + h, x : x + w] for x, y, w, h in boxes]


def centres(panel):
    """The panel pixel at the centre of every image pixel's block: (H, W, 3)."""
    fy, fx = panel.shape[0] // H, panel.shape[1] // W
    assert (fy, fx) == (show.PANEL_WIDTH // W,) * 2
    return panel[fy // 2 :: fy, fx // 2 :: fx][:H, :W]


def blocks_with(panel, color):
    """(H, W) bool: the image pixels whose block holds a panel pixel of ``color``."""
    hit = (panel == np.asarray(color, dtype=np.uint8)).all(axis=2)
    fy, fx = panel.shape[0] // H, panel.shape[1] // W
    return hit.reshape(H, fy, W, fx).any(axis=(1, 3))


def image_of(d, image_id):
    return np.asarray(Image.open(d / "data" / "images" / f"{image_id}.png").convert("RGB"))


def label_of(d, image_id):
    return np.asarray(Image.open(d / "data" / "labels" / f"{image_id}.png"))


def answers_of(folder, image_id):
    """The answers.csv rows and the latest-answer row of every pixel of ``image_id`` (-1: none), read with h5py."""
    table = pd.read_csv(folder / "answers.csv", dtype={"image": str})
    with h5py.File(folder / "answers.h5") as f:
        amap, rows = f["labels"][image_id][()].astype(np.int64), f["rows"][image_id][()]
    return table, np.where(amap > 0, np.append(rows, -1)[amap - 1], -1)


def shown_image(d, ids):
    """The pool image with the most pixels answered in round 1."""
    folder = d / "cb" / "seed0" / "round1"

    def answered(image_id):
        table, row_of = answers_of(folder, image_id)
        return int(np.isin(row_of, np.flatnonzero(table["round"] == 1)).sum())

    return max(ids, key=answered)


@pytest.fixture(scope="module")
def round_picture(run, tmp_path_factory):
    d, ids = run
    image_id = shown_image(d, ids)
    out = show.render_round_panel(d / "cb" / "seed0" / "round1", image_id, tmp_path_factory.mktemp("p") / "r.png")
    return image_id, dict(zip(ROUND_PANELS, panels(png(out), 6, show.ROUND_COLUMNS), strict=True)), png(out)


# ------------------------------------------------------------------------------------------ the round panel


def test_round_picture_is_six_panels_and_a_legend(round_picture):
    _, _, picture = round_picture
    ph, pw = show.Scale.of((H, W)).panel
    assert (ph, pw) == (H * (show.PANEL_WIDTH // W), W * (show.PANEL_WIDTH // W))
    assert picture.shape[1] == 3 * pw + 4 * show.GAP
    assert picture.shape[0] > 2 * (ph + show.TITLE)  # the legend's rows below the panels


def test_round_panel_shows_the_image_pixel_for_pixel(run, round_picture):
    d, _ = run
    image_id, p, _ = round_picture
    np.testing.assert_array_equal(p["image"], np.kron(image_of(d, image_id), np.ones((12, 12, 1), np.uint8)))


def test_region_boundaries_are_where_find_boundaries_puts_them(run, round_picture):
    d, _ = run
    image_id, p, _ = round_picture
    with h5py.File(d / "warmup" / "seed0" / "round0" / "regions_shard0.h5") as f:  # what round 1 selected from
        regions = f["labels"][image_id][()]
    with h5py.File(d / "superpixels" / "base_shard0.h5") as f:
        assert not np.array_equal(f["labels"][image_id][()], regions)  # merging changed this image's regions
    np.testing.assert_array_equal(blocks_with(p["regions"], show.BOUNDARY), find_boundaries(regions, mode="inner"))


def test_queried_regions_have_the_colour_of_their_answer(run, round_picture):
    d, _ = run
    image_id, p, _ = round_picture
    table, row_of = answers_of(d / "cb" / "seed0" / "round1", image_id)
    colors, seen = colors_of(d), centres(p["queried"])
    mine = np.flatnonzero((table["round"] == 1) & (table["image"] == image_id))
    assert len(mine) >= 1
    for row in mine:
        inside = ndimage.binary_erosion(row_of == row)  # away from the outline
        assert inside.any()
        assert (seen[inside] == colors[table["label"].iat[row]]).all()
    earlier = np.isin(row_of, np.flatnonzero(table["round"] == 0))  # answered in the warm-up only: not drawn
    np.testing.assert_array_equal(seen[earlier], image_of(d, image_id)[earlier] // 2)


def test_sieved_out_pixels_are_marked(run, round_picture):
    d, _ = run
    image_id, p, _ = round_picture
    folder = d / "cb" / "seed0" / "round1"
    table, row_of = answers_of(folder, image_id)
    with h5py.File(folder / "targets.h5") as f:
        target = f["labels"][image_id][()]
    void = np.append(table["label"].to_numpy() == IGNORE_INDEX, True)
    dropped = (row_of >= 0) & ~void[row_of] & (target == IGNORE_INDEX)
    assert dropped.any()  # the confidently wrong quarter
    marked = (centres(p["targets"]) == show.DROPPED).all(axis=2)
    np.testing.assert_array_equal(marked, dropped)


def test_ground_truth_and_prediction_panels(run, round_picture):
    d, _ = run
    image_id, p, _ = round_picture
    colors = colors_of(d)
    gt = label_of(d, image_id)
    expected = np.where((gt == IGNORE_INDEX)[..., None], 0, colors[np.minimum(gt, len(colors) - 1)])
    np.testing.assert_array_equal(centres(p["truth"]), expected)
    with h5py.File(d / "cb" / "seed0" / "round1" / "probs_shard0.h5") as f:
        argmax = f["probs"][image_id][()].astype(np.float32).argmax(axis=0)
    agree = (centres(p["prediction"]) == colors[argmax]).all(axis=2)
    assert agree.mean() > 0.99  # float16 ties may break either way after renormalising


def test_selection_regions_finds_the_adaptive_regions(run):
    d, ids = run
    rnd = show.Round.of(d / "cb" / "seed0" / "round1")
    answers = pd.read_csv(rnd.folder / "answers.csv", dtype={"image": str})
    name, regions = show.selection_regions(rnd, answers, ids[0])
    assert name == "adaptive regions"
    with h5py.File(d / "warmup" / "seed0" / "round0" / "regions_shard0.h5") as f:
        np.testing.assert_array_equal(regions, f["labels"][ids[0]][()])
    warm = show.Round.of(d / "warmup" / "seed0" / "round0")  # the warm-up selects from the base superpixels
    name, _ = show.selection_regions(warm, pd.read_csv(warm.folder / "answers.csv", dtype={"image": str}), ids[0])
    assert name == "base superpixels"


# ------------------------------------------------------------------------------------------ one artifact


def test_superpixels_are_drawn_as_boundaries(run, tmp_path):
    d, ids = run
    out = show.render_artifact(d / "superpixels" / "base_shard0.h5", ids[1], tmp_path / "b.png")
    (panel,) = panels(png(out), 1, 1)
    with h5py.File(d / "superpixels" / "base_shard0.h5") as f:
        labels = f["labels"][ids[1]][()]
    np.testing.assert_array_equal(blocks_with(panel, show.BOUNDARY), find_boundaries(labels, mode="inner"))


def test_answers_are_drawn_in_the_colour_of_the_latest_answer(run, tmp_path):
    d, ids = run
    folder = d / "cb" / "seed0" / "round1"
    image_id = shown_image(d, ids)
    (panel,) = panels(png(show.render_artifact(folder / "answers.h5", image_id, tmp_path / "a.png")), 1, 1)
    table, row_of = answers_of(folder, image_id)
    seen, colors = centres(panel), colors_of(d)
    for row in np.unique(row_of[row_of >= 0]):
        inside = ndimage.binary_erosion(row_of == row)
        label = table["label"].iat[row]
        assert (seen[inside] == (colors[label] if label != IGNORE_INDEX else show.VOID)).all()


def test_targets_are_drawn_in_class_colours(run, tmp_path):
    d, ids = run
    folder = d / "cb" / "seed0" / "round1"
    image_id = shown_image(d, ids)
    (panel,) = panels(png(show.render_artifact(folder / "targets.h5", image_id, tmp_path / "t.png")), 1, 1)
    with h5py.File(folder / "targets.h5") as f:
        target = f["labels"][image_id][()]
    for label in np.unique(target[target != IGNORE_INDEX]):
        inside = ndimage.binary_erosion(target == label)
        assert (centres(panel)[inside] == colors_of(d)[label]).all()


@pytest.mark.parametrize("view", ["argmax", "uncertainty"])
def test_probabilities_views(run, tmp_path, view):
    d, ids = run
    path = d / "cb" / "seed0" / "round1" / "probs_shard0.h5"
    picture = png(show.render_artifact(path, ids[0], tmp_path / "p.png", view=view))
    ph, pw = show.Scale.of((H, W)).panel
    extra = show.COLORBAR if view == "uncertainty" else 0  # the colorbar's band
    assert picture.shape[1] == pw + extra + 2 * show.GAP
    assert picture.shape[0] >= ph + show.TITLE


# ------------------------------------------------------------------------------------------ the command line


def test_cli_writes_the_default_file_and_prints_it(run, tmp_path, monkeypatch, capsys):
    d, ids = run
    monkeypatch.chdir(tmp_path)
    assert main(["show", str(d / "cb" / "seed0" / "round1" / "targets.h5"), "--image", ids[2]]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / f"targets_{ids[2]}.png")
    assert main(["show", str(d / "cb" / "seed0" / "round1"), "--image", ids[2]]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / f"cb_seed0_round1_{ids[2]}.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"cb_seed0_round1_{ids[2]}.png", f"targets_{ids[2]}.png"]


def refused(argv, tmp_path, monkeypatch, capsys) -> str:
    """Run ``adaspx show`` in an empty folder; check the exit status and that nothing was written."""
    out = tmp_path / "out"
    out.mkdir(parents=True)
    monkeypatch.chdir(out)
    assert main(["show", *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert list(out.iterdir()) == []
    return captured.err


def test_unknown_image_is_refused(run, tmp_path, monkeypatch, capsys):
    d, _ = run
    path = d / "cb" / "seed0" / "round1" / "probs_shard0.h5"
    err = refused([str(path), "--image", "nope"], tmp_path, monkeypatch, capsys)
    assert err.startswith(f"adaspx show: {path}: no image 'nope': it holds 3 images (train_0000 .. train_0002)")
    err = refused([str(path.parent), "--image", "nope", "-o", "x.png"], tmp_path / "b", monkeypatch, capsys)
    assert f"{path.parent / 'answers.h5'}: no image 'nope': it holds 3 images" in err


@pytest.mark.parametrize("schema", [None, "adaspx.other/1"])
def test_unknown_or_missing_schema_is_refused(run, tmp_path, monkeypatch, capsys, schema):
    d, ids = run
    path = d / f"strange_{schema is None}.h5"  # inside the run, so the dataset could be found
    with h5py.File(path, "w") as f:
        f["labels/" + ids[0]] = np.zeros((H, W), np.uint16)
        if schema is not None:
            f.attrs["schema"] = schema
    try:
        err = refused([str(path), "--image", ids[0]], tmp_path, monkeypatch, capsys)
    finally:
        path.unlink()
    expected = "no schema attribute: not an adaspx artifact" if schema is None else "unknown schema 'adaspx.other/1'"
    assert err.startswith(f"adaspx show: {path}: {expected}")


def test_round_without_answers_is_refused(run, tmp_path, monkeypatch, capsys):
    d, ids = run
    folder = d / "cb" / "seed0" / "round9"
    folder.mkdir()
    shutil.copy(d / "cb" / "seed0" / "round1" / "selection.csv", folder)
    try:
        err = refused([str(folder), "--image", ids[0]], tmp_path, monkeypatch, capsys)
    finally:
        shutil.rmtree(folder)
    assert err == f"adaspx show: {folder / 'answers.h5'}: not found: the round has not been answered\n"


def test_missing_dataset_names_the_manifest_key(run, tmp_path, monkeypatch, capsys):
    d, ids = run
    results = tmp_path / "results" / "moved"
    (results / "superpixels").mkdir(parents=True)
    manifest = json.loads((d / "manifest.json").read_text())
    (results / "manifest.json").write_text(json.dumps(manifest | {"root": "gone/dataset"}))
    shutil.copy(d / "superpixels" / "base_shard0.h5", results / "superpixels")
    err = refused([str(results / "superpixels" / "base_shard0.h5"), "--image", ids[0]], tmp_path / "b",
                  monkeypatch, capsys)  # fmt: skip
    assert err.startswith(
        f"adaspx show: {results / 'manifest.json'}: dataset root 'gone/dataset' (key 'root') not found"
    )


def test_relative_dataset_root_is_taken_from_the_run_folder(run, tmp_path):
    d, ids = run
    workdir = tmp_path / "work"
    results = workdir / "results" / "copy"
    (results / "superpixels").mkdir(parents=True)
    shutil.copytree(d / "data", workdir / "resources" / "data")
    manifest = json.loads((d / "manifest.json").read_text())
    (results / "manifest.json").write_text(json.dumps(manifest | {"root": "resources/data"}))
    shutil.copy(d / "superpixels" / "base_shard0.h5", results / "superpixels")
    assert show.render_artifact(results / "superpixels" / "base_shard0.h5", ids[0], tmp_path / "x.png").is_file()


# ------------------------------------------------------------------------------------------ gallery


def test_gallery_images_are_a_deterministic_sorted_subset():
    ids = [f"img{k:03d}" for k in range(50)]
    picked = show.gallery_images(ids, 6, seed=1)
    assert len(picked) == 6 and picked == sorted(picked) and set(picked) <= set(ids)
    assert show.gallery_images(list(reversed(ids)), 6, seed=1) == picked
    assert show.gallery_images(ids, 6, seed=2) != picked
    assert show.gallery_images(ids[:4], 6, seed=1) == ids[:4]
    assert show.gallery_images(ids, 0, seed=1) == []


def test_an_image_nobody_answered_has_no_dropped_pixels():
    nothing = show.dropped_pixels(np.zeros((3, 4), np.uint16), np.zeros(0, np.int64), [], np.full((3, 4), 255))
    assert nothing.shape == (3, 4) and not nothing.any()


def test_gallery_stage_draws_every_round_of_every_chosen_image(run, tmp_path):
    from adaspx.pipeline.gallery import gallery

    d, ids = run
    rounds = [d / "warmup" / "seed0" / "round0", d / "cb" / "seed0" / "round1"]
    gallery(d / "manifest.json", [str(r) for r in rounds], tmp_path / "g", images=len(ids))
    names = sorted(p.name for p in (tmp_path / "g").iterdir())
    assert names == sorted(f"round{r}_{i}.png" for r in (0, 1) for i in ids)
    assert not (tmp_path / ".g.partial").exists()
