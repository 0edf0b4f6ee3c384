"""Base superpixels (SLIC, SEEDS) and oracle superpixels (ground-truth connected components, exact or as the
reference code approximates them).

SEEDS (``cv2.ximgproc.createSuperpixelSEEDS``) notes that shape the defaults of :func:`seeds_superpixels`:

- Memory. OpenCV keeps one colour histogram of ``histogram_bins ** 3`` float32 bins (rounded up to a multiple of 16)
  for every block of every level. The level-0 block side is the superpixel side divided by ``2 ** (num_levels - 1)``
  (rounded up, at least 1 px), so each extra level multiplies the histogram memory by about 4. The reference settings
  (8192 superpixels of 16x16 px on 1024x2048, 5 levels, 10 bins) make level 0 one block per pixel: 2M histograms of
  1008 floats, about 11 GB. The default ``num_levels=3`` uses 4x4 px blocks there: about 0.7 GB of histograms with
  10 bins (the setting recommended for that size), 0.09 GB with the default 5 bins.
- Bins. Finer histograms need more pixels per superpixel: 10 bins per channel suit ~256 px superpixels (8192 on
  1024x2048), 5 bins suit the ~64 px superpixels of the built-in 96x128 images (the default).
- Hue. OpenCV's float path puts a value ``v`` of each channel into bin ``min(int(v * bins), bins - 1)``, so it expects
  every channel in [0, 1]. ``cv2.cvtColor`` on a float32 RGB image in [0, 1] returns H in [0, 360) degrees and S, V
  in [0, 1]. The reference code passes that H unscaled, so every hue of at least ``1 / bins`` degree falls into the
  last hue bin and hue only tells exact greys (H = 0) from everything else. ``hue="unit"`` (default) divides H by 360;
  ``hue="degrees"`` keeps the reference's behaviour.
- Count. OpenCV rounds the grid (block sides up, block counts down, halved once per level), so on small images it
  returns far fewer superpixels than requested (48 instead of 150 on 96x128 with 4 levels). Outside the official
  preset, the request is raised until the grid is the closest achievable to ``num_superpixels``; on 1024x2048 with
  2048 or 8192 superpixels the grid is exact and the request is passed unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

METHODS = ("slic", "seeds")
HUE_MODES = ("unit", "degrees")
SEEDS_PRESETS = ("official",)
ORACLE_METHODS = ("exact", "official")

SEEDS_OFFICIAL: dict[str, Any] = {
    "num_levels": 5,
    "prior": 3,
    "histogram_bins": 10,
    "double_step": True,
    "iterations": 10,
    "equalize_hist": True,
    "hue": "degrees",
}
"""Settings of the reference code (Cai et al. and Kim et al., ``scripts/extract_superpixels.py``): joint histogram
equalisation of the RGB image (``skimage.exposure.equalize_hist``), float32 ``cv2.COLOR_RGB2HSV`` with hue in degrees,
``createSuperpixelSEEDS(w, h, 3, num_superpixels, 5, 3, 10, True)``, ``iterate(hsv, 10)``. ``num_superpixels`` is
the dataset's choice (8192 in Kim et al., 2048 in Cai et al., on Cityscapes) and is not part of the preset."""

_KEY = "superpixels.seeds"


def slic_superpixels(image: np.ndarray, *, n_segments: int = 150, compactness: float = 10.0, sigma: float = 0.0):
    """SLIC from scikit-image on an (H, W, 3) uint8 image; labels start at 0, int32."""
    from skimage.segmentation import slic

    _check_image(image)
    labels = slic(image, n_segments=n_segments, compactness=compactness, sigma=sigma, start_label=0)
    return labels.astype(np.int32, copy=False)


