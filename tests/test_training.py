"""Models, training, inference and checkpoints (all on CPU, tiny sizes)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from adaspx import IGNORE_INDEX
from adaspx.h5io import ArtifactError, ArtifactWriter
from adaspx.models import MODELS, DeepLabV3Plus, SmallSegNet, build_model, count_parameters, torchvision_weights_file
from adaspx.pipeline import at_label_resolution
from adaspx.training import (
    CheckpointError,
    H5Arrays,
    LazyArrays,
    TrainConfig,
    _loss,
    _Normalizer,
    default_workers,
    load_checkpoint,
    point_logits,
    predict_probs,
    save_checkpoint,
    train_model,
)

COLORS = np.array([[220, 40, 40], [40, 200, 60], [50, 60, 220]], np.uint8)


def toy_scenes(rng: np.random.Generator, n: int, h: int = 32, w: int = 48):
    """Images of noisy coloured rectangles; the class of a pixel is its colour."""
    images, labels = [], []
    for _ in range(n):
        label = np.zeros((h, w), np.uint8)
        for _ in range(4):
            y, x = rng.integers(0, h - 8), rng.integers(0, w - 8)
            label[y : y + rng.integers(6, 16), x : x + rng.integers(6, 20)] = rng.integers(0, 3)
        image = COLORS[label].astype(np.int16) + rng.integers(-20, 21, (h, w, 3))
        images.append(np.clip(image, 0, 255).astype(np.uint8))
        labels.append(label)
    return images, labels


def sparsify(rng: np.random.Generator, labels, fraction: float):
    out = []
    for label in labels:
        target = np.full_like(label, IGNORE_INDEX)
        keep = rng.random(label.shape) < fraction
        target[keep] = label[keep]
        out.append(target)
    return out


@pytest.fixture(scope="module")
def toy():
    rng = np.random.default_rng(0)
    images, labels = toy_scenes(rng, 12)
    return images, labels, sparsify(rng, labels, 0.1)


FAST = TrainConfig(iterations=6, batch_size=2, lr=0.05, crop_size=24)


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread per test: on a shared 2-core machine two threads can be many times slower (see
    benchmarks/README.md, "Training")."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ------------------------------------------------------------------------------------------------ models


@pytest.mark.parametrize("name", MODELS)
def test_models_forward_backward(name):
    torch.manual_seed(0)
    model = build_model(name, 5).train()
    heavy = "resnet" in name  # ResNet-50/101: keep it tiny (oneDNN setup per shape dominates on CPU)
    size = 32 if heavy else 64
    x = torch.randn(2, 3, size, size)
    y = model(x)
    assert y.shape == (2, 5, size, size)
    y.square().mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    if heavy:
        return  # forward == upsampled forward_lowres is the base class's, checked on the others
    model.eval()  # no dropout
    with torch.inference_mode():
        expected = F.interpolate(model.forward_lowres(x), size=(size, size), mode="bilinear", align_corners=False)
        assert torch.allclose(model(x), expected, atol=1e-6)


def test_small_model_odd_sizes_and_size():
    model = build_model("small", 3).eval()
    for h, w in ((37, 50), (96, 128), (17, 9)):
        assert model(torch.randn(1, 3, h, w)).shape == (1, 3, h, w)
    assert isinstance(model, SmallSegNet)
    assert 20_000 <= count_parameters(model) <= 200_000


def test_build_model_errors():
    with pytest.raises(ValueError, match="valid names: small, lraspp"):
        build_model("unet", 3)
    with pytest.raises(ValueError, match="num_classes"):
        build_model("small", 0)
    with pytest.raises(ValueError, match="no pretrained"):
        build_model("small", 3, pretrained_backbone=True)
    with pytest.raises(FileNotFoundError, match="model.weights: .*nope.pt not found"):
        build_model("small", 3, weights="/nonexistent/nope.pt")


def test_deeplabv3plus_structure():
    model = build_model("deeplabv3plus_resnet50", 4).eval()
    assert isinstance(model, DeepLabV3Plus)
    x = torch.randn(1, 3, 64, 96)
    with torch.inference_mode():
        feats = model.backbone(x)
        assert feats["low"].shape[-2:] == (16, 24)  # stride 4
        assert feats["out"].shape[-2:] == (4, 6)  # output stride 16
        assert model.forward_lowres(x).shape == (1, 4, 16, 24)


def test_torchvision_weights_only_from_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    expected = tmp_path / "checkpoints" / "resnet50-0676ba61.pth"
    assert torchvision_weights_file("deeplabv3plus_resnet50") == expected
    with pytest.raises(FileNotFoundError, match="resnet50-0676ba61.pth not found"):
        build_model("deeplabv3plus_resnet50", 3, weights="torchvision")
    # a stand-in for the cached ImageNet weights: a ResNet-50 state dict of recognisable values
    from torchvision.models import resnet50

    torch.manual_seed(1)
    state = resnet50().state_dict()
    expected.parent.mkdir()
    torch.save(state, expected)
    model = build_model("deeplabv3plus_resnet50", 3, weights="torchvision")
    assert torch.equal(model.backbone.conv1.weight, state["conv1.weight"])
    assert torch.equal(model.backbone.layer4[2].conv3.weight, state["layer4.2.conv3.weight"])


def test_weights_from_checkpoint_path(tmp_path):
    torch.manual_seed(0)
    source = build_model("small", 4)
    with torch.no_grad():  # no tensor of the checkpoint keeps an initial value (BatchNorm's ones and zeros included)
        for value in source.state_dict().values():
            value.add_(torch.rand_like(value) + 1 if value.is_floating_point() else 1)
    save_checkpoint(tmp_path / "m.pt", source, model_name="small", num_classes=4, meta={})
    torch.manual_seed(1)
    fresh = build_model("small", 3)
    torch.manual_seed(1)
    model = build_model("small", 3, weights=tmp_path / "m.pt")  # another class count
    own, src, init = model.state_dict(), source.state_dict(), fresh.state_dict()
    classifiers = {"classifier.weight", "classifier.bias", "skip_classifier.weight", "skip_classifier.bias"}
    assert classifiers < own.keys()
    for name, value in own.items():
        if name in classifiers:  # 3 rows here, 4 in the checkpoint: not loaded, as initialized without weights
            assert value.shape[0] == 3 and src[name].shape[0] == 4
            assert torch.equal(value, init[name]), name
        else:  # stem, stages, image context: loaded
            assert torch.equal(value, src[name]), name
    with pytest.raises(ValueError, match="holds a 'small' model"):
        build_model("lraspp_mobilenet_v3_large", 3, weights=tmp_path / "m.pt")


# -------------------------------------------------------------------------------------------------- loss


@pytest.mark.parametrize(("low", "high"), [((6, 8), (12, 16)), ((7, 5), (13, 9)), ((4, 4), (4, 4)), ((5, 6), (3, 4))])
def test_point_logits_equal_upsampled_logits(low, high):
    gen = torch.Generator().manual_seed(0)
    lowres = torch.randn(3, 4, *low, generator=gen)
    target = torch.randint(0, 4, (3, *high), generator=gen)
    target[torch.rand(3, *high, generator=gen) < 0.6] = IGNORE_INDEX
    target[1] = IGNORE_INDEX  # an image without labels
    logits, labels = point_logits(lowres, target)
    up = F.interpolate(lowres, size=high, mode="bilinear", align_corners=False)
    for n in range(3):
        mask = target[n] != IGNORE_INDEX
        k = int(mask.sum())
        assert torch.allclose(logits[n, :, 0, :k], up[n][:, mask], atol=1e-5)
        assert torch.equal(labels[n, 0, :k], target[n][mask])
        assert (labels[n, 0, k:] == IGNORE_INDEX).all()


@pytest.mark.parametrize("point_loss", [True, False])
def test_loss_counts_only_labeled_pixels(point_loss):
    torch.manual_seed(0)
    model = build_model("small", 3).train()
    x = torch.randn(2, 3, 20, 30)
    target = torch.full((2, 20, 30), IGNORE_INDEX, dtype=torch.long)
    target[0, 3, 4], target[0, 10, 29], target[1, 19, 0] = 2, 0, 1
    criterion = torch.nn.CrossEntropyLoss(ignore_index=IGNORE_INDEX)
    loss = _loss(model, x, target, criterion, point_loss=point_loss)
    logits = model(x)
    mask = target != IGNORE_INDEX
    expected = F.cross_entropy(logits.permute(0, 2, 3, 1)[mask], target[mask])
    assert torch.allclose(loss, expected, atol=1e-5)


def test_point_and_full_loss_give_same_gradients():
    torch.manual_seed(0)
    model = build_model("small", 3).train()
    x = torch.randn(2, 3, 24, 32)
    target = torch.randint(0, 3, (2, 24, 32))
    target[torch.rand(2, 24, 32) < 0.9] = IGNORE_INDEX
    criterion = torch.nn.CrossEntropyLoss(ignore_index=IGNORE_INDEX)
    grads = []
    for point in (True, False):
        model.zero_grad()
        _loss(model, x, target, criterion, point_loss=point).backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for a, b in zip(*grads, strict=True):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-4)


# ---------------------------------------------------------------------------------------------- training


def test_small_model_learns_toy_problem(toy):
    images, _, targets = toy
    config = TrainConfig(iterations=60, batch_size=4, lr=0.05)
    model = train_model(images, targets, num_classes=3, config=config, seed=0, threads=1, progress=False)
    assert not model.training
    val_images, val_labels = toy_scenes(np.random.default_rng(1), 6)
    probs = predict_probs(model, val_images)
    acc = np.mean([(p.argmax(0) == y).mean() for p, y in zip(probs, val_labels, strict=True)])
    assert acc > 0.9


@pytest.mark.parametrize("fraction", [0.05, 1.0])  # point loss and full-resolution loss
def test_training_is_deterministic(toy, fraction):
    images, labels, _ = toy
    targets = sparsify(np.random.default_rng(3), labels, fraction)
    config = TrainConfig(iterations=4, batch_size=3, lr=0.05, crop_size=(20, 28))
    runs = [
        train_model(images, targets, num_classes=3, config=config, seed=7, threads=1, progress=False).state_dict()
        for _ in range(2)
    ]
    assert runs[0].keys() == runs[1].keys()
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    other = train_model(images, targets, num_classes=3, config=config, seed=8, threads=1, progress=False)
    assert not all(torch.equal(runs[0][k], v) for k, v in other.state_dict().items())


def test_ignored_pixels_do_not_contribute():
    """With a few labeled pixels, all of class 2, the model learns 'everything is class 2'."""
    images, _ = toy_scenes(np.random.default_rng(2), 4)
    targets = [np.full(im.shape[:2], IGNORE_INDEX, np.uint8) for im in images]
    targets[0][5, 5] = targets[0][20, 30] = targets[2][1, 40] = 2
    config = TrainConfig(iterations=15, batch_size=2, lr=0.05)
    model = train_model(images, targets, num_classes=4, config=config, seed=0, threads=1, progress=False)
    pred = next(predict_probs(model, images[1:2])).argmax(0)
    assert (pred == 2).mean() > 0.9


def test_training_handles_sizes_crops_and_padding():
    rng = np.random.default_rng(4)
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((20, 30), (28, 24), (33, 41))]
    targets = [rng.integers(0, 2, im.shape[:2]).astype(np.uint8) for im in images]
    targets.append(np.full((10, 12), IGNORE_INDEX, np.uint8))  # an unlabeled image is never sampled
    images.append(rng.integers(0, 256, (10, 12, 3), dtype=np.uint8))
    for crop in (None, 32, (16, 16)):
        config = TrainConfig(iterations=3, batch_size=3, lr=0.01, crop_size=crop)
        model = train_model(images, targets, num_classes=2, config=config, seed=0, threads=1, progress=False)
        assert all(torch.isfinite(p).all() for p in model.parameters())


class Crash(Exception):
    pass


def crash_after(k):
    def hook(i):
        if i == k:
            raise Crash

    return hook


@pytest.mark.parametrize("name", ["small", "deeplabv3_mobilenet_v3_large"])  # the latter has dropout
def test_resume_after_crash_is_bit_identical(toy, tmp_path, name):
    images, _, targets = toy
    config = TrainConfig(iterations=7, batch_size=3, lr=0.05, crop_size=24, model=name)
    kw = dict(num_classes=3, config=config, seed=1, threads=1, progress=False)
    expected = train_model(images, targets, **kw).state_dict()
    ckpt = tmp_path / "train_checkpoint.pt"
    with pytest.raises(Crash):
        train_model(images, targets, **kw, checkpoint=ckpt, checkpoint_every=2, on_iteration=crash_after(5))
    assert ckpt.is_file()
    saved = torch.load(ckpt, weights_only=True)
    assert saved["iteration"] == 4
    # the layout of adaspx.train_state/1: files written before keep resuming
    layout = "format fingerprint iteration model optimizer generator torch_rng cuda_rng order seen skipped loss_avg"
    assert list(saved) == layout.split()
    done = []
    resumed = train_model(images, targets, **kw, checkpoint=ckpt, checkpoint_every=2, on_iteration=done.append)
    assert done == [5, 6, 7]  # iterations 1-4 came from the checkpoint
    assert not ckpt.exists()
    state = resumed.state_dict()
    assert state.keys() == expected.keys()
    assert all(torch.equal(state[k], expected[k]) for k in expected)


def test_resume_ignores_state_of_another_run(toy, tmp_path, caplog):
    images, _, targets = toy
    ckpt = tmp_path / "train_checkpoint.pt"
    kw = dict(num_classes=3, threads=1, progress=False, checkpoint=ckpt, checkpoint_every=1)
    with pytest.raises(Crash):
        train_model(images, targets, config=FAST, seed=0, on_iteration=crash_after(3), **kw)
    done = []
    with caplog.at_level("WARNING"):
        train_model(images, targets, config=FAST, seed=5, on_iteration=done.append, **kw)  # another seed
    assert done == list(range(1, FAST.iterations + 1))
    assert "another run" in caplog.text
    assert not ckpt.exists() and list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="checkpoint_every"):
        train_model(images, targets, config=FAST, seed=0, num_classes=3, checkpoint_every=-1)


def test_training_restores_global_state(toy):
    images, _, targets = toy
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train_model(images, targets, num_classes=3, config=FAST, seed=0, threads=1, progress=False)
    assert torch.equal(torch.rand(3), expected)
    assert torch.get_num_threads() == threads
    assert torch.are_deterministic_algorithms_enabled() == deterministic


def test_progress_bar_on_stderr(toy, capsys):
    images, _, targets = toy
    train_model(images, targets, num_classes=3, config=FAST, seed=0, threads=1, progress=True)
    err = capsys.readouterr().err
    assert "train" in err and "loss" in err and "img_s" in err
    train_model(images, targets, num_classes=3, config=FAST, seed=0, threads=1, progress=False)
    assert capsys.readouterr().err == ""


def test_training_input_errors(toy):
    images, _, targets = toy
    kw = dict(num_classes=3, config=FAST, seed=0, progress=False)
    with pytest.raises(ValueError, match="12 images but 11 targets"):
        train_model(images, targets[:-1], **kw)
    bad = list(targets)
    bad[5] = bad[5][:, :-1]
    with pytest.raises(ValueError, match="target 5: shape"):
        train_model(images, bad, **kw)
    bad_images = list(images)
    bad_images[2] = bad_images[2].astype(np.float32)
    with pytest.raises(ValueError, match="image 2: expected an"):
        train_model(bad_images, targets, **kw)
    bad = list(targets)
    bad[1] = bad[1].copy()
    bad[1][0, 0] = 7
    with pytest.raises(ValueError, match="target 1: label 7"):
        train_model(images, bad, **kw)
    with pytest.raises(ValueError, match="no labeled pixel"):
        train_model(images, [np.full_like(t, IGNORE_INDEX) for t in targets], **kw)


class CountingLoader:
    """Items of a list read through a function, counting reads per key."""

    def __init__(self, items):
        self.items, self.reads = items, {}

    def __call__(self, key):
        self.reads[key] = self.reads.get(key, 0) + 1
        return self.items[key]


def test_lazy_inputs_train_the_same_weights(toy):
    images, _, targets = toy
    config = TrainConfig(iterations=9, batch_size=3, lr=0.05, crop_size=(20, 28))
    kw = dict(num_classes=3, config=config, seed=5, threads=1, progress=False)
    expected = train_model(images, targets, **kw).state_dict()
    load_images, load_targets = CountingLoader(images), CountingLoader(targets)
    keys = list(range(len(images)))
    lazy = LazyArrays(keys, load_images), LazyArrays(keys, load_targets)
    state = train_model(*lazy, **kw, cache_bytes=0).state_dict()
    assert all(torch.equal(state[k], expected[k]) for k in expected)
    # in-process loading, no cache: each of the 27 samples reads its image once; targets once more before training
    assert sum(load_images.reads.values()) == 27
    assert sum(load_targets.reads.values()) == 27 + 12
    # with the cache (the default), each of the 12 images is read once, the same weights again
    load_images.reads.clear()
    load_targets.reads.clear()
    state = train_model(*lazy, **kw).state_dict()
    assert all(torch.equal(state[k], expected[k]) for k in expected)
    assert load_images.reads == dict.fromkeys(keys, 1)
    assert load_targets.reads == dict.fromkeys(keys, 2)


def write_targets(path, targets):
    with ArtifactWriter(path, "adaspx.targets/1") as w:
        for k, target in enumerate(targets):
            w.add("labels", f"t{k:02d}", target)
    return [f"t{k:02d}" for k in range(len(targets))]


def same_state(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_workers_train_the_same_weights(toy, tmp_path):
    """Lists in this process, and lazy images with HDF5 targets read by two forked workers: the same weights."""
    images, _, targets = toy
    config = TrainConfig(iterations=5, batch_size=3, lr=0.05, crop_size=(20, 28))
    kw = dict(num_classes=3, config=config, seed=2, threads=1, progress=False)
    expected = train_model(images, targets, workers=0, **kw).state_dict()
    keys = write_targets(tmp_path / "targets.h5", targets)
    lazy_images = LazyArrays(keys, lambda key: images[int(key[1:])])
    h5_targets = H5Arrays(tmp_path / "targets.h5", "labels", keys, schema="adaspx.targets/1")
    state = train_model(lazy_images, h5_targets, workers=2, **kw).state_dict()
    assert same_state(state, expected)
    assert h5_targets._artifact is None  # closed before the workers were forked, and after training


def test_resume_with_workers_is_exact(toy, tmp_path):
    """The loader reads ahead of training; a checkpoint still holds the random state after the batches trained."""
    images, _, targets = toy
    config = TrainConfig(iterations=7, batch_size=2, lr=0.05, crop_size=24)
    kw = dict(num_classes=3, config=config, seed=4, threads=1, progress=False)
    expected = train_model(images, targets, workers=0, **kw).state_dict()
    ckpt = tmp_path / "train_checkpoint.pt"
    with pytest.raises(Crash):
        train_model(images, targets, workers=2, **kw, checkpoint=ckpt, checkpoint_every=3, on_iteration=crash_after(4))
    assert torch.load(ckpt, weights_only=True)["iteration"] == 3
    done = []
    resumed = train_model(
        images, targets, workers=1, **kw, checkpoint=ckpt, checkpoint_every=3, on_iteration=done.append
    )
    assert done == [4, 5, 6, 7]
    assert same_state(resumed.state_dict(), expected)


def test_h5_arrays(toy, tmp_path):
    _, labels, _ = toy
    keys = write_targets(tmp_path / "t.h5", labels[:3])
    arrays = H5Arrays(tmp_path / "t.h5", "labels", keys)
    assert len(arrays) == 3 and np.array_equal(arrays[1], labels[1])
    assert arrays._artifact is not None
    copy = pickle.loads(pickle.dumps(arrays))  # the open handle stays behind
    assert copy._artifact is None and np.array_equal(copy[2], labels[2])
    part = arrays[1:]
    assert isinstance(part, H5Arrays) and part.keys == keys[1:] and np.array_equal(part[0], labels[1])
    arrays.close()
    assert arrays._artifact is None and np.array_equal(arrays[0], labels[0])  # reopened
    arrays._pid = -1  # as if the handle had been inherited from another process: opened anew, not reused
    inherited = arrays._artifact
    arrays[0]
    assert arrays._artifact is not inherited
    with pytest.raises(ArtifactError, match="schema"):
        H5Arrays(tmp_path / "t.h5", "labels", keys, schema="adaspx.probs/1")[0]


def test_default_workers_and_errors(toy):
    assert [default_workers(t) for t in (None, 1, 2, 8)] == [0, 0, 1, 7]
    images, _, targets = toy
    with pytest.raises(ValueError, match="workers"):
        train_model(images, targets, num_classes=3, config=FAST, seed=0, workers=-1)


def test_lazy_input_errors_name_the_index(toy):
    images, _, targets = toy
    keys = list(range(len(images)))
    kw = dict(num_classes=3, config=FAST, seed=0, progress=False)
    small = [im[:, :-1] for im in images]  # every image one column narrower than its target
    with pytest.raises(ValueError, match=r"target \d+: shape \(32, 48\) does not match image \d+"):
        train_model(LazyArrays(keys, small.__getitem__), targets, **kw)
    with pytest.raises(ValueError, match="no labeled pixel"):
        empty = [np.full_like(t, IGNORE_INDEX) for t in targets]
        train_model(LazyArrays(keys, images.__getitem__), LazyArrays(keys, empty.__getitem__), **kw)


def test_train_config_validation():
    assert TrainConfig().model == "small"
    assert TrainConfig(crop_size=24).crop_hw() == (24, 24)
    for bad in ({"model": "unet"}, {"crop_size": 0}, {"crop_size": (3, 4, 5)}, {"iterations": 0}, {"lr": 0}):
        with pytest.raises(ValueError):
            TrainConfig(**bad)


def test_divergence_is_reported(toy):
    images, _, targets = toy
    config = TrainConfig(iterations=20, batch_size=2, lr=1e12)
    with pytest.raises(RuntimeError, match="diverged"):
        train_model(images, targets, num_classes=3, config=config, seed=0, threads=1, progress=False)


# --------------------------------------------------------------------------------------------- inference


def test_predict_probs_shapes_order_and_batching():
    torch.manual_seed(0)
    model = build_model("small", 4)
    rng = np.random.default_rng(5)
    sizes = [(20, 30), (20, 30), (20, 30), (16, 16), (20, 30), (9, 13)]
    images = [rng.integers(0, 256, (*s, 3), dtype=np.uint8) for s in sizes]
    batched = list(predict_probs(model, iter(images), batch_size=2))
    single = list(predict_probs(model, images, batch_size=1))
    assert len(batched) == len(images)
    for probs, one, size in zip(batched, single, sizes, strict=True):
        assert probs.shape == (4, *size) and probs.dtype == np.float32
        np.testing.assert_allclose(probs.sum(axis=0), 1.0, atol=1e-5)
        np.testing.assert_allclose(probs, one, atol=1e-5)
    assert not model.training
    assert not torch.is_inference_mode_enabled()


def test_predict_probs_matches_forward():
    torch.manual_seed(0)
    model = build_model("small", 3).eval()
    image = np.random.default_rng(6).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    x = _Normalizer(torch.device("cpu"))(image[None])
    expected = torch.softmax(model(x), dim=1)[0].detach().numpy()
    np.testing.assert_allclose(next(predict_probs(model, [image])), expected, atol=1e-6)


@pytest.mark.parametrize("stride", [2, 3, 8])
def test_predict_probs_stride_block_means(stride):
    torch.manual_seed(0)
    model = build_model("small", 3)
    rng = np.random.default_rng(7)
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((21, 30), (5, 7))]
    for image, full, low in zip(
        images, predict_probs(model, images), predict_probs(model, images, stride=stride), strict=True
    ):
        h, w = image.shape[:2]
        assert low.shape == (3, -(-h // stride), -(-w // stride))
        np.testing.assert_allclose(low.sum(axis=0), 1.0, atol=1e-5)
        for i, j in ((0, 0), (low.shape[1] - 1, low.shape[2] - 1)):
            block = full[:, i * stride : (i + 1) * stride, j * stride : (j + 1) * stride]
            np.testing.assert_allclose(low[:, i, j], block.mean(axis=(1, 2)), atol=1e-6)
        # what downstream stages read for each label pixel: the mean over its own block
        up = at_label_resolution(low, (h, w), stride)
        assert up.shape == full.shape
        np.testing.assert_allclose(up[:, h - 1, w - 1], low[:, -1, -1])
    with pytest.raises(ValueError, match="stride"):
        list(predict_probs(model, images, stride=0))


def test_predict_probs_rejects_bad_images():
    model = build_model("small", 3)
    with pytest.raises(ValueError, match="image 1"):
        list(predict_probs(model, [np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.uint8)]))


# ------------------------------------------------------------------------------------------- checkpoints


@pytest.mark.parametrize("name", ["small", "lraspp_mobilenet_v3_large"])
def test_checkpoint_round_trip(tmp_path, name):
    torch.manual_seed(0)
    model = build_model(name, 4)
    model.train()(torch.randn(2, 3, 32, 32))  # move the BatchNorm running statistics away from their init
    model.eval()
    path = tmp_path / "model.pt"
    save_checkpoint(path, model, model_name=name, num_classes=4, meta={"seed": 3, "train": {"lr": 0.01}})
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]
    loaded, info = load_checkpoint(path, device="cpu")
    assert info == {
        "format": "adaspx.checkpoint/1",
        "model_name": name,
        "num_classes": 4,
        "meta": {"seed": 3, "train": {"lr": 0.01}},
    }
    assert not loaded.training
    x = torch.randn(2, 3, 40, 48)
    with torch.inference_mode():
        assert torch.equal(model(x), loaded(x))


def test_checkpoint_errors(tmp_path):
    model = build_model("small", 2)
    missing = tmp_path / "nope.pt"
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_checkpoint(missing)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="garbage.pt"):
        load_checkpoint(garbage)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(CheckpointError, match="foreign.pt.*not an adaspx checkpoint"):
        load_checkpoint(foreign)
    wrong = tmp_path / "wrong.pt"
    save_checkpoint(wrong, model, model_name="small", num_classes=5, meta={})
    with pytest.raises(CheckpointError, match="wrong.pt.*cannot rebuild"):
        load_checkpoint(wrong)
    with pytest.raises(ValueError, match="JSON"):
        save_checkpoint(tmp_path / "m.pt", model, model_name="small", num_classes=2, meta={"x": object()})
    with pytest.raises(ValueError, match="unknown model"):
        save_checkpoint(tmp_path / "m.pt", model, model_name="unet", num_classes=2, meta={})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["foreign.pt", "garbage.pt", "wrong.pt"]


# ------------------------------------------------------------------------------ train.init in the train stage


@pytest.fixture(scope="module")
def train_stage(tmp_path_factory):
    """A 3-image synthetic pool, its manifest, fully labeled targets, and two checkpoints of the small model (the
    previous round's model and a ``model.weights`` file), every tensor (buffers too) away from any fresh init."""
    from adaspx import pipeline, synthetic
    from adaspx.datasets import load_manifest, read_label

    d = tmp_path_factory.mktemp("train_stage")
    synthetic.write_dataset(d / "data", train_size=3, val_size=1, height=32, width=40, seed=0)
    pipeline.prepare_dataset("folder", d / "data", {"pool": "train", "val": "val"}, d / "manifest.json")
    manifest = load_manifest(d / "manifest.json")
    with ArtifactWriter(d / "targets.h5", pipeline.SCHEMA_TARGETS) as w:
        for image_id in pipeline.pool_ids(manifest):
            w.add("labels", image_id, read_label(d / "data" / "labels" / f"{image_id}.png"))
    c = manifest["num_classes"]
    for name, seed in (("previous", 11), ("weights", 12)):
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            net = build_model("small", c)
        with torch.no_grad():
            for v in net.state_dict().values():
                if v.is_floating_point():
                    v.add_(torch.rand_like(v) + 0.5)
        save_checkpoint(d / f"{name}.pt", net, model_name="small", num_classes=c, meta={})
    return d, c


def _state(model_or_path):
    """A copy of every tensor of a model, or of the model saved at a path."""
    net = model_or_path if isinstance(model_or_path, torch.nn.Module) else load_checkpoint(model_or_path, "cpu")[0]
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def _same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(
    ("init", "previous", "weights", "starts_from"),
    [
        ("previous", True, None, "previous"),
        ("previous", True, "weights", "previous"),  # the previous model wins over model.weights
        ("previous", False, None, "seed"),  # round 0: no previous model
        ("previous", False, "weights", "weights"),
        ("scratch", True, None, "seed"),
        ("scratch", True, "weights", "weights"),
    ],
)
def test_train_init_chooses_the_starting_weights(train_stage, tmp_path, monkeypatch, init, previous, weights,
                                                 starts_from):  # fmt: skip
    # the weights training starts from, caught where the optimisation would begin
    import adaspx.training
    from adaspx import pipeline

    d, c = train_stage
    start = {}

    def no_fit(state, *args, **kwargs):
        start.update(_state(state.model))

    monkeypatch.setattr(adaspx.training, "_fit", no_fit)
    params = {"iterations": 1, "batch_size": 1, "checkpoint_every": 0, "init": init}
    pipeline.train(d / "manifest.json", d / "targets.h5", tmp_path / "model.pt", model="small", params=params,
                   experiment="e", seed=5, round=1, threads=1, progress=False,
                   weights=str(d / weights) + ".pt" if weights else None,
                   previous_model=str(d / "previous.pt") if previous else None)  # fmt: skip
    with torch.random.fork_rng():
        torch.manual_seed(5)  # a fresh model from the run's seed (before loading checkpoints draws random numbers)
        expected = {"seed": _state(build_model("small", c))}
    expected |= {"previous": _state(d / "previous.pt"), "weights": _state(d / "weights.pt")}
    assert [k for k, state in expected.items() if _same(start, state)] == [starts_from]
    assert _same(_state(tmp_path / "model.pt"), start)  # nothing trained: the stage saved its starting model
    meta = load_checkpoint(tmp_path / "model.pt", device="cpu")[1]["meta"]
    assert meta["train"]["init"] == init and (meta["experiment"], meta["seed"], meta["round"]) == ("e", 5, 1)
    assert meta["weights"] == (None if starts_from == "seed" else str(d / starts_from) + ".pt")


def test_train_init_previous_fine_tunes_the_previous_model(train_stage, tmp_path):
    # a real (one step, tiny learning rate) run: the trained parameters stay next to the previous model's
    from adaspx import pipeline

    d, c = train_stage
    params = {"iterations": 1, "batch_size": 1, "lr": 1e-9, "checkpoint_every": 0, "init": "previous"}
    pipeline.train(d / "manifest.json", d / "targets.h5", tmp_path / "model.pt", model="small", params=params,
                   experiment="e", seed=5, round=1, threads=1, progress=False,
                   previous_model=str(d / "previous.pt"))  # fmt: skip
    trained = dict(load_checkpoint(tmp_path / "model.pt", device="cpu")[0].named_parameters())
    previous = dict(load_checkpoint(d / "previous.pt", device="cpu")[0].named_parameters())
    assert trained.keys() == previous.keys()
    for name, p in trained.items():
        torch.testing.assert_close(p, previous[name], rtol=0, atol=1e-6, msg=name)


# ------------------------------------------------------------------------------------ class-set answers


def _set_points():
    """Four points of three classes, temperature 1 (exp(z) in brackets): A labeled 0 [2, 1, 1]; B and C in set
    {0, 1}: B [1, 1, 1], C [1, 2, 1]; D without a target. Set {1, 2} has no point here."""
    ln2 = float(np.log(2.0))
    logits = torch.tensor([[ln2, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, ln2, 0.0], [5.0, -5.0, 0.0]], dtype=torch.float64)
    codes = torch.tensor([0, 256, 256, 255])
    table = torch.tensor([[True, True, False], [False, True, True]])
    return logits, codes, table


def test_class_set_terms_against_hand_computed_values():
    from adaspx.training import SetLoss, class_set_loss, class_set_terms

    logits, codes, table = _set_points()
    ones = SetLoss(ce_temperature=1.0, mc_temperature=1.0, group_temperature=1.0)
    terms = class_set_terms(logits, codes, table, ones)
    ln = np.log
    assert float(terms["ce"]) == pytest.approx(ln(2))  # p_0(A) = 2/4
    assert float(terms["mc"]) == pytest.approx((-ln(2 / 3) - ln(3 / 4)) / 2)  # p_0 + p_1 of B, of C
    # per member of {0, 1}, the highest probability over B and C: p_0 = max(1/3, 1/4), p_1 = max(1/3, 2/4)
    assert float(terms["group"]) == pytest.approx((-ln(1 / 3) - ln(1 / 2)) / 2)
    total = (16 * ln(2) + 8 * float(terms["mc"]) + 1 * float(terms["group"])) / 16
    assert float(class_set_loss(logits, codes, table, ones)) == pytest.approx(total)
    # a temperature divides the logits of its term only; the total is divided by ce_weight / ce_temperature
    cfg = SetLoss()
    tempered = class_set_terms(logits, codes, table, cfg)
    for name in ("ce", "mc", "group"):
        assert float(tempered[name]) == pytest.approx(float(class_set_terms(logits / 0.1, codes, table, ones)[name]))
    expected = (16 * tempered["ce"] + 8 * tempered["mc"] + tempered["group"]) * 0.1 / 16
    assert float(class_set_loss(logits, codes, table, cfg)) == pytest.approx(float(expected))
    # nothing to average: 0
    empty = class_set_terms(logits, torch.full((4,), 255), table, cfg)
    assert [float(v) for v in empty.values()] == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("members", [[True, False, False], [True, True, True]])
def test_class_set_loss_gradients_are_finite_for_one_or_every_class(members):
    from adaspx.training import SetLoss, class_set_loss, class_set_terms

    logits = torch.tensor([[300.0, -300.0, 0.0], [-300.0, 300.0, 0.0], [0.0, 0.0, 900.0]], requires_grad=True)
    codes, table = torch.tensor([256, 256, 2]), torch.tensor([members])
    loss = class_set_loss(logits, codes, table, SetLoss())
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
    if all(members):  # "one of every class" is always true: the multiple-choice term is 0
        terms = class_set_terms(logits.detach(), codes, table, SetLoss())
        assert float(terms["mc"]) == pytest.approx(0.0, abs=1e-6)


def test_collate_renumbers_each_samples_class_sets_into_the_batch_table():
    from adaspx.training import _Collate

    image = np.zeros((2, 3, 3), np.uint8)
    a = (image, np.array([[256, 1, 255], [256, 256, 0]], np.int32), np.array([[1, 1, 0]], bool))
    b = (image, np.array([[257, 256, 2], [255, 255, 255]], np.int32), np.array([[0, 1, 1], [1, 0, 1]], bool))
    plain = (image, np.array([[0, 1, 2], [255, 255, 255]], np.uint8), None)
    _, tb, _, table = _Collate(None)([a, plain, b])
    assert tb.tolist() == [[[256, 1, 255], [256, 256, 0]], [[0, 1, 2], [255, 255, 255]], [[258, 257, 2], [255] * 3]]
    assert table.tolist() == [[True, True, False], [False, True, True], [True, False, True]]
    _, tb, _, table = _Collate(None)([plain, plain])
    assert tb.dtype == torch.uint8 and table is None  # no class sets: the batch of plain labels, as before


def test_training_from_class_sets_learns_one_of_the_set(toy):
    # class 0 is labeled on 10% of its pixels; every pixel of classes 1 and 2 is only known to be "1 or 2"
    from adaspx.annotation import SetTarget
    from adaspx.training import SetLoss

    images, labels, _ = toy
    rng = np.random.default_rng(5)
    targets = []
    for label in labels:
        codes = np.where((label == 0) & (rng.random(label.shape) < 0.1), 0, 255).astype(np.int32)
        codes[label > 0] = 256
        targets.append(SetTarget(codes, np.array([[False, True, True]])))
    config = TrainConfig(iterations=60, batch_size=4, lr=0.05)
    runs = [
        train_model(
            images, targets, num_classes=3, config=config, seed=0, threads=1, progress=False, set_loss=SetLoss()
        )  # fmt: skip
        for _ in range(2)
    ]
    assert all(torch.equal(v, runs[1].state_dict()[k]) for k, v in runs[0].state_dict().items())
    val_images, val_labels = toy_scenes(np.random.default_rng(1), 6)
    pred = np.stack([p.argmax(0) for p in predict_probs(runs[0], val_images)])
    truth = np.stack(val_labels)
    assert ((pred > 0) == (truth > 0)).mean() > 0.9  # class 0 against "one of the set"


def test_set_targets_with_codes_outside_their_sets_are_refused(toy):
    from adaspx.annotation import SetTarget
    from adaspx.training import SetLoss

    images, labels, _ = toy
    bad = SetTarget(np.full(labels[0].shape, 257, np.int32), np.array([[False, True, True]]))
    with pytest.raises(ValueError, match="target 0: code 257 is neither a class 0..2, 255 nor one of its 1 class sets"):
        train_model(images[:1], [bad], num_classes=3, config=FAST, seed=0, progress=False, set_loss=SetLoss())


def test_predictions_at_the_training_temperature(toy):
    # a model trained with the class-set loss at temperature T predicts softmax(logits / T)
    images, _, targets = toy
    model = train_model(images[:2], targets[:2], num_classes=3, config=FAST, seed=0, threads=1, progress=False)
    with torch.no_grad():
        x = _Normalizer(torch.device("cpu"))(np.stack(images[:1]))
        logits = model(x)[0].double()
    got = next(predict_probs(model, images[:1], temperature=0.1))
    np.testing.assert_allclose(got, torch.softmax(logits / 0.1, dim=0).numpy(), rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="temperature must be positive"):
        next(predict_probs(model, images[:1], temperature=0.0))


# ------------------------------------------------------------------------------------ random scaling


def test_random_scaling_resizes_each_sample_by_a_drawn_factor(toy):
    from adaspx.training import _draw_keys, _Samples

    images, labels, _ = toy
    samples = _Samples(images, labels, crop=None)
    image, target, _ = samples[(0, 0, 0, False, 0.5)]
    assert image.shape == (16, 24, 3) and (target == labels[0][::2, ::2]).all()  # nearest: every second pixel
    image, target, _ = samples[(0, 0, 0, False, 2.0)]
    assert image.shape == (64, 96, 3) and (target == np.repeat(np.repeat(labels[0], 2, 0), 2, 1)).all()
    # factors drawn from the list, crops placed on the scaled shape (48x32 images, 40x40 crop)
    keys = _draw_keys(list(range(12)) * 20, [(32, 48)] * 12, (40, 40), True, torch.Generator().manual_seed(0),
                      scales=(0.5, 2.0))  # fmt: skip
    scales = {k[4] for k in keys}
    assert scales == {0.5, 2.0}
    for _, y0, x0, _, scale in keys:
        assert (y0, x0) == (0, 0) if scale == 0.5 else (0 <= y0 <= 24 and 0 <= x0 <= 56)
    config = TrainConfig(iterations=4, batch_size=3, lr=0.05, crop_size=24, scales=[0.5, 1.0, 1.5])
    runs = [
        train_model(images, labels, num_classes=3, config=config, seed=1, threads=1, progress=False) for _ in range(2)
    ]
    assert all(torch.equal(v, runs[1].state_dict()[k]) for k, v in runs[0].state_dict().items())
    with pytest.raises(ValueError, match="scales must be positive factors"):
        TrainConfig(scales=[0.5, 0.0])
