"""Segmentation networks behind one constructor, :func:`build_model`.

Every model maps a normalized image batch ``(N, 3, H, W)`` to class logits ``(N, C, H, W)`` at input resolution.
Each one also exposes ``forward_lowres``, the logits before the final bilinear upsampling; ``forward`` is exactly
``F.interpolate(forward_lowres(x), size=(H, W), mode="bilinear", align_corners=False)``. Training uses the
low-resolution logits to evaluate the loss only at the labeled pixels (see :mod:`adaspx.training`), which is
the same loss at a fraction of the cost when labels are sparse.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

MODELS = ("small", "lraspp_mobilenet_v3_large", "deeplabv3_mobilenet_v3_large")
"""Names accepted by :func:`build_model`."""


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

    With 8 classes: 58k parameters, 13 MMAC per 96x128 image. Training at batch 8 on 96x128 images with one CPU
    thread runs at ~470-600 images/s (300 iterations in 4-5 s; sparser labels are faster, see
    :mod:`adaspx.training`). On the synthetic street scenes, wider or deeper variants (up to 115k parameters,
    stride-2 feature fusion, a second stem convolution) reached the same validation mIoU within noise after 300
    iterations, so the default is the fastest of them; the learning rate matters more (0.1 beats 0.01 by ~0.04
    mIoU there).
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
        """Classifier logits before torchvision's final upsampling (stride 16 for DeepLabV3, 8 for LR-ASPP)."""
        features = self.net.backbone(x.contiguous(memory_format=torch.channels_last))
        if self._deeplab:
            features = features["out"]
        return self.net.classifier(features)


def build_model(name: str, num_classes: int, *, pretrained_backbone: bool = False) -> SegmentationModel:
    """A freshly initialized segmentation model; see :data:`MODELS`.

    ``pretrained_backbone`` loads torchvision's ImageNet MobileNetV3 weights (downloaded on first use) for the
    torchvision models; the ``small`` model has none. The model is returned in ``channels_last`` memory format
    and converts its input to it, which is faster on CPU (oneDNN) and GPU alike.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(MODELS)}")
    if not isinstance(num_classes, int) or not 1 <= num_classes <= 255:
        raise ValueError(f"num_classes must be an integer in 1..255 (255 is the ignore label), got {num_classes!r}")
    if name == "small":
        if pretrained_backbone:
            raise ValueError("model 'small' has no pretrained backbone")
        model: SegmentationModel = SmallSegNet(num_classes)
    else:
        from torchvision.models import MobileNet_V3_Large_Weights
        from torchvision.models.segmentation import deeplabv3_mobilenet_v3_large, lraspp_mobilenet_v3_large

        backbone_weights = MobileNet_V3_Large_Weights.IMAGENET1K_V1 if pretrained_backbone else None
        if name == "lraspp_mobilenet_v3_large":
            net = lraspp_mobilenet_v3_large(weights=None, weights_backbone=backbone_weights, num_classes=num_classes)
            model = TorchvisionSegNet(net, deeplab=False)
        else:
            net = deeplabv3_mobilenet_v3_large(
                weights=None, weights_backbone=backbone_weights, num_classes=num_classes, aux_loss=False
            )
            model = TorchvisionSegNet(net, deeplab=True)
    return model.to(memory_format=torch.channels_last)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