def seeds_superpixels(
    image: np.ndarray,
    *,
    num_superpixels: int = 150,
    num_levels: int = 3,
    prior: int = 3,
    histogram_bins: int = 5,
    double_step: bool = True,
    iterations: int = 10,
    equalize_hist: bool = True,
    hue: str = "unit",
    preset: str | None = None,
) -> np.ndarray:
    """SEEDS superpixels (OpenCV contrib) of an RGB image, computed on HSV.

    Colour pipeline (always the float path of OpenCV's SEEDS):

    1. ``equalize_hist``: joint histogram equalisation of all three RGB channels together, exactly
       ``skimage.exposure.equalize_hist(image)`` (one cumulative histogram of the flattened uint8 values) cast to
       float32, as the reference code does; otherwise ``image / 255`` in float32. Either way RGB lies in [0, 1].
    2. ``cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)`` on that float32 image: H in [0, 360) degrees, S and V in [0, 1].
    3. ``hue="unit"``: H is divided by 360, so all three channels lie in [0, 1] and each gets ``histogram_bins``
       equal bins. ``hue="degrees"``: H is passed in degrees, as the reference code does; then every hue of at least
       ``1 / histogram_bins`` degree lands in the last hue bin.

    Args:
        image: (H, W, 3) uint8 RGB.
        num_superpixels: target number of superpixels. Outside the official preset the request to OpenCV is the
            smallest one whose grid comes closest to this number (OpenCV's rounding alone can give far fewer); with
            the official preset it is passed unchanged.
        num_levels: block levels (at least 2). The level-0 block side is the superpixel side over
            ``2 ** (num_levels - 1)``; more levels mean finer boundary moves and about 4x the histogram memory per
            level, until level-0 blocks are one pixel (OpenCV drops the levels beyond that).
        prior: shape prior, 0 (none) to 5 (smoothest boundaries).
        histogram_bins: bins per channel (at least 2); a histogram has ``histogram_bins ** 3`` bins. 5 suits
            superpixels of ~64 px, 10 those of ~256 px (8192 on 1024x2048).
        double_step: a second, confidence-gated block update per level (OpenCV's ``double_step``).
        iterations: pixel-level iterations after the block levels (at least 1).
        equalize_hist: equalise the RGB histogram first (step 1).
        hue: ``"unit"`` (H / 360, correct for OpenCV's float path) or ``"degrees"`` (the reference's H in degrees).
        preset: ``None``, or ``"official"`` for the reference settings (:data:`SEEDS_OFFICIAL`), which then replace
            every argument but ``num_superpixels``. Memory-hungry: about 11 GB and 15-35 s on a 1024x2048 image with
            8192 superpixels, because its level-0 blocks are single pixels.

    Returns:
        (H, W) int32 labels in ``[0, n)`` with ``n`` the grid size; ids are deterministic for the same input, and a
        few ids of the grid may be absent (SEEDS can empty a superpixel).

    Raises:
        ValueError: on a bad image or a bad parameter; the message names the config key
            (``superpixels.seeds.<name>``).
    """
    import cv2

    _check_image(image)
    if preset is not None and preset not in SEEDS_PRESETS:
        raise ValueError(f"{_KEY}.preset must be null or one of {', '.join(SEEDS_PRESETS)}, got {preset!r}")
    if preset == "official":
        num_levels, prior, histogram_bins, double_step, iterations, equalize_hist, hue = (
            SEEDS_OFFICIAL[k]
            for k in ("num_levels", "prior", "histogram_bins", "double_step", "iterations", "equalize_hist", "hue")
        )
    _check_int("num_superpixels", num_superpixels, 1)
    _check_int("num_levels", num_levels, 2, 16)
    _check_int("prior", prior, 0, 5)
    _check_int("histogram_bins", histogram_bins, 2)
    _check_int("iterations", iterations, 1)
    _check_bool("double_step", double_step)
    _check_bool("equalize_hist", equalize_hist)
    if hue not in HUE_MODES:
        raise ValueError(f"{_KEY}.hue must be one of {', '.join(HUE_MODES)}, got {hue!r}")

    height, width = image.shape[:2]
    if preset == "official":
        request = int(num_superpixels)
        _seeds_grid(height, width, request, num_levels)  # validates: no silent OpenCV crash on a hopeless request
    else:
        request = _seeds_request(height, width, int(num_superpixels), int(num_levels))

    hsv = seeds_hsv(image, equalize_hist=bool(equalize_hist), hue=hue)
    seeds = cv2.ximgproc.createSuperpixelSEEDS(
        width, height, 3, request, int(num_levels), int(prior), int(histogram_bins), bool(double_step)
    )
    seeds.iterate(hsv, int(iterations))
    return np.ascontiguousarray(seeds.getLabels(), dtype=np.int32)


