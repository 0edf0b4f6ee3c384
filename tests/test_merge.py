"""Region statistics and the adaptive merge: compiled kernel against the readable reference, plus pinned semantics."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import jensenshannon

from adaspx import merge
from adaspx.merge import RegionStats, adaptive_merge, merge_many, region_stats, region_stats_and_merge

sys.path.insert(0, str(Path(__file__).resolve().parent))
from merge_reference import (  # noqa: E402
    reference_adjacency,
    reference_js,
    reference_merge,
    reference_region_stats,
)

kernel = merge._kernel
LABEL_DTYPES = [np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64, np.uint64]


def single_thread_merge(labels, probs, eps=0.1, channel_axis=-1, max_visited=None):
    """The kernel on one thread: region sums in raster order, bit-identical to the reference's sums."""
    return merge._merge_one(labels, probs, eps, channel_axis, max_visited, 1, False)


def softmax(logits, axis=-1):
    e = np.exp(logits - logits.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def make_case(
    seed,
    H,
    W,
    C,
    *,
    stride=1,
    n_ids=12,
    layout="random",
    dtype=np.float32,
    label_dtype=np.int32,
    spread="small",
    temperature=0.3,
    quantized=False,
):
    """Random label map with non-contiguous ids and probabilities where neighbours are often similar."""
    rng = np.random.default_rng(seed)
    info = np.iinfo(label_dtype)
    if spread == "huge" and info.max > 2**40:
        pool = rng.choice(2**40, size=n_ids, replace=False).astype(np.int64) * 1000
    else:
        lo = max(int(info.min), -100)
        hi = min(int(info.max), 60000)
        pool = rng.choice(np.arange(lo, hi + 1), size=min(n_ids, hi - lo + 1), replace=False)
    if layout == "single":
        labels = np.full((H, W), pool[0])
    elif layout == "blocks":  # blocky regions; the same id on several blocks makes disconnected regions
        bh, bw = rng.integers(1, 5, size=2)
        grid = rng.choice(pool, size=(-(-H // bh), -(-W // bw)))
        labels = np.repeat(np.repeat(grid, bh, axis=0), bw, axis=1)[:H, :W]
    else:  # many 1-pixel and disconnected regions
        labels = rng.choice(pool, size=(H, W))
    labels = labels.astype(label_dtype)
    h, w = -(-H // stride), -(-W // stride)
    if quantized:  # few distinct vectors: exact ties in uncertainty, JS exactly 0
        palette = softmax(rng.normal(size=(3, C)))
        probs = palette[rng.integers(0, 3, size=(h, w))]
    else:
        base = rng.normal(size=C) * 2.0
        probs = softmax(base + temperature * rng.normal(size=(h, w, C)))
    return labels, probs.astype(dtype)


@st.composite
def cases(draw):
    H = draw(st.integers(1, 32))
    W = draw(st.integers(1, 32))
    params = dict(
        C=draw(st.sampled_from([2, 3, 4, 5, 7, 8, 9, 16, 17, 19, 24, 33, 40])),
        stride=draw(st.sampled_from([1, 1, 1, 2, 3, 4])),
        n_ids=draw(st.integers(1, 40)),
        layout=draw(st.sampled_from(["random", "blocks", "blocks", "single"])),
        dtype=draw(st.sampled_from([np.float32, np.float64])),
        label_dtype=draw(st.sampled_from(LABEL_DTYPES)),
        spread=draw(st.sampled_from(["small", "small", "huge"])),
        temperature=draw(st.sampled_from([0.02, 0.1, 0.3, 1.0, 3.0])),
        quantized=draw(st.booleans()),
    )
    labels, probs = make_case(draw(st.integers(0, 2**32 - 1)), H, W, **params)
    channel_axis = draw(st.sampled_from([-1, 0]))
    if channel_axis == 0:
        probs = np.ascontiguousarray(np.moveaxis(probs, -1, 0))
    eps = draw(st.sampled_from([0.01, 0.05, 0.1, 0.2, 0.4, 0.9]))
    max_visited = draw(st.one_of(st.none(), st.integers(0, 25)))
    return labels, probs, channel_axis, eps, max_visited


# ------------------------------------------------------------------------------------------------------------------
# kernel == reference
# ------------------------------------------------------------------------------------------------------------------


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_kernel_matches_reference(case):
    labels, probs, channel_axis, eps, max_visited = case
    expected = reference_merge(labels, probs, eps, channel_axis, max_visited)
    got = single_thread_merge(labels, probs, eps, channel_axis, max_visited)
    assert got.dtype == labels.dtype and got.shape == labels.shape
    np.testing.assert_array_equal(got, expected)

    stats = region_stats(labels, probs, channel_axis=channel_axis)
    ref = reference_region_stats(labels, probs, channel_axis)
    np.testing.assert_array_equal(stats.ids, ref["ids"])
    np.testing.assert_array_equal(stats.counts, ref["counts"])
    np.testing.assert_array_equal(stats.predicted, ref["predicted"])
    np.testing.assert_allclose(stats.mean_probs, ref["mean_probs"], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(stats.uncertainty, ref["uncertainty"], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize(("stride", "channel_axis"), [(1, -1), (1, 0), (2, -1), (3, 0)])
def test_all_threads_equal_one_thread(seed, stride, channel_axis):
    labels, probs = make_case(seed, 96, 64, 19, stride=stride, n_ids=300, layout="blocks", temperature=0.2)
    if channel_axis == 0:
        probs = np.ascontiguousarray(np.moveaxis(probs, -1, 0))
    one = single_thread_merge(labels, probs, 0.1, channel_axis)
    np.testing.assert_array_equal(adaptive_merge(labels, probs, 0.1, channel_axis=channel_axis), one)
    np.testing.assert_array_equal(one, reference_merge(labels, probs, 0.1, channel_axis))


@pytest.mark.parametrize("C", [2, 3, 4, 7, 8, 9, 15, 16, 17, 19, 40])
@pytest.mark.parametrize("layout", ["hwc", "chw"])
@pytest.mark.parametrize("stride", [1, 3])
def test_simd_levels_agree_bitwise(C, layout, stride):
    labels, probs = make_case(C, 13, 37, C, stride=stride, n_ids=20, layout="blocks")
    chw = layout == "chw"
    if chw:
        probs = np.ascontiguousarray(np.moveaxis(probs, -1, 0))
    lo = int(labels.min())
    span = int(labels.max()) - lo + 1
    results = []
    try:
        for level in (2, 1, 0):
            kernel.set_simd_level(level)
            results.append(kernel.region_sums(labels, lo, span, probs, chw, stride, 1e-2, 1, True))
    finally:
        kernel.set_simd_level(2)
    for other in results[1:]:
        for a, b in zip(results[0], other, strict=True):
            if isinstance(a, np.ndarray):
                np.testing.assert_array_equal(a, b)
            else:
                assert a == b


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64])
def test_relabel_is_a_table_lookup_and_refuses_labels_outside_the_table(dtype):
    labels = np.array([[-3, 0, 2], [1, 1, -3]]) if np.dtype(dtype).kind == "i" else np.array([[5, 0, 2], [1, 1, 5]])
    labels = labels.astype(dtype)
    base = int(labels.min())
    table = np.arange(int(labels.max()) - base + 1)[::-1] * 2
    expected = np.array([[table[int(v) - base] for v in row] for row in labels], dtype=dtype)
    got = merge.relabel(labels, table, base)
    assert got.dtype == labels.dtype
    np.testing.assert_array_equal(got, expected)
    with pytest.raises(ValueError, match="do not all index a table"):
        merge.relabel(labels, table[:-1], base)
    with pytest.raises(ValueError, match="do not all index a table"):
        merge.relabel(labels, table, base + 1)


def brute_force_pairs(labels: np.ndarray) -> set[tuple[int, int]]:
    """Every (left, right) and (top, bottom) pair of 4-adjacent pixels with different labels."""
    lab = labels.astype(np.int64)
    right = np.stack([lab[:, :-1].ravel(), lab[:, 1:].ravel()], axis=1)
    down = np.stack([lab[:-1, :].ravel(), lab[1:, :].ravel()], axis=1)
    both = np.concatenate([right, down])
    return {(int(a), int(b)) for a, b in both[both[:, 0] != both[:, 1]]}


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64, np.uint64])
@pytest.mark.parametrize("width", [1, 2, 8, 9, 15, 16, 17, 33, 70])
def test_adjacent_pairs_every_label_type_and_simd_level(dtype, width):
    """The pass collects every 4-adjacent pair of different labels (as slots, label - min), whatever the label type;
    the AVX2 scan (16- and 32-bit labels, 8 or 16 labels at a time) writes exactly what the plain C scan writes."""
    rng = np.random.default_rng(width)
    info = np.iinfo(dtype)
    lo = max(int(info.min), -100)
    blocks = rng.integers(0, 6, size=(7, -(-width // 4) + 1))  # blocks of 3x4 pixels, a few values, plus noise
    labels = np.repeat(np.repeat(blocks, 3, axis=0), 4, axis=1)[:20, :width]
    labels = np.where(rng.random(labels.shape) < 0.05, rng.integers(0, 6, size=labels.shape), labels) + lo
    labels = labels.astype(dtype)
    probs = np.full((20, width, 3), 1 / 3, dtype=np.float32)
    outputs = []
    try:
        for level in (2, 0):
            kernel.set_simd_level(level)
            outputs.append(kernel.region_sums(labels, lo, 6, probs, False, 1, 1e-2, 1, True)[-1])
    finally:
        kernel.set_simd_level(2)
    np.testing.assert_array_equal(outputs[0], outputs[1])
    expected = {(a - lo, b - lo) for a, b in brute_force_pairs(labels)}
    assert {(int(a), int(b)) for a, b in outputs[0]} == expected


# ------------------------------------------------------------------------------------------------------------------
# pinned semantics
# ------------------------------------------------------------------------------------------------------------------


def constant_regions(labels, vectors):
    """Probabilities where every pixel of label i carries vectors[i]."""
    labels = np.asarray(labels)
    return np.asarray([vectors[i] for i in labels.ravel()], dtype=np.float64).reshape(*labels.shape, -1)


def test_compares_against_seed_mean_not_group_mean_nor_union_find():
    a, b, c = [0.5, 0.5], [0.6, 0.4], [0.7, 0.3]  # uncertainty a > b > c
    labels = np.array([[0] + [1] * 10 + [2]])  # b is large, so the group mean of a and b is close to b
    probs = constant_regions(labels, [a, b, c])
    eps = 0.1
    group_mean = (np.asarray(a) + 10 * np.asarray(b)) / 11
    assert reference_js(a, b) < eps and reference_js(b, c) < eps  # union-find over edges would merge all
    assert reference_js(a, c) >= eps  # ... but c is too far from the seed a
    assert reference_js(group_mean, c) < eps  # ... and a group mean would have pulled c in
    merged = adaptive_merge(labels, probs, eps)
    np.testing.assert_array_equal(merged, [[0] * 11 + [2]])


def test_seed_order_descending_uncertainty_then_ascending_id():
    flat, peaked = [0.5, 0.5], [0.9, 0.1]
    # the more uncertain region's id wins, whatever the ids
    labels = np.array([[3, 9]])
    np.testing.assert_array_equal(
        adaptive_merge(labels, constant_regions(labels, {3: peaked, 9: peaked}), 0.5), [[3, 3]]
    )
    probs = constant_regions(labels, {3: peaked, 9: flat})
    np.testing.assert_array_equal(adaptive_merge(labels, probs, 0.9), [[9, 9]])
    # equal uncertainty: the smaller id seeds
    labels = np.array([[7, 4, 4]])
    np.testing.assert_array_equal(
        adaptive_merge(labels, constant_regions(labels, {4: flat, 7: flat}), 0.1), [[4, 4, 4]]
    )


def test_threshold_is_strict():
    labels = np.array([[0, 0, 1]])
    probs = constant_regions(labels, [[0.5, 0.3, 0.2], [0.45, 0.35, 0.2]])
    means = region_stats(labels, probs).mean_probs
    d = reference_js(means[0], means[1])
    assert 0 < d < 1
    np.testing.assert_array_equal(adaptive_merge(labels, probs, d), labels)
    np.testing.assert_array_equal(adaptive_merge(labels, probs, np.nextafter(d, np.inf)), [[1, 1, 1]])  # 1 seeds


@pytest.mark.parametrize("factor", [1 - 1e-3, 1 - 1e-5, 1 - 1e-9, 1 + 1e-9, 1 + 1e-5, 1 + 1e-3])
def test_threshold_near_js_value(factor):
    """Pairs close to the threshold are decided as the exact JS distance decides them (the prefilter never errs)."""
    rng = np.random.default_rng(7)
    for _ in range(20):
        C = int(rng.integers(2, 30))
        p, q = softmax(rng.normal(size=(2, C)) * rng.uniform(0.01, 1.0))
        labels = np.array([[0, 1]])
        probs = np.stack([p, q])[None]
        means = region_stats(labels, probs).mean_probs
        eps = reference_js(means[0], means[1]) * factor
        assert np.unique(adaptive_merge(labels, probs, eps)).size == (1 if factor > 1 else 2)


def test_never_nan_on_near_identical_float32_distributions():
    rng = np.random.default_rng(0)
    scipy_nan = 0
    for _ in range(50):
        p = rng.dirichlet(np.full(19, 0.3)).astype(np.float32)
        q = p.copy()
        j = int(rng.integers(19))
        q[j] = np.nextafter(q[j], np.float32(1))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            scipy_nan += bool(np.isnan(jensenshannon(p, q)))
        d = merge.js_distance(p, q)
        assert np.isfinite(d) and d >= 0
        labels = np.array([[0, 1]])
        probs = np.stack([p, q])[None]
        assert np.unique(adaptive_merge(labels, probs, 1e-3)).size == 1
    assert scipy_nan > 0  # the hazard is real: float32 scipy returns NaN on some of these pairs


def test_reference_js_is_scipy_jensenshannon():
    rng = np.random.default_rng(3)
    for _ in range(200):
        C = int(rng.integers(2, 40))
        p, q = rng.dirichlet(np.full(C, 0.5), size=2)
        p[rng.random(C) < 0.1] = 0.0
        assert reference_js(p, q) == pytest.approx(jensenshannon(p, q), abs=1e-12)
        assert merge.js_distance(p, q) == pytest.approx(jensenshannon(p, q), abs=1e-12)


def test_disconnected_label_is_one_region():
    labels = np.array([[5, 7, 5], [5, 7, 5]])  # id 5 is two pieces
    probs = constant_regions(labels, {5: [0.5, 0.5], 7: [0.52, 0.48]})
    stats = region_stats(labels, probs)
    np.testing.assert_array_equal(stats.ids, [5, 7])
    np.testing.assert_array_equal(stats.counts, [4, 2])
    np.testing.assert_array_equal(adaptive_merge(labels, probs, 0.1), np.full((2, 3), 5))
    assert reference_adjacency(labels) == {5: {7}, 7: {5}}


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (9, 1), (6, 5)])
def test_single_region(shape):
    labels = np.full(shape, 42, dtype=np.uint16)
    probs = np.full((*shape, 4), 0.25, dtype=np.float32)
    out = adaptive_merge(labels, probs)
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, labels)
    stats = region_stats(labels, probs)
    np.testing.assert_array_equal(stats.ids, [42])
    np.testing.assert_array_equal(stats.counts, [labels.size])
    np.testing.assert_allclose(stats.uncertainty, [1.0])
    np.testing.assert_array_equal(stats.predicted, [0])


def test_max_visited_counts_seeds_and_absorbed_regions():
    labels = np.array([[0, 1, 2, 3]])
    probs = constant_regions(labels, [[0.5, 0.5], [0.52, 0.48], [0.53, 0.47], [0.9, 0.1]])
    full = [[0, 0, 0, 3]]
    np.testing.assert_array_equal(adaptive_merge(labels, probs, 0.1), full)
    np.testing.assert_array_equal(adaptive_merge(labels, probs, 0.1, max_visited=0), labels)
    np.testing.assert_array_equal(adaptive_merge(labels, probs, 0.1, max_visited=1), labels)  # the seed itself
    np.testing.assert_array_equal(adaptive_merge(labels, probs, 0.1, max_visited=2), [[0, 0, 2, 3]])
    np.testing.assert_array_equal(adaptive_merge(labels, probs, 0.1, max_visited=3), full)
    np.testing.assert_array_equal(adaptive_merge(labels, probs, 0.1, max_visited=10**12), full)
    for cap in range(6):
        np.testing.assert_array_equal(
            adaptive_merge(labels, probs, 0.1, max_visited=cap), reference_merge(labels, probs, 0.1, max_visited=cap)
        )


def test_region_stats_fields_and_ties():
    labels = np.array([[2, 2, 2, 2, 9]], dtype=np.int16)
    probs = np.array([[[0.4, 0.4, 0.2], [0.4, 0.4, 0.2], [0.1, 0.3, 0.6], [0.1, 0.3, 0.6], [0.2, 0.5, 0.3]]])
    stats = region_stats(labels, probs)
    assert isinstance(stats, RegionStats) and len(stats) == 2
    assert stats.ids.dtype == np.int64 and stats.counts.dtype == np.int64 and stats.predicted.dtype == np.int64
    assert stats.mean_probs.dtype == np.float64 and stats.uncertainty.dtype == np.float64
    np.testing.assert_array_equal(stats.ids, [2, 9])
    # region 2: per-pixel argmax 0 (tie 0/1 -> 0), 0, 2, 2 -> votes tie between 0 and 2 -> 0
    np.testing.assert_array_equal(stats.predicted, [0, 1])
    np.testing.assert_allclose(stats.uncertainty, [(1.0 + 1.0 + 0.5 + 0.5) / 4, 0.6])
    np.testing.assert_allclose(stats.mean_probs[0], [0.25, 0.35, 0.4])


def test_stride_mapping_is_nearest_top_left():
    H, W, s = 5, 7, 2
    labels = np.arange(H * W).reshape(H, W)
    rng = np.random.default_rng(0)
    low = rng.dirichlet(np.ones(3), size=(3, 4))  # ceil(5/2), ceil(7/2)
    stats = region_stats(labels, low)
    for y in range(H):
        for x in range(W):
            np.testing.assert_allclose(stats.mean_probs[y * W + x], low[y // s, x // s])
    # a one-pixel-per-region map at stride 4 and the same map with upsampled probabilities agree
    labels, probs = make_case(1, 17, 30, 6, stride=4, layout="blocks")
    full = probs.repeat(4, axis=0).repeat(4, axis=1)[:17, :30]
    np.testing.assert_array_equal(adaptive_merge(labels, probs, 0.2), adaptive_merge(labels, full, 0.2))


def test_channel_axis_and_layouts_agree():
    labels, probs = make_case(5, 23, 31, 11, n_ids=40, layout="blocks")
    expected = adaptive_merge(labels, probs, 0.2)
    chw = np.ascontiguousarray(np.moveaxis(probs, -1, 0))
    np.testing.assert_array_equal(adaptive_merge(labels, chw, 0.2, channel_axis=0), expected)
    np.testing.assert_array_equal(adaptive_merge(labels, np.moveaxis(chw, 0, -1), 0.2), expected)  # view
    padded = np.zeros((23, 40, 11), dtype=probs.dtype)
    padded[:, :31] = probs
    np.testing.assert_array_equal(adaptive_merge(labels, padded[:, :31], 0.2), expected)  # non-contiguous
    np.testing.assert_array_equal(adaptive_merge(labels, probs.astype(np.float16), 0.2).shape, labels.shape)
    np.testing.assert_array_equal(adaptive_merge(labels.astype(">i4"), probs, 0.2), expected)


@pytest.mark.parametrize("label_dtype", LABEL_DTYPES)
def test_dtype_preserved_and_extreme_ids(label_dtype):
    info = np.iinfo(label_dtype)
    hi = min(int(info.max), 2**63 - 1)
    labels = np.array([[info.min, info.min, hi], [hi, 0, 0]], dtype=label_dtype)
    probs = np.full((2, 3, 2), 0.5)
    out = adaptive_merge(labels, probs)
    assert out.dtype == labels.dtype
    np.testing.assert_array_equal(out, reference_merge(labels, probs))
    np.testing.assert_array_equal(region_stats(labels, probs).ids, np.unique(labels).astype(np.int64))


def test_region_stats_and_merge_returns_stats_of_merged_map():
    labels, probs = make_case(11, 40, 50, 7, n_ids=60, layout="blocks", temperature=0.1)
    merged, stats = region_stats_and_merge(labels, probs, 0.15)
    np.testing.assert_array_equal(merged, adaptive_merge(labels, probs, 0.15))
    assert np.unique(merged).size < np.unique(labels).size  # merges happened
    direct = region_stats(merged, probs)
    np.testing.assert_array_equal(stats.ids, direct.ids)
    np.testing.assert_array_equal(stats.counts, direct.counts)
    np.testing.assert_array_equal(stats.predicted, direct.predicted)
    np.testing.assert_allclose(stats.mean_probs, direct.mean_probs, rtol=1e-12)
    np.testing.assert_allclose(stats.uncertainty, direct.uncertainty, rtol=1e-12)


def test_merge_many_matches_one_by_one():
    pairs = [make_case(s, 30 + s, 20, 5, n_ids=30, layout="blocks") for s in range(7)]
    expected = [adaptive_merge(lab, p, 0.2) for lab, p in pairs]
    got = list(merge_many(iter(pairs), eps=0.2, threads=2))
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_array_equal(g, e)
    with_stats = list(merge_many(pairs[:2], eps=0.2, threads=1, with_stats=True))
    np.testing.assert_array_equal(with_stats[1][0], expected[1])
    assert isinstance(with_stats[1][1], RegionStats)
    bad = [pairs[0], (pairs[1][0], pairs[1][1][:, :, :1])]
    with pytest.raises(ValueError, match="at least 2 classes"):
        list(merge_many(bad, eps=0.2))
    with pytest.raises(ValueError, match="threads"):
        list(merge_many(pairs, threads=0))


# ------------------------------------------------------------------------------------------------------------------
# input validation
# ------------------------------------------------------------------------------------------------------------------

GOOD_LABELS = np.zeros((3, 4), dtype=np.int32)
GOOD_PROBS = np.full((3, 4, 2), 0.5, dtype=np.float32)


def with_value(y, x, c, value, probs=GOOD_PROBS):
    p = probs.copy()
    p[y, x, c] = value
    return p


@pytest.mark.parametrize(
    ("labels", "probs", "kwargs", "message"),
    [
        (np.zeros(4, np.int32), GOOD_PROBS, {}, r"labels must be a 2-D .* got 1-D"),
        (np.zeros((1, 3, 4), np.int32), GOOD_PROBS, {}, r"labels must be a 2-D"),
        (GOOD_LABELS, GOOD_PROBS[..., 0], {}, r"probs must be a 3-D .* got 2-D"),
        (GOOD_LABELS, np.zeros((3, 4, 2, 1)), {}, r"probs must be a 3-D"),
        (GOOD_LABELS, np.full((3, 5, 2), 0.5), {}, r"\(3, 5\) does not match labels shape \(3, 4\)"),
        (GOOD_LABELS, np.full((2, 4, 2), 0.5), {}, r"does not match labels shape"),  # no single stride fits
        (GOOD_LABELS, GOOD_PROBS, {"channel_axis": 0}, r"does not match labels shape"),
        (GOOD_LABELS, GOOD_PROBS, {"channel_axis": 3}, r"channel_axis 3 is out of range"),
        (GOOD_LABELS.astype(np.float64), GOOD_PROBS, {}, r"integer dtype, got float64"),
        (GOOD_LABELS.astype(bool), GOOD_PROBS, {}, r"integer dtype, got bool"),
        (GOOD_LABELS, GOOD_PROBS.astype(np.int64), {}, r"float16, float32 or float64, got int64"),
        (GOOD_LABELS, GOOD_PROBS.astype(np.complex64), {}, r"got complex64"),
        (GOOD_LABELS, np.full((3, 4, 1), 1.0), {}, r"at least 2 classes"),
        (np.zeros((0, 4), np.int32), np.zeros((0, 4, 2)), {}, r"empty image"),
        (np.zeros((3, 0), np.int32), np.zeros((3, 0, 2)), {}, r"empty image"),
        (GOOD_LABELS, with_value(1, 2, 0, np.nan), {}, r"non-finite value at probability pixel \(y, x\) = \(1, 2\)"),
        (GOOD_LABELS, with_value(2, 3, 1, np.inf), {}, r"non-finite value at .* \(2, 3\)"),
        (GOOD_LABELS, with_value(0, 1, 1, -0.25), {}, r"negative value at .* \(0, 1\)"),
        (GOOD_LABELS, with_value(2, 0, 0, 0.6), {}, r"pixel \(y, x\) = \(2, 0\) sum to 1\.1, not 1"),
        (GOOD_LABELS, GOOD_PROBS * 100, {}, r"\(0, 0\) sum to 100"),
    ],
)
@pytest.mark.parametrize("fn", ["region_stats", "adaptive_merge"])
def test_invalid_inputs(labels, probs, kwargs, message, fn):
    with pytest.raises(ValueError, match=message):
        getattr(merge, fn)(labels, probs, **kwargs)


def test_first_invalid_pixel_is_reported_in_raster_order():
    labels = np.zeros((64, 8), dtype=np.int32)
    probs = np.full((64, 8, 3), 1 / 3)
    probs[40, 1] = [0.5, 0.5, 0.5]
    probs[5, 6] = [0.9, 0.9, 0.9]
    with pytest.raises(ValueError, match=r"\(5, 6\)"):
        adaptive_merge(labels, probs)
    low = np.full((32, 4, 3), 1 / 3)
    low[20, 3, 0] = -1
    with pytest.raises(ValueError, match=r"negative value at probability pixel \(y, x\) = \(20, 3\) \(stride 2\)"):
        region_stats(labels, low)


def test_sum_tolerance():
    ok = with_value(0, 0, 0, 0.5 + 0.009)
    adaptive_merge(GOOD_LABELS, ok)
    with pytest.raises(ValueError, match="sum to"):
        adaptive_merge(GOOD_LABELS, with_value(0, 0, 0, 0.5 + 0.011))


@pytest.mark.parametrize("eps", [0, -0.1, math.nan, "x", None])
def test_invalid_eps(eps):
    with pytest.raises(ValueError, match="eps must be"):
        adaptive_merge(GOOD_LABELS, GOOD_PROBS, eps)


@pytest.mark.parametrize("max_visited", [-1, 1.5, "3", True])
def test_invalid_max_visited(max_visited):
    with pytest.raises(ValueError, match="max_visited must be"):
        adaptive_merge(GOOD_LABELS, GOOD_PROBS, max_visited=max_visited)


def test_uint64_ids_beyond_int64_rejected():
    labels = np.array([[2**63 + 5, 1]], dtype=np.uint64)
    with pytest.raises(ValueError, match="below 2\\*\\*63"):
        region_stats(labels, np.full((1, 2, 2), 0.5))


def test_missing_extension_fails_at_import_with_install_hint():
    """Without the compiled extension, importing adaspx.merge fails at once and says how to build it."""
    code = (
        "import sys; sys.modules['adaspx._merge'] = None\n"  # makes `from adaspx import _merge` raise ImportError
        "try:\n    import adaspx.merge\nexcept ImportError as e:\n    print(e)\nelse:\n    print('imported')"
    )
    src = Path(merge.__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(src)},
    )
    assert "adaspx._merge" in out.stdout and "pip install -e ." in out.stdout
