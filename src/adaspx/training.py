"""Training from sparse labels, batched inference, and checkpoints.

Everything here works on arrays: images are ``(H, W, 3)`` uint8 RGB, targets ``(H, W)`` uint8 class indices
with 255 (:data:`adaspx.IGNORE_INDEX`) for unlabeled, sieved or void pixels. Reading datasets and writing HDF5
artifacts happens elsewhere.

Training is fresh every round (initialization from ``seed``), SGD with momentum and a poly learning-rate
schedule, cross-entropy over the labeled pixels only. On CPU it is deterministic: the same inputs, seed and
thread count give bit-identical weights.

Loss on sparse labels: every model of :mod:`adaspx.models` predicts logits at a reduced resolution and upsamples
them bilinearly. When few pixels are labeled, the loss samples the low-resolution logits bilinearly at the
labeled pixels only (``grid_sample`` at the pixel centres, which is the same interpolation as
``F.interpolate(..., align_corners=False)``), instead of upsampling the whole logit map: the same loss, computed
on the labeled pixels only. Above 70% labeled pixels in a batch the full upsampling is cheaper and is used instead.
Timings: benchmarks/README.md, "Training".

Resumable training: with a ``checkpoint`` path, :func:`train_model` saves its complete state (weights, optimizer
momentum, iteration, the batch sampler's generator, the global torch RNG used by dropout, the pending image
order) atomically every ``checkpoint_every`` iterations, and a later call with the same path, inputs and
settings resumes from it. On CPU the resumed run ends bit-identical to an uninterrupted one. The file is
deleted when training completes.

On CUDA: bf16 autocast where supported (training and inference), ``channels_last``, pinned host memory for the
batch transfers, cuDNN autotuning (results then are not bit-reproducible). ``threads`` sets torch's intra-op
threads.

Data: images and targets are sequences indexed like lists. In-memory lists are used as they are;
:class:`LazyArrays` (a key and a reader function per item) and :class:`H5Arrays` (arrays of an HDF5 artifact)
read each item when a batch needs it, so that a Cityscapes-size pool is never held in memory. Batches come from a
torch DataLoader whose worker processes read, decode, crop, flip and pad the images (by default one worker per
thread of the job beyond the first). Every random number (image order, crop offsets, flips) is drawn in the main
process, from target shapes recorded when the targets are validated, and handed to the workers as sample keys:
the batches, and so the trained weights, are the same for lists and lazy inputs and for any number of workers.
Besides the batches the loader prepares ahead (two per worker), each process keeps up to ``cache_bytes`` of
decoded pairs (least recently used out first), so a small pool is decoded once and a large one streams.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import multiprocessing as mp
import os
import sys
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset
from tqdm import tqdm

from adaspx import IGNORE_INDEX
from adaspx.annotation import SET_CODE, SetTarget
from adaspx.h5io import Artifact, temporary_name
from adaspx.models import MODELS, build_model, upsample_logits

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

CHECKPOINT_FORMAT = "adaspx.checkpoint/1"
TRAIN_STATE_FORMAT = "adaspx.train_state/1"

# Below this fraction of labeled pixels in a batch, the CPU loss samples the low-resolution logits at the
# labeled pixels; above it, upsampling the whole map is cheaper.
_POINT_LOSS_MAX_FRACTION = 0.7


class CheckpointError(ValueError):
    """A checkpoint file is unreadable or does not hold an adaspx model; the message names the file."""


@dataclass(frozen=True)
class TrainConfig:
    """Training hyper-parameters (the ``train`` section of the workflow config, plus the model name).

    ``crop_size``: side of the random square crop (an ``(h, w)`` pair is accepted too); ``None`` trains on whole
    images (images of different sizes in one batch are padded, padding ignored by the loss). Images smaller than
    the crop are padded the same way. ``lr`` is the initial learning rate of the poly schedule
    ``lr * (1 - i / iterations) ** lr_power``. ``scales``: each sample is first resized by a factor drawn
    uniformly from these (bilinear image, nearest target, sides rounded down, as DeepLab's random scaling with its
    ``min_scale_factor``, ``max_scale_factor`` and ``scale_factor_step_size``); ``None`` keeps the size.
    """

    iterations: int = 300
    batch_size: int = 8
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    crop_size: int | tuple[int, int] | None = None
    hflip: bool = True
    model: str = "small"
    lr_power: float = 0.9
    scales: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.scales is not None:
            object.__setattr__(self, "scales", tuple(float(v) for v in self.scales))
            if not self.scales or min(self.scales) <= 0:
                raise ValueError(f"scales must be positive factors, got {self.scales!r}")
        if not isinstance(self.iterations, int) or self.iterations < 1:
            raise ValueError(f"iterations must be a positive integer, got {self.iterations!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {self.batch_size!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr!r}")
        if not 0 <= self.momentum <= 1:
            raise ValueError(f"momentum must be in [0, 1], got {self.momentum!r}")
        if not self.weight_decay >= 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if self.model not in MODELS:
            raise ValueError(f"unknown model {self.model!r}; valid names: {', '.join(MODELS)}")
        self.crop_hw()  # validates crop_size

    def crop_hw(self) -> tuple[int, int] | None:
        """``crop_size`` as ``(height, width)``, or ``None`` for whole images."""
        c = self.crop_size
        if c is None:
            return None
        hw = (c, c) if isinstance(c, int) else tuple(c)
        if len(hw) != 2 or not all(isinstance(v, int) and v >= 1 for v in hw):
            raise ValueError(f"crop_size must be a positive integer, an (h, w) pair or None, got {c!r}")
        return hw  # type: ignore[return-value]


@dataclass(frozen=True)
class SetLoss:
    """MulActSeg's loss for class-set answers (the ``train.set_loss`` config block): ``ce_weight`` x cross-entropy
    on pixels with a label + ``mc_weight`` x the multiple-choice term on pixels with a class set + ``group_weight`` x
    the group term on each set's classes (:func:`class_set_loss`), each term's softmax at its own temperature.

    The weighted sum is divided by ``ce_weight / ce_temperature``: with only labels the gradient with respect to the
    logits is then ``softmax(z / T) - y``, the scale of plain cross-entropy, so the SGD learning rates of the
    dominant-label recipe serve here too. MulActSeg trains with AdamW, whose steps do not change when the loss is
    multiplied by a constant: there the division changes nothing."""

    ce_weight: float = 16.0
    mc_weight: float = 8.0
    group_weight: float = 1.0
    ce_temperature: float = 0.1
    mc_temperature: float = 0.1
    group_temperature: float = 0.1

    def __post_init__(self) -> None:
        for name in ("ce_weight", "mc_weight", "group_weight"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"set_loss.{name} must be >= 0, got {getattr(self, name)!r}")
        if not self.ce_weight > 0:
            raise ValueError(f"set_loss.ce_weight must be positive, got {self.ce_weight!r}")
        for name in ("ce_temperature", "mc_temperature", "group_temperature"):
            if not getattr(self, name) > 0:
                raise ValueError(f"set_loss.{name} must be positive, got {getattr(self, name)!r}")


def default_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` as a torch.device; ``None`` means CUDA when available, else CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


# ------------------------------------------------------------------------------------------------ inputs


class LazyArrays(Sequence):
    """A sequence whose item ``i`` is ``load(keys[i])``, read on every access (no caching here).

    ``keys`` identify the items (image ids, file paths): a resumed training trusts that the data behind the same
    keys did not change, and hashes the keys instead of the pixels.

    With loader workers (:func:`train_model`'s ``workers``), ``load`` runs in forked worker processes: it must
    open what it reads there (a file path per call, as the dataset readers do), never use a handle opened in the
    parent that is not safe across a fork, such as an open h5py file; read HDF5 arrays with :class:`H5Arrays`.
    """

    def __init__(self, keys: Sequence[Hashable], load: Callable[[Any], np.ndarray]) -> None:
        self.keys = list(keys)
        self.load = load

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return LazyArrays(self.keys[i], self.load)
        return self.load(self.keys[i])


class H5Arrays(Sequence):
    """The per-image arrays ``/<group>/<key>`` of an HDF5 artifact; item ``i`` is the array of ``keys[i]``.

    HDF5 handles must not cross a fork, so the file is opened on first access in each process: a loader worker
    opens its own, and a handle inherited from the parent is dropped unused. The handle is not pickled either,
    so the sequence works with any multiprocessing start method. :meth:`close` closes this process's handle (the
    next access reopens it); :func:`train_model` calls it before it starts loader workers. ``schema``, when
    given, is checked on opening (see :class:`adaspx.h5io.Artifact`).
    """

    def __init__(self, path: str | os.PathLike, group: str, keys: Sequence[str], schema: str | None = None) -> None:
        self.path = Path(path)
        self.group = group
        self.keys = list(keys)
        self.schema = schema
        self._artifact: Artifact | None = None
        self._pid: int | None = None

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return H5Arrays(self.path, self.group, self.keys[i], self.schema)
        return self._open().get(self.group, self.keys[i])

    def _open(self) -> Artifact:
        """This process's handle, opened if there is none yet."""
        if self._pid != os.getpid():
            self._artifact = None  # a handle inherited through a fork is not used
        if self._artifact is None:
            self._artifact = Artifact(self.path, self.schema)
            self._pid = os.getpid()
        return self._artifact

    def close(self) -> None:
        """Close this process's handle, if open."""
        if self._artifact is not None and self._pid == os.getpid():
            self._artifact.close()
        self._artifact = self._pid = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_artifact": None, "_pid": None}


