"""File-level stages of an active-learning round: what each Snakemake rule runs.

Each function reads its inputs (dataset manifest, HDF5 artifacts, CSV tables), calls the library modules that
hold the logic, and writes its outputs atomically. Workflow scripts only unpack ``snakemake`` objects into these
calls, so every stage can also be run and tested without Snakemake.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from adaspx import IGNORE_INDEX, acquisition, annotation, datasets
from adaspx.artifacts import (
    ANSWERS_DIGEST,
    SCHEMA_ANSWERS,
    SCHEMA_PROBS,
    SCHEMA_REGIONS,
    SCHEMA_SUPERPIXELS,
    SCHEMA_TARGETS,
    STATS_COLUMNS,
    AnswerMaps,
    Probabilities,
    RegionTable,
    RegionTableWriter,
    add_answer_map,
    answered_pixels,
    answers_digest,
    at_label_resolution,
    read_answers,
    stored_labels,
)
from adaspx.h5io import (
    Artifact,
    ArtifactError,
    ArtifactWriter,
    MultiArtifact,
    atomic_write_text,
    csv_text,
    temporary_name,
    write_csv,
    write_json,
)
from adaspx.parallel import BufferRing, ordered_map, usable_cores

log = logging.getLogger("adaspx")

__all__ = ["SCHEMA_PROBS", "SCHEMA_TARGETS", "at_label_resolution"]  # re-exported for callers of this module

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
ANSWER_COLUMNS = ["round", "image", "region", "label", "pixels", "clicks"]
SUMMARY_COLUMNS = [
    "experiment",
    "seed",
    "round",
    "clicks",
    "labeled_pixels",
    "miou",
    "label_precision",
    "label_precision_before_sieve",
    "correct_pixels_kept",
]
SUMMARY_CLASS_COLUMNS = [
    "experiment",
    "seed",
    "round",
    "class",
    "labeled_pixels",
    "label_precision",
    "label_precision_before_sieve",
    "correct_pixels_kept",
    "iou",
]


@contextlib.contextmanager
def log_to(path: str | Path | None):
    """Send logging and stderr (progress bars, warnings) of one rule to its log file.

    A failure is logged with its traceback. Errors in the user's inputs (a dataset file, an artifact, a full disk:
    their message names the file) then end the job with that one line on the console instead of a traceback."""
    if path is None:
        yield
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        handler = logging.StreamHandler(fh)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger()
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        old_stderr = sys.stderr
        sys.stderr = fh
        try:
            yield
        except (datasets.DatasetError, ArtifactError) as err:
            log.exception("stage failed")
            raise SystemExit(f"{type(err).__name__}: {err}") from None
        except OSError as err:
            log.exception("stage failed")
            if err.errno == errno.ENOSPC:
                raise SystemExit(str(err)) from None
            raise
        except Exception:
            log.exception("stage failed")
            raise
        finally:
            sys.stderr = old_stderr
            root.removeHandler(handler)


# ----------------------------------------------------------------------------------------------- dataset


def synthesize_dataset(root: str | Path, params: Mapping[str, Any]) -> None:
    from adaspx.synthetic import write_dataset

    summary = write_dataset(root, **params)
    log.info("synthetic dataset written to %s: %s", root, summary)


def prepare_dataset(
    kind: str,
    root: str | Path,
    splits: Mapping[str, str],
    manifest_out: str | Path,
    list_files: Mapping[str, str | None] | None = None,
) -> None:
    """Check every image and label of the pool and val splits, and write the manifest later rules read.

    ``list_files`` (``pool``/``val`` -> path or None) restrict a Cityscapes split to the listed images.
    """
    list_files = list_files or {}
    by_split = {splits[k]: list_files.get(k) for k in ("pool", "val")}
    manifest = datasets.build_manifest(kind, root, splits=[splits["pool"], splits["val"]], list_files=by_split)
    manifest["pool_split"], manifest["val_split"] = splits["pool"], splits["val"]
    write_json(manifest_out, manifest)


def _dataset(manifest: Mapping[str, Any], which: str) -> datasets.Dataset:
    split = manifest[f"{which}_split"]
    return datasets.open_dataset(
        manifest["kind"], manifest["root"], split, list_file=manifest.get("list_files", {}).get(split)
    )


def pool_ids(manifest: Mapping[str, Any], shards: int = 1, shard: int = 0) -> list[str]:
    return datasets.shard_ids(manifest["splits"][manifest["pool_split"]]["ids"], shards, shard)


# ------------------------------------------------------------------------------------------- superpixels


def base_superpixels(
    manifest_path, out, *, method: str, params: Mapping[str, Any], shards: int, shard: int, config=None
) -> None:
    from adaspx.superpixels import base_superpixels as compute

    manifest = datasets.load_manifest(manifest_path)
    ds = _dataset(manifest, "pool")
    ids = pool_ids(manifest, shards, shard)
    with ArtifactWriter(out, SCHEMA_SUPERPIXELS, config=config, method=method, shard=shard, shards=shards) as w:
        for image_id in _progress(ids, "base superpixels"):
            labels = stored_labels(compute(ds.image(image_id), method, params))
            w.add("labels", image_id, labels, regions=int(len(np.unique(labels))))


def oracle_superpixels(manifest_path, out, *, shards: int, shard: int, method: str = "exact", config=None) -> None:
    """Oracle superpixels of one pool shard: ``method`` ``exact`` or ``official`` (see
    :func:`adaspx.superpixels.oracle_superpixels`)."""
    from adaspx.superpixels import ORACLE_METHODS
    from adaspx.superpixels import oracle_superpixels as compute

    if method not in ORACLE_METHODS:
        raise ValueError(f"superpixels.oracle {method!r} unknown; expected one of {', '.join(ORACLE_METHODS)}")
    manifest = datasets.load_manifest(manifest_path)
    ds = _dataset(manifest, "pool")
    attrs = {"method": "oracle", "oracle": method, "shard": shard, "shards": shards}
    with ArtifactWriter(out, SCHEMA_SUPERPIXELS, config=config, **attrs) as w:
        for image_id in _progress(pool_ids(manifest, shards, shard), "oracle superpixels"):
            labels = stored_labels(compute(ds.label(image_id), method))
            w.add("labels", image_id, labels, regions=int(len(np.unique(labels))))


# ---------------------------------------------------------------------------------------------- training


def train(
    manifest_path,
    targets_path,
    model_out,
    *,
    model: str,
    params: Mapping[str, Any],
    experiment: str,
    seed: int,
    round: int,
    threads: int | None = None,
    progress: bool = True,
    weights: str | None = None,
    previous_model: str | Path | None = None,
) -> None:
    """Train the round's model on the labeled pixels of ``targets_path``; write ``model_out`` when done.

    ``experiment``, ``seed`` and ``round`` (the provenance every round stage takes and records: here in the
    checkpoint's metadata) also seed the training: ``seed`` alone chooses its random numbers.

    ``params`` is the ``train`` config block: ``checkpoint_every`` (iterations between saves of the in-progress
    state to ``train_checkpoint.pt`` beside ``model_out``; 0 = off; a rerun resumes from it, and it is deleted
    once ``model_out`` is written) and ``init`` are taken out, the rest are :class:`TrainConfig` fields. The
    initial weights are ``previous_model`` when ``init`` is ``previous`` and one is given (rounds >= 1), else
    ``weights`` (the ``model.weights`` key: none, torchvision or a checkpoint path).
    """
    from adaspx.training import H5Arrays, LazyArrays, TrainConfig, save_checkpoint, train_model

    params = dict(params)
    checkpoint_every = int(params.pop("checkpoint_every"))
    init = params.pop("init")
    if init not in ("scratch", "previous"):
        raise ValueError(f"train.init must be scratch or previous, got {init!r}")
    initial = previous_model if init == "previous" and previous_model else weights
    manifest = datasets.load_manifest(manifest_path)
    ds = _dataset(manifest, "pool")
    config = TrainConfig(model=model, **params)
    # Images and targets are read as batches need them, by the DataLoader's workers (the job's threads beyond the
    # first): a Cityscapes-size pool is never held in memory. Only images with labeled pixels take part. The
    # targets file is closed here; each worker opens its own handle (HDF5 is not fork-safe).
    with Artifact(targets_path, SCHEMA_TARGETS) as t:
        ids = [i for i in pool_ids(manifest) if (t.get("labels", i) != IGNORE_INDEX).any()]
    log.info("training %s on %d images with labels, initial weights: %s", model, len(ids), initial or "random")
    net = train_model(
        LazyArrays(ids, ds.image),
        H5Arrays(targets_path, "labels", ids, schema=SCHEMA_TARGETS),
        num_classes=manifest["num_classes"],
        config=config,
        seed=seed,
        threads=threads,
        progress=progress,
        weights=initial,
        checkpoint=Path(model_out).with_name("train_checkpoint.pt"),
        checkpoint_every=checkpoint_every,
    )
    save_checkpoint(
        model_out,
        net,
        model_name=model,
        num_classes=manifest["num_classes"],
        meta={
            "experiment": experiment,
            "seed": seed,
            "round": round,
            "train": dict(params, init=init),
            "weights": None if initial is None else str(initial),
            "images": len(ids),
        },
    )


def evaluate(
    manifest_path,
    model_path,
    metrics_out,
    *,
    experiment: str,
    seed: int,
    round: int,
    batch_size: int = 16,
    threads: int | None = None,
) -> None:
    """mIoU and per-class IoU of the round's model on the validation images, with the round's provenance."""
    from adaspx.metrics import confusion_matrix, iou_from_confusion
    from adaspx.training import load_checkpoint, predict_probs

    _torch_threads(threads)
    manifest = datasets.load_manifest(manifest_path)
    ds = _dataset(manifest, "val")
    net, _ = load_checkpoint(model_path)
    c = manifest["num_classes"]
    cm = np.zeros((c, c), dtype=np.int64)
    ids = list(ds.ids)
    images = (ds.image(i) for i in ids)
    for image_id, probs in zip(ids, predict_probs(net, images, batch_size=batch_size), strict=True):
        cm += confusion_matrix(probs.argmax(axis=0), ds.label(image_id), c)
    result = iou_from_confusion(cm)
    result["classes"] = manifest["classes"]
    result["images"] = len(ids)
    result.update(experiment=experiment, seed=seed, round=round)
    write_json(metrics_out, result)


def infer(
    manifest_path,
    model_path,
    out,
    *,
    shards: int,
    shard: int,
    experiment: str,
    seed: int,
    round: int,
    batch_size: int = 16,
    threads: int | None = None,
    stride: int = 1,
) -> None:
    """Softmax probabilities of the pool shard, float16 (C, h, w) per image, written as they come.

    ``stride`` s (the ``infer.stride`` key) stores them at ``h, w = ceil(H/s), ceil(W/s)``, each value the mean
    over the s x s block of pixels (y, x) with (y // s, x // s) equal to its position (see
    :func:`adaspx.training.predict_probs`); the artifact's ``stride`` attribute records s.
    """
    from adaspx.training import load_checkpoint, predict_probs

    manifest = datasets.load_manifest(manifest_path)
    ds = _dataset(manifest, "pool")
    ids = pool_ids(manifest, shards, shard)
    _torch_threads(threads)
    net, _ = load_checkpoint(model_path)
    with ArtifactWriter(
        out,
        SCHEMA_PROBS,
        stride=stride,
        classes=manifest["classes"],
        shard=shard,
        shards=shards,
        experiment=experiment,
        seed=seed,
        round=round,
    ) as w:
        images = (ds.image(i) for i in ids)
        probs_iter = predict_probs(net, images, batch_size=batch_size, stride=stride)
        for image_id, probs in zip(ids, probs_iter, strict=True):
            w.add("probs", image_id, probs.astype(np.float16))


def _torch_threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


# ------------------------------------------------------------------------------------------------- merge


def merge_superpixels(
    base_path,
    probs_path,
    out,
    *,
    eps: float,
    experiment: str,
    seed: int,
    round: int,
    max_visited: int | None = None,
    threads: int | None = None,
    entropy: bool = False,
    official_counts: bool = False,
) -> None:
    """Adaptive regions of one pool shard, and their statistics for acquisition (``/stats``, ``/image_stats``; see
    :func:`adaspx.acquisition.region_features`: ``entropy`` adds the regions' mean entropy, ``official_counts``
    the reference's half-resolution class counts). The merged regions' sums are added up from their base regions'
    (:func:`adaspx.merge.region_stats_and_merge`): equal to statistics computed on the merged map up to float64
    rounding, for one kernel pass per image instead of two.

    The calling thread reads and writes; ``threads`` workers (default: every usable core) each decode, merge and
    describe one image at a time, single-threaded, so the result does not depend on their number.
    """
    from adaspx.merge import _check_eps, _check_max_visited, region_stats_and_merge

    eps = _check_eps(eps)
    _check_max_visited(max_visited)
    with (
        Artifact(base_path, SCHEMA_SUPERPIXELS) as base,
        Probabilities([probs_path]) as probs,
        ArtifactWriter(
            out,
            SCHEMA_REGIONS,
            config={"eps": eps, "max_visited": max_visited, "entropy": entropy, "official_counts": official_counts},
            eps=eps,
            experiment=experiment,
            seed=seed,
            round=round,
        ) as w,
    ):

        def merge_one(image_id: str, labels: np.ndarray, raw: np.ndarray):
            p = probs.decode(image_id, raw, labels.shape)
            merged, stats = region_stats_and_merge(labels, p, eps, channel_axis=0, max_visited=max_visited, threads=1)
            features = acquisition.region_features(
                merged, p, stats, probs.stride, entropy=entropy, official=official_counts
            )
            return image_id, merged, len(stats.ids), features

        workers = threads or usable_cores()
        label_ring, probs_ring = BufferRing(workers), BufferRing(workers)

        def inputs():
            for image_id in base.names("labels"):
                yield image_id, base.get("labels", image_id, label_ring), probs.read(image_id, probs_ring)

        n_base = n_merged = 0
        table = RegionTableWriter(w)
        for image_id, merged, regions, (columns, per_image) in _progress(
            ordered_map(merge_one, inputs(), workers), "merge"
        ):
            base_regions = int(base.dataset("labels", image_id).attrs["regions"])
            w.add("labels", image_id, merged, regions=regions, base_regions=base_regions)
            table.add(image_id, columns, per_image)
            n_base, n_merged = n_base + base_regions, n_merged + regions
        table.flush()
        log.info("merged %d base regions into %d regions", n_base, n_merged)


# ------------------------------------------------------------------------------------------- acquisition


def _check_covers_pool(files: MultiArtifact, ids: Sequence[str]) -> None:
    """Region maps must exist for every pool image: files made for another pool stop here, naming one image."""
    missing = [image_id for image_id in ids if not files.has("labels", image_id)]
    if missing:
        names = ", ".join(str(p.path) for p in files.parts)
        raise ArtifactError(
            f"{names}: no region map for pool image {missing[0]} ({len(missing)} of {len(ids)} pool images missing: "
            "made for another pool?)"
        )


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
) -> None:
    """Score every candidate region of the pool and write the regions to query under the click budget.

    Scores: see :mod:`adaspx.acquisition`; with ``size_exponent`` a they are multiplied by (size / mean size)^a.
    Costs: ``click_cost`` ``region`` (1 per region) or ``classes`` (the number of classes the previous model
    predicts in the region). Limits: at most ``max_per_image`` regions of one image, at most
    ``ceil(max_per_class * budget)`` clicks on regions of one predicted class.
    """
    if strategy not in acquisition.STRATEGIES:
        raise ValueError(f"acquisition {strategy!r} unknown; expected one of {', '.join(acquisition.STRATEGIES)}")
    if click_cost not in acquisition.CLICK_COSTS:
        raise ValueError(f"click cost {click_cost!r} unknown; expected one of {', '.join(acquisition.CLICK_COSTS)}")
    if budget < 0:
        raise ValueError(f"budget must be >= 0 clicks, got {budget}")
    manifest = datasets.load_manifest(manifest_path)
    num_classes = int(manifest["num_classes"])
    quota = acquisition.class_quotas(max_per_class, budget, num_classes)
    # Region statistics serve scores, estimated class costs and class quotas; random selection needs them only
    # for the last two, and goes without (1 click per region, no quota) when no model is at hand, as in the
    # warm-up. Adaptive regions carry them (merge_superpixels computed them with the same model); base and oracle
    # regions are scored from the probabilities.
    need_stats = strategy != "random" or click_cost == "classes" or max_per_class is not None
    columns = STATS_COLUMNS + (("entropy",) if strategy == "entropy" else ())
    official = strategy == "class_balanced_official"
    image_columns = ("class_pixels",) + (("class_pixels_half",) if official else ())
    keys = ("image", "region", "size", "uncertainty", "predicted", "labeled", "entropy", "classes")
    cols: dict[str, list] = {k: [] for k in keys}
    class_pixels = np.zeros(num_classes, dtype=np.int64)
    half_res_pixels = np.zeros(num_classes, dtype=np.int64)  # the reference's half-resolution counts
    ids = pool_ids(manifest)
    from adaspx.merge import region_stats

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
            if feats is None and need_stats and probs is None and strategy != "random":
                raise ArtifactError(
                    f"{regions.path_of('labels', image_id)}: image {image_id}: no region statistics, and acquisition "
                    f"{strategy!r} needs the previous round's probabilities to compute them"
                )
            if feats is None and probs is not None:
                labels = regions.get("labels", image_id)
                p = probs.get(image_id, labels.shape)
                stats = region_stats(labels, p, channel_axis=0)
                feats, per_image = acquisition.region_features(
                    labels, p, stats, probs.stride, entropy=strategy == "entropy", official=official
                )
                feats.update(per_image)
            modelled = feats is not None  # a model's statistics (none in the warm-up)
            if modelled:
                rid, size = feats["region"], feats["size"]
                unc, pred, n_classes = feats["uncertainty"], feats["predicted"], feats["classes"]
                ent = feats["entropy"] if strategy == "entropy" else np.full(len(rid), np.nan)
                class_pixels += feats["class_pixels"]
                if official:
                    half_res_pixels += feats["class_pixels_half"]
            else:
                labels = regions.get("labels", image_id)
                rid, size = np.unique(labels, return_counts=True)
                unc = ent = np.full(len(rid), np.nan)
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
                ("entropy", ent),
                ("classes", n_classes),
            ):
                cols[key].append(np.asarray(val))
    cand = pd.DataFrame({k: (v if k == "image" else np.concatenate(v)) for k, v in cols.items()})
    cai_share = acquisition.region_share(cand["predicted"].to_numpy(), num_classes)  # all pool regions
    if exclude_labeled is not None:
        keep = cand["labeled"] < exclude_labeled
        log.info("excluding %d regions already >= %.0f%% labeled", int((~keep).sum()), 100 * exclude_labeled)
        cand = cand[keep].reset_index(drop=True)
    rng = np.random.default_rng([seed, round])
    unc, pred = cand["uncertainty"].to_numpy(), cand["predicted"].to_numpy()
    if strategy == "random":
        scores = acquisition.random_scores(len(cand), rng)
    elif strategy == "margin":
        scores = acquisition.margin_scores(unc)
    elif strategy == "entropy":
        scores = acquisition.entropy_scores(cand["entropy"].to_numpy())
    else:
        share = {
            "class_balanced": lambda: acquisition.pixel_share(class_pixels),
            "class_balanced_official": lambda: acquisition.official_share(half_res_pixels, len(ids)),
            "class_balanced_cai": lambda: cai_share,
        }[strategy]()
        log.info("class shares p_c (%s): %s", strategy, np.array2string(share, precision=4))
        scores = acquisition.class_balanced_scores(unc, pred, share)
    if strategy != "random":
        scores = scores * acquisition.size_weights(cand["size"].to_numpy(), size_exponent)
    costs = acquisition.click_costs(click_cost, len(cand), cand["classes"].to_numpy() if modelled else None)
    if quota is not None and not modelled:
        log.info("no model predictions in this round: al.max_per_class does not apply")
        quota = None
    limits = {
        "images": pd.factorize(cand["image"])[0],
        "max_per_image": max_per_image,
        "classes": pred if quota is not None else None,
        "class_quota": quota,
    }
    chosen = acquisition.select_under_budget(scores, costs, budget, **limits)
    # Estimated costs: a reserve of up to `budget` more regions lets the annotator spend the whole budget when the
    # true clicks come out lower than the estimates (a region costs at least one click).
    reserve = acquisition.reserve_after(chosen, scores, costs, budget, **limits) if click_cost == "classes" else []
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


# -------------------------------------------------------------------------------------------- annotation


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
            selection = _charge_classes(selection, selection_path, regions, ds, budget)
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


def _charge_classes(selection: pd.DataFrame, selection_path, regions, ds, budget: int | None) -> pd.DataFrame:
    """The rows of the selection the annotator answers, with their true clicks (``charged``: the region's
    ground-truth classes).

    Rows are answered in order, the selection first and then the reserve, each skipped when its clicks no longer
    fit the budget, until the budget is spent; without a budget, the selection only. ``attrs`` of the result:
    ``skipped`` (selected rows left out) and ``reserve_used`` (reserve rows answered).
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
    keep, spent, skipped = [], 0, 0
    for i in chosen.index.tolist():
        if budget is None or spent + charged[i] <= budget:
            keep.append(i)
            spent += charged[i]
        else:
            skipped += 1
    used = 0
    for i in reserve.index.tolist():
        if spent >= budget:
            break
        if i not in charged:  # charge the reserve of one image at a time, as far as it is needed
            charge(reserve[(reserve["image"] == reserve.at[i, "image"]) & ~reserve.index.isin(list(charged))])
        if spent + charged[i] <= budget:
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


# --------------------------------------------------------------------------------------------- summarize


def summarize(entries: Sequence[Mapping[str, Any]], summary_csv, curves_png, per_class_csv=None) -> pd.DataFrame:
    """One row per (experiment, seed, round) from each round's metrics.json and annotation_stats.json; with
    ``per_class_csv``, also one row per class of each (label statistics and IoU on val)."""
    rows, class_rows = [], []
    for e in entries:
        metrics = json.loads(Path(e["metrics"]).read_text())
        stats = json.loads(Path(e["stats"]).read_text())
        key = {"experiment": e["experiment"], "seed": e["seed"], "round": e["round"]}
        iou = dict(zip(metrics["classes"], metrics["iou"], strict=True))
        for k, name in enumerate(metrics["classes"]):  # the manifest's class order (JSON objects are key-sorted)
            c = stats["per_class"][name]
            class_rows.append(
                {
                    **key,
                    "class": name,
                    "labeled_pixels": c["labeled_pixels"],
                    "label_precision": c["precision"],
                    "label_precision_before_sieve": c["precision_before_sieve"],
                    "correct_pixels_kept": c.get("correct_pixels_kept"),
                    "iou": iou[name],
                    "k": k,
                }
            )
        rows.append(
            {
                "experiment": e["experiment"],
                "seed": e["seed"],
                "round": e["round"],
                "clicks": stats["clicks"],
                "labeled_pixels": stats["labeled_pixels"],
                "miou": metrics["miou"],
                "label_precision": stats["label_precision"],
                "label_precision_before_sieve": stats["label_precision_before_sieve"],
                "correct_pixels_kept": stats["correct_pixels_kept"],
            }
        )
    frame = pd.DataFrame(rows, columns=SUMMARY_COLUMNS).sort_values(["experiment", "seed", "round"])
    write_csv(summary_csv, frame)
    if per_class_csv is not None:
        per_class = pd.DataFrame(class_rows).sort_values(["experiment", "seed", "round", "k"])
        write_csv(per_class_csv, per_class.reindex(columns=SUMMARY_CLASS_COLUMNS))
    plot_learning_curves(frame, curves_png)
    return frame


def plot_learning_curves(frame: pd.DataFrame, out) -> None:
    """mIoU against clicks (left) and against labeled pixels (right), mean over seeds, band = min..max."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), dpi=120, sharey=True)
    for name, group in frame.groupby("experiment", sort=False):
        agg = group.groupby("round").agg(
            clicks=("clicks", "mean"),
            pixels=("labeled_pixels", "mean"),
            miou=("miou", "mean"),
            lo=("miou", "min"),
            hi=("miou", "max"),
        )
        for ax, x in zip(axes, ("clicks", "pixels"), strict=True):
            (line,) = ax.plot(agg[x], 100 * agg["miou"], marker="o", label=name)
            ax.fill_between(agg[x], 100 * agg["lo"], 100 * agg["hi"], color=line.get_color(), alpha=0.15)
    axes[0].set_xlabel("clicks")
    axes[1].set_xlabel("labeled pixels")
    axes[0].set_ylabel("mIoU on val (%)")
    fig.suptitle("Learning curves (mean over seeds, band = min..max)")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(Path(out))
    fig.savefig(tmp, format=Path(out).suffix.lstrip(".") or "png")
    plt.close(fig)
    tmp.replace(out)


def _progress(items, desc: str):
    from tqdm import tqdm

    return tqdm(items, desc=desc, unit="img", file=sys.stderr, mininterval=2.0, disable=None)
