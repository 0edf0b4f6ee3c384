"""Acquisition: score candidate regions, then select under a click budget.

Scoring functions (``*_scores``, ``*_share``) only turn per-region statistics into one number per region, higher =
query first; selection (:func:`select_under_budget`) only knows scores, costs and optional per-image and per-class
limits. The round loop lives in the workflow.
"""

from __future__ import annotations

import logging
import math
import sys
import warnings
from collections.abc import Collection, Mapping
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

CLICK_COSTS = ("region", "classes")

OFFICIAL_IMAGE_PIXELS = 1024 * 2048
"""The reference code divides its class pixel counts by ``n_images * 1024 * 2048`` (full-resolution Cityscapes)."""

MULACTSEG_TEMPERATURE = 0.1
"""MulActSeg's softmax temperature (``--ce_temp 0.1``) for its BvSB uncertainty and its class distribution."""
MULACTSEG_COEFF = 6.0
"""MulActSeg's class weight coefficient (``--cls_weight_coeff 6.0``): weights ``(6 p_c + 1) ** -2``."""
MULACTSEG_EPS = 1e-8
"""MulActSeg adds ``1e-8`` to every pixel's BvSB ratio."""

ILP_GAP_REL = 1e-3
ILP_TIME_LIMIT = 5.0


# ------------------------------------------------------------------------------------------------ scores


def random_scores(n: int, rng: np.random.Generator) -> np.ndarray:
    """Uniform random scores: a random selection after the top-k cut."""
    return rng.random(n)


def margin_scores(uncertainty: np.ndarray) -> np.ndarray:
    """Mean margin-ratio uncertainty of the region (p_(2) / p_(1), higher = less sure)."""
    return np.asarray(uncertainty, dtype=np.float64)


