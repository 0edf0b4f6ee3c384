"""The synthetic street-scene generator: determinism, content, and the folder layout it writes."""

import numpy as np
import pytest
import yaml
from PIL import Image

from adaspx.synthetic import CLASSES, COLORS, generate_scene, write_dataset

H, W = 96, 128
RARE = (CLASSES.index("person"), CLASSES.index("pole"))


@pytest.fixture(scope="module")
def scenes():
    """A dozen scenes from consecutive seeds."""
    return [generate_scene(np.random.default_rng(s), H, W) for s in range(12)]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    summary = write_dataset(root, train_size=5, val_size=3, height=48, width=64, seed=7)
    return root, summary


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_class_table():
    assert len(CLASSES) >= 7 and len(set(CLASSES)) == len(CLASSES)
    assert len(COLORS) == len(CLASSES)
    assert all(len(c) == 3 and all(0 <= v <= 255 for v in c) for c in COLORS)


def test_shapes_and_dtypes(scenes):
    for image, label in scenes:
        assert image.shape == (H, W, 3) and image.dtype == np.uint8
        assert label.shape == (H, W) and label.dtype == np.uint8


def test_non_square_and_large_sizes():
    image, label = generate_scene(np.random.default_rng(0), 32, 200)
    assert image.shape == (32, 200, 3) and label.shape == (32, 200)
    image, label = generate_scene(np.random.default_rng(0), 256, 512)
    assert image.shape == (256, 512, 3) and label.shape == (256, 512)


def test_same_seed_same_scene_different_seed_different_scene():
    a_img, a_lab = generate_scene(np.random.default_rng(42), H, W)
    b_img, b_lab = generate_scene(np.random.default_rng(42), H, W)
    c_img, c_lab = generate_scene(np.random.default_rng(43), H, W)
    np.testing.assert_array_equal(a_img, b_img)
    np.testing.assert_array_equal(a_lab, b_lab)
    assert not np.array_equal(a_img, c_img)
    assert not np.array_equal(a_lab, c_lab)


def test_label_values_are_classes_or_void(scenes):
    for _, label in scenes:
        values = np.unique(label)
        assert np.all((values < len(CLASSES)) | (values == 255))


def test_every_class_appears_and_void_is_a_small_share(scenes):
    labels = np.stack([label for _, label in scenes])
    counts = np.bincount(labels.ravel(), minlength=256)
    per_class = dict(zip(CLASSES, counts[: len(CLASSES)].tolist(), strict=True))
    assert all(n > 0 for n in per_class.values()), per_class
    assert counts[255] / labels.size < 0.08


def test_street_layout_and_class_imbalance(scenes):
    labels = np.stack([label for _, label in scenes])
    share = np.bincount(labels.ravel(), minlength=256)[: len(CLASSES)] / labels.size
    road, sky, building = (share[CLASSES.index(c)] for c in ("road", "sky", "building"))
    assert road > 0.15 and sky > 0.04 and building > 0.1
    assert all(share[c] < min(road, building) / 4 for c in RARE)  # rare classes are rare ...
    # ... but present in most images
    assert all(sum(c in np.unique(label) for _, label in scenes) >= 0.75 * len(scenes) for c in RARE)
    # sky above, road below
    rows = np.arange(H)[None, :, None]
    for name, op in (("sky", np.less), ("road", np.greater)):
        mask = labels == CLASSES.index(name)
        assert op((rows * mask).sum() / mask.sum(), H / 2)


def test_images_are_not_trivially_colour_coded(scenes):
    """The same class takes visibly different colours across images (lighting, palettes, noise)."""
    road = CLASSES.index("road")
    means = np.array([image[label == road].mean(axis=0) for image, label in scenes])
    assert means.std(axis=0).max() > 5.0
    image, label = scenes[0]
    assert image[label == road].std() > 3.0  # texture and noise within a region


def test_write_dataset_layout(dataset):
    root, summary = dataset
    assert summary["train"] == 5 and summary["val"] == 3
    assert (summary["height"], summary["width"], summary["seed"]) == (48, 64, 7)
    assert sum(summary["class_pixels"].values()) + summary["void_pixels"] == 8 * 48 * 64
    names = yaml.safe_load((root / "classes.yaml").read_text())
    assert names["names"] == list(CLASSES)
    assert [tuple(c) for c in names["colors"]] == list(COLORS)
    listed = []
    for split, n in (("train", 5), ("val", 3)):
        ids = (root / "splits" / f"{split}.txt").read_text().splitlines()
        assert ids == [f"{split}_{i:04d}" for i in range(n)]
        listed += ids
    assert sorted(p.stem for p in (root / "images").iterdir()) == sorted(listed)
    assert sorted(p.stem for p in (root / "labels").iterdir()) == sorted(listed)
    for image_id in listed:
        with Image.open(root / "images" / f"{image_id}.png") as im:
            assert im.mode == "RGB" and im.size == (64, 48)
        with Image.open(root / "labels" / f"{image_id}.png") as im:
            assert im.mode == "L" and im.size == (64, 48)
            values = np.unique(np.asarray(im))
        assert np.all((values < len(CLASSES)) | (values == 255))


