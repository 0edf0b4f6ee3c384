import json
import re

import h5py
import numpy as np
import pandas as pd
import pytest
from stage_helpers import small_pool

from adaspx.annotation import (
    boundary_band,
    class_clicks,
    class_sets,
    dominant_labels,
    format_classes,
    knee_threshold,
    parse_classes,
    precision,
    sieve_mask,
    targets_from_answers,
)
from adaspx.h5io import ArtifactError


def test_dominant_label_counts_void_and_reports_pixels():
    regions = np.array([[5, 5, 5, 9], [5, 7, 9, 9]])
    gt = np.array([[1, 1, 255, 2], [2, 255, 255, 255]], dtype=np.uint8)
    labels, pixels = dominant_labels(regions, gt, np.array([9, 5, 7]))
    assert labels.tolist() == [255, 1, 255]  # region 9: void wins 2:1; region 5: 1 wins 2:1:1
    assert pixels.tolist() == [3, 4, 1]


def test_dominant_label_tie_goes_to_smaller_value():
    labels, _ = dominant_labels(np.zeros((1, 4), int), np.array([[3, 3, 1, 1]], np.uint8), np.array([0]))
    assert labels.tolist() == [1]


def test_unknown_region_is_an_error():
    with pytest.raises(ValueError, match=r"regions \[4\] do not exist"):
        dominant_labels(np.zeros((2, 2), int), np.zeros((2, 2), np.uint8), np.array([0, 4]))


def test_targets_from_answers_latest_answer_wins_and_void_is_unlabeled():
    amap = np.array([[-1, 0, 1], [2, 2, 0]], dtype=np.int32)
    labels = np.array([3, 255, 1])
    assert targets_from_answers(amap, labels).tolist() == [[255, 3, 255], [1, 1, 3]]


def test_knee_sieves_a_low_confidence_tail():
    rng = np.random.default_rng(0)
    conf = np.concatenate([rng.uniform(0.0, 0.1, 60), rng.uniform(0.9, 1.0, 940)])
    thr = knee_threshold(conf)
    assert thr is not None and 0.05 < thr <= 0.95
    assert (conf < thr).sum() >= 50  # the confidently wrong tail goes
    assert (conf[60:] < thr).mean() < 0.2


def test_knee_on_too_few_points_keeps_everything():
    assert knee_threshold(np.array([0.5, 0.6])) is None


def test_sieve_only_regions_above_min_pixels():
    amap = np.zeros((10, 10), dtype=np.int32)
    amap[:, 5:] = 1
    amap[0, 0] = -1
    labels = np.array([0, 1])
    probs = np.zeros((2, 10, 10), dtype=np.float32)
    probs[0] = 0.95
    probs[0, 1:3, 1:3] = 0.02  # 4 confidently wrong pixels in answer 0
    probs[1] = 1 - probs[0]
    drop = sieve_mask(amap, labels, probs, min_pixels=40)
    assert drop.sum() == 4 and drop[1:3, 1:3].all()
    assert not drop[:, 5:].any()  # answer 1 is uniformly confident: nothing to sieve
    assert not sieve_mask(amap, labels, probs, min_pixels=100).any()


def test_precision_counts_labeled_and_correct():
    t = np.array([[0, 1, 255]], np.uint8)
    g = np.array([[0, 2, 2]], np.uint8)
    assert precision(t, g) == (2, 1)


def test_reference_knee_fails_when_many_pixels_are_confidently_wrong():
    # The reference method's known failure: with ~16% or more confidently wrong pixels the knee lands at index 0
    # and nothing is sieved.
    conf = np.r_[np.full(8, 0.02), np.full(41, 0.95)]
    thr = knee_threshold(conf)
    assert thr == pytest.approx(0.02)
    assert not (conf < thr).any()


# ------------------------------------------------------------------------------------------ sieve variant


def _confidently_wrong_region():
    """One 7x7 region answered 0: 8 pixels the model gives class 1 at 0.98, 41 it gives class 0 at 0.95."""
    amap = np.zeros((7, 7), dtype=np.int32)
    probs = np.zeros((2, 7, 7), dtype=np.float32)
    probs[0] = 0.95
    probs[0].flat[:8] = 0.02
    probs[1] = 1 - probs[0]
    return amap, np.array([0]), probs


def test_knee_disagree_sieves_where_the_knee_fails():
    amap, labels, probs = _confidently_wrong_region()
    assert not sieve_mask(amap, labels, probs, min_pixels=10).any()  # the reference: nothing sieved
    drop = sieve_mask(amap, labels, probs, min_pixels=10, method="knee_disagree")
    assert drop.sum() == 8 and drop.flat[:8].all()


def test_knee_disagree_threshold_and_min_pixels():
    amap, labels, probs = _confidently_wrong_region()
    # another class at 0.98 is not a disagreement at threshold 0.99
    assert not sieve_mask(amap, labels, probs, 10, method="knee_disagree", disagree_threshold=0.99).any()
    assert not sieve_mask(amap, labels, probs, 50, method="knee_disagree").any()  # region below min_pixels
    # a split vote (argmax another class at 0.45 of 3 classes) is not confident at 0.5
    p3 = np.zeros((3, 7, 7), np.float32)
    p3[0], p3[1], p3[2] = 0.25, 0.45, 0.30
    assert not sieve_mask(amap, labels, p3, 10, method="knee_disagree").any()
    with pytest.raises(ValueError, match="sieve method 'otsu' unknown"):
        sieve_mask(amap, labels, probs, 10, method="otsu")


def test_sieve_rows_restrict_to_given_answers():
    amap, labels, probs = _confidently_wrong_region()
    amap2 = np.concatenate([amap, amap + 1], axis=1)
    probs2 = np.concatenate([probs, probs], axis=2)
    labels2 = np.array([0, 0])
    both = sieve_mask(amap2, labels2, probs2, 10, method="knee_disagree")
    only1 = sieve_mask(amap2, labels2, probs2, 10, method="knee_disagree", rows=np.array([1]))
    assert both.sum() == 16 and only1.sum() == 8 and not only1[:, :7].any()


def test_class_clicks_count_non_void_classes_at_least_one():
    regions = np.array([[5, 5, 5, 9], [5, 7, 9, 9]])
    gt = np.array([[1, 1, 255, 2], [2, 255, 255, 255]], dtype=np.uint8)
    # region 5: classes 1 and 2 (void ignored) -> 2; region 9: class 2 -> 1; region 7: only void -> 1
    assert class_clicks(regions, gt, np.array([5, 9, 7])).tolist() == [2, 1, 1]


# ------------------------------------------------------------------------------------ class sets


