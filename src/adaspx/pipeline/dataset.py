"""Stages ``synthesize_dataset`` and ``prepare_dataset``: the dataset and its manifest."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from adaspx import datasets
from adaspx.h5io import write_json

log = logging.getLogger("adaspx")


def synthesize_dataset(root: str | Path, params: Mapping[str, Any]) -> None:
    from adaspx.synthetic import write_dataset

    summary = write_dataset(root, **params)
    log.info("synthetic dataset written to %s: %s", root, summary)


def prepare_dataset(
    kind: str,
    root: str | Path,
    splits: Mapping[str, str],
    manifest_out: str | Path,
    list_files: Mapping[str, str | None] | None = None,
) -> None:
    """Check every image and label of the pool and val splits, and write the manifest later rules read.

    ``list_files`` (``pool``/``val`` -> path or None) restrict a Cityscapes split to the listed images.
    """
    list_files = list_files or {}
    by_split = {splits[k]: list_files.get(k) for k in ("pool", "val")}
    manifest = datasets.build_manifest(kind, root, splits=[splits["pool"], splits["val"]], list_files=by_split)
    manifest["pool_split"], manifest["val_split"] = splits["pool"], splits["val"]
    write_json(manifest_out, manifest)
