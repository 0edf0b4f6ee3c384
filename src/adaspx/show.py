"""Pictures of artifacts over their images: what ``adaspx show`` draws.

:func:`render_artifact` draws one HDF5 artifact for one image over that image: superpixels and regions as
boundaries, probabilities as their argmax or their uncertainty, answers as the answered regions in the colour of
their answer, targets as the training target. :func:`render_round_panel` draws one round of one image in six
panels: the image, the regions the round selected from, the regions it queried in the colour of their answers,
the training targets with the pixels the sieve dropped, the ground truth and the round model's prediction.

The image, its ground truth and the class table come from the dataset of the run: its ``manifest.json`` lies in
``results/<dataset>/``, a folder above every artifact, and names the dataset's kind and root (a relative root is
taken from the folder holding ``results/``, where the workflow ran, or else from the current folder).

Every map is brought to panel resolution (:class:`Scale`) before it is painted, so that a boundary is one picture
pixel wide whatever the image's size, and each panel is drawn pixel for pixel: :func:`layout` says where each panel
lies in the picture.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from adaspx import IGNORE_INDEX
from adaspx.artifacts import (
    SCHEMA_ANSWERS,
    SCHEMA_PROBS,
    SCHEMA_REGIONS,
    SCHEMA_SUPERPIXELS,
    SCHEMA_TARGETS,
    AnswerMaps,
    Probabilities,
    at_label_resolution,
    read_answers,
    read_target,
)
from adaspx.h5io import Artifact, MultiArtifact, write_figure

IMAGE_GROUPS = {
    SCHEMA_SUPERPIXELS: "labels",
    SCHEMA_REGIONS: "labels",
    SCHEMA_PROBS: "probs",
    SCHEMA_ANSWERS: "labels",
    SCHEMA_TARGETS: "labels",
}
"""The artifacts ``adaspx show`` draws, and the group holding one array per image in each."""

VIEWS = ("argmax", "uncertainty")
"""How probabilities are drawn: the class of highest probability, or the margin ratio p_(2) / p_(1)."""

PANEL_WIDTH = 480
"""Width in picture pixels that a panel approaches: smaller images are magnified by a whole factor up to it,
larger ones sampled down to it."""

DPI = 100
TITLE, GAP, LEGEND_ROW, COLORBAR = 28, 12, 22, 90
"""Picture pixels: the title band above each panel, the space between panels, one row of the legend, and the
band right of a panel that carries a colorbar."""

BOUNDARY = (255, 255, 0)
"""Region boundaries (skimage's inner boundaries: the pixels of a region that touch another one)."""
OUTLINE = (255, 255, 255)
"""Outlines of answered regions and of training targets."""
VOID = (0, 0, 0)
"""Void ground truth and void answers."""
DROPPED = (0, 255, 255)
"""Answered pixels that have no training target: the sieve dropped them."""
MISSING = (96, 96, 96)
"""A panel with nothing to show."""
ALPHA = 0.6
"""Weight of the class colour where probabilities are drawn over the image."""


class ShowError(ValueError):
    """An input of ``adaspx show`` is missing or unusable; the message names it."""


# ---------------------------------------------------------------------------------------- finding the dataset


def find_manifest(path: str | os.PathLike) -> Path:
    """The run's ``manifest.json``: in the folder of ``path`` (a file or a folder) or one above it."""
    path = Path(path).resolve()
    for folder in [path, *path.parents] if path.is_dir() else path.parents:
        if (folder / "manifest.json").is_file():
            return folder / "manifest.json"
    raise ShowError(f"{path}: no manifest.json in its folder or above (the results/<dataset>/ folder of a run)")


def dataset_root(manifest: dict, manifest_path: Path) -> Path:
    """The dataset root the manifest records: as it is when absolute; a relative one from the folder holding
    ``results/`` (the workflow's working folder) or, failing that, from the current folder."""
    if "root" not in manifest or "kind" not in manifest:
        missing = "root" if "root" not in manifest else "kind"
        raise ShowError(f"{manifest_path}: no key {missing!r}: cannot locate the dataset")
    root = Path(manifest["root"])
    tried = [root] if root.is_absolute() else [manifest_path.parent.parent.parent / root, Path.cwd() / root]
    for candidate in tried:
        if candidate.is_dir():
            return candidate
    raise ShowError(
        f"{manifest_path}: dataset root {manifest['root']!r} (key 'root') not found: looked in "
        + ", ".join(str(p) for p in tried)
    )


def open_pool(manifest_path: Path):
    """The pool split of the run's dataset, and the manifest."""
    from adaspx.datasets import DatasetError, open_dataset

    manifest = json.loads(manifest_path.read_text())
    root = dataset_root(manifest, manifest_path)
    split = manifest.get("pool_split")
    if split is None:
        raise ShowError(f"{manifest_path}: no key 'pool_split': cannot tell which split the pool is")
    try:
        ds = open_dataset(manifest["kind"], root, split, list_file=manifest.get("list_files", {}).get(split))
    except DatasetError as err:
        raise ShowError(f"{manifest_path}: dataset {root}: {err}") from None
    return ds, manifest


def class_colors(ds) -> np.ndarray:
    """(C, 3) uint8 colour per class: the dataset's palette, or matplotlib's ``tab20`` where it has none (or one
    of another length)."""
    colors = getattr(ds, "colors", None)
    if colors is not None and len(colors) == ds.num_classes:
        return np.asarray(colors, dtype=np.uint8).reshape(ds.num_classes, 3)
    from matplotlib import colormaps

    table = colormaps["tab20"](np.arange(ds.num_classes) % 20)[:, :3]
    return np.round(table * 255).astype(np.uint8)


def check_image(path, ids: Sequence[str], image_id: str) -> None:
    """Stop, naming the file, when ``image_id`` is none of its ``ids``."""
    if image_id in ids:
        return
    if not ids:
        raise ShowError(f"{path}: no image {image_id!r}: it holds no images")
    first, last = min(ids), max(ids)
    raise ShowError(f"{path}: no image {image_id!r}: it holds {len(ids)} images ({first} .. {last})")


def artifact_ids(path: Path, schema: str) -> list[str]:
    """The images an artifact holds an array of."""
    with Artifact(path, schema) as artifact:
        return artifact.names(IMAGE_GROUPS[schema])


def schema_of(path: Path) -> str:
    """The ``schema`` attribute of an HDF5 artifact that ``adaspx show`` draws."""
    with Artifact(path) as artifact:
        schema = artifact.attrs.get("schema")
    if schema is None:
        raise ShowError(f"{path}: no schema attribute: not an adaspx artifact")
    if schema not in IMAGE_GROUPS:
        raise ShowError(f"{path}: unknown schema {schema!r}; adaspx show draws {', '.join(IMAGE_GROUPS)}")
    return str(schema)


# ---------------------------------------------------------------------------------------- scale and painting


@dataclass(frozen=True)
class Scale:
    """Where each panel pixel looks in the image: row ``ys[i]``, column ``xs[j]`` (nearest pixel)."""

    ys: np.ndarray
    xs: np.ndarray

    @classmethod
    def of(cls, shape: tuple[int, int]) -> Scale:
        """Images narrower than :data:`PANEL_WIDTH` magnified by the largest whole factor that fits it (image pixel
        (y, x) fills panel pixels ``y*s .. y*s+s-1``, ``x*s .. x*s+s-1``), wider ones sampled down to it."""
        h, w = shape
        if w <= PANEL_WIDTH:
            factor = PANEL_WIDTH // w
            ph, pw = h * factor, w * factor
        else:
            ph, pw = max(1, round(h * PANEL_WIDTH / w)), PANEL_WIDTH
        return cls((np.arange(ph) * h) // ph, (np.arange(pw) * w) // pw)

    @property
    def panel(self) -> tuple[int, int]:
        """Height and width of a panel in picture pixels."""
        return len(self.ys), len(self.xs)

    def sample(self, array: np.ndarray) -> np.ndarray:
        """A map (H, W, ...) at panel resolution."""
        return array[self.ys[:, None], self.xs[None, :]]


def dimmed(image: np.ndarray) -> np.ndarray:
    """The image at half brightness: the background of painted panels."""
    return (image // 2).astype(np.uint8)


def with_boundaries(rgb: np.ndarray, regions: np.ndarray, color=BOUNDARY) -> np.ndarray:
    """``rgb`` with the inner boundaries of the region map ``regions`` in ``color``."""
    from skimage.segmentation import find_boundaries

    out = rgb.copy()
    out[find_boundaries(regions, mode="inner")] = color
    return out


def stripe_width(shape: tuple[int, int]) -> int:
    """Width in panel pixels of the stripes that show a class set."""
    return max(2, shape[1] // 60)


def paint_members(rgb: np.ndarray, mask: np.ndarray, members: np.ndarray, colors: np.ndarray) -> None:
    """Paint the pixels of ``mask`` in place: one class colour, diagonal stripes of the colours of several
    classes (a class set), or :data:`VOID` for none."""
    if not len(members):
        rgb[mask] = VOID
        return
    ys, xs = np.nonzero(mask)
    stripe = ((ys + xs) // stripe_width(mask.shape)) % len(members)
    rgb[ys, xs] = colors[np.asarray(members)[stripe]]


def paint_labels(rgb: np.ndarray, labels: np.ndarray, colors: np.ndarray) -> np.ndarray:
    """``rgb`` with every pixel of a class label in its class colour, void (255) in :data:`VOID`; other values
    (no label) keep ``rgb``."""
    out = rgb.copy()
    known = labels < len(colors)
    out[known] = colors[labels[known]]
    out[labels == IGNORE_INDEX] = VOID
    return out


def blend(image: np.ndarray, labels: np.ndarray, colors: np.ndarray) -> np.ndarray:
    """Class colours over the image at weight :data:`ALPHA`."""
    mixed = ALPHA * colors[labels].astype(np.float32) + (1 - ALPHA) * image.astype(np.float32)
    return np.round(mixed).astype(np.uint8)


def margin_ratio(probs: np.ndarray) -> np.ndarray:
    """Per pixel p_(2) / p_(1) of (C, H, W) probabilities: 0 when sure, 1 when the two best classes tie (the
    uncertainty acquisition scores regions by)."""
    top = np.sort(probs, axis=0)[-2:]
    return top[0] / np.maximum(top[1], np.finfo(np.float32).tiny)


# ---------------------------------------------------------------------------------------- answers and targets


def answer_members(answers) -> list[np.ndarray]:
    """Per row of ``answers.csv`` (a DataFrame from :func:`adaspx.artifacts.read_answers`), the classes of its
    answer, void left out: one class for a dominant answer, none for a void one, several for a class set."""
    from adaspx.annotation import parse_classes

    members = []
    for text in answers["classes"].tolist():
        values = parse_classes(text).astype(np.int64)
        members.append(values[values != IGNORE_INDEX])
    return members


def paint_answers(rgb, answer_map, rows, members, colors, keep=None) -> np.ndarray:
    """``rgb`` with each answered pixel of a (sampled) answer map in the colour of its answer (:func:`paint_members`)
    and the answered regions outlined in :data:`OUTLINE`; ``keep``: only the rows for which it is true."""
    out, drawn = rgb.copy(), np.zeros(answer_map.shape, dtype=np.int64)
    for index in np.unique(answer_map[answer_map != 0]).tolist():
        row = int(rows[index - 1])
        if keep is None or keep[row]:
            mask = answer_map == index
            paint_members(out, mask, members[row], colors)
            drawn[mask] = index
    return with_boundaries(out, drawn, OUTLINE) if drawn.any() else out


def target_codes(target) -> tuple[np.ndarray, np.ndarray | None]:
    """A target from :func:`adaspx.artifacts.read_target` as (H, W) codes (a class, 255, or ``SET_CODE + k``)
    and its (K, C) class-set table (None without class sets)."""
    if isinstance(target, np.ndarray):
        return target, None
    return target.codes, target.table


def paint_target(rgb, codes: np.ndarray, table: np.ndarray | None, colors: np.ndarray) -> np.ndarray:
    """``rgb`` with labeled pixels in their class colour and class-set pixels in stripes of their classes, each
    area outlined in :data:`OUTLINE`; pixels without a target (255) keep ``rgb``."""
    from adaspx.annotation import SET_CODE

    out = rgb.copy()
    labeled = codes < len(colors)
    out[labeled] = colors[codes[labeled]]
    if table is not None:
        for code in np.unique(codes[codes >= SET_CODE]).tolist():
            paint_members(out, codes == code, np.flatnonzero(table[code - SET_CODE]), colors)
    return with_boundaries(out, codes, OUTLINE) if (codes != IGNORE_INDEX).any() else out


def dropped_pixels(answer_map, rows, members, codes) -> np.ndarray:
    """Pixels answered with at least one class that have no training target: those the sieve dropped."""
    if not len(rows):  # an image nobody has answered yet
        return np.zeros(answer_map.shape, dtype=bool)
    classed = np.array([len(m) > 0 for m in members] + [False])
    row_of = np.where(answer_map != 0, np.asarray(rows, dtype=np.int64)[np.maximum(answer_map, 1) - 1], -1)
    return classed[row_of] & (codes == IGNORE_INDEX)


# ---------------------------------------------------------------------------------------- drawing


@dataclass(frozen=True)
class Panel:
    """One picture in a figure: ``rgb`` at the panel's sampling; ``scalar``, if given, drawn over it with a
    colormap and a colorbar."""

    title: str
    rgb: np.ndarray
    scalar: np.ndarray | None = None
    label: str = ""


def layout(scale: Scale, count: int, columns: int, legend_rows: int, colorbar: bool = False):
    """Where ``count`` panels lie in the picture, ``columns`` to a row: their boxes ``(x, y, width, height)`` in
    picture pixels from the top left, and the picture's (width, height)."""
    ph, pw = scale.panel
    cell_w = pw + (COLORBAR if colorbar else 0)
    rows = -(-count // columns)
    boxes = [
        (GAP + (k % columns) * (cell_w + GAP), TITLE + (k // columns) * (ph + TITLE), pw, ph) for k in range(count)
    ]
    width = GAP + columns * (cell_w + GAP)
    height = rows * (ph + TITLE) + GAP + legend_rows * LEGEND_ROW + GAP
    return boxes, (width, height)


def legend_entries(names: Sequence[str], colors: np.ndarray, extra: Sequence[tuple[str, tuple, str]] = ()):
    """Legend patches: one per class, then ``extra`` ones given as (label, colour, hatch)."""
    from matplotlib.patches import Patch

    patches = [Patch(facecolor=np.asarray(c) / 255, label=n) for n, c in zip(names, colors, strict=True)]
    for label, color, hatch in extra:
        patches.append(Patch(facecolor=np.asarray(color) / 255, edgecolor="black", hatch=hatch or None, label=label))
    return patches


def legend_columns(scale: Scale, columns: int) -> int:
    """Entries per legend row: as many as about 130 picture pixels each fit across the figure."""
    return max(1, (columns * scale.panel[1]) // 130)


def draw(panels: Sequence[Panel], scale: Scale, columns: int, legend) -> object:
    """A matplotlib figure of the panels in a grid with the legend below them."""
    from matplotlib.figure import Figure

    per_row = legend_columns(scale, columns)
    colorbar = any(p.scalar is not None for p in panels)
    boxes, (width, height) = layout(scale, len(panels), columns, -(-len(legend) // per_row), colorbar)
    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    for panel, (x, y, w, h) in zip(panels, boxes, strict=True):
        ax = fig.add_axes((x / width, 1 - (y + h) / height, w / width, h / height))
        ax.imshow(panel.rgb, interpolation="nearest", aspect="auto")
        if panel.scalar is not None:
            shown = ax.imshow(panel.scalar, cmap="magma", vmin=0, vmax=1, alpha=0.75, interpolation="nearest",
                              aspect="auto")  # fmt: skip
            bar = fig.add_axes(((x + w + 10) / width, 1 - (y + h) / height, 14 / width, h / height))
            fig.colorbar(shown, cax=bar, label=panel.label)
        ax.set_axis_off()
        fig.text((x + w / 2) / width, 1 - (y - 6) / height, panel.title, ha="center", va="bottom", fontsize=10)
    if legend:
        fig.legend(handles=legend, loc="lower center", ncol=per_row, fontsize=9, frameon=False,
                   bbox_to_anchor=(0.5, GAP / 2 / height))  # fmt: skip
    return fig


def save(fig, out_path: str | os.PathLike) -> Path:
    """Write the figure (a PNG for a ``.png`` path) under a temporary name, renamed into place when complete."""
    return write_figure(out_path, fig, dpi=DPI)


# ---------------------------------------------------------------------------------------- one artifact


@dataclass
class Scene:
    """One pool image of a run: its pixels, ground truth, class names and colours."""

    image_id: str
    image: np.ndarray
    label: np.ndarray
    names: tuple[str, ...]
    colors: np.ndarray

    @classmethod
    def of(cls, near: Path, image_id: str) -> Scene:
        """The image ``image_id`` of the run that ``near`` (an artifact or a round folder) belongs to."""
        ds, _ = open_pool(find_manifest(near))
        if image_id not in ds.ids:
            raise ShowError(f"{ds.root}: no pool image {image_id!r}: the pool has {len(ds.ids)} images")
        return cls(image_id, ds.image(image_id), ds.label(image_id), ds.classes, class_colors(ds))

    def check_shape(self, path, shape) -> None:
        if tuple(shape) != self.label.shape:
            raise ShowError(
                f"{path}: image {self.image_id}: map of shape {tuple(shape)}, but the image is "
                f"{self.label.shape[0]}x{self.label.shape[1]}"
            )


def read_labels(path: Path, schema: str, image_id: str) -> np.ndarray:
    """The (H, W) map ``/labels/<image_id>`` of a superpixels or regions artifact."""
    with Artifact(path, schema) as artifact:
        return artifact.get("labels", image_id)


def read_probs(paths: Sequence[Path], image_id: str, shape: tuple[int, int]) -> np.ndarray:
    """(C, H, W) probabilities of ``image_id`` at label resolution (:class:`adaspx.artifacts.Probabilities`)."""
    with Probabilities([str(p) for p in paths]) as probs:
        return at_label_resolution(probs.get(image_id, shape), shape, probs.stride)


def read_answer_map(path: Path, image_id: str) -> tuple[np.ndarray, np.ndarray]:
    """The latest-answer map of ``image_id`` and its rows (:class:`adaspx.artifacts.AnswerMaps`)."""
    with AnswerMaps(path) as maps:
        return maps.read(image_id)


def read_answer_table(h5_path: Path, num_classes: int):
    """``answers.csv`` beside ``answers.h5``, checked against it (:func:`adaspx.artifacts.read_answers`)."""
    csv_path = h5_path.with_suffix(".csv")
    if not csv_path.is_file():
        raise ShowError(f"{csv_path}: not found: the answers of {h5_path} are rows of it")
    return read_answers(csv_path, h5_path, num_classes)


def read_target_codes(path: Path, image_id: str) -> tuple[np.ndarray, np.ndarray | None]:
    """The training target of ``image_id`` as codes and class-set table (see :func:`target_codes`)."""
    with Artifact(path, SCHEMA_TARGETS) as targets:
        return target_codes(read_target(targets, image_id))


def artifact_panel(path: Path, schema: str, scene: Scene, view: str, scale: Scale) -> tuple[Panel, list | None]:
    """The panel of one artifact for the scene's image, and the legend's entries beside the classes (None: no
    legend, the panel has a colorbar)."""
    image = scale.sample(scene.image)
    if schema in (SCHEMA_SUPERPIXELS, SCHEMA_REGIONS):
        labels = read_labels(path, schema, scene.image_id)
        scene.check_shape(path, labels.shape)
        sampled = scale.sample(labels)
        title = f"{len(np.unique(labels))} {'superpixels' if schema == SCHEMA_SUPERPIXELS else 'regions'}"
        return Panel(title, with_boundaries(image, sampled)), [("region boundary", BOUNDARY, "")]
    if schema == SCHEMA_PROBS:
        probs = scale.sample(read_probs([path], scene.image_id, scene.label.shape).transpose(1, 2, 0))
        if view == "uncertainty":
            gray = np.repeat(image.mean(axis=2, keepdims=True).astype(np.uint8), 3, axis=2)
            ratio = margin_ratio(probs.transpose(2, 0, 1))
            return Panel("uncertainty", gray, ratio, "p(2) / p(1)"), None
        return Panel("argmax", blend(image, probs.argmax(axis=2), scene.colors)), []
    if schema == SCHEMA_ANSWERS:
        answer_map, rows = read_answer_map(path, scene.image_id)
        scene.check_shape(path, answer_map.shape)
        members = answer_members(read_answer_table(path, len(scene.names)))
        rgb = paint_answers(dimmed(image), scale.sample(answer_map), rows, members, scene.colors)
        return Panel(f"{len(rows)} answers", rgb), [("void answer", VOID, ""), ("class set", (255, 255, 255), "//")]
    codes, table = read_target_codes(path, scene.image_id)
    scene.check_shape(path, codes.shape)
    rgb = paint_target(dimmed(image), scale.sample(codes), table, scene.colors)
    labeled = int((codes != IGNORE_INDEX).sum())
    return Panel(f"targets: {labeled} px", rgb), [("class set", (255, 255, 255), "//")]


def render_artifact(path: str | os.PathLike, image_id: str, out_path, view: str = "argmax") -> Path:
    """Draw the artifact at ``path`` for ``image_id`` over the image; write the PNG ``out_path``."""
    path = Path(path)
    if view not in VIEWS:
        raise ShowError(f"view {view!r} unknown; expected one of {', '.join(VIEWS)}")
    schema = schema_of(path)
    check_image(path, artifact_ids(path, schema), image_id)
    scene = Scene.of(path, image_id)
    scale = Scale.of(scene.label.shape)
    panel, extra = artifact_panel(path, schema, scene, view, scale)
    panel = Panel(f"{path.name}, {image_id}: {panel.title}", panel.rgb, panel.scalar, panel.label)
    legend = [] if extra is None else legend_entries(scene.names, scene.colors, extra)
    return save(draw([panel], scale, 1, legend), out_path)


# ---------------------------------------------------------------------------------------- one round


@dataclass(frozen=True)
class Round:
    """A round folder ``results/<dataset>/<experiment>/seed<s>/round<r>/`` and the files of it that are drawn."""

    folder: Path
    number: int
    answers_h5: Path
    probs: tuple[Path, ...]

    @classmethod
    def of(cls, folder: str | os.PathLike) -> Round:
        folder = Path(folder)
        match = re.fullmatch(r"round(\d+)", folder.name)
        if not folder.is_dir() or match is None:
            raise ShowError(f"{folder}: not a round folder (results/<dataset>/<experiment>/seed<s>/round<r>)")
        for name in ("answers.h5", "answers.csv", "targets.h5"):
            if not (folder / name).is_file():
                raise ShowError(f"{folder / name}: not found: the round has not been answered")
        probs = tuple(sorted(folder.glob("probs_shard*.h5"), key=_shard_number))
        return cls(folder, int(match[1]), folder / "answers.h5", probs)

    @property
    def results(self) -> Path:
        return self.folder.parent.parent.parent

    def previous(self) -> Path | None:
        """The folder of the round before (round 0: the warm-up of the seed)."""
        if self.number == 0:
            return None
        if self.number == 1:
            return self.results / "warmup" / self.folder.parent.name / "round0"
        return self.folder.parent / f"round{self.number - 1}"

    def candidates(self) -> list[tuple[str, list[Path], str]]:
        """Region maps the round may have selected from, with their schema: the adaptive regions merged after the
        previous round, the base superpixels, the oracle regions."""
        previous = self.previous()
        found = []
        if previous is not None:
            found.append(("adaptive regions", _shards(previous, "regions"), SCHEMA_REGIONS))
        found.append(("base superpixels", _shards(self.results / "superpixels", "base"), SCHEMA_SUPERPIXELS))
        found.append(("oracle regions", _shards(self.results / "superpixels", "oracle"), SCHEMA_SUPERPIXELS))
        return [c for c in found if c[1]]


def _shard_number(path: Path) -> int:
    match = re.search(r"_shard(\d+)\.h5$", path.name)
    return int(match[1]) if match else -1


def _shards(folder: Path, name: str) -> list[Path]:
    return sorted(folder.glob(f"{name}_shard*.h5"), key=_shard_number)


def explains(regions: np.ndarray, answer_map: np.ndarray, rows: np.ndarray, answers, checked: np.ndarray) -> bool:
    """Whether every answer row of ``checked`` painted on this image covers exactly its region of ``regions``."""
    for index, row in enumerate(np.asarray(rows, dtype=np.int64).tolist(), start=1):
        if checked[row] and not np.array_equal(answer_map == index, regions == answers["region"].iat[row]):
            return False
    return True


def selection_regions(rnd: Round, answers, image_id: str) -> tuple[str, np.ndarray | None]:
    """The region map the round's selection names regions of, for ``image_id``: the first candidate map
    (:meth:`Round.candidates`) whose regions are exactly the pixels the round's answers cover, judged on the image
    shown or, if the round answered nothing there, on the first image it answered. ``(name, None)``: none found."""
    mine = ((answers["round"] == rnd.number) & (answers["asked"] == rnd.number)).to_numpy()  # corrections aside
    own = answers.loc[mine & (answers["image"] == image_id).to_numpy(), "image"]
    judge = own.iat[0] if len(own) else (answers.loc[mine, "image"].iat[0] if mine.any() else None)
    candidates = rnd.candidates()
    if judge is not None:
        answer_map, rows = read_answer_map(rnd.answers_h5, judge)
        for name, paths, schema in candidates:
            with MultiArtifact(paths, schema) as maps:
                if maps.has("labels", judge) and explains(maps.get("labels", judge), answer_map, rows, answers, mine):
                    return name, _map_of(paths, schema, image_id)
    base = [c for c in candidates if c[0] == "base superpixels"]
    if base:
        return "base superpixels (not the round's regions)", _map_of(base[0][1], base[0][2], image_id)
    return "regions not found", None


def _map_of(paths: Sequence[Path], schema: str, image_id: str) -> np.ndarray | None:
    with MultiArtifact(paths, schema) as maps:
        return maps.get("labels", image_id) if maps.has("labels", image_id) else None


def round_panels(rnd: Round, scene: Scene, scale: Scale) -> list[Panel]:
    """The six panels of one round for the scene's image."""
    answers = read_answer_table(rnd.answers_h5, len(scene.names))
    answer_map, rows = read_answer_map(rnd.answers_h5, scene.image_id)
    scene.check_shape(rnd.answers_h5, answer_map.shape)
    codes, table = read_target_codes(rnd.folder / "targets.h5", scene.image_id)
    members = answer_members(answers)
    image = scale.sample(scene.image)
    amap = scale.sample(answer_map)
    mine = ((answers["round"] == rnd.number) & (answers["asked"] == rnd.number)).to_numpy()  # corrections aside
    queried = int(mine[np.asarray(rows, dtype=np.int64)].sum()) if len(rows) else 0
    name, regions = selection_regions(rnd, answers, scene.image_id)
    targets = paint_target(dimmed(image), scale.sample(codes), table, scene.colors)
    targets[scale.sample(dropped_pixels(answer_map, rows, members, codes))] = DROPPED
    return [
        Panel(f"{scene.image_id}", image),
        Panel(name, with_boundaries(image, scale.sample(regions)) if regions is not None else _blank(image)),
        Panel(
            f"queried in round {rnd.number} ({queried} regions)",
            paint_answers(dimmed(image), amap, rows, members, scene.colors, keep=mine),
        ),
        Panel("targets; sieved-out pixels", targets),
        Panel("ground truth", paint_labels(image, scale.sample(scene.label), scene.colors)),
        _prediction(rnd, scene, scale),
    ]


def _blank(image: np.ndarray) -> np.ndarray:
    return np.broadcast_to(np.asarray(MISSING, dtype=np.uint8), image.shape).copy()


def _prediction(rnd: Round, scene: Scene, scale: Scale) -> Panel:
    if not rnd.probs:
        return Panel("no probabilities kept", _blank(scale.sample(scene.image)))
    probs = read_probs(rnd.probs, scene.image_id, scene.label.shape)
    return Panel(f"prediction, round {rnd.number} model", paint_labels(scale.sample(scene.image),
                                                                        scale.sample(probs.argmax(axis=0)),
                                                                        scene.colors))  # fmt: skip


ROUND_COLUMNS = 3
ROUND_EXTRA = (
    ("region boundary", BOUNDARY, ""),
    ("void", VOID, ""),
    ("class set", (255, 255, 255), "//"),
    ("sieved out", DROPPED, ""),
)


def render_round_panel(round_dir: str | os.PathLike, image_id: str, out_path) -> Path:
    """Draw round ``round_dir`` for ``image_id`` (:func:`round_panels`); write the PNG ``out_path``."""
    rnd = Round.of(round_dir)
    check_image(rnd.answers_h5, artifact_ids(rnd.answers_h5, SCHEMA_ANSWERS), image_id)
    scene = Scene.of(rnd.folder, image_id)
    scale = Scale.of(scene.label.shape)
    legend = legend_entries(scene.names, scene.colors, ROUND_EXTRA)
    return save(draw(round_panels(rnd, scene, scale), scale, ROUND_COLUMNS, legend), out_path)


def gallery_images(image_ids: Sequence[str], n: int, seed: int = 0) -> list[str]:
    """``n`` of the image ids (all when there are fewer), the same for the same ids in any order and ``seed``:
    drawn without replacement from the sorted ids, returned sorted."""
    ordered = sorted(set(image_ids))
    if n >= len(ordered):
        return ordered
    picked = np.random.default_rng(seed).choice(len(ordered), size=max(0, n), replace=False)
    return [ordered[k] for k in sorted(picked.tolist())]


def default_output(path: str | os.PathLike, image_id: str) -> Path:
    """``<artifact stem>_<image>.png`` in the current folder; for a round folder
    ``<experiment>_<seed folder>_<round folder>_<image>.png``."""
    path = Path(path)
    if path.is_dir():
        stem = "_".join(p.name for p in (path.resolve().parent.parent, path.resolve().parent, path.resolve()))
    else:
        stem = path.stem
    return Path.cwd() / f"{stem}_{image_id}.png"


def render(path: str | os.PathLike, image_id: str, out_path=None, view: str = "argmax") -> Path:
    """What ``adaspx show`` does: a round folder's panel, or one artifact's picture."""
    path = Path(path)
    out = Path(out_path) if out_path is not None else default_output(path, image_id)
    if path.is_dir():
        return render_round_panel(path, image_id, out)
    if not path.is_file():
        raise ShowError(f"{path}: no such file or folder")
    return render_artifact(path, image_id, out, view)