def seeds_hsv(image: np.ndarray, *, equalize_hist: bool = True, hue: str = "unit") -> np.ndarray:
    """The float32 (H, W, 3) HSV image that :func:`seeds_superpixels` gives OpenCV (steps 1-3 there).

    With ``equalize_hist`` the RGB values are those of ``skimage.exposure.equalize_hist(image).astype(np.float32)``
    (a lookup table of the same cumulative histogram, without the float64 intermediate image).
    """
    import cv2

    _check_image(image)
    if hue not in HUE_MODES:
        raise ValueError(f"{_KEY}.hue must be one of {', '.join(HUE_MODES)}, got {hue!r}")
    if equalize_hist:
        # skimage: integer images get one bin per value between min and max, cdf = cumsum / total, then np.interp at
        # those same integer values, which returns the cdf entries exactly.
        lo = int(image.min())
        hist = np.bincount((image.ravel() - np.uint8(lo)), minlength=256 - lo)
        cdf = hist.cumsum() / float(image.size)
        lut = np.zeros(256, dtype=np.float32)
        lut[lo:] = cdf.astype(np.float32)
    else:
        lut = np.arange(256, dtype=np.float32) / np.float32(255.0)
    hsv = cv2.cvtColor(lut[image], cv2.COLOR_RGB2HSV)
    if hue == "unit":
        hsv[..., 0] *= np.float32(1.0 / 360.0)
    return hsv


def base_superpixels(image: np.ndarray, method: str, params: Mapping[str, Any]) -> np.ndarray:
    """Dispatch to the configured method; ``params`` is that method's config section (``superpixels.<method>``)."""
    _check_image(image)
    if method == "slic":
        return slic_superpixels(image, **params)
    if method == "seeds":
        return seeds_superpixels(image, **params)
    raise ValueError(f"superpixels.method {method!r} unknown; expected one of {', '.join(METHODS)}")


def oracle_superpixels(label: np.ndarray, method: str = "exact") -> np.ndarray:
    """Oracle superpixels of a ground-truth label map, ids from 0, int32.

    ``exact`` (default): the 4-connected components; void (255) areas are components too. Every component is a
    perfect superpixel for annotation: its dominant label is its only label. Two areas of the same class that touch
    only at a corner are two components.

    ``official``: the reference code's approximation (Kim et al., ``scripts/gen_oracle_spx.py``), reproduced with
    the same libraries. For every label value in increasing order, the external contours of its mask
    (``cv2.findContours``, ``RETR_EXTERNAL``, ``CHAIN_APPROX_NONE``) become polygons; contours of one or two points
    are dropped, and so is a polygon that contains one kept before it (shapely ``contains``). The kept polygons are
    filled in that order with ids from 1 (PIL ``ImageDraw.polygon``, outline included), later ones painting over
    earlier ones; pixels no polygon covers keep id 0, one region however scattered. So an area that surrounds an
    object of a smaller label value is dropped into region 0, an object of a larger value inside it is painted over
    it correctly, and holes are filled by the enclosing polygon. Ids are then renumbered from 0 in increasing order.
    """
    label = np.asarray(label)
    if label.ndim != 2 or not np.issubdtype(label.dtype, np.integer):
        raise ValueError(f"label must be a 2-D integer array, got {label.shape} {label.dtype}")
    if method == "official":
        return _polygon_oracle(label)
    if method != "exact":
        raise ValueError(f"superpixels.oracle {method!r} unknown; expected one of {', '.join(ORACLE_METHODS)}")
    from skimage.measure import label as cc_label

    # skimage labels 0 as background unless told otherwise; shift so every value, void included, is labelled.
    comps = cc_label(label.astype(np.int64) + 1, background=0, connectivity=1)
    return (comps - 1).astype(np.int32, copy=False)


