"""Per-image stages at full resolution on pools of N and 4N images: peak memory and time per image.

Builds a synthetic pool of 1024x2048 scenes (``adaspx.synthetic``, a folder dataset on disk), base superpixels on a
jittered grid of about 8192 cells (SEEDS-8192's size; SEEDS itself costs 1-2 s per image and is not measured here),
and float16 probabilities of the synthetic classes (confident inside objects, uncertain along their boundaries).
Then runs, each in its own process so that its peak RSS is its own, the stages as the workflow runs them:

- ``write_probs``: the ``infer`` writer (float16 probabilities of every pool image as the model's block means
  are stored; the model itself is not run);
- ``merge``: ``merge_superpixels`` (adaptive regions and their statistics) on 2 threads;
- ``acquire``: class-balanced acquisition of 8 clicks per image, reading the stored region statistics and the
  previous answers (exclusion of answered regions);
- ``annotate``: a round >= 1 with sieving (previous answers, the probabilities, the knee per answered region), on
  2 threads.

For each stage and pool size it prints the peak RSS of the stage's process and the seconds per image of the stage
call (imports excluded; the best of ``--repeats`` processes, as the ``np.sum`` pass is the best of 7: shared
machines' timings move by tens of percent from one moment to the next), and as ratios measured in the same run:
the 4N run's peak RSS over the N run's (goal: at most 1.15, memory flat in the pool) and seconds per image over
one ``np.sum`` pass over that image's float32 (C, 1024, 2048) probabilities (goal: at most 5 for merge, acquire
and annotate, reads and writes included).

    python benchmarks/bench_scale.py             # N = 4 (4 and 16 images), about 2 minutes on 2 cores
    python benchmarks/bench_scale.py --n 8 --stride 1
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

H, W = 1024, 2048
STAGES = ("write_probs", "merge", "acquire", "annotate")
PROVENANCE = {"experiment": "bench", "seed": 0}  # and the round, which every round stage also takes


def grid_superpixels(seed: int, cell: int = 16) -> np.ndarray:
    """(H/cell) x (W/cell) superpixels: a grid whose rows of cells are shifted sideways by a random offset each."""
    rng = np.random.default_rng(seed)
    rows, cols = H // cell, W // cell
    band = np.arange(H) // cell
    shift = rng.integers(0, cell, size=rows)[band]
    col = np.minimum((np.arange(W)[None, :] + shift[:, None]) // cell, cols - 1)
    return (band[:, None] * cols + col).astype(np.int32)


def synthetic_probs(gt: np.ndarray, num_classes: int, seed: int) -> np.ndarray:
    """float16 (C, H, W) softmax: confident on each pixel's class, uncertain near class boundaries and on void."""
    import cv2

    rng = np.random.default_rng(seed)
    logits = np.empty((num_classes, H, W), dtype=np.float32)
    for c in range(num_classes):
        noise = cv2.resize(rng.normal(size=(16, 32)).astype(np.float32), (W, H), interpolation=cv2.INTER_LINEAR)
        onehot = (gt == c).astype(np.float32)
        logits[c] = 4.0 * cv2.GaussianBlur(onehot, (0, 0), 6) + 1.5 * noise
    logits -= logits.max(axis=0, keepdims=True)
    np.exp(logits, out=logits)
    logits /= logits.sum(axis=0, keepdims=True)
    return logits.astype(np.float16)


def build(root: Path, images: int) -> None:
    """Dataset, manifest, base superpixels, probabilities (.npy per image) and round-0 answers under ``root``."""
    from adaspx import pipeline, synthetic
    from adaspx.artifacts import SCHEMA_SUPERPIXELS, stored_labels
    from adaspx.datasets import read_label
    from adaspx.h5io import ArtifactWriter

    synthetic.write_dataset(root / "data", train_size=images, val_size=1, height=H, width=W, seed=0)
    pipeline.prepare_dataset("folder", root / "data", {"pool": "train", "val": "val"}, root / "manifest.json")
    manifest = json.loads((root / "manifest.json").read_text())
    ids = pipeline.pool_ids(manifest)
    (root / "npy").mkdir(exist_ok=True)
    with ArtifactWriter(root / "base.h5", SCHEMA_SUPERPIXELS, method="grid") as w:
        for k, image_id in enumerate(ids):
            labels = stored_labels(grid_superpixels(k))  # as base_superpixels stores them
            w.add("labels", image_id, labels, regions=int(np.unique(labels).size))
            gt = read_label(root / "data" / "labels" / f"{image_id}.png")
            probs = synthetic_probs(gt, manifest["num_classes"], k).astype(np.float32)
            for stride in (1, 2):  # as infer.stride stores them: block means, float16
                np.save(root / "npy" / f"{image_id}_s{stride}.npy", block_mean(probs, stride).astype(np.float16))


