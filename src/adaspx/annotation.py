"""Simulated annotation: dominant label per queried region, sieving, and training targets.

Answers are facts: once the simulated annotator has answered a region, the answer is never rewritten. Per image
an *answer map* (int32, -1 = never answered) records, for every pixel, the row of the answer table that labels
it; a later answer covering the same pixel takes precedence, as in the reference code, which paints each
round's regions over the previous ones. Training targets are derived from answers (and, with sieving, from the
latest model's probabilities) and can be rebuilt at any time.
"""

from __future__ import annotations

import numpy as np

from adaspx import IGNORE_INDEX

SIEVE_POINTS = 20
"""The reference code subsamples each region's sorted confidences to about this many points before the knee."""


SIEVE_METHODS = ("knee", "knee_disagree")
"""``knee``: the reference. ``knee_disagree``: the knee plus pixels the model confidently gives another class."""


def _histograms(regions: np.ndarray, gt: np.ndarray, region_ids: np.ndarray) -> np.ndarray:
    """(len(region_ids), 256) ground-truth value counts of each queried region; unknown ids raise ValueError."""
    region_ids = np.asarray(region_ids, dtype=np.int64)
    if regions.shape != gt.shape:
        raise ValueError(f"region map {regions.shape} and ground truth {gt.shape} differ in shape")
    flat_r = regions.ravel().astype(np.int64)
    uniq, inv = np.unique(flat_r, return_inverse=True)
    pos = np.searchsorted(uniq, region_ids)
    pos_c = np.minimum(pos, len(uniq) - 1)
    missing = uniq[pos_c] != region_ids
    if missing.any():
        raise ValueError(f"regions {region_ids[missing][:5].tolist()} do not exist in the region map")
    hist = np.bincount(inv * 256 + gt.ravel().astype(np.int64), minlength=len(uniq) * 256).reshape(len(uniq), 256)
    return hist[pos_c]


def dominant_labels(regions: np.ndarray, gt: np.ndarray, region_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Most frequent ground-truth value (void 255 counted as a value) and pixel count of each queried region.

    Ties go to the smaller value. A region id absent from ``regions`` raises ValueError.
    """
    sub = _histograms(regions, gt, region_ids)
    return sub.argmax(axis=1).astype(np.uint8), sub.sum(axis=1).astype(np.int64)


def class_clicks(regions: np.ndarray, gt: np.ndarray, region_ids: np.ndarray) -> np.ndarray:
    """Clicks the ``classes`` cost model charges per queried region: its number of distinct non-void ground-truth
    classes (one click per class present, as MulActSeg counts them), at least 1 (an all-void region costs a look)."""
    sub = _histograms(regions, gt, region_ids)
    present = (sub[:, :IGNORE_INDEX] > 0).sum(axis=1)
    return np.maximum(present, 1).astype(np.int64)


def knee_threshold(confidences: np.ndarray) -> float | None:
    """The reference sieving threshold for one region, or None when no knee is found (keep every pixel).

    Confidences (the previous model's probability of the region's answered label, per pixel) are sorted
    ascending and subsampled to about 20 points (every ``max(1, n // 20)``-th); the knee of that curve is found
    with ``kneed.KneeLocator(S=1, curve="concave", direction="increasing")``; pixels below the knee's value are
    sieved.
    """
    from kneed import KneeLocator

    y = np.sort(np.asarray(confidences, dtype=np.float64).ravel())
    if y.size < 3:
        return None
    y = y[:: max(1, y.size // SIEVE_POINTS)]
    x = np.arange(y.size)
    with np.errstate(all="ignore"):
        knee = KneeLocator(x, y, S=1.0, curve="concave", direction="increasing").knee
    if knee is None:
        return None
    return float(y[int(knee)])


def sieve_mask(
    answer_map: np.ndarray,
    labels: np.ndarray,
    probs: np.ndarray,
    min_pixels: int,
    *,
    method: str = "knee",
    disagree_threshold: float = 0.5,
    rows: np.ndarray | None = None,
) -> np.ndarray:
    """Boolean mask of pixels to drop from the targets of one image.

    ``answer_map``: (H, W) int answer row per pixel (-1 none); ``labels``: answered label per answer row;
    ``probs``: (C, H, W) probabilities of the previous round's model at label resolution. Only answers with a
    real label and covering at least ``min_pixels`` pixels are sieved (and, given ``rows``, only those rows).

    ``method="knee"``: pixels whose confidence in the answered label lies below the region's knee
    (:func:`knee_threshold`). ``method="knee_disagree"``: those, plus pixels whose argmax is another class with
    probability at least ``disagree_threshold``; this still sieves the confidently wrong pixels of regions where
    they are so many that the knee lands on the lowest point and sieves nothing.
    """
    if method not in SIEVE_METHODS:
        raise ValueError(f"sieve method {method!r} unknown; expected one of {', '.join(SIEVE_METHODS)}")
    drop = np.zeros(answer_map.shape, dtype=bool)
    rows_here, counts = np.unique(answer_map[answer_map >= 0], return_counts=True)
    if rows is not None:
        sel = np.isin(rows_here, rows)
        rows_here, counts = rows_here[sel], counts[sel]
    if method == "knee_disagree" and rows_here.size:
        top = probs.argmax(axis=0)
        top_p = np.take_along_axis(probs, top[None], axis=0)[0]
    for row, count in zip(rows_here.tolist(), counts.tolist(), strict=True):
        lab = int(labels[row])
        if lab == IGNORE_INDEX or count < min_pixels:
            continue
        where = answer_map == row
        conf = probs[lab][where]
        thr = knee_threshold(conf)
        region_drop = conf < thr if thr is not None else np.zeros(conf.shape, dtype=bool)
        if method == "knee_disagree":
            region_drop |= (top[where] != lab) & (top_p[where] >= disagree_threshold)
        drop[where] = region_drop
    return drop


def targets_from_answers(answer_map: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(H, W) uint8 targets: the answered label of every pixel's latest answer, 255 where unanswered or void."""
    lut = np.append(np.asarray(labels, dtype=np.uint8), np.uint8(IGNORE_INDEX))  # row -1 -> 255
    return lut[answer_map]


def precision(targets: np.ndarray, gt: np.ndarray) -> tuple[int, int]:
    """(labeled pixels, correctly labeled pixels) of a target map against ground truth."""
    labeled = targets != IGNORE_INDEX
    return int(labeled.sum()), int((targets[labeled] == gt[labeled]).sum())