def _keys(items: Sequence) -> list | None:
    """The keys of a lazily read sequence (:class:`LazyArrays`, :class:`H5Arrays`), None for in-memory ones."""
    return items.keys if isinstance(items, LazyArrays | H5Arrays) else None


def _close_files(*sequences: Sequence) -> None:
    """Close the file handles this process holds for ``sequences`` (before forking loader workers, and after)."""
    for items in sequences:
        if isinstance(items, H5Arrays):
            items.close()


def _check_image(i: int, image: Any) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        desc = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"image {i}: expected an (H, W, 3) uint8 array, got {desc}")
    return image


def _check_target(i: int, target: Any, num_classes: int):
    """A target as training uses it: (H, W) uint8 labels, or a :class:`SetTarget` whose codes name its sets."""
    if isinstance(target, SetTarget):
        return _check_set_target(i, target, num_classes)
    target = np.asarray(target)
    if target.ndim != 2:
        raise ValueError(f"target {i}: expected an (H, W) array, got shape {target.shape}")
    if not np.issubdtype(target.dtype, np.integer):
        raise ValueError(f"target {i}: expected integer class indices, got {target.dtype}")
    bad = (target != IGNORE_INDEX) & ((target < 0) | (target >= num_classes))
    if bad.any():
        raise ValueError(
            f"target {i}: label {int(target[bad][0])} outside 0..{num_classes - 1} (and {IGNORE_INDEX} = ignore)"
        )
    return target.astype(np.uint8, copy=False)


def _check_set_target(i: int, target: SetTarget, num_classes: int) -> SetTarget:
    codes, table = np.asarray(target.codes), np.asarray(target.table)
    if codes.ndim != 2 or not np.issubdtype(codes.dtype, np.integer):
        raise ValueError(f"target {i}: expected (H, W) integer codes, got {codes.dtype} {codes.shape}")
    if table.ndim != 2 or table.shape[1] != num_classes or table.dtype != bool:
        raise ValueError(
            f"target {i}: class sets must be a (K, {num_classes}) bool table, got {table.dtype} {table.shape}"
        )
    bad = (codes != IGNORE_INDEX) & (
        (codes < 0) | (codes >= SET_CODE + len(table)) | ((codes >= num_classes) & (codes < SET_CODE))
    )
    if bad.any():
        raise ValueError(
            f"target {i}: code {int(codes[bad][0])} is neither a class 0..{num_classes - 1}, {IGNORE_INDEX} nor one "
            f"of its {len(table)} class sets"
        )
    if len(table) and (table.sum(axis=1) == 0).any():
        raise ValueError(f"target {i}: an empty class set")
    return SetTarget(codes.astype(np.int32, copy=False), table)


def _target_shape(target) -> tuple[int, int]:
    return (target.codes if isinstance(target, SetTarget) else target).shape


def _check_shapes(i: int, image: np.ndarray, target) -> None:
    target = target.codes if isinstance(target, SetTarget) else target
    if target.shape != image.shape[:2]:
        raise ValueError(f"target {i}: shape {target.shape} does not match image {i} of shape {image.shape}")


def _check_pair(i: int, image: Any, target: Any, num_classes: int):
    image = _check_image(i, image)
    target = _check_target(i, target, num_classes)
    _check_shapes(i, image, target)
    return image, target


@dataclass
class _Inputs:
    """What :func:`_scan` learns of the inputs: the indices with labeled pixels, their count, every target's
    shape (random crops are drawn from them before the images are read)."""

    usable: list[int]
    labeled: int
    shapes: list[tuple[int, int]]


