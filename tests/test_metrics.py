"""Confusion matrix and IoU summaries."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from adaspx.metrics import confusion_matrix, iou_from_confusion


def test_confusion_matrix_by_hand():
    gt = np.array([[0, 0, 1], [1, 2, 255]])
    pred = np.array([[0, 1, 1], [2, 2, 0]])
    cm = confusion_matrix(pred, gt, 3)
    expected = np.array(
        [
            [1, 1, 0],  # gt 0: predicted 0, 1
            [0, 1, 1],  # gt 1: predicted 1, 2
            [0, 0, 1],  # gt 2: predicted 2
        ]
    )
    assert cm.dtype == np.int64
    np.testing.assert_array_equal(cm, expected)


def test_confusion_matrix_ignore_and_additivity():
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 4, (2, 10, 12)).astype(np.uint8)
    gt[rng.random(gt.shape) < 0.3] = 255
    pred = rng.integers(0, 4, gt.shape)
    total = confusion_matrix(pred[0], gt[0], 4) + confusion_matrix(pred[1], gt[1], 4)
    np.testing.assert_array_equal(total, confusion_matrix(pred, gt, 4))
    assert total.sum() == (gt != 255).sum()
    # the prediction at ignored pixels is irrelevant, even if out of range
    pred2 = pred.copy()
    pred2[gt == 255] = 99
    np.testing.assert_array_equal(confusion_matrix(pred2, gt, 4), total)
    # custom ignore index
    assert confusion_matrix(np.array([0, 1]), np.array([0, 3]), 4, ignore_index=3).sum() == 1


def test_confusion_matrix_all_ignored():
    cm = confusion_matrix(np.zeros((3, 3), int), np.full((3, 3), 255), 2)
    np.testing.assert_array_equal(cm, np.zeros((2, 2)))
    result = iou_from_confusion(cm)
    assert math.isnan(result["miou"]) and math.isnan(result["pixel_accuracy"])
    assert result["iou"] == [None, None]


def test_confusion_matrix_errors():
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(np.zeros((2, 3)), np.zeros((3, 2)), 2)
    with pytest.raises(ValueError, match="ground-truth labels outside"):
        confusion_matrix(np.zeros(2, int), np.array([0, 5]), 2)
    with pytest.raises(ValueError, match="predicted labels outside"):
        confusion_matrix(np.array([0, 2]), np.zeros(2, int), 2)


def test_iou_by_hand():
    cm = np.array(
        [
            [3, 1, 0, 0],
            [2, 4, 0, 0],
            [0, 0, 0, 0],  # class 2: absent from gt and prediction -> NaN, excluded
            [0, 1, 0, 0],  # class 3: present in gt, never predicted -> IoU 0
        ]
    )
    r = iou_from_confusion(cm)
    iou0 = 3 / (4 + 5 - 3)
    iou1 = 4 / (6 + 6 - 4)
    assert r["iou"] == pytest.approx([iou0, iou1, None, 0.0])
    assert r["iou"][2] is None
    assert r["miou"] == pytest.approx((iou0 + iou1 + 0.0) / 3)
    assert r["pixel_accuracy"] == pytest.approx(7 / 11)
    assert r["mean_accuracy"] == pytest.approx((3 / 4 + 4 / 6 + 0 / 1) / 3)


def test_iou_class_only_predicted():
    cm = np.array([[2, 1], [0, 0]])  # class 1 predicted once but absent from gt: IoU 0, counted in mIoU
    r = iou_from_confusion(cm)
    assert r["iou"] == pytest.approx([2 / 3, 0.0])
    assert r["miou"] == pytest.approx(1 / 3)
    assert r["mean_accuracy"] == pytest.approx(2 / 3)  # recall only over classes present in gt


def test_iou_perfect_and_json_ready():
    import json

    cm = confusion_matrix(np.arange(5) % 3, np.arange(5) % 3, 3)
    r = iou_from_confusion(cm)
    assert r == {"miou": 1.0, "iou": [1.0, 1.0, 1.0], "pixel_accuracy": 1.0, "mean_accuracy": 1.0}
    json.dumps(r)
    with pytest.raises(ValueError, match="square"):
        iou_from_confusion(np.zeros((2, 3)))


def test_metrics_does_not_import_torch():
    code = "import sys, adaspx.metrics; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
