"""Stage ``annotate``: the simulated annotator's answers, the answer store and the training targets."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd

from adaspx import IGNORE_INDEX, acquisition, annotation, datasets
from adaspx.artifacts import (
    ANSWERS_DIGEST,
    SCHEMA_ANSWERS,
    SCHEMA_SUPERPIXELS,
    SCHEMA_TARGETS,
    AnswerMaps,
    Probabilities,
    add_answer_map,
    answered_pixels,
    answers_digest,
    read_answers,
)
from adaspx.h5io import Artifact, ArtifactError, ArtifactWriter, MultiArtifact, atomic_write_text, csv_text, write_json
from adaspx.parallel import BufferRing, ordered_map, usable_cores
from adaspx.pipeline.common import _check_covers_pool, _dataset, _progress, pool_ids

log = logging.getLogger("adaspx")


ANSWER_COLUMNS = ["round", "image", "region", "label", "pixels", "clicks"]


def annotate(
    manifest_path,
    selection_path,
    region_paths: Sequence[str],
    prev_answers_csv: str | None,
    prev_answers_h5: str | None,
    probs_paths: Sequence[str],
    base_paths: Sequence[str],
    *,
    answers_csv,
    answers_h5,
    targets_h5,
    stats_json,
    experiment: str,
    seed: int,
    round: int,
    sieve: bool,
    min_pixels: int | None = None,
    sieve_method: str = "knee",
    disagree_threshold: float = 0.5,
    freeze_sieve: bool = False,
    prev_targets_h5: str | None = None,
    click_cost: str = "region",
    budget: int | None = None,
    overshoot: bool = False,
    threads: int | None = None,
) -> None:
    """Answer the selected regions from ground truth, append to the answers, rebuild the training targets.

    ``threads`` workers (default: every usable core) answer one image each while the calling thread reads and
    writes; the outputs do not depend on their number.

    ``click_cost="classes"`` charges each answer the number of ground-truth classes in its region (``region``: the
    selection's clicks, 1 per region). Selection only estimated those clicks, so with a ``budget`` the annotator
    answers in the selection's rank order and skips a region whose true clicks no longer fit: a round never
    spends more than its budget (the warm-up, with no model to estimate from, would otherwise overspend).

    Sieving (``sieve_method``, see :func:`adaspx.annotation.sieve_mask`) uses the previous round's model for every
    answer, as the reference code; with ``freeze_sieve`` only this round's answers are sieved and earlier answers
    keep their targets from ``prev_targets_h5``.
    """
    if sieve_method not in annotation.SIEVE_METHODS:
        raise ValueError(
            f"sieve method {sieve_method!r} unknown; expected one of {', '.join(annotation.SIEVE_METHODS)}"
        )
    if click_cost not in acquisition.CLICK_COSTS:
        raise ValueError(f"click cost {click_cost!r} unknown; expected one of {', '.join(acquisition.CLICK_COSTS)}")
    if budget is not None and budget < 0:
        raise ValueError(f"budget must be >= 0, got {budget}")
    if sieve and not probs_paths:
        raise ValueError("sieving needs the previous round's probabilities")
    manifest = datasets.load_manifest(manifest_path)
    ds = _dataset(manifest, "pool")
    ids = pool_ids(manifest)
    selection = pd.read_csv(selection_path, dtype={"image": str})
    unknown = sorted(set(selection["image"]) - set(ids))
    if unknown:
        raise ValueError(f"{selection_path}: images {unknown[:5]} are not in the pool")
    if bool(prev_answers_csv) != bool(prev_answers_h5):
        raise ValueError("the previous round's answers need both answers.csv and answers.h5")
    previous = (
        read_answers(prev_answers_csv, prev_answers_h5, manifest["num_classes"])
        if prev_answers_csv
        else pd.DataFrame(columns=ANSWER_COLUMNS)
    )
    if sieve and min_pixels is None:
        min_pixels = _scaled_min_pixels(base_paths)
    if "reserve" not in selection:
        selection["reserve"] = False
    selection["reserve"] = selection["reserve"].astype(bool)
    estimated = int(selection.loc[~selection["reserve"], "clicks"].sum())

    c = manifest["num_classes"]
    before = np.zeros((2, c), dtype=np.int64)  # labeled, correct per class
    after = np.zeros((2, c), dtype=np.int64)
    with contextlib.ExitStack() as stack:
        regions = stack.enter_context(MultiArtifact(region_paths))
        _check_covers_pool(regions, ids)
        if click_cost == "classes":
            selection = _charge_classes(selection, selection_path, regions, ds, budget, overshoot)
        else:  # exact costs: the selection fits the budget, the reserve (there is none) is not needed
            selection = selection[~selection["reserve"]]
        by_image = {k: g for k, g in selection.groupby("image", sort=False)}
        prev_maps = stack.enter_context(AnswerMaps(prev_answers_h5)) if prev_answers_h5 else None
        probs = stack.enter_context(Probabilities(probs_paths)) if sieve else None
        frozen = (
            stack.enter_context(Artifact(prev_targets_h5, SCHEMA_TARGETS))
            if (sieve and freeze_sieve and prev_targets_h5)
            else None
        )
        settings = {
            "sieve": sieve,
            "min_pixels": min_pixels,
            "sieve_method": sieve_method,
            "disagree_threshold": disagree_threshold,
            "freeze_sieve": freeze_sieve,
            "click_cost": click_cost,
            "budget": budget,
            "overshoot": overshoot,
        }
        provenance = {"experiment": experiment, "seed": seed, "round": round}
        wa = stack.enter_context(ArtifactWriter(answers_h5, SCHEMA_ANSWERS, config=settings, **provenance))
        wt = stack.enter_context(ArtifactWriter(targets_h5, SCHEMA_TARGETS, config=settings, sieve=sieve, **provenance))
        # One pass over the pool in pool order: the calling thread reads and writes, worker threads answer one
        # image each (its selected regions, answer map, targets, counts), so memory holds a few images at most.
        # Rows are numbered in pool order, then selection order within an image, whatever the number of threads.
        labels_of_row = np.full(len(previous) + len(selection), IGNORE_INDEX, dtype=np.int64)
        labels_of_row[: len(previous)] = previous["label"].to_numpy(np.int64)
        first_row, n = {}, len(previous)
        for image_id in ids:
            first_row[image_id] = n
            n += len(by_image[image_id]) if image_id in by_image else 0
        charged_col = "charged" if click_cost == "classes" else "clicks"
        fresh_rows = np.arange(len(previous), len(labels_of_row)) if frozen is not None else None

        def answer_one(image_id: str, amap, amap_rows, rmap, raw_probs, frozen_target):
            """(answer map and its rows, targets, new answer rows, per-class counts before and after sieving)."""
            gt, rows, counts = None, [], np.zeros((2, 2, c), dtype=np.int64)
            if image_id in by_image:
                sel = by_image[image_id]
                gt = ds.label(image_id)
                if rmap.shape != gt.shape:
                    raise ArtifactError(
                        f"{regions.path_of('labels', image_id)}: image {image_id}: region map of shape "
                        f"{rmap.shape}, but its label is {gt.shape}"
                    )
                rids = sel["region"].to_numpy(np.int64)
                where = annotation.region_pixels(rmap, np.unique(rids))
                try:
                    labels, pixels = annotation.dominant_labels(rmap, gt, rids, where=where)
                except ValueError as err:
                    raise ValueError(f"{selection_path}: image {image_id}: {err}") from None
                first = first_row[image_id]
                if amap is None:
                    amap, amap_rows = np.zeros(gt.shape, dtype=np.uint16), np.zeros(0, dtype=np.int64)
                k = len(amap_rows)
                amap_rows = np.concatenate([amap_rows, np.arange(first, first + len(rids))])
                if len(amap_rows) > np.iinfo(amap.dtype).max:
                    amap = amap.astype(np.uint32)
                annotation.paint_answers(amap, rmap, rids, np.arange(k + 1, k + 1 + len(rids)), where=where)
                labels_of_row[first : first + len(rids)] = labels  # this image's rows: no other thread's
                for rid, lab, npx, clicks in zip(rids, labels, pixels, sel[charged_col], strict=True):
                    rows.append((round, image_id, int(rid), int(lab), int(npx), int(clicks)))
            if amap is None:  # never answered: no targets, nothing to count
                return None, None, None, rows, counts
            answered, pixel_rows = answered_pixels(amap, amap_rows)  # every labeled pixel is one of these
            target = annotation.answered_targets(amap.shape, answered, labels_of_row[pixel_rows])
            if not (target.ravel()[answered] != IGNORE_INDEX).any():
                return amap, amap_rows, target, rows, counts
            gt = ds.label(image_id) if gt is None else gt
            _count(counts[0], target.ravel()[answered], gt.ravel()[answered], c)
            if raw_probs is not None:
                drop = annotation.sieve_answered(
                    pixel_rows,
                    labels_of_row,
                    probs.decode_at(image_id, raw_probs, amap.shape, answered),
                    min_pixels,
                    method=sieve_method,
                    disagree_threshold=disagree_threshold,
                    rows=fresh_rows,
                )
                target.ravel()[answered[drop]] = IGNORE_INDEX
                if frozen_target is not None:  # earlier answers keep the sieving of their own round
                    old = answered[pixel_rows < len(previous)]
                    target.ravel()[old] = frozen_target.ravel()[old]
            _count(counts[1], target.ravel()[answered], gt.ravel()[answered], c)
            return amap, amap_rows, target, rows, counts

        workers = threads or usable_cores()
        rings = [BufferRing(workers) for _ in range(4)]

        def inputs():
            for image_id in ids:
                amap, amap_rows = prev_maps.read(image_id, rings[0]) if prev_maps is not None else (None, None)
                selected = image_id in by_image
                rmap = regions.get("labels", image_id, rings[1]) if selected else None
                answered = selected or amap is not None
                raw = probs.read(image_id, rings[2]) if probs is not None and answered else None
                old = frozen.get("labels", image_id, rings[3]) if frozen is not None and answered else None
                yield image_id, amap, amap_rows, rmap, raw, old

        new_rows: list[tuple] = []
        results = ordered_map(answer_one, inputs(), workers)
        for image_id, (amap, amap_rows, target, rows, counts) in zip(_progress(ids, "annotate"), results, strict=True):
            if amap is None:
                shape = regions.dataset("labels", image_id).shape
                amap, amap_rows = np.zeros(shape, dtype=np.uint16), np.zeros(0, dtype=np.int64)
                target = np.full(shape, IGNORE_INDEX, dtype=np.uint8)
            add_answer_map(wa, image_id, amap, amap_rows)
            wt.add("labels", image_id, target)
            new_rows.extend(rows)
            before += counts[0]
            after += counts[1]
        answers = pd.concat([previous, pd.DataFrame(new_rows, columns=ANSWER_COLUMNS)], ignore_index=True)
        table = csv_text(answers[ANSWER_COLUMNS])
        wa.attrs[ANSWERS_DIGEST] = answers_digest(table)  # what links the maps' row numbers to this table
    atomic_write_text(answers_csv, table)

    this_round = answers[answers["round"] == round]
    lb, cb, la, ca = before[0].sum(), before[1].sum(), after[0].sum(), after[1].sum()
    stats = {
        "experiment": experiment,
        "seed": seed,
        "round": round,
        "clicks_round": int(this_round["clicks"].sum()),
        "clicks_estimated_round": estimated,
        "clicks_budget_round": budget,
        "skipped_over_budget_round": int(selection.attrs.get("skipped", 0)),
        "reserve_answered_round": int(selection.attrs.get("reserve_used", 0)),
        "click_cost": click_cost,
        "clicks": int(answers["clicks"].sum()),
        "regions_round": len(this_round),
        "void_answers_round": int((this_round["label"] == IGNORE_INDEX).sum()),
        "labeled_pixels_before_sieve": int(lb),
        "labeled_pixels": int(la),
        "label_precision_before_sieve": float(cb / lb) if lb else None,
        "label_precision": float(ca / la) if la else None,
        "correct_pixels_kept": float(ca / cb) if cb else None,
        "sieve": sieve,
        "sieve_min_pixels": min_pixels if sieve else None,
        "sieve_method": sieve_method if sieve else None,
        "sieve_frozen": bool(frozen is not None),
        "per_class": {
            name: {
                "labeled_pixels": int(after[0, k]),
                "precision_before_sieve": float(before[1, k] / before[0, k]) if before[0, k] else None,
                "precision": float(after[1, k] / after[0, k]) if after[0, k] else None,
                "correct_pixels_kept": float(after[1, k] / before[1, k]) if before[1, k] else None,
            }
            for k, name in enumerate(manifest["classes"])
        },
    }
    write_json(stats_json, stats)


def _charge_classes(
    selection: pd.DataFrame, selection_path, regions, ds, budget: int | None, overshoot: bool = False
) -> pd.DataFrame:
    """The rows of the selection the annotator answers, with their true clicks (``charged``: the region's
    ground-truth classes).

    Rows are answered in order, the selection first and then the reserve, each skipped when its clicks no longer
    fit the budget, until the budget is spent; without a budget, the selection only. With ``overshoot``
    (MulActSeg's selection) no row is skipped: rows are answered in order while the budget is not yet spent, so
    the last one may take the round past it. ``attrs`` of the result: ``skipped`` (selected rows left out) and
    ``reserve_used`` (reserve rows answered).
    """
    charged: dict[int, int] = {}

    def charge(rows: pd.DataFrame) -> None:
        for image_id, sel in rows.groupby("image", sort=False):
            rmap, gt = regions.get("labels", image_id), ds.label(image_id)
            try:
                clicks = annotation.class_clicks(rmap, gt, sel["region"].to_numpy(np.int64))
            except ValueError as err:
                raise ValueError(f"{selection_path}: image {image_id}: {err}") from None
            charged.update(zip(sel.index.tolist(), clicks.tolist(), strict=True))

    chosen = selection[~selection["reserve"]]
    reserve = selection[selection["reserve"]] if budget is not None else selection.iloc[:0]
    charge(chosen)
    keep, spent = [], 0
    for i in chosen.index.tolist():
        if overshoot and budget is not None and spent >= budget:
            break
        if budget is None or overshoot or spent + charged[i] <= budget:
            keep.append(i)
            spent += charged[i]
    skipped = len(chosen) - len(keep)
    used = 0
    for i in reserve.index.tolist():
        if spent >= budget:
            break
        if i not in charged:  # charge the reserve of one image at a time, as far as it is needed
            charge(reserve[(reserve["image"] == reserve.at[i, "image"]) & ~reserve.index.isin(list(charged))])
        if overshoot or spent + charged[i] <= budget:
            keep.append(i)
            spent += charged[i]
            used += 1
    out = selection.loc[keep].assign(charged=[charged[i] for i in keep])
    out.attrs.update(skipped=skipped, reserve_used=used)
    if skipped or used:
        log.info(
            "%d selected regions left unanswered (their true clicks exceed the budget of %s), %d reserve regions "
            "answered: %d clicks spent",
            skipped,
            budget,
            used,
            spent,
        )
    return out


def _count(acc: np.ndarray, target: np.ndarray, gt: np.ndarray, c: int) -> None:
    """Per class of the target: labeled pixels and pixels whose target equals the ground truth (``target`` and
    ``gt`` of the same pixels, any shape)."""
    lab = target != IGNORE_INDEX
    t = target[lab].astype(np.int64)
    acc[0] += np.bincount(t, minlength=c)[:c]
    acc[1] += np.bincount(t[t == gt[lab]], minlength=c)[:c]


def _scaled_min_pixels(base_paths: Sequence[str]) -> int:
    """The reference's 512-pixel sieving minimum, scaled from its ~256-pixel mean base superpixel.

    512 px is twice the mean SEEDS-8192 superpixel on 1024x2048 Cityscapes; keep that ratio for any dataset.
    """
    pixels = regions = 0
    with MultiArtifact(base_paths, SCHEMA_SUPERPIXELS) as base:
        for name in base.names("labels"):
            ds = base.dataset("labels", name)
            pixels += int(np.prod(ds.shape))
            # the map is read only when its count is not recorded (a fallback evaluated eagerly would read them all)
            regions += int(ds.attrs["regions"]) if "regions" in ds.attrs else len(np.unique(ds[()]))
    return max(1, round(2 * pixels / max(1, regions)))
