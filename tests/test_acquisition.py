import json
import logging
import math

import numpy as np
import pandas as pd
import pulp
import pytest
from stage_helpers import small_pool

from adaspx import acquisition as acq
from adaspx.acquisition import Limits, class_balanced_scores, minmax, select_under_budget

PROVENANCE = {"experiment": "e", "seed": 0, "round": 1}  # what the workflow passes every round stage


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


def test_costs_without_limits_spend_the_budget_on_score_per_click():
    # greedy by score would take region 0 alone (1.0); two cheap regions carry 1.2 for the same two clicks
    scores, costs = np.array([1.0, 0.6, 0.6]), np.array([2, 1, 1])
    assert select_under_budget(scores, costs, 2).tolist() == [1, 2]
    # the result is reported best score first, whatever order greedy took it in
    scores, costs = np.array([0.9, 0.5, 0.4]), np.array([3, 1, 1])
    assert select_under_budget(scores, costs, 5).tolist() == [0, 1, 2]
    assert select_under_budget(scores, costs, 4).tolist() == [0, 1]  # by score per click: [1, 2], 0.9 < 1.4


def test_knapsack_matches_brute_force_and_skips_the_solver_on_large_budgets(monkeypatch):
    import itertools

    rng = np.random.default_rng(1)
    for _ in range(20):
        scores, costs = rng.random(8), rng.integers(1, 4, 8)
        sel = select_under_budget(scores, costs, 5)
        best = max(
            scores[list(sub)].sum()
            for k in range(9)
            for sub in itertools.combinations(range(8), k)
            if costs[list(sub)].sum() <= 5
        )
        assert costs[sel].sum() <= 5 and scores[sel].sum() == pytest.approx(best, rel=1e-3)

    import pulp

    def no_solver(*args, **kwargs):
        raise AssertionError("CBC should not be needed")

    monkeypatch.setattr(pulp.LpProblem, "solve", no_solver)
    scores, costs = rng.random(20000), rng.integers(1, 4, 20000)
    sel = select_under_budget(scores, costs, 5000)
    assert costs[sel].sum() == 5000 and np.all(np.diff(scores[sel]) <= 0)


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


def test_minmax_hand_values():
    np.testing.assert_allclose(minmax([2.0, 4.0, 3.0, 4.0]), [0.0, 1.0, 0.5, 1.0])
    np.testing.assert_allclose(minmax([-1.0, 0.0, 3.0]), [0.0, 0.25, 1.0])
    # a constant pool has nothing to rank: every value maps to 1 (not 0, not NaN from 0 / 0)
    np.testing.assert_array_equal(minmax([3.0, 3.0, 3.0]), [1.0, 1.0, 1.0])
    np.testing.assert_array_equal(minmax([0.7]), [1.0])
    assert minmax(np.zeros(0)).shape == (0,)
    # so class-balanced scores of equally uncertain regions are the class weights exp(-p_c) alone
    np.testing.assert_allclose(class_balanced_scores([0.4, 0.4], [0, 1], [0.9, 0.1]), np.exp([-0.9, -0.1]))


# ------------------------------------------------------------------------------------------ more scores


def test_pixel_entropy_hand_values():
    p = np.array([[0.5, 1.0, 0.25], [0.5, 0.0, 0.25], [0.0, 0.0, 0.5]])  # classes x pixels
    np.testing.assert_allclose(acq.pixel_entropy(p, axis=0), [np.log(2), 0.0, 1.5 * np.log(2)])


def test_pixel_share_and_cai_region_share():
    np.testing.assert_allclose(acq.pixel_share([30, 10, 0, 60]), [0.3, 0.1, 0.0, 0.6])
    # Cai et al.: the share of regions, whatever their size; -1 (no prediction) ignored
    np.testing.assert_allclose(acq.region_share(np.array([0, 0, 1, 2, -1]), 4), [0.5, 0.25, 0.25, 0.0])


def test_official_share_is_the_literal_reference_formula():
    # 2 Cityscapes images predicted at half resolution (512 x 1024 = 524288 px each), 3/4 road, 1/4 car
    half = np.array([2 * 393216, 2 * 131072])
    share = acq.official_share(half, n_images=2)
    np.testing.assert_allclose(share, [393216 / 2097152, 131072 / 2097152])  # 0.1875, 0.0625
    assert share.sum() == pytest.approx(0.25)  # the hard-coded full-resolution denominator: 4x too small
    intended = acq.pixel_share(half)
    np.testing.assert_allclose(share, intended / 4)
    # the weights exp(-p_c) are correspondingly flatter than intended
    w_official, w_intended = np.exp(-share), np.exp(-intended)
    assert w_official[1] / w_official[0] < w_intended[1] / w_intended[0]


def test_class_balanced_variants_weight_by_their_shares():
    unc = np.array([0.2, 0.6, 1.0])
    pred = np.array([0, 1, 1])
    share = acq.region_share(pred, 2)  # [1/3, 2/3]
    s = acq.class_balanced_scores(unc, pred, share)
    np.testing.assert_allclose(s, [0.0, 0.5 * np.exp(-2 / 3), np.exp(-2 / 3)])


def test_size_weights():
    np.testing.assert_allclose(acq.size_weights(np.array([1, 3]), 1.0), [0.5, 1.5])
    np.testing.assert_allclose(acq.size_weights(np.array([1, 4]), 0.5), [np.sqrt(0.4), np.sqrt(1.6)])
    np.testing.assert_array_equal(acq.size_weights(np.array([1, 3]), 0.0), [1.0, 1.0])