def _class_set_maps():
    """A 10x12 map: region 0 the left half (cols 0-5) around region 3 (rows 7-8, cols 1-2), region 1 the top right
    (rows 0-4), region 2 the bottom right (rows 5-9); the thick boundaries are cols 5-6, rows 4-5 of the right half,
    and region 3 with the ring of region 0 around it."""
    regions = np.zeros((10, 12), np.uint16)
    regions[:5, 6:] = 1
    regions[5:, 6:] = 2
    regions[7:9, 1:3] = 3
    gt = np.ones((10, 12), np.uint8)
    gt[:, 5] = 2  # region 0's class on its boundary column only
    gt[0:2, 3] = 8  # kept by trim 3 (band cols 4-7 there), trimmed by trim 5 (band cols 3-8)
    gt[2, 1] = 6  # kept by both: region 0's interior holds two classes
    gt[9, 0] = 255  # void only in the band around region 3
    gt[:5, 6:] = 11
    gt[2, 10] = 12  # kept by trim 3 (rows 0-2, cols 8-11 kept), trimmed by trim 5 (rows 0-1, cols 9-11 kept)
    gt[0, 11] = 255  # void kept by both
    gt[5:, 6:] = 13
    gt[8:, 9:] = 255  # all that trim 5 keeps of region 2
    gt[7:9, 1:3] = [[4, 4], [4, 255]]  # region 3 vanishes under trim 3 and 5
    return regions, gt


@pytest.mark.parametrize(
    ("trim", "void", "expected"),
    [
        (3, "class", [[1, 6, 8], [11, 12, 255], [13, 255], [4, 255]]),
        (5, "class", [[1, 6], [11, 255], [255], [4, 255]]),
        (3, "drop", [[1, 6, 8], [11, 12], [13], [4]]),
        (5, "drop", [[1, 6], [11], [], [4]]),  # region 2: void inside, classes only in the band: nothing
        (1, "class", [[1, 6, 8, 255], [11, 12, 255], [13, 255], [4, 255]]),  # band: the thick boundaries only
        (0, "class", [[1, 2, 6, 8, 255], [11, 12, 255], [13, 255], [4, 255]]),  # no trimming
    ],
)
def test_class_sets_of_hand_made_regions(trim, void, expected):
    regions, gt = _class_set_maps()
    sets = class_sets(regions, gt, np.array([0, 1, 2, 3]), trim=trim, void=void)
    assert [s.tolist() for s in sets] == expected
    assert all(s.dtype == np.uint8 for s in sets)


def test_class_sets_follow_the_query_order_and_repeats():
    regions, gt = _class_set_maps()
    sets = class_sets(regions, gt, [3, 1, 3], trim=5)
    assert [s.tolist() for s in sets] == [[4, 255], [11, 255], [4, 255]]
    assert class_sets(regions, gt, np.array([], np.int64)) == []


def test_boundary_band_by_hand():
    regions = np.zeros((6, 6), np.uint8)
    regions[:3, 3:] = 1  # the top right quadrant
    thick = ["..XX..", "..XX..", "..XXXX", "...XXX", "......", "......"]
    dilated = [".XXXX.", ".XXXXX", ".XXXXX", ".XXXXX", "..XXXX", "......"]
    for trim, rows in ((1, thick), (3, dilated)):
        band = boundary_band(regions, trim)
        assert ["".join(".X"[v] for v in row) for row in band.astype(int)] == rows, trim
    assert not boundary_band(regions, 0).any()


def _reference_class_sets(regions, gt, region_ids, trim, void):
    """One region at a time, with skimage's thick boundaries and a square dilation."""
    from skimage.morphology import dilation
    from skimage.segmentation import find_boundaries

    ranks = np.unique(regions, return_inverse=True)[1].reshape(regions.shape)  # skimage loses ids beyond 2**53
    band = dilation(find_boundaries(ranks, mode="thick"), np.ones((trim, trim), bool))
    sets, vanished = [], 0
    for rid in region_ids:
        mask = (regions == rid) & ~band
        if not mask.any():
            mask, vanished = regions == rid, vanished + 1
        values = np.unique(gt[mask])
        sets.append(values[values != 255] if void == "drop" else values)
    return sets, vanished


@pytest.mark.parametrize(
    ("dtype", "scale", "offset", "far"),  # ids as they are, shifted into uint16, shifted into float64, ranked
    [(np.uint16, 1, 0, 0), (np.int32, 1, -(2**20), -(2**20)), (np.int64, 1, 2**40, 2**41), (np.int64, 1, 2**60, 0)],
)
@pytest.mark.parametrize("trim", [1, 3, 5, 7])
def test_class_sets_match_a_per_region_reference(dtype, scale, offset, far, trim):
    rng = np.random.default_rng(trim)
    regions = np.kron(rng.integers(0, 40, (9, 11)), np.ones((5, 6), np.int64))  # 45x66, ids reused apart
    regions[rng.integers(0, 45, 25), rng.integers(0, 66, 25)] = np.arange(100, 125)  # single pixels
    gt = rng.choice(np.array([0, 3, 5, 255], np.uint8), size=regions.shape, p=[0.5, 0.2, 0.2, 0.1])
    regions = (regions * scale + offset).astype(dtype)
    regions[0, 0] = far  # widens the range; ids 2**40 + k would merge as float32, 2**60 + k as float64
    region_ids = rng.permutation(np.unique(regions))[:30]
    for void in ("class", "drop"):
        expected, vanished = _reference_class_sets(regions, gt, region_ids, trim, void)
        assert vanished > 0
        got = class_sets(regions, gt, region_ids, trim=trim, void=void)
        assert [s.tolist() for s in got] == [s.tolist() for s in expected]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"trim": 4}, "trim must be 0 or a positive odd integer, got 4"),
        ({"trim": -1}, "trim must be 0 or a positive odd integer"),
        ({"trim": 3.0}, "trim must be 0 or a positive odd integer"),
        ({"trim": True}, "trim must be 0 or a positive odd integer"),
        ({"void": "ignore"}, "void 'ignore' unknown; expected one of class, drop"),
    ],
)
def test_class_sets_refuse_bad_options(kwargs, message):
    regions, gt = _class_set_maps()
    with pytest.raises(ValueError, match=message):
        class_sets(regions, gt, [0], **kwargs)


def test_class_sets_refuse_bad_maps_and_unknown_regions():
    regions, gt = _class_set_maps()
    with pytest.raises(ValueError, match=r"regions \[7\] do not exist"):
        class_sets(regions, gt, [0, 7])
    with pytest.raises(ValueError, match="differ in shape"):
        class_sets(regions, gt[:, :-1], [0])
    with pytest.raises(ValueError, match=r"ground truth values 1\.\.256 are not all in 0\.\.255"):
        class_sets(regions, gt.astype(np.int64) + (gt == 255), [0])


def test_classes_text_round_trips_through_answers_csv(tmp_path):
    regions, gt = _class_set_maps()
    sets = class_sets(regions, gt, [0, 1, 2], trim=5, void="drop")
    texts = [format_classes(s) for s in sets]
    assert texts == ["1 6", "11", ""]
    assert format_classes(np.array([255, 3, 7, 3])) == "3 7 255"
    pd.DataFrame({"region": [0, 1, 2], "classes": texts}).to_csv(tmp_path / "answers.csv", index=False)
    read = pd.read_csv(tmp_path / "answers.csv")["classes"]  # the empty set comes back as NaN
    assert [parse_classes(t).tolist() for t in read] == [s.tolist() for s in sets]
    assert parse_classes("3 7 255").dtype == np.uint8


