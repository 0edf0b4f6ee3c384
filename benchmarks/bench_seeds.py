"""Memory, time and quality of SEEDS base superpixels (``adaspx.superpixels.seeds_superpixels``) per setting.

Input: synthetic street scenes from ``adaspx.synthetic.generate_scene`` (1024x2048 by default, the Cityscapes size),
so the ground-truth label map is known. Every setting runs in a fresh subprocess, which reports:

- peak RSS: the process's VmHWM after the first image, total and above the baseline (imports done, images loaded);
- the histogram memory OpenCV allocates for that grid (model from ximgproc/src/seeds.cpp: one float32 histogram of
  ``bins ** 3`` bins, rounded up to 16, per block of every level);
- time: per image the best of ``--repeats`` calls (colour conversion included), averaged over the images;
- quality against the label map, averaged over the images: superpixels (distinct ids) and 4-connected pieces;
  boundary recall BR2 (share of ground-truth boundary pixels within 2 px of a superpixel boundary pixel, both from
  ``skimage.segmentation.find_boundaries(mode="inner")``) and boundary precision BP2 (the converse); achievable
  segmentation accuracy ASA (share of pixels carrying their superpixel's dominant label, void counted as a label: the
  label precision of the simulated one-click annotator); corrected undersegmentation error UE (Neubert and Protzel:
  pixels outside their superpixel's dominant label, over all pixels; equals 1 - ASA here).

Usage::

    python benchmarks/bench_seeds.py                  # 1024x2048, 8192 superpixels: about 6 minutes, 11 GB peak
    python benchmarks/bench_seeds.py --size 96x128 --num-superpixels 150 --images 20 --base default
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

LARGE = {"histogram_bins": 10}
"""The setting recommended for 1024x2048 images (8192 superpixels): the defaults with 10 histogram bins."""

# name -> keyword arguments of seeds_superpixels (num_superpixels comes from the command line). Variants marked
# "base, ..." change one setting of the base: LARGE (--base large, the default) or the defaults (--base default).
FIXED: dict[str, dict] = {
    "official": {"preset": "official"},
    "official, hue fixed": {
        "num_levels": 5, "prior": 3, "histogram_bins": 10, "double_step": True, "iterations": 10,
        "equalize_hist": True, "hue": "unit",
    },
    "defaults": {},
    "large-image setting": LARGE,
    "OpenCV defaults": {
        "num_levels": 4, "prior": 2, "histogram_bins": 5, "double_step": False, "iterations": 4,
        "equalize_hist": False,
    },
}  # fmt: skip
VARIANTS: dict[str, dict] = {
    "base, hue in degrees": {"hue": "degrees"},
    "base, no equalisation": {"equalize_hist": False},
    "base, 4 levels": {"num_levels": 4},
    "base, 2 levels": {"num_levels": 2},
    "base, 5 bins": {"histogram_bins": 5},
    "base, 8 bins": {"histogram_bins": 8},
    "base, 12 bins": {"histogram_bins": 12},
    "base, no double step": {"double_step": False},
    "base, 4 iterations": {"iterations": 4},
    "base, prior 2": {"prior": 2},
}


def scenes(cache: Path, height: int, width: int, count: int, first_seed: int = 1000) -> list[tuple[Path, Path]]:
    """Paths of cached (image, label) .npy pairs of ``count`` synthetic scenes (generator seeds from ``first_seed``)."""
    from adaspx.synthetic import generate_scene

    paths = []
    for seed in range(first_seed, first_seed + count):
        img_path = cache / f"seeds_scene_{height}x{width}_{seed}_image.npy"
        lab_path = cache / f"seeds_scene_{height}x{width}_{seed}_label.npy"
        if not (img_path.exists() and lab_path.exists()):
            image, label = generate_scene(np.random.default_rng(seed), height, width)
            np.save(img_path, image)
            np.save(lab_path, label)
        paths.append((img_path, lab_path))
    return paths


def peak_rss_kib() -> int:
    """VmHWM: this process's own peak RSS (ru_maxrss of the parent would mix in other children)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))


