"""Artifact kinds: their schemas and the one reader of each kind that several stages share.

:class:`Probabilities` is the only reader of ``probs_shard<k>.h5`` (merge, acquire and annotate use it): it
renormalises the stored float16 vectors, refuses non-finite values, and checks the stored stride against the label
map, each error naming the file and the image. Stages work on the probabilities at their stored resolution and look
label pixel (y, x) up at ``(y // stride, x // stride)`` (:func:`at_label_resolution`, :func:`lookup`), so a
half-resolution file is never blown up to full resolution.

:class:`RegionTable` reads the per-region statistics ``merge_superpixels`` stores beside its region maps, so
``acquire`` does not compute them again.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from adaspx.h5io import ArtifactError, MultiArtifact

SCHEMA_SUPERPIXELS = "adaspx.superpixels/1"
SCHEMA_PROBS = "adaspx.probs/1"
SCHEMA_REGIONS = "adaspx.regions/1"
SCHEMA_ANSWERS = "adaspx.answers/1"
SCHEMA_TARGETS = "adaspx.targets/1"


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


class Probabilities:
    """The pool's per-pixel class probabilities of one round (all ``probs_shard<k>.h5`` of it), read per image.

    >>> with Probabilities(paths) as probs:
    ...     p = probs.get("img0", labels.shape)  # float32 (C, h, w) at probs.stride
    """

    def __init__(self, paths: Sequence[str]) -> None:
        self._files = MultiArtifact(paths, SCHEMA_PROBS)
        strides = {int(part.attrs.get("stride", 1)) for part in self._files.parts}
        if len(strides) > 1:
            names = ", ".join(str(part.path) for part in self._files.parts)
            self._files.close()
            raise ArtifactError(f"{names}: shards stored at different strides {sorted(strides)}")
        self.stride = strides.pop() if strides else 1

    def path(self, image_id: str) -> str:
        """The file holding ``image_id`` (every shard's name when no shard holds it)."""
        try:
            return str(self._files._where[("probs", image_id)].path)
        except KeyError:
            return ", ".join(str(part.path) for part in self._files.parts)

    def get(self, image_id: str, shape: tuple[int, int]) -> np.ndarray:
        """float32 (C, h, w) probabilities of ``image_id`` at the stored stride, each vector renormalised to sum 1
        after the float16 round trip; ``shape`` is the image's label map shape, checked against the stride."""
        raw = self._files.get("probs", image_id)  # names the files and the image when missing
        expected = stored_shape(shape, self.stride)
        if raw.ndim != 3 or raw.shape[1:] != expected:
            raise ArtifactError(
                f"{self.path(image_id)}: image {image_id}: probabilities of shape {raw.shape} do not match its "
                f"{shape[0]}x{shape[1]} label map at stride {self.stride} (expected (C, {expected[0]}, {expected[1]}))"
            )
        p = raw.astype(np.float32)
        total = p.sum(axis=0, keepdims=True)
        if not np.isfinite(total).all():
            bad = int((~np.isfinite(total)).sum())
            raise ArtifactError(
                f"{self.path(image_id)}: image {image_id}: probabilities of {bad} pixels are NaN or infinite"
            )
        p /= total
        return p

    def close(self) -> None:
        self._files.close()

    def __enter__(self) -> Probabilities:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


STATS_COLUMNS = ("region", "size", "uncertainty", "predicted", "classes")
"""Per-region columns of a regions artifact's ``/stats`` table; ``entropy`` is added when an experiment needs it,
and ``image`` is the row of the image in ``/image_stats``."""


def write_region_table(writer, image_id: str, columns: dict[str, np.ndarray], image_columns: dict[str, np.ndarray]):
    """Append one image's per-region statistics to ``/stats`` and its per-image counts to ``/image_stats``
    (``image``, ``start`` and ``count``: where its rows lie in ``/stats``)."""
    index, start = writer.table_rows("image_stats"), writer.table_rows("stats")
    n = len(columns["region"])
    writer.append_rows("stats", {"image": np.full(n, index, dtype=np.int32), **columns})
    row = {"image": np.asarray([image_id], dtype="S"), "start": np.asarray([start]), "count": np.asarray([n])}
    writer.append_rows("image_stats", row | {k: np.asarray(v)[None] for k, v in image_columns.items()})


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

    def get(self, image_id: str, columns: Sequence[str]) -> dict[str, np.ndarray] | None:
        """The requested per-region columns of ``image_id``, plus ``class_pixels`` and ``class_pixels_half``
        (per-class counts of the image's per-pixel argmax at label resolution, and on every second row and
        column); None when the image or a column is missing."""
        if image_id not in self._where:
            return None
        part, j, start, count = self._where[image_id]
        if any(c not in part._file["stats"] for c in columns):
            return None
        out = {c: part.rows("stats", c, start, start + count) for c in columns}
        out["class_pixels"] = part.rows("image_stats", "class_pixels", j, j + 1)[0]
        out["class_pixels_half"] = part.rows("image_stats", "class_pixels_half", j, j + 1)[0]
        return out
