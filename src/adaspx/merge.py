"""Adaptive superpixels: per-region statistics and the seeded Jensen-Shannon merge (Kim et al., ICCV 2023).

Definitions used throughout (they reproduce the official algorithm; ``tests/merge_reference.py`` implements them
in plain NumPy as the readable reference the compiled kernel is tested against, and ``benchmarks/README.md`` explains
how the kernel computes them fast):

* ``labels`` is an (H, W) integer map of base superpixels. Ids need not be contiguous, may be negative, and one id
  may cover several disconnected pieces (it is still one region).
* ``probs`` holds per-pixel class probabilities, (H, W, C) with ``channel_axis=-1`` or (C, H, W) with
  ``channel_axis=0``, float32 or float64 (float16 is accepted and converted to float32, which copies). The
  probabilities may be at a lower resolution by one integer stride ``s >= 1``: with spatial shape (h, w) where
  ``h == ceil(H / s)`` and ``w == ceil(W / s)``, label pixel (y, x) uses probability pixel ``(y // s, x // s)``
  (nearest neighbour, top-left aligned). ``s`` is inferred from the shapes; where several strides fit (only possible
  for tiny images), the smallest is used.
* Every probability vector must be finite, non-negative and sum to 1 within 1e-2 (any float dtype).
* Region statistics of a region R with n_R pixels: ``mean_probs`` f_R = mean of the probability vectors of its
  pixels; ``uncertainty`` u_R = mean over its pixels of p_(2) / p_(1) (second-largest over largest probability,
  higher = more uncertain); ``predicted`` = the most frequent per-pixel argmax class (per-pixel ties -> smallest
  class, as ``np.argmax``; ties between classes in the count -> smallest class).
* Region adjacency is 4-connectivity: two regions touch when some pixel of one is the left/right or up/down
  neighbour of a pixel of the other.
* JS(p, q) is the Jensen-Shannon *distance* of ``scipy.spatial.distance.jensenshannon`` (each vector normalised to
  sum 1, natural log, square root of the divergence), computed in float64 with the divergence clamped at 0 before
  the square root, so it is never NaN.

The merge visits seeds in descending u, ties by ascending id. A seed that has not been absorbed yet absorbs every
not-yet-absorbed region reachable from it through not-yet-absorbed regions w with ``JS(f_seed, f_w) < eps``
(strict), always against the seed's own mean, never an updated group mean; absorbed pixels take the seed's id.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from adaspx import compiled, official_merge
from adaspx.parallel import ordered_map, usable_cores

_kernel = compiled("_merge")  # src/adaspx/_merge.pyx with the C of src/adaspx/_merge_kernels.h

SUM_TOLERANCE = 1e-2
"""A probability vector is rejected when ``abs(sum - 1)`` exceeds this."""

_FLOAT_DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))


@dataclass(frozen=True)
class RegionStats:
    """Per-region statistics, one row per label id present, ids ascending.

    Attributes:
        ids: int64 (n,), the sorted unique label ids present in the map.
        counts: int64 (n,), pixel counts.
        mean_probs: float64 (n, C), mean probability vector of each region.
        uncertainty: float64 (n,), mean over the region's pixels of p_(2) / p_(1).
        predicted: int64 (n,), most frequent per-pixel argmax class (ties -> smallest class).
        class_hist: int64 (n, C), pixels of each region per per-pixel argmax class (``predicted`` is its argmax).
    """

    ids: np.ndarray
    counts: np.ndarray
    mean_probs: np.ndarray
    uncertainty: np.ndarray
    predicted: np.ndarray
    class_hist: np.ndarray

    def __len__(self) -> int:
        return int(self.ids.shape[0])


@dataclass
class _Raw:
    """Sufficient statistics of the base regions (sums, not means), so merged regions can be aggregated.

    The kernel addresses regions by slot = ``index[y, x] - base``, where ``index`` is the label map itself (ids
    spanning a small range) or a dense int32 remap from ``np.unique``; ``to_dense`` maps slots to rows of ``ids``.
    """

    ids: np.ndarray  # int64 (n,)
    counts: np.ndarray  # int64 (n,)
    sums: np.ndarray  # float64 (n, C)
    ratio_sums: np.ndarray  # float64 (n,)
    hist: np.ndarray  # int64 (n, C)
    index: np.ndarray | None = None  # (H, W) slot map (plus base)
    base: int = 0
    to_dense: np.ndarray | None = None  # int64 (span,), -1 for absent slots
    pairs: np.ndarray | None = None  # (E, 2) int32 slot pairs of 4-adjacent pixels, with repeats

    def stats(self) -> RegionStats:
        counts = self.counts
        return RegionStats(
            ids=self.ids,
            counts=counts,
            mean_probs=self.sums / counts[:, None],
            uncertainty=self.ratio_sums / counts,
            predicted=np.argmax(self.hist, axis=1).astype(np.int64),
            class_hist=self.hist,
        )


# --------------------------------------------------------------------------------------------------------------
# input validation
# --------------------------------------------------------------------------------------------------------------


def _infer_stride(H: int, W: int, h: int, w: int) -> int | None:
    """Smallest integer s >= 1 with ceil(H/s) == h and ceil(W/s) == w, or None."""
    if h < 1 or w < 1 or h > H or w > W:
        return None
    s = max(-(-H // h), -(-W // w))
    while -(-H // s) >= h and -(-W // s) >= w:
        if -(-H // s) == h and -(-W // s) == w:
            return s
        s += 1
    return None


@dataclass
class _Inputs:
    labels: np.ndarray  # (H, W) C-contiguous, native byte order
    probs: np.ndarray  # C-contiguous, (h, w, C) when chw is False, (C, h, w) when chw is True
    chw: bool
    stride: int
    n_classes: int


def _prepare(labels, probs, channel_axis) -> _Inputs:
    """Validate shapes and dtypes; return C-contiguous arrays without copying the probabilities when possible."""
    labels = np.asarray(labels)
    probs = np.asarray(probs)
    if labels.ndim != 2:
        raise ValueError(f"labels must be a 2-D (H, W) array, got {labels.ndim}-D with shape {labels.shape}")
    if labels.dtype.kind not in "iu":
        raise ValueError(f"labels must have an integer dtype, got {labels.dtype}")
    if probs.ndim != 3:
        raise ValueError(
            f"probs must be a 3-D (H, W, C) or (C, H, W) array, got {probs.ndim}-D with shape {probs.shape}"
        )
    if probs.dtype not in _FLOAT_DTYPES:
        raise ValueError(f"probs must be float16, float32 or float64, got {probs.dtype}")
    try:
        axis = int(channel_axis)
    except (TypeError, ValueError):
        raise ValueError(f"channel_axis must be an integer axis of probs, got {channel_axis!r}") from None
    if not -3 <= axis <= 2:
        raise ValueError(f"channel_axis {channel_axis} is out of range for 3-D probs")
    hwc = np.moveaxis(probs, axis, -1)
    H, W = labels.shape
    h, w, C = hwc.shape
    if labels.size == 0 or probs.size == 0:
        raise ValueError(f"empty image: labels shape {labels.shape}, probs shape {probs.shape}")
    if C < 2:
        raise ValueError(f"probs must have at least 2 classes along channel_axis={channel_axis}, got {C}")
    stride = _infer_stride(H, W, h, w)
    if stride is None:
        raise ValueError(
            f"probs spatial shape {(h, w)} does not match labels shape {(H, W)} (probs shape {probs.shape}, "
            f"channel_axis={channel_axis}); expected {(H, W)} or (ceil(H/s), ceil(W/s)) for an integer stride s"
        )
    if H * W >= 2**31 - 1:
        raise ValueError(f"labels shape {labels.shape} has too many pixels (at most 2**31 - 2)")
    if labels.dtype == np.uint64 and labels.size and int(labels.max()) > np.iinfo(np.int64).max:
        raise ValueError("labels of dtype uint64 must be below 2**63 (ids are reported as int64)")
    if not labels.dtype.isnative:
        labels = labels.astype(labels.dtype.newbyteorder("="))
    labels = np.ascontiguousarray(labels)
    if hwc.dtype == np.float16 or not hwc.dtype.isnative:
        hwc = hwc.astype(np.float32 if hwc.dtype == np.float16 else hwc.dtype.newbyteorder("="))
    if hwc.flags.c_contiguous:
        return _Inputs(labels, hwc, False, stride, C)
    chw = np.moveaxis(hwc, -1, 0)
    if chw.flags.c_contiguous:
        return _Inputs(labels, chw, True, stride, C)
    return _Inputs(labels, np.ascontiguousarray(hwc), False, stride, C)


def _check_eps(eps) -> float:
    try:
        value = float(eps)
    except (TypeError, ValueError):
        raise ValueError(f"eps must be a positive number, got {eps!r}") from None
    if not value > 0:
        raise ValueError(f"eps must be positive, got {eps!r}")
    return value


def _check_max_visited(max_visited) -> int:
    if max_visited is None:
        return np.iinfo(np.int64).max
    if isinstance(max_visited, bool) or not isinstance(max_visited, int | np.integer) or max_visited < 0:
        raise ValueError(f"max_visited must be None or a non-negative integer, got {max_visited!r}")
    return int(max_visited)


def _raise_bad_pixel(inp: _Inputs, flat_index: int) -> None:
    """Raise the ValueError describing probability pixel ``flat_index`` (raster order of the probability grid)."""
    p = inp.probs
    h, w = (p.shape[1], p.shape[2]) if inp.chw else (p.shape[0], p.shape[1])
    y, x = divmod(int(flat_index), w)
    vec = (p[:, y, x] if inp.chw else p[y, x, :]).astype(np.float64)
    where = f"probability pixel (y, x) = ({y}, {x})"
    if inp.stride > 1:
        where += f" (stride {inp.stride})"
    if not np.all(np.isfinite(vec)):
        raise ValueError(f"probs contains a non-finite value at {where}")
    if np.any(vec < 0):
        raise ValueError(f"probs contains a negative value at {where}")
    total = 0.0
    for v in vec:
        total += v
    raise ValueError(f"probabilities at {where} sum to {total:.6g}, not 1 (tolerance {SUM_TOLERANCE:g})")


# --------------------------------------------------------------------------------------------------------------
# kernel passes
# --------------------------------------------------------------------------------------------------------------


def _compute_raw(inp: _Inputs, threads: int, want_pairs: bool = False) -> _Raw:
    """Statistics of the base regions: one fused kernel pass over the probabilities."""
    labels = inp.labels
    lo, hi = _kernel.label_range(labels, threads)
    span = hi - lo + 1
    padded = -(-inp.n_classes // 8) * 8
    uniq = None
    if span * padded * 12 <= max(inp.probs.nbytes // 2, 1 << 24):  # accumulators: at most half the probs
        index, base = labels, lo  # ids span a small range: address regions by label - min(label)
    else:  # sparse ids: remap them densely first (a sort, ~5x slower than the stats pass itself)
        uniq, inverse = np.unique(labels, return_inverse=True)
        index, base, span = inverse.reshape(labels.shape).astype(np.int32), 0, uniq.shape[0]
    counts, sums, ratio_sums, hist, bad, pairs = _kernel.region_sums(
        index, base, span, inp.probs, inp.chw, inp.stride, SUM_TOLERANCE, threads, want_pairs
    )
    if bad >= 0:
        _raise_bad_pixel(inp, bad)
    present = np.flatnonzero(counts)
    to_dense = np.full(span, -1, dtype=np.int64)
    to_dense[present] = np.arange(present.shape[0])
    ids = present.astype(np.int64) + base if uniq is None else uniq.astype(np.int64)
    return _Raw(
        ids,
        counts[present],
        sums[present, : inp.n_classes],
        ratio_sums[present],
        hist[present].astype(np.int64),
        index,
        base,
        to_dense,
        pairs,
    )


def _merge_targets(raw: _Raw, eps: float, cap: int) -> np.ndarray:
    """Index of the seed region that absorbs each base region (itself when not absorbed); needs ``raw.pairs``."""
    n = raw.ids.shape[0]
    indptr, indices = _kernel.adjacency(raw.pairs, raw.to_dense, n)
    uncertainty = raw.ratio_sums / raw.counts
    order = np.lexsort((np.arange(n), -uncertainty)).astype(np.int64)
    means = raw.sums / raw.counts[:, None]  # normalised inside the kernel, sequentially as scipy does
    return _kernel.seeded_merge(order, means, indptr, indices, eps, cap)


def _write_map(inp: _Inputs, raw: _Raw, target: np.ndarray, threads: int) -> np.ndarray:
    dense_lut = raw.ids[target].astype(inp.labels.dtype)
    if raw.index is not inp.labels:  # ids were remapped densely: index the lookup table with the remap
        return dense_lut[raw.index]
    lut = np.zeros(raw.to_dense.shape[0], dtype=inp.labels.dtype)
    lut[raw.to_dense >= 0] = dense_lut
    out = np.empty_like(inp.labels)
    _kernel.apply_lut(inp.labels, raw.base, lut, out, threads)
    return out


def _aggregate(raw: _Raw, target: np.ndarray) -> RegionStats:
    """Statistics of the merged regions from the base regions' sums (no second pass over the probabilities)."""
    order = np.argsort(target, kind="stable")
    grouped = target[order]
    starts = np.flatnonzero(np.r_[True, grouped[1:] != grouped[:-1]])

    def total(a):
        return np.add.reduceat(a[order], starts, axis=0)

    merged = _Raw(raw.ids[grouped[starts]], total(raw.counts), total(raw.sums), total(raw.ratio_sums), total(raw.hist))
    return merged.stats()


