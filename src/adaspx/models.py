"""Segmentation networks behind one constructor, :func:`build_model`.

Every model maps a normalized image batch ``(N, 3, H, W)`` to class logits ``(N, C, H, W)`` at input resolution.
Each one also exposes ``forward_lowres``, the logits before the final bilinear upsampling; ``forward`` is exactly
``F.interpolate(forward_lowres(x), size=(H, W), mode="bilinear", align_corners=False)``. Training uses the
low-resolution logits to evaluate the loss only at the labeled pixels (see :mod:`adaspx.training`), which is
the same loss at a fraction of the cost when labels are sparse.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)

MODELS = (
    "small",
    "lraspp_mobilenet_v3_large",
    "deeplabv3_mobilenet_v3_large",
    "deeplabv3_resnet50",
    "deeplabv3_resnet101",
    "deeplabv3plus_resnet50",
    "deeplabv3plus_resnet101",
)
"""Names accepted by :func:`build_model`."""

# The ImageNet classification weights that ``weights="torchvision"`` loads into each model's backbone.
_BACKBONE_WEIGHTS = {
    "lraspp_mobilenet_v3_large": ("MobileNet_V3_Large_Weights", "IMAGENET1K_V1"),
    "deeplabv3_mobilenet_v3_large": ("MobileNet_V3_Large_Weights", "IMAGENET1K_V1"),
    "deeplabv3_resnet50": ("ResNet50_Weights", "IMAGENET1K_V1"),
    "deeplabv3_resnet101": ("ResNet101_Weights", "IMAGENET1K_V1"),
    "deeplabv3plus_resnet50": ("ResNet50_Weights", "IMAGENET1K_V1"),
    "deeplabv3plus_resnet101": ("ResNet101_Weights", "IMAGENET1K_V1"),
}


def upsample_logits(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear (``align_corners=False``) resize of low-resolution logits to ``size``; no-op if already there."""
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


