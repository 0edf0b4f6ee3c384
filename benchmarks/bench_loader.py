"""Training's batch loader at Cityscapes size against the training step: images/s of each, and their ratio.

Writes ``--images`` synthetic street scenes of 1024x2048 (:mod:`adaspx.synthetic`) as PNGs in the Cityscapes
layout (``leftImg8bit/train/<city>/<id>_leftImg8bit.png``) with sparse targets (5 % of the pixels labeled) in an
HDF5 artifact, as the workflow's ``train`` rule reads them: images through ``open_dataset("cityscapes", ...)``
(PNG decode), targets from the artifact through :class:`adaspx.training.H5Arrays`. Then, in one run:

- loader: the DataLoader of :func:`adaspx.training.train_model` (same dataset, batch plan and collation) with 0,
  1 and 2 worker processes, crops of ``--crop`` and horizontal flips (the default augmentation), batches of
  ``--batch``; images/s over ``--batches`` batches after the first (which includes starting the workers), best
  of ``--repeat`` runs;
- step: one training step (normalize, forward, point loss on the 5 % labeled pixels, backward, SGD) of the
  ``small`` model and of ``deeplabv3plus_resnet50`` on batches already in memory, ``--threads`` torch threads;
  images/s after one warm-up step. DeepLab runs a smaller batch to fit the time (``--deeplab-batch``, at least
  2: its image pooling branch normalizes over the batch);
- end to end: ``train_model`` with the small model for ``--iterations`` iterations, 0 and 1 workers.

Ratios above 1 mean the loader outruns the model. On a 2-core machine, 2 workers and a training step compete for
the same cores, so the loader's rate alone overstates what training sees.

    python benchmarks/bench_loader.py [--images 12] [--threads 1] [--skip-deeplab]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from adaspx import IGNORE_INDEX
from adaspx.datasets import open_dataset
from adaspx.h5io import Artifact, ArtifactWriter
from adaspx.models import build_model
from adaspx.synthetic import generate_scene
from adaspx.training import (
    H5Arrays,
    LazyArrays,
    TrainConfig,
    _BatchPlan,
    _iterate,
    _loader,
    _loss,
    _Normalizer,
    _Samples,
    _zero_padding,
    train_model,
)

HEIGHT, WIDTH, CLASSES, LABELED = 1024, 2048, 19, 0.05


def write_pool(root: Path, n: int) -> list[str]:
    """Synthetic scenes as Cityscapes image PNGs, and their sparse targets in ``root/targets.h5``; the ids."""
    rng = np.random.default_rng(0)
    folder = root / "leftImg8bit" / "train" / "bench"
    folder.mkdir(parents=True)
    ids = [f"bench_{i:06d}_000019" for i in range(n)]
    with ArtifactWriter(root / "targets.h5", "adaspx.targets/1") as w:
        for image_id in ids:
            image, label = generate_scene(rng, HEIGHT, WIDTH)
            Image.fromarray(image).save(folder / f"{image_id}_leftImg8bit.png")
            target = np.full_like(label, IGNORE_INDEX)
            keep = rng.random(label.shape) < LABELED
            target[keep] = label[keep]
            w.add("labels", image_id, target)
    return ids


def loader_rate(root: Path, ids: list[str], workers: int, crop: int, batch: int, batches: int) -> float:
    """Images/s of training's DataLoader with ``workers`` processes, after its first batch."""
    ds = open_dataset("cityscapes", root, "train")
    targets = H5Arrays(root / "targets.h5", "labels", ids)
    with Artifact(root / "targets.h5") as t:
        shapes = [t.dataset("labels", i).shape for i in ids]
    samples = _Samples(LazyArrays(ids, ds.image), targets, (crop, crop))
    gen = torch.Generator().manual_seed(0)
    plan = _BatchPlan(list(range(len(ids))), shapes, batch, (crop, crop), True, gen, [], batches + 1)
    with _iterate(_loader(samples, plan, workers, pin_memory=False)) as it:
        next(it)
        start = time.perf_counter()
        for _ in it:
            pass
        elapsed = time.perf_counter() - start
    targets.close()
    return batches * batch / elapsed


def step_rate(name: str, crop: int, batch: int, steps: int) -> float:
    """Images/s of training steps of model ``name`` on one in-memory batch, after a warm-up step."""
    gen = torch.Generator().manual_seed(0)
    xb = torch.randint(0, 256, (batch, crop, crop, 3), dtype=torch.uint8, generator=gen)
    tb = torch.randint(0, CLASSES, (batch, crop, crop), generator=gen)
    tb[torch.rand(batch, crop, crop, generator=gen) >= LABELED] = IGNORE_INDEX
    torch.manual_seed(0)
    model = build_model(name, CLASSES).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    criterion = torch.nn.CrossEntropyLoss(ignore_index=IGNORE_INDEX)
    normalize = _Normalizer(torch.device("cpu"))

    def step() -> None:
        x = normalize(xb)
        _zero_padding(x, [(crop, crop)] * batch)
        loss = _loss(model, x, tb, criterion, point_loss=True)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch / (time.perf_counter() - start)


def train_rate(root: Path, ids: list[str], workers: int, crop: int, batch: int, iterations: int, threads: int):
    """Images/s of ``train_model`` (small model) over iterations 2..``iterations``, with ``workers``."""
    ds = open_dataset("cityscapes", root, "train")
    config = TrainConfig(iterations=iterations, batch_size=batch, lr=0.01, crop_size=crop)
    stamps: dict[int, float] = {}
    train_model(
        LazyArrays(ids, ds.image),
        H5Arrays(root / "targets.h5", "labels", ids),
        num_classes=CLASSES,
        config=config,
        seed=0,
        threads=threads,
        workers=workers,
        progress=False,
        on_iteration=lambda i: stamps.__setitem__(i, time.perf_counter()),
    )
    return (iterations - 1) * batch / (stamps[iterations] - stamps[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=12)
    parser.add_argument("--crop", type=int, default=512)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--batches", type=int, default=6)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--deeplab-batch", type=int, default=2)
    parser.add_argument("--deeplab-steps", type=int, default=1)
    parser.add_argument("--iterations", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)  # torch threads of the training step
    parser.add_argument("--skip-deeplab", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        ids = write_pool(root, args.images)
        print(f"{args.images} scenes of {HEIGHT}x{WIDTH} written in {time.perf_counter() - t0:.0f} s")
        print(f"crop {args.crop}, hflip, batch {args.batch}, {args.threads} torch thread(s), CPU")
        loader = {
            w: max(loader_rate(root, ids, w, args.crop, args.batch, args.batches) for _ in range(args.repeat))
            for w in (0, 1, 2)
        }
        for w, rate in loader.items():
            print(f"loader, {w} workers: {rate:6.1f} images/s")
        steps = {"small": step_rate("small", args.crop, args.batch, args.steps)}
        if not args.skip_deeplab:
            name = "deeplabv3plus_resnet50"
            steps[name] = step_rate(name, args.crop, args.deeplab_batch, args.deeplab_steps)
        print("| model | step images/s | loader / step, 0 workers | 1 worker | 2 workers |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for name, rate in steps.items():
            ratios = " | ".join(f"{loader[w] / rate:.2f}" for w in (0, 1, 2))
            print(f"| `{name}` | {rate:.3g} | {ratios} |")
        torch.set_num_threads(args.threads)
        for w in (0, 1):
            rate = train_rate(root, ids, w, args.crop, args.batch, args.iterations, args.threads)
            print(f"train_model, small, {w} workers: {rate:6.1f} images/s")


if __name__ == "__main__":
    main()