def _threads(threads) -> int:
    """0 means the OpenMP default (OMP_NUM_THREADS or every core)."""
    if threads is None:
        return 0
    if isinstance(threads, bool) or not isinstance(threads, int | np.integer) or threads < 1:
        raise ValueError(f"threads must be None or a positive integer, got {threads!r}")
    return int(threads)


def _check_loop(loop) -> str:
    if loop not in official_merge.LOOPS:
        raise ValueError(f"merge loop {loop!r} unknown; expected one of {', '.join(official_merge.LOOPS)}")
    return loop


def _official_targets(inp: _Inputs, eps: float, max_visited) -> np.ndarray:
    """:func:`_merge_targets` by the reference's own loop (:mod:`adaspx.official_merge`)."""
    index, n = official_merge.dense_index(inp.labels)  # the order of the ids present, as ``_Raw.ids``
    axis = 0 if inp.chw else -1
    means, uncertainty = official_merge.float32_region_features(index, n, inp.probs, inp.stride, axis)
    neighbours = official_merge.neighbour_lists(index, n)
    cap = math.inf if max_visited is None else max_visited
    return official_merge.official_targets(means, uncertainty, neighbours, eps, cap)


def _merge_one(labels, probs, eps, channel_axis, max_visited, threads, with_stats, loop="kernel"):
    eps = _check_eps(eps)
    cap = _check_max_visited(max_visited)
    _check_loop(loop)
    inp = _prepare(labels, probs, channel_axis)
    raw = _compute_raw(inp, threads, want_pairs=loop == "kernel")
    target = _merge_targets(raw, eps, cap) if loop == "kernel" else _official_targets(inp, eps, max_visited)
    merged = _write_map(inp, raw, target, threads)
    if with_stats == "exact":  # a second pass over the probabilities, summing in raster order
        return merged, _compute_raw(_Inputs(merged, inp.probs, inp.chw, inp.stride, inp.n_classes), threads).stats()
    if with_stats:
        return merged, _aggregate(raw, target)
    return merged


