"""Simulated annotation: dominant label or class set per queried region, sieving, and training targets.

Answers are facts: once the simulated annotator has answered a region, the answer is never rewritten. Per image
an *answer map* records, for every pixel, the row of the answer table that labels it (the functions here take it
as int rows, -1 = never answered; ``answers.h5`` stores it compactly, see :class:`adaspx.artifacts.AnswerMaps`);
a later answer covering the same pixel takes precedence, as in the reference code, which paints each round's
regions over the previous ones. Training targets are derived from answers (and, with sieving, from the
latest model's probabilities) and can be rebuilt at any time.
"""

from __future__ import annotations

import re
from typing import NamedTuple

import numpy as np

from adaspx import IGNORE_INDEX
from adaspx.merge import label_range, relabel

SIEVE_POINTS = 20
"""The reference code subsamples each region's sorted confidences to about this many points before the knee."""


SIEVE_METHODS = ("knee", "knee_disagree")
"""``knee``: the reference. ``knee_disagree``: the knee plus pixels the model confidently gives another class."""


def region_pixels(regions: np.ndarray, region_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The pixels of some regions: their flat indexes in raster order, and for each the position of its region in
    the sorted, distinct ``region_ids``. Computed once per image, it serves :func:`dominant_labels` and
    :func:`paint_answers`; the only full-size map it builds is a temporary one of the regions' dtype (queried: 1)."""
    region_ids = np.asarray(region_ids, dtype=np.int64)
    flat = regions.ravel()
    if region_ids.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    lo, hi = label_range(regions) if regions.ndim == 2 else (int(regions.min()), int(regions.max()))
    if hi - lo >= 4 * regions.size + 1024 or regions.ndim != 2:  # sparse ids: no look-up table
        pixels = np.flatnonzero(np.isin(flat, region_ids))
    else:  # a table of the map's id range, 1 for the queried ids, applied by the compiled relabelling
        wanted = region_ids[(region_ids >= lo) & (region_ids <= hi)]
        selected = np.zeros(hi - lo + 1, dtype=regions.dtype)
        selected[wanted - lo] = 1
        pixels = np.flatnonzero(relabel(regions, selected, lo).ravel() != 0)  # != 0: a bool scan is the fast one
    return pixels, np.searchsorted(region_ids, flat[pixels])


def _histograms(regions: np.ndarray, gt: np.ndarray, region_ids: np.ndarray, where=None) -> np.ndarray:
    """(len(region_ids), 256) ground-truth value counts of each queried region; unknown ids raise ValueError."""
    region_ids = np.asarray(region_ids, dtype=np.int64)
    if regions.shape != gt.shape:
        raise ValueError(f"region map {regions.shape} and ground truth {gt.shape} differ in shape")
    if region_ids.size == 0:
        return np.zeros((0, 256), dtype=np.int64)
    uniq = np.unique(region_ids)
    pixels, pos = region_pixels(regions, uniq) if where is None else where
    hist = np.bincount(pos * 256 + gt.ravel()[pixels], minlength=uniq.size * 256).reshape(uniq.size, 256)
    missing = hist.sum(axis=1) == 0
    if missing.any():
        raise ValueError(f"regions {uniq[missing][:5].tolist()} do not exist in the region map")
    return hist[np.searchsorted(uniq, region_ids)]


def paint_answers(
    answer_map: np.ndarray, regions: np.ndarray, region_ids: np.ndarray, rows: np.ndarray, *, where=None
) -> None:
    """Point every pixel of each answered region at its answer row, in place (a later row wins over an earlier
    one, and over the map's previous answers). ``where``: :func:`region_pixels` of the distinct ids, if at hand."""
    region_ids = np.asarray(region_ids, dtype=np.int64)
    if region_ids.size == 0:
        return
    # the last listing of a region wins, as painting the regions one after the other would
    uniq, last = np.unique(region_ids[::-1], return_index=True)
    pixels, pos = region_pixels(regions, uniq) if where is None else where
    answer_map.ravel()[pixels] = np.asarray(rows, dtype=answer_map.dtype)[::-1][last][pos]


def dominant_labels(
    regions: np.ndarray, gt: np.ndarray, region_ids: np.ndarray, *, where=None
) -> tuple[np.ndarray, np.ndarray]:
    """Most frequent ground-truth value (void 255 counted as a value) and pixel count of each queried region.

    Ties go to the smaller value. A region id absent from ``regions`` raises ValueError. ``where``: the
    :func:`region_pixels` of the distinct ``region_ids``, if at hand.
    """
    sub = _histograms(regions, gt, region_ids, where)
    return sub.argmax(axis=1).astype(np.uint8), sub.sum(axis=1).astype(np.int64)


def class_clicks(regions: np.ndarray, gt: np.ndarray, region_ids: np.ndarray) -> np.ndarray:
    """Clicks the ``classes`` cost model charges per queried region: its number of distinct non-void ground-truth
    classes (one click per class present, as MulActSeg counts them), at least 1 (an all-void region costs a look)."""
    sub = _histograms(regions, gt, region_ids)
    present = (sub[:, :IGNORE_INDEX] > 0).sum(axis=1)
    return np.maximum(present, 1).astype(np.int64)


CLASS_SET_VOID = ("class", "drop")
"""How :func:`class_sets` treats void (255): ``class``, one more member (MulActSeg on Cityscapes, where it costs a click
too); ``drop``, left out (MulActSeg on VOC, where an all-void region answers the empty set)."""


def boundary_band(regions: np.ndarray, trim: int) -> np.ndarray:
    """(H, W) bool map of the band trimmed along the region map's boundaries: skimage's
    ``find_boundaries(regions, mode="thick")`` (pixels whose 4-neighbourhood holds another region) dilated by a
    ``trim`` x ``trim`` square, as MulActSeg computes it (``skimage.morphology.binary_dilation``), on the whole map.
    ``trim``: a positive odd integer, or 0 for no band.

    Computed with OpenCV's grey dilation and erosion on the ids (4 ms on a 1024x2048 map of 8000 regions against
    75 ms for the skimage pair, which also loses ids beyond 2**53)."""
    import cv2

    _check_trim(trim)
    if regions.ndim != 2:
        raise ValueError(f"region map must be 2-D, got shape {regions.shape}")
    if trim == 0 or regions.size == 0:
        return np.zeros(regions.shape, dtype=bool)
    ids = _cv2_ids(regions)
    cross = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
    thick = cv2.dilate(ids, cross) != cv2.erode(ids, cross)  # the image border adds no value, as in skimage
    if trim == 1:
        return thick
    return cv2.dilate(thick.view(np.uint8), np.ones((trim, trim), np.uint8)).view(bool)


def _check_trim(trim) -> None:
    if isinstance(trim, bool) or not isinstance(trim, int | np.integer) or trim < 0 or (trim and trim % 2 == 0):
        raise ValueError(f"trim must be 0 or a positive odd integer, got {trim!r}")


def _cv2_ids(regions: np.ndarray) -> np.ndarray:
    """The region map in a dtype OpenCV's morphology takes, telling the same regions apart (ids shifted, or ranked
    when their range exceeds float64's exact integers)."""
    if regions.dtype in (np.uint8, np.uint16, np.int16):
        return np.ascontiguousarray(regions)
    if regions.dtype.kind not in "iu":
        raise ValueError(f"region map must hold integers, got {regions.dtype}")
    lo, hi = int(regions.min()), int(regions.max())
    if hi - lo <= np.iinfo(np.uint16).max:
        return (regions - regions.dtype.type(lo)).astype(np.uint16)
    if hi - lo < 2**53:
        return (regions - regions.dtype.type(lo)).astype(np.float64)
    return np.unique(regions, return_inverse=True)[1].reshape(regions.shape).astype(np.float64)


def class_sets(
    regions: np.ndarray, gt: np.ndarray, region_ids: np.ndarray, *, trim: int = 5, void: str = "class"
) -> list[np.ndarray]:
    """The class set of each queried region (in the given order): the sorted, distinct ground-truth values (uint8)
    of its pixels outside :func:`boundary_band` of the whole map, or of all its pixels when the band covers the
    whole region (MulActSeg's simulated multi-class answer, ``--trim_kernel_size 5``).

    ``trim``: the side of the square dilating the thick boundaries, a positive odd integer; 0 trims nothing.
    ``void``: see :data:`CLASS_SET_VOID`. A region id absent from ``regions`` raises ValueError. The band is
    computed once per image; the rest reads the queried regions' pixels only.
    """
    _check_trim(trim)
    if void not in CLASS_SET_VOID:
        raise ValueError(f"void {void!r} unknown; expected one of {', '.join(CLASS_SET_VOID)}")
    if regions.shape != gt.shape:
        raise ValueError(f"region map {regions.shape} and ground truth {gt.shape} differ in shape")
    if regions.ndim != 2:
        raise ValueError(f"region map must be 2-D, got shape {regions.shape}")
    if gt.dtype != np.uint8 and gt.size and (gt.min() < 0 or gt.max() > IGNORE_INDEX):
        raise ValueError(f"ground truth values {gt.min()}..{gt.max()} are not all in 0..{IGNORE_INDEX}")
    region_ids = np.asarray(region_ids, dtype=np.int64)
    if region_ids.size == 0:
        return []
    uniq = np.unique(region_ids)
    pixels, pos = region_pixels(regions, uniq)
    hist = _histograms(regions, gt, uniq, (pixels, pos))  # raises on unknown ids
    if trim:
        keep = ~boundary_band(regions, int(trim)).ravel()[pixels]
        inner = np.bincount(pos[keep] * 256 + gt.ravel()[pixels[keep]], minlength=uniq.size * 256)
        inner = inner.reshape(uniq.size, 256)
        kept = inner.sum(axis=1) > 0  # a region the band covers entirely answers from all its pixels
        hist[kept] = inner[kept]
    present = hist > 0
    if void == "drop":
        present[:, IGNORE_INDEX] = False
    return [np.flatnonzero(present[row]).astype(np.uint8) for row in np.searchsorted(uniq, region_ids)]


def format_classes(classes) -> str:
    """The ``classes`` text of an answer: its distinct class values (0..255), ascending, space-separated
    (``"3 7 255"``; the empty set is ``""``)."""
    values = np.asarray(classes).ravel()
    if values.size and (values.dtype.kind not in "iu" or values.min() < 0 or values.max() > IGNORE_INDEX):
        raise ValueError(f"classes {values.tolist()} are not all integers in 0..{IGNORE_INDEX}")
    return " ".join(str(v) for v in np.unique(values).tolist())


def parse_classes(text) -> np.ndarray:
    """The class set (sorted uint8) written by :func:`format_classes`; a missing value (None, NaN: an empty field as
    pandas reads it) is the empty set. Anything else but distinct ascending integers 0..255 raises ValueError."""
    if text is None or (isinstance(text, float) and np.isnan(text)):
        return np.zeros(0, dtype=np.uint8)
    tokens = text.split() if isinstance(text, str) else None
    if tokens is None or not all(re.fullmatch("0|[1-9][0-9]{0,2}", t) for t in tokens):
        raise ValueError(f"classes {text!r} are not space-separated integers")
    values = np.array([int(t) for t in tokens], dtype=np.int64)
    if values.size and (values.max() > IGNORE_INDEX or (np.diff(values) <= 0).any()):
        raise ValueError(f"classes {text!r} are not distinct ascending values in 0..{IGNORE_INDEX}")
    return values.astype(np.uint8)


ANSWERS = ("dominant", "classes")
"""What the simulated annotator answers per queried region: ``dominant``, its most frequent ground-truth value;
``classes``, its class set (:func:`class_sets`)."""


SET_CODE = 256
"""First target code of a class set: in a :class:`SetTarget`, pixel code ``SET_CODE + k`` belongs to set ``k``."""


class SetTarget(NamedTuple):
    """The training target of an image with class-set answers. ``codes`` (H, W) uint16: a class 0..C-1 (plain
    cross-entropy), 255 (no target) or ``SET_CODE + k``: the pixel lies in a region answered with the class set
    ``table[k]``; ``table`` (K, C) bool, the members of each set (two classes or more)."""

    codes: np.ndarray
    table: np.ndarray


def set_label(classes: np.ndarray) -> int:
    """The label a class-set answer gives its pixels for plain cross-entropy (and sieving): its one class when it
    names exactly one class, void aside ({3} and {3, 255} both give 3), else 255 (void alone, the empty set, or
    several classes, which train through the class-set losses instead)."""
    real = np.asarray(classes)[np.asarray(classes) != IGNORE_INDEX]
    return int(real[0]) if real.size == 1 else IGNORE_INDEX


def set_members(classes: list[np.ndarray], num_classes: int) -> np.ndarray:
    """(len(classes), num_classes) bool membership of each class set (void left out): the rows of the class-set
    tables in ``targets.h5``. A member outside ``0..num_classes - 1`` and 255 raises ValueError."""
    members = np.zeros((len(classes), num_classes), dtype=bool)
    for k, values in enumerate(classes):
        real = np.asarray(values, dtype=np.int64)
        real = real[real != IGNORE_INDEX]
        if real.size and (real.min() < 0 or real.max() >= num_classes):
            raise ValueError(f"class set {format_classes(values)!r} names a class outside 0..{num_classes - 1}")
        members[k, real] = True
    return members


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
    stride: int = 1,
) -> np.ndarray:
    """Boolean mask of pixels to drop from the targets of one image.

    ``answer_map``: (H, W) int answer row per pixel (-1 none); ``labels``: answered label per answer row;
    ``probs``: (C, h, w) probabilities of the previous round's model stored at ``stride`` (label pixel (y, x) reads
    (y // stride, x // stride)). Only answers with a real label and covering at least ``min_pixels`` pixels are
    sieved (and, given ``rows``, only those rows).

    ``method="knee"``: pixels whose confidence in the answered label lies below the region's knee
    (:func:`knee_threshold`). ``method="knee_disagree"``: those, plus pixels whose argmax is another class with
    probability at least ``disagree_threshold``; this still sieves the confidently wrong pixels of regions where
    they are so many that the knee lands on the lowest point and sieves nothing.
    """
    from adaspx.artifacts import lookup

    drop = np.zeros(answer_map.shape, dtype=bool)
    answered = np.flatnonzero(answer_map.ravel() >= 0)
    probs_here = lookup(probs, answered, answer_map.shape[1], stride)
    drop.ravel()[answered] = sieve_answered(
        answer_map.ravel()[answered],
        labels,
        probs_here,
        min_pixels,
        method=method,
        disagree_threshold=disagree_threshold,
        rows=rows,
    )
    return drop


