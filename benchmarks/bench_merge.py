"""Speed and memory of the merge kernel on a Cityscapes-sized input.

Input: skimage.data.astronaut() resized to 1024x2048 (a real photo; no street scene ships with the libraries here),
~8k SEEDS superpixels (cv2.ximgproc), and 19-class float32 softmax probabilities from smooth random logits (Gaussian
noise at 1/128 resolution, times 8, bilinearly upsampled, so neighbouring regions are similar and merges happen).

Reports, in one run: region_stats, adaptive_merge (all phases, and each phase alone), merge_many, one np.sum over
the same probability array, their ratios; the extra peak memory of each call (fresh subprocesses, peak RSS from
VmHWM, and tracemalloc); and the same input through the readable NumPy reference (tests/merge_reference.py) with
the kernel speed-up. Usage::

    python benchmarks/bench_merge.py [--repeats 7] [--skip-reference]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
H, W, C = 1024, 2048, 19
N_SEEDS = 8192
EPS = 0.1


def make_inputs(cache: Path) -> tuple[Path, Path]:
    """Labels (int32) and probabilities (float32, (H, W, C)) cached as .npy files."""
    lab_path, prob_path = cache / "merge_labels.npy", cache / "merge_probs.npy"
    if lab_path.exists() and prob_path.exists():
        return lab_path, prob_path
    import cv2
    from skimage.data import astronaut

    image = cv2.resize(astronaut(), (W, H), interpolation=cv2.INTER_LINEAR)
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
    seeds = cv2.ximgproc.createSuperpixelSEEDS(W, H, 3, N_SEEDS, 4, 2, 5, False)
    seeds.iterate(hsv, 4)
    labels = seeds.getLabels().astype(np.int32)

    rng = np.random.default_rng(0)
    low = rng.normal(size=(H // 128, W // 128, C)).astype(np.float32) * 8.0
    logits = cv2.resize(low, (W, H), interpolation=cv2.INTER_LINEAR)
    logits -= logits.max(axis=2, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(axis=2, keepdims=True)
    np.save(lab_path, labels)
    np.save(prob_path, probs.astype(np.float32))
    return lab_path, prob_path


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


MEMORY_PROBE = r"""
import json, sys, tracemalloc
import numpy as np
from adaspx import merge


def peak_rss_kib():  # VmHWM: this process's peak RSS (ru_maxrss would include the forking parent's peak)
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))


labels = np.load(sys.argv[1]); probs = np.load(sys.argv[2]); which = sys.argv[3]
fn = {"region_stats": lambda: merge.region_stats(labels, probs),
      "adaptive_merge": lambda: merge.adaptive_merge(labels, probs, 0.1)}[which]