# --------------------------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------------------------


def region_stats(labels, probs, *, channel_axis=-1, threads=1) -> RegionStats:
    """Per-region statistics of a label map under per-pixel class probabilities.

    Args:
        labels: (H, W) integer label map (any integer dtype; ids need not be contiguous).
        probs: (H, W, C) probabilities (``channel_axis=-1``) or (C, H, W) (``channel_axis=0``), float32 or
            float64 (float16 is converted to float32). May be at a lower resolution by one integer stride s:
            spatial shape (ceil(H/s), ceil(W/s)), and label pixel (y, x) then uses probability pixel
            (y // s, x // s) (nearest, top-left aligned).
        channel_axis: axis of ``probs`` holding the classes.
        threads: OpenMP threads of the kernel; None = ``OMP_NUM_THREADS`` or every core. The default, 1, adds
            every region's sums in raster order, so the result is bit-identical on any machine; with several
            threads, sums of regions that straddle two threads' rows are added in another order (last bits).

    Returns:
        RegionStats with ``ids`` (sorted unique ids present), ``counts``, ``mean_probs`` (n, C),
        ``uncertainty`` (mean p_(2)/p_(1)) and ``predicted`` (most frequent per-pixel argmax class).

    Raises:
        ValueError: on wrong shapes or dtypes, empty images, or probability vectors that are non-finite,
            negative or do not sum to 1 within 1e-2 (the message names the first such pixel (y, x)).
    """
    inp = _prepare(labels, probs, channel_axis)
    return _compute_raw(inp, _threads(threads)).stats()