def _scan(images: Sequence, targets: Sequence, num_classes: int, h: Any) -> _Inputs:
    """Validate the inputs and feed them to the fingerprint ``h``. In-memory images are checked and hashed here
    (shape and a subsample of pixels); lazy images (:class:`LazyArrays`, :class:`H5Arrays`) by their keys, and
    each is checked against its target when it is read. Every target is read and checked."""
    if len(images) != len(targets):
        raise ValueError(f"{len(images)} images but {len(targets)} targets")
    keys = _keys(images)
    if keys is not None:
        h.update(repr(keys).encode())
    found = _Inputs([], 0, [])
    for i in range(len(targets)):
        if keys is not None:
            target = _check_target(i, targets[i], num_classes)
        else:
            image, target = _check_pair(i, images[i], targets[i], num_classes)
            h.update(repr(image.shape).encode())
            h.update(np.ascontiguousarray(image[:: max(image.shape[0] // 8, 1), :: max(image.shape[1] // 8, 1)]))
        codes = target.codes if isinstance(target, SetTarget) else target
        h.update(repr(codes.shape).encode())
        h.update(np.ascontiguousarray(codes))
        if isinstance(target, SetTarget):
            h.update(np.ascontiguousarray(target.table))
        found.shapes.append(codes.shape)
        n = int(np.count_nonzero(codes != IGNORE_INDEX))
        if n:
            found.usable.append(i)
            found.labeled += n
    return found


# ----------------------------------------------------------------------------------------------- batches
#
# The main process draws every random number of a batch (image order, crop offsets, flips) and hands the
# outcome to a torch DataLoader as sample keys (index, y0, x0, flip); the dataset's workers only read, decode,
# crop, flip and pad. So the batches, and the trained weights, do not depend on the number of workers.

_SampleKey = tuple[int, int, int, bool, float]  # image index, crop top, crop left, horizontal flip, scale factor


def _randint(high: int, gen: torch.Generator) -> int:
    """Uniform integer in ``[0, high)``."""
    return int(torch.randint(high, (1,), generator=gen))


def _next_indices(order: list[int], usable: list[int], n: int, gen: torch.Generator) -> list[int]:
    """Take the next ``n`` image indices from the front of ``order`` (in place), refilling it with a fresh random
    permutation of ``usable`` whenever it runs out: every image once per pass, in a new order each pass."""
    indices = []
    while len(indices) < n:
        if not order:
            order.extend(usable[j] for j in torch.randperm(len(usable), generator=gen).tolist())
        indices.append(order.pop(0))
    return indices


def _draw_keys(
    indices: list[int],
    shapes: Sequence[tuple[int, int]],
    crop: tuple[int, int] | None,
    hflip: bool,
    gen: torch.Generator,
    scales: tuple[float, ...] | None = None,
) -> list[_SampleKey]:
    """Random scale factors, crop offsets and flips of ``indices``, from the target shapes; for each image in turn
    the scale (only with ``scales``), the crop top and the crop left (both only with a crop, on the scaled shape;
    offsets 0 on the sides the crop exceeds) and the flip (only when ``hflip``) are drawn from ``gen``, in this
    order."""
    keys = []
    for i in indices:
        y0 = x0 = 0
        scale = scales[_randint(len(scales), gen)] if scales else 1.0
        if crop is not None:
            h, w = scaled_shape(shapes[i], scale)
            y0 = _randint(max(h - crop[0], 0) + 1, gen)
            x0 = _randint(max(w - crop[1], 0) + 1, gen)
        flip = bool(hflip and _randint(2, gen))
        keys.append((i, y0, x0, flip, scale))
    return keys


def scaled_shape(shape: tuple[int, int], scale: float) -> tuple[int, int]:
    """The size of an image resized by ``scale``: each side rounded down, at least 1 (DeepLab's)."""
    return max(1, int(shape[0] * scale)), max(1, int(shape[1] * scale))


def _rescaled(image: np.ndarray, target: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Image (bilinear) and target (nearest) resized by ``scale`` (:func:`scaled_shape`)."""
    import cv2

    h, w = scaled_shape(target.shape, scale)
    image = cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
    target = cv2.resize(np.ascontiguousarray(target), (w, h), interpolation=cv2.INTER_NEAREST)
    return image, target


class _StreamPosition(NamedTuple):
    """Where the batch draws stand: the state of the sampler's generator and the rest of the current pass over
    the images. A run that starts drawing from it draws the same batches as the run that saved it."""

    generator: torch.Tensor
    order: list[int]


class _BatchPlan:
    """The DataLoader's batch sampler: yields ``batches`` lists of sample keys, drawn from ``gen`` in this
    process, continuing the pass ``order`` (both are advanced in place; iterate once).

    The DataLoader pulls batches ahead of the training loop, so ``gen`` and ``order`` run ahead of the batches
    trained on. After drawing each batch the plan queues the position it left; the training loop takes one entry
    per batch it consumes (:meth:`consumed`): the position a checkpoint must hold so that a resumed run draws the
    batch that follows the last one trained on.
    """

    def __init__(
        self,
        usable: list[int],
        shapes: Sequence[tuple[int, int]],
        batch_size: int,
        crop: tuple[int, int] | None,
        hflip: bool,
        gen: torch.Generator,
        order: list[int],
        batches: int,
        scales: tuple[float, ...] | None = None,
    ) -> None:
        self.usable, self.shapes, self.batch_size, self.scales = usable, shapes, batch_size, scales
        self.crop, self.hflip, self.gen = crop, hflip, gen
        self.order, self.batches = order, batches
        self.drawn: deque[_StreamPosition] = deque()

    def __len__(self) -> int:
        return self.batches

    def __iter__(self) -> Iterator[list[_SampleKey]]:
        for _ in range(self.batches):
            indices = _next_indices(self.order, self.usable, self.batch_size, self.gen)
            keys = _draw_keys(indices, self.shapes, self.crop, self.hflip, self.gen, self.scales)
            self.drawn.append(_StreamPosition(self.gen.get_state(), list(self.order)))
            yield keys

    def consumed(self) -> _StreamPosition:
        """The position right after drawing the oldest batch not yet consumed."""
        return self.drawn.popleft()


class _Samples(TorchDataset):
    """Training samples by key ``(index, y0, x0, flip)``: image and target ``index``, read and checked, cropped
    to ``crop`` at ``(y0, x0)`` and flipped horizontally if ``flip``. Runs in the loader's workers; draws no
    random number. The labels were validated by :func:`_scan`; a lazy image is checked here when read.

    Each process keeps the pairs it read while they fit in ``cache_bytes`` (least recently used out first): a
    small pool is decoded once per training, a large one streams, and memory stays bounded per worker.
    """

    def __init__(self, images: Sequence, targets: Sequence, crop: tuple[int, int] | None, cache_bytes: int = 0):
        self.images, self.targets, self.crop = images, targets, crop
        self.cache_bytes, self.cached = cache_bytes, 0
        self.cache: OrderedDict[int, tuple[np.ndarray, np.ndarray]] = OrderedDict()

    def __len__(self) -> int:
        return len(self.targets)

    def _pair(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        if i in self.cache:
            self.cache.move_to_end(i)
            return self.cache[i]
        image = _check_image(i, self.images[i])
        target = self.targets[i]
        _check_shapes(i, image, target)
        if isinstance(target, SetTarget):  # checked by _scan
            target, table = np.asarray(target.codes, dtype=np.int32), np.asarray(target.table)
        else:
            target, table = np.asarray(target), None
        pair = (image, target, table)
        size = _nbytes(pair)
        if size <= self.cache_bytes:
            self.cache[i] = pair
            self.cached += size
            while self.cached > self.cache_bytes:
                _, old = self.cache.popitem(last=False)
                self.cached -= _nbytes(old)
        return pair

    def __getitem__(self, key: _SampleKey) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        i, y0, x0, flip, scale = key
        image, target, table = self._pair(i)
        if scale != 1.0:
            image, target = _rescaled(image, target, scale)
        if self.crop is not None:
            ch, cw = self.crop
            image, target = image[y0 : y0 + ch, x0 : x0 + cw], target[y0 : y0 + ch, x0 : x0 + cw]
        if flip:
            image, target = image[:, ::-1], target[:, ::-1]
        return image, target, table


def _nbytes(arrays: tuple) -> int:
    return sum(a.nbytes for a in arrays if a is not None)


class _Collate:
    """Samples to one batch: uint8 tensors of images (B, h, w, 3) and targets (B, h, w), each sample's size, and
    the class sets of the batch (None when no sample has any). With class sets the targets are int32 codes
    (:class:`SetTarget`) renumbered into the batch's table, the samples' tables one after the other.

    The batch is ``crop`` large, or as large as its largest sample without a crop. Smaller samples are placed
    top-left; the rest of the target is 255 and the rest of the image is set to zero after normalization (see
    :func:`_zero_padding`). Runs in the loader's workers; tensors travel to the main process in shared memory.
    """

    def __init__(self, crop: tuple[int, int] | None) -> None:
        self.crop = crop

    def __call__(
        self, samples: list[tuple[np.ndarray, np.ndarray, np.ndarray | None]]
    ) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, int]], torch.Tensor | None]:
        if self.crop is not None:
            bh, bw = self.crop
        else:
            bh = max(t.shape[0] for _, t, _ in samples)
            bw = max(t.shape[1] for _, t, _ in samples)
        tables = [table for _, _, table in samples if table is not None]
        xb = np.zeros((len(samples), bh, bw, 3), dtype=np.uint8)
        tb = np.full((len(samples), bh, bw), IGNORE_INDEX, dtype=np.int32 if tables else np.uint8)
        sizes, offset = [], 0
        for k, (image, target, table) in enumerate(samples):
            h, w = target.shape
            xb[k, :h, :w] = image
            tb[k, :h, :w] = target
            if table is not None:  # this sample's sets follow the previous samples' in the batch's table
                tb[k, :h, :w] += np.where(target >= SET_CODE, offset, 0).astype(np.int32)
                offset += len(table)
            sizes.append((h, w))
        table = torch.from_numpy(np.concatenate(tables)) if tables else None
        return torch.from_numpy(xb), torch.from_numpy(tb), sizes, table


def default_workers(threads: int | None) -> int:
    """Loader worker processes for a job of ``threads`` cores: ``threads - 1`` (the training loop keeps one
    core; a 1-thread job, or ``threads=None``, reads in its own process)."""
    return max(threads - 1, 0) if threads else 0


# Workers are forked where the platform can: no pickling of the inputs, and a worker starts in milliseconds.
_START_METHOD = "fork" if "fork" in mp.get_all_start_methods() else None


def _loader(samples: _Samples, plan: _BatchPlan, workers: int, pin_memory: bool) -> DataLoader:
    """The DataLoader of training: ``workers`` processes (0 = read in this process), forked where the platform
    forks, each building whole batches; up to two batches per worker are prepared ahead."""
    return DataLoader(
        samples,
        batch_sampler=plan,
        num_workers=workers,
        collate_fn=_Collate(samples.crop),
        pin_memory=pin_memory,
        multiprocessing_context=_START_METHOD if workers else None,
        generator=torch.Generator(),  # its seed draw must not advance the global RNG (dropout uses it)
    )


@contextmanager
def _iterate(loader: DataLoader) -> Iterator[Iterator]:
    """An iterator over ``loader`` whose workers are stopped on leaving the block, also when training fails (a
    traceback would otherwise keep the iterator, and its processes, alive)."""
    batches = iter(loader)
    try:
        yield batches
    finally:
        shutdown = getattr(batches, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()


# images, targets, sample sizes, class sets (see _Collate)
_Batch = tuple[torch.Tensor, torch.Tensor, list[tuple[int, int]], torch.Tensor | None]


@dataclass(frozen=True)
class _BatchStream:
    """The batches of a training: a :class:`_BatchPlan` draws them in this process, a DataLoader over
    ``samples`` reads them (``workers`` processes; pinned memory for a CUDA device)."""

    samples: _Samples
    inputs: _Inputs
    batch_size: int
    hflip: bool
    workers: int
    pin_memory: bool
    scales: tuple[float, ...] | None = None

    @contextmanager
    def open(self, start: _StreamPosition, count: int) -> Iterator[Iterator[tuple[_Batch, _StreamPosition]]]:
        """The ``count`` batches drawn from position ``start``, each with the position right after it (what a
        checkpoint taken after that batch holds, however far the loader has read ahead). The loader's workers
        are stopped on leaving the block."""
        gen = torch.Generator()
        gen.set_state(start.generator)
        plan = _BatchPlan(
            self.inputs.usable,
            self.inputs.shapes,
            self.batch_size,
            self.samples.crop,
            self.hflip,
            gen,
            list(start.order),
            count,
            self.scales,
        )
        with _iterate(_loader(self.samples, plan, self.workers, self.pin_memory)) as loaded:
            yield ((batch, plan.consumed()) for batch in loaded)


class _Normalizer:
    """uint8 NHWC batches to ImageNet-normalized float NCHW (channels_last) on a device."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1) * 255.0
        self.inv_std = 1.0 / (torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1) * 255.0)

    def __call__(self, batch: np.ndarray | torch.Tensor) -> torch.Tensor:
        x = torch.as_tensor(batch)
        if self.device.type == "cuda" and not x.is_pinned():
            x = x.pin_memory()
        x = x.to(self.device, non_blocking=True).permute(0, 3, 1, 2)  # channels_last view
        return (x.float() - self.mean) * self.inv_std


def _zero_padding(x: torch.Tensor, sizes: list[tuple[int, int]]) -> None:
    """Set the padded area of each normalized image to 0 (the mean colour), in place."""
    bh, bw = x.shape[-2:]
    for k, (h, w) in enumerate(sizes):
        if h < bh:
            x[k, :, h:, :] = 0
        if w < bw:
            x[k, :, :, w:] = 0


# -------------------------------------------------------------------------------------------------- loss


def point_logits(lowres: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits of the labeled pixels of ``target``, bilinearly sampled from low-resolution ``lowres``.

    ``lowres`` is (N, C, h, w), ``target`` (N, H, W) with 255 = ignore. Returns logits (N, C, 1, M) and labels
    (N, 1, M), M the largest labeled count of one image, padded with label 255. The values equal
    ``F.interpolate(lowres, size=(H, W), mode="bilinear", align_corners=False)`` at the labeled pixels.
    """
    n_img, _, _, _ = lowres.shape
    big_h, big_w = target.shape[-2:]
    mask = target != IGNORE_INDEX
    counts = mask.flatten(1).sum(1)
    m = max(int(counts.max()), 1)
    n, y, x = mask.nonzero(as_tuple=True)  # row-major, so grouped by image
    slot = torch.arange(n.numel(), device=target.device) - (counts.cumsum(0) - counts)[n]
    grid = torch.zeros(n_img, 1, m, 2, device=lowres.device, dtype=lowres.dtype)
    labels = torch.full((n_img, 1, m), IGNORE_INDEX, dtype=torch.long, device=target.device)
    # pixel centres in grid_sample's normalized coordinates (align_corners=False)
    grid[n, 0, slot, 0] = (2 * x + 1).to(grid.dtype) / big_w - 1
    grid[n, 0, slot, 1] = (2 * y + 1).to(grid.dtype) / big_h - 1
    labels[n, 0, slot] = target[n, y, x]
    logits = F.grid_sample(lowres, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return logits, labels


def _loss(
    model: nn.Module, x: torch.Tensor, target: torch.Tensor, criterion: nn.Module, point_loss: bool
) -> torch.Tensor:
    if point_loss and hasattr(model, "forward_lowres"):
        frac = float((target != IGNORE_INDEX).sum()) / target.numel()
        if frac <= _POINT_LOSS_MAX_FRACTION:
            logits, labels = point_logits(model.forward_lowres(x), target)
            return criterion(logits.float(), labels)
        logits = upsample_logits(model.forward_lowres(x), (x.shape[-2], x.shape[-1]))
    else:
        logits = model(x)
    return criterion(logits.float(), target)


def class_set_terms(logits: torch.Tensor, codes: torch.Tensor, table: torch.Tensor | None, config: SetLoss):
    """The three terms of MulActSeg's loss over points with a target (``OnehotCEMultihotChoice`` and
    ``GroupMultiLabelCE_onlymulti`` of its ``active_joint_multi_predignore_lossdecomp`` trainer), as a dict.

    ``logits`` (P, C); ``codes`` (P,): a class (its pixel has a label), ``SET_CODE + k`` (the pixel lies in a
    region answered with class set ``table[k]``) or 255 (left out); ``table`` (K, C) bool.

    - ``ce``: mean over labeled points of ``-log softmax(z / T_ce)[label]``;
    - ``mc``: mean over set points of ``-log sum_{c in S} softmax(z / T_mc)_c`` (the probability of "one of the
      set");
    - ``group``: mean over the (set, member) pairs of the sets with a point here of
      ``-log max_{points of the set} softmax(z / T_g)_c``: some pixel of the region must show each of its classes.

    A term with nothing to average is 0. Computed from log-softmax (the log of a maximum is the maximum of the
    logs), so it stays finite when a probability underflows; MulActSeg divides sums by count + 1 and adds 1e-8
    inside the log, which changes nothing measurable on crops of many pixels."""
    zero = logits.sum() * 0.0  # keeps the graph when a term is empty
    labeled = codes < SET_CODE
    labeled &= codes != IGNORE_INDEX
    terms = {"ce": zero, "mc": zero, "group": zero}
    if labeled.any():
        logp = F.log_softmax(logits[labeled] / config.ce_temperature, dim=1)
        terms["ce"] = -logp.gather(1, codes[labeled].long()[:, None]).mean()
    in_set = codes >= SET_CODE
    if table is not None and in_set.any():
        k = codes[in_set].long() - SET_CODE
        members = table[k]
        logp = F.log_softmax(logits[in_set] / config.mc_temperature, dim=1)
        terms["mc"] = -torch.logsumexp(logp.masked_fill(~members, -math.inf), dim=1).mean()
        logp = F.log_softmax(logits[in_set] / config.group_temperature, dim=1)
        best = torch.full((len(table), logits.shape[1]), -math.inf, dtype=logp.dtype, device=logp.device)
        best = best.scatter_reduce(0, k[:, None].expand_as(logp), logp, reduce="amax", include_self=True)
        present = torch.zeros(len(table), dtype=torch.bool, device=logp.device)
        present[k] = True
        pairs = table & present[:, None]
        terms["group"] = -best[pairs].mean()
    return terms


def class_set_loss(logits: torch.Tensor, codes: torch.Tensor, table: torch.Tensor | None, config: SetLoss):
    """The weighted sum of :func:`class_set_terms`, divided by ``ce_weight / ce_temperature`` (see
    :class:`SetLoss`)."""
    terms = class_set_terms(logits, codes, table, config)
    total = config.ce_weight * terms["ce"] + config.mc_weight * terms["mc"] + config.group_weight * terms["group"]
    return total * (config.ce_temperature / config.ce_weight)


def _set_loss(
    model: nn.Module,
    x: torch.Tensor,
    codes: torch.Tensor,
    table: torch.Tensor | None,
    config: SetLoss,
    point_loss: bool,
) -> torch.Tensor:
    """:func:`class_set_loss` of a batch: logits at the points with a target, sampled from the low-resolution
    logits as :func:`_loss` does on CPU, else from the upsampled map."""
    if point_loss and hasattr(model, "forward_lowres"):
        frac = float((codes != IGNORE_INDEX).sum()) / codes.numel()
        if frac <= _POINT_LOSS_MAX_FRACTION:
            logits, points = point_logits(model.forward_lowres(x), codes)
            c = logits.shape[1]
            return class_set_loss(logits.float().permute(0, 2, 3, 1).reshape(-1, c), points.reshape(-1), table, config)
        logits = upsample_logits(model.forward_lowres(x), (x.shape[-2], x.shape[-1]))
    else:
        logits = model(x)
    c = logits.shape[1]
    flat = codes.reshape(-1)
    keep = flat != IGNORE_INDEX
    points = logits.float().permute(0, 2, 3, 1).reshape(-1, c)[keep]
    return class_set_loss(points, flat[keep], table, config)


def pseudo_labels(probs: np.ndarray, target) -> np.ndarray:
    """(H, W) uint8 labels of a target for the second, pseudo-label stage: a labeled pixel keeps its label, a pixel
    with a class set takes the member of its set that ``probs`` ((C, H, W), the first stage's model) rates highest
    (ties to the smaller class), every other pixel 255. Plain labels come back as they are.

    MulActSeg's second stage labels a set's pixels by cosine similarity of features to each member's most confident
    pixel in the region; this is the plain restriction of the model's prediction to the set."""
    if not isinstance(target, SetTarget):
        return np.asarray(target, dtype=np.uint8)
    codes, table = np.asarray(target.codes), np.asarray(target.table)
    out = np.where(codes < SET_CODE, codes, IGNORE_INDEX).astype(np.uint8)
    inside = np.flatnonzero(codes.ravel() >= SET_CODE)
    if inside.size:
        k = codes.ravel()[inside].astype(np.int64) - SET_CODE
        p = probs.reshape(probs.shape[0], -1)[:, inside].T  # (n, C)
        out.ravel()[inside] = np.where(table[k], p, -np.inf).argmax(axis=1)
    return out


# ---------------------------------------------------------------------------------------------- training


def train_model(
    images: Sequence[np.ndarray],
    targets: Sequence[np.ndarray],
    *,
    num_classes: int,
    config: TrainConfig,
    seed: int,
    threads: int | None = None,
    workers: int | None = None,
    cache_bytes: int = 256 << 20,
    device: str | None = None,
    progress: bool = True,
    weights: str | os.PathLike | None = None,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 100,
    on_iteration: Callable[[int], None] | None = None,
    set_loss: SetLoss | None = None,
) -> nn.Module:
    """Train ``config.model`` on the labeled pixels of ``targets``; return it in eval mode.

    A target may be a :class:`adaspx.annotation.SetTarget` (pixels answered with class sets); ``set_loss`` then
    replaces cross-entropy with MulActSeg's loss (:class:`SetLoss`) for every batch.

    ``images`` and ``targets`` are sequences of (H, W, 3) uint8 arrays and (H, W) integer arrays: lists, or
    :class:`LazyArrays` / :class:`H5Arrays` read item by item when a batch needs it. Every target is read once
    before training (validation, labeled images, crop offsets).

    Batches are built by a torch DataLoader with ``workers`` processes (default :func:`default_workers`:
    ``threads - 1``, so a 1-thread job reads in its own process): the workers read, decode, crop, flip and pad,
    while all random numbers are drawn in this process. The worker count does not change the result. Workers
    are forked: lazily read items must open their files in the worker (see :class:`LazyArrays`). Each process
    keeps up to ``cache_bytes`` of decoded pairs (least recently used out first), so a small pool is read once.

    The model starts from ``weights`` (see :func:`adaspx.models.build_model`: ``None`` = random initialization
    from ``seed``, ``"torchvision"`` = ImageNet backbone, or a checkpoint path, e.g. the previous round's model
    for fine-tuning).

    Batches sample only images with at least one labeled pixel, in a fresh random order every pass over them;
    each image is randomly cropped to ``config.crop_size`` (targets padded with 255 where the image is smaller)
    and flipped horizontally with probability 1/2 when ``config.hflip``. SGD with momentum and weight decay,
    poly learning rate (power 0.9), ``CrossEntropyLoss(ignore_index=255)``.

    ``device=None`` uses CUDA when available (with bf16 autocast where supported, and pinned batches), else CPU
    in fp32. On CPU the result is deterministic for given inputs, ``seed`` and ``threads``
    (``torch.set_num_threads`` for the duration of the call, when given). The caller's global RNG state and
    settings are restored afterwards. A tqdm progress bar on stderr shows the loss and images/s unless
    ``progress=False``.

    ``checkpoint``: path of the in-progress training state, written atomically (temporary file + rename) after
    every ``checkpoint_every`` iterations (0 = never) and deleted on completion. If the file exists when the call
    starts and was written by a run with the same inputs, settings, seed and initial weights (a fingerprint is
    stored; the thread count, worker count and device are not part of it), training resumes from it; a state of
    another run is ignored with a warning and overwritten. On CPU with the same ``threads`` the resumed result
    is bit-identical to an uninterrupted run.
    ``on_iteration(i)`` is called after iteration ``i`` (1-based count of completed iterations), after any
    checkpoint of that iteration is written; an exception from it aborts training (tests use it to simulate a
    crash).

    Raises ValueError if images and targets disagree in number or shape (naming the index), a label is out of
    range, no pixel is labeled at all, or ``workers`` is negative; RuntimeError if the loss becomes non-finite.
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    workers = default_workers(threads) if workers is None else workers
    if not isinstance(workers, int) or workers < 0:
        raise ValueError(f"workers must be a non-negative integer, got {workers!r}")
    if not isinstance(checkpoint_every, int) or checkpoint_every < 0:
        raise ValueError(f"checkpoint_every must be a non-negative integer, got {checkpoint_every!r}")
    h = _fingerprint(len(images), num_classes, config, seed, weights)
    if set_loss is not None:
        h.update(repr(set_loss).encode())
    try:
        inputs = _scan(images, targets, num_classes, h)
    finally:
        _close_files(images, targets)  # no HDF5 handle of this process is inherited by the loader's workers
    if not inputs.usable:
        raise ValueError(f"no labeled pixel in {len(targets)} targets: nothing to train on")
    resume = _Resume(
        Path(checkpoint) if checkpoint is not None else None,
        checkpoint_every,
        h.hexdigest(),
    )
    samples = _Samples(images, targets, config.crop_hw(), cache_bytes)
    dev = default_device(device)
    cpu = dev.type == "cpu"
    stream = _BatchStream(
        samples, inputs, config.batch_size, config.hflip, workers, pin_memory=dev.type == "cuda", scales=config.scales
    )

    prev_threads = torch.get_num_threads()
    prev_det = torch.are_deterministic_algorithms_enabled()
    prev_det_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    rng_devices = [] if cpu else [dev.index if dev.index is not None else torch.cuda.current_device()]
    try:
        if threads:
            torch.set_num_threads(threads)
        if cpu:
            torch.use_deterministic_algorithms(True)
        with torch.random.fork_rng(devices=rng_devices):
            torch.manual_seed(seed)
            model = build_model(config.model, num_classes, weights=weights).to(dev)
            state = _TrainState.start(model, config, dev, seed)
            _fit(state, stream, config, resume, progress=progress, on_iteration=on_iteration, set_loss=set_loss)
    finally:
        _close_files(images, targets)
        torch.set_num_threads(prev_threads)
        torch.use_deterministic_algorithms(prev_det, warn_only=prev_det_warn)
    if resume.path is not None:
        resume.path.unlink(missing_ok=True)
    return model.eval()


def _fingerprint(n: int, num_classes: int, config: TrainConfig, seed: int, weights: Any):
    """Hash of the settings, seed, initial weights and input count of a training run; :func:`_scan` adds the
    inputs (targets, and image sizes and pixels or keys)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(repr((config, seed, num_classes, str(weights), n)).encode())
    if weights not in (None, "none", "torchvision"):
        p = Path(weights)
        h.update(repr(p.stat().st_size if p.is_file() else None).encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h


@dataclass
class _Resume:
    """Where and how often :func:`_fit` saves its state, and the fingerprint of the run."""

    path: Path | None
    every: int
    fingerprint: str

    def due(self, done: int, total: int) -> bool:
        """Whether to save the state after ``done`` of ``total`` iterations (never after the last one: the file
        is deleted then)."""
        return self.path is not None and bool(self.every) and done % self.every == 0 and done < total

    def load(self) -> dict | None:
        """The saved state of this run, or None (no file, or the state of another run: logged)."""
        if self.path is None or not self.path.is_file():
            return None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as err:  # damaged file: start over
            log.warning("%s: unreadable training state (%s); starting from iteration 0", self.path, err)
            return None
        if not isinstance(state, dict) or state.get("format") != TRAIN_STATE_FORMAT:
            log.warning("%s: not an adaspx training state; starting from iteration 0", self.path)
            return None
        if state.get("fingerprint") != self.fingerprint:
            log.warning("%s: training state of another run (inputs or settings differ); starting over", self.path)
            return None
        return state

    def save(self, state: dict) -> None:
        assert self.path is not None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_save({"format": TRAIN_STATE_FORMAT, "fingerprint": self.fingerprint, **state}, self.path)


def _atomic_save(payload: Any, path: Path) -> None:
    """``torch.save`` to a temporary file in the same folder, fsync, rename over ``path``."""
    tmp = temporary_name(path)  # removes what a killed save left behind
    try:
        with open(tmp, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass
class _TrainState:
    """Everything a resumed training needs: the model, the optimizer (momentum buffers, learning rate), the
    number of completed iterations, the position of the batch draws after the last batch trained on
    (``generator``, ``order``), the global torch RNG (dropout draws from it; CUDA's too on a CUDA device) and the
    loop's statistics (images seen, batches skipped, running loss). :meth:`state_dict` and
    :meth:`load_state_dict` save and restore it in the layout of the training-state files."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    device: torch.device
    generator: torch.Tensor
    order: list[int] = field(default_factory=list)
    iteration: int = 0
    seen: int = 0
    skipped: int = 0
    loss_avg: float = math.nan

    @classmethod
    def start(cls, model: nn.Module, config: TrainConfig, device: torch.device, seed: int) -> _TrainState:
        """The state before the first iteration: ``model`` in training mode, SGD over its parameters, the batch
        draws seeded with ``seed``."""
        optimizer = torch.optim.SGD(
            model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
        return cls(model.train(), optimizer, device, torch.Generator().manual_seed(seed).get_state())

    @property
    def position(self) -> _StreamPosition:
        return _StreamPosition(self.generator, self.order)

    def advance(self, position: _StreamPosition, images: int, loss: float | None) -> None:
        """Count an iteration over a batch of ``images`` that left the draws at ``position``; ``loss`` is None
        for a batch skipped for want of labels."""
        self.iteration += 1
        self.generator, self.order = position
        self.seen += images
        if loss is None:
            self.skipped += 1
        else:
            self.loss_avg = loss if math.isnan(self.loss_avg) else 0.9 * self.loss_avg + 0.1 * loss

    def _items(self) -> dict[str, tuple[Callable[[], Any], Callable[[Any], None]]]:
        """Every saved item under its key in the file, as (read it now, restore it): the one list that both
        :meth:`state_dict` and :meth:`load_state_dict` follow."""

        def attribute(name: str, convert: Callable[[Any], Any] = lambda value: value):
            return lambda: getattr(self, name), lambda value: setattr(self, name, convert(value))

        return {
            "iteration": attribute("iteration"),
            "model": (self.model.state_dict, self.model.load_state_dict),
            "optimizer": (self.optimizer.state_dict, self.optimizer.load_state_dict),
            "generator": attribute("generator"),
            "torch_rng": (torch.get_rng_state, torch.set_rng_state),
            "cuda_rng": (self._cuda_rng_state, self._set_cuda_rng_state),
            "order": attribute("order", list),
            "seen": attribute("seen"),
            "skipped": attribute("skipped"),
            "loss_avg": attribute("loss_avg"),
        }

    def state_dict(self) -> dict[str, Any]:
        return {key: read() for key, (read, _) in self._items().items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, (_, restore) in self._items().items():
            restore(state[key])

    def _cuda_rng_state(self) -> torch.Tensor | None:
        return torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None

    def _set_cuda_rng_state(self, value: torch.Tensor | None) -> None:
        if self.device.type == "cuda" and value is not None:
            torch.cuda.set_rng_state(value, self.device)


class _Step:
    """One optimisation step on ``device``: normalize the batch, cross-entropy over its labeled pixels, or with
    ``set_loss`` :func:`class_set_loss` (the point loss on CPU, bf16 autocast on CUDA where supported), backward,
    optimizer step. On CUDA it turns cuDNN autotuning on."""

    def __init__(self, device: torch.device, set_loss: SetLoss | None = None) -> None:
        self.device = device
        self.set_loss = set_loss
        self.bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
        self.point_loss = device.type == "cpu"
        self.normalize = _Normalizer(device)
        self.criterion = nn.CrossEntropyLoss(ignore_index=IGNORE_INDEX)
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True

    def __call__(self, model: nn.Module, optimizer: torch.optim.Optimizer, batch: _Batch) -> float:
        """The loss of ``batch`` before the update."""
        xb, tb, sizes, table = batch
        x = self.normalize(xb)
        _zero_padding(x, sizes)
        target = tb.to(self.device, non_blocking=True).long()
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            if self.set_loss is None:
                loss = _loss(model, x, target, self.criterion, point_loss=self.point_loss)
            else:
                table = None if table is None else table.to(self.device)
                loss = _set_loss(model, x, target, table, self.set_loss, point_loss=self.point_loss)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return float(loss.detach())


def _has_labels(batch: _Batch) -> bool:
    """Whether ``batch`` has a labeled pixel (with crops it may have none: nothing to learn from it)."""
    return bool((batch[1] != IGNORE_INDEX).any())


def _set_poly_lr(optimizer: torch.optim.Optimizer, config: TrainConfig, iteration: int) -> None:
    """Set the learning rate of ``iteration`` (0-based): ``lr * (1 - iteration / iterations) ** lr_power``."""
    for group in optimizer.param_groups:
        group["lr"] = config.lr * (1 - iteration / config.iterations) ** config.lr_power


def _check_finite(loss: float, iteration: int, lr: float) -> None:
    """Raise RuntimeError when the loss of ``iteration`` is not finite (training diverged)."""
    if not math.isfinite(loss):
        raise RuntimeError(
            f"training diverged: loss {loss} at iteration {iteration}; try a lower learning rate (lr={lr})"
        )


class _Progress:
    """A training's tqdm bar on stderr (running loss and images/s; shown when ``enabled``) and its closing log
    line. A context manager: leaving it closes the bar."""

    def __init__(self, state: _TrainState, total: int, enabled: bool) -> None:
        self.enabled = enabled
        self.bar = tqdm(
            total=total,
            initial=state.iteration,
            desc="train",
            unit="it",
            file=sys.stderr,
            disable=not enabled,
            mininterval=0.5,
        )
        self.start, self.seen_before = time.perf_counter(), state.seen

    def __enter__(self) -> _Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.close()

    def _images_per_s(self, state: _TrainState) -> float:
        return (state.seen - self.seen_before) / max(time.perf_counter() - self.start, 1e-9)

    def update(self, state: _TrainState, trained: bool) -> None:
        """One more iteration; ``trained``: it made a step (the loss shown is updated)."""
        self.bar.update(1)
        if trained and self.enabled:
            self.bar.set_postfix(loss=f"{state.loss_avg:.3f}", img_s=f"{self._images_per_s(state):.0f}", refresh=False)

    def report(self, state: _TrainState) -> None:
        """Log the time, rate and final loss of the training."""
        log.info(
            "trained in %.1f s: %.0f images/s, final loss %.4f%s",
            time.perf_counter() - self.start,
            self._images_per_s(state),
            state.loss_avg,
            f", {state.skipped} batches without labels skipped" if state.skipped else "",
        )


def _fit(
    state: _TrainState,
    stream: _BatchStream,
    config: TrainConfig,
    resume: _Resume,
    *,
    progress: bool,
    on_iteration: Callable[[int], None] | None,
    set_loss: SetLoss | None = None,
) -> None:
    """The training loop: continue ``state`` (or the state ``resume`` saved, if there is one) up to
    ``config.iterations``, one step per batch of ``stream``, saving the state when ``resume`` asks for it."""
    step = _Step(state.device, set_loss)
    saved = resume.load()
    if saved is not None:
        state.load_state_dict(saved)
        log.info("resuming from %s at iteration %d of %d", resume.path, state.iteration, config.iterations)
    log.info(
        "training %s: %d images with labels (%d labeled pixels), %d iterations of %d on %s%s",
        config.model,
        len(stream.inputs.usable),
        stream.inputs.labeled,
        config.iterations,
        config.batch_size,
        state.device,
        " (bf16)" if step.bf16 else "",
    )
    remaining = config.iterations - state.iteration
    with _Progress(state, config.iterations, progress) as bar, stream.open(state.position, remaining) as batches:
        for batch, position in batches:
            _set_poly_lr(state.optimizer, config, state.iteration)
            loss = None
            if _has_labels(batch):
                loss = step(state.model, state.optimizer, batch)
                _check_finite(loss, state.iteration, config.lr)
            state.advance(position, len(batch[2]), loss)
            bar.update(state, trained=loss is not None)
            if resume.due(state.iteration, config.iterations):
                resume.save(state.state_dict())
            if on_iteration is not None:
                on_iteration(state.iteration)
    bar.report(state)


# --------------------------------------------------------------------------------------------- inference


def predict_probs(
    model: nn.Module,
    images: Iterable[np.ndarray],
    *,
    batch_size: int = 16,
    device: str | None = None,
    stride: int = 1,
    temperature: float = 1.0,
    half_resolution: bool = False,
) -> Iterator[np.ndarray]:
    """Softmax probabilities ``(C, H, W)`` float32 for each image, in input order: ``softmax(logits /
    temperature)``, the distribution a model trained at that softmax temperature predicts (see
    :class:`SetLoss`).

    ``half_resolution`` runs the network on the image resized to ``ceil(H/2) x ceil(W/2)`` (PIL's bicubic
    resampling, Pillow's default for RGB images, as the reference code's ``Image.resize`` of Cityscapes images) and
    returns the probabilities at that resolution, i.e. at twice the ``stride``: label pixel (y, x) then reads
    (y // (2 s), x // (2 s)), which for s = 1 is the reference's nearest x2 upsampling.

    ``stride`` s > 1 returns them at reduced resolution ``(C, ceil(H/s), ceil(W/s))``: element (i, j) is the mean
    of the full-resolution probabilities over the pixels (y, x) with ``y // s == i`` and ``x // s == j`` (an s x s
    block, clipped at the bottom and right borders), so label pixel (y, x) maps to (y // s, x // s) as in
    :func:`adaspx.pipeline.at_label_resolution`; each vector still sums to 1. On CUDA, inference runs under bf16
    autocast where supported (softmax in float32).

    Consecutive images of the same size are batched (up to ``batch_size``); only one batch is held at a time,
    so ``images`` may be a generator over a large dataset. ``device=None`` runs where the model's parameters
    are; otherwise the model is moved there. The model is put in eval mode.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not isinstance(stride, int) or stride < 1:
        raise ValueError(f"stride must be a positive integer, got {stride!r}")
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature!r}")
    if device is None:
        param = next(model.parameters(), None)
        dev = param.device if param is not None else torch.device("cpu")
    else:
        dev = torch.device(device)
        model.to(dev)
    model.eval()
    normalize = _Normalizer(dev)
    pending: list[np.ndarray] = []
    for i, image in enumerate(images):
        image = _check_image(i, image)
        if half_resolution:
            image = half_size(image)
        if pending and (image.shape != pending[0].shape or len(pending) == batch_size):
            yield from _predict_batch(model, normalize, pending, stride, temperature)
            pending = []
        pending.append(image)
    if pending:
        yield from _predict_batch(model, normalize, pending, stride, temperature)


def half_size(image: np.ndarray) -> np.ndarray:
    """An (H, W, 3) uint8 image resized to ``ceil(H/2) x ceil(W/2)`` with PIL's bicubic filter."""
    from PIL import Image

    h, w = image.shape[:2]
    return np.asarray(Image.fromarray(image).resize((-(-w // 2), -(-h // 2)), Image.Resampling.BICUBIC))


def block_mean(probs: torch.Tensor, stride: int) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, ceil(H/s), ceil(W/s)): means over the blocks ``y // s, x // s`` (clipped at borders)."""
    if stride == 1:
        return probs
    h, w = probs.shape[-2:]
    ph, pw = -h % stride, -w % stride
    total = F.avg_pool2d(F.pad(probs, (0, pw, 0, ph)), stride, stride, divisor_override=1)
    ones = F.pad(torch.ones(1, 1, h, w, dtype=probs.dtype, device=probs.device), (0, pw, 0, ph))
    return total / F.avg_pool2d(ones, stride, stride, divisor_override=1)


def _predict_batch(
    model: nn.Module, normalize: _Normalizer, images: list[np.ndarray], stride: int = 1, temperature: float = 1.0
) -> list[np.ndarray]:
    # Computed eagerly and returned as a list: inference mode must not stay enabled while the caller holds the
    # generator suspended.
    with torch.inference_mode():
        x = normalize(np.stack(images))
        bf16 = x.device.type == "cuda" and torch.cuda.is_bf16_supported()
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(x)
        logits = logits.float() if temperature == 1.0 else logits.float() / temperature
        probs = block_mean(torch.softmax(logits, dim=1), stride).cpu().numpy()
    return [np.ascontiguousarray(p) for p in probs]


# ------------------------------------------------------------------------------------------- checkpoints


def save_checkpoint(
    path: str | os.PathLike, model: nn.Module, *, model_name: str, num_classes: int, meta: dict
) -> None:
    """Write the model's weights with what is needed to rebuild it; atomic (temporary file + rename).

    ``meta`` must be JSON-serializable (it is stored as plain Python data and returned by
    :func:`load_checkpoint`).
    """
    if model_name not in MODELS:
        raise ValueError(f"unknown model {model_name!r}; valid names: {', '.join(MODELS)}")
    try:
        meta = json.loads(json.dumps(meta))
    except (TypeError, ValueError) as err:
        raise ValueError(f"checkpoint meta must be JSON-serializable: {err}") from err
    payload = {
        "format": CHECKPOINT_FORMAT,
        "model_name": model_name,
        "num_classes": int(num_classes),
        "meta": meta,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    _atomic_save(payload, Path(path))


def load_checkpoint(path: str | os.PathLike, device: str | None = None) -> tuple[nn.Module, dict]:
    """Rebuild a model saved by :func:`save_checkpoint`; return it (eval mode, on ``device``) and its info.

    ``device=None`` means CUDA when available, else CPU. The info dict holds ``format``, ``model_name``,
    ``num_classes`` and ``meta``. Raises FileNotFoundError or :class:`CheckpointError` naming the path.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for damaged files
        raise CheckpointError(f"{path}: unreadable checkpoint ({type(err).__name__}: {err})") from err
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not an adaspx checkpoint (expected format {CHECKPOINT_FORMAT!r})")
    try:
        name, num_classes, state = payload["model_name"], payload["num_classes"], payload["state_dict"]
        model = build_model(name, num_classes)
        model.load_state_dict(state)
    except (KeyError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"{path}: cannot rebuild the model ({type(err).__name__}: {err})") from err
    info = {k: payload.get(k) for k in ("format", "model_name", "num_classes", "meta")}
    return model.to(default_device(device)).eval(), info
