import json

import h5py
import numpy as np
import pytest
import yaml
from PIL import Image

from adaspx.datasets import DatasetError, build_manifest, open_dataset, shard_ids


def make_folder(root, ids=("a", "b"), classes=("road", "car"), size=(6, 8)):
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    (root / "splits").mkdir()
    (root / "classes.yaml").write_text(yaml.safe_dump({"names": list(classes)}))
    rng = np.random.default_rng(0)
    for i in ids:
        Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(root / "images" / f"{i}.png")
        label = rng.integers(0, len(classes), size, dtype=np.uint8)
        label[0, 0] = 255
        Image.fromarray(label).save(root / "labels" / f"{i}.png")
    (root / "splits" / "train.txt").write_text("\n".join(ids) + "\n")
    (root / "splits" / "val.txt").write_text(ids[0] + "\n")
    return root


def test_folder_dataset_reads_items(tmp_path):
    root = make_folder(tmp_path / "d")
    ds = open_dataset("folder", root, "train")
    assert len(ds) == 2 and ds.classes == ("road", "car") and ds.num_classes == 2
    item = ds[1]
    assert item.image_id == "b" and item.image.shape == (6, 8, 3) and item.image.dtype == np.uint8
    assert item.label.shape == (6, 8) and item.label[0, 0] == 255


def test_manifest_counts_every_pixel(tmp_path):
    root = make_folder(tmp_path / "d")
    m = build_manifest("folder", root, ["train", "val"])
    train = m["splits"]["train"]
    assert train["ids"] == ["a", "b"] and train["sizes"]["a"] == [6, 8]
    assert sum(train["class_pixels"]) + train["void_pixels"] == 2 * 48
    json.dumps(m)


