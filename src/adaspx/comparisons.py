"""Paired comparisons of experiments: is a difference in mIoU more than seed noise?

Experiments of one seed share their warm-up and their first model, so the mIoU of two experiments at the same
round and seed form a pair. For each pair of experiments and each round, :func:`compare` takes the per-seed
differences (percentage points), their mean, a seeded percentile bootstrap interval of that mean
(``scipy.stats.bootstrap`` over the seeds) and the number of seeds whose difference has the mean's sign. With two
seeds the interval is simply the range of the two differences: it separates the experiments only when both seeds
agree, and says nothing about a third.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.stats import bootstrap

COMPARISON_COLUMNS = [
    "experiment_a",
    "experiment_b",
    "round",
    "clicks",
    "seeds",
    "miou_a",
    "miou_b",
    "difference",
    "ci_low",
    "ci_high",
    "seeds_agreeing",
    "separated",
]
"""``comparisons.csv``: mIoU in %, ``difference`` = mean over seeds of a - b, ``[ci_low, ci_high]`` its interval,
``separated``: the interval excludes 0."""


def interval(differences: np.ndarray, rng: np.random.Generator, resamples: int, level: float) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of paired differences; NaN with fewer than two pairs, the value
    itself when they are all equal (no resample can differ)."""
    d = np.asarray(differences, dtype=np.float64)
    if d.size < 2:
        return float("nan"), float("nan")
    if np.all(d == d[0]):
        return float(d[0]), float(d[0])
    ci = bootstrap(
        (d,), np.mean, n_resamples=resamples, confidence_level=level, method="percentile", rng=rng
    ).confidence_interval
    return float(ci.low), float(ci.high)


def agreeing(differences: np.ndarray) -> int:
    """Seeds whose difference has the sign of the mean difference (all of them equal to it when it is 0)."""
    d = np.asarray(differences, dtype=np.float64)
    return int(np.count_nonzero(np.sign(d) == np.sign(d.mean())))


def compare(
    summary: pd.DataFrame,
    experiments: Sequence[str] | None = None,
    *,
    resamples: int = 9999,
    level: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per pair of experiments (in ``experiments`` order, default: their order in ``summary``) and round
    both reached, over the seeds both ran (``summary``: ``summary.csv``'s columns). The bootstrap of pair (i, j)
    at round r draws from ``numpy.random.default_rng([seed, i, j, r])``, so the table is the same on every run."""
    order = list(experiments) if experiments is not None else list(dict.fromkeys(summary["experiment"]))
    by_run = summary.set_index(["experiment", "round", "seed"]).sort_index()
    rows = []
    for i, a in enumerate(order):
        for j in range(i + 1, len(order)):
            b = order[j]
            rounds = sorted(set(summary.loc[summary["experiment"] == a, "round"]) & set(
                summary.loc[summary["experiment"] == b, "round"]
            ))  # fmt: skip
            for r in rounds:
                ra, rb = by_run.loc[(a, r)], by_run.loc[(b, r)]
                seeds = sorted(set(ra.index) & set(rb.index))
                if not seeds:
                    continue
                ma, mb = 100 * ra.loc[seeds, "miou"].to_numpy(), 100 * rb.loc[seeds, "miou"].to_numpy()
                d = ma - mb
                low, high = interval(d, np.random.default_rng([seed, i, j, int(r)]), resamples, level)
                rows.append(
                    {
                        "experiment_a": a,
                        "experiment_b": b,
                        "round": int(r),
                        "clicks": int(round(np.mean(np.r_[ra.loc[seeds, "clicks"], rb.loc[seeds, "clicks"]]))),
                        "seeds": len(seeds),
                        "miou_a": ma.mean(),
                        "miou_b": mb.mean(),
                        "difference": d.mean(),
                        "ci_low": low,
                        "ci_high": high,
                        "seeds_agreeing": agreeing(d),
                        "separated": bool(low > 0 or high < 0),
                    }
                )
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)