def adaptive_merge(labels, probs, eps=0.1, *, channel_axis=-1, max_visited=None, loop="kernel") -> np.ndarray:
    """Merge base superpixels into adaptive superpixels (seeded Jensen-Shannon merge).

    Seeds are visited in descending mean uncertainty u (mean p_(2)/p_(1)), ties by ascending id. A seed that has
    not been absorbed yet absorbs every not-yet-absorbed region reachable from it through not-yet-absorbed regions
    w with ``JS(f_seed, f_w) < eps`` (strict), where f is the region's mean probability vector and JS the
    Jensen-Shannon distance of ``scipy.spatial.distance.jensenshannon`` (natural log, computed in float64, the
    divergence clamped at 0 so it is never NaN). Adjacency is 4-connectivity. Absorbed regions take the seed's id
    and can neither be absorbed again nor become seeds.

    Args:
        labels: (H, W) integer label map; ids need not be contiguous, an id may cover disconnected pieces.
        probs: (H, W, C) probabilities (``channel_axis=-1``) or (C, H, W) (``channel_axis=0``), float32 or
            float64 (float16 is converted to float32). May be at a lower resolution by one integer stride s:
            spatial shape (ceil(H/s), ceil(W/s)), and label pixel (y, x) then uses probability pixel
            (y // s, x // s) (nearest, top-left aligned); where several s fit, the smallest is used.
        eps: merge threshold on the JS distance (strictly positive; official default 0.1).
        channel_axis: axis of ``probs`` holding the classes.
        max_visited: a "complexity" cap in the spirit of the reference's commented-out one (which differs: see
            README, "Differences from the reference implementation"). A region counts as visited when it starts a
            search as a seed and when it is absorbed; the merge stops as soon as ``max_visited`` regions have been
            visited, even in the middle of a seed's search, and every region not visited by then keeps its own
            id. Within one seed's search, regions are absorbed in breadth-first order (FIFO queue; a region's
            neighbours in ascending id order). ``None`` (default): no cap. ``0``: nothing is merged.
        loop: ``"kernel"`` (default), the compiled merge described here; ``"official"``, the reference code's own
            loop, float32 NaN distances, depth-first order and the cap's overshoot included
            (:mod:`adaspx.official_merge`; ``merge.loop``).

    Returns:
        The merged label map, same shape and dtype as ``labels``; every merged region carries its seed's id.

    The compiled kernel runs on OpenMP threads (``OMP_NUM_THREADS``, default every core). With one thread, region
    sums are added in raster order, exactly as the reference implementation does; with several, sums of regions
    that straddle two threads' rows are added in another order, which can change the last bit of a mean and so
    decide an exact tie (equal uncertainties, a JS distance equal to ``eps``) differently.

    Raises:
        ValueError: as :func:`region_stats`, and for a non-positive ``eps`` or a negative ``max_visited``.
    """
    return _merge_one(labels, probs, eps, channel_axis, max_visited, 0, False, loop)


