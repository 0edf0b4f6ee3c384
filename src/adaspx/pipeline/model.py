"""Stages ``train``, ``evaluate`` and ``infer``: the round's model, its score and its probabilities of the pool."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from adaspx import IGNORE_INDEX, datasets
from adaspx.artifacts import SCHEMA_PROBS, SCHEMA_TARGETS
from adaspx.h5io import Artifact, ArtifactWriter, write_json
from adaspx.pipeline.common import _dataset, pool_ids

log = logging.getLogger("adaspx")


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
    set_loss: Mapping[str, float] | None = None,
    pseudo_labels: bool = False,
) -> None:
    """Train the round's model on the targets of ``targets_path``; write ``model_out`` when done.

    ``experiment``, ``seed`` and ``round`` (the provenance every round stage takes and records: here in the
    checkpoint's metadata) also seed the training: ``seed`` alone chooses its random numbers.

    ``params`` is the ``train`` config block: ``checkpoint_every`` (iterations between saves of the in-progress
    state to ``train_checkpoint.pt`` beside ``model_out``; 0 = off; a rerun resumes from it, and it is deleted
    once ``model_out`` is written) and ``init`` are taken out, the rest are :class:`TrainConfig` fields. The
    initial weights are ``previous_model`` when ``init`` is ``previous`` and one is given (rounds >= 1), else
    ``weights`` (the ``model.weights`` key: none, torchvision or a checkpoint path).

    ``set_loss`` (the ``train.set_loss`` block, for an experiment answering class sets): train with MulActSeg's
    loss (:class:`adaspx.training.SetLoss`) on labels and class sets. With ``pseudo_labels`` too, a second model is
    then trained the same way from the same initial weights, with plain cross-entropy on the labels and on
    :func:`adaspx.training.pseudo_labels` of the sets from the first; that second model is the round's model.
    """
    from adaspx.training import SetLoss, TrainConfig, save_checkpoint

    params = dict(params)
    checkpoint_every = int(params.pop("checkpoint_every"))
    init = params.pop("init")
    if init not in ("scratch", "previous"):
        raise ValueError(f"train.init must be scratch or previous, got {init!r}")
    if pseudo_labels and set_loss is None:
        raise ValueError("pseudo-labels are made from class sets: they need the class-set loss (set_loss)")
    initial = previous_model if init == "previous" and previous_model else weights
    manifest = datasets.load_manifest(manifest_path)
    ds = _dataset(manifest, "pool")
    config = TrainConfig(model=model, **params)
    loss = SetLoss(**set_loss) if set_loss is not None else None
    common = dict(num_classes=manifest["num_classes"], config=config, seed=seed, threads=threads,
                  progress=progress, weights=initial, checkpoint_every=checkpoint_every)  # fmt: skip
    checkpoint = Path(model_out).with_name("train_checkpoint.pt")
    ids, targets = _training_targets(manifest, targets_path, class_sets=loss is not None)
    log.info("training %s on %d images with targets, initial weights: %s", model, len(ids), initial or "random")
    net = _train(ds, ids, targets, checkpoint=checkpoint, set_loss=loss, **common)
    stages = 1
    if pseudo_labels:
        pseudo = Path(model_out).with_name("pseudo_targets.h5")
        _write_pseudo_labels(net, ds, ids, targets, pseudo, threads)
        log.info("second stage: training %s on the labels and the first model's pseudo-labels", model)
        from adaspx.training import H5Arrays

        second = checkpoint.with_name("train_checkpoint_stage2.pt")  # a crash here reruns the first stage only
        net = _train(ds, ids, H5Arrays(pseudo, "labels", ids, schema=SCHEMA_TARGETS), checkpoint=second,
                     set_loss=None, **common)  # fmt: skip
        pseudo.unlink()
        stages = 2
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
            "set_loss": None if set_loss is None else dict(set_loss),
            "stages": stages,
            # the softmax temperature the model was trained at: its probabilities are softmax(logits / it)
            "temperature": loss.ce_temperature if loss is not None and stages == 1 else 1.0,
        },
    )


def _training_targets(manifest, targets_path, *, class_sets: bool):
    """The pool images with a target (a labeled pixel, or with ``class_sets`` a class set too) and their targets
    as the training's workers read them: the labels alone, or :func:`adaspx.artifacts.read_target`."""
    from adaspx.artifacts import TargetReader
    from adaspx.training import H5Arrays, LazyArrays

    # Images and targets are read as batches need them, by the DataLoader's workers (the job's threads beyond the
    # first): a Cityscapes-size pool is never held in memory. The targets file is closed here; each worker opens
    # its own handle (HDF5 is not fork-safe).
    with Artifact(targets_path, SCHEMA_TARGETS) as t:
        ids = [i for i in pool_ids(manifest) if (t.get("labels", i) != IGNORE_INDEX).any() or t.has("sets", i)]
    if class_sets:
        return ids, LazyArrays(ids, TargetReader(targets_path))
    return ids, H5Arrays(targets_path, "labels", ids, schema=SCHEMA_TARGETS)


def _train(ds, ids, targets, **kwargs):
    from adaspx.training import LazyArrays, train_model

    return train_model(LazyArrays(ids, ds.image), targets, **kwargs)


def _write_pseudo_labels(net, ds, ids, targets, path: Path, threads: int | None) -> None:
    """The second stage's targets: :func:`adaspx.training.pseudo_labels` of every image, from ``net``."""
    import torch

    from adaspx.training import predict_probs, pseudo_labels

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(threads or before)
        with ArtifactWriter(path, SCHEMA_TARGETS) as w:
            for image_id, target in zip(ids, targets, strict=True):
                plain = isinstance(target, np.ndarray)
                probs = None if plain else next(predict_probs(net, [ds.image(image_id)], batch_size=1))
                w.add("labels", image_id, pseudo_labels(probs, target))
    finally:
        torch.set_num_threads(before)


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
    half_resolution: bool = False,
    dtype: str = "float16",
) -> None:
    """Softmax probabilities of the pool shard, float16 (C, h, w) per image, written as they come: at the softmax
    temperature the model was trained at (its checkpoint's ``temperature``, 1 but for the class-set loss), recorded
    as the artifact's ``temperature`` attribute.

    ``half_resolution`` (the ``infer.half_resolution`` key) runs the network on half-size images (see
    :func:`adaspx.training.predict_probs`): the probabilities are stored at stride ``2 * stride``. ``dtype``
    (``infer.dtype``): ``float16`` halves the bytes (readers renormalise each vector); ``float32`` stores the softmax
    as computed, as the reference code uses it.

    ``stride`` s (the ``infer.stride`` key) stores them at ``h, w = ceil(H/s), ceil(W/s)``, each value the mean
    over the s x s block of pixels (y, x) with (y // s, x // s) equal to its position (see
    :func:`adaspx.training.predict_probs`); the artifact's ``stride`` attribute records s.
    """
    from adaspx.training import load_checkpoint, predict_probs

    manifest = datasets.load_manifest(manifest_path)
    ds = _dataset(manifest, "pool")
    ids = pool_ids(manifest, shards, shard)
    _torch_threads(threads)
    net, info = load_checkpoint(model_path)
    temperature = float(info["meta"].get("temperature", 1.0))
    if dtype not in ("float16", "float32"):
        raise ValueError(f"infer.dtype must be float16 or float32, got {dtype!r}")
    stored = 2 * stride if half_resolution else stride
    with ArtifactWriter(
        out,
        SCHEMA_PROBS,
        stride=stored,
        temperature=temperature,
        half_resolution=half_resolution,
        classes=manifest["classes"],
        shard=shard,
        shards=shards,
        experiment=experiment,
        seed=seed,
        round=round,
    ) as w:
        images = (ds.image(i) for i in ids)
        probs_iter = predict_probs(
            net, images, batch_size=batch_size, stride=stride, half_resolution=half_resolution, temperature=temperature
        )
        for image_id, probs in zip(ids, probs_iter, strict=True):
            w.add("probs", image_id, probs.astype(dtype))


def _torch_threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)
