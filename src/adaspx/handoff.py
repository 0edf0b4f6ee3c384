"""Offline hand-off: a round's queries as import files of annotation tools, and those tools' exports read back as
the round's ``people.csv``.

Formats: ``label-studio`` (JSON tasks with brush regions in Label Studio's RLE, encoded by label-studio-sdk in its
own environment, :mod:`adaspx.label_studio`), ``cvat`` (CVAT for images 1.1 XML, masks as CVAT's run lengths over
their bounding box, ``cvat_sdk.masks``) and ``coco`` (COCO instances with RLE segmentations, pycocotools). Each
queried region keeps its key ``<image>_r<region>``: the Label Studio region id, a CVAT ``region`` attribute, a COCO
``attributes.region``. Masks decode to exactly the region's pixels; a mask changed in the tool is refused on import
(the answer would be of another region), as are unknown classes, regions never queried and regions with no answer.
"""

from __future__ import annotations

import json
import re
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from adaspx import IGNORE_INDEX
from adaspx.h5io import MultiArtifact, atomic_write_text, write_csv
from adaspx.label_studio import label_config, region_key
from adaspx.pipeline.people import PEOPLE_COLUMNS, VOID_CHOICE, _run_bridge, query_tasks
from adaspx.show import Round, find_manifest, open_pool

FORMATS = ("label-studio", "cvat", "coco")


class HandoffError(ValueError):
    """One line naming the file, task or region."""


@dataclass
class Queries:
    """A round's queried regions: the round, its dataset, the selection and the region maps it selected from."""

    folder: Path
    number: int
    ds: object
    classes: list[str]
    selection: pd.DataFrame
    region_paths: list[Path]

    @property
    def choices(self) -> list[str]:
        return [*self.classes, VOID_CHOICE]

    def masks(self) -> Iterator[tuple[str, list[tuple[int, str, np.ndarray]]]]:
        """Per queried image: (region, key, boolean mask) of each of its queried regions."""
        with MultiArtifact(self.region_paths) as maps:
            for image_id, sel in self.selection.groupby("image", sort=False):
                rmap = maps.get("labels", image_id)
                yield image_id, [(int(r), region_key(image_id, int(r)), rmap == r) for r in sel["region"]]

    def label(self, name: str, where: str) -> int:
        if name not in self.choices:
            raise HandoffError(f"{where}: answered {name!r}, not one of {self.choices}")
        return IGNORE_INDEX if name == VOID_CHOICE else self.choices.index(name)


def open_round(folder) -> Queries:
    """The queries of a round folder (``results/<dataset>/<experiment>/seed<s>/round<r>``): its ``selection.csv``
    and, among the maps it may have selected from, the one whose regions have the selection's sizes."""
    folder = Path(folder)
    match = re.fullmatch(r"round(\d+)", folder.name)
    if match is None or not (folder / "selection.csv").is_file():
        raise HandoffError(f"{folder}: not a round folder with a selection.csv")
    ds, manifest = open_pool(find_manifest(folder))
    selection = pd.read_csv(folder / "selection.csv", dtype={"image": str})
    if "reserve" in selection:
        selection = selection[~selection["reserve"].astype(bool)]
    if selection.empty:
        raise HandoffError(f"{folder / 'selection.csv'}: no region is queried")
    first = selection[selection["image"] == selection["image"].iat[0]]
    rnd = Round(folder, int(match[1]), folder / "answers.h5", ())
    for _, paths, _ in rnd.candidates():
        with MultiArtifact(paths) as maps:
            if not maps.has("labels", first["image"].iat[0]):
                continue
            rmap = maps.get("labels", first["image"].iat[0])
            sizes = [int(np.count_nonzero(rmap == r)) for r in first["region"]]
        if sizes == first["size"].astype(int).tolist():
            return Queries(folder, int(match[1]), ds, list(manifest["classes"]), selection, list(paths))
    raise HandoffError(f"{folder}: none of the round's candidate region maps has the regions of its selection.csv")


# ------------------------------------------------------------------------------------------------ export


def export(folder, fmt: str, out, *, python: str | None = None, document_root: str = "/") -> Path:
    """Write the round's queries as an import file of ``fmt`` at ``out``. ``python``: the interpreter of the
    environment with label-studio-sdk (``label-studio`` only); ``document_root``: the folder Label Studio serves
    local files from."""
    q = open_round(folder)
    out = Path(out)
    if fmt == "coco":
        atomic_write_text(out, json.dumps(_coco(q)))
    elif fmt == "cvat":
        atomic_write_text(out, ET.tostring(_cvat(q), encoding="unicode", xml_declaration=True))
    elif fmt == "label-studio":
        _label_studio(q, out, python, document_root)
    else:
        raise HandoffError(f"format {fmt!r} unknown; expected one of {', '.join(FORMATS)}")
    return out


