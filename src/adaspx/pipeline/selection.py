"""Stage ``acquire``: the regions to query under the click budget (``selection.csv``)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd

from adaspx import acquisition, datasets
from adaspx.artifacts import STATS_COLUMNS, AnswerMaps, Probabilities, RegionTable
from adaspx.h5io import ArtifactError, MultiArtifact, write_csv
from adaspx.pipeline.common import _check_covers_pool, _progress, pool_ids

log = logging.getLogger("adaspx")


SELECTION_COLUMNS = [
    "round",
    "rank",
    "image",
    "region",
    "score",
    "size",
    "clicks",
    "predicted",
    "uncertainty",
    "reserve",
]


def acquire(
    manifest_path,
    region_paths: Sequence[str],
    probs_paths: Sequence[str],
    answers_path: str | None,
    out,
    *,
    strategy: str,
    budget: int,
    experiment: str,
    seed: int,
    round: int,
    exclude_labeled: float | None = 0.5,
    size_exponent: float = 0.0,
    click_cost: str = "region",
    max_per_image: int | None = None,
    max_per_class: float | None = None,
    statistics: str = "labels",
) -> None:
    """Score every candidate region of the pool and write the regions to query under the click budget.

    Region statistics come from the regions artifact (adaptive regions: ``merge_superpixels`` stored them) or are
    computed here from the probabilities on the ``statistics`` grid (:func:`adaspx.acquisition.grid_features`).

    Scores: see :mod:`adaspx.acquisition`; with ``size_exponent`` a they are multiplied by (size / mean size)^a.
    Costs: ``click_cost`` ``region`` (1 per region) or ``classes`` (the number of classes the previous model
    predicts in the region). Limits: at most ``max_per_image`` regions of one image, at most
    ``ceil(max_per_class * budget)`` clicks on regions of one predicted class.
    """
    spec = acquisition.strategy(strategy)
    if click_cost not in acquisition.CLICK_COSTS:
        raise ValueError(f"click cost {click_cost!r} unknown; expected one of {', '.join(acquisition.CLICK_COSTS)}")
    if budget < 0:
        raise ValueError(f"budget must be >= 0 clicks, got {budget}")
    manifest = datasets.load_manifest(manifest_path)
    num_classes = int(manifest["num_classes"])
    quota = acquisition.class_quotas(max_per_class, budget, num_classes)
    # Region statistics serve scores, estimated class costs and class quotas; a model-free strategy (random) needs
    # them only for the last two, and goes without (1 click per region, no quota) when no model is at hand, as in
    # the warm-up. Adaptive regions carry them (merge_superpixels computed them with the same model); base and
    # oracle regions are scored from the probabilities.
    need_stats = spec.uses_model or click_cost == "classes" or max_per_class is not None
    feature_columns, feature_image_columns = acquisition.feature_columns(spec.features)
    columns = STATS_COLUMNS + feature_columns
    image_columns = ("class_pixels", "region_class_pixels") + feature_image_columns
    keys = ("image", "region", "size", "uncertainty", "predicted", "labeled", "classes")
    cols: dict[str, list] = {k: [] for k in keys}
    features: dict[str, list] = {k: [] for k in feature_columns}  # the strategy's own columns, of modelled regions
    totals = {key: np.zeros(num_classes, dtype=np.int64) for key in ("class_pixels", "region_class_pixels")}
    ids = pool_ids(manifest)

    modelled = False
    with contextlib.ExitStack() as stack:
        regions = stack.enter_context(MultiArtifact(region_paths))
        _check_covers_pool(regions, ids)
        table = RegionTable(regions)
        probs = stack.enter_context(Probabilities(probs_paths)) if (need_stats and probs_paths) else None
        answers = stack.enter_context(AnswerMaps(answers_path)) if answers_path else None
        for image_id in _progress(ids, "acquire"):
            labels = None
            feats = table.get(image_id, columns, image_columns) if need_stats else None
            if feats is None and need_stats and probs is None and spec.uses_model:
                raise ArtifactError(
                    f"{regions.path_of('labels', image_id)}: image {image_id}: no region statistics, and acquisition "
                    f"{strategy!r} needs the previous round's probabilities to compute them"
                )
            if feats is None and probs is not None:
                labels = regions.get("labels", image_id)
                p = probs.get(image_id, labels.shape)
                feats, per_image = acquisition.grid_features(
                    labels, p, probs.stride, spec.features, statistics, probs_temperature=probs.temperature
                )
                feats.update(per_image)
            modelled = feats is not None  # a model's statistics (none in the warm-up)
            if modelled:
                rid, size = feats["region"], feats["size"]
                unc, pred, n_classes = feats["uncertainty"], feats["predicted"], feats["classes"]
                for key in features:
                    features[key].append(np.asarray(feats[key]))
                for key in image_columns:
                    totals[key] = totals.get(key, 0) + feats[key]
            else:  # only a model-free strategy gets here: it has no feature columns
                labels = regions.get("labels", image_id)
                rid, size = np.unique(labels, return_counts=True)
                unc = np.full(len(rid), np.nan)
                pred = np.full(len(rid), -1)
                n_classes = np.ones(len(rid), dtype=np.int64)
            if answers is not None and exclude_labeled is not None:
                labels = regions.get("labels", image_id) if labels is None else labels
                answered = answers.read(image_id)[0] > 0
                labeled = np.bincount(acquisition.dense_index(labels[answered], rid), minlength=len(rid)) / size
            else:
                labeled = np.zeros(len(rid))
            cols["image"] += [image_id] * len(rid)
            for key, val in (
                ("region", rid),
                ("size", size),
                ("uncertainty", unc),
                ("predicted", pred),
                ("labeled", labeled),
                ("classes", n_classes),
            ):
                cols[key].append(np.asarray(val))
    cand = pd.DataFrame({k: (v if k == "image" else np.concatenate(v)) for k, v in cols.items()})
    extra = {k: np.concatenate(v) for k, v in features.items()}
    pool_predicted = cand["predicted"].to_numpy()  # all pool regions, answered or not
    pool_uncertainty = cand["uncertainty"].to_numpy()
    whole = int(acquisition.click_costs(click_cost, len(cand), cand["classes"].to_numpy() if modelled else None).sum())
    if budget > whole:  # more than every region of the pool, answered or not, costs: the config asks the impossible
        raise ValueError(
            f"budget of {budget} clicks exceeds the {whole} clicks of all {len(cand)} regions of the pool "
            f"({len(ids)} images): lower al.warmup_clicks / al.clicks_per_round, or use more or smaller regions"
        )
    if exclude_labeled is not None:
        keep = cand["labeled"] < exclude_labeled
        log.info("excluding %d regions already >= %.0f%% labeled", int((~keep).sum()), 100 * exclude_labeled)
        cand = cand[keep].reset_index(drop=True)
        extra = {k: v[keep.to_numpy()] for k, v in extra.items()}
    rng = np.random.default_rng([seed, round])
    pred = cand["predicted"].to_numpy()
    pool = acquisition.Pool(
        columns={k: cand[k].to_numpy() for k in ("size", "uncertainty", "predicted", "classes")} | extra,
        totals=totals,
        predicted=pool_predicted,
        uncertainty=pool_uncertainty,
        n_images=len(ids),
        num_classes=num_classes,
    )
    scores = spec.scores(pool, rng)
    if spec.uses_model:
        scores = scores * acquisition.size_weights(cand["size"].to_numpy(), size_exponent)
    costs = acquisition.click_costs(click_cost, len(cand), cand["classes"].to_numpy() if modelled else None)
    if quota is not None and not modelled:
        log.info("no model predictions in this round: al.max_per_class does not apply")
        quota = None
    limits = acquisition.Limits(
        images=pd.factorize(cand["image"])[0],
        max_per_image=max_per_image,
        classes=pred if quota is not None else None,
        class_quota=quota,
    )
    chosen = acquisition.select_under_budget(scores, costs, budget, limits)
    # Estimated costs: a reserve of up to `budget` more regions lets the annotator spend the whole budget when the
    # true clicks come out lower than the estimates (a region costs at least one click).
    reserve = acquisition.reserve_after(chosen, scores, costs, budget, limits) if click_cost == "classes" else []
    rows = np.concatenate([chosen, reserve]).astype(np.int64)
    sel = cand.iloc[rows].copy()
    sel.insert(0, "rank", np.arange(len(sel)))
    sel.insert(0, "round", round)
    sel["score"] = scores[rows]
    sel["clicks"] = costs[rows]
    sel["reserve"] = np.arange(len(rows)) >= len(chosen)
    write_csv(out, sel[SELECTION_COLUMNS])
    log.info(
        "selected %d regions (%d estimated clicks, %s cost) of %d candidates by %s, %d more in reserve",
        len(chosen),
        int(costs[chosen].sum()),
        click_cost,
        len(cand),
        strategy,
        len(reserve),
    )
