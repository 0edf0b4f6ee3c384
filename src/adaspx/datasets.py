"""Dataset readers behind one interface, and the manifest that later rules read.

``open_dataset(kind, root, split)`` returns a sequence of items (``.image_id``, ``.image`` (H, W, 3) uint8,
``.label`` (H, W) uint8 class index with 255 = void) with ``.classes`` and ``.num_classes``. Kinds:

``folder`` (also what the ``synthetic`` generator writes)::

    root/images/<id>.png        RGB (.jpg also accepted)
    root/labels/<id>.png        single-channel uint8 class index, 255 = void
    root/splits/<split>.txt     one image id per line
    root/classes.yaml           names: [...], optional colors: [[r, g, b], ...]

``cityscapes``::

    root/leftImg8bit/<split>/<city>/<id>_leftImg8bit.png
    root/gtFine/<split>/<city>/<id>_gtFine_labelIds.png        mapped to the 19 train ids with cityscapesscripts'
    root/gtFine/<split>/<city>/<id>_gtFine_labelTrainIds.png   official label table; used as is when present

``voc``::

    root/VOC2012/JPEGImages/<id>.jpg
    root/VOC2012/SegmentationClass/<id>.png     palette PNG, decoded by palette index (255 borders stay void);
    root/VOC2012/SegmentationClassRaw/<id>.png  or these index PNGs, for ids missing from SegmentationClass
    root/VOC2012/SegmentationClassAug/<id>.png
    root/VOC2012/ImageSets/Segmentation/<split>.txt

Image ids are the file stems (Cityscapes: ``<city>_<seq>_<frame>``), unique within a dataset.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import yaml
from PIL import Image

from adaspx import IGNORE_INDEX

KINDS = ("synthetic", "folder", "cityscapes", "voc")


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
            im.load()
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
            if im.mode == "L" and im.format == "PNG":  # OpenCV decodes 8-bit grey PNGs ~30% faster than Pillow
                arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
                if arr is not None and arr.dtype == np.uint8 and arr.shape == (im.height, im.width):
                    return arr
            im.load()
            arr = np.asarray(im)
    except FileNotFoundError:
        raise DatasetError(f"{path}: label file not found") from None
    except OSError as err:
        raise DatasetError(f"{path}: unreadable label ({err})") from err
    if arr.max(initial=0) > 255:
        raise DatasetError(f"{path}: label values above 255")
    return arr.astype(np.uint8, copy=False)


class Dataset(Sequence[Item]):
    """One split of a dataset: image ids, class names, and file paths per id."""

    root: Path
    split: str
    ids: list[str]
    classes: tuple[str, ...]
    colors: list | None = None
    """RGB display colour per class (``[r, g, b]`` in 0..255), where the dataset has a palette; None otherwise."""

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def image_path(self, image_id: str) -> Path:
        raise NotImplementedError

    def label_path(self, image_id: str) -> Path:
        raise NotImplementedError

    def image(self, image_id: str) -> np.ndarray:
        return read_image(self.image_path(image_id))

    def label(self, image_id: str) -> np.ndarray:
        return read_label(self.label_path(image_id))

    def source_label(self, image_id: str) -> np.ndarray:
        """The label map as the dataset ships it, before any mapping to train ids (what the reference code's
        oracle superpixels fill); the train-id label where there is no other."""
        return self.label(image_id)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        image_id = self.ids[index]
        return Item(image_id, self.image(image_id), self.label(image_id))

    def _set_ids(self, ids: list[str], source: Path) -> None:
        if not ids:
            raise DatasetError(f"{source}: split {self.split!r} lists no images")
        if len(set(ids)) != len(ids):
            dupes = sorted({i for i in ids if ids.count(i) > 1})
            raise DatasetError(f"{source}: duplicate image ids {dupes[:5]}")
        self.ids = ids
        self.list_files = [source] if source.is_file() else []

    def files(self) -> list[Path]:
        """Every file this split is read from: its list file and class table, then each image and label."""
        own = [*self.list_files, *getattr(self, "table_files", [])]
        return own + [p for i in self.ids for p in (self.image_path(i), self.label_path(i))]


def _read_list(path: Path) -> list[str]:
    if not path.is_file():
        raise DatasetError(f"{path}: split list not found")
    text = path.read_text(encoding="utf-8-sig")  # a byte-order mark (Windows editors) is not part of an id
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]


class FolderDataset(Dataset):
    """One split of a dataset in the plain folder layout."""

    def __init__(self, root: str | Path, split: str) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetError(f"{self.root}: dataset root does not exist")
        classes_file = self.root / "classes.yaml"
        if not classes_file.is_file():
            raise DatasetError(f"{classes_file}: class table not found")
        self.table_files = [classes_file]
        try:
            table = yaml.safe_load(classes_file.read_text(encoding="utf-8-sig")) or {}
        except yaml.YAMLError as err:
            raise DatasetError(f"{classes_file}: not valid YAML ({' '.join(str(err).split())})") from None
        if not isinstance(table, dict):
            raise DatasetError(f"{classes_file}: expected a mapping with 'names' (and optional 'colors')")
        names = table.get("names")
        if not isinstance(names, list) or not names or len(names) > 255:
            raise DatasetError(f"{classes_file}: 'names' must be a list of 1 to 255 class names")
        self.classes: tuple[str, ...] = tuple(str(n) for n in names)
        self.colors = table.get("colors")
        split_file = self.root / "splits" / f"{split}.txt"
        self.split = split
        self._set_ids(_read_list(split_file), split_file)

    def image_path(self, image_id: str) -> Path:
        png = self.root / "images" / f"{image_id}.png"
        if not png.exists():
            jpg = png.with_suffix(".jpg")
            if jpg.exists():
                return jpg
        return png

    def label_path(self, image_id: str) -> Path:
        return self.root / "labels" / f"{image_id}.png"


def _cityscapes_lut() -> tuple[np.ndarray, np.ndarray]:
    """Cityscapes label id -> train id (255 for ignored ids) and the ids the official table knows, from
    cityscapesscripts' label table."""
    from cityscapesscripts.helpers.labels import labels

    lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    known = np.zeros(256, dtype=bool)
    for lab in labels:
        if 0 <= lab.id < 256:
            known[lab.id] = True
            if 0 <= lab.trainId < 255:
                lut[lab.id] = lab.trainId
    return lut, known


