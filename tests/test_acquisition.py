import numpy as np
import pytest

from adaspx.acquisition import class_balanced_scores, minmax, random_scores, select_under_budget


def test_top_k_unit_costs_in_rank_order_with_stable_ties():
    scores = np.array([0.1, 0.9, 0.5, 0.9, 0.2])
    sel = select_under_budget(scores, np.ones(5, dtype=int), 3)
    assert sel.tolist() == [1, 3, 2]


def test_budget_zero_and_budget_above_pool(caplog):
    scores = np.array([0.3, 0.1])
    assert select_under_budget(scores, np.ones(2, dtype=int), 0).tolist() == []
    assert sorted(select_under_budget(scores, np.ones(2, dtype=int), 10).tolist()) == [0, 1]
    assert "exceeds" in caplog.text


def test_greedy_skips_what_does_not_fit():
    scores = np.array([0.9, 0.8, 0.7])
    costs = np.array([1, 3, 1])
    assert select_under_budget(scores, costs, 2).tolist() == [0, 2]


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="budget must be >= 0"):
        select_under_budget(np.zeros(2), np.ones(2, dtype=int), -1)
    with pytest.raises(ValueError, match="NaN"):
        select_under_budget(np.array([np.nan, 1.0]), np.ones(2, dtype=int), 1)


def test_class_balanced_prefers_rare_predicted_class_at_equal_uncertainty():
    unc = np.array([0.5, 0.5, 0.0, 1.0])
    pred = np.array([0, 1, 0, 0])
    share = np.array([0.9, 0.1])
    s = class_balanced_scores(unc, pred, share)
    assert s[1] > s[0]
    np.testing.assert_allclose(s, minmax(unc) * np.exp(-share[pred]))


def test_random_scores_are_seeded():
    a = random_scores(5, np.random.default_rng([1, 2]))
    b = random_scores(5, np.random.default_rng([1, 2]))
    np.testing.assert_array_equal(a, b)
    assert minmax(np.array([3.0, 3.0])).tolist() == [1.0, 1.0]