def run_stage(stage: str, root: Path, stride: int) -> dict:
    """The stage itself, timed; called in a child process."""
    from adaspx import pipeline
    from adaspx.artifacts import SCHEMA_PROBS
    from adaspx.h5io import ArtifactWriter

    manifest = json.loads((root / "manifest.json").read_text())
    ids = pipeline.pool_ids(manifest)
    rd = root / f"run_s{stride}"
    rd.mkdir(exist_ok=True)
    import kneed  # noqa: F401  (one-time imports of the stages, so that the clock sees per-image work only)

    import adaspx.merge  # noqa: F401

    t0 = time.perf_counter()
    if stage == "write_probs":
        with ArtifactWriter(rd / "probs.h5", SCHEMA_PROBS, stride=stride, classes=manifest["classes"]) as w:
            for image_id in ids:
                w.add("probs", image_id, np.load(root / "npy" / f"{image_id}_s{stride}.npy"))
    elif stage == "merge":
        pipeline.merge_superpixels(root / "base.h5", rd / "probs.h5", rd / "regions.h5", eps=0.1, threads=2,
                                    **PROVENANCE, round=1)  # fmt: skip
    elif stage == "acquire":
        pipeline.acquire(root / "manifest.json", [str(rd / "regions.h5")], [], str(rd / "answers0.h5"),
                         rd / "selection.csv", strategy="class_balanced", budget=8 * len(ids), exclude_labeled=0.5,
                         **PROVENANCE, round=1)  # fmt: skip
    elif stage == "annotate":
        pipeline.annotate(root / "manifest.json", rd / "selection.csv", [str(rd / "regions.h5")],
                          str(rd / "answers0.csv"), str(rd / "answers0.h5"), [str(rd / "probs.h5")],
                          [str(root / "base.h5")], answers_csv=rd / "answers1.csv", answers_h5=rd / "answers1.h5",
                          targets_h5=rd / "targets1.h5", stats_json=rd / "stats1.json", **PROVENANCE, round=1,
                          sieve=True, min_pixels=512, threads=2)  # fmt: skip
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "images": len(ids), "peak_mib": peak_rss_mib()}


def peak_rss_mib() -> float:
    """This process's peak resident memory (VmHWM: unlike getrusage's ru_maxrss, it does not count the memory the
    process had before exec, i.e. the parent's)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def block_mean(p: np.ndarray, stride: int) -> np.ndarray:
    """(C, ceil(H/s), ceil(W/s)) block means, as ``infer.stride`` stores them (H, W divisible by s here)."""
    if stride == 1:
        return p
    c, h, w = p.shape
    return p.reshape(c, h // stride, stride, w // stride, stride).mean(axis=(2, 4))


def warmup_answers(root: Path, stride: int) -> None:
    """Round 0: 8 random base superpixels per image answered (not measured)."""
    from adaspx import pipeline

    rd = root / f"run_s{stride}"
    manifest = json.loads((root / "manifest.json").read_text())
    pipeline.acquire(root / "manifest.json", [str(root / "base.h5")], [], None, rd / "selection0.csv",
                     strategy="random", budget=8 * len(pipeline.pool_ids(manifest)), **PROVENANCE,
                     round=0)  # fmt: skip
    pipeline.annotate(root / "manifest.json", rd / "selection0.csv", [str(root / "base.h5")], None, None, [],
                      [str(root / "base.h5")], answers_csv=rd / "answers0.csv", answers_h5=rd / "answers0.h5",
                      targets_h5=rd / "targets0.h5", stats_json=rd / "stats0.json", **PROVENANCE,
                      round=0, sieve=False)  # fmt: skip


def measure(stage: str, root: Path, stride: int, repeats: int) -> dict:
    """Run one stage in ``repeats`` child processes; the shortest wall time and the largest peak RSS (MiB)."""
    cmd = [sys.executable, __file__, "--child", stage, "--root", str(root), "--stride", str(stride)]
    runs = []
    for _ in range(repeats):
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"stage {stage} failed on {root}")
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return {
        "seconds": min(r["seconds"] for r in runs),
        "images": runs[0]["images"],
        "peak_mib": max(r["peak_mib"] for r in runs),
    }


def sum_pass_seconds(num_classes: int) -> float:
    """Best of 7: one np.sum pass over a float32 (C, H, W) array."""
    p = np.random.default_rng(0).random((num_classes, H, W), dtype=np.float32)
    best = float("inf")
    for _ in range(7):
        t0 = time.perf_counter()
        p.sum()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=4, help="pool sizes N and 4N")
    parser.add_argument("--stride", type=int, default=2, help="infer.stride of the stored probabilities")
    parser.add_argument("--repeats", type=int, default=3, help="processes per stage and pool; the fastest counts")
    parser.add_argument("--child", choices=STAGES)
    parser.add_argument("--root", type=Path)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_stage(args.child, args.root, args.stride)))
        return

    base = args.workdir or Path(tempfile.mkdtemp(prefix="adaspx-scale-"))
    sizes = (args.n, 4 * args.n)
    results: dict[tuple[str, int], dict] = {}
    for n in sizes:
        root = base / f"pool{n}"
        if not (root / "base.h5").exists():
            print(f"building a pool of {n} images of {H}x{W} under {root} ...", flush=True)
            build(root, n)
        (root / f"run_s{args.stride}").mkdir(exist_ok=True)
        for stage in STAGES:
            results[(stage, n)] = measure(stage, root, args.stride, args.repeats)
            if stage == "merge":
                warmup_answers(root, args.stride)
    num_classes = json.loads((base / f"pool{sizes[0]}" / "manifest.json").read_text())["num_classes"]
    t_sum = sum_pass_seconds(num_classes)
    print(f"\n1024x2048, {num_classes} classes, probabilities stored at stride {args.stride}; "
          f"np.sum pass over float32 (C, H, W): {1000 * t_sum:.1f} ms\n")  # fmt: skip
    print(f"| stage | peak RSS, {sizes[0]} images | peak RSS, {sizes[1]} images | ratio (goal <= 1.15) "
          f"| s/image ({sizes[1]} images) | ratio to np.sum (goal <= 5) |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- |")
    for stage in STAGES:
        a, b = results[(stage, sizes[0])], results[(stage, sizes[1])]
        per_image = b["seconds"] / b["images"]
        print(f"| {stage} | {a['peak_mib']:.0f} MiB | {b['peak_mib']:.0f} MiB | {b['peak_mib'] / a['peak_mib']:.3f} "
              f"| {per_image:.3f} | {per_image / t_sum:.1f} |")  # fmt: skip


if __name__ == "__main__":
    main()
