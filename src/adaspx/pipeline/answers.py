"""Stage ``annotate``: the simulated annotator's answers, the answer store and the training targets."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

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
    add_targets,
    answered_pixels,
    answers_digest,
    read_answers,
)
from adaspx.h5io import Artifact, ArtifactError, ArtifactWriter, MultiArtifact, atomic_write_text, csv_text, write_json
from adaspx.parallel import BufferRing, ordered_map, usable_cores
from adaspx.pipeline.common import _check_covers_pool, _dataset, _progress, pool_ids
from adaspx.pipeline.people import read_people

log = logging.getLogger("adaspx")


ANSWER_COLUMNS = ["round", "image", "region", "label", "pixels", "clicks", "classes", "annotator", "time", "asked"]
"""``asked``: the round whose region map ``region`` is of: ``round``, but for a correction of an earlier round's
answer (people changed it in Label Studio after it was recorded), which costs no click."""
SIMULATED = "simulated"  # the annotator of the simulator's answers (their time is empty)


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
    answer: str = "dominant",
    trim: int = 5,
    void: str = "class",
    overlap: str = "painter",
    people_csv: str | None = None,
    earlier_regions: Mapping[int, Sequence[str]] | None = None,
    threads: int | None = None,
) -> None:
    """Answer the selected regions from ground truth, append to the answers, rebuild the training targets.

    With ``people_csv`` (written by :func:`adaspx.pipeline.people.ask_people`) people's answers replace the
    simulator's: each selected region gets the label a person chose (void for "can't tell"), its annotator and
    time; pixels, clicks (one per region: ``click_cost="region"``), sieving and targets are the simulator's.
    Its corrections of earlier rounds' answers become new rows over those answers' regions, read from
    ``earlier_regions`` (the region maps each earlier round selected from, by round), painted last.

    ``threads`` workers (default: every usable core) answer one image each while the calling thread reads and
    writes; the outputs do not depend on their number.

    ``click_cost="classes"`` charges each answer the number of ground-truth classes in its region (``region``: the
    selection's clicks, 1 per region). Selection only estimated those clicks, so with a ``budget`` the annotator
    answers in the selection's rank order and skips a region whose true clicks no longer fit: a round never
    spends more than its budget (the warm-up, with no model to estimate from, would otherwise overspend).

    ``answer="classes"`` answers each region with its class set (:func:`adaspx.annotation.class_sets` with
    ``trim`` and ``void``), charged one click per member (it needs ``click_cost="classes"``). A set naming one class
    (void aside) labels the region's pixels with it, as a dominant answer does; a set of several classes gives
    them that set in ``targets.h5`` (see :func:`adaspx.artifacts.add_targets`) and no label. The ``classes``
    column of ``answers.csv`` holds every answer's set (a dominant answer's: its label).

    Sieving (``sieve_method``, see :func:`adaspx.annotation.sieve_mask`) uses the previous round's model for every
    answer with a label, as the reference code (never the pixels of a set of several classes); with
    ``freeze_sieve`` only this round's answers are sieved and earlier answers keep their targets from
    ``prev_targets_h5``.

    ``overlap`` (``targets.overlap``): how answers covering the same pixel make its target. ``latest``: the latest
    answer decides (a void answer voids it; a sieved pixel is ignored), and sieving looks at the pixels whose latest
    answer is the region. ``painter`` (default): the reference code's painting, answer after answer over whole
    regions: a void answer paints nothing, a pixel its region's sieve drops keeps what was painted before, and
    sieving (the knee, the size test) looks at the whole region; a set of several classes paints no label either,
    and applies where its pixels keep none; with ``freeze_sieve``, the targets of earlier rounds come from
    ``prev_targets_h5`` and only this round's answers are painted over them. ``answers.h5`` then keeps every
    answer's region (its ``layers``).
    """
    if sieve_method not in annotation.SIEVE_METHODS:
        raise ValueError(
            f"sieve method {sieve_method!r} unknown; expected one of {', '.join(annotation.SIEVE_METHODS)}"
        )
    if click_cost not in acquisition.CLICK_COSTS:
        raise ValueError(f"click cost {click_cost!r} unknown; expected one of {', '.join(acquisition.CLICK_COSTS)}")
    if answer not in annotation.ANSWERS:
        raise ValueError(f"answer {answer!r} unknown; expected one of {', '.join(annotation.ANSWERS)}")
    if answer == "classes" and click_cost != "classes":
        raise ValueError("class-set answers are charged one click per class: they need click cost 'classes'")
    if overlap not in annotation.OVERLAPS:
        raise ValueError(f"overlap {overlap!r} unknown; expected one of {', '.join(annotation.OVERLAPS)}")
    painter = overlap == "painter"
    if people_csv is not None and (answer != "dominant" or click_cost != "region"):
        raise ValueError("people answer one class per region: their answers need answer 'dominant', cost 'region'")
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
    people, fixes = (
        read_people(people_csv, selection[~selection["reserve"]], manifest["num_classes"], round)
        if people_csv
        else (None, pd.DataFrame(columns=["asked", "image", "region", "label", "annotator", "time"]))
    )
    unmapped = sorted(set(fixes["asked"].astype(int)) - set(earlier_regions or {}))
    if unmapped:
        raise ValueError(f"{people_csv}: corrects answers of round {unmapped[0]}, whose region maps are not given")

    c = manifest["num_classes"]
    before = np.zeros((2, c), dtype=np.int64)  # labeled, correct per class
    after = np.zeros((2, c), dtype=np.int64)
    with contextlib.ExitStack() as stack:
        regions = stack.enter_context(MultiArtifact(region_paths))
        _check_covers_pool(regions, ids)
        if click_cost == "classes":
            cost = _SetCost(trim, void) if answer == "classes" else _class_clicks
            selection = _charge_classes(selection, selection_path, regions, ds, budget, overshoot, cost)
        else:  # exact costs: the selection fits the budget, the reserve (there is none) is not needed
            selection = selection[~selection["reserve"]]
        by_image = {k: g for k, g in selection.groupby("image", sort=False)}
        fix_by_image = {k: g for k, g in fixes.groupby("image", sort=False)}
        earlier_maps = {int(k): stack.enter_context(MultiArtifact(v)) for k, v in (earlier_regions or {}).items()}
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
            "answer": answer,
            "overlap": overlap,
        }
        if answer == "classes":
            settings.update(trim=trim, void=void)
        provenance = {"experiment": experiment, "seed": seed, "round": round}
        wa = stack.enter_context(ArtifactWriter(answers_h5, SCHEMA_ANSWERS, config=settings, **provenance))
        wt = stack.enter_context(ArtifactWriter(targets_h5, SCHEMA_TARGETS, config=settings, sieve=sieve, **provenance))
        # One pass over the pool in pool order: the calling thread reads and writes, worker threads answer one
        # image each (its selected regions, answer map, targets, counts), so memory holds a few images at most.
        # Rows are numbered in pool order, then selection order within an image, whatever the number of threads.
        labels_of_row = np.full(len(previous) + len(selection) + len(fixes), IGNORE_INDEX, dtype=np.int64)
        labels_of_row[: len(previous)] = previous["label"].to_numpy(np.int64)
        # class-set membership of every answer (void aside); sets of two classes or more train as sets
        members_of_row = np.zeros((len(labels_of_row), c), dtype=bool)
        members_of_row[: len(previous)] = annotation.set_members(
            [annotation.parse_classes(t) for t in previous["classes"]], c
        )
        first_row, n = {}, len(previous)
        for image_id in ids:
            first_row[image_id] = n
            n += len(by_image[image_id]) if image_id in by_image else 0
            n += len(fix_by_image[image_id]) if image_id in fix_by_image else 0
        charged_col = "charged" if click_cost == "classes" else "clicks"
        fresh_rows = np.arange(len(previous), len(labels_of_row)) if frozen is not None else None

        def answer_one(image_id: str, amap, amap_rows, rmap, raw_probs, frozen_target, layers):
            """(answer map and its rows, targets, class-set targets (set map, table) or None, new answer rows,
            per-class counts before and after sieving, class-set pixels and those whose class is in their set)."""
            gt, rows, counts = None, [], np.zeros((2, 2, c), dtype=np.int64)
            set_count = np.zeros(2, dtype=np.int64)
            earlier = 0 if layers is None else len(layers)  # painter: the layers of earlier rounds
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
                who = [(SIMULATED, "")] * len(rids)
                if people is not None:
                    said = people.loc[[(image_id, int(r)) for r in rids]]
                    labels = said["label"].to_numpy(np.uint8)
                    who = list(zip(said["annotator"], said["time"], strict=True))
                if answer == "classes":  # the sets were found when they were charged
                    texts = sel["classes"].tolist()
                    sets = [annotation.parse_classes(t) for t in texts]
                    labels = np.array([annotation.set_label(v) for v in sets], dtype=np.uint8)
                else:
                    sets = [labels[k : k + 1] for k in range(len(labels))]
                    texts = [annotation.format_classes(v) for v in sets]
                first = first_row[image_id]
                if amap is None:
                    amap, amap_rows = np.zeros(gt.shape, dtype=np.uint16), np.zeros(0, dtype=np.int64)
                k = len(amap_rows)
                amap_rows = np.concatenate([amap_rows, np.arange(first, first + len(rids))])
                if len(amap_rows) > np.iinfo(amap.dtype).max:
                    amap = amap.astype(np.uint32)
                annotation.paint_answers(amap, rmap, rids, np.arange(k + 1, k + 1 + len(rids)), where=where)
                if painter:  # this round's regions, whole, as one more layer
                    layer = np.zeros(amap.shape, dtype=amap.dtype)
                    annotation.paint_answers(layer, rmap, rids, np.arange(k + 1, k + 1 + len(rids)), where=where)
                    layers = _stack_layer(layers, layer)
                labels_of_row[first : first + len(rids)] = labels  # this image's rows: no other thread's
                members_of_row[first : first + len(rids)] = annotation.set_members(sets, c)
                for rid, lab, npx, clicks, text, (by, at) in zip(
                    rids, labels, pixels, sel[charged_col], texts, who, strict=True
                ):
                    rows.append((round, image_id, int(rid), int(lab), int(npx), int(clicks), text, by, at, round))
            if image_id in fix_by_image:  # corrections of earlier answers, each over its whole region, last
                gt = ds.label(image_id) if gt is None else gt
                if amap is None:
                    amap, amap_rows = np.zeros(gt.shape, dtype=np.uint16), np.zeros(0, dtype=np.int64)
                first = first_row[image_id] + (len(by_image[image_id]) if image_id in by_image else 0)
                fix = fix_by_image[image_id][["asked", "region", "label", "annotator", "time"]]
                old_maps = {k: earlier_maps[k].get("labels", image_id) for k in set(fix["asked"].astype(int))}
                for j, (asked, rid, lab, by, at) in enumerate(fix.itertuples(index=False)):
                    pixels = np.flatnonzero(old_maps[int(asked)] == rid)
                    if not pixels.size:
                        raise ValueError(f"{people_csv}: image {image_id}: round {asked} has no region {rid}")
                    k = len(amap_rows)
                    amap_rows = np.append(amap_rows, first + j)
                    if len(amap_rows) > np.iinfo(amap.dtype).max:
                        amap = amap.astype(np.uint32)
                    amap.ravel()[pixels] = k + 1
                    if painter:
                        layer = np.zeros(amap.shape, dtype=amap.dtype)
                        layer.ravel()[pixels] = k + 1
                        layers = _stack_layer(layers, layer)
                    labels_of_row[first + j] = lab
                    members_of_row[first + j] = annotation.set_members([np.array([lab], dtype=np.uint8)], c)[0]
                    text = annotation.format_classes(np.array([lab], dtype=np.uint8))
                    rows.append((round, image_id, int(rid), int(lab), pixels.size, 0, text, by, at, int(asked)))
            if amap is None:  # never answered: no targets, nothing to count
                return None, None, None, None, None, rows, counts, set_count
            answered, pixel_rows = answered_pixels(amap, amap_rows)  # every labeled pixel is one of these
            sets = _set_targets(amap, amap_rows, answered, pixel_rows, members_of_row)
            if painter:
                gt = ds.label(image_id) if gt is None else gt

                def sieved(pixels, prows):
                    if raw_probs is None:
                        return np.zeros(pixels.shape, dtype=bool)
                    p = probs.decode_at(image_id, raw_probs, amap.shape, pixels)
                    return annotation.sieve_answered(prows, labels_of_row, p, min_pixels, method=sieve_method,
                                                     disagree_threshold=disagree_threshold)  # fmt: skip

                frozen_layers = (frozen_target, earlier) if frozen_target is not None else None
                unsieved, target = annotation.painted_targets(layers, amap_rows, labels_of_row, sieved, frozen_layers)
                if sets is not None:  # a set paints no label: where an earlier answer painted one, it stays
                    sets[0][target != IGNORE_INDEX] = 0
                    sets = sets if sets[0].any() else None
                    if sets is not None:
                        _count_sets(set_count, sets, gt)
                _count(counts[0], unsieved.ravel()[answered], gt.ravel()[answered], c)
                _count(counts[1], target.ravel()[answered], gt.ravel()[answered], c)
                return amap, amap_rows, layers, target, sets, rows, counts, set_count
            if sets is not None:
                gt = ds.label(image_id) if gt is None else gt
                _count_sets(set_count, sets, gt)
            target = annotation.answered_targets(amap.shape, answered, labels_of_row[pixel_rows])
            if not (target.ravel()[answered] != IGNORE_INDEX).any():
                return amap, amap_rows, layers, target, sets, rows, counts, set_count
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
            return amap, amap_rows, layers, target, sets, rows, counts, set_count

        workers = threads or usable_cores()
        rings = [BufferRing(workers) for _ in range(4)]

        def inputs():
            for image_id in ids:
                amap, amap_rows = prev_maps.read(image_id, rings[0]) if prev_maps is not None else (None, None)
                selected = image_id in by_image or image_id in fix_by_image
                rmap = regions.get("labels", image_id, rings[1]) if selected else None
                answered = selected or amap is not None
                raw = probs.read(image_id, rings[2]) if probs is not None and answered else None
                old = frozen.get("labels", image_id, rings[3]) if frozen is not None and answered else None
                layers = prev_maps.layers(image_id, amap) if painter and amap is not None else None
                yield image_id, amap, amap_rows, rmap, raw, old, layers

        new_rows: list[tuple] = []
        results = ordered_map(answer_one, inputs(), workers)
        set_counts = np.zeros(2, dtype=np.int64)  # pixels with a class set, and those whose class is in it
        for image_id, (amap, amap_rows, layers, target, sets, rows, counts, set_count) in zip(
            _progress(ids, "annotate"), results, strict=True
        ):
            if amap is None:
                shape = regions.dataset("labels", image_id).shape
                amap, amap_rows = np.zeros(shape, dtype=np.uint16), np.zeros(0, dtype=np.int64)
                target = np.full(shape, IGNORE_INDEX, dtype=np.uint8)
            add_answer_map(wa, image_id, amap, amap_rows, layers)
            add_targets(wt, image_id, target, *(sets if sets is not None else (None, None)))
            new_rows.extend(rows)
            set_counts += set_count
            before += counts[0]
            after += counts[1]
        answers = pd.concat([previous, pd.DataFrame(new_rows, columns=ANSWER_COLUMNS)], ignore_index=True)
        table = csv_text(answers[ANSWER_COLUMNS])
        wa.attrs[ANSWERS_DIGEST] = answers_digest(table)  # what links the maps' row numbers to this table
    atomic_write_text(answers_csv, table)

    corrections = int(((answers["round"] == round) & (answers["asked"] != round)).sum())
    this_round = answers[(answers["round"] == round) & (answers["asked"] == round)]
    named = np.array([np.count_nonzero(annotation.parse_classes(t) != IGNORE_INDEX) for t in this_round["classes"]])
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
        "corrections_round": corrections,
        "void_answers_round": int((named == 0).sum()),
        "answer": answer,
        "set_answers_round": int((named >= 2).sum()),
        "set_pixels": int(set_counts[0]),
        "set_precision": float(set_counts[1] / set_counts[0]) if set_counts[0] else None,
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


def _stack_layer(layers: np.ndarray | None, layer: np.ndarray) -> np.ndarray:
    """The painter's layers of an image with one more on top (in the new layer's dtype)."""
    return layer[None] if layers is None else np.concatenate([layers.astype(layer.dtype), layer[None]])


def _class_clicks(rmap: np.ndarray, gt: np.ndarray, rids: np.ndarray) -> tuple[np.ndarray, None]:
    """A dominant answer's true clicks: the region's non-void ground-truth classes, at least 1."""
    return annotation.class_clicks(rmap, gt, rids), None


@dataclass(frozen=True)
class _SetCost:
    """A class-set answer's true clicks, one per member of its set, and the set's ``classes`` text."""

    trim: int
    void: str

    def __call__(self, rmap: np.ndarray, gt: np.ndarray, rids: np.ndarray) -> tuple[np.ndarray, list[str]]:
        sets = annotation.class_sets(rmap, gt, rids, trim=self.trim, void=self.void)
        return np.array([len(v) for v in sets], dtype=np.int64), [annotation.format_classes(v) for v in sets]


def _charge_classes(
    selection: pd.DataFrame,
    selection_path,
    regions,
    ds,
    budget: int | None,
    overshoot: bool = False,
    cost=_class_clicks,
) -> pd.DataFrame:
    """The rows of the selection the annotator answers, with their true clicks (``charged``, from ``cost``: by
    default the region's ground-truth classes; with :class:`_SetCost` also each answer's ``classes``).

    Rows are answered in order, the selection first and then the reserve, each skipped when its clicks no longer
    fit the budget, until the budget is spent; without a budget, the selection only. With ``overshoot``
    (MulActSeg's selection) no row is skipped: rows are answered in order while the budget is not yet spent, so
    the last one may take the round past it. ``attrs`` of the result: ``skipped`` (selected rows left out) and
    ``reserve_used`` (reserve rows answered).
    """
    charged: dict[int, int] = {}
    classes: dict[int, str] = {}

    def charge(rows: pd.DataFrame) -> None:
        for image_id, sel in rows.groupby("image", sort=False):
            rmap, gt = regions.get("labels", image_id), ds.label(image_id)
            try:
                clicks, texts = cost(rmap, gt, sel["region"].to_numpy(np.int64))
            except ValueError as err:
                raise ValueError(f"{selection_path}: image {image_id}: {err}") from None
            charged.update(zip(sel.index.tolist(), clicks.tolist(), strict=True))
            if texts is not None:
                classes.update(zip(sel.index.tolist(), texts, strict=True))

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
    if classes:
        out = out.assign(classes=[classes[i] for i in keep])
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


def _set_targets(
    amap: np.ndarray, amap_rows: np.ndarray, answered: np.ndarray, pixel_rows: np.ndarray, members_of_row: np.ndarray
) -> tuple[np.ndarray, np.ndarray] | None:
    """The class-set targets of one image (its stored answer map and rows, its answered pixels and their rows):
    (H, W) map of k + 1 where the pixel's latest answer is the image's k-th set of several classes (in row order),
    0 elsewhere, and the (K, C) membership of those sets; None when no pixel has one."""
    several = members_of_row[amap_rows].sum(axis=1) >= 2  # the image's rows only
    if not several.any():
        return None
    in_set = several[amap.ravel()[answered].astype(np.int64) - 1]
    if not in_set.any():
        return None
    rows, local = np.unique(pixel_rows[in_set], return_inverse=True)
    set_map = np.zeros(amap.shape, dtype=np.uint16 if rows.size <= np.iinfo(np.uint16).max else np.uint32)
    set_map.ravel()[answered[in_set]] = local + 1
    return set_map, members_of_row[rows]


def _count_sets(acc: np.ndarray, sets: tuple[np.ndarray, np.ndarray], gt: np.ndarray) -> None:
    """Pixels with a class set, and those whose ground truth is a member of it (void never is), into ``acc``."""
    set_map, table = sets
    inside = np.flatnonzero(set_map.ravel())
    truth = gt.ravel()[inside].astype(np.int64)
    real = truth != IGNORE_INDEX
    k = set_map.ravel()[inside].astype(np.int64) - 1
    acc[0] += inside.size
    acc[1] += int(table[k[real], truth[real]].sum())


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