@pytest.mark.parametrize("text", ["3 x", "7 3", "3 3", "256", "-1", "03", "3,7", 5])
def test_parse_classes_names_the_bad_text(text):
    with pytest.raises(ValueError, match=re.escape(repr(text))):
        parse_classes(text)


def test_format_classes_refuses_values_outside_a_byte():
    with pytest.raises(ValueError, match=r"classes \[3, 256\] are not all integers in 0\.\.255"):
        format_classes([3, 256])


# ------------------------------------------------------------------------------------ the annotate stage


@pytest.fixture(scope="module")
def stage(tmp_path_factory):
    d = tmp_path_factory.mktemp("annotate")

    def confidently_wrong_quarter(gt, c):  # class (gt + 1) at 0.9 on a quarter of every image, else gt at 0.9
        guess = np.where(gt == 255, 0, gt)
        guess[:, :10] = (guess[:, :10] + 1) % c
        p = np.full((c, *gt.shape), 0.1 / (c - 1), np.float32)
        np.put_along_axis(p, guess[None], 0.9, axis=0)
        return p

    _, ids = small_pool(d, seed=2, n_segments=6, probs=confidently_wrong_quarter)
    return d, ids


def _annotate(d, tmp, selection, round=1, prev=None, probs=None, base=None, **kw):
    from adaspx import pipeline

    selection.to_csv(tmp / f"sel{round}.csv", index=False)
    out = {k: tmp / f"{k}{round}.{ext}" for k, ext in
           (("answers_csv", "csv"), ("answers_h5", "h5"), ("targets_h5", "h5"), ("stats_json", "json"))}  # fmt: skip
    prev_csv, prev_h5, prev_t = (None, None, None) if prev is None else prev
    pipeline.annotate(d / "manifest.json", tmp / f"sel{round}.csv", [str(d / "base.h5")], prev_csv, prev_h5,
                      [str(probs or d / "probs.h5")], [str(base or d / "base.h5")], experiment="e", seed=0,
                      round=round, prev_targets_h5=prev_t, **out, **kw)  # fmt: skip
    return out, json.loads(out["stats_json"].read_text())


def _selection(d, ids, image_index, count):
    from adaspx.h5io import Artifact

    with Artifact(d / "base.h5") as base:
        rids = np.unique(base.get("labels", ids[image_index]))[:count]
    return pd.DataFrame({"rank": range(len(rids)), "image": ids[image_index], "region": rids, "score": 1.0,
                         "size": 1, "clicks": 1, "predicted": 0, "uncertainty": 0.0})  # fmt: skip


def _true_clicks(d, image_id, selection):
    """What the ``classes`` cost model charges for the selected regions of one image (base superpixels)."""
    from adaspx.datasets import read_label
    from adaspx.h5io import Artifact

    with Artifact(d / "base.h5") as base:
        gt = read_label(d / "data" / "labels" / f"{image_id}.png")
        return class_clicks(base.get("labels", image_id), gt, selection["region"].to_numpy())


def test_classes_cost_charges_ground_truth_classes(stage, tmp_path):
    d, ids = stage
    sel = _selection(d, ids, 0, 3)
    out, stats = _annotate(d, tmp_path, sel, sieve=False, click_cost="classes")
    answers = pd.read_csv(out["answers_csv"])
    expected = _true_clicks(d, ids[0], sel)
    assert answers["clicks"].tolist() == expected.tolist()
    assert stats["clicks"] == int(expected.sum()) and stats["clicks_estimated_round"] == 3
    assert stats["click_cost"] == "classes" and stats["labeled_pixels"] > 0


def test_classes_cost_never_spends_more_than_the_budget(stage, tmp_path):
    # the selection estimated 1 click per region (as in the warm-up); the annotator answers in rank order and
    # skips the regions whose true clicks no longer fit
    d, ids = stage
    sel = _selection(d, ids, 0, 6)
    true = _true_clicks(d, ids[0], sel)
    assert true.max() > 1 and true.sum() > 6  # some regions hold two or more classes
    out, stats = _annotate(d, tmp_path, sel, sieve=False, click_cost="classes", budget=6)
    answers = pd.read_csv(out["answers_csv"])
    expected, spent = [], 0
    for rid, c in zip(sel["region"], true, strict=True):
        if spent + c <= 6:
            expected.append(rid)
            spent += c
    assert sorted(answers["region"]) == sorted(expected) and 0 < len(expected) < len(sel)
    assert stats["clicks_round"] == spent <= 6 and stats["clicks_budget_round"] == 6
    assert stats["skipped_over_budget_round"] == len(sel) - len(expected)
    assert stats["clicks_estimated_round"] == len(sel)


def test_overshoot_answers_in_rank_order_until_the_budget_is_spent(stage, tmp_path):
    # MulActSeg's selection: no region is skipped; the last answer may take the round past its budget
    d, ids = stage
    sel = _selection(d, ids, 0, 6)
    true = _true_clicks(d, ids[0], sel)
    expected, spent = [], 0
    for rid, c in zip(sel["region"], true, strict=True):
        if spent >= 6:
            break
        expected.append(int(rid))
        spent += int(c)
    assert spent > 6  # this selection overshoots
    out, stats = _annotate(d, tmp_path, sel, sieve=False, click_cost="classes", budget=6, overshoot=True)
    answers = pd.read_csv(out["answers_csv"])
    assert answers["region"].tolist() == expected and answers["clicks"].tolist() == true[: len(expected)].tolist()
    assert stats["clicks_round"] == spent and stats["skipped_over_budget_round"] == len(sel) - len(expected)


def test_knee_disagree_stage_raises_precision(stage, tmp_path):
    d, ids = stage
    sel = _selection(d, ids, 1, 6)
    _, knee = _annotate(d, tmp_path, sel, sieve=True, min_pixels=20, sieve_method="knee")
    (tmp_path / "b").mkdir()
    _, dis = _annotate(d, tmp_path / "b", sel, sieve=True, min_pixels=20, sieve_method="knee_disagree")
    assert dis["sieve_method"] == "knee_disagree"
    assert dis["label_precision"] >= knee["label_precision"]
    assert dis["labeled_pixels"] < knee["labeled_pixels"]


