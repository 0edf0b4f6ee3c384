"""Sieving on the built-in synthetic data: label precision and correct pixels kept, knee vs knee_disagree.

Generates the synthetic dataset, SLIC base superpixels, trains the small model on the dominant labels of random
regions (the warm-up), then answers every other region (base superpixels, and adaptive regions merged with that
model) and sieves the answers with the model's probabilities. Prints one table; no assertions.

    .venv/bin/python benchmarks/bench_sieve.py [--out /tmp/sieve] [--iterations 300] [--warmup 100]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import yaml

from adaspx import IGNORE_INDEX, annotation, datasets, synthetic
from adaspx.merge import adaptive_merge
from adaspx.superpixels import slic_superpixels
from adaspx.training import TrainConfig, predict_probs, train_model

METHODS = [("knee", {}), ("knee_disagree", {"disagree_threshold": 0.5}), ("knee_disagree", {"disagree_threshold": 0.8})]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="/tmp/sieve")
    ap.add_argument("--iterations", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    root = Path(a.out) / "data"
    synthetic.write_dataset(root, train_size=48, val_size=16, height=96, width=128, seed=0)
    ids = (root / "splits/train.txt").read_text().split()
    images = [datasets.read_image(root / f"images/{i}.png") for i in ids]
    gts = [datasets.read_label(root / f"labels/{i}.png") for i in ids]
    num_classes = len(yaml.safe_load((root / "classes.yaml").read_text())["names"])
    base = [slic_superpixels(im, n_segments=150) for im in images]
    # warm-up: random regions answered with their dominant label
    rng = np.random.default_rng(a.seed)
    pairs = [(k, r) for k, b in enumerate(base) for r in np.unique(b)]
    warm = {pairs[j] for j in rng.choice(len(pairs), a.warmup, replace=False)}
    targets = [np.full(g.shape, IGNORE_INDEX, np.uint8) for g in gts]
    for k, r in warm:
        lab, _ = annotation.dominant_labels(base[k], gts[k], np.array([r]))
        targets[k][base[k] == r] = lab[0]
    cfg = TrainConfig(iterations=a.iterations, batch_size=8, lr=0.1)
    model = train_model(images, targets, num_classes=num_classes, config=cfg, seed=a.seed, threads=2, progress=False)
    probs = list(predict_probs(model, images, batch_size=16))
    mean_size = np.mean([b.size / len(np.unique(b)) for b in base])
    min_pixels = round(2 * mean_size)
    print(f"{len(ids)} images, {len(pairs)} base regions (mean {mean_size:.0f} px), min_pixels {min_pixels}")
    print(f"model: {a.iterations} iterations on {a.warmup} random answers\n")
    header = "| regions | method | regions sieved | precision before | precision after | correct kept | wrong removed |"
    print(header)
    print("|" + " --- |" * 7)
    for kind in ("base", "adaptive"):
        merged = [adaptive_merge(b, p, 0.1, channel_axis=0) for b, p in zip(base, probs, strict=True)]
        maps = base if kind == "base" else merged
        for method, opts in METHODS:
            lab_b = cor_b = lab_a = cor_a = wrong_b = wrong_a = 0
            sieved = eligible = 0
            for k, rmap in enumerate(maps):
                rids = np.array([r for r in np.unique(rmap) if (k, r) not in warm])
                labels, _ = annotation.dominant_labels(rmap, gts[k], rids)
                amap = np.full(rmap.shape, -1, np.int32)
                for row, r in enumerate(rids):
                    amap[rmap == r] = row
                t = annotation.targets_from_answers(amap, labels)
                drop = annotation.sieve_mask(amap, labels, probs[k], min_pixels, method=method, **opts)
                rows, counts = np.unique(amap[amap >= 0], return_counts=True)
                big = rows[(counts >= min_pixels) & (labels[rows] != IGNORE_INDEX)]
                eligible += big.size
                sieved += len(np.unique(amap[drop]))
                n, c = annotation.precision(t, gts[k])
                lab_b, cor_b, wrong_b = lab_b + n, cor_b + c, wrong_b + n - c
                t[drop] = IGNORE_INDEX
                n, c = annotation.precision(t, gts[k])
                lab_a, cor_a, wrong_a = lab_a + n, cor_a + c, wrong_a + n - c
            name = method + (f" (t={opts['disagree_threshold']})" if opts else "")
            print(
                f"| {kind} | {name} | {sieved}/{eligible} | {cor_b / lab_b:.4f} | {cor_a / lab_a:.4f} | "
                f"{cor_a / cor_b:.4f} | {1 - wrong_a / wrong_b:.4f} |"
            )


if __name__ == "__main__":
    main()