def test_click_cost_models():
    np.testing.assert_array_equal(acq.click_costs("region", 3), [1, 1, 1])
    np.testing.assert_array_equal(acq.click_costs("classes", 3, np.array([2, 0, 3])), [2, 1, 3])
    np.testing.assert_array_equal(acq.click_costs("classes", 2, None), [1, 1])  # no model: 1 per region
    with pytest.raises(ValueError, match="click cost 'area' unknown"):
        acq.click_costs("area", 2)


def test_class_quotas():
    np.testing.assert_array_equal(acq.class_quotas(0.25, 10, 3), [3, 3, 3])  # ceil(2.5)
    assert acq.class_quotas(None, 10, 3) is None
    with pytest.raises(ValueError, match="share of the budget"):
        acq.class_quotas(1.5, 10, 3)


# ------------------------------------------------------------------------------------------- selection


def _greedy_value(scores, sel):
    return float(np.asarray(scores)[sel].sum())


def test_ilp_beats_greedy_with_image_cap_and_class_quota():
    # greedy takes 0.9 (image 0, class 0), then cannot take 0.8 (image 0 full) nor 0.7 (class 0 full): 0.9 + 0.1
    scores = np.array([0.9, 0.8, 0.7, 0.1])
    images, classes = np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1])
    limits = Limits(images=images, max_per_image=1, classes=classes, class_quota=np.array([1, 1]))
    sel = select_under_budget(scores, np.ones(4, int), 2, limits)
    assert sel.tolist() == [1, 2]  # 0.8 + 0.7 = 1.5 > 1.0


def test_ilp_beats_greedy_with_costs_and_a_cap():
    scores = np.array([1.0, 0.6, 0.6])
    costs = np.array([2, 1, 1])
    sel = select_under_budget(scores, costs, 2, Limits(images=np.array([0, 1, 2]), max_per_image=1))
    assert sorted(sel.tolist()) == [1, 2]  # 1.2 > greedy's 1.0


def test_single_limit_with_unit_costs_is_greedy_and_optimal():
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    images = np.array([0, 0, 0, 1, 1])
    sel = select_under_budget(scores, np.ones(5, int), 3, Limits(images=images, max_per_image=2))
    assert sel.tolist() == [0, 1, 3]
    classes = np.array([0, 0, 1, 0, 1])
    sel = select_under_budget(scores, np.ones(5, int), 3, Limits(classes=classes, class_quota=np.array([1, 5])))
    assert sel.tolist() == [0, 2, 4]


def test_ilp_matches_brute_force_on_small_random_cases():
    import itertools

    rng = np.random.default_rng(0)
    for _ in range(15):
        n = 8
        scores, costs = rng.random(n), rng.integers(1, 3, n)
        images, classes = rng.integers(0, 3, n), rng.integers(0, 2, n)
        budget, cap, quota = 4, 2, np.array([3, 3])
        limits = Limits(images=images, max_per_image=cap, classes=classes, class_quota=quota)
        sel = select_under_budget(scores, costs, budget, limits)
        best = 0.0
        for k in range(n + 1):
            for sub in itertools.combinations(range(n), k):
                s = list(sub)
                if costs[s].sum() > budget or (k and np.bincount(images[s]).max() > cap):
                    continue
                if k and (np.bincount(classes[s], weights=costs[s], minlength=2) > quota).any():
                    continue
                best = max(best, scores[s].sum())
        assert costs[sel].sum() <= budget
        assert scores[sel].sum() == pytest.approx(best, rel=1e-3)


def test_ilp_passes_gap_and_time_limit(monkeypatch):
    seen = {}
    real = pulp.PULP_CBC_CMD

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(pulp, "PULP_CBC_CMD", spy)
    scores = np.array([0.9, 0.8, 0.7, 0.1])
    images, classes = np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1])
    limits = Limits(images=images, max_per_image=1, classes=classes, class_quota=np.array([1, 1]))
    select_under_budget(scores, np.ones(4, int), 2, limits, gap_rel=0.01, time_limit=3)
    assert seen["gapRel"] == 0.01 and seen["timeLimit"] == 3


def test_solver_without_solution_falls_back_to_greedy(monkeypatch, caplog):
    def no_solution(self, solver=None, **kwargs):
        self.status, self.sol_status = pulp.LpStatusNotSolved, pulp.LpSolutionNoSolutionFound
        return self.status

    monkeypatch.setattr(pulp.LpProblem, "solve", no_solution)
    scores = np.array([0.9, 0.8, 0.7, 0.1])
    with caplog.at_level(logging.WARNING):
        limits = Limits(np.array([0, 0, 1, 1]), 1, np.array([0, 1, 0, 1]), np.array([1, 1]))
        sel = select_under_budget(scores, np.ones(4, int), 2, limits)
    assert sel.tolist() == [0, 3]  # greedy's choice
    assert "falling back to greedy" in caplog.text


