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


@pytest.mark.parametrize("level", [1, 0])
@pytest.mark.parametrize("width", [1, 7, 8, 37])
def test_compiled_decoding_gives_the_bits_of_numpy(level, width):
    """Exact float16 conversion (subnormals too), class-by-class float32 sums, correctly rounded division."""
    _probs = pytest.importorskip("adaspx._probs")
    rng = np.random.default_rng(width)
    raw = rng.random((19, 5, width), dtype=np.float32).astype(np.float16)
    raw[:, 0, :] = rng.integers(0, 1024, size=(19, width)).astype(np.uint16).view(np.float16)  # subnormals
    raw[:, 1, 0] = 0  # 0 / 0
    raw[:, 2, 0] = np.float16(60000)  # the largest values
    raw[4, 3, -1] = np.nan
    raw[2, 4, 0] = -np.inf
    expected = raw.astype(np.float32)
    total = expected.sum(axis=0, keepdims=True)
    with np.errstate(all="ignore"):
        expected /= total
    out = np.empty(raw.shape, dtype=np.float32)
    try:
        _probs.set_simd_level(level)
        bad = _probs.normalise_half(raw.view(np.uint16), out)
        counted = _probs.non_finite_pixels(raw.view(np.uint16))
    finally:
        _probs.set_simd_level(1)
    finite = np.isfinite(expected)
    np.testing.assert_array_equal(out.view(np.uint32)[finite], expected.view(np.uint32)[finite])
    np.testing.assert_array_equal(np.isnan(out), np.isnan(expected))
    assert bad == int((~np.isfinite(total)).sum()) == 2
    assert counted == 2


def test_label_maps_are_stored_as_uint16_when_their_ids_fit():
    from adaspx.artifacts import stored_labels

    small = np.array([[0, 65535], [7, 7]], dtype=np.int32)
    assert stored_labels(small).dtype == np.uint16
    np.testing.assert_array_equal(stored_labels(small), small)
    for kept in (np.array([[0, 65536]], dtype=np.int32), np.array([[-1, 3]], dtype=np.int32)):
        assert stored_labels(kept).dtype == np.int32


def test_answer_maps_round_trip_and_name_each_pixels_row(tmp_path):
    from adaspx.artifacts import SCHEMA_ANSWERS, AnswerMaps, add_answer_map, answered_pixels

    local = np.array([[0, 2, 2], [1, 0, 3]], dtype=np.uint16)
    rows = np.array([40, 7, 41])  # painted in this order: local index k is row rows[k - 1]
    with ArtifactWriter(tmp_path / "answers.h5", SCHEMA_ANSWERS) as w:
        add_answer_map(w, "img", local, rows)
        with pytest.raises(ValueError, match="image bad: an answer map must be uint16/uint32 indexes into its 3"):
            add_answer_map(w, "bad", local.astype(np.int32), rows)
        with pytest.raises(ValueError, match="image bad: an answer map"):
            add_answer_map(w, "bad", local + 1, rows)  # index 4 of 3 rows
    with AnswerMaps(tmp_path / "answers.h5") as maps:
        got_local, got_rows = maps.read("img")
    np.testing.assert_array_equal(got_local, local)
    pixels, pixel_rows = answered_pixels(got_local, got_rows)
    assert pixels.tolist() == [1, 2, 3, 5] and pixel_rows.tolist() == [7, 7, 40, 41]
