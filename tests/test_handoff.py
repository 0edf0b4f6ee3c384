"""adaspx export / adaspx import: a round's queries as CVAT and COCO files and back, pixel for pixel."""

import json
import xml.etree.ElementTree as ET

import h5py
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from pycocotools import mask as coco_mask

from adaspx import IGNORE_INDEX
from adaspx.cli import main

ROUND = "results/tiny/cb_adaptive_sieve/seed0/round1"


def region_map(run, image: str) -> np.ndarray:
    """The map round 1 of an adaptive experiment selected from: the warm-up's adaptive regions."""
    for path in sorted((run / "results/tiny/warmup/seed0/round0").glob("regions_shard*.h5")):
        with h5py.File(path) as f:
            if image in f["labels"]:
                return f["labels"][image][()]
    raise KeyError(image)


def queried(run) -> pd.DataFrame:
    sel = pd.read_csv(run / ROUND / "selection.csv", dtype={"image": str})
    return sel[~sel["reserve"]]


def dominant(run, image: str, region: int) -> int:
    """The region's most frequent ground-truth value, by brute force."""
    gt = np.asarray(Image.open(run / "resources/datasets/tiny/labels" / f"{image}.png"))
    return int(np.bincount(gt[region_map(run, image) == region], minlength=256).argmax())


def cvat_mask(shape: ET.Element, width: int, height: int) -> np.ndarray:
    """CVAT for images 1.1: run lengths over the box, row by row, starting with background, by hand."""
    runs = [int(v) for v in shape.get("rle").split(",")]
    x, y, w, h = (int(shape.get(k)) for k in ("left", "top", "width", "height"))
    flat = np.concatenate([np.full(n, k % 2 == 1) for k, n in enumerate(runs)])
    out = np.zeros((height, width), dtype=bool)
    out[y : y + h, x : x + w] = flat.reshape(h, w)
    return out


def export(run, fmt, out) -> None:
    assert main(["export", str(run / ROUND), "--format", fmt, "-o", str(out)]) == 0


def test_coco_export_holds_each_queried_region_exactly_and_its_answers_come_back(tiny_run, tmp_path, capsys):
    out = tmp_path / "queries.json"
    export(tiny_run, "coco", out)
    data = json.loads(out.read_text())
    names = {c["id"]: c["name"] for c in data["categories"]}
    images = {i["id"]: i for i in data["images"]}
    sel = queried(tiny_run)
    assert sorted(a["attributes"]["region"] for a in data["annotations"]) == sorted(
        f"{i}_r{r}" for i, r in zip(sel["image"], sel["region"], strict=True)
    )
    for a in data["annotations"]:
        image, region = a["attributes"]["region"].rsplit("_r", 1)
        mask = coco_mask.decode({"size": a["segmentation"]["size"], "counts": a["segmentation"]["counts"].encode()})
        np.testing.assert_array_equal(mask.astype(bool), region_map(tiny_run, image) == int(region))
        assert images[a["image_id"]]["file_name"].endswith(f"{image}.png")
    # an annotator labels every region in the tool (one "void / can't tell"), the tool exports the file back
    assert names[len(names)] == "void / can't tell"
    expected = {}
    for n, a in enumerate(data["annotations"]):
        image, region = a["attributes"]["region"].rsplit("_r", 1)
        label = IGNORE_INDEX if n == 0 else dominant(tiny_run, image, int(region))
        expected[(image, int(region))] = label
        a["category_id"] = len(names) if label == IGNORE_INDEX else label + 1
    answered = tmp_path / "answered.json"
    answered.write_text(json.dumps(data))
    people = tmp_path / "people.csv"
    assert main(["import", str(tiny_run / ROUND), str(answered), "--format", "coco", "-o", str(people)]) == 0
    got = pd.read_csv(people, dtype={"image": str})
    assert dict(zip(zip(got["image"], got["region"], strict=True), got["label"], strict=True)) == expected
    assert (got["asked"] == 1).all()


def test_cvat_export_holds_each_queried_region_exactly_and_its_answers_come_back(tiny_run, tmp_path):
    out = tmp_path / "queries.xml"
    export(tiny_run, "cvat", out)
    root = ET.parse(out).getroot()
    assert root.findtext("version") == "1.1"
    labels = [label.findtext("name") for label in root.iter("label")]
    seen = []
    for image in root.iter("image"):
        w, h = int(image.get("width")), int(image.get("height"))
        for shape in image.iter("mask"):
            key = shape.find("attribute[@name='region']").text
            name, region = key.rsplit("_r", 1)
            assert image.get("name").endswith(f"{name}.png")
            np.testing.assert_array_equal(cvat_mask(shape, w, h), region_map(tiny_run, name) == int(region))
            seen.append(key)
            shape.set("label", labels[dominant(tiny_run, name, int(region)) % len(labels)])
    sel = queried(tiny_run)
    assert sorted(seen) == sorted(f"{i}_r{r}" for i, r in zip(sel["image"], sel["region"], strict=True))
    answered = tmp_path / "answered.xml"
    ET.ElementTree(root).write(answered)
    people = tmp_path / "people.csv"
    assert main(["import", str(tiny_run / ROUND), str(answered), "--format", "cvat", "-o", str(people)]) == 0
    got = pd.read_csv(people, dtype={"image": str})
    for image, region, label in zip(got["image"], got["region"], got["label"], strict=True):
        truth = dominant(tiny_run, image, region)
        assert label == (truth if truth != IGNORE_INDEX else IGNORE_INDEX)


@pytest.mark.parametrize("damage, message", [
    ("mask", "its mask was changed"),
    ("label", "answered 'unicorn', not one of"),
    ("drop", "has no answer"),
    ("stray", "was never queried"),
])  # fmt: skip
def test_an_unusable_export_is_refused_in_one_line_writing_nothing(tiny_run, tmp_path, capsys, damage, message):
    out = tmp_path / "queries.xml"
    export(tiny_run, "cvat", out)
    root = ET.parse(out).getroot()
    # a region whose box does not start with it: its first background run can give it one more pixel
    image, shape = next((i, m) for i in root.iter("image") for m in i.iter("mask") if int(m.get("rle").split(",")[0]))
    if damage == "mask":
        runs = [int(v) for v in shape.get("rle").split(",")]
        runs[0], runs[1] = runs[0] - 1, runs[1] + 1
        shape.set("rle", ", ".join(map(str, runs)))
    elif damage == "label":
        shape.set("label", "unicorn")
    elif damage == "drop":
        image.remove(shape)
    else:
        shape.find("attribute[@name='region']").text = "train_9999_r1"
    broken = tmp_path / "answered.xml"
    ET.ElementTree(root).write(broken)
    capsys.readouterr()
    people = tmp_path / "people.csv"
    assert main(["import", str(tiny_run / ROUND), str(broken), "--format", "cvat", "-o", str(people)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and err.startswith(f"adaspx import: {broken}")
    assert not people.exists()
