"""``merge.loop: official``: the reference code's merge loop, its arithmetic and its visiting order included.

The reference (``scripts/gen_adaspx.py``: ``build_region_graph``, ``merge_graph_from_uncert`` and the commented-out
``merge_graph_from_uncert_complexity``) differs from the compiled merge of :mod:`adaspx.merge` in three ways that
can change a merged map:

* **float32.** Region means and mean uncertainties are NumPy means of the float32 softmax over the region's pixels
  in raster order, and distances are scipy's ``jensenshannon`` of those float32 means. Where the divergence of two
  nearly equal vectors rounds below zero, its square root is NaN, ``NaN < eps`` is false, and the pair never
  merges (the compiled merge works in float64 and clamps at 0).
* **Order.** A seed's neighbours are visited in the order networkx's ``Graph`` holds them: the order in which the
  boundary scan first met each pair (left-right pairs row by row, then up-down pairs row by row); the search goes on
  depth-first from a stack (the compiled merge: breadth-first, ascending ids). Without a cap the order does not
  change which regions merge.
* **The cap.** ``len(merged_arr) >= cap`` is tested after every visit, but the ``break`` under it leaves only the
  innermost loop: once the cap is reached, each region still on the stack may absorb one more region, and the merge
  stops at the next seed. Its cap ``8192 * 0.1`` is met at 820 visits (``max_visited: 820``).

Without NaN distances and without a cap, both merges give the same map (``tests/test_official_merge.py``). This
loop runs in Python: 2-3 s for a 1024x2048 image of 8192 superpixels, ~20x the compiled merge
(``benchmarks/bench_merge.py``).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.spatial.distance import jensenshannon

LOOPS = ("kernel", "official")
"""``merge.loop``: the compiled merge (:mod:`adaspx.merge`) or the reference's loop (this module)."""


def dense_index(labels: np.ndarray) -> tuple[np.ndarray, int]:
    """(H, W) int64 map of each pixel's region as an index into the sorted ids present, and their number."""
    ids, inverse = np.unique(labels, return_inverse=True)
    return inverse.reshape(labels.shape).astype(np.int64), ids.shape[0]


def neighbour_lists(index: np.ndarray, n: int) -> list[np.ndarray]:
    """Each region's neighbours (4-connectivity, dense indices) in the order networkx's ``Graph`` holds them after
    the reference's scan: ``add_edge(u, v)`` for every left-right pair of differing pixels in raster order, then
    every up-down pair; a node lists a neighbour from the first pair that joins them."""
    left, right = index[:, :-1], index[:, 1:]
    up, down = index[:-1, :], index[1:, :]
    across, below = left != right, up != down
    a = np.concatenate([left[across], up[below]])  # np.nonzero order: raster order, as the reference's np.where
    b = np.concatenate([right[across], down[below]])
    time = np.arange(a.shape[0])
    node, other, when = np.concatenate([a, b]), np.concatenate([b, a]), np.concatenate([time, time])
    order = np.lexsort((when, other, node))  # by node, neighbour, then first meeting
    node, other, when = node[order], other[order], when[order]
    first = np.r_[True, (node[1:] != node[:-1]) | (other[1:] != other[:-1])]
    node, other, when = node[first], other[first], when[first]
    order = np.lexsort((when, node))
    node, other = node[order], other[order]
    return np.split(other, np.searchsorted(node, np.arange(1, n)))


def float32_region_features(
    index: np.ndarray, n: int, probs: np.ndarray, stride: int, channel_axis: int
) -> tuple[np.ndarray, np.ndarray]:
    """((n, C) float32 mean probability vectors, (n,) float32 mean p_(2) / p_(1)) as the reference computes them:
    ``np.mean`` over each region's pixels in raster order of the float32 probabilities, label pixel (y, x) reading
    probability pixel (y // stride, x // stride)."""
    probs = np.asarray(probs, dtype=np.float32)
    hwc = probs if channel_axis == -1 or channel_axis == 2 else np.moveaxis(probs, 0, -1)
    top2 = np.sort(hwc, axis=-1)[..., -2:]
    ratio = top2[..., 0] / top2[..., 1]
    order = np.argsort(index.ravel(), kind="stable")  # each region's pixels together, in raster order
    counts = np.bincount(index.ravel(), minlength=n)
    y, x = np.divmod(order, index.shape[1])
    y //= stride
    x //= stride
    vectors = np.ascontiguousarray(hwc[y, x])  # (pixels, C), C-contiguous like the reference's feature[y, x]
    ratios = np.ascontiguousarray(ratio[y, x])
    means = np.empty((n, hwc.shape[-1]), dtype=np.float32)
    uncertainty = np.empty(n, dtype=np.float32)
    stops = np.cumsum(counts)
    for k, (start, stop) in enumerate(zip(stops - counts, stops, strict=True)):
        means[k] = np.mean(vectors[start:stop], axis=0)
        uncertainty[k] = np.mean(ratios[start:stop])
    return means, uncertainty


def official_targets(
    means: np.ndarray, uncertainty: np.ndarray, neighbours: list[np.ndarray], eps: float, cap: float = math.inf
) -> np.ndarray:
    """int64 (n,): the index of the seed that takes each region (its own index when untouched), by the reference's
    loop (see the module docstring); ``cap``: ``max_visited`` (``inf``: none)."""
    n = uncertainty.shape[0]
    seeds = sorted(range(n), key=lambda i: -float(uncertainty[i]))  # stable: ties by ascending id, as the reference
    target = np.arange(n, dtype=np.int64)
    carried = np.arange(n)  # whose mean each region compares with: a region absorbed takes its seed's
    merged = np.zeros(n, dtype=bool)
    visited = 0

    def visit(region: int) -> list[int]:
        """Absorb the region's close neighbours; those to visit next (all but one that reaches the cap)."""
        nonlocal visited
        pushed = []
        for v in neighbours[region].tolist():
            if merged[v] or not jensenshannon(means[carried[region]], means[v]) < eps:  # NaN: never
                continue
            target[v], carried[v], merged[v] = target[region], carried[region], True
            visited += 1
            if visited >= cap:
                break  # the reference's break leaves this loop only
            pushed.append(v)
        return pushed

    with np.errstate(invalid="ignore"):  # the square root of a divergence rounded below 0: expected, NaN
        for seed in seeds:
            if merged[seed]:
                continue
            merged[seed] = True
            visited += 1
            if visited >= cap:
                break
            stack = visit(seed)
            while stack:
                stack.extend(visit(stack.pop()))
    return target