def region_stats_and_merge(
    labels, probs, eps=0.1, *, channel_axis=-1, max_visited=None, exact=False, threads=None, loop="kernel"
):
    """:func:`adaptive_merge` plus the :class:`RegionStats` of the merged regions, in one pass over ``probs``.

    The merged regions' statistics are aggregated from the base regions' sums (counts, probability sums,
    p_(2)/p_(1) sums, argmax histograms), so they equal :func:`region_stats` on the merged map up to float
    rounding; with ``exact``, a second pass over ``probs`` computes them as :func:`region_stats` does, bit for bit.
    ``threads``: OpenMP threads of the kernel (None: ``OMP_NUM_THREADS`` or every core; 1 gives bit-identical
    results on any machine). ``loop``: as :func:`adaptive_merge`. Returns ``(merged_labels, merged_stats)``.
    """
    stats = "exact" if exact else True
    return _merge_one(labels, probs, eps, channel_axis, max_visited, _threads(threads), stats, loop)


def merge_many(
    pairs: Iterable,
    eps=0.1,
    threads=None,
    *,
    channel_axis=-1,
    max_visited=None,
    with_stats=False,
) -> Iterator:
    """Merge many images concurrently; returns an iterator over the results in input order.

    ``pairs`` is an iterable of ``(labels, probs)``; it is consumed lazily in the calling thread (so it may read
    from an HDF5 file), with at most ``2 * threads`` images in flight. Each image runs single-threaded in one worker
    of a thread pool of ``threads`` workers (default: the cores this process may use); the compiled kernel releases
    the GIL, so the workers run in parallel. Yields the merged map, or ``(merged_map, merged_stats)`` with
    ``with_stats=True``: the statistics of :func:`region_stats` on the merged map, bit for bit (a second pass of
    the kernel over the probabilities; :func:`region_stats_and_merge` aggregates instead, equal up to rounding).
    Arguments as :func:`adaptive_merge`; ``eps``, ``max_visited`` and ``threads`` are checked
    at once, each image's inputs when its result is reached.
    """
    eps = _check_eps(eps)
    _check_max_visited(max_visited)
    workers = _threads(threads) or usable_cores()
    return _merge_many(pairs, eps, workers, channel_axis, max_visited, with_stats)


