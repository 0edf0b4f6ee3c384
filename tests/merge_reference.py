"""Readable reference implementation of region statistics and the adaptive merge (clarity over speed).

It follows the definitions in ``adaspx.merge`` step by step and is what the compiled kernel is tested against:

1. upsample the probabilities to the label grid (label pixel (y, x) uses probability pixel (y // s, x // s));
2. per region: pixel count, mean probability vector, mean p_(2)/p_(1), most frequent per-pixel argmax;
3. region adjacency from 4-connected pixel pairs with different labels;
4. seeds in descending uncertainty (ties: ascending id); breadth-first search from each seed through regions whose
   Jensen-Shannon distance to the SEED's mean is < eps (strict); absorbed regions take the seed's id.

Sums run sequentially in raster order (``np.bincount``) and the JS distance is evaluated with scalar Python maths in
scipy's order of operations, so results match the kernel to the last bit or nearly so.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np


def full_resolution_probs(probs: np.ndarray, shape: tuple[int, int], channel_axis: int = -1) -> np.ndarray:
    """(H, W, C) float64 probabilities on the label grid: pixel (y, x) takes probability pixel (y//s, x//s)."""
    hwc = np.moveaxis(np.asarray(probs), channel_axis, -1).astype(np.float64)
    H, W = shape
    h, w = hwc.shape[:2]
    stride = next(s for s in range(1, max(H, W) + 1) if math.ceil(H / s) == h and math.ceil(W / s) == w)
    rows = np.arange(H) // stride
    cols = np.arange(W) // stride
    return hwc[rows][:, cols]


def reference_region_stats(labels: np.ndarray, probs: np.ndarray, channel_axis: int = -1) -> dict:
    """Dict with ids, counts, mean_probs, uncertainty, predicted (same meaning as ``adaspx.merge.RegionStats``)."""
    labels = np.asarray(labels)
    p = full_resolution_probs(probs, labels.shape, channel_axis)
    C = p.shape[-1]
    ids, region = np.unique(labels, return_inverse=True)
    region = region.reshape(-1)
    n = ids.size
    pixels = p.reshape(-1, C)

    counts = np.bincount(region, minlength=n)
    sums = np.stack([np.bincount(region, weights=pixels[:, c], minlength=n) for c in range(C)], axis=1)
    mean_probs = sums / counts[:, None]

    ordered = np.sort(pixels, axis=1)
    ratio = ordered[:, -2] / ordered[:, -1]  # second-largest over largest
    uncertainty = np.bincount(region, weights=ratio, minlength=n) / counts

    pixel_class = np.argmax(pixels, axis=1)  # ties -> smallest class
    votes = np.bincount(region * C + pixel_class, minlength=n * C).reshape(n, C)  # votes[r, c]
    predicted = np.argmax(votes, axis=1)  # ties -> smallest class
    return {
        "ids": ids.astype(np.int64),
        "counts": counts.astype(np.int64),
        "mean_probs": mean_probs,
        "uncertainty": uncertainty,
        "predicted": predicted,
    }


def reference_js(p, q) -> float:
    """Jensen-Shannon distance as scipy.spatial.distance.jensenshannon, float64, divergence clamped at 0."""
    p = [float(v) for v in p]
    q = [float(v) for v in q]
    sp = 0.0
    for v in p:
        sp += v
    sq = 0.0
    for v in q:
        sq += v
    p = [v / sp for v in p]
    q = [v / sq for v in q]

    def rel_entr(x: float, y: float) -> float:
        if x > 0 and y > 0:
            return x * math.log(x / y)
        return 0.0 if x == 0 and y >= 0 else math.inf

    left = right = 0.0
    for a, b in zip(p, q, strict=True):
        m = (a + b) / 2.0
        left += rel_entr(a, m)
        right += rel_entr(b, m)
    return math.sqrt(max((left + right) / 2.0, 0.0))


def reference_adjacency(labels: np.ndarray) -> dict:
    """Label id -> set of 4-connected neighbouring label ids."""
    labels = np.asarray(labels)
    neighbours: dict = {int(i): set() for i in np.unique(labels)}
    left, right = labels[:, :-1].ravel(), labels[:, 1:].ravel()  # left-right pixel pairs
    up, down = labels[:-1, :].ravel(), labels[1:, :].ravel()  # up-down pixel pairs
    a = np.concatenate([left, up])
    b = np.concatenate([right, down])
    for x, y in set(zip(a[a != b].tolist(), b[a != b].tolist(), strict=True)):
        neighbours[x].add(y)
        neighbours[y].add(x)
    return neighbours


def reference_merge(labels, probs, eps=0.1, channel_axis=-1, max_visited=None) -> np.ndarray:
    """Merged label map, same dtype as ``labels``; see the module docstring and ``adaspx.merge.adaptive_merge``."""
    labels = np.asarray(labels)
    stats = reference_region_stats(labels, probs, channel_axis)
    ids = [int(i) for i in stats["ids"]]
    mean = {i: stats["mean_probs"][k] for k, i in enumerate(ids)}
    uncertainty = {i: float(stats["uncertainty"][k]) for k, i in enumerate(ids)}
    neighbours = reference_adjacency(labels)
    cap = math.inf if max_visited is None else max_visited

    seeds = sorted(ids, key=lambda i: (-uncertainty[i], i))
    owner = {}  # region id -> id of the seed that took it (a visited seed owns itself)
    visited = 0
    for seed in seeds:
        if seed in owner:
            continue  # absorbed by an earlier seed
        if visited >= cap:
            break
        owner[seed] = seed
        visited += 1
        tested = {seed}
        queue = deque([seed])
        while queue and visited < cap:
            region = queue.popleft()
            for other in sorted(neighbours[region]):
                if other in owner or other in tested:
                    continue
                tested.add(other)
                if visited >= cap:
                    break
                if reference_js(mean[seed], mean[other]) < eps:  # always the seed's own mean
                    owner[other] = seed
                    visited += 1
                    queue.append(other)
    new_ids = np.array([owner.get(i, i) for i in ids], dtype=labels.dtype)
    return new_ids[np.searchsorted(stats["ids"].astype(labels.dtype), labels)]