def histogram_mib(height: int, width: int, params: dict) -> tuple[int, int, float]:
    """(levels, level-0 block side, MiB of histograms) that OpenCV allocates for these arguments."""
    from adaspx.superpixels import SEEDS_OFFICIAL, _seeds_grid, _seeds_request

    p = {**_defaults(), **params}
    if p.get("preset") == "official":
        p.update(SEEDS_OFFICIAL)
        request = p["num_superpixels"]
    else:
        request = _seeds_request(height, width, p["num_superpixels"], p["num_levels"])
    levels, block_h, block_w, _ = _seeds_grid(height, width, request, p["num_levels"])
    size = -(-(p["histogram_bins"] ** 3) // 16) * 16
    count_w, count_h, blocks = width // block_w, height // block_h, 0
    for _ in range(levels):
        blocks += count_w * count_h
        count_w //= 2
        count_h //= 2
    return levels, max(block_h, block_w), blocks * size * 4 / 2**20


def _defaults() -> dict:
    import inspect

    from adaspx.superpixels import seeds_superpixels

    sig = inspect.signature(seeds_superpixels)
    return {k: v.default for k, v in sig.parameters.items() if v.default is not inspect.Parameter.empty}


def quality(sp: np.ndarray, gt: np.ndarray) -> dict:
    """Superpixel counts and BR2, BP2, ASA, UE of one map against one ground-truth label map."""
    from scipy import ndimage as ndi
    from skimage.measure import label as cc_label
    from skimage.segmentation import find_boundaries

    gb = find_boundaries(gt, mode="inner")
    sb = find_boundaries(sp, mode="inner")
    br = float((ndi.distance_transform_edt(~sb)[gb] <= 2).mean())
    bp = float((ndi.distance_transform_edt(~gb)[sb] <= 2).mean())
    g = gt.astype(np.int64)
    values, g = np.unique(g, return_inverse=True)
    k = sp.astype(np.int64).ravel() * len(values) + g.ravel()
    counts = np.bincount(k, minlength=(int(sp.max()) + 1) * len(values)).reshape(-1, len(values))
    asa = float(counts.max(axis=1).sum() / gt.size)
    ue = float((counts.sum(axis=1) - counts.max(axis=1)).sum() / gt.size)
    pieces = int(cc_label(sp.astype(np.int64) + 1, background=0, connectivity=1).max())
    return {"superpixels": int(np.unique(sp).size), "pieces": pieces, "BR2": br, "BP2": bp, "ASA": asa, "UE": ue}


def child(spec: dict) -> dict:
    """Run one setting on the cached scenes (in a fresh process) and return its measurements."""
    from adaspx.superpixels import seeds_superpixels

    pairs = [(np.load(i), np.load(lab)) for i, lab in spec["paths"]]
    params = {"num_superpixels": spec["num_superpixels"], **spec["params"]}
    seeds_superpixels(np.zeros((64, 64, 3), np.uint8), num_superpixels=16)  # load OpenCV, tiny
    base = peak_rss_kib()
    times, rows, peak = [], [], None
    for image, label in pairs:
        best = np.inf
        for _ in range(spec["repeats"]):
            t0 = time.perf_counter()
            sp = seeds_superpixels(image, **params)
            best = min(best, time.perf_counter() - t0)
            if peak is None:
                peak = peak_rss_kib()
        times.append(best)
        rows.append(quality(sp, label))
    out = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
    out.update(time_s=float(np.mean(times)), peak_mib=peak / 1024, extra_mib=(peak - base) / 1024)
    return out


def run_child(spec: dict) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(spec)], check=True, capture_output=True, text=True, env=env
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1024x2048", help="HxW of the synthetic scenes")
    parser.add_argument("--num-superpixels", type=int, default=8192)
    parser.add_argument("--images", type=int, default=3)
    parser.add_argument("--scene-seed", type=int, default=1000, help="generator seed of the first scene")
    parser.add_argument("--repeats", type=int, default=3, help="timing: best of this many calls per image")
    parser.add_argument("--heavy-repeats", type=int, default=1, help="repeats for settings over 4 GiB of histograms")
    parser.add_argument("--base", choices=("large", "default"), default="large", help="what variants change")
    parser.add_argument("--only", nargs="*", help="names of settings to run (default: all)")
    parser.add_argument("--skip", nargs="*", default=[], help="names of settings to leave out")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "adaspx-bench")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return

    height, width = (int(v) for v in args.size.lower().split("x"))
    args.cache.mkdir(parents=True, exist_ok=True)
    paths = [(str(i), str(lab)) for i, lab in scenes(args.cache, height, width, args.images, args.scene_seed)]
    base = LARGE if args.base == "large" else {}
    configs = {**FIXED, **{name: {**base, **change} for name, change in VARIANTS.items()}}
    names = [n for n in (args.only or configs) if n not in args.skip]
    print(
        f"{args.images} synthetic scenes {height}x{width} (seeds from {args.scene_seed}), "
        f"num_superpixels={args.num_superpixels}; "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; defaults: {_defaults()}; "
        f"variants change: {args.base} {base}"
    )
    header = (
        f"| setting | levels | block | hist MiB (model) | peak RSS MiB | above baseline | time s | superpixels "
        f"| pieces | BR2 | BP2 | ASA | UE |\n|{'---|' * 13}"
    )
    print(header, flush=True)
    for name in names:
        params = configs[name]
        levels, block, hist = histogram_mib(height, width, {"num_superpixels": args.num_superpixels, **params})
        repeats = args.heavy_repeats if hist > 4096 else args.repeats
        spec = {"paths": paths, "num_superpixels": args.num_superpixels, "params": params, "repeats": repeats}
        r = run_child(spec)
        print(
            f"| {name} | {levels} | {block} px | {hist:.0f} | {r['peak_mib']:.0f} | {r['extra_mib']:.0f} "
            f"| {r['time_s']:.2f} | {r['superpixels']:.0f} | {r['pieces']:.0f} | {r['BR2']:.4f} | {r['BP2']:.4f} "
            f"| {r['ASA']:.4f} | {r['UE']:.4f} |",
            flush=True,
        )
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
