"""Training and inference speed of every model of adaspx.models on this machine's CPU (or GPU when visible).

Input: synthetic noisy images (uint8 RGB, ``--size`` square, default 128x128) with 5% of the pixels labeled at
random among 19 classes (the point loss then applies, as in active-learning rounds). Training goes through
:func:`adaspx.training.train_model` (batch ``--batch``, no crop, flips on); its rate is taken from the iteration
hook after ``--warmup`` iterations, so model construction and oneDNN/cuDNN set-up are excluded. Inference goes
through :func:`adaspx.training.predict_probs` on ``--infer-images`` images in batches of ``--batch``, after one
warm-up batch. Random initialization (no pretrained weights). Usage::

    python benchmarks/bench_train.py [--size 128] [--batch 4] [--iterations 6] [--threads 2] [--models small ...]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from adaspx import IGNORE_INDEX
from adaspx.models import MODELS, build_model, count_parameters
from adaspx.training import TrainConfig, predict_probs, train_model


def data(n: int, size: int, classes: int, fraction: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    images = [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(n)]
    targets = []
    for _ in range(n):
        t = np.full((size, size), IGNORE_INDEX, np.uint8)
        mask = rng.random((size, size)) < fraction
        t[mask] = rng.integers(0, classes, int(mask.sum()))
        targets.append(t)
    return images, targets


def bench(name: str, args) -> dict:
    classes = 19
    images, targets = data(max(args.batch * 2, args.infer_images), args.size, classes, 0.05)
    config = TrainConfig(iterations=args.iterations, batch_size=args.batch, lr=0.01, model=name)
    stamps: dict[int, float] = {}
    model = train_model(
        images,
        targets,
        num_classes=classes,
        config=config,
        seed=0,
        threads=args.threads,
        progress=False,
        on_iteration=lambda i: stamps.__setitem__(i, time.perf_counter()),
    )
    measured = args.iterations - args.warmup
    train_rate = measured * args.batch / (stamps[args.iterations] - stamps[args.warmup])
    torch.set_num_threads(args.threads)
    batch = images[: args.batch]
    list(predict_probs(model, batch, batch_size=args.batch))  # warm-up
    start = time.perf_counter()
    n = len(list(predict_probs(model, images[: args.infer_images], batch_size=args.batch)))
    infer_rate = n / (time.perf_counter() - start)
    return {
        "model": name,
        "params": count_parameters(build_model(name, classes)),
        "train": train_rate,
        "infer": infer_rate,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--iterations", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--infer-images", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)  # the workflow default; see benchmarks/README.md
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    args = parser.parse_args()
    if not 1 <= args.warmup < args.iterations:
        parser.error("need 1 <= --warmup < --iterations")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(
        f"{args.size}x{args.size} images, batch {args.batch}, 19 classes, 5% labeled, {args.threads} threads, {device}"
    )
    print("| model | parameters | training images/s | inference images/s |")
    print("| --- | ---: | ---: | ---: |")
    for name in args.models:
        r = bench(name, args)
        print(f"| `{r['model']}` | {r['params'] / 1e6:.2f} M | {r['train']:.2f} | {r['infer']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