def sieve_answered(
    pixel_rows: np.ndarray,
    labels: np.ndarray,
    probs: np.ndarray,
    min_pixels: int,
    *,
    method: str = "knee",
    disagree_threshold: float = 0.5,
    rows: np.ndarray | None = None,
) -> np.ndarray:
    """:func:`sieve_mask` on the answered pixels of an image only: ``pixel_rows`` (n,) is the answer row of each,
    in raster order, and ``probs`` (C, n) their probabilities. Returns the (n,) boolean mask of pixels to drop.

    This is the whole computation: the probabilities of unanswered pixels are never needed, so a stage can decode
    just these columns of a stored probability array.
    """
    if method not in SIEVE_METHODS:
        raise ValueError(f"sieve method {method!r} unknown; expected one of {', '.join(SIEVE_METHODS)}")
    drop = np.zeros(pixel_rows.shape, dtype=bool)
    order = np.argsort(pixel_rows, kind="stable")  # grouped by row, raster order within a row
    rows_here, starts, counts = np.unique(pixel_rows[order], return_index=True, return_counts=True)
    if method == "knee_disagree" and rows_here.size:
        top = probs.argmax(axis=0)
        top_p = np.take_along_axis(probs, top[None], axis=0)[0]
    allowed = None if rows is None else set(np.asarray(rows).tolist())
    for row, start, count in zip(rows_here.tolist(), starts.tolist(), counts.tolist(), strict=True):
        lab = int(labels[row])
        if lab == IGNORE_INDEX or count < min_pixels or (allowed is not None and row not in allowed):
            continue
        pixels = order[start : start + count]
        conf = probs[lab, pixels]
        thr = knee_threshold(conf)
        region_drop = conf < thr if thr is not None else np.zeros(conf.shape, dtype=bool)
        if method == "knee_disagree":
            region_drop |= (top[pixels] != lab) & (top_p[pixels] >= disagree_threshold)
        drop[pixels] = region_drop
    return drop