@pytest.mark.parametrize("overlap", ["painter", "latest"])
def test_frozen_sieving_keeps_earlier_targets(stage, tmp_path, overlap):
    import h5py

    d, ids = stage
    out1, _ = _annotate(d, tmp_path, _selection(d, ids, 2, 3), round=1, sieve=True, min_pixels=20,
                        sieve_method="knee_disagree", overlap=overlap)  # fmt: skip
    prev = (str(out1["answers_csv"]), str(out1["answers_h5"]), str(out1["targets_h5"]))
    # round 2 answers other regions; with a frozen sieve and a disagree threshold nothing reaches, old targets stay
    sel2 = _selection(d, ids, 0, 2)
    out2, stats = _annotate(d, tmp_path, sel2, round=2, prev=prev, sieve=True, min_pixels=20, overlap=overlap,
                            sieve_method="knee_disagree", disagree_threshold=1.0, freeze_sieve=True)  # fmt: skip
    assert stats["sieve_frozen"] is True
    with h5py.File(out1["targets_h5"]) as t1, h5py.File(out2["targets_h5"]) as t2:
        np.testing.assert_array_equal(t1["labels"][ids[2]][()], t2["labels"][ids[2]][()])
    # without freezing, round 2 re-sieves round 1's answers with its own settings: they change
    (tmp_path / "b").mkdir()
    out3, _ = _annotate(d, tmp_path / "b", sel2, round=2, prev=prev, sieve=True, min_pixels=20, overlap=overlap,
                        sieve_method="knee_disagree", disagree_threshold=1.0)  # fmt: skip
    with h5py.File(out1["targets_h5"]) as t1, h5py.File(out3["targets_h5"]) as t3:
        assert (t3["labels"][ids[2]][()] != 255).sum() > (t1["labels"][ids[2]][()] != 255).sum()


@pytest.mark.parametrize("click_cost", ["region", "classes"])
def test_selection_naming_a_missing_region_or_image_writes_nothing(stage, tmp_path, click_cost):
    d, ids = stage
    sel = _selection(d, ids, 1, 2)
    sel.loc[1, "region"] = 9999
    with pytest.raises(ValueError, match=rf"sel1\.csv: image {ids[1]}: regions \[9999\] do not exist"):
        _annotate(d, tmp_path, sel, sieve=True, click_cost=click_cost)
    sel = _selection(d, ids, 1, 2)
    sel.loc[0, "image"] = "no_such_image"
    with pytest.raises(ValueError, match=r"sel1\.csv: images \['no_such_image'\] are not in the pool"):
        _annotate(d, tmp_path, sel, sieve=False, click_cost=click_cost)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sel1.csv"]


def test_nan_probabilities_stop_sieving_and_write_nothing(stage, tmp_path):
    import shutil

    import h5py

    d, ids = stage
    bad = tmp_path / "bad_probs.h5"
    shutil.copy(d / "probs.h5", bad)
    with h5py.File(bad, "r+") as f:
        arr = f["probs"][ids[0]][()]
        arr[:, 5, 5] = np.nan
        f["probs"][ids[0]][...] = arr
    with pytest.raises(ValueError, match=rf"bad_probs\.h5: image {ids[0]}: probabilities of 1 pixels are NaN"):
        _annotate(d, tmp_path, _selection(d, ids, 0, 2), sieve=True, probs=bad)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad_probs.h5", "sel1.csv"]


def test_reserve_spends_what_the_estimates_left(stage, tmp_path):
    # one selected region estimated at 3 clicks; the rest of the image's regions in reserve. The annotator answers
    # the selection, then the reserve in order while the true clicks fit, until the budget is spent.
    d, ids = stage
    sel = _selection(d, ids, 1, 50)
    true = _true_clicks(d, ids[1], sel)
    assert len(sel) >= 3
    sel["clicks"] = [3] + [1] * (len(sel) - 1)
    sel["reserve"] = [False] + [True] * (len(sel) - 1)
    budget = int(true[0]) + 2
    expected, spent = [int(sel["region"].iloc[0])], int(true[0])
    for rid, c in zip(sel["region"].iloc[1:], true[1:], strict=True):
        if spent + c <= budget:
            expected.append(int(rid))
            spent += int(c)
    out, stats = _annotate(d, tmp_path, sel, sieve=False, click_cost="classes", budget=budget)
    answers = pd.read_csv(out["answers_csv"])
    assert sorted(answers["region"]) == sorted(expected) and stats["clicks_round"] == spent
    assert stats["reserve_answered_round"] == len(expected) - 1 > 0
    assert stats["clicks_estimated_round"] == 3 and stats["skipped_over_budget_round"] == 0
    # one click per region: the reserve is never answered
    out, stats = _annotate(d, tmp_path, sel, round=2, sieve=False, budget=budget)
    assert stats["regions_round"] == 1 and stats["reserve_answered_round"] == 0


def _copy_without(src, dst, group, image_id=None, attrs=None, transform=None):
    """A copy of an artifact without one image (``image_id``), with changed root ``attrs``, or arrays mapped."""
    import h5py

    with h5py.File(src) as f, h5py.File(dst, "w") as g:
        for key, value in {**f.attrs, **(attrs or {})}.items():
            g.attrs[key] = value
        for name, ds in f[group].items():
            if name != image_id:
                g.create_dataset(f"{group}/{name}", data=transform(ds[()]) if transform else ds[()])


def test_regions_of_another_pool_name_the_file_and_image(stage, tmp_path):
    from adaspx import pipeline

    d, ids = stage
    other = tmp_path / "other_regions.h5"
    _copy_without(d / "base.h5", other, "labels", image_id=ids[2])
    _selection(d, ids, 0, 2).to_csv(tmp_path / "sel1.csv", index=False)
    with pytest.raises(ValueError, match=rf"other_regions\.h5: no region map for pool image {ids[2]}"):
        pipeline.annotate(d / "manifest.json", tmp_path / "sel1.csv", [str(other)],
                          None, None, [], [str(d / "base.h5")], answers_csv=tmp_path / "a.csv",
                          answers_h5=tmp_path / "a.h5", targets_h5=tmp_path / "t.h5", stats_json=tmp_path / "s.json",
                          experiment="e", seed=0, round=1, sieve=False)  # fmt: skip
    with pytest.raises(ValueError, match=rf"other_regions\.h5: no region map for pool image {ids[2]}"):
        pipeline.acquire(d / "manifest.json", [str(other)], [], None, tmp_path / "sel.csv", strategy="random",
                         budget=3, experiment="e", seed=0, round=1)  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other_regions.h5", "sel1.csv"]


def test_probabilities_missing_or_at_another_stride_name_the_file_and_image(stage, tmp_path):
    d, ids = stage
    sel = _selection(d, ids, 1, 3)
    missing = tmp_path / "missing_probs.h5"
    _copy_without(d / "probs.h5", missing, "probs", image_id=ids[1])
    with pytest.raises(ValueError, match=rf"missing_probs\.h5: no dataset /probs/{ids[1]}"):
        _annotate(d, tmp_path, sel, sieve=True, probs=missing)
    strided = tmp_path / "strided_probs.h5"
    _copy_without(d / "probs.h5", strided, "probs", attrs={"stride": 2})  # full-resolution arrays, stride 2 claimed
    with pytest.raises(ValueError, match=rf"strided_probs\.h5: image {ids[1]}: probabilities of shape .* do not match"):
        _annotate(d, tmp_path, sel, sieve=True, probs=strided)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["missing_probs.h5", "sel1.csv", "strided_probs.h5"]


