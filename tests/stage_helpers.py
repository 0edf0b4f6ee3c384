"""A small synthetic pool on disk for stage-level tests: dataset, manifest, SLIC superpixels, probabilities."""

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

H, W = 32, 40


def small_pool(
    d: Path, *, seed: int, n_segments: int, probs: Callable, height: int = H, width: int = W
) -> tuple[dict, list[str]]:
    """Write a 3-image pool (1 val image) of ``height`` x ``width`` synthetic scenes (H x W by default) under
    ``d``: ``data/``, ``manifest.json``, ``base.h5`` and ``probs.h5`` holding ``probs(gt, num_classes)`` (a
    (C, height, width) array) per image as float16. Returns the manifest and the pool's image ids."""
    from adaspx import pipeline, synthetic
    from adaspx.datasets import read_label
    from adaspx.h5io import ArtifactWriter

    synthetic.write_dataset(d / "data", train_size=3, val_size=1, height=height, width=width, seed=seed)
    pipeline.prepare_dataset("folder", d / "data", {"pool": "train", "val": "val"}, d / "manifest.json")
    pipeline.base_superpixels(d / "manifest.json", d / "base.h5", method="slic",
                              params={"n_segments": n_segments}, shards=1, shard=0)  # fmt: skip
    manifest = json.loads((d / "manifest.json").read_text())
    ids = pipeline.pool_ids(manifest)
    with ArtifactWriter(d / "probs.h5", pipeline.SCHEMA_PROBS, stride=1) as w:
        for image_id in ids:
            gt = read_label(d / "data" / "labels" / f"{image_id}.png").astype(np.int64)
            w.add("probs", image_id, np.asarray(probs(gt, manifest["num_classes"])).astype(np.float16))
    return manifest, ids
