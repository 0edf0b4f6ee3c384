"""The one helper for HDF5 artifacts.

Every artifact has root attributes ``schema``, ``adaspx_version``, ``created`` and ``config`` (JSON of the
config slice that produced it), plus ``round``/``experiment``/``seed`` where meaningful. Per-image arrays live
in one dataset per image under a group (``/labels/<image_id>``), chunked per image and compressed, so
``h5ls -r`` and ``adaspx inspect`` show them directly. Files are written under a temporary name in the same
folder and renamed into place only when complete: a crash never leaves a half-written artifact.
"""

from __future__ import annotations

import errno
import glob
import json
import os
import shutil
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import h5py
import hdf5plugin  # registers the Blosc filter with HDF5: every reader of an artifact imports this module
import numpy as np

from adaspx import __version__

# One filter, chosen by measurement at 1024x2048 (benchmarks/bench_storage.py, benchmarks/README.md "Storage"):
# Blosc LZ4 with byte shuffle. gzip costs 8-30x a pass over the data to decompress, Blosc LZ4 a fraction of it;
# Zstd keeps integer maps about half as large (0.3 against 0.55 MB per 1024x2048 map, next to 5-15 MB of
# probabilities) but takes 1.5x as long to write and read. Probabilities are chunked per class plane (about half the
# read time of one large chunk). Other HDF5 tools read the files with HDF5_PLUGIN_PATH set to hdf5plugin's plugin
# folder (README, "Looking at the artifacts").
COMPRESSION = dict(hdf5plugin.Blosc(cname="lz4", clevel=5, shuffle=hdf5plugin.Blosc.SHUFFLE))


def storage(array: np.ndarray) -> dict[str, Any]:
    """Chunks and filter of one per-image array: one chunk per image, or per plane of a 3-D float array."""
    if array.size == 0:
        return {}
    if array.dtype.kind == "f":
        chunks = (1, *array.shape[1:]) if array.ndim == 3 else array.shape
        return {"chunks": chunks, **COMPRESSION}
    return {"chunks": array.shape, **COMPRESSION}


TABLE_CHUNK_BYTES = 1 << 18
"""Appendable tables are chunked by about this many bytes per column."""


def temporary_name(path: Path) -> Path:
    """``.<name>.<pid>.tmp`` beside ``path``, where its content is written before it is renamed into place.

    Leftovers of writers of the same file that were killed (``.<name>.<other pid>.tmp``) are removed first: one
    job writes one output at a time, so they belong to no running writer."""
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        stale.unlink(missing_ok=True)
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def read_whole(ds: h5py.Dataset, ring=None) -> np.ndarray:
    """A whole numeric dataset into a new array, or into the next array of ``ring`` (an
    :class:`adaspx.parallel.BufferRing`). ``read_direct``: ``ds[()]`` on a freshly opened dataset takes ~10 ms
    longer per 1024x2048 int32 map (measured with h5py 3, HDF5 1.14)."""
    if ds.ndim == 0 or ds.size == 0 or ds.dtype.kind not in "biuf":
        return ds[()]
    out = ring.array(ds.shape, ds.dtype) if ring is not None else np.empty(ds.shape, dtype=ds.dtype)
    ds.read_direct(out)
    return out


SPACE_MARGIN = 1 << 20
"""Bytes kept free beyond an array's own size when writing it (HDF5 metadata, the file's final flush)."""


class ArtifactError(ValueError):
    """An artifact is missing, of the wrong schema, or lacks an expected dataset."""