def test_half_resolution_probabilities_sieve_as_their_full_resolution_lookup(stage, tmp_path):
    # probabilities stored at stride 2 sieve exactly as the same values repeated to full resolution
    from adaspx.artifacts import at_label_resolution

    d, ids = stage
    sel = _selection(d, ids, 1, 8)
    low = tmp_path / "low_probs.h5"
    _copy_without(d / "probs.h5", low, "probs", attrs={"stride": 2}, transform=lambda p: p[:, ::2, ::2])
    full = tmp_path / "full_probs.h5"
    _copy_without(low, full, "probs", attrs={"stride": 1},
                  transform=lambda p: at_label_resolution(p, (p.shape[1] * 2, p.shape[2] * 2), 2))  # fmt: skip
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    how = {"sieve_method": "knee_disagree"}  # the knee alone sieves nothing on these confidently wrong pixels
    out_low, stats_low = _annotate(d, tmp_path / "a", sel, sieve=True, min_pixels=20, probs=low, **how)
    out_full, stats_full = _annotate(d, tmp_path / "b", sel, sieve=True, min_pixels=20, probs=full, **how)
    assert stats_low == stats_full and stats_low["labeled_pixels"] < stats_low["labeled_pixels_before_sieve"]
    assert out_low["answers_csv"].read_bytes() == out_full["answers_csv"].read_bytes()


def _tampered(text: str, how: str) -> str:
    header, *rows = text.splitlines(keepends=True)
    if how == "row removed":
        return header + "".join(rows[1:])
    if how == "rows reordered":
        return header + "".join([rows[1], rows[0], *rows[2:]])
    fields = rows[0].split(",")  # round,image,region,label,pixels,clicks
    fields[3] = str((int(fields[3]) + 1) % 8)
    return header + ",".join(fields) + "".join(rows[1:])


@pytest.mark.parametrize("how", ["row removed", "rows reordered", "label changed"])
def test_answers_changed_outside_adaspx_stop_the_next_round(stage, tmp_path, how):
    # answers.h5 names answers by their row in answers.csv: an edited table would give pixels another answer's
    # label, so the next round refuses it, naming the file, and writes nothing
    d, ids = stage
    out1, _ = _annotate(d, tmp_path, _selection(d, ids, 0, 3), round=1, sieve=False)
    csv = out1["answers_csv"]
    csv.write_text(_tampered(csv.read_text(), how))
    (tmp_path / "r2").mkdir()
    with pytest.raises(ArtifactError, match=r"answers_csv1\.csv: changed since it was written with \S+answers_h51\.h5"):
        _annotate(d, tmp_path / "r2", _selection(d, ids, 1, 2), round=2, prev=(str(csv), str(out1["answers_h5"]), None),
                  sieve=False)  # fmt: skip
    assert sorted(p.name for p in (tmp_path / "r2").iterdir()) == ["sel2.csv"]


def test_answer_labels_outside_the_class_table_are_refused_where_read(stage, tmp_path):
    from adaspx.artifacts import ANSWERS_DIGEST, answers_digest, read_answers

    d, ids = stage
    out1, _ = _annotate(d, tmp_path, _selection(d, ids, 0, 3), round=1, sieve=False)
    csv = out1["answers_csv"]
    header, first, *rest = csv.read_text().splitlines(keepends=True)
    fields = first.split(",")
    fields[3] = "42"
    csv.write_text(header + ",".join(fields) + "".join(rest))
    with h5py.File(out1["answers_h5"], "a") as f:  # as if adaspx itself had written it
        f.attrs[ANSWERS_DIGEST] = answers_digest(csv.read_text())
    with pytest.raises(ArtifactError, match=r"answers_csv1\.csv: line 2: label 42 is neither a class of the dataset "
                                            r"\(0\.\.7\) nor 255 \(void\)"):  # fmt: skip
        read_answers(csv, out1["answers_h5"], num_classes=8)


# ------------------------------------------------------------------------------- class-set answers (stage)


def _gt_and_regions(d, image_id):
    from adaspx.datasets import read_label
    from adaspx.h5io import Artifact

    with Artifact(d / "base.h5") as base:
        return base.get("labels", image_id), read_label(d / "data" / "labels" / f"{image_id}.png")


@pytest.mark.parametrize(("trim", "void"), [(5, "class"), (3, "drop")])
def test_class_set_answers_name_every_class_and_train_as_labels_or_sets(stage, tmp_path, trim, void):
    import h5py

    from adaspx.artifacts import read_target
    from adaspx.h5io import Artifact

    d, ids = stage
    sel = pd.concat([_selection(d, ids, 0, 6), _selection(d, ids, 2, 4)], ignore_index=True)
    out, stats = _annotate(d, tmp_path, sel, sieve=False, click_cost="classes", answer="classes", trim=trim, void=void)
    answers = pd.read_csv(out["answers_csv"], dtype={"image": str, "classes": str}).fillna({"classes": ""})
    several_pixels = several_in_set = 0
    for image_index in (0, 2):
        image_id = ids[image_index]
        regions, gt = _gt_and_regions(d, image_id)
        mine = answers[answers["image"] == image_id]
        expected, _ = _reference_class_sets(regions, gt, mine["region"].to_numpy(), trim, void)
        assert mine["classes"].tolist() == [" ".join(map(str, e.tolist())) for e in expected]
        assert mine["clicks"].tolist() == [len(e) for e in expected]  # one click per member, void included
        with Artifact(out["targets_h5"]) as t:
            target = read_target(t, image_id)
            labels = t.get("labels", image_id)
        codes, table = (target.codes, target.table) if not isinstance(target, np.ndarray) else (target, None)
        k = 0
        for rid, label, e in zip(mine["region"], mine["label"], expected, strict=True):
            real = e[e != 255]
            inside = regions == rid
            if len(real) >= 2:  # the pixels carry the set, no label; sets are numbered in answer order
                assert label == 255 and (labels[inside] == 255).all()
                assert (codes[inside] == 256 + k).all() and np.flatnonzero(table[k]).tolist() == real.tolist()
                several_pixels += int(inside.sum())
                several_in_set += int(np.isin(gt[inside], real).sum())
                k += 1
            else:  # one class (void aside) labels the region, as a dominant answer; void alone labels nothing
                assert label == (real[0] if len(real) else 255)
                assert (labels[inside] == label).all() and (codes[inside] == label).all()
        assert table is None or len(table) == k
    assert several_pixels > 0 and stats["set_pixels"] == several_pixels
    assert stats["set_precision"] == pytest.approx(several_in_set / several_pixels)
    assert stats["answer"] == "classes" and stats["clicks"] == answers["clicks"].sum()
    assert stats["set_answers_round"] == sum(len(t.split()) - t.split().count("255") >= 2 for t in answers["classes"])
    with h5py.File(out["targets_h5"]) as f:
        assert set(f["sets"]) <= {ids[0], ids[2]}