@pytest.mark.parametrize(
    "break_it, message",
    [
        (lambda r: (r / "splits" / "train.txt").unlink(), r"splits/train.txt: split list not found"),
        (lambda r: (r / "labels" / "b.png").unlink(), r"labels/b.png: label file not found"),
        (lambda r: (r / "images" / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n broken"), r"images/a.png: unreadable"),
        (
            lambda r: Image.fromarray(np.zeros((5, 8), np.uint8)).save(r / "labels" / "a.png"),
            r"labels/a.png: label size \(5, 8\) differs from image size \(6, 8\)",
        ),
        (
            lambda r: Image.fromarray(np.full((6, 8), 7, np.uint8)).save(r / "labels" / "a.png"),
            r"labels/a.png: label values \[7\] outside the 2-class table",
        ),
        (lambda r: (r / "classes.yaml").unlink(), r"classes.yaml: class table not found"),
        (lambda r: (r / "classes.yaml").write_text("names: [road, sky\n"), r"classes.yaml: not valid YAML \("),
        (lambda r: (r / "classes.yaml").write_text("- road\n- sky\n"), r"classes.yaml: expected a mapping"),
    ],
)
def test_bad_datasets_name_the_file(tmp_path, break_it, message):
    root = make_folder(tmp_path / "d")
    break_it(root)
    with pytest.raises(DatasetError, match=message):
        build_manifest("folder", root, ["train", "val"])


def test_missing_root_is_named(tmp_path):
    with pytest.raises(DatasetError, match="nowhere: dataset root does not exist"):
        open_dataset("folder", tmp_path / "nowhere", "train")


def test_shards_partition_in_order():
    ids = [str(i) for i in range(10)]
    parts = [shard_ids(ids, 3, k) for k in range(3)]
    assert sum(parts, []) == ids
    assert [len(p) for p in parts] == [3, 3, 4]


def _save(path, array, palette=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(array)
    if palette is not None:
        im = im.convert("P") if im.mode != "P" else im
        im.putpalette(palette)
    im.save(path)


def make_cityscapes(root, split="val", size=(8, 16)):
    rng = np.random.default_rng(1)
    # label ids: 7 road (train 0), 26 car (train 13), 0 unlabeled and 4 static (ignored -> 255)
    ids = np.array([7, 26, 0, 4], dtype=np.uint8)
    for city, frame in [("aachen", "aachen_000000_000019"), ("bonn", "bonn_000001_000019")]:
        _save(root / "leftImg8bit" / split / city / f"{frame}_leftImg8bit.png",
              rng.integers(0, 255, (*size, 3), dtype=np.uint8))  # fmt: skip
        _save(root / "gtFine" / split / city / f"{frame}_gtFine_labelIds.png", ids[rng.integers(0, 4, size)])
    return root


def test_cityscapes_maps_label_ids_with_the_official_table(tmp_path):
    root = make_cityscapes(tmp_path / "cs")
    ds = open_dataset("cityscapes", root, "val")
    assert ds.num_classes == 19 and ds.classes[0] == "road" and ds.classes[13] == "car"
    assert ds.ids == ["aachen_000000_000019", "bonn_000001_000019"]
    raw = np.asarray(Image.open(root / "gtFine/val/bonn/bonn_000001_000019_gtFine_labelIds.png"))
    label = ds.label("bonn_000001_000019")
    expected = np.select([raw == 7, raw == 26], [0, 13], 255)
    np.testing.assert_array_equal(label, expected)
    assert ds[0].image.shape == (8, 16, 3)


def test_cityscapes_prefers_train_ids_and_honours_a_list_file(tmp_path):
    root = make_cityscapes(tmp_path / "cs")
    train_ids = np.full((8, 16), 5, np.uint8)
    _save(root / "gtFine/val/bonn/bonn_000001_000019_gtFine_labelTrainIds.png", train_ids)
    lst = tmp_path / "list.txt"
    lst.write_text("bonn/bonn_000001_000019_leftImg8bit.png\n")
    ds = open_dataset("cityscapes", root, "val", list_file=lst)
    assert ds.ids == ["bonn_000001_000019"]
    assert (ds.label("bonn_000001_000019") == 5).all()
    lst.write_text("nowhere_000000_000000\n")
    with pytest.raises(DatasetError, match=r"list.txt: images \['nowhere_000000_000000'\] not found"):
        open_dataset("cityscapes", root, "val", list_file=lst)


def test_cityscapes_unknown_label_id_names_the_file(tmp_path):
    root = make_cityscapes(tmp_path / "cs")
    _save(root / "gtFine/val/aachen/aachen_000000_000019_gtFine_labelIds.png", np.full((8, 16), 200, np.uint8))
    with pytest.raises(DatasetError, match=r"aachen_000000_000019_gtFine_labelIds.png: label ids \[200\]"):
        build_manifest("cityscapes", root, ["val"])


def test_cityscapes_wrong_root_is_clear(tmp_path):
    (tmp_path / "cs").mkdir()
    with pytest.raises(DatasetError, match=r"leftImg8bit/val: Cityscapes image folder not found"):
        open_dataset("cityscapes", tmp_path / "cs", "val")


def make_voc(root, size=(10, 12)):
    base = root / "VOC2012"
    palette = [0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * (3 * 252) + [224, 224, 192]
    label = np.zeros(size, np.uint8)
    label[2:8, 2:6] = 1  # aeroplane, index 1 (drawn in dark red)
    label[2:8, 6:10] = 15  # person, index 15 (palette colour black here: decoding must use the index)
    label[1, :] = 255  # void border
    _save(base / "SegmentationClass" / "2007_000032.png", label, palette)
    _save(base / "SegmentationClassAug" / "2007_000033.png", np.full(size, 3, np.uint8))
    for i in ("2007_000032", "2007_000033"):
        (base / "JPEGImages").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((*size, 3), 90, np.uint8)).save(base / "JPEGImages" / f"{i}.jpg")
    (base / "ImageSets" / "Segmentation").mkdir(parents=True)
    (base / "ImageSets" / "Segmentation" / "train.txt").write_text("2007_000032\n2007_000033\n")
    return root, label


def test_voc_palette_pngs_decode_by_index_with_void_borders(tmp_path):
    root, label = make_voc(tmp_path / "voc")
    ds = open_dataset("voc", root, "train")
    assert ds.num_classes == 21 and ds.classes[15] == "person"
    np.testing.assert_array_equal(ds.label("2007_000032"), label)
    assert (ds.label("2007_000033") == 3).all()  # from SegmentationClassAug
    m = build_manifest("voc", root, ["train"])
    assert m["splits"]["train"]["void_pixels"] == 12


def test_truncated_png_is_named(tmp_path):
    root = make_folder(tmp_path / "d")
    data = (root / "labels" / "a.png").read_bytes()
    (root / "labels" / "a.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match=r"labels/a.png: unreadable label"):
        build_manifest("folder", root, ["train"])


def test_a_byte_order_mark_is_not_part_of_the_first_id(tmp_path):
    root = make_folder(tmp_path / "d")
    ids = (root / "splits" / "train.txt").read_text()
    (root / "splits" / "train.txt").write_text("\ufeff" + ids, encoding="utf-8")  # as Windows editors save
    (root / "classes.yaml").write_text("\ufeff" + (root / "classes.yaml").read_text(), encoding="utf-8")
    ds = open_dataset("folder", root, "train")
    assert ds.ids == ids.split() and not ds.ids[0].startswith("\ufeff")


def test_official_oracle_of_cityscapes_fills_the_label_ids_as_the_reference(tmp_path):
    # the reference fills the contours of *_gtFine_labelIds.png (void split into several ids, painted first), not
    # of the train ids (void 255, painted last)
    from adaspx import pipeline
    from adaspx.superpixels import oracle_superpixels

    root = make_cityscapes(tmp_path / "cs", split="train", size=(24, 32))
    make_cityscapes(tmp_path / "cs", split="val", size=(24, 32))
    pipeline.prepare_dataset("cityscapes", root, {"pool": "train", "val": "val"}, tmp_path / "manifest.json")
    pipeline.oracle_superpixels(tmp_path / "manifest.json", tmp_path / "oracle.h5", shards=1, shard=0,
                                method="official")  # fmt: skip
    ds = open_dataset("cityscapes", root, "train")
    with h5py.File(tmp_path / "oracle.h5") as f:
        for image_id in ds.ids:
            raw = np.asarray(Image.open(ds.image_path(image_id).parents[3] / "gtFine" / "train" /
                                        image_id.split("_")[0] / f"{image_id}_gtFine_labelIds.png"))  # fmt: skip
            got = f["labels"][image_id][()]
            np.testing.assert_array_equal(got, oracle_superpixels(raw, "official"))
            assert not np.array_equal(got, oracle_superpixels(ds.label(image_id), "official"))
