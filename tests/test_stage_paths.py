"""Probabilities stored at ``infer.stride`` 2 through merge, acquire and annotate.

Label pixel (y, x) reads probability pixel (y // 2, x // 2): every stage must decide as it does on the same values
repeated to full resolution (nearest upsampling x2, cropped to the label map) and stored at stride 1. The pool's
images are 33 x 37, so the last row and column of stored probabilities cover one label row or column only.
"""

import json

import numpy as np
import pandas as pd
import pytest
from stage_helpers import small_pool

from adaspx import acquisition as acq
from adaspx.artifacts import at_label_resolution
from adaspx.h5io import Artifact, ArtifactWriter

HEIGHT, WIDTH = 33, 37
PROVENANCE = {"experiment": "e", "seed": 0, "round": 1}  # what the workflow passes every round stage


@pytest.fixture(scope="module")
def strided(tmp_path_factory):
    """A pool with ``low.h5`` (stride 2, shape (C, 17, 19)), ``up.h5`` (the same values at stride 1) and the
    adaptive regions merged from each."""
    from adaspx import pipeline

    d = tmp_path_factory.mktemp("strided")
    rng = np.random.default_rng(3)

    def noisy_model(gt, c):  # the true class on most pixels, another class on 8% of them, confidence 0.3..1
        guess = np.where(gt == 255, 0, gt)
        wrong = rng.random(gt.shape) < 0.08
        guess = np.where(wrong, (guess + rng.integers(1, c, gt.shape)) % c, guess)
        p = rng.random((c, *gt.shape)) * 0.05
        np.put_along_axis(p, guess[None], rng.uniform(0.3, 1.0, gt.shape)[None], axis=0)
        return p / p.sum(axis=0)

    _, ids = small_pool(d, seed=4, n_segments=14, probs=noisy_model, height=HEIGHT, width=WIDTH)
    with (
        Artifact(d / "probs.h5") as full,
        ArtifactWriter(d / "low.h5", pipeline.SCHEMA_PROBS, stride=2) as low,
        ArtifactWriter(d / "up.h5", pipeline.SCHEMA_PROBS, stride=1) as up,
    ):
        for image_id in ids:
            small = full.get("probs", image_id)[:, ::2, ::2]  # float16, as infer stores them
            assert small.shape == (8, 17, 19)
            low.add("probs", image_id, small)
            up.add("probs", image_id, at_label_resolution(small, (HEIGHT, WIDTH), 2))
    for name in ("low", "up"):
        pipeline.merge_superpixels(d / "base.h5", d / f"{name}.h5", d / f"regions_{name}.h5", eps=0.1,
                                   features=["entropy"], threads=1, **PROVENANCE)  # fmt: skip
    return d, ids


