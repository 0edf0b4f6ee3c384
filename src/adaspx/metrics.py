"""Segmentation metrics from a confusion matrix (NumPy only).

Accumulate :func:`confusion_matrix` over images (it is additive), then summarize once with
:func:`iou_from_confusion`.
"""

from __future__ import annotations

import numpy as np

from adaspx import IGNORE_INDEX


def confusion_matrix(
    pred: np.ndarray, gt: np.ndarray, num_classes: int, ignore_index: int = IGNORE_INDEX
) -> np.ndarray:
    """Pixel counts ``(C, C)`` int64: rows are ground-truth classes, columns predicted classes.

    Pixels whose ground truth is ``ignore_index`` are skipped. Raises ValueError if the shapes differ, or if a
    counted ground-truth or predicted value lies outside ``0..num_classes-1``.
    """
    pred = np.asarray(pred)
    gt = np.asarray(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from ground-truth shape {gt.shape}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    keep = gt != ignore_index
    g = gt[keep].astype(np.int64, copy=False)
    p = pred[keep].astype(np.int64, copy=False)
    if g.size:
        if g.min() < 0 or g.max() >= num_classes:
            raise ValueError(f"ground-truth labels outside 0..{num_classes - 1} (ignore {ignore_index})")
        if p.min() < 0 or p.max() >= num_classes:
            raise ValueError(f"predicted labels outside 0..{num_classes - 1}")
    counts = np.bincount(g * num_classes + p, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).astype(np.int64, copy=False)


def iou_from_confusion(cm: np.ndarray) -> dict:
    """Summary metrics of a confusion matrix (rows ground truth, columns prediction).

    Returns a JSON-ready dict:

    - ``iou``: per-class intersection over union, ``None`` for a class absent from both ground truth and
      prediction (0/0);
    - ``miou``: mean of the defined per-class IoUs (NaN if none is defined);
    - ``pixel_accuracy``: correctly predicted pixels over counted pixels (NaN if there are none);
    - ``mean_accuracy``: mean per-class recall over the classes present in the ground truth.
    """
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"confusion matrix must be square, got shape {cm.shape}")
    cm = cm.astype(np.float64)
    tp = np.diag(cm)
    gt_count = cm.sum(axis=1)
    pred_count = cm.sum(axis=0)
    union = gt_count + pred_count - tp
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
        recall = np.where(gt_count > 0, tp / gt_count, np.nan)
    total = cm.sum()
    return {
        "miou": _nanmean(iou),
        "iou": [None if np.isnan(v) else float(v) for v in iou],
        "pixel_accuracy": float(tp.sum() / total) if total > 0 else float("nan"),
        "mean_accuracy": _nanmean(recall),
    }


def _nanmean(values: np.ndarray) -> float:
    defined = values[~np.isnan(values)]
    return float(defined.mean()) if defined.size else float("nan")