def test_write_dataset_reads_back_through_the_folder_reader(dataset):
    from adaspx.datasets import FolderDataset

    root, _ = dataset
    ds = FolderDataset(root, "val")
    assert ds.classes == CLASSES and len(ds) == 3
    item = ds[0]
    assert item.image.shape == (48, 64, 3) and item.label.shape == (48, 64)


def test_write_dataset_is_byte_identical_and_stable_under_resizing(dataset, tmp_path):
    root, _ = dataset
    write_dataset(tmp_path / "again", train_size=5, val_size=3, height=48, width=64, seed=7)
    assert _files(tmp_path / "again") == _files(root)

    write_dataset(tmp_path / "more", train_size=7, val_size=2, height=48, width=64, seed=7)
    before, after = _files(root), _files(tmp_path / "more")
    for image_id in [f"train_{i:04d}" for i in range(5)] + ["val_0000", "val_0001"]:
        for kind in ("images", "labels"):
            key = f"{kind}/{image_id}.png"
            assert after[key] == before[key], key
    assert after["splits/val.txt"] == b"val_0000\nval_0001\n"

    write_dataset(tmp_path / "other", train_size=5, val_size=3, height=48, width=64, seed=8)
    assert _files(tmp_path / "other")["images/train_0000.png"] != before["images/train_0000.png"]


def test_splits_are_distinct_images(dataset):
    root, _ = dataset
    files = _files(root)
    assert files["images/train_0000.png"] != files["images/val_0000.png"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"train_size": 0}, "train_size"),
        ({"val_size": -1}, "val_size"),
        ({"train_size": 2.5}, "train_size"),
        ({"height": 31}, "height"),
        ({"width": 16}, "width"),
        ({"height": 0}, "height"),
        ({"seed": -1}, "seed"),
    ],
)
def test_write_dataset_rejects_bad_arguments(tmp_path, kwargs, match):
    args = {"train_size": 2, "val_size": 1, "height": 48, "width": 64, "seed": 0} | kwargs
    with pytest.raises(ValueError, match=match):
        write_dataset(tmp_path / "ds", **args)
    assert not (tmp_path / "ds").exists()


@pytest.mark.parametrize(("height", "width"), [(31, 64), (64, 8), (0, 64), (-5, -5)])
def test_generate_scene_rejects_small_sizes(height, width):
    with pytest.raises(ValueError, match="at least 32"):
        generate_scene(np.random.default_rng(0), height, width)


def test_generate_scene_needs_a_generator():
    with pytest.raises(TypeError, match="Generator"):
        generate_scene(0, H, W)  # type: ignore[arg-type]


def test_the_generator_never_writes_into_a_folder_it_did_not_create(tmp_path):
    mine = tmp_path / "user_data"
    (mine / "labels").mkdir(parents=True)
    (mine / "labels" / "a.png").write_bytes(b"a user's label")
    with pytest.raises(ValueError, match=r"user_data: not empty and not generated by adaspx \(no \.adaspx-synthetic\)"):
        write_dataset(mine, train_size=1, val_size=1, height=48, width=64, seed=0)
    assert sorted(p.relative_to(mine).as_posix() for p in mine.rglob("*")) == ["labels", "labels/a.png"]
    # its own folder it writes again (a rerun with other settings), an empty one it takes
    ours = tmp_path / "ours"
    write_dataset(ours, train_size=1, val_size=1, height=48, width=64, seed=0)
    write_dataset(ours, train_size=2, val_size=1, height=48, width=64, seed=0)
    assert (ours / "synthetic.json").is_file() and len(list((ours / "images").iterdir())) == 3
    (tmp_path / "empty").mkdir()
    write_dataset(tmp_path / "empty", train_size=1, val_size=1, height=48, width=64, seed=0)


def test_a_dataset_generated_before_the_marker_is_still_the_generators(tmp_path):
    from adaspx.synthetic import OWNER_MARKER, check_generated_root

    old = tmp_path / "old"
    write_dataset(old, train_size=1, val_size=1, height=48, width=64, seed=0)
    (old / OWNER_MARKER).unlink()  # as an earlier version left it: its class table is the generator's own
    check_generated_root(old)
    assert (old / OWNER_MARKER).is_file()
