import json

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