class SegmentationModel(nn.Module):
    """Base class: subclasses implement ``forward_lowres``; ``forward`` upsamples it to the input size."""

    def forward_lowres(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upsample_logits(self.forward_lowres(x), (x.shape[-2], x.shape[-1]))


def _conv_bn_relu(cin: int, cout: int, *, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class SmallSegNet(SegmentationModel):
    """Compact fully convolutional network for CPU training on small images.

    Architecture (widths ``(a, b, c)`` = ``(12, 24, 48)`` by default; every convolution is 3x3 + BatchNorm +
    ReLU):

    - stride 2: ``stem``, one stride-2 convolution 3 -> a; its output is also the skip feature;
    - stride 4: one stride-2 convolution a -> b, then ``depth4`` more convolutions b -> b (none by default);
    - stride 8: one stride-2 convolution b -> c, then a context block of dilated convolutions c -> c
      (``dilations``, 2 and 4 by default: receptive field 111 px) and image-level context (global average
      pooling, 1x1 convolution, added to every position; starts at zero);
    - head, FCN-style skip fusion: a 1x1 convolution c -> C gives class logits at stride 8, upsampled
      bilinearly to stride 2 and added to a 1x1 convolution a -> C of the skip feature; ``forward`` upsamples
      the sum bilinearly to the input size.

    With 8 classes: 58k parameters, 13 MMAC per 96x128 image. The default widths and depth are the fastest of
    the variants tried on the synthetic street scenes: wider or deeper ones reached the same validation mIoU, and
    the learning rate mattered more than the architecture. Speed and the comparison: benchmarks/README.md,
    "Training".
    """

    def __init__(
        self,
        num_classes: int,
        *,
        widths: tuple[int, int, int] = (12, 24, 48),
        depth4: int = 0,
        dilations: tuple[int, ...] = (2, 4),
    ) -> None:
        super().__init__()
        a, b, c = widths
        self.stem = _conv_bn_relu(3, a, stride=2)
        self.stage4 = nn.Sequential(_conv_bn_relu(a, b, stride=2), *[_conv_bn_relu(b, b) for _ in range(depth4)])
        self.stage8 = nn.Sequential(
            _conv_bn_relu(b, c, stride=2), *[_conv_bn_relu(c, c, dilation=d) for d in dilations]
        )
        self.image_context = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(c, c, 1))
        self.classifier = nn.Conv2d(c, num_classes, 1)
        self.skip_classifier = nn.Conv2d(a, num_classes, 1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        # Start the image-level context at zero so it does not dominate the first iterations.
        nn.init.zeros_(self.image_context[1].weight)

    def forward_lowres(self, x: torch.Tensor) -> torch.Tensor:
        """Logits at stride 2, ``(N, C, ceil(H/2), ceil(W/2))``."""
        skip = self.stem(x.contiguous(memory_format=torch.channels_last))
        f = self.stage8(self.stage4(skip))
        f = f + self.image_context(f)
        logits = upsample_logits(self.classifier(f), (skip.shape[-2], skip.shape[-1]))
        return logits + self.skip_classifier(skip)


class TorchvisionSegNet(SegmentationModel):
    """A torchvision segmentation model (``net``) whose dict output is replaced by plain logits."""

    def __init__(self, net: nn.Module, *, deeplab: bool) -> None:
        super().__init__()
        self.net = net
        self._deeplab = deeplab

    def forward_lowres(self, x: torch.Tensor) -> torch.Tensor:
        """Classifier logits before torchvision's final upsampling (DeepLabV3: stride 16 on MobileNetV3, 8 on
        ResNet; LR-ASPP: 8)."""
        features = self.net.backbone(x.contiguous(memory_format=torch.channels_last))
        if self._deeplab:
            features = features["out"]
        return self.net.classifier(features)


class DeepLabV3Plus(SegmentationModel):
    """DeepLabV3+ (Chen et al., ECCV 2018) on a torchvision ResNet: the paper's architecture family.

    - encoder: ResNet-50/101 at output stride 16 (``replace_stride_with_dilation=[False, False, True]``, so
      ``layer4`` is dilated), followed by torchvision's ASPP (rates 6, 12, 18, image pooling, 256 channels,
      dropout 0.5 in training);
    - decoder: the ``layer1`` features (stride 4, 256 channels) reduced to 48 channels by a 1x1 convolution +
      BatchNorm + ReLU, concatenated with the ASPP output upsampled bilinearly to stride 4, two 3x3
      convolutions (256 channels, BatchNorm + ReLU) and a 1x1 classifier.

    ``forward_lowres`` returns the stride-4 logits. The reference model is the same decoder on Xception-65.
    """

    def __init__(self, backbone: nn.Module, num_classes: int) -> None:
        super().__init__()
        from torchvision.models._utils import IntermediateLayerGetter
        from torchvision.models.segmentation.deeplabv3 import ASPP

        self.backbone = IntermediateLayerGetter(backbone, return_layers={"layer1": "low", "layer4": "out"})
        self.aspp = ASPP(2048, [6, 12, 18], 256)
        self.low_proj = nn.Sequential(nn.Conv2d(256, 48, 1, bias=False), nn.BatchNorm2d(48), nn.ReLU(inplace=True))
        self.decoder = nn.Sequential(_conv_bn_relu(256 + 48, 256), _conv_bn_relu(256, 256))
        self.classifier = nn.Conv2d(256, num_classes, 1)
        for module in (self.low_proj, self.decoder, self.classifier):
            for m in module.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)

    def forward_lowres(self, x: torch.Tensor) -> torch.Tensor:
        """Logits at stride 4, the size of ResNet's ``layer1`` output (``ceil(ceil(H/2)/2)`` per side)."""
        features = self.backbone(x.contiguous(memory_format=torch.channels_last))
        low = self.low_proj(features["low"])
        high = upsample_logits(self.aspp(features["out"]), (low.shape[-2], low.shape[-1]))
        return self.classifier(self.decoder(torch.cat([high, low], dim=1)))


def torchvision_weights_file(name: str) -> Path:
    """Where ``weights="torchvision"`` expects the backbone weights of model ``name``: torch's hub cache."""
    import torchvision.models as tvm

    enum_name, member = _BACKBONE_WEIGHTS[name]
    url = getattr(getattr(tvm, enum_name), member).url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def _backbone_weights(name: str):
    """torchvision's ImageNet weights enum for ``name``'s backbone, after checking they are already cached."""
    import torchvision.models as tvm

    if name not in _BACKBONE_WEIGHTS:
        raise ValueError(f"model {name!r} has no torchvision backbone weights")
    path = torchvision_weights_file(name)
    if not path.is_file():
        enum_name, member = _BACKBONE_WEIGHTS[name]
        weights = getattr(getattr(tvm, enum_name), member)
        raise FileNotFoundError(
            f"model.weights=torchvision: {path} not found (torchvision's {enum_name}.{member} backbone weights for "
            f"{name}). adaspx never downloads weights; fetch them once on a machine with internet access, e.g. "
            f"`python -c \"import torch; torch.hub.load_state_dict_from_url('{weights.url}')\"`, and copy the "
            f"file there (torch.hub.get_dir() honours $TORCH_HOME)"
        )
    enum_name, member = _BACKBONE_WEIGHTS[name]
    return getattr(getattr(tvm, enum_name), member)


def _load_weights_file(model: nn.Module, path: str | os.PathLike, name: str) -> None:
    """Initialize ``model`` from an adaspx checkpoint or a plain state dict at ``path``.

    Every tensor whose name and shape match is copied; the others (typically the final classifier when the
    number of classes differs) keep their random initialization and are logged.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model.weights: {path} not found (expected none, torchvision or a checkpoint path)")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(payload, dict) and "state_dict" in payload:
        if payload.get("model_name") not in (None, name):
            raise ValueError(f"model.weights: {path} holds a {payload['model_name']!r} model, not {name!r}")
        payload = payload["state_dict"]
    if not isinstance(payload, dict):
        raise ValueError(f"model.weights: {path} holds no state dict")
    own = model.state_dict()
    matched = {k: v for k, v in payload.items() if k in own and tuple(own[k].shape) == tuple(v.shape)}
    if not matched:
        raise ValueError(f"model.weights: no tensor of {path} matches model {name!r}")
    model.load_state_dict(matched, strict=False)
    skipped = sorted(set(own) - set(matched))
    log.info(
        "initialized %s from %s: %d tensors loaded, %d kept random %s",
        name,
        path,
        len(matched),
        len(skipped),
        skipped[:6],
    )


def build_model(
    name: str, num_classes: int, *, pretrained_backbone: bool = False, weights: str | os.PathLike | None = None
) -> SegmentationModel:
    """A segmentation model; see :data:`MODELS`.

    ``weights`` (the ``model.weights`` config key): ``None`` or ``"none"``: random initialization (from the
    global torch RNG); ``"torchvision"``: torchvision's ImageNet classification weights in the backbone (ResNet
    or MobileNetV3; the heads stay random), read from torch's hub cache only (``torch.hub.get_dir()/
    checkpoints``; FileNotFoundError naming the expected file when absent, nothing is ever downloaded);
    anything else: the path of an adaspx checkpoint or state dict of this model, whose matching tensors are
    loaded (see :func:`_load_weights_file`). ``pretrained_backbone=True`` is the same as ``"torchvision"``.

    The paper's setting (DeepLabv3+ with ImageNet backbone weights) is ``deeplabv3plus_resnet101`` (or
    ``_resnet50``) with ``weights="torchvision"``; the reference uses an Xception-65 backbone instead.

    ``deeplabv3_resnet50``/``101`` are torchvision's DeepLabV3 (output stride 8, no auxiliary head);
    ``deeplabv3plus_*`` is :class:`DeepLabV3Plus`. The model is returned in ``channels_last`` memory format
    and converts its input to it, which is faster on CPU (oneDNN) and GPU alike.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(MODELS)}")
    if not isinstance(num_classes, int) or not 1 <= num_classes <= 255:
        raise ValueError(f"num_classes must be an integer in 1..255 (255 is the ignore label), got {num_classes!r}")
    if isinstance(weights, str) and weights.lower() == "none":
        weights = None
    if pretrained_backbone:
        if weights not in (None, "torchvision"):
            raise ValueError(f"pretrained_backbone=True conflicts with weights={weights!r}")
        weights = "torchvision"
    if name == "small":
        if weights == "torchvision":
            raise ValueError("model 'small' has no pretrained backbone")
        model: SegmentationModel = SmallSegNet(num_classes)
    else:
        backbone_weights = _backbone_weights(name) if weights == "torchvision" else None
        if name.startswith("deeplabv3plus_"):
            from torchvision.models import resnet50, resnet101

            resnet = resnet50 if name.endswith("resnet50") else resnet101
            backbone = resnet(weights=backbone_weights, replace_stride_with_dilation=[False, False, True])
            model = DeepLabV3Plus(backbone, num_classes)
        else:
            from torchvision.models import segmentation as seg

            net = getattr(seg, name)(
                weights=None,
                weights_backbone=backbone_weights,
                num_classes=num_classes,
                **({} if name.startswith("lraspp") else {"aux_loss": False}),
            )
            model = TorchvisionSegNet(net, deeplab=not name.startswith("lraspp"))
    if weights not in (None, "torchvision"):
        _load_weights_file(model, weights, name)
    return model.to(memory_format=torch.channels_last)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
