"""Paired comparisons with seeded bootstrap intervals, against intervals worked out by hand and by enumeration."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from adaspx.comparisons import COMPARISON_COLUMNS, compare


def _summary(miou: dict[str, list[float]], rounds=(1,), clicks=100) -> pd.DataFrame:
    rows = [
        {"experiment": name, "seed": s, "round": r, "clicks": clicks * (r + 1), "miou": v / 100}
        for name, values in miou.items()
        for r in rounds
        for s, v in enumerate(values)
    ]
    return pd.DataFrame(rows)


def test_two_seeds_give_the_range_of_their_differences():
    # resampling two differences d1 < d2 gives means d1, (d1 + d2) / 2, d2 with chances 1/4, 1/2, 1/4: the 2.5%
    # and 97.5% percentiles are d1 and d2
    table = compare(_summary({"a": [40.0, 45.0], "b": [39.0, 42.0], "c": [41.0, 44.0]}))
    assert list(table.columns) == COMPARISON_COLUMNS
    ab = table[(table.experiment_a == "a") & (table.experiment_b == "b")].iloc[0]
    assert ab["difference"] == pytest.approx(2.0)  # (1 + 3) / 2
    assert (ab["ci_low"], ab["ci_high"]) == pytest.approx((1.0, 3.0))
    assert ab["separated"] and ab["seeds_agreeing"] == 2 and ab["seeds"] == 2 and ab["clicks"] == 200
    ac = table[(table.experiment_a == "a") & (table.experiment_b == "c")].iloc[0]  # -1 and +1
    assert ac["difference"] == pytest.approx(0.0)
    assert (ac["ci_low"], ac["ci_high"]) == pytest.approx((-1.0, 1.0)) and not ac["separated"]
    bc = table[(table.experiment_a == "b") & (table.experiment_b == "c")].iloc[0]  # -2 and -2
    assert (bc["ci_low"], bc["ci_high"]) == (-2.0, -2.0) and bc["separated"] and bc["seeds_agreeing"] == 2


def test_five_seeds_against_the_exact_bootstrap_distribution():
    rng = np.random.default_rng(1)
    a, b = 40 + rng.normal(0, 1.5, 5), 39 + rng.normal(0, 1.5, 5)
    d = a - b
    # every one of the 5^5 resamples is equally likely: the exact distribution of the resampled mean
    means = np.sort([np.mean(d[list(idx)]) for idx in itertools.product(range(5), repeat=5)])
    exact_low, exact_high = np.quantile(means, [0.025, 0.975])
    row = compare(_summary({"a": list(a), "b": list(b)})).iloc[0]
    spread = means[-1] - means[0]
    assert row["ci_low"] == pytest.approx(exact_low, abs=0.03 * spread)
    assert row["ci_high"] == pytest.approx(exact_high, abs=0.03 * spread)
    assert row["seeds_agreeing"] == int(np.sum(np.sign(d) == np.sign(d.mean())))
    assert row["separated"] == bool(row["ci_low"] > 0 or row["ci_high"] < 0)


def test_the_table_is_seeded_and_ignores_row_order():
    rng = np.random.default_rng(2)
    summary = _summary({k: list(40 + rng.normal(0, 2, 6)) for k in ("x", "y", "z")}, rounds=(0, 1, 2))
    first = compare(summary)
    again = compare(summary.sample(frac=1.0, random_state=3))
    pd.testing.assert_frame_equal(first, again)
    assert len(first) == 3 * 3  # 3 pairs x 3 rounds
    other = compare(summary, seed=1)
    assert not np.allclose(first["ci_low"], other["ci_low"])  # the seed is what fixes the draws


def test_only_seeds_and_rounds_both_experiments_ran_are_paired():
    summary = pd.concat(
        [
            _summary({"a": [40.0, 41.0, 60.0]}, rounds=(1, 2)),
            _summary({"b": [39.0, 40.0]}, rounds=(1,)),
        ]
    )
    table = compare(summary)
    assert table["round"].tolist() == [1]
    row = table.iloc[0]
    assert row["seeds"] == 2 and row["difference"] == pytest.approx(1.0)  # seed 2 of a has no partner


def test_one_seed_has_no_interval():
    row = compare(_summary({"a": [40.0], "b": [39.0]})).iloc[0]
    assert np.isnan(row["ci_low"]) and np.isnan(row["ci_high"]) and not row["separated"]