def test_later_answers_replace_class_sets_and_earlier_sets_survive(stage, tmp_path):
    from adaspx.artifacts import read_target
    from adaspx.h5io import Artifact

    d, ids = stage
    kw = dict(sieve=False, click_cost="classes", answer="classes", trim=0, void="class")
    every = pd.concat([_selection(d, ids, i, 100) for i in range(3)], ignore_index=True)
    out1, _ = _annotate(d, tmp_path, every, round=1, **kw)
    with Artifact(out1["targets_h5"]) as t:
        targets = [read_target(t, image_id) for image_id in ids]
    i = next(i for i, target in enumerate(targets) if len(np.unique(target.codes[target.codes >= 256])) >= 2)
    first = targets[i]
    # round 2 answers, with dominant labels, the region of the first set: its pixels now carry that label
    regions, gt = _gt_and_regions(d, ids[i])
    rid = int(np.unique(regions[first.codes == 256])[0])
    sel = _selection(d, ids, i, 100)
    sel = sel[sel["region"] == rid]
    out2, _ = _annotate(d, tmp_path, sel, round=2, prev=(str(out1["answers_csv"]), str(out1["answers_h5"]), None),
                        sieve=False, click_cost="classes")  # fmt: skip
    answers = pd.read_csv(out2["answers_csv"], dtype={"classes": str})
    values, counts = np.unique(gt[regions == rid], return_counts=True)
    dominant = int(values[counts.argmax()])
    assert answers["classes"].iloc[-1] == str(dominant) and answers["label"].iloc[-1] == dominant
    with Artifact(out2["targets_h5"]) as t:
        second = read_target(t, ids[i])
    assert (second.codes[regions == rid] == dominant).all()
    kept = first.codes >= 256
    kept &= regions != rid
    assert (second.codes[kept] == first.codes[kept] - 1).all()  # the other sets, renumbered without the first
    assert len(second.table) == len(first.table) - 1 and (second.table == first.table[1:]).all()


def test_class_set_answers_need_the_classes_click_cost_and_write_nothing(stage, tmp_path):
    d, ids = stage
    with pytest.raises(ValueError, match="class-set answers are charged one click per class: they need click cost"):
        _annotate(d, tmp_path, _selection(d, ids, 0, 3), sieve=False, answer="classes")
    with pytest.raises(ValueError, match="answer 'sets' unknown; expected one of dominant, classes"):
        _annotate(d, tmp_path, _selection(d, ids, 0, 3), sieve=False, click_cost="classes", answer="sets")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sel1.csv"]


@pytest.mark.parametrize(("edit", "message"), [
    ("3 42", r"line 2: classes '3 42' name a class outside the dataset's 0\.\.7"),
    ("7 3", r"line 2: classes '7 3' are not distinct ascending values in 0\.\.255"),
])  # fmt: skip
def test_class_sets_outside_the_class_table_are_refused_where_read(stage, tmp_path, edit, message):
    from adaspx.artifacts import ANSWERS_DIGEST, answers_digest, read_answers

    d, ids = stage
    out1, _ = _annotate(d, tmp_path, _selection(d, ids, 0, 3), sieve=False, click_cost="classes", answer="classes")
    csv = out1["answers_csv"]
    header, first, *rest = csv.read_text().splitlines(keepends=True)
    fields = first.rstrip("\n").split(",")
    fields[6] = edit
    csv.write_text(header + ",".join(fields) + "\n" + "".join(rest))
    with h5py.File(out1["answers_h5"], "a") as f:  # as if adaspx itself had written it
        f.attrs[ANSWERS_DIGEST] = answers_digest(csv.read_text())
    with pytest.raises(ArtifactError, match=r"answers_csv1\.csv: " + message):
        read_answers(csv, out1["answers_h5"], num_classes=8)


# ------------------------------------------------------------------------- overlapping answers: painter


def test_painter_targets_skip_void_answers_and_keep_earlier_labels_under_sieved_pixels():
    from adaspx.annotation import painted_targets

    # 1x6 image; round 1: answer row 0 (label 2) on pixels 0-3; round 2: row 1 (void) on pixels 0-1, row 2
    # (label 5) on pixels 2-5, whose sieve drops pixel 3
    layers = np.array([[[1, 1, 1, 1, 0, 0]], [[2, 2, 3, 3, 3, 3]]], np.uint16)
    rows, labels = np.array([0, 1, 2]), np.array([2, 255, 5])
    seen = []

    def sieved(pixels, prows):
        seen.append((pixels.tolist(), prows.tolist()))
        return (pixels == 3) & (prows == 2)

    plain, target = painted_targets(layers, rows, labels, sieved)
    assert plain[0].tolist() == [2, 2, 5, 5, 5, 5]  # the void answer paints nothing
    assert target[0].tolist() == [2, 2, 5, 2, 5, 5]  # the sieved pixel keeps the earlier label
    assert seen[1] == ([0, 1, 2, 3, 4, 5], [1, 1, 2, 2, 2, 2])  # the sieve sees whole regions


def test_painter_with_frozen_sieving_paints_only_the_new_layers_over_the_frozen_targets():
    from adaspx.annotation import painted_targets

    # 1x6 image; round 1 (row 0, label 2, pixels 0-3) was sieved in its own round to [2, 255, 2, 2] (frozen);
    # round 2 (row 1, label 5, pixels 3-5) is sieved now, dropping pixel 5; the sieve never sees round 1 again
    layers = np.array([[[1, 1, 1, 1, 0, 0]], [[0, 0, 0, 2, 2, 2]]], np.uint16)
    frozen = np.array([[2, 255, 2, 2, 255, 255]], np.uint8)
    seen = []

    def sieved(pixels, prows):
        seen.append(prows.tolist())
        return pixels == 5

    plain, target = painted_targets(layers, np.array([0, 1]), np.array([2, 5]), sieved, (frozen, 1))
    assert plain[0].tolist() == [2, 2, 2, 5, 5, 5]
    assert target[0].tolist() == [2, 255, 2, 5, 5, 255]  # pixel 5: sieved, keeps the frozen (no) label
    assert seen == [[1, 1, 1]]


def test_painter_class_set_over_an_earlier_label_keeps_the_label(stage, tmp_path):
    from adaspx.artifacts import read_target
    from adaspx.h5io import Artifact

    d, ids = stage
    # round 1: dominant answers on every region of image 0; round 2: class sets on the same regions
    every = _selection(d, ids, 0, 100)
    out1, _ = _annotate(d, tmp_path, every, round=1, sieve=False, click_cost="classes")
    prev = (str(out1["answers_csv"]), str(out1["answers_h5"]), None)
    outs = {}
    for overlap in ("painter", "latest"):
        sub = tmp_path / overlap
        sub.mkdir()
        outs[overlap], _ = _annotate(d, sub, every, round=2, prev=prev, sieve=False, click_cost="classes",
                                     answer="classes", trim=0, overlap=overlap)  # fmt: skip
    with Artifact(out1["targets_h5"]) as t:
        before = t.get("labels", ids[0])
    with Artifact(outs["painter"]["targets_h5"]) as t:
        painter = read_target(t, ids[0])
    with Artifact(outs["latest"]["targets_h5"]) as t:
        latest = read_target(t, ids[0])
    assert not isinstance(latest, np.ndarray) and (latest.codes >= 256).any()  # some regions hold several classes
    # latest: the set replaces the label; painter: the set paints no label, the earlier label stays, and the set
    # applies only where no label was painted (void-dominant regions of round 1)
    codes = painter if isinstance(painter, np.ndarray) else painter.codes
    labeled = before != 255
    assert (codes[labeled] == before[labeled]).all()
    in_set = latest.codes >= 256
    assert ((codes >= 256) == (in_set & ~labeled)).all()