small = (np.arange(64 * 64, dtype=np.int32).reshape(64, 64) // 16, np.full((64, 64, 3), 1 / 3, np.float32))
merge.adaptive_merge(*small)  # load the OpenMP runtime etc. on a tiny input, keeping the peak RSS low
base = peak_rss_kib()
tracemalloc.start()
fn()
_, traced_peak = tracemalloc.get_traced_memory()
tracemalloc.stop()
print(json.dumps({"rss_extra_mb": (peak_rss_kib() - base) / 1024, "traced_peak_mb": traced_peak / 2**20}))
"""


def memory(lab_path: Path, prob_path: Path, which: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    out = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE, str(lab_path), str(prob_path), which],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--skip-reference", action="store_true", help="skip the slow readable reference")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "adaspx-bench")
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)

    from adaspx import _merge as kernel
    from adaspx import merge

    t0 = time.perf_counter()
    lab_path, prob_path = make_inputs(args.cache)
    labels, probs = np.load(lab_path), np.load(prob_path)
    print(f"inputs ready in {time.perf_counter() - t0:.1f} s (cached in {args.cache})")
    threads = os.environ.get("OMP_NUM_THREADS", str(os.cpu_count()))
    print(
        f"labels {labels.shape} {labels.dtype}, {np.unique(labels).size} regions; probs {probs.shape} "
        f"{probs.dtype} ({probs.nbytes / 2**20:.0f} MiB); {os.cpu_count()} cores, OpenMP threads {threads}"
    )

    merged = merge.adaptive_merge(labels, probs, EPS)
    print(f"eps={EPS}: {np.unique(labels).size} -> {np.unique(merged).size} regions")

    r = args.repeats
    t_sum = best_of(lambda: np.sum(probs), r)
    t_stats = best_of(lambda: merge.region_stats(labels, probs), r)
    t_merge = best_of(lambda: merge.adaptive_merge(labels, probs, EPS), r)
    t_both = best_of(lambda: merge.region_stats_and_merge(labels, probs, EPS), r)

    # phases of adaptive_merge
    inp = merge._prepare(labels, probs, -1)
    lo, hi = kernel.label_range(inp.labels, 0)
    span = hi - lo + 1
    t_range = best_of(lambda: kernel.label_range(inp.labels, 0), r)
    t_unique = best_of(lambda: np.unique(labels, return_inverse=True), min(r, 3))

    def stats_pass(pairs):
        return kernel.region_sums(inp.labels, lo, span, inp.probs, False, 1, 1e-2, 0, pairs)

    t_pass = best_of(lambda: stats_pass(False), r)
    t_pass_pairs = best_of(lambda: stats_pass(True), r)
    raw = merge._compute_raw(inp, 0, want_pairs=True)
    n = raw.ids.shape[0]
    t_adj = best_of(lambda: kernel.adjacency(raw.pairs, raw.to_dense, n), r)
    t_bfs = best_of(lambda: merge._merge_targets(raw, EPS, np.iinfo(np.int64).max), r) - t_adj
    target = merge._merge_targets(raw, EPS, np.iinfo(np.int64).max)
    t_out = best_of(lambda: merge._write_map(inp, raw, target, 0), r)
    # the machine may be shared: time the np.sum baseline again after the others and keep the best
    t_sum = min(t_sum, best_of(lambda: np.sum(probs), r))
    images = [(labels, probs)] * 4
    t_many = best_of(lambda: list(merge.merge_many(images, EPS)), max(1, r // 3)) / len(images)
    chw = np.ascontiguousarray(np.moveaxis(probs, -1, 0))
    t_merge_chw = best_of(lambda: merge.adaptive_merge(labels, chw, EPS, channel_axis=0), r)
    t_official = best_of(lambda: merge.adaptive_merge(labels, probs, EPS, loop="official"), 1)

    print()
    print(f"np.sum(probs)                   {t_sum * 1e3:8.1f} ms")
    print(f"region_stats                    {t_stats * 1e3:8.1f} ms   {t_stats / t_sum:5.2f} x np.sum (target <= 1.5)")
    print(f"adaptive_merge                  {t_merge * 1e3:8.1f} ms   {t_merge / t_sum:5.2f} x np.sum (target <= 3)")
    print(f"region_stats_and_merge          {t_both * 1e3:8.1f} ms   {t_both / t_sum:5.2f} x np.sum")
    print(f"adaptive_merge, (C, H, W) probs {t_merge_chw * 1e3:8.1f} ms   {t_merge_chw / t_sum:5.2f} x np.sum")
    print(f"adaptive_merge, loop=official   {t_official * 1e3:8.1f} ms   {t_official / t_merge:5.1f} x the kernel")
    print(
        f"merge_many (4 images)           {t_many * 1e3:8.1f} ms per image, one image per thread"
        f"   {t_many / t_sum:5.2f} x np.sum"
    )
    print("phases:")
    print(
        f"  label range (min/max)         {t_range * 1e3:8.1f} ms   (a sort-based remap, np.unique(return_inverse),"
        f" would cost {t_unique * 1e3:.1f} ms)"
    )
    print(f"  fused stats pass              {t_pass * 1e3:8.1f} ms   {t_pass / t_sum:5.2f} x np.sum")
    print(
        f"  fused stats pass + pairs      {t_pass_pairs * 1e3:8.1f} ms   {t_pass_pairs / t_sum:5.2f} x np.sum"
        f"   ({raw.pairs.shape[0]} label pairs)"
    )
    print(f"  adjacency (CSR)               {t_adj * 1e3:8.1f} ms")
    print(f"  seed order + BFS              {t_bfs * 1e3:8.1f} ms")
    print(f"  output map                    {t_out * 1e3:8.1f} ms")

    mem_stats = memory(lab_path, prob_path, "region_stats")
    mem_merge = memory(lab_path, prob_path, "adaptive_merge")
    size = probs.nbytes / 2**20
    print(f"extra peak memory (probs array: {size:.0f} MiB):")
    for name, m in (("region_stats", mem_stats), ("adaptive_merge", mem_merge)):
        print(
            f"  {name:16s} RSS +{m['rss_extra_mb']:6.1f} MiB, tracemalloc peak {m['traced_peak_mb']:6.1f} MiB"
            f"   ({max(m['rss_extra_mb'], m['traced_peak_mb']) / size:.2f} x probs, target <= 1)"
        )

    if not args.skip_reference:
        sys.path.insert(0, str(ROOT / "tests"))
        from merge_reference import reference_merge

        t0 = time.perf_counter()
        ref = reference_merge(labels, probs, EPS)
        t_ref = time.perf_counter() - t0
        print(
            f"reference (merge_reference.py)  {t_ref * 1e3:8.1f} ms   kernel speed-up {t_ref / t_merge:6.1f} x"
            f"   same map: {np.array_equal(ref, merged)}"
        )


if __name__ == "__main__":
    main()