def _coco(q: Queries) -> dict:
    from pycocotools import mask as coco_mask

    images, annotations = [], []
    for n, (image_id, regions) in enumerate(q.masks(), start=1):
        h, w = regions[0][2].shape
        images.append({"id": n, "file_name": str(q.ds.image_path(image_id)), "width": w, "height": h})
        for _, key, mask in regions:
            rle = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))  # column-major, as COCO counts
            bbox = coco_mask.toBbox(rle).tolist()
            segmentation = {"size": rle["size"], "counts": rle["counts"].decode("ascii")}
            annotations.append({
                "id": len(annotations) + 1, "image_id": n, "category_id": len(q.choices), "iscrowd": 0,
                "segmentation": segmentation, "area": int(mask.sum()), "bbox": bbox,
                "attributes": {"region": key},
            })  # fmt: skip
    categories = [{"id": k + 1, "name": name, "supercategory": ""} for k, name in enumerate(q.choices)]
    return {"images": images, "annotations": annotations, "categories": categories}


def _cvat(q: Queries) -> ET.Element:
    from cvat_sdk.masks import encode_mask

    root = ET.Element("annotations")
    ET.SubElement(root, "version").text = "1.1"
    labels = ET.SubElement(ET.SubElement(ET.SubElement(root, "meta"), "task"), "labels")
    colors = getattr(q.ds, "colors", None)
    for k, name in enumerate(q.choices):
        label = ET.SubElement(labels, "label")
        ET.SubElement(label, "name").text = name
        if colors is not None and k < len(colors):
            ET.SubElement(label, "color").text = "#{:02x}{:02x}{:02x}".format(*colors[k])
        ET.SubElement(label, "type").text = "mask"
        attr = ET.SubElement(ET.SubElement(label, "attributes"), "attribute")
        for tag, text in (("name", "region"), ("mutable", "False"), ("input_type", "text"), ("values", "")):
            ET.SubElement(attr, tag).text = text
    for n, (image_id, regions) in enumerate(q.masks()):
        h, w = regions[0][2].shape
        image = ET.SubElement(
            root, "image", id=str(n), name=str(q.ds.image_path(image_id)), width=str(w), height=str(h)
        )
        for _, key, mask in regions:
            *runs, x1, y1, x2, y2 = encode_mask(mask)  # runs over the box, row by row, background first
            shape = ET.SubElement(image, "mask", label=VOID_CHOICE, source="auto", occluded="0", z_order="0",
                                  rle=", ".join(map(str, runs)), left=str(x1), top=str(y1),
                                  width=str(x2 - x1 + 1), height=str(y2 - y1 + 1))  # fmt: skip
            ET.SubElement(shape, "attribute", name="region").text = key
    return root


def _label_studio(q: Queries, out: Path, python: str | None, document_root: str) -> None:
    if python is None:
        raise HandoffError(
            "the label-studio format needs --python, the Python of the environment with label-studio-sdk"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".export.") as tmp:
        masks = Path(tmp) / "queries.npz"
        tasks = query_tasks(masks, q.selection, q.region_paths, q.ds, document_root)
        request = {"action": "export", "out": str(out), "masks": str(masks), "tasks": tasks,
                   "model_version": f"round{q.number}"}  # fmt: skip
        _run_bridge(python, request, Path(tmp) / "request.json")
    (out.with_suffix(".xml")).write_text(label_config(q.classes, getattr(q.ds, "colors", None), VOID_CHOICE))


# ------------------------------------------------------------------------------------------------ import


def import_answers(folder, fmt: str, path, out) -> Path:
    """Read the answers of a tool's export ``path`` (``fmt``) to the round's queries and write them as the round's
    ``people.csv`` at ``out``; every queried region must be answered, with its own mask (nothing is written
    otherwise)."""
    q = open_round(folder)
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise HandoffError(f"{path}: no such file") from None
    if fmt == "coco":
        got = _read_coco(q, path, json.loads(text))
    elif fmt == "cvat":
        got = _read_cvat(q, path, ET.fromstring(text))
    elif fmt == "label-studio":
        got = _read_label_studio(q, path, json.loads(text))
    else:
        raise HandoffError(f"format {fmt!r} unknown; expected one of {', '.join(FORMATS)}")
    asked = {region_key(i, int(r)) for i, r in zip(q.selection["image"], q.selection["region"], strict=True)}
    stray = [key for key in got if key not in asked]
    if stray:
        raise HandoffError(f"{path}: region {stray[0]} was never queried in {q.folder}")
    rows = []
    for image_id, regions in q.masks():
        for region, key, mask in regions:
            if key not in got:
                raise HandoffError(f"{path}: queried region {key} has no answer")
            label, found, annotator, time = got.pop(key)
            if found is not None and not np.array_equal(found, mask):
                raise HandoffError(f"{path}: region {key}: its mask was changed ({int(found.sum())} pixels, "
                                   f"queried {int(mask.sum())}): the answer would be of another region")  # fmt: skip
            rows.append((q.number, image_id, region, label, annotator, time, "", ""))
    write_csv(out, pd.DataFrame(rows, columns=PEOPLE_COLUMNS))
    return Path(out)


