"""Base superpixels (SLIC, SEEDS with its hue scaling and official preset) and oracle superpixels (exact, official)."""

import inspect
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from scipy import ndimage as ndi

from adaspx.superpixels import (
    SEEDS_OFFICIAL,
    _seeds_grid,
    base_superpixels,
    oracle_superpixels,
    seeds_hsv,
    seeds_superpixels,
    slic_superpixels,
)
from adaspx.synthetic import generate_scene

ROOT = Path(__file__).resolve().parents[1]
H, W = 96, 128


@pytest.fixture(scope="module")
def scenes():
    return [generate_scene(np.random.default_rng(s), H, W) for s in range(3)]


def _two_hues(height=64, width=96, split=42, hues=(30.0, 200.0)):
    """An RGB image whose left and right parts have the same saturation and value but different hues."""
    hsv = np.empty((height, width, 3), np.float32)
    hsv[:, :split, 0], hsv[:, split:, 0] = hues
    hsv[..., 1], hsv[..., 2] = 0.55, 0.75  # mid-bin for 5 and 10 bins, so rounding to uint8 cannot change a bin
    rgb = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    return np.round(rgb * 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------- base maps


@pytest.mark.parametrize("method", ["slic", "seeds"])
def test_maps_are_int32_with_roughly_the_requested_count(scenes, method):
    for image, _ in scenes:
        if method == "slic":
            labels = slic_superpixels(image, n_segments=150)
        else:
            labels = seeds_superpixels(image, num_superpixels=150)
        assert labels.shape == (H, W) and labels.dtype == np.int32 and labels.flags.c_contiguous
        assert labels.min() >= 0
        assert 0.6 * 150 <= np.unique(labels).size <= 1.4 * 150


def test_seeds_count_is_raised_toward_the_target(scenes):
    image = scenes[0][0]
    # OpenCV's own rounding gives 48 superpixels for 150 requested on 96x128 with 4 levels
    assert _seeds_grid(H, W, 150, 4)[3] == 48
    assert np.unique(seeds_superpixels(image, num_superpixels=150, num_levels=4)).size >= 150
    # where the grid is exact the request is passed unchanged: 8192 and 2048 on 1024x2048
    assert _seeds_grid(1024, 2048, 8192, 3)[3] == 8192 and _seeds_grid(1024, 2048, 2048, 3)[3] == 2048


@pytest.mark.parametrize(("height", "width"), [(96, 128), (375, 500), (97, 131), (40, 200)])
def test_seeds_grid_mirrors_opencv(height, width):
    for n in (10, 50, 150, 600):
        for levels in (2, 3, 4, 6):
            ours = _seeds_grid(height, width, n, levels)[3]
            theirs = cv2.ximgproc.createSuperpixelSEEDS(width, height, 3, n, levels, 2, 5, False)
            assert ours == theirs.getNumberOfSuperpixels(), (height, width, n, levels)


@pytest.mark.parametrize("params", [{}, {"preset": "official"}, {"hue": "degrees", "equalize_hist": False}])
def test_seeds_is_deterministic(scenes, params):
    image = scenes[1][0]
    first = seeds_superpixels(image, num_superpixels=150, **params)
    for _ in range(2):
        np.testing.assert_array_equal(seeds_superpixels(image.copy(), num_superpixels=150, **params), first)


def test_slic_is_deterministic(scenes):
    image = scenes[1][0]
    np.testing.assert_array_equal(slic_superpixels(image), slic_superpixels(image.copy()))


def test_base_superpixels_dispatches_config_sections(scenes):
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())["superpixels"]
    image = scenes[2][0]
    for method in ("slic", "seeds"):
        labels = base_superpixels(image, method, config[method])
        assert labels.shape == (H, W) and labels.dtype == np.int32
    np.testing.assert_array_equal(
        base_superpixels(image, "seeds", config["seeds"]), seeds_superpixels(image, **config["seeds"])
    )


def test_schema_seeds_block_matches_the_function():
    schema = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())
    block = schema["properties"]["superpixels"]["properties"]["seeds"]["properties"]
    params = inspect.signature(seeds_superpixels).parameters
    assert set(block) == set(params) - {"image"}
    for key, spec in block.items():
        assert spec["default"] == params[key].default, key


# ------------------------------------------------------------------------------------------------ colour