def test_fractional_lp_with_no_integer_solution_rounds_down_and_fills(monkeypatch, caplog):
    calls = []
    real = pulp.LpProblem.solve

    def lp_then_nothing(self, solver=None, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            return real(self, solver, **kwargs)
        self.status, self.sol_status = pulp.LpStatusNotSolved, pulp.LpSolutionNoSolutionFound
        return self.status

    monkeypatch.setattr(pulp.LpProblem, "solve", lp_then_nothing)
    # LP optimum: x0 = 1, x1 = 0.5 (costs 2 + 2 > budget 3); rounding down keeps 0, filling adds the cost-1 region
    scores, costs = np.array([1.0, 0.9, 0.1]), np.array([2, 2, 1])
    with caplog.at_level(logging.WARNING):
        sel = select_under_budget(scores, costs, 3, Limits(images=np.array([0, 1, 2]), max_per_image=1))
    assert len(calls) == 2 and "rounded-down LP solution" in caplog.text
    assert sorted(sel.tolist()) == [0, 2]


def test_limits_validate():
    with pytest.raises(ValueError, match="max_per_image needs one image index"):
        select_under_budget(np.zeros(2), np.ones(2, int), 1, Limits(max_per_image=1))
    with pytest.raises(ValueError, match=r"classes must lie in \[0, 2\)"):
        select_under_budget(
            np.zeros(2), np.ones(2, int), 1, Limits(classes=np.array([0, 2]), class_quota=np.array([1, 1]))
        )
    with pytest.raises(ValueError, match="click costs must be >= 1"):
        select_under_budget(np.zeros(2), np.array([1, 0]), 1)


def test_rank_order_is_a_stable_top_k():
    rng = np.random.default_rng(1)
    s = rng.integers(0, 5, 200).astype(float)
    for k in (0, 1, 17, 200):
        np.testing.assert_array_equal(acq._rank_order(s, k), np.argsort(-s, kind="stable")[:k])


# ------------------------------------------------------------------------------------ the acquire stage


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    """A 3-image synthetic pool with SLIC superpixels, a probabilities artifact and an empty answer map."""
    d = tmp_path_factory.mktemp("pool")
    rng = np.random.default_rng(0)

    def random_probs(gt, c):
        p = rng.random((c, *gt.shape)).astype(np.float32) ** 4
        return p / p.sum(axis=0)

    small_pool(d, seed=1, n_segments=12, probs=random_probs)
    return d


def _acquire(pool, out, **kw):
    from adaspx import pipeline

    args = {"strategy": "class_balanced", "budget": 5, "experiment": "e", "seed": 0, "round": 1, **kw}
    answers = args.pop("answers", None)
    probs = args.pop("probs", [str(pool / "probs.h5")])
    pipeline.acquire(pool / "manifest.json", [str(pool / "base.h5")], probs, answers, out, **args)
    return pd.read_csv(out, dtype={"image": str}) if out.exists() else None


@pytest.mark.parametrize("strategy", acq.STRATEGIES)
def test_every_strategy_selects_the_budget(pool, tmp_path, strategy):
    sel = _acquire(pool, tmp_path / "sel.csv", strategy=strategy, size_exponent=0.5)
    assert len(sel) == 5 and sel["clicks"].sum() == 5
    assert sel["score"].is_monotonic_decreasing


def _candidates(pool):
    """Every pool region as (image, region), in the stage's candidate order (pool order, ids ascending), and the
    brute-force mean per-pixel entropy of each under the pool's probabilities (0 log 0 = 0)."""
    from adaspx import pipeline
    from adaspx.h5io import Artifact

    manifest = json.loads((pool / "manifest.json").read_text())
    keys, entropy = [], []
    with Artifact(pool / "base.h5") as base, Artifact(pool / "probs.h5") as probs:
        for image_id in pipeline.pool_ids(manifest):
            labels = base.get("labels", image_id)
            p = probs.get("probs", image_id).astype(np.float64)
            p /= p.sum(axis=0)
            ent = -(p * np.log(np.where(p > 0, p, 1.0))).sum(axis=0)
            for region in np.unique(labels):
                keys.append((image_id, int(region)))
                entropy.append(ent[labels == region].mean())
    return keys, np.asarray(entropy)


def test_random_acquisition_depends_only_on_seed_and_round(pool, tmp_path):
    from adaspx import pipeline

    keys, _ = _candidates(pool)
    runs = {}
    for seed, rnd in [(0, 1), (0, 1), (1, 1), (0, 2), (7, 3)]:
        sel = _acquire(pool, tmp_path / f"sel{len(runs)}.csv", strategy="random", budget=5, seed=seed, round=rnd)
        picked = list(zip(sel["image"], sel["region"], strict=True))
        # uniform scores drawn from a generator seeded by [seed, round], one per candidate in candidate order;
        # the budget takes the best 5 (pinned, so a run can be reproduced from its seed and round)
        draws = np.random.default_rng([seed, rnd]).random(len(keys))
        best = np.argsort(-draws, kind="stable")[:5]
        assert picked == [keys[i] for i in best]
        np.testing.assert_array_equal(sel["score"].to_numpy(), draws[best])
        runs.setdefault((seed, rnd), []).append(picked)
    assert runs[(0, 1)][0] == runs[(0, 1)][1]  # the same seed and round select the same regions
    distinct = {tuple(sorted(v[0])) for v in runs.values()}
    assert len(distinct) == len(runs)  # another seed or another round selects other regions
    # no model enters a random selection: without the probabilities it is the same
    out = tmp_path / "no_probs.csv"
    pipeline.acquire(pool / "manifest.json", [str(pool / "base.h5")], [], None, out, strategy="random", budget=5,
                     experiment="e", seed=1, round=1)  # fmt: skip
    no_probs = pd.read_csv(out, dtype={"image": str})
    assert list(zip(no_probs["image"], no_probs["region"], strict=True)) == runs[(1, 1)][0]


def test_entropy_acquisition_selects_the_highest_mean_entropy(pool, tmp_path):
    keys, entropy = _candidates(pool)
    sel = _acquire(pool, tmp_path / "sel.csv", strategy="entropy", budget=6)
    best = np.argsort(-entropy, kind="stable")[:6]
    assert list(zip(sel["image"], sel["region"], strict=True)) == [keys[i] for i in best]
    np.testing.assert_allclose(sel["score"].to_numpy(), entropy[best], rtol=1e-5)


def test_mulactseg_scores_by_hand():
    # one 1x4 image, regions [0, 0, 1, 1], two classes; per pixel (p_0, p_1) and, at temperature 0.1, the tempered
    # probabilities q = p^10 / sum p^10, BvSB q_(2) / q_(1) + 1e-8 = (p_(2) / p_(1))^10 + 1e-8 and the argmax class:
    #   (0.5, 0.5): q = (1/2, 1/2), BvSB 1 + 1e-8, class 0;  (0.8, 0.2): q = (1, e) / (1 + e), BvSB e + 1e-8, class 0
    #   (0.2, 0.8) twice: q = (e, 1) / (1 + e), BvSB e + 1e-8, class 1;  e = (1/4)^10 = 2^-20
    from adaspx.merge import region_stats

    labels = np.array([[0, 0, 1, 1]])
    probs = np.array([[[0.5, 0.8, 0.2, 0.2]], [[0.5, 0.2, 0.8, 0.8]]], dtype=np.float32)
    cols, per_image = acq.region_features(
        labels, probs, region_stats(labels, probs, channel_axis=0), 1, ["tempered_bvsb"]
    )
    e, eps = 2.0**-20, 1e-8
    np.testing.assert_allclose(cols["bvsb_by_class"], [[1 + eps + e + eps, 0], [0, 2 * (e + eps)]], rtol=1e-12)
    q = [0.5 + (1 + 2 * e) / (1 + e), 0.5 + (2 + e) / (1 + e)]  # tempered probabilities summed over the pixels
    np.testing.assert_allclose(per_image["tempered_probs"], q, rtol=1e-12)
    # p_c = q_c / 4 pixels ~ (0.375, 0.625): weights (6 p_c + 1)^-2 ~ (1 / 3.25^2, 1 / 4.75^2)
    w = [(6 * q[0] / 4 + 1) ** -2, (6 * q[1] / 4 + 1) ** -2]
    np.testing.assert_allclose(acq.mulactseg_class_weights(per_image["tempered_probs"]), w, rtol=1e-12)
    assert w[0] == pytest.approx(1 / 3.25**2, rel=1e-5) and w[1] == pytest.approx(1 / 4.75**2, rel=1e-5)
    pool = acq.Pool(cols | {"size": np.array([2, 2])}, per_image, np.zeros(2, int), n_images=1, num_classes=2)
    scores = acq.STRATEGIES["mulactseg"].scores(pool, np.random.default_rng(0))
    expected = [(w[0] * (1 + eps) + w[0] * (e + eps)) / 2, (w[1] * (e + eps) * 2) / 2]  # pixel mean per region
    np.testing.assert_allclose(scores, expected, rtol=1e-12)


def _mulactseg_brute_force(pool):
    """MulActSeg's score of every pool region, pixel by pixel, from logits log p: tempered softmax q =
    softmax(log p / 0.1), BvSB q_(2) / q_(1) + 1e-8, p_c the mean of q_c over every pool pixel, weight
    (6 p_c + 1)^-2 of the pixel's argmax class, and the region's mean of BvSB x weight."""
    from adaspx import pipeline
    from adaspx.h5io import Artifact

    manifest = json.loads((pool / "manifest.json").read_text())
    images = []
    with Artifact(pool / "base.h5") as base, Artifact(pool / "probs.h5") as probs:
        for image_id in pipeline.pool_ids(manifest):
            p = probs.get("probs", image_id).astype(np.float64)
            images.append((image_id, base.get("labels", image_id), p / p.sum(axis=0)))
    tempered, bvsb, top1 = [], [], []
    for _, _, p in images:
        with np.errstate(divide="ignore"):
            z = np.log(p) / 0.1
        q = np.exp(z - z.max(axis=0))
        q /= q.sum(axis=0)
        ranked = np.sort(q, axis=0)
        tempered.append(q.reshape(len(q), -1))
        bvsb.append(ranked[-2] / ranked[-1] + 1e-8)
        top1.append(p.argmax(axis=0))
    share = np.concatenate(tempered, axis=1).mean(axis=1)
    weight = (6 * share + 1) ** -2
    keys, scores, unweighted = [], [], []
    for (image_id, labels, _), b, t in zip(images, bvsb, top1, strict=True):
        for region in np.unique(labels):
            inside = labels == region
            keys.append((image_id, int(region)))
            scores.append((b[inside] * weight[t[inside]]).mean())
            unweighted.append(b[inside].mean())
    return keys, np.asarray(scores), np.asarray(unweighted)


def test_mulactseg_acquisition_selects_the_highest_weighted_bvsb(pool, tmp_path):
    keys, scores, unweighted = _mulactseg_brute_force(pool)
    sel = _acquire(pool, tmp_path / "sel.csv", strategy="mulactseg", budget=6)
    best = np.argsort(-scores, kind="stable")[:6]
    assert list(zip(sel["image"], sel["region"], strict=True)) == [keys[i] for i in best]
    np.testing.assert_allclose(sel["score"].to_numpy(), scores[best], rtol=1e-4)
    # the scores carry the class weights: unweighted, they would be off by more than the tolerance
    assert np.abs(scores[best] / unweighted[best] - 1).min() > 1e-2


def test_zero_budget_selects_nothing(pool, tmp_path):
    sel = _acquire(pool, tmp_path / "sel.csv", budget=0)
    assert len(sel) == 0 and "region" in sel.columns


def test_nan_probabilities_name_file_and_image(pool, tmp_path):
    import shutil

    import h5py

    bad = tmp_path / "probs.h5"
    shutil.copy(pool / "probs.h5", bad)
    with h5py.File(bad, "r+") as f:
        name = sorted(f["probs"])[1]
        arr = f["probs"][name][()]
        arr[0, 3, 3] = np.nan
        f["probs"][name][...] = arr
    from adaspx import pipeline

    out = tmp_path / "sel.csv"
    with pytest.raises(ValueError, match=rf"probs\.h5: image {name}: probabilities of 1 pixels are NaN"):
        pipeline.acquire(pool / "manifest.json", [str(pool / "base.h5")], [str(bad)], None, out,
                         strategy="margin", budget=3, experiment="e", seed=0, round=1)  # fmt: skip
    assert not out.exists()


def test_excluded_regions_are_never_selected_and_cost_nothing(pool, tmp_path, caplog):
    from adaspx.artifacts import SCHEMA_ANSWERS, add_answer_map
    from adaspx.h5io import Artifact, ArtifactWriter

    with Artifact(pool / "base.h5") as base:
        n = sum(np.unique(base.get("labels", name)).size for name in base.names("labels"))
    everything = _acquire(pool, tmp_path / "all.csv", budget=n)  # every region of the pool
    assert len(everything) == n
    # answer the 4 best regions fully
    top = everything.head(4)
    with Artifact(pool / "base.h5") as base, ArtifactWriter(tmp_path / "answers.h5", SCHEMA_ANSWERS) as w:
        for image_id in base.names("labels"):
            labels = base.get("labels", image_id)
            amap = np.zeros(labels.shape, np.uint16)
            mine = top[top["image"] == image_id]
            for k, r in enumerate(mine["region"]):
                amap[labels == r] = k + 1
            add_answer_map(w, image_id, amap, mine.index.to_numpy())
    ans = str(tmp_path / "answers.h5")
    with caplog.at_level(logging.WARNING):  # more than the unanswered regions cost: all of them, with a warning
        sel = _acquire(pool, tmp_path / "excl.csv", budget=n, answers=ans, exclude_labeled=0.5)
    assert len(sel) == n - 4 and sel["clicks"].sum() == n - 4  # the whole budget goes to the rest
    assert f"budget of {n} clicks exceeds the {n - 4} clicks of the whole candidate pool" in caplog.text
    assert not set(zip(top["image"], top["region"], strict=True)) & set(zip(sel["image"], sel["region"], strict=True))
    again = _acquire(pool, tmp_path / "re.csv", budget=4, answers=ans, exclude_labeled=None)
    assert again[["image", "region"]].values.tolist() == top[["image", "region"]].values.tolist()  # reference


def test_classes_cost_and_limits_in_the_stage(pool, tmp_path):
    # random probabilities: every region is predicted to hold most of the 8 classes, so costs are high
    sel = _acquire(pool, tmp_path / "sel.csv", budget=40, click_cost="classes", max_per_image=2, max_per_class=0.5)
    chosen = sel[~sel["reserve"]]
    assert 1 <= len(chosen) and chosen["clicks"].sum() <= 40 and (sel["clicks"] > 1).all()
    # the reserve follows the selection, and the limits hold with every reserve region answered too
    assert sel["rank"].tolist() == list(range(len(sel))) and not sel["reserve"].iloc[: len(chosen)].any()
    assert sel.groupby("image").size().max() <= 2
    assert sel.groupby("predicted")["clicks"].sum().max() <= 20
    # unit costs are exact: no reserve
    assert not _acquire(pool, tmp_path / "unit.csv", budget=5)["reserve"].any()
    with pytest.raises(ValueError, match="click cost 'x' unknown"):
        _acquire(pool, tmp_path / "bad.csv", click_cost="x")


def test_random_selection_estimates_costs_and_keeps_quotas_with_a_model(pool, tmp_path):
    """Random scores use no model, but with class costs or quotas the selection estimates clicks and keeps the
    quota from the model's predictions like every strategy; with no model at hand (the warm-up) each region is
    estimated at 1 click and no quota applies."""
    from adaspx.h5io import Artifact

    sel = _acquire(pool, tmp_path / "sel.csv", strategy="random", budget=30, click_cost="classes", max_per_class=0.3)
    with Artifact(pool / "base.h5") as base, Artifact(pool / "probs.h5") as probs:
        for image_id, region, clicks, predicted in sel[["image", "region", "clicks", "predicted"]].itertuples(False):
            inside = base.get("labels", image_id) == region
            argmax = probs.get("probs", image_id).astype(np.float32).argmax(axis=0)[inside]
            assert clicks == len(np.unique(argmax))  # distinct per-pixel argmax classes in the region
            assert predicted == np.bincount(argmax).argmax()  # the region's most frequent one
    assert sel.groupby("predicted")["clicks"].sum().max() <= math.ceil(0.3 * 30)
    warmup = _acquire(pool, tmp_path / "warmup.csv", strategy="random", budget=10, click_cost="classes",
                      max_per_class=0.3, probs=[], round=0)  # fmt: skip
    assert (warmup["clicks"] == 1).all() and (warmup["predicted"] == -1).all()
    assert (~warmup["reserve"]).sum() == 10  # 1 click each, no quota of ceil(0.3 * 10) = 3 on one class
    # adaptive regions carry the model's statistics: no probabilities needed for the estimates
    from adaspx import pipeline

    regions = tmp_path / "regions.h5"
    pipeline.merge_superpixels(pool / "base.h5", pool / "probs.h5", regions, eps=0.05, **PROVENANCE)
    adaptive = tmp_path / "adaptive.csv"
    pipeline.acquire(pool / "manifest.json", [str(regions)], [], None, adaptive, strategy="random", budget=30,
                     click_cost="classes", **PROVENANCE)  # fmt: skip
    assert (pd.read_csv(adaptive)["clicks"] > 1).any()


def test_reserve_follows_the_selection_within_limits():
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    costs = np.array([1, 1, 2, 1, 1, 1])
    images = np.array([0, 0, 1, 1, 2, 2])
    assert acq.reserve_after(np.array([0]), scores, costs, 3).tolist() == [1, 3, 4]  # by score per click
    assert acq.reserve_after(np.array([0]), scores, costs, 9, Limits(images=images, max_per_image=1)).tolist() == [3, 4]
    quota = np.array([2, 9])
    classes = np.array([0, 0, 1, 0, 1, 1])
    got = acq.reserve_after(np.array([0]), scores, costs, 9, Limits(classes=classes, class_quota=quota))
    assert got.tolist() == [1, 4, 5, 2]  # class 0 has one click left after region 0: region 1 takes it
    assert acq.reserve_after(np.arange(6), scores, costs, 3).size == 0
    # the limits bound the reserve: with a cap of 2, image 0 is full and images 1 and 2 take two more each; with a
    # cap of 1, only image 2 has room
    capped = Limits(images=images, max_per_image=2)
    assert acq.reserve_after(np.array([0, 1]), scores, costs, 9, capped).tolist() == [3, 4, 5, 2]
    capped = Limits(images=images, max_per_image=1)
    assert acq.reserve_after(np.array([0, 2]), scores, costs, 9, capped).tolist() == [4]


def test_a_budget_of_the_whole_pool_selects_every_region_and_one_above_it_is_refused(pool, tmp_path):
    from adaspx.h5io import Artifact

    with Artifact(pool / "base.h5") as base:
        regions = sum(np.unique(base.get("labels", name)).size for name in base.names("labels"))
    sel = _acquire(pool, tmp_path / "sel.csv", budget=regions)
    assert len(sel) == regions and sel[["image", "region"]].drop_duplicates().shape[0] == regions
    message = (
        f"budget of {regions + 50} clicks exceeds the {regions} clicks of all {regions} regions of the pool "
        r"\(3 images\): lower al.warmup_clicks / al.clicks_per_round"
    )
    with pytest.raises(ValueError, match=message):
        _acquire(pool, tmp_path / "over.csv", budget=regions + 50)
    assert not (tmp_path / "over.csv").exists()


# ------------------------------------------------------------- statistics computed once, read by acquire


def _without_stats(src, dst):
    """A copy of a regions artifact without its statistics tables (as base superpixels are)."""
    import h5py

    with h5py.File(src) as f, h5py.File(dst, "w") as g:
        for key, value in f.attrs.items():
            g.attrs[key] = value
        f.copy(f["labels"], g, "labels")


@pytest.mark.parametrize("strategy", acq.STRATEGIES)
def test_statistics_stored_by_merge_select_as_computed_ones(pool, tmp_path, strategy):
    # acquire reads the adaptive regions' statistics from merge_superpixels instead of the probabilities; the
    # selection must be the one computed from the probabilities (stored sums are added up from the base regions',
    # so scores agree up to float64 rounding)
    from adaspx import pipeline

    regions = tmp_path / "regions.h5"
    features = acq.STRATEGIES[strategy].features
    pipeline.merge_superpixels(pool / "base.h5", pool / "probs.h5", regions, eps=0.05, features=features,
                               **PROVENANCE)  # fmt: skip
    _without_stats(regions, tmp_path / "plain.h5")
    args = dict(strategy=strategy, budget=6, **PROVENANCE, click_cost="classes", size_exponent=0.5)
    stored, computed = tmp_path / "stored.csv", tmp_path / "computed.csv"
    # random selection uses a model's statistics (class cost estimates) only when given probabilities
    probs = [str(pool / "probs.h5")] if strategy == "random" else []
    pipeline.acquire(pool / "manifest.json", [str(regions)], probs, None, stored, **args)
    pipeline.acquire(pool / "manifest.json", [str(tmp_path / "plain.h5")], [str(pool / "probs.h5")], None,
                     computed, **args)  # fmt: skip
    got, expected = pd.read_csv(stored), pd.read_csv(computed)
    floats = ["score", "uncertainty"]
    pd.testing.assert_frame_equal(got.drop(columns=floats), expected.drop(columns=floats))
    np.testing.assert_allclose(got[floats].to_numpy(), expected[floats].to_numpy(), rtol=1e-12)
    if strategy != "random":  # without statistics or probabilities, a model-based score cannot be computed
        with pytest.raises(ValueError, match=r"plain\.h5: image \S+: no region statistics"):
            pipeline.acquire(pool / "manifest.json", [str(tmp_path / "plain.h5")], [], None, tmp_path / "x.csv",
                             **args)  # fmt: skip
        assert not (tmp_path / "x.csv").exists()


def test_merge_statistics_equal_region_stats_of_the_merged_map(pool, tmp_path):
    from adaspx import pipeline
    from adaspx.h5io import Artifact
    from adaspx.merge import region_stats

    regions = tmp_path / "regions.h5"
    pipeline.merge_superpixels(pool / "base.h5", pool / "probs.h5", regions, eps=0.05,
                               features=["entropy"], **PROVENANCE)  # fmt: skip
    with Artifact(regions) as r, Artifact(pool / "probs.h5") as p:
        stats, per_image = r.table("stats"), r.table("image_stats")
        for j, name in enumerate(per_image["image"].astype(str)):
            rows = slice(per_image["start"][j], per_image["start"][j] + per_image["count"][j])
            assert (stats["image"][rows] == j).all()
            merged = r.get("labels", name)
            probs = p.get("probs", name).astype(np.float32)
            probs /= probs.sum(axis=0)
            direct = region_stats(merged, probs, channel_axis=0)
            np.testing.assert_array_equal(stats["region"][rows], direct.ids)
            np.testing.assert_array_equal(stats["size"][rows], direct.counts)
            np.testing.assert_allclose(stats["uncertainty"][rows], direct.uncertainty, rtol=1e-12)
            np.testing.assert_array_equal(stats["predicted"][rows], direct.predicted)
            # brute force: distinct argmax classes, argmax pixel counts, mean entropy per region
            am = probs.argmax(axis=0)
            p64 = probs.astype(np.float64)
            ent = -(p64 * np.log(np.where(p64 > 0, p64, 1.0))).sum(axis=0)  # 0 log 0 = 0
            for k, rid in enumerate(direct.ids):
                inside = merged == rid
                assert stats["classes"][rows][k] == len(np.unique(am[inside]))
                assert stats["entropy"][rows][k] == pytest.approx(ent[inside].mean(), rel=1e-5)
            assert per_image["class_pixels"][j].tolist() == np.bincount(am.ravel(), minlength=probs.shape[0]).tolist()
            # the reference's class counts: each region's size under its most frequent argmax class
            by_mode = np.zeros(probs.shape[0], np.int64)
            for rid in direct.ids:
                inside = merged == rid
                values, counts = np.unique(am[inside], return_counts=True)
                by_mode[values[counts.argmax()]] += inside.sum()
            assert per_image["region_class_pixels"][j].tolist() == by_mode.tolist()


def test_region_statistics_do_not_depend_on_the_thread_count(tmp_path):
    # the acquire stage's statistics (region_stats) are bit-identical whatever OMP_NUM_THREADS says
    import os
    import subprocess
    import sys

    rng = np.random.default_rng(5)
    labels = (np.arange(300)[:, None] // 7 * 50 + np.arange(400)[None, :] // 9).astype(np.int32)
    probs = rng.random((19, 300, 400)).astype(np.float32) ** 3
    probs /= probs.sum(axis=0)
    np.save(tmp_path / "labels.npy", labels)
    np.save(tmp_path / "probs.npy", probs)
    code = (
        "import sys, numpy as np; from adaspx.merge import region_stats; d = sys.argv[1]; "
        "s = region_stats(np.load(d + '/labels.npy'), np.load(d + '/probs.npy'), channel_axis=0); "
        "sys.stdout.write((s.mean_probs.tobytes() + s.uncertainty.tobytes()).hex()[:0] + "
        "__import__('hashlib').sha256(s.mean_probs.tobytes() + s.uncertainty.tobytes()).hexdigest())"
    )
    digests = set()
    for threads in ("1", "2", "5"):
        env = {**os.environ, "OMP_NUM_THREADS": threads}
        out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], env=env, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        digests.add(out.stdout)
    assert len(digests) == 1


def test_mulactseg_tempers_the_logits_whatever_temperature_the_probabilities_were_predicted_at():
    # probabilities of a model trained at temperature 0.1 are softmax(z / 0.1); MulActSeg's tempering is
    # softmax(z / 0.1) in all, so those probabilities are tempered no further
    from adaspx.merge import region_stats

    rng = np.random.default_rng(3)
    z = rng.normal(0, 1, (4, 6, 8))
    labels = np.repeat(np.arange(4), 12).reshape(6, 8)
    plain = np.exp(z) / np.exp(z).sum(axis=0)
    sharp = np.exp(z / 0.1) / np.exp(z / 0.1).sum(axis=0)
    got = {}
    for name, p, t in (("plain", plain, 1.0), ("sharp", sharp, 0.1)):
        stats = region_stats(labels, p, channel_axis=0)
        got[name] = acq.region_features(labels, p, stats, 1, ["tempered_bvsb"], probs_temperature=t)
    np.testing.assert_allclose(got["sharp"][0]["bvsb_by_class"], got["plain"][0]["bvsb_by_class"], rtol=1e-9)
    np.testing.assert_allclose(got["sharp"][1]["tempered_probs"], got["plain"][1]["tempered_probs"], rtol=1e-9)


# ------------------------------------------------------------------------------------ fidelity: official


def test_official_class_balanced_scores_hand_values():
    # u / max u over the whole pool (0.8 belongs to an answered region, not a candidate), times exp(-p_c); a region
    # without a class (vanished on the statistics grid) has weight 1
    share = np.array([0.5, 0.1])
    got = acq.official_class_balanced_scores(
        np.array([0.4, 0.2, 0.0]), np.array([0, 1, -1]), np.array([0.8, 0.4]), share
    )
    np.testing.assert_allclose(got, [0.5 * np.exp(-0.5), 0.25 * np.exp(-0.1), 0.0])


def test_probabilities_grid_shrinks_the_map_as_the_reference_and_vanished_regions_score_zero():
    # a 4x6 map whose 1-pixel region 9 falls between zoom's samples; probabilities at stride 2 (2x3)
    labels = np.array([[1, 1, 2, 2, 3, 3], [1, 9, 2, 2, 3, 3], [4, 4, 4, 5, 5, 5], [4, 4, 4, 5, 5, 5]], np.int32)
    probs = np.array(
        [[[0.6, 0.7, 0.2], [0.9, 0.5, 0.1]], [[0.3, 0.2, 0.7], [0.05, 0.4, 0.8]], [[0.1, 0.1, 0.1], [0.05, 0.1, 0.1]]],
        np.float32,
    )
    cols, per_image = acq.grid_features(labels, probs, 2, (), "probabilities")
    from scipy.ndimage import zoom

    small = zoom(labels, 0.5, order=0)  # as the reference shrinks it: rows 0 and 3 (not every second one)
    assert small[:, 0].tolist() == [1, 4] and 9 not in small
    top2 = np.sort(probs, axis=0)
    u = top2[-2] / top2[-1]
    pred = probs.argmax(axis=0)
    assert cols["region"].tolist() == [1, 2, 3, 4, 5, 9] and cols["size"].tolist() == [3, 4, 4, 6, 6, 1]
    for k, rid in enumerate(cols["region"]):
        inside = small == rid
        if rid == 9:  # vanished: u 0, no class
            assert cols["uncertainty"][k] == 0 and cols["predicted"][k] == -1
            continue
        assert cols["uncertainty"][k] == pytest.approx(u[inside].mean())
        assert cols["predicted"][k] == np.bincount(pred[inside]).argmax()
    # the reference's class counts: grid sizes by each region's most frequent argmax class
    expected = np.zeros(3, np.int64)
    for rid in np.unique(small):
        expected[np.bincount(pred[small == rid]).argmax()] += (small == rid).sum()
    assert per_image["region_class_pixels"].tolist() == expected.tolist()


def _reference_cb_selection(maps, half_probs, k, n_slots):
    """extract_model_predictions_cb.py and region_selection_using_cb.py, line by line on arrays: per image the
    region map zoomed 0.5 (order 0), per region the mean p2/p1 and its most frequent argmax with its half-resolution
    size; min-max over every slot of every image; p_c over n * 1024 * 2048; top k of u_norm * exp(-p_c)."""
    from scipy.ndimage import zoom

    uncertainty, ctr = [], {c: [] for c in range(half_probs[0].shape[2])}
    for n, (labels, softmax) in enumerate(zip(maps, half_probs, strict=True)):
        ordered = np.sort(softmax, axis=2)
        u_out = ordered[:, :, -2] / ordered[:, :, -1]
        pred = np.argmax(softmax, axis=2)
        arr = np.zeros(n_slots)
        labels = zoom(labels, (0.5, 0.5), order=0) if labels.shape[0] > softmax.shape[0] else labels
        for j in np.unique(maps[n]):
            y, x = np.where(labels == j)
            if y.size > 0:
                unique, counts = np.unique(pred[y, x], return_counts=True)
                ctr[unique[np.argmax(counts)]].append([j + n * n_slots, y.size])
                arr[j] = np.mean(u_out[y, x])
        uncertainty.append(arr)
    u = np.hstack(uncertainty)
    norm = ((u - u.min()) / (u.max() - u.min())).reshape(-1, 1)
    total = 1024 * 2048 * len(maps)
    w = {c: np.exp(-(np.sum(np.array(v)[:, 1]) if v else 0) / total) for c, v in ctr.items()}
    to_w = np.ones((len(u), 1))
    for c, v in ctr.items():
        for reg, _ in v:
            to_w[reg] = w[c]
    f = norm * to_w
    chosen = np.argsort(f, axis=None)[::-1][:k]
    return sorted((int(i // n_slots), int(i % n_slots)) for i in chosen)


def test_official_acquisition_selects_what_the_reference_scripts_select(tmp_path):
    # float32 softmax at half resolution (stride 2), statistics on that grid, class_balanced_official, no exclusion
    from adaspx import pipeline
    from adaspx.h5io import Artifact, ArtifactWriter

    rng = np.random.default_rng(11)
    d = tmp_path / "pool"

    def nothing(gt, c):
        return np.full((c, *gt.shape), 1.0 / c, np.float32)

    small_pool(d, seed=4, n_segments=30, probs=nothing)
    manifest = json.loads((d / "manifest.json").read_text())
    ids = pipeline.pool_ids(manifest)
    maps, halves = [], []
    with Artifact(d / "base.h5") as base, ArtifactWriter(tmp_path / "half.h5", pipeline.SCHEMA_PROBS, stride=2) as w:
        for image_id in ids:
            labels = base.get("labels", image_id)
            logits = rng.normal(0, 2, (manifest["num_classes"], labels.shape[0] // 2, labels.shape[1] // 2))
            softmax = np.exp(logits - logits.max(axis=0)).astype(np.float32)
            softmax /= softmax.sum(axis=0)
            w.add("probs", image_id, softmax)
            maps.append(labels.astype(np.int64))
            halves.append(np.moveaxis(softmax, 0, 2))
    budget = 25
    out = tmp_path / "sel.csv"
    pipeline.acquire(d / "manifest.json", [str(d / "base.h5")], [str(tmp_path / "half.h5")], None, out,
                     strategy="class_balanced_official", budget=budget, exclude_labeled=None,
                     statistics="probabilities", **PROVENANCE)  # fmt: skip
    sel = pd.read_csv(out, dtype={"image": str})
    got = sorted((ids.index(i), int(r)) for i, r in zip(sel["image"], sel["region"], strict=True))
    assert got == _reference_cb_selection(maps, halves, budget, n_slots=max(int(m.max()) for m in maps) + 50)
