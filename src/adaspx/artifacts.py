"""Artifact kinds: their schemas and the one reader of each kind that several stages share.

:class:`Probabilities` is the only reader of ``probs_shard<k>.h5`` (merge, acquire and annotate use it): it
renormalises the stored float16 vectors, refuses non-finite values, and checks the stored stride against the label
map, each error naming the file and the image. Stages work on the probabilities at their stored resolution and look
label pixel (y, x) up at ``(y // stride, x // stride)`` (:func:`at_label_resolution`, :func:`lookup`), so a
half-resolution file is never blown up to full resolution.

:class:`AnswerMaps` reads ``answers.h5`` and :func:`add_answer_map` writes it: per image, which answer labels
each pixel.

:class:`RegionTable` reads the per-region statistics ``merge_superpixels`` stores beside its region maps, so
``acquire`` does not compute them again.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from adaspx import IGNORE_INDEX, compiled
from adaspx.h5io import Artifact, ArtifactError, ArtifactWriter, MultiArtifact

_kernel = compiled("_probs")  # src/adaspx/_probs.pyx with the C of src/adaspx/_probs_kernels.h

SCHEMA_SUPERPIXELS = "adaspx.superpixels/1"
SCHEMA_PROBS = "adaspx.probs/1"
SCHEMA_REGIONS = "adaspx.regions/1"
SCHEMA_ANSWERS = "adaspx.answers/2"
SCHEMA_TARGETS = "adaspx.targets/1"


def stored_labels(labels: np.ndarray) -> np.ndarray:
    """A superpixel or region map as it is stored: uint16 when every id fits (any map of fewer than 65,536 ids
    from 0, SEEDS-8192 among them), which halves the bytes every stage reads and writes; unchanged otherwise.
    Merging keeps the dtype, so the adaptive regions are stored as their base superpixels are."""
    if labels.dtype != np.uint16 and labels.size and labels.min() >= 0 and labels.max() <= np.iinfo(np.uint16).max:
        return labels.astype(np.uint16)
    return labels


def stored_shape(shape: tuple[int, int], stride: int) -> tuple[int, int]:
    """Spatial shape of probabilities stored at ``stride`` for a label map of ``shape``."""
    return -(-shape[0] // stride), -(-shape[1] // stride)


def at_label_resolution(probs: np.ndarray, shape: tuple[int, int], stride: int) -> np.ndarray:
    """Probabilities (C, h, w) stored at ``stride`` mapped to label pixels: pixel (y, x) uses (y // s, x // s)."""
    if stride == 1:
        return probs
    ys = np.arange(shape[0]) // stride
    xs = np.arange(shape[1]) // stride
    return probs[:, ys[:, None], xs[None, :]]


def lookup(small: np.ndarray, flat_pixels: np.ndarray, width: int, stride: int) -> np.ndarray:
    """Values of a map stored at ``stride`` ((h, w), or (C, h, w) for all channels) at label pixels given by their
    flat indices in a label map of ``width`` columns: the stored position ``(y // s, x // s)`` of each."""
    ys, xs = np.divmod(np.asarray(flat_pixels, dtype=np.int64), width)
    if small.ndim == 3:
        return small[:, ys // stride, xs // stride]
    return small[ys // stride, xs // stride]


def _non_finite_vectors(values: np.ndarray) -> int:
    """How many vectors (along axis 0) of ``values`` hold a NaN or an infinity (their sum is not finite)."""
    return int((~np.isfinite(values.sum(axis=0))).sum())


class Probabilities:
    """The pool's per-pixel class probabilities of one round (all ``probs_shard<k>.h5`` of it), read per image.

    >>> with Probabilities(paths) as probs:
    ...     p = probs.get("img0", labels.shape)  # float32 (C, h, w) at probs.stride
    """

    def __init__(self, paths: Sequence[str]) -> None:
        self._files = MultiArtifact(paths, SCHEMA_PROBS)
        self.stride = int(self._shared("stride", 1, "stored at different strides"))
        self.temperature = float(self._shared("temperature", 1.0, "at different softmax temperatures"))
        """The softmax temperature of the model that wrote them: the stored vectors are softmax(logits / it)."""

    def _shared(self, attr: str, default, differ: str):
        """The root attribute ``attr`` every shard has (``default`` where absent); shards that disagree are refused."""
        values = {part.attrs.get(attr, default) for part in self._files.parts}
        if len(values) > 1:
            names = ", ".join(str(part.path) for part in self._files.parts)
            self._files.close()
            raise ArtifactError(f"{names}: shards {differ} {sorted(values)}")
        return values.pop() if values else default

    def path(self, image_id: str) -> str:
        """The file holding ``image_id`` (every shard's name when no shard holds it)."""
        return self._files.path_of("probs", image_id)

    def get(self, image_id: str, shape: tuple[int, int]) -> np.ndarray:
        """float32 (C, h, w) probabilities of ``image_id`` at the stored stride, each vector renormalised to sum 1
        after the float16 round trip (float32 ones are used as stored); ``shape`` is the image's label map shape,
        checked against the stride."""
        return self.decode(image_id, self.read(image_id), shape)

    def read(self, image_id: str, ring=None) -> np.ndarray:
        """The stored array of ``image_id`` as it is (float16); :meth:`decode` turns it into probabilities. Reading
        and decoding are apart so that threads can decode while the calling thread reads the next image (into
        ``ring``'s arrays, an :class:`adaspx.parallel.BufferRing`, if given)."""
        return self._files.get("probs", image_id, ring)  # names the files and the image when missing

    def decode(self, image_id: str, raw: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        """:meth:`get` of an array from :meth:`read` (thread-safe: no file access)."""
        self._check_shape(image_id, raw, shape)
        if raw.dtype == np.float16:  # one compiled pass, the bits of the NumPy path below
            out = np.empty(raw.shape, dtype=np.float32)
            self._refuse_non_finite(image_id, _kernel.normalise_half(raw.view(np.uint16), out))
            return out
        if raw.dtype == np.float32:  # stored as computed (infer.dtype: float32): used as it is
            self._refuse_non_finite(image_id, _non_finite_vectors(raw))
            return raw.copy()  # raw may be a reused read buffer
        return self._normalised(image_id, raw.astype(np.float32))

    def at(self, image_id: str, shape: tuple[int, int], flat_pixels: np.ndarray) -> np.ndarray:
        """float32 (C, n) probabilities of the label pixels given by their flat indices in the (H, W) label map:
        the values :meth:`get` gives there, decoding only those columns (the whole array is checked for NaN)."""
        return self.decode_at(image_id, self.read(image_id), shape, flat_pixels)

    def decode_at(self, image_id: str, raw: np.ndarray, shape: tuple[int, int], flat_pixels: np.ndarray) -> np.ndarray:
        """:meth:`at` of an array from :meth:`read` (thread-safe: no file access)."""
        self._check_shape(image_id, raw, shape)
        if raw.dtype == np.float16:  # the whole array is checked, as decode does
            self._refuse_non_finite(image_id, _kernel.non_finite_pixels(raw.view(np.uint16)))
        picked = lookup(raw, flat_pixels, shape[1], self.stride)
        if raw.dtype == np.float32:
            self._refuse_non_finite(image_id, _non_finite_vectors(raw))
            return picked
        return self._normalised(image_id, picked.astype(np.float32))

    def _check_shape(self, image_id: str, raw: np.ndarray, shape: tuple[int, int]) -> None:
        expected = stored_shape(shape, self.stride)
        if raw.ndim != 3 or raw.shape[1:] != expected:
            raise ArtifactError(
                f"{self.path(image_id)}: image {image_id}: probabilities of shape {raw.shape} do not match its "
                f"{shape[0]}x{shape[1]} label map at stride {self.stride} (expected (C, {expected[0]}, {expected[1]}))"
            )

    def _normalised(self, image_id: str, p: np.ndarray) -> np.ndarray:
        """Each vector (along axis 0) divided by its sum, in place; non-finite values are refused."""
        total = p.sum(axis=0, keepdims=True)
        self._refuse_non_finite(image_id, _non_finite_vectors(total))
        p /= total
        return p

    def _refuse_non_finite(self, image_id: str, bad: int) -> None:
        if bad:
            raise ArtifactError(
                f"{self.path(image_id)}: image {image_id}: probabilities of {bad} pixels are NaN or infinite"
            )

    def close(self) -> None:
        self._files.close()

    def __enter__(self) -> Probabilities:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


STATS_COLUMNS = ("region", "size", "uncertainty", "predicted", "classes")
"""Per-region columns of a regions artifact's ``/stats`` table; optional ones (``entropy``, ``bvsb_by_class``: see
:data:`adaspx.acquisition.OPTIONAL_FEATURES`) are added when an experiment needs them, and ``image`` is the row of
the image in ``/image_stats``."""


class RegionTableWriter:
    """Writes the ``/stats`` (one row per region) and ``/image_stats`` (one row per image: ``image``, where its
    rows lie in ``/stats`` as ``start`` and ``count``, and its per-image counts) tables of a regions artifact.

    Rows are buffered and appended in blocks of about ``block_rows`` regions: memory stays bounded by the block,
    whatever the number of images, and HDF5 is not resized for every image.
    """

    def __init__(self, writer, block_rows: int = 1 << 16) -> None:
        self.writer, self.block_rows = writer, block_rows
        self.images = self.rows = 0
        self._stats: list[dict[str, np.ndarray]] = []
        self._image_stats: list[dict[str, np.ndarray]] = []
        self._buffered = 0

    def add(self, image_id: str, columns: dict[str, np.ndarray], image_columns: dict[str, np.ndarray]) -> None:
        n = len(columns["region"])
        self._stats.append({"image": np.full(n, self.images, dtype=np.int32), **columns})
        row = {"image": np.asarray([image_id], dtype="S"), "start": np.asarray([self.rows]), "count": np.asarray([n])}
        self._image_stats.append(row | {k: np.asarray(v)[None] for k, v in image_columns.items()})
        self.images, self.rows, self._buffered = self.images + 1, self.rows + n, self._buffered + n
        if self._buffered >= self.block_rows:
            self.flush()

    def flush(self) -> None:
        for name, parts in (("stats", self._stats), ("image_stats", self._image_stats)):
            if parts:
                self.writer.append_rows(name, {k: np.concatenate([p[k] for p in parts]) for k in parts[0]})
            parts.clear()
        self._buffered = 0


class RegionTable:
    """The ``/stats`` and ``/image_stats`` tables of regions artifacts, read one image at a time.

    :meth:`get` returns None for an image, or a column such as ``entropy``, that the files do not hold, so that a
    caller can compute it instead (base and oracle superpixels carry no statistics).
    """

    def __init__(self, files: MultiArtifact) -> None:
        self._where: dict[str, tuple[object, int, int, int]] = {}
        for part in files.parts:
            if "image_stats" not in part._file:
                continue
            table = part.table("image_stats")
            for j, name in enumerate(table["image"].astype(str).tolist()):
                self._where[name] = (part, j, int(table["start"][j]), int(table["count"][j]))

    def get(self, image_id: str, columns: Sequence[str], image_columns: Sequence[str]) -> dict[str, np.ndarray] | None:
        """The per-region ``columns`` and the per-image ``image_columns`` (``class_pixels``, ``region_class_pixels``,
        ...: see :func:`adaspx.acquisition.region_features`) of ``image_id``; None when the image or a column is
        missing."""
        if image_id not in self._where:
            return None
        part, j, start, count = self._where[image_id]
        if any(c not in part._file["stats"] for c in columns):
            return None
        if any(c not in part._file["image_stats"] for c in image_columns):
            return None
        out = {c: part.rows("stats", c, start, start + count) for c in columns}
        out.update({c: part.rows("image_stats", c, j, j + 1)[0] for c in image_columns})
        return out


class AnswerMaps(Artifact):
    """The answer maps of one round (``answers.h5``), read per image.

    Per image, ``/labels/<id>`` is a map of small integers, uint16 (uint32 past 65,535 answers on one image): 0 where
    no answer covers the pixel, k where the pixel's latest answer is row ``rows[k - 1]`` of ``answers.csv``; and
    ``/rows/<id>`` (int64) lists those rows in the order they were painted. Half the bytes of a map of rows, and
    the rows an image refers to are at hand without decoding its map.

    ``/layers/<id>`` ((L, H, W), same values) keeps every answer's whole region: one layer per round that answered
    the image, in round order (a round's regions never overlap). The latest-answer map is their top view; the
    layers serve targets that need every answer, not only the latest (``targets.overlap: painter``). Files written
    before layers existed have none: :meth:`layers` then gives the latest-answer map as the only layer.
    """

    def __init__(self, path) -> None:
        super().__init__(path, SCHEMA_ANSWERS)

    def read(self, image_id: str, ring=None) -> tuple[np.ndarray, np.ndarray]:
        """``(map, rows)`` of ``image_id`` as stored (the map into ``ring``'s next array, if given)."""
        return self.get("labels", image_id, ring), self.get("rows", image_id)

    def layers(self, image_id: str, answer_map: np.ndarray) -> np.ndarray:
        """The (L, H, W) answer layers of ``image_id`` (``answer_map``: its latest-answer map, from :meth:`read`)."""
        if self.has("layers", image_id):
            return self.get("layers", image_id)
        return answer_map[None]


def add_answer_map(
    w: ArtifactWriter, image_id: str, answer_map: np.ndarray, rows: np.ndarray, layers: np.ndarray | None = None
) -> None:
    """Store one image's answer map and its layers (see :class:`AnswerMaps`)."""
    if answer_map.dtype not in (np.uint16, np.uint32) or int(answer_map.max(initial=0)) > len(rows):
        raise ValueError(f"image {image_id}: an answer map must be uint16/uint32 indexes into its {len(rows)} rows")
    w.add("labels", image_id, answer_map)
    w.add("rows", image_id, np.asarray(rows, dtype=np.int64))
    if layers is not None and len(layers):
        w.add("layers", image_id, layers.astype(answer_map.dtype, copy=False))


def answered_pixels(answer_map: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flat indexes of the answered pixels of a stored answer map, in raster order, and the answer row of each."""
    flat = answer_map.ravel()
    answered = np.flatnonzero(flat != 0)  # a bool scan: ~10x faster than NumPy's nonzero of uint16 on a sparse map
    return answered, np.asarray(rows, dtype=np.int64)[flat[answered].astype(np.int64) - 1]


def add_targets(
    w: ArtifactWriter, image_id: str, labels: np.ndarray, set_map: np.ndarray | None, table: np.ndarray | None
) -> None:
    """Store one image's training targets: ``/labels/<id>`` (uint8 class or 255) and, for an image with class-set
    answers, ``/sets/<id>`` (0 none, k: the pixel trains with set k - 1; uint16, uint32 past 65,535 sets) and
    ``/set_classes/<id>`` ((K, C) uint8 membership of each set). :func:`read_target` is the reader."""
    w.add("labels", image_id, labels)
    if table is None or not len(table):
        return
    if set_map is None or int(set_map.max(initial=0)) > len(table) or int(set_map.min(initial=0)) < 0:
        raise ValueError(f"image {image_id}: a set map must index its {len(table)} class sets")
    if ((set_map != 0) & (labels != IGNORE_INDEX)).any():
        raise ValueError(f"image {image_id}: a pixel cannot have both a label and a class set")
    w.add("sets", image_id, set_map.astype(np.uint16 if len(table) <= np.iinfo(np.uint16).max else np.uint32))
    w.add("set_classes", image_id, np.asarray(table, dtype=np.uint8))


def read_target(targets: Artifact, image_id: str):
    """The training target of ``image_id`` in an open ``targets.h5``: its (H, W) uint8 labels, or a
    :class:`adaspx.annotation.SetTarget` when it has class-set answers."""
    from adaspx.annotation import SET_CODE, SetTarget

    labels = targets.get("labels", image_id)
    if not targets.has("sets", image_id):
        return labels
    sets = targets.get("sets", image_id)
    table = targets.get("set_classes", image_id).astype(bool)
    codes = labels.astype(np.uint16 if len(table) + SET_CODE <= np.iinfo(np.uint16).max else np.uint32)
    inside = sets != 0
    codes[inside] = sets[inside] + (SET_CODE - 1)
    return SetTarget(codes, table)


class TargetReader:
    """``read_target`` of a ``targets.h5`` as a function of the image id that opens the file on each call: safe in
    forked loader workers (see :class:`adaspx.training.LazyArrays`)."""

    def __init__(self, path) -> None:
        self.path = Path(path)

    def __call__(self, image_id: str):
        with Artifact(self.path, SCHEMA_TARGETS) as targets:
            return read_target(targets, image_id)


ANSWERS_DIGEST = "answers_csv_sha256"
"""Root attribute of ``answers.h5``: the SHA-256 of the ``answers.csv`` written with it, whose rows its maps name."""


def answers_digest(csv_text: str) -> str:
    """The digest :data:`ANSWERS_DIGEST` records for an ``answers.csv`` of this content."""
    return hashlib.sha256(csv_text.encode("utf-8")).hexdigest()


def read_answers(csv_path, h5_path, num_classes: int):
    """``answers.csv`` as a DataFrame, after checking that it is the file written with ``answers.h5`` (whose maps
    point at its rows by number) and that every label is a class of the dataset or 255 (void).

    A row removed, reordered or changed by hand would silently give pixels another answer's label; this stops with
    one line naming the file instead."""
    import pandas as pd

    from adaspx.annotation import parse_classes

    csv_path = Path(csv_path)
    data = csv_path.read_bytes()
    with Artifact(h5_path, SCHEMA_ANSWERS) as h5:
        recorded = h5.attrs.get(ANSWERS_DIGEST)
    if recorded != hashlib.sha256(data).hexdigest():
        raise ArtifactError(
            f"{csv_path}: changed since it was written with {h5_path} (answers are append-only; restore the file, "
            "or delete the round's folder to answer that round again)"
        )
    answers = pd.read_csv(io.BytesIO(data), dtype={"image": str, "classes": str, "annotator": str, "time": str})
    labels = answers["label"].to_numpy()
    bad = np.flatnonzero(~(((labels >= 0) & (labels < num_classes)) | (labels == IGNORE_INDEX)))
    if bad.size:
        raise ArtifactError(
            f"{csv_path}: line {bad[0] + 2}: label {labels[bad[0]]} is neither a class of the dataset "
            f"(0..{num_classes - 1}) nor {IGNORE_INDEX} (void)"
        )
    if "classes" not in answers:  # written before answers had class sets: each answer is its label
        answers["classes"] = [str(v) for v in labels.tolist()]
    answers["classes"] = answers["classes"].fillna("")  # the empty set
    if "annotator" not in answers:  # written before people answered: the simulator did
        answers["annotator"] = "simulated"
    answers["annotator"] = answers["annotator"].fillna("").astype(str)
    answers["time"] = answers["time"].fillna("").astype(str) if "time" in answers else ""
    if "asked" not in answers:  # written before corrections: every answer is of its own round's query
        answers["asked"] = answers["round"]
    for line, text in enumerate(answers["classes"].tolist(), start=2):
        try:
            values = parse_classes(text)
        except ValueError as err:
            raise ArtifactError(f"{csv_path}: line {line}: {err}") from None
        if (values[values != IGNORE_INDEX] >= num_classes).any():
            raise ArtifactError(
                f"{csv_path}: line {line}: classes {text!r} name a class outside the dataset's 0..{num_classes - 1}"
            )
    return answers
