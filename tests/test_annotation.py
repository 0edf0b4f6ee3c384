import numpy as np
import pytest

from adaspx.annotation import dominant_labels, knee_threshold, precision, sieve_mask, targets_from_answers


def test_dominant_label_counts_void_and_reports_pixels():
    regions = np.array([[5, 5, 5, 9], [5, 7, 9, 9]])
    gt = np.array([[1, 1, 255, 2], [2, 255, 255, 255]], dtype=np.uint8)
    labels, pixels = dominant_labels(regions, gt, np.array([9, 5, 7]))
    assert labels.tolist() == [255, 1, 255]  # region 9: void wins 2:1; region 5: 1 wins 2:1:1
    assert pixels.tolist() == [3, 4, 1]


def test_dominant_label_tie_goes_to_smaller_value():
    labels, _ = dominant_labels(np.zeros((1, 4), int), np.array([[3, 3, 1, 1]], np.uint8), np.array([0]))
    assert labels.tolist() == [1]


def test_unknown_region_is_an_error():
    with pytest.raises(ValueError, match=r"regions \[4\] do not exist"):
        dominant_labels(np.zeros((2, 2), int), np.zeros((2, 2), np.uint8), np.array([0, 4]))


def test_targets_from_answers_latest_answer_wins_and_void_is_unlabeled():
    amap = np.array([[-1, 0, 1], [2, 2, 0]], dtype=np.int32)
    labels = np.array([3, 255, 1])
    assert targets_from_answers(amap, labels).tolist() == [[255, 3, 255], [1, 1, 3]]


def test_knee_sieves_a_low_confidence_tail():
    rng = np.random.default_rng(0)
    conf = np.concatenate([rng.uniform(0.0, 0.1, 60), rng.uniform(0.9, 1.0, 940)])
    thr = knee_threshold(conf)
    assert thr is not None and 0.05 < thr <= 0.95
    assert (conf < thr).sum() >= 50  # the confidently wrong tail goes
    assert (conf[60:] < thr).mean() < 0.2


def test_knee_on_too_few_points_keeps_everything():
    assert knee_threshold(np.array([0.5, 0.6])) is None


def test_sieve_only_regions_above_min_pixels():
    amap = np.zeros((10, 10), dtype=np.int32)
    amap[:, 5:] = 1
    amap[0, 0] = -1
    labels = np.array([0, 1])
    probs = np.zeros((2, 10, 10), dtype=np.float32)
    probs[0] = 0.95
    probs[0, 1:3, 1:3] = 0.02  # 4 confidently wrong pixels in answer 0
    probs[1] = 1 - probs[0]
    drop = sieve_mask(amap, labels, probs, min_pixels=40)
    assert drop.sum() == 4 and drop[1:3, 1:3].all()
    assert not drop[:, 5:].any()  # answer 1 is uniformly confident: nothing to sieve
    assert not sieve_mask(amap, labels, probs, min_pixels=100).any()


def test_precision_counts_labeled_and_correct():
    t = np.array([[0, 1, 255]], np.uint8)
    g = np.array([[0, 2, 2]], np.uint8)
    assert precision(t, g) == (2, 1)


def test_reference_knee_fails_when_many_pixels_are_confidently_wrong():
    # The reference method's known failure: with ~16% or more confidently wrong pixels the knee lands at index 0
    # and nothing is sieved.
    conf = np.r_[np.full(8, 0.02), np.full(41, 0.95)]
    thr = knee_threshold(conf)
    assert thr == pytest.approx(0.02)
    assert not (conf < thr).any()