def test_hsv_ranges_given_to_opencv(scenes):
    image = scenes[0][0]
    unit, degrees = seeds_hsv(image), seeds_hsv(image, hue="degrees")
    assert unit.dtype == np.float32 and unit.shape == (H, W, 3)
    assert 0 <= unit.min() and unit.max() <= 1
    assert degrees[..., 0].max() > 1  # hue in degrees, the reference's input
    np.testing.assert_allclose(unit[..., 0], degrees[..., 0] / 360, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(unit[..., 1:], degrees[..., 1:])


def test_equalisation_matches_skimage_as_the_reference_uses_it(scenes):
    from skimage import exposure

    for image in (scenes[0][0], scenes[1][0] // 3 + 40):  # the second has a value range not starting at 0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # skimage warns that the histogram is taken over all channels
            reference = cv2.cvtColor(exposure.equalize_hist(image).astype(np.float32), cv2.COLOR_RGB2HSV)
        np.testing.assert_array_equal(seeds_hsv(image, hue="degrees"), reference)
    plain = cv2.cvtColor(image.astype(np.float32) / 255, cv2.COLOR_RGB2HSV)
    np.testing.assert_array_equal(seeds_hsv(image, equalize_hist=False, hue="degrees"), plain)


@pytest.mark.parametrize("bins", [5, 10])
def test_hue_scaling_separates_halves_that_differ_only_in_hue(bins):
    split = 42  # not on the initial grid (16 px superpixels, 4 px blocks)
    image = _two_hues(split=split)
    common = {"num_superpixels": 24, "histogram_bins": bins, "equalize_hist": False}

    labels = seeds_superpixels(image, hue="unit", **common)
    assert not set(np.unique(labels[:, :split])) & set(np.unique(labels[:, split:]))

    # hue in degrees (the reference's input): both hues fall into the last hue bin, so the halves look alike
    labels = seeds_superpixels(image, hue="degrees", **common)
    assert set(np.unique(labels[:, :split])) & set(np.unique(labels[:, split:]))


def test_official_preset_reproduces_the_reference_call(scenes):
    from skimage import exposure

    image = scenes[0][0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hsv = cv2.cvtColor(exposure.equalize_hist(image).astype(np.float32), cv2.COLOR_RGB2HSV)
    seeds = cv2.ximgproc.createSuperpixelSEEDS(W, H, 3, 150, 5, 3, 10, True)
    seeds.iterate(hsv, 10)
    expected = seeds.getLabels()

    # the preset overrides every other setting but num_superpixels, which it passes to OpenCV unchanged
    labels = seeds_superpixels(image, num_superpixels=150, preset="official", num_levels=2, histogram_bins=3)
    assert labels.dtype == np.int32
    np.testing.assert_array_equal(labels, expected)
    assert SEEDS_OFFICIAL["hue"] == "degrees" and SEEDS_OFFICIAL["num_levels"] == 5


# ------------------------------------------------------------------------------------------------ oracle


def test_oracle_components_are_exact_and_4_connected():
    label = np.array(
        [
            [1, 1, 0, 0, 255],
            [1, 1, 0, 0, 255],
            [0, 0, 1, 1, 0],
            [0, 0, 1, 1, 0],
            [255, 0, 0, 0, 255],
        ],
        dtype=np.uint8,
    )
    comps = oracle_superpixels(label)
    assert comps.dtype == np.int32 and comps.shape == label.shape and comps.min() == 0
    # the two 1-blocks touch only at a corner: two components; the three void areas are three components
    assert comps[0, 0] != comps[2, 2]
    assert len({comps[0, 4], comps[4, 0], comps[4, 4]}) == 3
    # 0 has three components (top-right block, bottom-left block with the bottom row, right column piece) that touch
    # one another only at corners
    assert comps[2, 0] == comps[4, 3]
    assert len({comps[0, 2], comps[2, 0], comps[2, 4]}) == 3
    assert np.unique(comps).size == 8 and comps.max() == 7


def test_oracle_matches_per_value_components(scenes):
    for _, label in scenes:
        comps = oracle_superpixels(label)
        expected = sum(ndi.label(label == v)[1] for v in np.unique(label))  # ndi.label: 4-connectivity in 2-D
        assert np.unique(comps).size == expected == comps.max() + 1
        pairs = np.unique(np.stack([comps.ravel(), label.ravel().astype(np.int32)]), axis=1)
        assert pairs.shape[1] == expected  # each component carries exactly one label value, void included


def _same_partition(a, b):
    pairs = np.unique(np.stack([a.ravel(), b.ravel()]), axis=1)
    return pairs.shape[1] == np.unique(a).size == np.unique(b).size


def test_official_oracle_equals_exact_components_on_disjoint_rectangles():
    # no label area encloses another: every polygon is kept and paints exactly its rectangle
    label = np.zeros((12, 20), np.uint8)
    label[:, 10:] = 3
    label[2:6, 12:18] = 255
    label[7:11, 1:5] = 2
    label[7:12, 12:20] = 1
    comps = oracle_superpixels(label, "official")
    assert comps.dtype == np.int32 and comps.min() == 0 and comps.max() + 1 == np.unique(comps).size
    assert _same_partition(comps, oracle_superpixels(label))


def test_official_oracle_drops_enclosing_contours_into_one_unpainted_region():
    # 5 and 6 each surround an object of a smaller value: their contours contain a kept polygon and are dropped, so
    # both surrounds fall into the single region of unpainted pixels, which then mixes two classes
    label = np.full((10, 20), 5, np.uint8)
    label[:, 10:] = 6
    label[3:6, 3:6] = 1
    label[3:6, 13:16] = 2
    comps = oracle_superpixels(label, "official")
    assert np.unique(comps).size == 3  # exact components: 4
    assert np.unique(oracle_superpixels(label)).size == 4
    assert comps[0, 0] == comps[0, 19] and set(np.unique(label[comps == comps[0, 0]])) == {5, 6}
    assert comps[4, 4] != comps[4, 14]
    # an object of a larger value inside a smaller one is painted over it: exact again
    label = np.full((10, 20), 1, np.uint8)
    label[3:7, 4:9] = 5
    assert _same_partition(oracle_superpixels(label, "official"), oracle_superpixels(label))


def test_official_oracle_on_scenes_keeps_most_pixels_pure(scenes):
    for _, label in scenes:
        comps = oracle_superpixels(label, "official")
        assert comps.shape == label.shape and comps.max() + 1 == np.unique(comps).size
        # purity: share of pixels whose region's dominant label is their own label
        pure = 0
        for r in np.unique(comps):
            pure += np.bincount(label[comps == r]).max()
        assert 0.99 < pure / label.size <= 1.0  # street scenes rarely nest one class inside another


def test_oracle_rejects_unknown_method():
    with pytest.raises(ValueError, match=r"superpixels\.oracle"):
        oracle_superpixels(np.zeros((4, 4), np.uint8), "polygon")


# ---------------------------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("params", "key"),
    [
        ({"num_superpixels": 0}, "num_superpixels"),
        ({"num_superpixels": True}, "num_superpixels"),
        ({"num_superpixels": 100000}, "num_superpixels"),
        ({"num_levels": 1}, "num_levels"),
        ({"num_levels": 3.0}, "num_levels"),
        ({"num_levels": 17}, "num_levels"),
        ({"prior": 6}, "prior"),
        ({"prior": -1}, "prior"),
        ({"histogram_bins": 1}, "histogram_bins"),
        ({"iterations": 0}, "iterations"),
        ({"double_step": "yes"}, "double_step"),
        ({"equalize_hist": 1}, "equalize_hist"),
        ({"hue": "radians"}, "hue"),
        ({"preset": "fast"}, "preset"),
    ],
)
def test_seeds_rejects_bad_parameters(scenes, params, key):
    with pytest.raises(ValueError, match=rf"superpixels\.seeds\.{key}\b"):
        seeds_superpixels(scenes[0][0], **{"num_superpixels": 150, **params})


def test_bad_images_and_methods_are_rejected(scenes):
    image = scenes[0][0]
    for bad in (image.astype(np.float32), image[..., 0], image[..., :2]):
        for call in (seeds_superpixels, slic_superpixels, lambda x: base_superpixels(x, "seeds", {})):
            with pytest.raises(ValueError, match="image must be"):
                call(bad)
    with pytest.raises(ValueError, match="superpixels.method"):
        base_superpixels(image, "quickshift", {})
    with pytest.raises(ValueError, match="label must be"):
        oracle_superpixels(np.zeros((4, 4), np.float32))