class ArtifactWriter:
    """Write an artifact atomically; use as a context manager.

    >>> with ArtifactWriter("out.h5", "adaspx.superpixels/1", config={"method": "slic"}) as w:
    ...     w.add("labels", "img0", labels)
    """

    def __init__(
        self,
        path: str | os.PathLike,
        schema: str,
        *,
        config: Mapping[str, Any] | None = None,
        **attrs: Any,
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = temporary_name(self.path)
        self._file = h5py.File(self._tmp, "w")
        root = self._file.attrs
        root["schema"] = schema
        root["adaspx_version"] = __version__
        root["created"] = datetime.now(UTC).isoformat(timespec="seconds")
        root["config"] = json.dumps(config or {}, sort_keys=True, default=str)
        for key, value in attrs.items():
            if value is not None:
                root[key] = value

    def add(self, group: str, name: str, array: np.ndarray, **attrs: Any) -> h5py.Dataset:
        """Store one per-image array as ``/<group>/<name>``, one chunk per image, compressed."""
        array = np.ascontiguousarray(array)
        self._check_space(f"/{group}/{name}", array.nbytes)
        ds = self._file.require_group(group).create_dataset(
            name, shape=array.shape, dtype=array.dtype, **storage(array)
        )
        if array.size:
            ds.write_direct(array)  # a few ms faster per 1024x2048 image than create_dataset(data=...)
        for key, value in attrs.items():
            ds.attrs[key] = value
        return ds

    def _check_space(self, what: str, nbytes: int) -> None:
        """Stop before HDF5 meets a full disk (it may crash instead of raising): the array compressed takes at
        most its own size, plus a margin for the file's metadata."""
        free = shutil.disk_usage(self._tmp.parent).free
        if free < nbytes + SPACE_MARGIN:
            raise OSError(
                errno.ENOSPC,
                f"No space left on device: {self.path} ({what} needs up to {nbytes + SPACE_MARGIN} bytes, {free} free)",
            )

    def append_rows(self, name: str, columns: Mapping[str, np.ndarray]) -> None:
        """Append rows to a table of resizable column datasets (``/<name>/<column>``), creating it on first use:
        a table written image by image is never held whole in memory. Columns may be 2-D (one row per entry)."""
        lengths = {len(v) for v in columns.values()}
        if len(lengths) > 1:
            raise ValueError(f"table {name!r}: columns of different lengths {sorted(lengths)}")
        group = self._file.require_group(name)
        for col, values in columns.items():
            values = np.ascontiguousarray(values)
            if col not in group:
                rows = max(1, TABLE_CHUNK_BYTES // max(1, values[:1].nbytes or values.dtype.itemsize))
                group.create_dataset(
                    col,
                    shape=(0, *values.shape[1:]),
                    maxshape=(None, *values.shape[1:]),
                    dtype=values.dtype,
                    chunks=(rows, *values.shape[1:]),
                    **COMPRESSION,
                )
            ds = group[col]
            self._check_space(f"/{name}/{col}", values.nbytes)
            if ds.shape[1:] != values.shape[1:] or ds.dtype.kind != values.dtype.kind:
                raise ValueError(f"table {name!r}: column {col!r} gets {values.dtype} {values.shape[1:]} rows")
            start = ds.shape[0]
            ds.resize(start + len(values), axis=0)
            ds[start:] = values

    @property
    def attrs(self) -> h5py.AttributeManager:
        return self._file.attrs

    def close(self) -> None:
        try:
            self._file.close()
        except BaseException:  # e.g. the disk filled up during the final flush: nothing half-written stays
            self._tmp.unlink(missing_ok=True)
            raise
        os.replace(self._tmp, self.path)

    def abort(self) -> None:
        self._file.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> ArtifactWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class Artifact:
    """Read access to an artifact; use as a context manager."""

    def __init__(self, path: str | os.PathLike, schema: str | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ArtifactError(f"{self.path}: no such artifact")
        try:
            self._file = h5py.File(self.path, "r")
        except OSError as err:
            raise ArtifactError(f"{self.path}: not a readable HDF5 file ({err})") from err
        found = self._file.attrs.get("schema")
        if schema is not None and found != schema:
            self._file.close()
            raise ArtifactError(f"{self.path}: schema {found!r}, expected {schema!r}")

    @property
    def attrs(self) -> dict[str, Any]:
        return dict(self._file.attrs)

    @property
    def config(self) -> dict[str, Any]:
        return json.loads(self._file.attrs.get("config", "{}"))

    def names(self, group: str) -> list[str]:
        if group not in self._file:
            return []
        return list(self._file[group].keys())

    def has(self, group: str, name: str) -> bool:
        """Whether ``/<group>/<name>`` exists."""
        return group in self._file and name in self._file[group]

    def get(self, group: str, name: str, ring=None) -> np.ndarray:
        """``/<group>/<name>`` whole (into ``ring``'s next array, see :func:`read_whole`)."""
        try:
            ds = self._file[group][name]
        except KeyError:
            raise ArtifactError(f"{self.path}: no dataset /{group}/{name}") from None
        return read_whole(ds, ring)

    def dataset(self, group: str, name: str) -> h5py.Dataset:
        return self._file[group][name]

    def table(self, name: str) -> dict[str, np.ndarray]:
        if name not in self._file:
            raise ArtifactError(f"{self.path}: no table /{name}")
        return {col: ds[()] for col, ds in self._file[name].items()}

    def rows(self, name: str, column: str, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` of one column of a table."""
        try:
            return self._file[name][column][start:stop]
        except KeyError:
            raise ArtifactError(f"{self.path}: no table column /{name}/{column}") from None

    def items(self, group: str) -> Iterator[tuple[str, np.ndarray]]:
        for name in self.names(group):
            yield name, self.get(group, name)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> Artifact:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class MultiArtifact:
    """Several shard files of one artifact read as one (``get`` finds the shard holding an image)."""

    def __init__(self, paths, schema: str | None = None) -> None:
        self.parts = [Artifact(p, schema) for p in paths]
        self._where = {}
        for part in self.parts:
            for group in part._file:
                for name in part.names(group):
                    self._where[(group, name)] = part

    def names(self, group: str) -> list[str]:
        return [n for part in self.parts for n in part.names(group)]

    def has(self, group: str, name: str) -> bool:
        return (group, name) in self._where

    def path_of(self, group: str, name: str) -> str:
        """The file holding ``/<group>/<name>``, or every part's path when none does (for messages)."""
        part = self._where.get((group, name))
        return str(part.path) if part is not None else ", ".join(str(p.path) for p in self.parts)

    def get(self, group: str, name: str, ring=None) -> np.ndarray:
        try:
            part = self._where[(group, name)]
        except KeyError:
            paths = ", ".join(str(p.path) for p in self.parts)
            raise ArtifactError(f"{paths}: no dataset /{group}/{name}") from None
        return part.get(group, name, ring)

    def dataset(self, group: str, name: str) -> h5py.Dataset:
        return self._where[(group, name)].dataset(group, name)

    def close(self) -> None:
        for part in self.parts:
            part.close()

    def __enter__(self) -> MultiArtifact:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write a text file (CSV, JSON) under a temporary name and rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        if err.errno == errno.ENOSPC:  # Python's message names no file
            raise OSError(errno.ENOSPC, f"No space left on device: {path}") from None
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def csv_text(frame) -> str:
    """A pandas DataFrame as the CSV text adaspx writes (header, no index, ``\n`` line ends)."""
    return frame.to_csv(index=False, lineterminator="\n")


def write_csv(path: str | os.PathLike, frame) -> None:
    """Write a pandas DataFrame as CSV (:func:`csv_text`) atomically."""
    atomic_write_text(path, csv_text(frame))


def write_figure(path: str | os.PathLike, fig, **savefig: Any) -> Path:
    """Save a matplotlib figure under a temporary name and rename it into place; the format follows the suffix
    (PNG without one). ``savefig``: further arguments of ``Figure.savefig`` (``dpi``). The caller closes it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    try:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", **savefig)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def describe(path: str | os.PathLike, limit: int | None = 10) -> str:
    """Human-readable tree of an HDF5 artifact: root attributes, groups, datasets (shape, dtype, compression).

    At most ``limit`` datasets are listed per group (None lists all); the rest are counted.
    """
    if not Path(path).is_file():
        raise FileNotFoundError(path)
    lines: list[str] = []
    with h5py.File(path, "r") as f:
        lines.append(f"{path}")
        for key in sorted(f.attrs):
            value = f.attrs[key]
            if key == "config":
                try:
                    value = json.dumps(json.loads(value), sort_keys=True)
                except (TypeError, ValueError):
                    pass
            lines.append(f"  @{key} = {value}")

        def walk(group: h5py.Group, depth: int) -> None:
            indent = "  " * depth
            names = list(group.keys())
            shown = names if limit is None else names[:limit]
            for name in shown:
                obj = group[name]
                if isinstance(obj, h5py.Group):
                    lines.append(f"{indent}{name}/  ({len(obj)} members)")
                    for key in sorted(obj.attrs):
                        lines.append(f"{indent}  @{key} = {obj.attrs[key]}")
                    walk(obj, depth + 1)
                else:
                    comp = _filters(obj)
                    chunks = "x".join(map(str, obj.chunks)) if obj.chunks else "contiguous"
                    lines.append(
                        f"{indent}{name}  shape={obj.shape} dtype={obj.dtype} chunks={chunks} compression={comp}"
                    )
                    for key in sorted(obj.attrs):
                        lines.append(f"{indent}  @{key} = {obj.attrs[key]}")
            if len(shown) < len(names):
                lines.append(f"{indent}... {len(names) - len(shown)} more")

        walk(f, 1)
    return "\n".join(lines)


def _filters(ds: h5py.Dataset) -> str:
    """The dataset's filter pipeline in words, e.g. ``blosc(zstd 1, shuffle)`` or ``gzip(1)+shuffle``."""
    plist = ds.id.get_create_plist()
    names = []
    for i in range(plist.get_nfilters()):
        code, _, values, _ = plist.get_filter(i)
        if code == 32001 and len(values) >= 7:  # Blosc: (..., clevel, shuffle, compressor)
            cname = {0: "blosclz", 1: "lz4", 2: "lz4hc", 4: "zlib", 5: "zstd"}.get(values[6], str(values[6]))
            names.append(f"blosc({cname} {values[4]}, {('noshuffle', 'shuffle', 'bitshuffle')[values[5]]})")
        elif code == h5py.h5z.FILTER_DEFLATE:
            names.append(f"gzip({values[0]})" if values else "gzip")
        elif code == h5py.h5z.FILTER_SHUFFLE:
            names.append("shuffle")
        else:
            names.append(f"filter {code}")
    return "+".join(names) or "none"
