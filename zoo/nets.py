"""The zoo's networks (PyTorch, dev-only): small convolutional trunks, task heads, and the export wrappers.

Every network is trained on the canonical input, RGB in [0, 1], ``(N, 3, S, S)``; the export wrappers
(:class:`Exported`) put the conversion from each model's declared preprocessing (channel order, layout, scaling,
mean, UINT8) in front of it, inside the ONNX graph, so the service must feed exactly what ``sightline.json``
declares.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "AnchoredHead",
    "CenterHead",
    "Classifier",
    "InputAdapter",
    "SceneNet",
    "TagHead",
    "YoloHead",
]


def conv(cin: int, cout: int, stride: int = 1, k: int = 3) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


class Trunk(nn.Module):
    """Stride-8 features with stride-16 context added back (a two-level FPN): ``(N, width, S/8, S/8)``."""

    def __init__(self, c: tuple[int, int, int, int] = (16, 32, 64, 96), width: int = 64) -> None:
        super().__init__()
        self.s4 = nn.Sequential(conv(3, c[0], 2), conv(c[0], c[1], 2), conv(c[1], c[1]))
        self.s8 = nn.Sequential(conv(c[1], c[2], 2), conv(c[2], c[2]))
        self.s16 = nn.Sequential(conv(c[2], c[3], 2), conv(c[3], c[3]), conv(c[3], c[3]))
        self.lateral = nn.Conv2d(c[3], c[2], 1)
        self.out = conv(c[2], width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f8 = self.s8(self.s4(x))
        f16 = self.s16(f8)
        return self.out(f8 + F.interpolate(self.lateral(f16), scale_factor=2.0, mode="nearest"))


class Classifier(nn.Module):
    """One shape per image: logits ``(N, C)`` (softmax at export)."""

    def __init__(self, classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            conv(3, 24, 2),
            conv(24, 48, 2),
            conv(48, 48),
            conv(48, 96, 2),
            conv(96, 96),
            conv(96, 128, 2),
            conv(128, 128),
        )
        self.fc = nn.Linear(128 * 2, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)
        return self.fc(torch.cat([f.mean(dim=(2, 3)), f.amax(dim=(2, 3))], dim=1))


class TagHead(nn.Module):
    """Multi-label presence: per-cell tag logits, max-pooled over the image: ``(N, T)``."""

    def __init__(self, width: int, tags: int) -> None:
        super().__init__()
        self.body = conv(width, width)
        self.pred = nn.Conv2d(width, tags, 1)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.pred(self.body(f)).amax(dim=(2, 3))


class YoloHead(nn.Module):
    """YOLOv2 region layout: ``(N, A * (5 + C), H, W)``, per anchor (tx, ty, tw, th, to, C class logits)."""

    def __init__(self, width: int, anchors: int, classes: int) -> None:
        super().__init__()
        self.body = conv(width, width)
        self.pred = nn.Conv2d(width, anchors * (5 + classes), 1)
        with torch.no_grad():  # objectness starts near 0.01, as most cells hold nothing
            self.pred.bias.view(anchors, 5 + classes)[:, 4] = -4.6

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.pred(self.body(f))


class AnchoredHead(nn.Module):
    """Faster-RCNN style outputs over fixed priors: score logits ``(N, P, C+1)`` and offsets ``(N, P, (C+1)*4)``.

    Prior ``p`` is anchor ``p % A`` of cell ``p // A`` (cells row-major).
    """

    def __init__(self, width: int, anchors: int, classes: int) -> None:
        super().__init__()
        self.anchors, self.classes = anchors, classes
        self.body = conv(width, width)
        self.scores = nn.Conv2d(width, anchors * (classes + 1), 1)
        self.offsets = nn.Conv2d(width, anchors * (classes + 1) * 4, 1)

    def forward(self, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        g = self.body(f)
        n = g.shape[0]
        scores = self.scores(g).permute(0, 2, 3, 1).reshape(n, -1, self.classes + 1)  # (N, H*W*A, C+1)
        offsets = self.offsets(g).permute(0, 2, 3, 1).reshape(n, -1, (self.classes + 1) * 4)  # (N, H*W*A, (C+1)*4)
        return scores, offsets


class CenterHead(nn.Module):
    """CenterNet outputs: heat logits ``(N, C, H, W)``, size (cells) and centre offset ``(N, 2, H, W)``."""

    def __init__(self, width: int, classes: int) -> None:
        super().__init__()
        self.body = conv(width, width)
        self.heat = nn.Conv2d(width, classes, 1)
        self.size = nn.Conv2d(width, 2, 1)
        self.offset = nn.Conv2d(width, 2, 1)
        nn.init.constant_(self.heat.bias, -2.19)  # prior 0.1, as in CenterNet

    def forward(self, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        g = self.body(f)
        return self.heat(g), self.size(g), self.offset(g)


class SceneNet(nn.Module):
    """One trunk, a tagging head and three detection heads: trained together, exported as four networks."""

    def __init__(self, classes: int, tags: int, yolo_anchors: int, priors: int) -> None:
        super().__init__()
        self.trunk = Trunk((16, 32, 64, 96), 64)
        self.tags = TagHead(64, tags)
        self.yolo = YoloHead(64, yolo_anchors, classes)
        self.anchored = AnchoredHead(64, priors, classes)
        self.center = CenterHead(64, classes)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        f = self.trunk(x)
        scores, offsets = self.anchored(f)
        heat, size, offset = self.center(f)
        return {
            "tags": self.tags(f),
            "yolo": self.yolo(f),
            "scores": scores,
            "offsets": offsets,
            "heat": heat,
            "size": size,
            "offset": offset,
        }


class InputAdapter(nn.Module):
    """The declared input tensor back to canonical RGB [0, 1] NCHW (the inverse of the declared preprocessing)."""

    def __init__(self, layout: str, channels: str, data_type: str, pixel_scaling: float, mean: torch.Tensor | None):
        super().__init__()
        self.layout, self.bgr, self.uint8 = layout, channels == "BGR", data_type == "UINT8"
        self.scale = 1.0 if self.uint8 else 255.0 / pixel_scaling
        # mean: (H, W, C) or (1, 1, C) in the declared channel order and scaled units
        self.register_buffer("mean", (mean if mean is not None else torch.zeros(1, 1, 3)).permute(2, 0, 1)[None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.layout == "NHWC":
            x = x.permute(0, 3, 1, 2)
        x = x.float()
        if not self.uint8:
            x = x + self.mean
        x = x * (self.scale / 255.0)
        if self.bgr:
            x = x.flip(1)
        return x
