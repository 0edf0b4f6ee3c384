"""Peak memory of training on a pool held in memory versus read lazily (adaspx.training.LazyArrays).

Writes ``--images`` synthetic street scenes of ``--height`` x ``--width`` as PNG files with sparse targets in an
HDF5 artifact (as the workflow does), then trains the small model for ``--iterations`` iterations of batch 8 on
256x256 crops twice, each in a fresh process so that its peak RSS (ru_maxrss) is its own: once with every image
and target read into lists first (how the workflow trained before LazyArrays), once with lazy sequences read by
``--workers`` DataLoader worker processes (how the workflow trains now: images through ``LazyArrays``, targets through
``H5Arrays``). Prints peak RSS of the training process (a worker holds one
batch at a time besides its imports), the baseline RSS before training and the wall time of each, and their
ratios.

    .venv/bin/python benchmarks/bench_train_memory.py [--images 300] [--height 1024] [--width 1024] [--workers 1]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def write_pool(root: Path, n: int, height: int, width: int) -> None:
    from PIL import Image

    from adaspx import IGNORE_INDEX
    from adaspx.h5io import ArtifactWriter
    from adaspx.synthetic import generate_scene

    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    with ArtifactWriter(root / "targets.h5", "adaspx.targets/1") as w:
        for i in range(n):
            image, label = generate_scene(rng, height, width)
            Image.fromarray(image).save(root / "images" / f"{i:04d}.png", compress_level=1)
            target = np.full_like(label, IGNORE_INDEX)
            keep = rng.random(label.shape) < 0.05
            target[keep] = label[keep]
            w.add("labels", f"{i:04d}", target)


def one(root: Path, lazy: bool, iterations: int, workers: int) -> dict:
    from PIL import Image

    from adaspx.h5io import Artifact
    from adaspx.training import H5Arrays, LazyArrays, TrainConfig, train_model

    def read_image(key: str) -> np.ndarray:
        return np.asarray(Image.open(root / "images" / f"{key}.png").convert("RGB"))

    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    config = TrainConfig(iterations=iterations, batch_size=8, crop_size=256, model="small")
    t0 = time.perf_counter()
    with Artifact(root / "targets.h5") as t:
        keys = sorted(t.names("labels"))
        if not lazy:
            images, targets = [read_image(k) for k in keys], [t.get("labels", k) for k in keys]
    if lazy:
        images, targets = LazyArrays(keys, read_image), H5Arrays(root / "targets.h5", "labels", keys)
    n = workers if lazy else 0
    train_model(images, targets, num_classes=8, config=config, seed=0, threads=1, workers=n, progress=False)
    return {
        "seconds": time.perf_counter() - t0,
        "peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "base_gb": base / 2**20,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=300)
    ap.add_argument("--height", type=int, default=1024)
    ap.add_argument("--width", type=int, default=1024)
    ap.add_argument("--iterations", type=int, default=50)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--run", choices=["lists", "lazy"])
    ap.add_argument("--root")
    a = ap.parse_args()
    if a.run:
        print(json.dumps(one(Path(a.root), a.run == "lazy", a.iterations, a.workers)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_pool(root, a.images, a.height, a.width)
        pool_gb = a.images * a.height * a.width * 4 / 2**30
        print(f"pool: {a.images} images of {a.height}x{a.width} ({pool_gb:.2f} GB as uint8 images + targets)")
        r = {}
        for run in ("lists", "lazy"):
            cmd = [sys.executable, __file__, "--run", run, "--root", tmp, "--iterations", str(a.iterations),
                   "--workers", str(a.workers)]  # fmt: skip
            r[run] = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
            print(f"{run:6s} peak {r[run]['peak_gb']:.2f} GB (before training {r[run]['base_gb']:.2f} GB), "
                  f"{r[run]['seconds']:.1f} s")  # fmt: skip
        extra = {k: v["peak_gb"] - v["base_gb"] for k, v in r.items()}
        print(f"lazy / lists: extra memory {extra['lazy'] / extra['lists']:.2f}x, "
              f"time {r['lazy']['seconds'] / r['lists']['seconds']:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