def test_painter_overlap_in_the_stage_against_painting_by_hand(stage, tmp_path):
    # round 1 answers base regions of image 0; round 2 answers coarser regions over them, and sieving re-sieves both
    # rounds with the model's probabilities (a quarter of every image confidently wrong)
    from adaspx import pipeline
    from adaspx.annotation import knee_threshold
    from adaspx.artifacts import SCHEMA_SUPERPIXELS, AnswerMaps, Probabilities
    from adaspx.h5io import Artifact, ArtifactWriter

    d, ids = stage
    with Artifact(d / "base.h5") as base:
        maps = {i: base.get("labels", i) for i in ids}
    coarse = {i: (m // 2 * 2).astype(m.dtype) for i, m in maps.items()}  # pairs of base regions merged
    with ArtifactWriter(tmp_path / "coarse.h5", SCHEMA_SUPERPIXELS) as w:
        for i, m in coarse.items():
            w.add("labels", i, m, regions=len(np.unique(m)))
    # the model's confidence in the true class grows from left to right: the knee sieves each region's left part
    with ArtifactWriter(tmp_path / "ramp.h5", pipeline.SCHEMA_PROBS, stride=1) as w:
        for i in ids:
            gt = _gt_and_regions(d, i)[1].astype(np.int64)
            c, wd = 8, gt.shape[1]
            conf = np.broadcast_to(0.2 + 0.75 * (np.arange(wd) / (wd - 1)) ** 3, gt.shape)
            ramp = np.repeat(((1 - conf) / (c - 1))[None], c, axis=0)
            np.put_along_axis(ramp, np.where(gt == 255, 0, gt)[None], conf[None], axis=0)
            w.add("probs", i, ramp.astype(np.float16))
    out1, _ = _annotate(d, tmp_path, _selection(d, ids, 0, 4), round=1, sieve=False, overlap="painter")
    sel2 = pd.DataFrame({"rank": [0, 1], "image": ids[0], "region": np.unique(coarse[ids[0]])[:2], "score": 1.0,
                         "size": 1, "clicks": 1, "predicted": 0, "uncertainty": 0.0})  # fmt: skip
    sel2.to_csv(tmp_path / "sel2.csv", index=False)
    outs = {}
    for overlap in ("latest", "painter"):
        o = {k: tmp_path / f"{overlap}_{k}" for k in ("answers.csv", "answers.h5", "targets.h5", "stats.json")}
        pipeline.annotate(d / "manifest.json", tmp_path / "sel2.csv", [str(tmp_path / "coarse.h5")],
                          str(out1["answers_csv"]), str(out1["answers_h5"]), [str(tmp_path / "ramp.h5")],
                          [str(d / "base.h5")], answers_csv=o["answers.csv"], answers_h5=o["answers.h5"],
                          targets_h5=o["targets.h5"], stats_json=o["stats.json"], experiment="e", seed=0, round=2,
                          sieve=True, min_pixels=5, overlap=overlap)  # fmt: skip
        outs[overlap] = o
    answers = pd.read_csv(outs["painter"]["answers.csv"])
    with Probabilities([str(tmp_path / "ramp.h5")]) as probs:
        p = probs.get(ids[0], coarse[ids[0]].shape)

    # by hand: every answer in order over its whole region, void painting nothing, sieved pixels keeping what was
    # there (painter); or the latest answer of each pixel, sieved on its own pixels (latest)
    def kept(inside, label):  # the pixels of a region its knee keeps (regions of at least 5 pixels are sieved)
        conf = p[label][inside]
        thr = knee_threshold(conf) if inside.sum() >= 5 else None
        keep = inside.copy()
        keep[inside] = conf >= thr if thr is not None else True
        return keep

    painted = np.full(coarse[ids[0]].shape, 255, np.uint8)
    owner = np.full(painted.shape, -1)
    for k, a in answers.iterrows():
        inside = (maps if a["round"] == 1 else coarse)[ids[0]] == a["region"]
        owner[inside] = k
        if a["label"] != 255:
            painted[kept(inside, a["label"])] = a["label"]
    latest = np.full(painted.shape, 255, np.uint8)
    for k, a in answers.iterrows():
        if a["label"] != 255 and (owner == k).any():
            latest[kept(owner == k, a["label"])] = a["label"]
    assert (painted != latest).any()  # the two rules differ on this image
    with Artifact(outs["painter"]["targets.h5"]) as t:
        np.testing.assert_array_equal(t.get("labels", ids[0]), painted)
    with Artifact(outs["latest"]["targets.h5"]) as t:
        np.testing.assert_array_equal(t.get("labels", ids[0]), latest)
    with AnswerMaps(outs["painter"]["answers.h5"]) as a:
        amap, _ = a.read(ids[0])
        layers = a.layers(ids[0], amap)
    assert layers.shape[0] == 2 and ((layers[1] != 0) == np.isin(coarse[ids[0]], sel2["region"])).all()


# ------------------------------------------------------------------------ the default sieve.min_pixels (null)


def test_default_min_pixels_is_twice_the_mean_base_superpixel_over_all_shards(tmp_path):
    # sieve.min_pixels: null = twice the mean size of the base superpixels, over every superpixel of every image
    # of every shard (the reference's 512 px: twice the ~256 px SEEDS-8192 superpixel of a 1024 x 2048 image)
    from adaspx.artifacts import SCHEMA_SUPERPIXELS
    from adaspx.h5io import ArtifactWriter
    from adaspx.pipeline.answers import _scaled_min_pixels

    a = np.zeros((10, 12), np.uint16)  # 4 quadrants of 30 px
    a[:5, 6:], a[5:, :6], a[5:, 6:] = 1, 2, 3
    b = np.repeat(np.array([[0, 0, 0, 1, 1, 1, 2, 2, 2, 2]], np.uint16), 6, axis=0)  # strips of 18, 18, 24 px
    c = np.zeros((8, 8), np.uint16)
    c[:, 5:] = 9  # 2 regions (40 and 24 px), ids not from 0
    with ArtifactWriter(tmp_path / "base0.h5", SCHEMA_SUPERPIXELS, shard=0, shards=2) as w:
        w.add("labels", "a", a, regions=4)
        w.add("labels", "b", b, regions=3)
    with ArtifactWriter(tmp_path / "base1.h5", SCHEMA_SUPERPIXELS, shard=1, shards=2) as w:
        w.add("labels", "c", c)  # no regions attribute: counted from the map
    shards = [str(tmp_path / "base0.h5"), str(tmp_path / "base1.h5")]
    # 244 px in 9 superpixels: mean 27.11 px, twice that 54.2 -> 54
    assert _scaled_min_pixels(shards) == 54
    # one shard: 180 px in 7 superpixels -> 51.4 -> 51 (the mean of the per-image means, 25, would give 50)
    assert _scaled_min_pixels(shards[:1]) == 51
    # 64 px in 2 superpixels -> exactly 64
    assert _scaled_min_pixels(shards[1:]) == 64


def _sieved_regions(d, out, image_id):
    """The answered regions of ``image_id`` (base superpixels) of which sieving dropped pixels."""
    from adaspx.h5io import Artifact

    answers = pd.read_csv(out["answers_csv"], dtype={"image": str})
    answers = answers[(answers["image"] == image_id) & (answers["label"] != 255)]
    with Artifact(d / "base.h5") as base, Artifact(out["targets_h5"]) as t:
        regions, target = base.get("labels", image_id), t.get("labels", image_id)
    return {
        r for r, n in zip(answers["region"], answers["pixels"], strict=True) if (target[regions == r] != 255).sum() < n
    }


def test_shipped_default_min_pixels_sieves_with_the_derived_minimum(stage, tmp_path):
    # annotate with min_pixels None (the schema's default) sieves exactly the answered regions of at least twice
    # the mean base superpixel: here base superpixels of 4 x 40 = 160 px, so 320 px, between the answered sizes
    from pathlib import Path

    import yaml

    from adaspx.artifacts import SCHEMA_SUPERPIXELS
    from adaspx.h5io import ArtifactWriter

    d, ids = stage
    schema = yaml.safe_load((Path(__file__).parents[1] / "workflow" / "schemas" / "config.schema.yaml").read_text())
    assert schema["properties"]["sieve"]["properties"]["min_pixels"]["default"] is None
    with ArtifactWriter(tmp_path / "fine_base.h5", SCHEMA_SUPERPIXELS) as w:
        for image_id in ids:
            w.add("labels", image_id, np.repeat(np.arange(8, dtype=np.uint16), 4)[:, None].repeat(40, axis=1),
                  regions=8)  # fmt: skip
    sel = _selection(d, ids, 1, 6)
    runs = {}
    for name, min_pixels in (("default", None), ("explicit", 320), ("every", 1)):
        (tmp_path / name).mkdir()
        runs[name] = _annotate(d, tmp_path / name, sel, base=tmp_path / "fine_base.h5", sieve=True,
                               min_pixels=min_pixels, sieve_method="knee_disagree")  # fmt: skip
    (out, stats), (_, explicit), (out_every, _) = runs["default"], runs["explicit"], runs["every"]
    assert stats["sieve_min_pixels"] == 320 and stats == explicit
    sizes = dict(zip(*pd.read_csv(out["answers_csv"])[["region", "pixels"]].to_numpy().T, strict=True))
    sieved, sieved_every = _sieved_regions(d, out, ids[1]), _sieved_regions(d, out_every, ids[1])
    assert sieved == {r for r in sieved_every if sizes[r] >= 320}
    assert sieved and sieved != sieved_every  # regions on both sides of the minimum lose pixels when sieved


@pytest.mark.parametrize("overlap", ["painter", "latest"])
def test_people_answers_and_a_correction_of_an_earlier_answer_make_the_targets(stage, tmp_path, overlap):
    from adaspx.h5io import Artifact
    from adaspx.pipeline.people import PEOPLE_COLUMNS, PeopleError

    d, ids = stage
    with Artifact(d / "base.h5") as base:
        maps = {i: base.get("labels", i) for i in ids}
    out1, _ = _annotate(d, tmp_path, _selection(d, ids, 0, 4), round=1, sieve=False)
    prev = (str(out1["answers_csv"]), str(out1["answers_h5"]), None)
    with Artifact(out1["targets_h5"]) as t:
        before = t.get("labels", ids[0])
    # round 2 asks two regions of image 1; a person answers class 3 and "can't tell", and changes round 1's
    # answer to the first region of image 0 to class 5
    sel2 = _selection(d, ids, 1, 2)
    ra, rb = sel2["region"].tolist()
    r0 = int(np.unique(maps[ids[0]])[0])
    people = pd.DataFrame(
        [(2, ids[1], ra, 3, "a@example.com", "t1", 7, 1), (2, ids[1], rb, 255, "a@example.com", "t1", 7, 1),
         (1, ids[0], r0, 5, "b@example.com", "t2", 3, 2)],
        columns=PEOPLE_COLUMNS,
    )  # fmt: skip
    people.to_csv(tmp_path / "people.csv", index=False)
    kw = dict(round=2, prev=prev, sieve=False, overlap=overlap, people_csv=str(tmp_path / "people.csv"))
    with pytest.raises(ValueError, match="corrects answers of round 1, whose region maps are not given"):
        _annotate(d, tmp_path, sel2, **kw)
    out2, stats = _annotate(d, tmp_path, sel2, earlier_regions={1: [str(d / "base.h5")]}, **kw)

    with Artifact(out2["targets_h5"]) as t:
        got0, got1 = t.get("labels", ids[0]), t.get("labels", ids[1])
    want0 = before.copy()
    want0[maps[ids[0]] == r0] = 5  # the correction relabels its whole region, over what was there
    want1 = np.full(maps[ids[1]].shape, 255, np.uint8)
    want1[maps[ids[1]] == ra] = 3  # "can't tell" labels nothing
    np.testing.assert_array_equal(got0, want0)
    np.testing.assert_array_equal(got1, want1)
    answers = pd.read_csv(out2["answers_csv"], dtype={"image": str})
    new = answers[answers["round"] == 2]
    assert new[["image", "region", "label", "clicks", "annotator", "asked"]].values.tolist() == [
        [ids[0], r0, 5, 0, "b@example.com", 1],
        [ids[1], ra, 3, 1, "a@example.com", 2],
        [ids[1], rb, 255, 1, "a@example.com", 2],
    ]
    assert new["pixels"].tolist() == [int((maps[i] == r).sum()) for i, r in ((ids[0], r0), (ids[1], ra), (ids[1], rb))]
    assert stats["corrections_round"] == 1 and stats["regions_round"] == 2 and stats["clicks_round"] == 2
    # an answer to a round still to come is refused
    people.loc[2, "asked"] = 3
    people.to_csv(tmp_path / "people.csv", index=False)
    (tmp_path / "later").mkdir()
    with pytest.raises(PeopleError, match="answers a query of round 3"):
        _annotate(d, tmp_path / "later", sel2, **kw)
    assert list((tmp_path / "later").iterdir()) == [tmp_path / "later" / "sel2.csv"]  # nothing written