def _merge_many(pairs, eps, workers, channel_axis, max_visited, with_stats):
    stats = "exact" if with_stats else False

    def one(labels, probs):
        return _merge_one(labels, probs, eps, channel_axis, max_visited, 1, stats)

    return ordered_map(one, pairs, workers)


def label_range(labels) -> tuple[int, int]:
    """Smallest and largest label of a 2-D integer map, in one compiled pass (NumPy's min and max take two)."""
    return _kernel.label_range(np.ascontiguousarray(labels), 1)


def relabel(labels, lut, base: int = 0) -> np.ndarray:
    """``lut[labels - base]``: a new (H, W) map of the labels' dtype, in one compiled pass without the GIL (NumPy's
    indexing first converts the map to int64 indices, 3-4x slower on a 1024x2048 map). ``lut`` is cast to the
    labels' dtype; every label minus ``base`` must index it (ValueError otherwise)."""
    labels = np.ascontiguousarray(labels)
    if labels.ndim != 2 or labels.dtype.kind not in "iu":
        raise ValueError(f"labels must be a 2-D integer map, got {labels.dtype} of shape {labels.shape}")
    lut = np.ascontiguousarray(lut, dtype=labels.dtype)
    lo, hi = label_range(labels)
    if lo - base < 0 or hi - base >= lut.shape[0]:
        raise ValueError(f"labels {lo}..{hi} minus {base} do not all index a table of {lut.shape[0]} entries")
    out = np.empty_like(labels)
    _kernel.apply_lut(labels, base, lut, out, 1)
    return out


def js_distance(p, q) -> float:
    """Jensen-Shannon distance as used by the merge (scipy's definition, float64, clamped, never NaN)."""
    from scipy.special import rel_entr

    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2.0
    js = rel_entr(p, m).sum() + rel_entr(q, m).sum()
    return float(np.sqrt(max(js / 2.0, 0.0)))


__all__ = [
    "RegionStats",
    "SUM_TOLERANCE",
    "adaptive_merge",
    "js_distance",
    "label_range",
    "merge_many",
    "region_stats",
    "region_stats_and_merge",
    "relabel",
]