def _read_coco(q: Queries, path: Path, data: dict) -> dict:
    from pycocotools import mask as coco_mask

    names = {c["id"]: c["name"] for c in data.get("categories", [])}
    got = {}
    for a in data.get("annotations", []):
        key = (a.get("attributes") or {}).get("region")
        where = f"{path}: annotation {a.get('id')} (region {key})"
        if key is None:
            raise HandoffError(f"{path}: annotation {a.get('id')} has no attributes.region")
        seg = a["segmentation"]
        if not isinstance(seg, dict):
            raise HandoffError(f"{where}: its segmentation is not an RLE mask")
        rle = {
            "size": seg["size"],
            "counts": seg["counts"].encode("ascii") if isinstance(seg["counts"], str) else seg["counts"],
        }
        if isinstance(rle["counts"], list):
            rle = coco_mask.frPyObjects(rle, *rle["size"])
        mask = coco_mask.decode(rle).astype(bool)
        got[key] = (q.label(names.get(a["category_id"], str(a["category_id"])), where), mask, "", "")
    return got


def _read_cvat(q: Queries, path: Path, root: ET.Element) -> dict:
    from cvat_sdk.masks import decode_mask

    got = {}
    for image in root.iter("image"):
        w, h = int(image.get("width")), int(image.get("height"))
        for shape in image.iter("mask"):
            attr = shape.find("attribute[@name='region']")
            key = None if attr is None else attr.text
            if key is None:
                raise HandoffError(f"{path}: image {image.get('name')}: a mask without its region attribute")
            where = f"{path}: image {image.get('name')}: region {key}"
            x1, y1 = int(float(shape.get("left"))), int(float(shape.get("top")))
            x2, y2 = x1 + int(float(shape.get("width"))) - 1, y1 + int(float(shape.get("height"))) - 1
            runs = [int(v) for v in shape.get("rle").split(",")]
            mask = decode_mask([*runs, x1, y1, x2, y2], image_width=w, image_height=h)
            got[key] = (q.label(shape.get("label"), where), mask, "", "")
    return got


def _read_label_studio(q: Queries, path: Path, data: list) -> dict:
    """Label Studio's JSON export: per task, its latest submitted annotation's per-region choices (its masks are
    Label Studio's RLE, decoded only by the SDK: the region ids and choices are read, as the online exchange does)."""
    from adaspx.label_studio import answers

    tasks = {}
    for t in data:
        image = (t.get("data") or {}).get("adaspx_image")
        if image is not None:
            tasks[image] = {"id": t.get("id"), "annotations": t.get("annotations") or []}
    request = {"tasks": [{"image": i, "regions": g["region"].astype(int).tolist()}
                         for i, g in q.selection.groupby("image", sort=False) if i in tasks]}  # fmt: skip
    emails = {}
    for t in data:
        for a in t.get("annotations") or []:
            by = a.get("completed_by")
            if isinstance(by, dict):  # some exports inline the user
                emails[by.get("id")] = by.get("email", "")
                a["completed_by"] = by.get("id")
            elif a.get("created_username"):  # others name it "<email>, <id>"
                emails[by] = a["created_username"].rsplit(",", 1)[0].strip()
            else:  # Label Studio's JSON export gives the user's id only
                emails.setdefault(by, f"user {by}")
    reply = answers(tasks, request, emails)
    for f in reply["foreign"]:
        raise HandoffError(f"{path}: task {f['task']} (image {f['image']}): region {f['id']} was never queried")
    got = {}
    for r in reply["regions"]:
        key = region_key(r["image"], r["region"])
        if r["status"] == "answered":
            name = r["choices"][0] if len(r["choices"]) == 1 else repr(r["choices"])
            got[key] = (q.label(name, f"{path}: task {r['task']}: region {key}"), None, r["annotator"], r["time"])
    return got
