"""What several stages share: the dataset of a manifest, the pool's ids and shards, the check that region
maps cover the pool, progress bars."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any

from adaspx import datasets
from adaspx.h5io import ArtifactError, MultiArtifact


def _dataset(manifest: Mapping[str, Any], which: str) -> datasets.Dataset:
    split = manifest[f"{which}_split"]
    return datasets.open_dataset(
        manifest["kind"], manifest["root"], split, list_file=manifest.get("list_files", {}).get(split)
    )


def pool_ids(manifest: Mapping[str, Any], shards: int = 1, shard: int = 0) -> list[str]:
    return datasets.shard_ids(manifest["splits"][manifest["pool_split"]]["ids"], shards, shard)


def _check_covers_pool(files: MultiArtifact, ids: Sequence[str]) -> None:
    """Region maps must exist for every pool image: files made for another pool stop here, naming one image."""
    missing = [image_id for image_id in ids if not files.has("labels", image_id)]
    if missing:
        names = ", ".join(str(p.path) for p in files.parts)
        raise ArtifactError(
            f"{names}: no region map for pool image {missing[0]} ({len(missing)} of {len(ids)} pool images missing: "
            "made for another pool?)"
        )


def _progress(items, desc: str):
    from tqdm import tqdm

    return tqdm(items, desc=desc, unit="img", file=sys.stderr, mininterval=2.0, disable=None)
