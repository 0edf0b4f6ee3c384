"""The probability reader: renormalised float32 at the stored stride, decoded whole or at some pixels only."""

import numpy as np
import pytest

from adaspx.artifacts import SCHEMA_PROBS, Probabilities, at_label_resolution
from adaspx.h5io import ArtifactError, ArtifactWriter


@pytest.mark.parametrize("stride", [1, 2, 3])
def test_values_at_some_pixels_equal_the_whole_decoded_array(tmp_path, stride):
    rng = np.random.default_rng(stride)
    shape = (10, 14)
    small = rng.random((5, -(-10 // stride), -(-14 // stride)), dtype=np.float32) ** 3
    raw = (small / small.sum(axis=0)).astype(np.float16)
    with ArtifactWriter(tmp_path / "p.h5", SCHEMA_PROBS, stride=stride) as w:
        w.add("probs", "img", raw)
    pixels = rng.choice(shape[0] * shape[1], size=30, replace=False)
    with Probabilities([str(tmp_path / "p.h5")]) as probs:
        whole = probs.get("img", shape)
        some = probs.at("img", shape, pixels)
    # brute force: renormalise the float16 vectors in float32, repeat them to label resolution, pick the pixels
    expected = raw.astype(np.float32)
    expected /= expected.sum(axis=0, keepdims=True)
    full = at_label_resolution(expected, shape, stride).reshape(5, -1)
    np.testing.assert_array_equal(whole, expected)
    np.testing.assert_array_equal(some, full[:, pixels])


def test_nan_anywhere_is_refused_even_when_reading_some_pixels(tmp_path):
    raw = np.full((3, 4, 4), 1 / 3, dtype=np.float16)
    raw[1, 3, 3] = np.nan
    with ArtifactWriter(tmp_path / "nan_probs.h5", SCHEMA_PROBS, stride=1) as w:
        w.add("probs", "img", raw)
    with Probabilities([str(tmp_path / "nan_probs.h5")]) as probs:
        with pytest.raises(ArtifactError, match=r"nan_probs\.h5: image img: probabilities of 1 pixels are NaN"):
            probs.at("img", (4, 4), np.array([0, 1]))
        with pytest.raises(ArtifactError, match=r"nan_probs\.h5: image img: probabilities of shape \(3, 4, 4\)"):
            probs.get("img", (8, 8))
