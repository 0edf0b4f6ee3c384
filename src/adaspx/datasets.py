"""Dataset readers behind one interface, and the manifest that later rules read.

The plain folder layout (also what the synthetic generator writes)::

    root/images/<id>.png        RGB
    root/labels/<id>.png        single-channel uint8 class index, 255 = void
    root/splits/<split>.txt     one image id per line
    root/classes.yaml           names: [...], optional colors: [[r, g, b], ...]
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from adaspx import IGNORE_INDEX

KINDS = ("synthetic", "folder")


class DatasetError(ValueError):
    """A dataset file is missing, unreadable or inconsistent; the message names the file."""


@dataclass(frozen=True)
class Item:
    image_id: str
    image: np.ndarray  # (H, W, 3) uint8
    label: np.ndarray  # (H, W) uint8, 255 = void


def read_image(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except FileNotFoundError:
        raise DatasetError(f"{path}: image file not found") from None
    except OSError as err:
        raise DatasetError(f"{path}: unreadable image ({err})") from err


def read_label(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            if im.mode not in ("L", "P", "I", "I;16"):
                raise DatasetError(f"{path}: label PNG must be single-channel class indices, got mode {im.mode}")
            arr = np.asarray(im)
    except FileNotFoundError:
        raise DatasetError(f"{path}: label file not found") from None
    except OSError as err:
        raise DatasetError(f"{path}: unreadable label ({err})") from err
    if arr.max(initial=0) > 255:
        raise DatasetError(f"{path}: label values above 255")
    return arr.astype(np.uint8, copy=False)


class FolderDataset(Sequence[Item]):
    """One split of a dataset in the plain folder layout."""

    def __init__(self, root: str | Path, split: str) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetError(f"{self.root}: dataset root does not exist")
        classes_file = self.root / "classes.yaml"
        if not classes_file.is_file():
            raise DatasetError(f"{classes_file}: class table not found")
        table = yaml.safe_load(classes_file.read_text()) or {}
        names = table.get("names")
        if not isinstance(names, list) or not names or len(names) > 255:
            raise DatasetError(f"{classes_file}: 'names' must be a list of 1 to 255 class names")
        self.classes: tuple[str, ...] = tuple(str(n) for n in names)
        self.colors = table.get("colors")
        split_file = self.root / "splits" / f"{split}.txt"
        if not split_file.is_file():
            raise DatasetError(f"{split_file}: split list not found")
        self.split = split
        self.ids: list[str] = [ln.strip() for ln in split_file.read_text().splitlines() if ln.strip()]
        if not self.ids:
            raise DatasetError(f"{split_file}: split list is empty")
        dupes = sorted({i for i in self.ids if self.ids.count(i) > 1}) if len(set(self.ids)) != len(self.ids) else []
        if dupes:
            raise DatasetError(f"{split_file}: duplicate image ids {dupes[:5]}")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def image_path(self, image_id: str) -> Path:
        return self.root / "images" / f"{image_id}.png"

    def label_path(self, image_id: str) -> Path:
        return self.root / "labels" / f"{image_id}.png"

    def image(self, image_id: str) -> np.ndarray:
        return read_image(self.image_path(image_id))

    def label(self, image_id: str) -> np.ndarray:
        return read_label(self.label_path(image_id))

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        image_id = self.ids[index]
        return Item(image_id, self.image(image_id), self.label(image_id))


def open_dataset(kind: str, root: str | Path, split: str) -> FolderDataset:
    """Open one split of a dataset. ``synthetic`` is the generator's output in the folder layout."""
    if kind not in KINDS:
        raise DatasetError(f"dataset kind {kind!r} unknown; expected one of {', '.join(KINDS)}")
    return FolderDataset(root, split)


def check_split(ds: FolderDataset) -> dict:
    """Read every image and label of a split; return sizes and class pixel counts, or raise naming the file."""
    sizes: dict[str, list[int]] = {}
    counts = np.zeros(ds.num_classes, dtype=np.int64)
    void = 0
    for image_id in ds.ids:
        image, label = ds.image(image_id), ds.label(image_id)
        if image.shape[:2] != label.shape:
            raise DatasetError(
                f"{ds.label_path(image_id)}: label size {label.shape} differs from image size {image.shape[:2]}"
            )
        bad = (label >= ds.num_classes) & (label != IGNORE_INDEX)
        if bad.any():
            values = sorted(set(np.unique(label[bad]).tolist()))
            raise DatasetError(
                f"{ds.label_path(image_id)}: label values {values[:5]} outside the {ds.num_classes}-class table"
            )
        sizes[image_id] = list(label.shape)
        hist = np.bincount(label.ravel(), minlength=256)
        counts += hist[: ds.num_classes]
        void += int(hist[IGNORE_INDEX])
    return {"ids": list(ds.ids), "sizes": sizes, "class_pixels": counts.tolist(), "void_pixels": void}


def build_manifest(kind: str, root: str | Path, splits: Sequence[str] = ("train", "val")) -> dict:
    """Check every split completely and describe it; later rules read this instead of re-scanning."""
    manifest: dict = {"kind": kind, "root": str(root), "splits": {}}
    for split in splits:
        ds = open_dataset(kind, root, split)
        manifest["classes"] = list(ds.classes)
        manifest["num_classes"] = ds.num_classes
        manifest["splits"][split] = check_split(ds)
    return manifest


def load_manifest(path: str | Path) -> dict:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise DatasetError(f"{path}: manifest not found (run the prepare_dataset rule)") from None


def shard_ids(ids: Sequence[str], shards: int, shard: int) -> list[str]:
    """Fixed contiguous shards by image list order (shard k of n); every id lands in exactly one shard."""
    if not 0 <= shard < shards:
        raise ValueError(f"shard {shard} out of range for {shards} shards")
    n = len(ids)
    lo, hi = (n * shard) // shards, (n * (shard + 1)) // shards
    return list(ids[lo:hi])