def pixel_entropy(probs: np.ndarray, axis: int = 0) -> np.ndarray:
    """Per-pixel Shannon entropy ``-sum_c p_c log p_c`` (natural log, 0 log 0 = 0) along the class ``axis``."""
    p = np.asarray(probs, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(p > 0, p * np.log(p), 0.0)
    return -plogp.sum(axis=axis)


def entropy_scores(mean_entropy: np.ndarray) -> np.ndarray:
    """The region's mean per-pixel entropy (higher = less sure); see :func:`pixel_entropy`."""
    return np.asarray(mean_entropy, dtype=np.float64)


def minmax(values: np.ndarray) -> np.ndarray:
    """Min-max normalisation over the pool; a constant vector maps to all ones (nothing to rank)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return values
    lo, hi = values.min(), values.max()
    if hi <= lo:
        return np.ones_like(values)
    return (values - lo) / (hi - lo)


def pixel_share(class_pixels: np.ndarray) -> np.ndarray:
    """``p_c`` of ``class_balanced``: the share of pool pixels whose per-pixel argmax is c (sums to 1)."""
    class_pixels = np.asarray(class_pixels, dtype=np.float64)
    return class_pixels / max(1.0, class_pixels.sum())


def official_share(region_class_pixels: np.ndarray, n_images: int) -> np.ndarray:
    """``p_c`` of the reference code, literally: the summed sizes of the pool's regions whose most frequent argmax
    class is c, over ``n_images * 1024 * 2048`` (``region_selection_using_cb.py``).

    The reference takes the sizes at half resolution (its statistics grid, 512x1024 on Cityscapes) but divides by
    the full-resolution pixel count, so its shares sum to ~1/4 and its weights ``exp(-p_c)`` are ~4x weaker than
    intended. On other image sizes the hard-coded denominator makes the shares meaningless (tiny images: all
    weights ~1).
    """
    counts = np.asarray(region_class_pixels, dtype=np.float64)
    return counts / (max(1, int(n_images)) * OFFICIAL_IMAGE_PIXELS)


def region_share(predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """``p_c`` of Cai et al.: the share of the pool's regions whose predicted class is c (sums to 1)."""
    predicted = np.asarray(predicted, dtype=np.int64)
    counts = np.bincount(predicted[predicted >= 0], minlength=num_classes)[:num_classes].astype(np.float64)
    return counts / max(1.0, counts.sum())


def class_balanced_scores(uncertainty: np.ndarray, predicted: np.ndarray, class_share: np.ndarray) -> np.ndarray:
    """Cai et al.'s class-balanced score: ``minmax(u_s) * exp(-p_c)`` for the region's predicted class c.

    ``class_share[c]`` is ``p_c`` (:func:`pixel_share`, :func:`official_share` or :func:`region_share`), so rare
    predicted classes weigh more.
    """
    class_share = np.asarray(class_share, dtype=np.float64)
    weights = np.exp(-class_share)
    return minmax(uncertainty) * weights[np.asarray(predicted, dtype=np.int64)]


def official_class_balanced_scores(
    uncertainty: np.ndarray, predicted: np.ndarray, pool_uncertainty: np.ndarray, class_share: np.ndarray
) -> np.ndarray:
    """The reference code's class-balanced score: ``u_s / max u * exp(-p_c)``, ``max u`` over every region of the
    pool (answered or not), and weight 1 for a region without a class (one that vanished on the statistics grid,
    whose ``u`` is 0).

    The reference min-max normalises over every region slot of every image (8292 per Cityscapes image, more than any
    image has regions, absent ones 0), so its minimum is 0: ``u / max u``."""
    top = float(np.max(pool_uncertainty, initial=0.0))
    u = np.asarray(uncertainty, dtype=np.float64)
    norm = u / top if top > 0 else np.zeros_like(u)
    weights = np.append(np.exp(-np.asarray(class_share, dtype=np.float64)), 1.0)  # index -1: no class
    return norm * weights[np.asarray(predicted, dtype=np.int64)]


def tempered(probs: np.ndarray, temperature: float, axis: int = 0) -> np.ndarray:
    """``softmax(log p / T)`` along the class ``axis``, in float64: the probabilities of the logits divided by ``T``
    (``softmax(z / T) = p ** (1 / T) / sum_k p_k ** (1 / T)``), computed as ``(p / max p) ** (1 / T)`` normalised."""
    p = np.asarray(probs, dtype=np.float64)
    r = (p / p.max(axis=axis, keepdims=True)) ** (1.0 / temperature)
    return r / r.sum(axis=axis, keepdims=True)


def tempered_bvsb(probs: np.ndarray, temperature: float, axis: int = 0) -> np.ndarray:
    """Per-pixel best-versus-second-best ratio of the tempered probabilities, ``q_(2) / q_(1) + 1e-8`` (in (0, 1],
    higher = less sure), which is ``(p_(2) / p_(1)) ** (1 / T) + 1e-8``; 1e-8 alone with a single class."""
    p = np.asarray(probs, dtype=np.float64)
    c = p.shape[axis]
    if c < 2:
        return np.full(np.delete(p.shape, axis), MULACTSEG_EPS)
    top2 = np.partition(p, (c - 2, c - 1), axis=axis)
    second, first = np.take(top2, c - 2, axis=axis), np.take(top2, c - 1, axis=axis)
    return (second / first) ** (1.0 / temperature) + MULACTSEG_EPS


def mulactseg_class_weights(tempered_prob_sums: np.ndarray, coeff: float = MULACTSEG_COEFF) -> np.ndarray:
    """MulActSeg's class weights ``(coeff * p_c + 1) ** -2``, ``p_c`` the pool's mean tempered probability of c
    (``tempered_prob_sums``: summed over the pool's pixels; normalised here, as every pixel's probabilities sum
    to 1)."""
    sums = np.asarray(tempered_prob_sums, dtype=np.float64)
    share = sums / max(float(sums.sum()), np.finfo(np.float64).tiny)
    return (coeff * share + 1.0) ** -2


def mulactseg_scores(bvsb_by_class: np.ndarray, sizes: np.ndarray, class_weights: np.ndarray) -> np.ndarray:
    """MulActSeg's region score, the mean over the region's pixels x of ``bvsb(x) * w[argmax p(x)]``:
    ``sum_c w_c * bvsb_by_class[:, c] / size``, ``bvsb_by_class[s, c]`` the summed :func:`tempered_bvsb` of the
    pixels of region s predicted as c."""
    sums = np.asarray(bvsb_by_class, dtype=np.float64)
    return (sums * np.asarray(class_weights, dtype=np.float64)).sum(axis=1) / np.asarray(sizes, dtype=np.float64)


def size_weights(sizes: np.ndarray, exponent: float) -> np.ndarray:
    """``(size / mean size) ** exponent``: > 1 favours large regions, < 0 small ones, 0 = all ones."""
    sizes = np.asarray(sizes, dtype=np.float64)
    if exponent == 0 or sizes.size == 0:
        return np.ones_like(sizes)
    return (sizes / sizes.mean()) ** exponent


# ------------------------------------------------------------------------------------ region statistics


def dense_index(labels: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Row of each pixel's region in ``ids`` (sorted region ids that include every id of ``labels``), as int64.

    A look-up table over the id range when it is small (the usual superpixel ids), a binary search otherwise.
    """
    ids = np.asarray(ids, dtype=np.int64)
    if ids.size == 0:
        return np.zeros(labels.shape, dtype=np.int64)
    lo, hi = int(ids[0]), int(ids[-1])
    if hi - lo < 4 * labels.size + 1024:
        lut = np.zeros(hi - lo + 1, dtype=np.int64)
        lut[ids - lo] = np.arange(ids.size)
        return lut[labels.astype(np.int64, copy=False) - lo]
    return np.searchsorted(ids, labels)


OPTIONAL_FEATURES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "entropy": (("entropy",), ()),
    "tempered_bvsb": (("bvsb_by_class",), ("tempered_probs",)),
}
"""Region statistics computed only for the strategies that need them (:attr:`Strategy.features`): name -> (the
per-region columns, the per-image columns) that :func:`region_features` adds and a regions artifact stores."""


def feature_columns(features: Collection[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The per-region and per-image columns of the optional ``features`` (in :data:`OPTIONAL_FEATURES` order)."""
    unknown = sorted(set(features) - OPTIONAL_FEATURES.keys())
    if unknown:
        raise ValueError(
            f"region features {', '.join(unknown)} unknown; expected some of {', '.join(OPTIONAL_FEATURES)}"
        )
    chosen = [OPTIONAL_FEATURES[f] for f in OPTIONAL_FEATURES if f in features]
    return tuple(c for region, _ in chosen for c in region), tuple(c for _, image in chosen for c in image)


def region_features(
    labels: np.ndarray,
    probs: np.ndarray,
    stats,
    stride: int,
    features: Collection[str] = (),
    probs_temperature: float = 1.0,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """What acquisition needs to know of one image's regions, from their :class:`adaspx.merge.RegionStats`.

    ``labels``: the (H, W) region map the statistics describe; ``probs``: float32 (C, h, w) probabilities stored
    at ``stride`` (label pixel (y, x) reads (y // stride, x // stride)). Returns the per-region columns ``region``,
    ``size``, ``uncertainty``, ``predicted``, ``classes`` (distinct per-pixel argmax classes in the region, the
    ``classes`` click estimate) and the per-image ``class_pixels`` (argmax pixel counts per class), plus the columns
    of the optional ``features`` (:data:`OPTIONAL_FEATURES`): ``entropy``, the column ``entropy`` (mean per-pixel
    entropy); ``tempered_bvsb``, for
    ``mulactseg`` at temperature :data:`MULACTSEG_TEMPERATURE`, the (R, C) column ``bvsb_by_class`` (per region
    and class c, the summed :func:`tempered_bvsb` of its pixels whose argmax is c) and the per-image
    ``tempered_probs`` (the :func:`tempered` probabilities summed over the image's pixels). ``probs_temperature``:
    the softmax temperature the probabilities were predicted at (:attr:`adaspx.artifacts.Probabilities.temperature`);
    tempering divides the logits by :data:`MULACTSEG_TEMPERATURE` in all, whatever it is.
    """
    feature_columns(features)  # names checked
    hist = stats.class_hist
    columns = {
        "region": stats.ids,
        "size": stats.counts,
        "uncertainty": stats.uncertainty,
        "predicted": stats.predicted,
        "classes": (hist > 0).sum(axis=1).astype(np.int64),
    }
    c = probs.shape[0]
    per_image = {
        "class_pixels": hist.sum(axis=0).astype(np.int64),
        # the reference's class counts: region sizes by the region's most frequent argmax class
        "region_class_pixels": np.bincount(stats.predicted, weights=stats.counts, minlength=c)[:c].astype(np.int64),
    }
    if "entropy" in features:
        ent = _at_labels(pixel_entropy(probs, axis=0), labels.shape, stride)
        dense = dense_index(labels, stats.ids).ravel()
        columns["entropy"] = np.bincount(dense, weights=ent.ravel(), minlength=len(stats.ids)) / stats.counts
    if "tempered_bvsb" in features:
        c, n = probs.shape[0], len(stats.ids)
        relative = MULACTSEG_TEMPERATURE / probs_temperature  # softmax(log p / relative) = softmax(z / 0.1)
        bvsb = _at_labels(tempered_bvsb(probs, relative), labels.shape, stride).ravel()
        top1 = _at_labels(probs.argmax(axis=0), labels.shape, stride).ravel()
        cell = dense_index(labels, stats.ids).ravel() * c + top1
        columns["bvsb_by_class"] = np.bincount(cell, weights=bvsb, minlength=n * c).reshape(n, c)
        # summed over the label pixels: each stored pixel counts as often as label pixels read it
        h, w = probs.shape[1:]
        reads = np.outer(
            np.bincount(np.arange(labels.shape[0]) // stride, minlength=h)[:h],
            np.bincount(np.arange(labels.shape[1]) // stride, minlength=w)[:w],
        )
        per_image["tempered_probs"] = (tempered(probs, relative) * reads).sum(axis=(1, 2))
    return columns, per_image


STATISTICS_GRIDS = ("labels", "probabilities")
"""Where acquisition statistics are taken (``al.statistics``): ``labels``, every label pixel reading its stored
probabilities; ``probabilities``, on the stored probabilities' own grid with the region map shrunk to it
(:func:`shrink_map`), as the reference code does at half resolution."""


def shrink_map(labels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The region map on the coarser ``shape`` grid as the reference code takes it: ``scipy.ndimage.zoom`` with
    order 0 by ``(h / H, w / W)`` (0.5 and 0.5 for a half-resolution grid of an even-sized image). Regions may
    vanish."""
    from scipy.ndimage import zoom

    out = zoom(labels, (shape[0] / labels.shape[0], shape[1] / labels.shape[1]), order=0)
    assert out.shape == tuple(shape), (out.shape, shape)
    return out


def grid_features(
    labels: np.ndarray,
    probs: np.ndarray,
    stride: int,
    features: Collection[str],
    grid: str,
    stats=None,
    probs_temperature: float = 1.0,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """:func:`region_features` of one image's regions on ``grid`` (:data:`STATISTICS_GRIDS`); ``stats``: the
    regions' statistics at label resolution, when at hand; ``probs_temperature``: see :func:`region_features`.

    On the ``probabilities`` grid (stride > 1) the statistics describe the shrunk map; every region of ``labels``
    keeps a row with its label-resolution ``size``, and a region that vanished has uncertainty 0, no predicted
    class (-1) and one estimated class, as the reference scores it (0)."""
    from adaspx.merge import region_stats

    if grid not in STATISTICS_GRIDS:
        raise ValueError(f"statistics grid {grid!r} unknown; expected one of {', '.join(STATISTICS_GRIDS)}")
    if grid == "labels" or stride == 1:
        stats = stats if stats is not None else region_stats(labels, probs, channel_axis=0)
        return region_features(labels, probs, stats, stride, features, probs_temperature)
    small = shrink_map(labels, probs.shape[1:])
    small_stats = region_stats(small, probs, channel_axis=0)
    columns, per_image = region_features(small, probs, small_stats, 1, features, probs_temperature)
    ids, sizes = (stats.ids, stats.counts) if stats is not None else np.unique(labels, return_counts=True)
    at = np.searchsorted(ids, columns["region"])
    full = {"region": ids, "size": sizes}
    fill = {"uncertainty": 0.0, "predicted": -1, "classes": 1}
    for key, values in columns.items():
        if key in full:
            continue
        out = np.full((len(ids), *values.shape[1:]), fill.get(key, 0), dtype=values.dtype)
        out[at] = values
        full[key] = out
    if "bvsb_by_class" in full:  # sums over the grid's pixels, read per label pixel as the other sums are
        scale = np.zeros(len(ids))
        scale[at] = sizes[at] / columns["size"]
        full["bvsb_by_class"] = full["bvsb_by_class"] * scale[:, None]
    return full, per_image


def _at_labels(values: np.ndarray, shape: tuple[int, int], stride: int) -> np.ndarray:
    """A per-pixel map stored at ``stride`` (its last two axes) read at every pixel of a ``shape`` label map."""
    if stride == 1:
        return values
    rows, cols = np.arange(shape[0]) // stride, np.arange(shape[1]) // stride
    return values[..., rows[:, None], cols[None, :]]


# ------------------------------------------------------------------------------------------------ strategies


@dataclass(frozen=True)
class Pool:
    """What a strategy scores: the round's candidates and what is known of the whole pool.

    ``columns``: one entry per candidate in each array: ``size``, ``uncertainty``, ``predicted``, ``classes`` and
    the per-region columns of the strategy's :attr:`Strategy.features`; ``totals``: per-image columns summed over
    the pool's images (``class_pixels``, ``region_class_pixels`` and the strategy's); ``predicted`` and
    ``uncertainty``: those of every region of the pool, candidates or not (-1 and NaN without a model);
    ``n_images``: the pool's images.
    """

    columns: Mapping[str, np.ndarray]
    totals: Mapping[str, np.ndarray]
    predicted: np.ndarray
    n_images: int
    num_classes: int
    uncertainty: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.columns["size"])


@dataclass(frozen=True, kw_only=True)
class Strategy:
    """An acquisition strategy: what it needs of the previous round's model, and how it scores candidates.

    ``uses_model``: its scores read a model's region statistics (a model-free strategy gets them only for estimated
    class costs and class quotas, and its scores are not size-weighted); ``features``: the optional region
    statistics (:data:`OPTIONAL_FEATURES`) its scores read. :meth:`scores` is higher = query first.
    """

    name: str
    uses_model: bool = True
    features: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        feature_columns(self.features)  # names checked
        if self.features and not self.uses_model:
            raise ValueError(f"strategy {self.name!r}: region features need a model")

    def scores(self, pool: Pool, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError


@dataclass(frozen=True, kw_only=True)
class Random(Strategy):
    """Uniform random scores (:func:`random_scores`)."""

    uses_model: bool = False

    def scores(self, pool: Pool, rng: np.random.Generator) -> np.ndarray:
        return random_scores(len(pool), rng)


@dataclass(frozen=True, kw_only=True)
class Margin(Strategy):
    """The region's mean margin ratio (:func:`margin_scores`)."""

    def scores(self, pool: Pool, rng: np.random.Generator) -> np.ndarray:
        return margin_scores(pool.columns["uncertainty"])


@dataclass(frozen=True, kw_only=True)
class Entropy(Strategy):
    """The region's mean per-pixel entropy (:func:`entropy_scores`)."""

    features: tuple[str, ...] = ("entropy",)

    def scores(self, pool: Pool, rng: np.random.Generator) -> np.ndarray:
        return entropy_scores(pool.columns["entropy"])


@dataclass(frozen=True, kw_only=True)
class ClassBalanced(Strategy):
    """Cai et al.'s class-balanced score (:func:`class_balanced_scores`) with ``share``'s ``p_c``: ``pixels``
    (:func:`pixel_share`), ``official`` (:func:`official_share`) or ``regions`` (:func:`region_share`)."""

    share: str = "pixels"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.share not in ("pixels", "official", "regions"):
            raise ValueError(f"strategy {self.name!r}: class share {self.share!r} unknown")

    def class_share(self, pool: Pool) -> np.ndarray:
        if self.share == "pixels":
            return pixel_share(pool.totals["class_pixels"])
        if self.share == "official":
            return official_share(pool.totals["region_class_pixels"], pool.n_images)
        return region_share(pool.predicted, pool.num_classes)

    def scores(self, pool: Pool, rng: np.random.Generator) -> np.ndarray:
        share = self.class_share(pool)
        log.info("class shares p_c (%s): %s", self.name, np.array2string(share, precision=4))
        if self.share == "official":
            return official_class_balanced_scores(
                pool.columns["uncertainty"], pool.columns["predicted"], pool.uncertainty, share
            )
        return class_balanced_scores(pool.columns["uncertainty"], pool.columns["predicted"], share)


@dataclass(frozen=True, kw_only=True)
class MulActSeg(Strategy):
    """MulActSeg's acquisition (Hwang et al., NeurIPS 2023): the region's mean of the pixels' tempered BvSB ratio
    weighted by the class weight ``(coeff * p_c + 1) ** -2`` of their argmax class (:func:`mulactseg_scores`,
    :func:`mulactseg_class_weights`), ``p_c`` the pool's mean tempered probability of class c."""

    features: tuple[str, ...] = ("tempered_bvsb",)
    coeff: float = MULACTSEG_COEFF

    def scores(self, pool: Pool, rng: np.random.Generator) -> np.ndarray:
        weights = mulactseg_class_weights(pool.totals["tempered_probs"], self.coeff)
        log.info("class weights (%s): %s", self.name, np.array2string(weights, precision=4))
        return mulactseg_scores(pool.columns["bvsb_by_class"], pool.columns["size"], weights)


STRATEGIES: dict[str, Strategy] = {
    s.name: s
    for s in (
        Random(name="random"),
        Margin(name="margin"),
        Entropy(name="entropy"),
        ClassBalanced(name="class_balanced", share="pixels"),
        ClassBalanced(name="class_balanced_official", share="official"),
        ClassBalanced(name="class_balanced_cai", share="regions"),
        MulActSeg(name="mulactseg"),
    )
}
"""Every acquisition strategy by name (``experiments[].acquisition``); a new one is added here alone."""


def strategy(name: str) -> Strategy:
    """The strategy called ``name``; ValueError for an unknown one."""
    try:
        return STRATEGIES[name]
    except KeyError:
        raise ValueError(f"acquisition {name!r} unknown; expected one of {', '.join(STRATEGIES)}") from None


# ------------------------------------------------------------------------------------------------- costs


def click_costs(model: str, n: int, predicted_classes: np.ndarray | None = None) -> np.ndarray:
    """Estimated clicks per candidate: ``region`` 1 each; ``classes`` the number of distinct per-pixel argmax
    classes the model predicts in the region (the annotator is charged the true number; 1 without a model)."""
    if model not in CLICK_COSTS:
        raise ValueError(f"click cost {model!r} unknown; expected one of {', '.join(CLICK_COSTS)}")
    if model == "region" or predicted_classes is None:
        return np.ones(n, dtype=np.int64)
    costs = np.asarray(predicted_classes, dtype=np.int64)
    if costs.shape != (n,):
        raise ValueError(f"predicted class counts {costs.shape} do not match {n} candidates")
    return np.maximum(costs, 1)


# --------------------------------------------------------------------------------------------- selection


@dataclass(frozen=True)
class Limits:
    """What a selection may take besides its budget: at most ``max_per_image`` candidates of each value of
    ``images`` (one image index per candidate), and at most ``class_quota[c]`` clicks on the candidates whose
    ``classes`` is c. None = no such limit (``images``, ``classes`` are read only with their limit)."""

    images: np.ndarray | None = None
    max_per_image: int | None = None
    classes: np.ndarray | None = None
    class_quota: np.ndarray | None = None

    @property
    def any(self) -> bool:
        return self.max_per_image is not None or self.class_quota is not None

    def checked(self, n: int) -> Limits:
        """These limits as arrays, for ``n`` candidates: ValueError where they do not fit."""
        images, classes, quota = self.images, self.classes, None
        if self.max_per_image is not None:
            if self.max_per_image < 1:
                raise ValueError(f"max_per_image must be >= 1, got {self.max_per_image}")
            if images is None or np.shape(images) != (n,):
                raise ValueError("max_per_image needs one image index per candidate")
            images = np.asarray(images)
        if self.class_quota is not None:
            quota = np.asarray(self.class_quota, dtype=np.int64)
            if classes is None or np.shape(classes) != (n,):
                raise ValueError("class quotas need one class per candidate")
            classes = np.asarray(classes, dtype=np.int64)
            if classes.size and (classes.min() < 0 or classes.max() >= quota.size):
                raise ValueError(f"candidate classes must lie in [0, {quota.size}) for class quotas")
        return Limits(images, self.max_per_image, classes, quota)

    def subset(self, idx: np.ndarray) -> Limits:
        """The limits of the candidates ``idx`` (the quotas and the cap unchanged)."""
        return Limits(
            None if self.images is None else self.images[idx],
            self.max_per_image,
            None if self.classes is None else self.classes[idx],
            self.class_quota,
        )


NO_LIMITS = Limits()


def class_quotas(max_per_class: float | None, budget: int, num_classes: int) -> np.ndarray | None:
    """Click quota per predicted class: ``ceil(max_per_class * budget)``, or None without a quota."""
    if max_per_class is None:
        return None
    if not 0 < max_per_class <= 1:
        raise ValueError(f"max_per_class must be a share of the budget in (0, 1], got {max_per_class}")
    return np.full(num_classes, math.ceil(max_per_class * budget), dtype=np.int64)


def _value(scores: np.ndarray) -> np.ndarray:
    """Scores shifted to be positive: the objective, so that adding a region that fits never lowers it."""
    return scores - min(0.0, float(scores.min(initial=0.0))) + 1e-9


def _density(scores: np.ndarray, costs: np.ndarray) -> np.ndarray:
    """Greedy's ranking key: the score itself with unit costs, else the (shifted) score per click."""
    return scores if np.all(costs == 1) else _value(scores) / costs


def _greedy_is_within_gap(scores, costs, rank, budget, greedy, depth, gap_rel) -> bool:
    """Whether greedy's summed score is within ``gap_rel`` of Dantzig's bound on the knapsack optimum: the best
    candidates by score per click (``rank``) taken whole until one does not fit, plus that one's score per click
    times the clicks left. Greedy scanned the first ``depth`` candidates by ``rank``, the break among them."""
    shift = 1e-9 - min(0.0, float(scores.min()))  # as _value, on the few candidates needed
    order = _rank_order(rank, min(scores.size, depth + 1))
    spent = np.cumsum(costs[order])
    b = int(np.searchsorted(spent, budget, side="right"))
    bound = (scores[order[:b]] + shift).sum()
    if b < order.size:
        bound += (budget - (spent[b - 1] if b else 0)) * (scores[order[b]] + shift) / costs[order[b]]
    return (scores[greedy] + shift).sum() >= (1 - gap_rel) * bound


def _rank_order(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` best scores, best first, ties by position: a stable argsort's first k, in O(n)."""
    n = scores.size
    if k >= n:
        return np.argsort(-scores, kind="stable")
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    kth = np.partition(scores, n - k)[n - k]  # the k-th largest value
    above = np.flatnonzero(scores > kth)
    ties = np.flatnonzero(scores == kth)[: k - above.size]
    idx = np.concatenate([above, ties])
    return idx[np.argsort(-scores[idx], kind="stable")]


def _greedy_prefix(scores, costs, budget, limits: Limits, prefix=4):
    """Greedy over the best candidates only, widening until the budget is filled inside them.

    Greedy takes candidates in rank order, so once the budget is spent inside the best T candidates, the
    candidates beyond T cannot change its choice: the result equals greedy over the whole pool. Returns the chosen
    indices (rank order) and the rank at which the last one was taken.
    """
    t = min(scores.size, max(1, prefix * budget))
    while True:
        order = _rank_order(scores, t)
        take = _greedy_order(order, costs, budget, limits)
        if costs[order[take]].sum() == budget or t == scores.size:
            return order[take], (int(take[-1]) + 1 if take.size else 0)
        t = min(scores.size, 4 * t)


def _greedy_order(order, costs, budget, limits: Limits, count=None) -> np.ndarray:
    """Positions in ``order`` that greedy takes: in order, while budget, per-image cap and class quota allow, and
    at most ``count`` of them. A feasible head of ``order`` is taken whole, so the rest extends it."""
    images, max_per_image, classes, quotas = limits.images, limits.max_per_image, limits.classes, limits.class_quota
    count = order.size if count is None else count
    if max_per_image is None and quotas is None and np.all(costs[order] == 1):
        return np.arange(min(budget, order.size, count))
    oc = costs[order].tolist()
    oi = images[order].tolist() if max_per_image is not None else None
    ok = classes[order].tolist() if quotas is not None else None
    q = quotas.tolist() if quotas is not None else None
    chosen, spent = [], 0
    per_image: dict[int, int] = {}
    per_class = [0] * len(q) if q is not None else None
    for pos, c in enumerate(oc):
        if spent + c > budget:
            continue
        if oi is not None and per_image.get(oi[pos], 0) >= max_per_image:
            continue
        if ok is not None:
            k = ok[pos]
            if per_class[k] + c > q[k]:
                continue
            per_class[k] += c
        if oi is not None:
            per_image[oi[pos]] = per_image.get(oi[pos], 0) + 1
        chosen.append(pos)
        spent += c
        if spent == budget or len(chosen) == count:
            break
    return np.asarray(chosen, dtype=np.int64)


def _top_in_groups(scores: np.ndarray, groups: np.ndarray, keep: int | np.ndarray) -> np.ndarray:
    """Boolean mask of the best ``keep`` (or ``keep[g]``) candidates (by score, ties by position) of every group."""
    order = np.lexsort((np.arange(scores.size), -scores, groups))
    g = groups[order]
    starts = np.r_[0, np.flatnonzero(g[1:] != g[:-1]) + 1]
    first = np.repeat(starts, np.diff(np.r_[starts, g.size]))
    rank = np.arange(g.size) - first
    limit = keep[g] if isinstance(keep, np.ndarray) else keep
    mask = np.zeros(scores.size, dtype=bool)
    mask[order[rank < limit]] = True
    return mask


def _prefilter(scores, costs, budget, limits: Limits, depth) -> np.ndarray:
    """Indices of the candidates the integer program considers, ascending.

    Only the best ``2 * max(depth, budget)`` candidates by greedy's ranking key ``scores`` (the score, or the
    score per click; ``depth``: the rank at which greedy filled the budget; a heuristic: a region ranked far
    below greedy's last pick rarely enters an optimal choice), and, per cell of equal image, class and cost, only
    the best ``min(max_per_image, quota // cost, budget // cost)``: two candidates of one cell are interchangeable
    for every constraint, so this cut keeps every optimal choice.
    """
    images, max_per_image, classes, quotas = limits.images, limits.max_per_image, limits.classes, limits.class_quota
    idx = _rank_order(scores, min(scores.size, 2 * max(depth, budget)))
    c = costs[idx]
    key = c.copy()
    keep = budget // c
    if max_per_image is not None:
        _, img = np.unique(images[idx], return_inverse=True)
        key = key + (c.max() + 1) * img.astype(np.int64)
        keep = np.minimum(keep, max_per_image)
    if quotas is not None:
        key = key * (quotas.size + 1) + classes[idx]
        keep = np.minimum(keep, quotas[classes[idx]] // c)
    _, cell = np.unique(key, return_inverse=True)
    limit = np.zeros(cell.max() + 1 if cell.size else 0, dtype=np.int64)
    limit[cell] = keep
    return np.sort(idx[_top_in_groups(scores[idx], cell, limit)])


def _program(scores, costs, budget, limits: Limits, binary: bool):
    """The selection as a PuLP problem over one variable per candidate (0/1, or in [0, 1] for the relaxation)."""
    import pulp

    images, max_per_image, classes, quotas = limits.images, limits.max_per_image, limits.classes, limits.class_quota
    cat = pulp.LpBinary if binary else pulp.LpContinuous
    x = [pulp.LpVariable(f"x{i}", lowBound=0, upBound=1, cat=cat) for i in range(scores.size)]
    prob = pulp.LpProblem("acquire", pulp.LpMaximize)
    prob += pulp.LpAffineExpression(zip(x, _value(scores).tolist(), strict=True))
    prob += pulp.LpAffineExpression(zip(x, costs.tolist(), strict=True)) <= budget, "budget"
    if max_per_image is not None:
        for g, members in _members(images).items():
            if len(members) > max_per_image:
                prob += pulp.LpAffineExpression((x[i], 1) for i in members) <= max_per_image, f"image{g}"
    if quotas is not None:
        for k, members in _members(classes).items():
            prob += pulp.LpAffineExpression((x[i], int(costs[i])) for i in members) <= int(quotas[k]), f"class{k}"
    return prob, x


def _solved(prob, x) -> np.ndarray | None:
    import pulp

    if prob.sol_status not in (pulp.LpSolutionOptimal, pulp.LpSolutionIntegerFeasible):
        return None
    return np.array([v.value() or 0.0 for v in x])


def _ilp(scores, costs, budget, limits: Limits, gap_rel, time_limit):
    """Solve the selection with CBC; None when CBC returns no usable solution.

    The LP relaxation first: with unit costs the program is a network flow (budget -> images -> classes) whose LP
    optimum is integral, so no branching is needed. Otherwise the 0/1 program (``gapRel``, ``timeLimit``); if
    that returns nothing, the LP solution rounded down and filled up greedily.
    """
    import pulp

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # PuLP 3.3 announces its 4.0 API on every call
        return _ilp_inner(pulp, scores, costs, budget, limits, gap_rel, time_limit)


def _ilp_inner(pulp, scores, costs, budget, limits: Limits, gap_rel, time_limit):
    solver = pulp.PULP_CBC_CMD(msg=False, gapRel=gap_rel, timeLimit=time_limit)
    args = (scores, costs, budget, limits)
    prob, x = _program(*args, binary=False)
    prob.solve(solver)
    values = _solved(prob, x)
    if values is None:
        log.warning(
            "CBC returned no usable solution (status %s, solution status %s): falling back to greedy selection",
            pulp.LpStatus.get(prob.status, prob.status),
            pulp.LpSolution.get(prob.sol_status, prob.sol_status),
        )
        return None
    if np.abs(values - np.round(values)).max(initial=0) <= 1e-6:
        return np.flatnonzero(values > 0.5)
    log.info("LP relaxation is fractional: solving the 0/1 program (gapRel %g, timeLimit %g s)", gap_rel, time_limit)
    fixed = np.flatnonzero(values > 1 - 1e-6)
    prob, x = _program(*args, binary=True)
    prob.solve(solver)
    values = _solved(prob, x)
    if values is not None and np.abs(values - np.round(values)).max(initial=0) <= 1e-6:
        return np.flatnonzero(values > 0.5)
    log.warning(
        "CBC returned no 0/1 solution in time (status %s): taking the rounded-down LP solution, filled greedily",
        pulp.LpStatus.get(prob.status, prob.status),
    )
    return _fill(fixed, scores, costs, budget, limits)


def _fill(fixed, scores, costs, budget, limits: Limits) -> np.ndarray:
    """``fixed`` (feasible) plus what greedy, by score per click, adds under the remaining budget, caps and quotas."""
    rest = np.setdiff1d(np.arange(scores.size), fixed)
    rest = rest[np.argsort(-_density(scores, costs)[rest], kind="stable")]
    seq = np.concatenate([np.asarray(fixed, dtype=np.int64), rest])
    return seq[_greedy_order(seq, costs, budget, limits)]


def _members(groups: np.ndarray) -> dict[int, list[int]]:
    order = np.argsort(groups, kind="stable")
    g = groups[order]
    cuts = np.flatnonzero(g[1:] != g[:-1]) + 1
    parts = zip(np.split(order, cuts), np.split(g, cuts), strict=True)
    return {int(part_g[0]): part.tolist() for part, part_g in parts}


def _feasible(sel, costs, budget, limits: Limits) -> bool:
    images, max_per_image, classes, quotas = limits.images, limits.max_per_image, limits.classes, limits.class_quota
    if costs[sel].sum() > budget:
        return False
    if max_per_image is not None and sel.size and np.unique(images[sel], return_counts=True)[1].max() > max_per_image:
        return False
    if quotas is not None and sel.size:
        used = np.bincount(classes[sel], weights=costs[sel], minlength=len(quotas))
        if (used > quotas).any():
            return False
    return True


def select_under_budget(
    scores: np.ndarray,
    costs: np.ndarray,
    budget: int,
    limits: Limits = NO_LIMITS,
    *,
    gap_rel: float = ILP_GAP_REL,
    time_limit: float = ILP_TIME_LIMIT,
) -> np.ndarray:
    """Indices of the regions to query, in rank order (best score first), whose click costs fit the budget.

    The objective is always the summed score of the selection (a 0/1 knapsack): a click budget is best spent on
    the regions that carry the most score per click. Without limits and with unit costs this is the plain top-k
    (ties keep the candidates' order). Costs other than 1 without limits: greedy by score per click, whose loss
    is at most one region's score; kept when within ``gap_rel`` of the LP bound (any budget of many clicks),
    else the 0/1 program below is solved. ``limits`` (:class:`Limits`): a per-image cap or per-class click quotas
    make it a 0/1 program solved by CBC (PuLP) with relative gap ``gap_rel`` and ``time_limit`` seconds on pre-filtered
    candidates; when CBC gives no usable solution, or a worse one than greedy, the greedy choice is taken (with a
    warning). With unit costs and a single kind of limit the greedy choice is optimal and no program is solved. A
    budget above the total cost selects everything (limits permitting), with a warning.
    """
    if budget < 0:
        raise ValueError(f"budget must be >= 0, got {budget}")
    scores = np.asarray(scores, dtype=np.float64)
    costs = np.asarray(costs, dtype=np.int64)
    if scores.shape != costs.shape or scores.ndim != 1:
        raise ValueError(f"scores {scores.shape} and costs {costs.shape} differ in shape")
    if np.isnan(scores).any():
        raise ValueError(f"{int(np.isnan(scores).sum())} candidate scores are NaN")
    if costs.size and costs.min() < 1:
        raise ValueError("click costs must be >= 1")
    limits = limits.checked(scores.size)
    if budget == 0 or scores.size == 0:
        return np.zeros(0, dtype=np.int64)
    limited = limits.any
    total = int(costs.sum())
    if budget >= total and not limited:
        if budget > total:
            log.warning(
                "budget of %d clicks exceeds the %d clicks of the whole candidate pool: selecting all", budget, total
            )
        return np.argsort(-scores, kind="stable")
    if budget > total:
        log.warning("budget of %d clicks exceeds the %d clicks of the whole candidate pool", budget, total)
    unit = bool(np.all(costs == 1))
    rank = _density(scores, costs)
    greedy, depth = _greedy_prefix(rank, costs, budget, limits)
    greedy = greedy[np.argsort(-scores[greedy], kind="stable")]
    single_limit = (limits.max_per_image is None) != (limits.class_quota is None)
    if (not limited and unit) or (unit and single_limit):  # top-k, or a (laminar) matroid: greedy is optimal
        return greedy
    if not limited and _greedy_is_within_gap(scores, costs, rank, budget, greedy, depth, gap_rel):
        return greedy  # a knapsack whose greedy fill is as good as the solver's gap
    cand = _prefilter(rank, costs, budget, limits, depth)
    sub = (scores[cand], costs[cand], budget, limits.subset(cand))
    if _feasible(np.arange(cand.size), *sub[1:]):
        chosen = cand  # everything left fits
    else:
        chosen = _ilp(*sub, gap_rel, time_limit)
        if chosen is not None and not _feasible(chosen, *sub[1:]):
            log.warning("CBC's solution breaks a constraint: falling back to greedy selection")
            chosen = None
        if chosen is not None and scores[cand][chosen].sum() < scores[greedy].sum():
            log.warning("CBC's solution scores below greedy (time limit?): taking greedy selection")
            chosen = None
        chosen = greedy if chosen is None else cand[chosen]
    return chosen[np.argsort(-scores[chosen], kind="stable")]


def reserve_after(
    chosen: np.ndarray,
    scores: np.ndarray,
    costs: np.ndarray,
    size: int,
    limits: Limits = NO_LIMITS,
) -> np.ndarray:
    """Up to ``size`` candidates to offer after ``chosen`` when the costs are only estimates, best first.

    The annotator answers the selection until the true clicks spend the budget; where the estimates were too high,
    it goes on with these. They follow the selection's order (score per click), skipping what would break the
    per-image cap or a class quota of ``limits`` counted over ``chosen`` and the reserve before them (quotas on the
    estimated costs), so the limits hold however many of them are answered.
    """
    scores = np.asarray(scores, dtype=np.float64)
    costs = np.asarray(costs, dtype=np.int64)
    chosen = np.asarray(chosen, dtype=np.int64)
    n = scores.size
    if size <= 0 or chosen.size >= n:
        return np.zeros(0, dtype=np.int64)
    limits = limits.checked(n)
    key = np.array(_density(scores, costs), dtype=np.float64)  # a copy: chosen ones are masked out below
    key[chosen] = -np.inf
    size = min(size, _reserve_capacity(n, chosen, costs, limits))
    if size <= 0:
        return np.zeros(0, dtype=np.int64)
    limited = limits.any
    # the best candidates only, widening while the limits leave too few of them (as _greedy_prefix)
    t = min(n, chosen.size + 2 * size)
    while True:
        order = _rank_order(key, t)
        order = order[np.isfinite(key[order])]
        if not limited:
            return order[:size]
        # greedy without a budget over the selection followed by these: the selection is taken whole (it is
        # feasible), what follows within the limits is the reserve
        seq = np.concatenate([chosen, order])
        pos = _greedy_order(seq, costs, sys.maxsize, limits, chosen.size + size)
        out = seq[pos[pos >= chosen.size]]
        if out.size == size or t == n:
            return out
        t = min(n, 4 * t)


def _reserve_capacity(n, chosen, costs, limits: Limits) -> int:
    """How many more regions the limits allow at most: the room left under the per-image cap (at most the
    regions an image has left), and the clicks left under the class quotas (a region costs at least one)."""
    max_per_image, class_quota = limits.max_per_image, limits.class_quota
    capacity = n - chosen.size
    if max_per_image is not None:
        codes = limits.images
        if not (np.issubdtype(codes.dtype, np.integer) and codes.size and 0 <= codes.min() and codes.max() <= n):
            _, codes = np.unique(codes, return_inverse=True)  # image codes (0..n) are counted directly
        total = np.bincount(codes)
        used = np.bincount(codes[chosen], minlength=total.size)
        capacity = min(capacity, int(np.minimum(np.maximum(max_per_image - used, 0), total - used).sum()))
    if class_quota is not None:
        used_per_class = np.bincount(limits.classes[chosen], weights=costs[chosen], minlength=len(class_quota))
        capacity = min(capacity, int(np.maximum(class_quota - used_per_class, 0).sum()))
    return capacity
