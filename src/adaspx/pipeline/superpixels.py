"""Stages ``base_superpixels`` and ``oracle_superpixels``: the regions every round starts from."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from adaspx import datasets
from adaspx.artifacts import SCHEMA_SUPERPIXELS, stored_labels
from adaspx.h5io import ArtifactWriter
from adaspx.pipeline.common import _dataset, _progress, pool_ids


def base_superpixels(
    manifest_path, out, *, method: str, params: Mapping[str, Any], shards: int, shard: int, config=None
) -> None:
    from adaspx.superpixels import base_superpixels as compute

    manifest = datasets.load_manifest(manifest_path)
    ds = _dataset(manifest, "pool")
    ids = pool_ids(manifest, shards, shard)
    with ArtifactWriter(out, SCHEMA_SUPERPIXELS, config=config, method=method, shard=shard, shards=shards) as w:
        for image_id in _progress(ids, "base superpixels"):
            labels = stored_labels(compute(ds.image(image_id), method, params))
            w.add("labels", image_id, labels, regions=int(len(np.unique(labels))))


def oracle_superpixels(manifest_path, out, *, shards: int, shard: int, method: str = "exact", config=None) -> None:
    """Oracle superpixels of one pool shard: ``method`` ``exact`` or ``official`` (see
    :func:`adaspx.superpixels.oracle_superpixels`). ``official`` fills the dataset's own label values, as the
    reference code does (Cityscapes: the 34 ``labelIds``, :meth:`adaspx.datasets.Dataset.source_label`)."""
    from adaspx.superpixels import ORACLE_METHODS
    from adaspx.superpixels import oracle_superpixels as compute

    if method not in ORACLE_METHODS:
        raise ValueError(f"superpixels.oracle {method!r} unknown; expected one of {', '.join(ORACLE_METHODS)}")
    manifest = datasets.load_manifest(manifest_path)
    ds = _dataset(manifest, "pool")
    attrs = {"method": "oracle", "oracle": method, "shard": shard, "shards": shards}
    with ArtifactWriter(out, SCHEMA_SUPERPIXELS, config=config, **attrs) as w:
        for image_id in _progress(pool_ids(manifest, shards, shard), "oracle superpixels"):
            gt = ds.source_label(image_id) if method == "official" else ds.label(image_id)
            labels = stored_labels(compute(gt, method))
            w.add("labels", image_id, labels, regions=int(len(np.unique(labels))))
