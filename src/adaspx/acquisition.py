"""Acquisition: score candidate regions, then select under a click budget.

Scoring functions (``*_scores``) only turn per-region statistics into one number per region, higher = query
first; selection (:func:`select_under_budget`) only knows scores and costs. The round loop lives in the workflow.
"""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)

STRATEGIES = ("random", "margin", "class_balanced")


def random_scores(n: int, rng: np.random.Generator) -> np.ndarray:
    """Uniform random scores: a random selection after the top-k cut."""
    return rng.random(n)


def margin_scores(uncertainty: np.ndarray) -> np.ndarray:
    """Mean margin-ratio uncertainty of the region (p_(2) / p_(1), higher = less sure)."""
    return np.asarray(uncertainty, dtype=np.float64)


def minmax(values: np.ndarray) -> np.ndarray:
    """Min-max normalisation over the pool; a constant vector maps to all ones (nothing to rank)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return values
    lo, hi = values.min(), values.max()
    if hi <= lo:
        return np.ones_like(values)
    return (values - lo) / (hi - lo)


def class_balanced_scores(uncertainty: np.ndarray, predicted: np.ndarray, class_share: np.ndarray) -> np.ndarray:
    """Cai et al.'s class-balanced score: ``minmax(u_s) * exp(-p_c)`` for the region's predicted class c.

    ``class_share[c]`` is the share of pool pixels whose per-pixel argmax is c (sums to 1), so rare predicted
    classes weigh more.
    """
    class_share = np.asarray(class_share, dtype=np.float64)
    weights = np.exp(-class_share)
    return minmax(uncertainty) * weights[np.asarray(predicted, dtype=np.int64)]


def select_under_budget(scores: np.ndarray, costs: np.ndarray, budget: int) -> np.ndarray:
    """Indices of the regions to query, in rank order: best score first, taken while their click cost fits the budget.

    Ties keep the candidates' order (stable sort), so a fixed candidate order gives a fixed selection. With
    unit costs this is the plain top-k. A budget above the total cost selects everything, with a warning.
    """
    if budget < 0:
        raise ValueError(f"budget must be >= 0, got {budget}")
    scores = np.asarray(scores, dtype=np.float64)
    costs = np.asarray(costs, dtype=np.int64)
    if scores.shape != costs.shape:
        raise ValueError(f"scores {scores.shape} and costs {costs.shape} differ in shape")
    if np.isnan(scores).any():
        raise ValueError(f"{int(np.isnan(scores).sum())} candidate scores are NaN")
    if budget == 0 or scores.size == 0:
        return np.zeros(0, dtype=np.int64)
    total = int(costs.sum())
    if budget >= total:
        if budget > total:
            log.warning(
                "budget of %d clicks exceeds the %d clicks of the whole candidate pool: selecting all", budget, total
            )
        return np.arange(scores.size, dtype=np.int64)
    order = np.argsort(-scores, kind="stable")
    if np.all(costs == 1):
        return order[:budget]
    # greedy fill: a region that does not fit is skipped and cheaper ones after it are still tried
    chosen, spent = [], 0
    for i in order:
        c = int(costs[i])
        if spent + c <= budget:
            chosen.append(i)
            spent += c
            if spent == budget:
                break
    return np.asarray(chosen, dtype=np.int64)