OVERLAPS = ("latest", "painter")
"""How answers covering the same pixel make its target: see :func:`adaspx.pipeline.annotate` (``targets.overlap``)."""


def painted_targets(
    layers: np.ndarray, rows: np.ndarray, labels: np.ndarray, sieved, frozen: tuple[np.ndarray, int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(H, W) uint8 targets painted as the reference code builds them, without and with sieving.

    ``layers`` (L, H, W): each answer's whole region, one layer per round in order, values k >= 1 naming answer row
    ``rows[k - 1]`` (0: none); ``labels``: the label of every answer row. Layer after layer, each answer paints its
    label over its region, except that an answer without a label (void, or a set of several classes, 255) paints
    nothing and the pixels ``sieved(pixels, pixel_rows)`` drops (a bool mask; it sees the layer's pixels, whole
    regions) keep what was painted before. ``frozen`` (``sieve.freeze``): ``(targets, n)``, the sieved targets of the
    first ``n`` layers as their own rounds made them; only the later layers are painted over them, sieved."""
    shape = layers.shape[1:]
    plain = np.full(shape, IGNORE_INDEX, dtype=np.uint8)
    target, done = (plain.copy(), 0) if frozen is None else (np.array(frozen[0], dtype=np.uint8), frozen[1])
    for k, layer in enumerate(layers):
        pixels = np.flatnonzero(layer.ravel() != 0)
        if not pixels.size:
            continue
        prows = np.asarray(rows, dtype=np.int64)[layer.ravel()[pixels].astype(np.int64) - 1]
        lab = np.asarray(labels)[prows]
        paint = lab != IGNORE_INDEX
        plain.ravel()[pixels[paint]] = lab[paint]
        if k < done:
            continue
        paint &= ~sieved(pixels, prows)
        target.ravel()[pixels[paint]] = lab[paint]
    return plain, target


def targets_from_answers(answer_map: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(H, W) uint8 targets: the answered label of every pixel's latest answer, 255 where unanswered or void."""
    answered = np.flatnonzero(answer_map.ravel() >= 0)
    return answered_targets(answer_map.shape, answered, np.asarray(labels)[answer_map.ravel()[answered]])


def answered_targets(shape: tuple[int, int], answered: np.ndarray, pixel_labels: np.ndarray) -> np.ndarray:
    """(H, W) uint8 targets: ``pixel_labels`` at the answered pixels (flat indexes, usually a small part of the
    image), 255 elsewhere."""
    target = np.full(shape, IGNORE_INDEX, dtype=np.uint8)
    target.ravel()[answered] = pixel_labels
    return target


def precision(targets: np.ndarray, gt: np.ndarray) -> tuple[int, int]:
    """(labeled pixels, correctly labeled pixels) of a target map against ground truth."""
    labeled = targets != IGNORE_INDEX
    return int(labeled.sum()), int((targets[labeled] == gt[labeled]).sum())
