"""Selection under a budget on a Cityscapes-size pool: time and peak memory of adaspx.acquisition.

Synthetic score arrays stand in for a real pool: 2975 images x 8192 regions (24.4M candidates), uniform random
scores, 19 predicted classes with skewed frequencies (so a 20% class quota binds), a budget of 50k clicks. With
random costs of 1-3 clicks (estimates, as ``al.click_cost: classes``) the time includes the reserve of up to 50k
regions the workflow lists after the selection. Each case runs in a fresh process so that peak RSS (ru_maxrss) is
its own. Prints a table; no assertions.

    .venv/bin/python benchmarks/bench_acquire.py [--images 2975] [--regions 8192] [--budget 50000]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

CASES = {
    "top-k (unit costs)": {},
    "max_per_image=20": {"max_per_image": 20},
    "max_per_class=0.2": {"max_per_class": 0.2},
    "max_per_image=20 + max_per_class=0.2 (ILP)": {"max_per_image": 20, "max_per_class": 0.2},
    "click_cost=classes (knapsack)": {"classes_cost": True},
    "click_cost=classes + max_per_image=20 (ILP)": {"max_per_image": 20, "classes_cost": True},
}


def one(case: str, images: int, regions: int, budget: int, classes: int) -> dict:
    import numpy as np

    from adaspx import acquisition

    opts = CASES[case]
    rng = np.random.default_rng(0)
    n = images * regions
    scores = rng.random(n)
    image = np.repeat(np.arange(images, dtype=np.int32), regions)
    share = 0.7 ** np.arange(classes)  # skewed like street scenes: class 0 ~30% of regions, the rarest ~0.01%
    predicted = rng.choice(classes, n, p=share / share.sum())
    costs = rng.integers(1, 4, n) if opts.get("classes_cost") else np.ones(n, dtype=np.int64)
    quota = acquisition.class_quotas(opts.get("max_per_class"), budget, classes)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    limits = acquisition.Limits(image, opts.get("max_per_image"), predicted, quota)
    sel = acquisition.select_under_budget(scores, costs, budget, limits)
    # estimated costs: the workflow adds a reserve of up to a budget's worth of regions (within the limits)
    reserve = acquisition.reserve_after(sel, scores, costs, budget, limits) if opts.get("classes_cost") else sel[:0]
    dt = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "case": case,
        "seconds": round(dt, 2),
        "peak_rss_gb": round(rss / 2**20, 2),
        "inputs_gb": round(rss0 / 2**20, 2),
        "selected": int(sel.size),
        "reserve": int(reserve.size),
        "clicks": int(costs[sel].sum()),
        "score_sum": round(float(scores[sel].sum()), 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=2975)
    ap.add_argument("--regions", type=int, default=8192)
    ap.add_argument("--budget", type=int, default=50_000)
    ap.add_argument("--classes", type=int, default=19)
    ap.add_argument("--case")
    a = ap.parse_args()
    if a.case:
        print(json.dumps(one(a.case, a.images, a.regions, a.budget, a.classes)))
        return
    print(f"pool: {a.images} images x {a.regions} regions = {a.images * a.regions:,} candidates, budget {a.budget}")
    print(f"{'case':48s} {'time s':>7s} {'peak GB':>8s} {'inputs GB':>9s} {'regions':>8s} {'clicks':>7s} reserve")
    for case in CASES:
        cmd = [sys.executable, __file__, "--case", case, "--images", str(a.images), "--regions", str(a.regions),
               "--budget", str(a.budget), "--classes", str(a.classes)]  # fmt: skip
        r = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.splitlines()[-1])
        print(
            f"{case:48s} {r['seconds']:7.2f} {r['peak_rss_gb']:8.2f} {r['inputs_gb']:9.2f} "
            f"{r['selected']:8d} {r['clicks']:7d} {r['reserve']:7d}"
        )


if __name__ == "__main__":
    main()
