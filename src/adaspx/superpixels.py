"""Base superpixels (SLIC, SEEDS) and oracle superpixels (exact ground-truth connected components)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

METHODS = ("slic", "seeds")


def slic_superpixels(image: np.ndarray, *, n_segments: int = 150, compactness: float = 10.0, sigma: float = 0.0):
    """SLIC from scikit-image on an (H, W, 3) uint8 image; labels start at 0, int32."""
    from skimage.segmentation import slic

    labels = slic(image, n_segments=n_segments, compactness=compactness, sigma=sigma, start_label=0)
    return labels.astype(np.int32, copy=False)


def seeds_superpixels(
    image: np.ndarray,
    *,
    num_superpixels: int = 150,
    num_levels: int = 4,
    prior: int = 2,
    histogram_bins: int = 5,
    double_step: bool = False,
    iterations: int = 4,
) -> np.ndarray:
    """SEEDS from OpenCV contrib (cv2.ximgproc) on the image in HSV (OpenCV's 8-bit HSV, hue in [0, 180))."""
    import cv2

    h, w = image.shape[:2]
    hsv = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2HSV)
    seeds = cv2.ximgproc.createSuperpixelSEEDS(w, h, 3, num_superpixels, num_levels, prior, histogram_bins, double_step)
    seeds.iterate(hsv, iterations)
    return seeds.getLabels().astype(np.int32, copy=False)


def base_superpixels(image: np.ndarray, method: str, params: Mapping[str, Any]) -> np.ndarray:
    """Dispatch to the configured method; ``params`` is that method's config section."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be (H, W, 3) uint8, got {image.shape} {image.dtype}")
    if method == "slic":
        return slic_superpixels(image, **params)
    if method == "seeds":
        return seeds_superpixels(image, **params)
    raise ValueError(f"superpixels.method {method!r} unknown; expected one of {', '.join(METHODS)}")


def oracle_superpixels(label: np.ndarray) -> np.ndarray:
    """Exact 4-connected components of a ground-truth label map; void (255) areas are components too.

    Every component is a perfect superpixel for annotation: its dominant label is its only label.
    """
    from skimage.measure import label as cc_label

    # skimage labels 0 as background unless told otherwise; shift so every value, void included, is labelled.
    comps = cc_label(label.astype(np.int32) + 1, background=0, connectivity=1)
    return (comps - 1).astype(np.int32, copy=False)


__all__ = ["METHODS", "base_superpixels", "oracle_superpixels", "slic_superpixels", "seeds_superpixels"]