def _cityscapes_classes() -> tuple[str, ...]:
    from cityscapesscripts.helpers.labels import labels

    names = {lab.trainId: lab.name for lab in labels if 0 <= lab.trainId < 255}
    return tuple(names[k] for k in sorted(names))


def _cityscapes_colors() -> list[list[int]]:
    """The official display colour of each train id, from cityscapesscripts' label table."""
    from cityscapesscripts.helpers.labels import labels

    colors = {lab.trainId: list(lab.color) for lab in labels if 0 <= lab.trainId < 255}
    return [colors[k] for k in sorted(colors)]


class CityscapesDataset(Dataset):
    """Cityscapes fine annotations, 19 train classes; an optional list file (one id per line) restricts the split."""

    def __init__(self, root: str | Path, split: str, list_file: str | Path | None = None) -> None:
        self.root = Path(root)
        self.split = split
        image_dir = self.root / "leftImg8bit" / split
        if not image_dir.is_dir():
            raise DatasetError(f"{image_dir}: Cityscapes image folder not found (expected leftImg8bit/<split>/<city>)")
        self.classes = _cityscapes_classes()
        self.colors = _cityscapes_colors()
        self._lut, self._known = _cityscapes_lut()
        self._city: dict[str, str] = {}
        for path in sorted(image_dir.glob("*/*_leftImg8bit.png")):
            self._city[path.name[: -len("_leftImg8bit.png")]] = path.parent.name
        ids = sorted(self._city)
        source = image_dir
        if list_file is not None:
            source = Path(list_file)
            wanted = [Path(i).name.replace("_leftImg8bit.png", "") for i in _read_list(source)]
            missing = [i for i in wanted if i not in self._city]
            if missing:
                raise DatasetError(f"{source}: images {missing[:3]} not found under {image_dir}")
            ids = wanted
        self._set_ids(ids, source)

    def image_path(self, image_id: str) -> Path:
        return self.root / "leftImg8bit" / self.split / self._city[image_id] / f"{image_id}_leftImg8bit.png"

    def label_path(self, image_id: str) -> Path:
        folder = self.root / "gtFine" / self.split / self._city[image_id]
        train_ids = folder / f"{image_id}_gtFine_labelTrainIds.png"
        return train_ids if train_ids.exists() else folder / f"{image_id}_gtFine_labelIds.png"

    def label(self, image_id: str) -> np.ndarray:
        path = self.label_path(image_id)
        label = read_label(path)
        if path.name.endswith("_labelTrainIds.png"):
            return label
        unknown = ~self._known[label]
        if unknown.any():
            values = np.unique(label[unknown]).tolist()
            raise DatasetError(f"{path}: label ids {values[:5]} are not in the Cityscapes label table")
        return self._lut[label]

    def source_label(self, image_id: str) -> np.ndarray:
        """The ``*_gtFine_labelIds.png`` map (Cityscapes' 34 ids, void split into ~15 values), where it exists."""
        folder = self.root / "gtFine" / self.split / self._city[image_id]
        path = folder / f"{image_id}_gtFine_labelIds.png"
        return read_label(path) if path.exists() else self.label(image_id)


VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip


def voc_colors(n: int = len(VOC_CLASSES)) -> list[list[int]]:
    """The VOC palette's first ``n`` colours (the devkit's bit interleaving of the class index)."""
    colors = []
    for k in range(n):
        rgb, c = [0, 0, 0], k
        for shift in range(7, -1, -1):
            for channel in range(3):
                rgb[channel] |= ((c >> channel) & 1) << shift
            c >>= 3
        colors.append(rgb)
    return colors


class VOCDataset(Dataset):
    """PASCAL VOC 2012 segmentation, 21 classes; palette PNGs are decoded by palette index, not by colour."""

    LABEL_DIRS = ("SegmentationClass", "SegmentationClassRaw", "SegmentationClassAug")

    def __init__(self, root: str | Path, split: str) -> None:
        self.root = Path(root)
        self.split = split
        self.base = self.root / "VOC2012"
        if not self.base.is_dir():
            raise DatasetError(f"{self.base}: VOC2012 folder not found under the dataset root")
        self.classes = VOC_CLASSES
        self.colors = voc_colors()
        list_file = self.base / "ImageSets" / "Segmentation" / f"{split}.txt"
        self._set_ids(_read_list(list_file), list_file)

    def image_path(self, image_id: str) -> Path:
        return self.base / "JPEGImages" / f"{image_id}.jpg"

    def label_path(self, image_id: str) -> Path:
        for folder in self.LABEL_DIRS:
            path = self.base / folder / f"{image_id}.png"
            if path.exists():
                return path
        return self.base / self.LABEL_DIRS[0] / f"{image_id}.png"


def open_dataset(kind: str, root: str | Path, split: str, *, list_file: str | Path | None = None) -> Dataset:
    """Open one split of a dataset. ``synthetic`` is the generator's output in the folder layout."""
    if kind not in KINDS:
        raise DatasetError(f"dataset kind {kind!r} unknown; expected one of {', '.join(KINDS)}")
    if not Path(root).is_dir():
        raise DatasetError(f"{root}: dataset root does not exist")
    if kind == "cityscapes":
        return CityscapesDataset(root, split, list_file)
    if kind == "voc":
        return VOCDataset(root, split)
    return FolderDataset(root, split)


def check_split(ds: Dataset) -> dict:
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


def build_manifest(
    kind: str,
    root: str | Path,
    splits: Sequence[str] = ("train", "val"),
    list_files: dict[str, str | None] | None = None,
) -> dict:
    """Check every split completely and describe it; later rules read this instead of re-scanning."""
    list_files = {k: v for k, v in (list_files or {}).items() if v}
    manifest: dict = {"kind": kind, "root": str(root), "list_files": list_files, "splits": {}}
    for split in splits:
        ds = open_dataset(kind, root, split, list_file=list_files.get(split))
        manifest["classes"] = list(ds.classes)
        manifest["num_classes"] = ds.num_classes
        manifest["splits"][split] = check_split(ds)
    return manifest


def source_files(
    kind: str, root: str | Path, splits: Sequence[str], list_files: dict[str, str | None] | None = None
) -> list[str]:
    """Every file the manifest of these splits is read from (list files, class table, images, labels) and the
    folders holding them, without reading any image: the workflow watches them, so that a file edited, added or
    deleted reruns what depends on it (a folder's modification time shows an added or deleted file)."""
    list_files = {k: v for k, v in (list_files or {}).items() if v}
    files: set[str] = set()
    for split in splits:
        files.update(str(p) for p in open_dataset(kind, root, split, list_file=list_files.get(split)).files())
    return sorted(files) + sorted({str(Path(f).parent) for f in files})


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