def _polygon_oracle(label: np.ndarray) -> np.ndarray:
    import cv2
    import shapely
    from PIL import Image, ImageDraw

    kept: list = []
    for value in np.unique(label):
        mask = (label == value).astype(np.uint8)
        contours, _ = cv2.findContours(mask, mode=cv2.RETR_EXTERNAL, method=cv2.CHAIN_APPROX_NONE)
        for contour in contours:
            points = contour.reshape(-1, 2)
            if len(points) <= 2:
                continue
            polygon = shapely.Polygon(points)
            if not any(polygon.contains(other) for other in kept):
                kept.append(polygon)
    height, width = label.shape
    canvas = Image.new("I", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    for index, polygon in enumerate(kept, start=1):
        draw.polygon(list(polygon.exterior.coords), fill=index)
    _, ids = np.unique(np.asarray(canvas), return_inverse=True)
    return ids.reshape(height, width).astype(np.int32)


# ------------------------------------------------------------------------------------------------ helpers


def _check_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        got = f"{image.shape} {image.dtype}" if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"image must be (H, W, 3) uint8, got {got}")


def _check_int(name: str, value: Any, lo: int, hi: int | None = None) -> None:
    ok = isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)
    if not ok or value < lo or (hi is not None and value > hi):
        bound = f"an integer >= {lo}" if hi is None else f"an integer in [{lo}, {hi}]"
        raise ValueError(f"{_KEY}.{name} must be {bound}, got {value!r}")


def _check_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool | np.bool_):
        raise ValueError(f"{_KEY}.{name} must be true or false, got {value!r}")


def _seeds_grid(height: int, width: int, num_superpixels: int, num_levels: int) -> tuple[int, int, int, int]:
    """OpenCV's SEEDS grid for these arguments: ``(levels, block_h, block_w, superpixels)``.

    Mirrors ``SuperpixelSEEDSImpl::initialize`` (opencv_contrib ximgproc/src/seeds.cpp), float32 arithmetic included:
    the levels actually used, the level-0 block size in pixels and the number of top-level superpixels.
    """
    f32 = np.float32
    n = max(int(num_superpixels), 10)
    levels = max(int(num_levels), 2) + 1
    n_h = int(np.sqrt(f32(n) * f32(height) / f32(width)))
    n_w = n_h * width // height
    if n_h < 1 or n_w < 1:
        raise ValueError(
            f"{_KEY}.num_superpixels {num_superpixels} is too small for a {height}x{width} image "
            "(less than one superpixel along one side)"
        )
    while True:
        levels -= 1
        if levels < 1:
            raise ValueError(
                f"{_KEY}.num_superpixels {num_superpixels} is too large for a {height}x{width} image "
                "(superpixels smaller than one pixel)"
            )
        w_f = f32(f32(width) / f32(n_w)) / f32(1 << (levels - 1))
        h_f = f32(f32(height) / f32(n_h)) / f32(1 << (levels - 1))
        if w_f >= 1 and h_f >= 1:
            break
    block_w, block_h = math.ceil(w_f), math.ceil(h_f)
    count_w, count_h = width // block_w, height // block_h
    for _ in range(1, levels):
        count_w //= 2
        count_h //= 2
    return levels, block_h, block_w, count_w * count_h


def _seeds_request(height: int, width: int, target: int, num_levels: int) -> int:
    """The smallest request to OpenCV whose grid has the superpixel count closest to ``target``.

    The grid depends on the request only through its number of rows ``int(sqrt(request * height / width))``, so the
    candidates are the smallest request for each row count, from the target's own up to twice that.
    """
    best = (abs(_seeds_grid(height, width, target, num_levels)[3] - target), target)
    if best[0] == 0:
        return target
    f32 = np.float32
    rows0 = int(np.sqrt(f32(max(target, 10)) * f32(height) / f32(width)))
    for rows in range(rows0 + 1, 2 * rows0 + 3):
        request = max(target, math.floor(rows * rows * width / height) - 2)
        while int(np.sqrt(f32(request) * f32(height) / f32(width))) < rows:
            request += 1
        try:
            count = _seeds_grid(height, width, request, num_levels)[3]
        except ValueError:
            break
        if abs(count - target) < best[0]:
            best = (abs(count - target), request)
    return best[1]


__all__ = [
    "HUE_MODES",
    "METHODS",
    "SEEDS_OFFICIAL",
    "SEEDS_PRESETS",
    "base_superpixels",
    "oracle_superpixels",
    "seeds_hsv",
    "seeds_superpixels",
    "slic_superpixels",
]