def test_upsampled_file_repeats_each_stored_pixel_over_its_block(strided):
    # the two inputs really differ in layout: a stored pixel (i, j) is label pixels 2i..2i+1, 2j..2j+1
    d, ids = strided
    with Artifact(d / "low.h5") as low, Artifact(d / "up.h5") as up:
        assert low.attrs["stride"] == 2 and up.attrs["stride"] == 1
        small, big = low.get("probs", ids[0]), up.get("probs", ids[0])
    assert big.shape == (8, HEIGHT, WIDTH)
    for y, x in [(0, 0), (1, 1), (5, 8), (32, 36), (31, 35), (32, 0)]:
        np.testing.assert_array_equal(big[:, y, x], small[:, y // 2, x // 2])
    assert not np.array_equal(big[:, 0, 1], big[:, 0, 2])  # neighbouring blocks hold other values


def test_merge_at_stride_2_equals_merge_of_the_upsampled_probabilities(strided):
    d, ids = strided
    with (
        Artifact(d / "regions_low.h5") as low,
        Artifact(d / "regions_up.h5") as up,
        Artifact(d / "base.h5") as base,
    ):
        merged = 0
        for image_id in ids:
            np.testing.assert_array_equal(low.get("labels", image_id), up.get("labels", image_id))
            merged += len(np.unique(base.get("labels", image_id))) - len(np.unique(low.get("labels", image_id)))
        assert merged > 0  # some base superpixels were merged
        for table in ("stats", "image_stats"):
            a, b = low.table(table), up.table(table)
            assert sorted(a) == sorted(b)
            for column in a:
                if a[column].dtype.kind == "f":
                    np.testing.assert_allclose(a[column], b[column], rtol=1e-6, err_msg=column)
                else:
                    np.testing.assert_array_equal(a[column], b[column], err_msg=column)


def _acquire(d, regions, probs, out, strategy, budget=8, click_cost="classes"):
    from adaspx import pipeline

    pipeline.acquire(d / "manifest.json", [str(d / regions)], [str(d / probs)], None, out, strategy=strategy,
                     budget=budget, **PROVENANCE, click_cost=click_cost, size_exponent=0.5)  # fmt: skip
    return pd.read_csv(out, dtype={"image": str})


@pytest.mark.parametrize("regions", ["base", "adaptive"])
@pytest.mark.parametrize("strategy", acq.STRATEGIES)
def test_acquire_at_stride_2_selects_as_at_stride_1(strided, tmp_path, strategy, regions):
    # base regions: acquire computes the statistics from the probabilities; adaptive ones: it reads merge's
    d, _ = strided
    files = {"low": ("base.h5", "low.h5"), "up": ("base.h5", "up.h5")}
    if regions == "adaptive":
        files = {"low": ("regions_low.h5", "low.h5"), "up": ("regions_up.h5", "up.h5")}
    got = _acquire(d, *files["low"], tmp_path / "low.csv", strategy)
    expected = _acquire(d, *files["up"], tmp_path / "up.csv", strategy)
    assert len(got) > 0 and (got["clicks"] > 1).any()  # costs come from the predicted classes
    floats = ["score", "uncertainty"]
    pd.testing.assert_frame_equal(got.drop(columns=floats), expected.drop(columns=floats))
    np.testing.assert_allclose(got[floats].to_numpy(), expected[floats].to_numpy(), rtol=1e-6)


def _annotate(d, out, selection, probs, regions, **kw):
    from adaspx import pipeline

    out.mkdir()
    names = {k: out / f"{k}.{ext}" for k, ext in
             (("answers_csv", "csv"), ("answers_h5", "h5"), ("targets_h5", "h5"), ("stats_json", "json"))}  # fmt: skip
    pipeline.annotate(d / "manifest.json", selection, [str(d / regions)], None, None, [str(d / probs)],
                      [str(d / "base.h5")], **PROVENANCE, sieve=True, **names, **kw)  # fmt: skip
    return names, json.loads(names["stats_json"].read_text())


@pytest.mark.parametrize("method", ["knee", "knee_disagree"])
def test_annotate_at_stride_2_answers_and_sieves_as_at_stride_1(strided, tmp_path, method):
    d, ids = strided
    selection = _acquire(d, "regions_low.h5", "low.h5", tmp_path / "sel.csv", "margin", 15, "region")
    how = {"min_pixels": 8, "sieve_method": method}
    low, stats_low = _annotate(d, tmp_path / "low", tmp_path / "sel.csv", "low.h5", "regions_low.h5", **how)
    up, stats_up = _annotate(d, tmp_path / "up", tmp_path / "sel.csv", "up.h5", "regions_up.h5", **how)
    assert stats_low == stats_up
    assert stats_low["regions_round"] == len(selection)
    assert 0 < stats_low["labeled_pixels"] < stats_low["labeled_pixels_before_sieve"]  # sieving dropped pixels
    assert low["answers_csv"].read_bytes() == up["answers_csv"].read_bytes()
    with (
        Artifact(low["targets_h5"]) as t_low,
        Artifact(up["targets_h5"]) as t_up,
        Artifact(low["answers_h5"]) as a_low,
        Artifact(up["answers_h5"]) as a_up,
    ):
        for image_id in ids:
            np.testing.assert_array_equal(t_low.get("labels", image_id), t_up.get("labels", image_id))
            np.testing.assert_array_equal(a_low.get("labels", image_id), a_up.get("labels", image_id))
            np.testing.assert_array_equal(a_low.get("rows", image_id), a_up.get("rows", image_id))
