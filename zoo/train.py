"""Rebuild the bundled shape models from scratch: generate scenes, train, export to ONNX, write the model folders.

    .venv-zoo/bin/python -m zoo.train [--out model_repository] [--cache .zoo-cache] [--only classifier,scene-net]

Dev-only (needs PyTorch; see ``docs/zoo.md``). Deterministic: fixed seeds, two threads, deterministic algorithms.
The classifier is a network of its own. The tagger and the three detectors share one trunk, trained once with
four heads (tags, YOLO region, Faster-RCNN style anchored, CenterNet decoded in the graph), and are exported as
four networks, each with its own preprocessing and output layout.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from service.triton.repository import config_pbtxt, inspect_onnx
from zoo import data, decode, nets, scenes
from zoo.preprocess import encode_binaryproto

log = logging.getLogger("zoo.train")

ROOT = Path(__file__).resolve().parent.parent
CLASSES = len(scenes.SHAPES)
GRID = 16  # detector output grid (128 / 8)
DET_SIZE, CLS_SIZE = 128, 64
TOP_K = 100  # direct detector's fixed number of outputs
DIRECT_LABEL_IDS = [i + 1 for i in range(CLASSES)]  # TF-style: 0 is background, so the spec's ids start at 1
OPSET = 17

SEEDS = {"classification": 1_000, "detection": 2_000, "validation": 3_000, "torch": 4_000}
SIZES = {"classification": 12_000, "detection": 16_000, "validation": 800}


# ------------------------------------------------------------------------------------------------- utilities
def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - for any library code still on the legacy global generator
    torch.manual_seed(seed)


def to_tensor(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(N, S, S, 3) uint8 → canonical (N, 3, S, S) float in [0, 1]."""
    x = torch.from_numpy(images) if isinstance(images, np.ndarray) else images
    return x.permute(0, 3, 1, 2).float().div_(255.0)


def batches(n: int, size: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    order = rng.permutation(n)
    for i in range(0, n - size + 1, size):
        yield order[i : i + size]


def dihedral(x: torch.Tensor, boxes: torch.Tensor | None, rng: np.random.Generator) -> tuple[torch.Tensor, Any]:
    """A random flip / transpose of a batch (N, 3, S, S) and its normalised boxes (N, M, 6); all shapes stay shapes."""
    b = boxes.clone() if boxes is not None else None
    if rng.random() < 0.5:
        x = x.flip(3)
        if b is not None:
            b[..., [0, 2]] = 1.0 - b[..., [2, 0]]
    if rng.random() < 0.5:
        x = x.flip(2)
        if b is not None:
            b[..., [1, 3]] = 1.0 - b[..., [3, 1]]
    if rng.random() < 0.5:
        x = x.transpose(2, 3)
        if b is not None:
            b[..., [0, 1, 2, 3]] = b[..., [1, 0, 3, 2]]
    return x.contiguous(), b


def permute_channels(x: torch.Tensor, rng: np.random.Generator, p: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Shuffle RGB of each image with probability ``p`` (the shape heads must not tie a shape to a colour).

    Returns the images and a bool mask of those whose colours were changed.
    """
    perms = np.stack([rng.permutation(3) if rng.random() < p else np.arange(3) for _ in range(x.shape[0])])
    changed = torch.from_numpy((perms != np.arange(3)).any(1))
    perms_t = torch.from_numpy(perms)
    return torch.gather(x, 1, perms_t[:, :, None, None].expand_as(x)), changed


def fit(
    model: nn.Module, steps: int, lr: float, step_fn: Callable[[int], torch.Tensor], name: str, log_every: int = 100
) -> None:
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=lr, total_steps=steps, pct_start=0.15)
    model.train()
    start, running = time.time(), 0.0
    for step in range(steps):
        loss = step_fn(step)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        optimiser.step()
        schedule.step()
        running += float(loss.detach())
        if (step + 1) % log_every == 0:
            log.info(
                "%s step %d/%d loss %.4f (%.0f s)", name, step + 1, steps, running / log_every, time.time() - start
            )
            running = 0.0
    model.eval()


# ------------------------------------------------------------------------------------------------ box maths
def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of xyxy boxes ``a (..., N, 4)`` and ``b (..., M, 4)`` → ``(..., N, M)``."""
    lt = torch.maximum(a[..., :, None, :2], b[..., None, :, :2])
    rb = torch.minimum(a[..., :, None, 2:], b[..., None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area_a = (a[..., 2:] - a[..., :2]).clamp(min=0).prod(-1)
    area_b = (b[..., 2:] - b[..., :2]).clamp(min=0).prod(-1)
    return inter / (area_a[..., :, None] + area_b[..., None, :] - inter).clamp(min=1e-9)


def kmeans_anchors(boxes: np.ndarray, k: int, iterations: int = 50) -> np.ndarray:
    """k-means on box (w, h) with 1 - IoU as the distance (YOLOv2); deterministic init on size quantiles."""
    valid = boxes[..., 5] > 0
    wh = np.stack([(boxes[..., 2] - boxes[..., 0])[valid], (boxes[..., 3] - boxes[..., 1])[valid]], axis=1)
    order = np.argsort(wh.prod(1))
    centres = wh[order[((np.arange(k) + 0.5) / k * len(order)).astype(int)]]
    for _ in range(iterations):
        inter = np.minimum(wh[:, None, 0], centres[None, :, 0]) * np.minimum(wh[:, None, 1], centres[None, :, 1])
        iou = inter / (wh.prod(1)[:, None] + centres.prod(1)[None] - inter)
        assign = iou.argmax(1)
        centres = np.stack([np.median(wh[assign == j], axis=0) for j in range(k)])
    return centres[np.argsort(centres.prod(1))]


# ------------------------------------------------------------------------------------------ detector losses
def yolo_loss(out: torch.Tensor, boxes: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """YOLOv2 loss. ``out (B, A*(5+C), G, G)``, ``boxes (B, M, 6)`` normalised, ``anchors (A, 2)`` in cells."""
    bsz, a = out.shape[0], anchors.shape[0]
    out = out.view(bsz, a, 5 + CLASSES, GRID, GRID)
    valid = boxes[..., 5] > 0
    gcx = (boxes[..., 0] + boxes[..., 2]) / 2 * GRID
    gcy = (boxes[..., 1] + boxes[..., 3]) / 2 * GRID
    gw = (boxes[..., 2] - boxes[..., 0]) * GRID
    gh = (boxes[..., 3] - boxes[..., 1]) * GRID
    col = gcx.floor().clamp(0, GRID - 1).long()
    row = gcy.floor().clamp(0, GRID - 1).long()
    inter = torch.minimum(gw[..., None], anchors[:, 0]) * torch.minimum(gh[..., None], anchors[:, 1])
    best = (inter / (gw[..., None] * gh[..., None] + anchors.prod(1) - inter)).argmax(-1)  # (B, M)

    # Predicted boxes that already overlap a ground truth well are not pushed towards "no object".
    with torch.no_grad():
        rows, cols = torch.meshgrid(torch.arange(GRID), torch.arange(GRID), indexing="ij")
        px = (cols + out[:, :, 0].sigmoid()) / GRID
        py = (rows + out[:, :, 1].sigmoid()) / GRID
        pw = anchors[:, 0, None, None] * out[:, :, 2].clamp(max=6).exp() / GRID
        ph = anchors[:, 1, None, None] * out[:, :, 3].clamp(max=6).exp() / GRID
        pred = torch.stack([px - pw / 2, py - ph / 2, px + pw / 2, py + ph / 2], -1).view(bsz, -1, 4)
        gt = torch.where(valid[..., None], boxes[..., :4], torch.full_like(boxes[..., :4], -2.0))
        ignore = box_iou(pred, gt).amax(-1).view(bsz, a, GRID, GRID) > 0.6

    b_idx, m_idx = valid.nonzero(as_tuple=True)
    a_idx, r_idx, c_idx = best[b_idx, m_idx], row[b_idx, m_idx], col[b_idx, m_idx]
    target = torch.zeros(bsz, a, GRID, GRID)
    weight = (~ignore).float()
    target[b_idx, a_idx, r_idx, c_idx] = 1.0
    weight[b_idx, a_idx, r_idx, c_idx] = 5.0
    loss_obj = F.binary_cross_entropy_with_logits(out[:, :, 4], target, weight=weight, reduction="sum")

    p = out[b_idx, a_idx, :, r_idx, c_idx]  # (P, 5 + C)
    scale = 2.0 - (gw * gh)[b_idx, m_idx] / GRID**2
    loss_xy = F.binary_cross_entropy_with_logits(
        p[:, 0:2], torch.stack([gcx - col, gcy - row], -1)[b_idx, m_idx], reduction="none"
    ).sum(-1)
    twh = torch.stack([torch.log(gw / anchors[best, 0]), torch.log(gh / anchors[best, 1])], -1)[b_idx, m_idx]
    loss_wh = F.smooth_l1_loss(p[:, 2:4], twh, reduction="none", beta=0.1).sum(-1)
    loss_cls = F.cross_entropy(p[:, 5:], boxes[b_idx, m_idx, 4].long(), reduction="sum")
    return (loss_obj + ((loss_xy + loss_wh) * scale).sum() * 2.0 + loss_cls) / bsz


def prior_boxes(anchors: torch.Tensor) -> torch.Tensor:
    """Priors ``(G*G*A, 4)`` normalised xyxy: anchor ``p % A`` centred on cell ``p // A`` (row-major)."""
    rows, cols = torch.meshgrid(torch.arange(GRID), torch.arange(GRID), indexing="ij")
    cx = ((cols.reshape(-1, 1) + 0.5) / GRID).expand(-1, anchors.shape[0])
    cy = ((rows.reshape(-1, 1) + 0.5) / GRID).expand(-1, anchors.shape[0])
    w, h = anchors[None, :, 0].expand_as(cx) / GRID, anchors[None, :, 1].expand_as(cy) / GRID
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1).reshape(-1, 4)


def anchored_loss(
    scores: torch.Tensor, offsets: torch.Tensor, boxes: torch.Tensor, priors: torch.Tensor
) -> torch.Tensor:
    """SSD-style matching (IoU ≥ 0.5, plus each ground truth's best prior), hard negatives 3:1, smooth L1."""
    bsz, n, _ = scores.shape
    valid = boxes[..., 5] > 0
    gt = torch.where(valid[..., None], boxes[..., :4], torch.full_like(boxes[..., :4], -2.0))
    iou = box_iou(priors[None].expand(bsz, -1, -1), gt)  # (B, N, M)
    best_iou, best_gt = iou.max(-1)
    forced = iou.argmax(1)  # (B, M) best prior of each ground truth
    b_idx, m_idx = valid.nonzero(as_tuple=True)
    best_gt[b_idx, forced[b_idx, m_idx]] = m_idx
    best_iou[b_idx, forced[b_idx, m_idx]] = 1.0
    labels = torch.gather(boxes[..., 4], 1, best_gt).long() + 1
    labels = torch.where(best_iou >= 0.5, labels, torch.zeros_like(labels))
    ignore = (best_iou >= 0.4) & (best_iou < 0.5)
    positive = labels > 0

    ce = F.cross_entropy(scores.reshape(-1, CLASSES + 1), labels.reshape(-1), reduction="none").view(bsz, n)
    negative_ce = torch.where(positive | ignore, torch.zeros_like(ce), ce)
    rank = negative_ce.detach().argsort(1, descending=True).argsort(1)
    n_neg = (positive.sum(1, keepdim=True) * 3).clamp(min=10)
    hard = rank < n_neg
    n_pos = positive.sum().clamp(min=1)
    loss_cls = (ce[positive].sum() + negative_ce[hard].sum()) / n_pos

    matched = torch.gather(gt, 1, best_gt[..., None].expand(-1, -1, 4))[positive]  # (P, 4)
    pr = priors[None].expand(bsz, -1, -1)[positive]
    pw, ph = pr[:, 2] - pr[:, 0], pr[:, 3] - pr[:, 1]
    gw, gh = matched[:, 2] - matched[:, 0], matched[:, 3] - matched[:, 1]
    target = torch.stack(
        [
            ((matched[:, 0] + matched[:, 2]) - (pr[:, 0] + pr[:, 2])) / 2 / pw,
            ((matched[:, 1] + matched[:, 3]) - (pr[:, 1] + pr[:, 3])) / 2 / ph,
            torch.log(gw / pw),
            torch.log(gh / ph),
        ],
        -1,
    )
    pred = offsets.view(bsz, n, CLASSES + 1, 4)[positive]  # (P, C+1, 4)
    pred = pred[torch.arange(pred.shape[0]), labels[positive]]
    loss_loc = F.smooth_l1_loss(pred, target, reduction="sum", beta=1.0 / 9.0) / n_pos
    return loss_cls + loss_loc


def gaussian_radius(h: torch.Tensor, w: torch.Tensor, min_overlap: float = 0.7) -> torch.Tensor:
    """CenterNet's radius within which a shifted box keeps ``min_overlap`` IoU (sizes in cells)."""
    a1, b1, c1 = 1.0, h + w, w * h * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + torch.sqrt(b1**2 - 4 * a1 * c1)) / 2
    a2, b2, c2 = 4.0, 2 * (h + w), (1 - min_overlap) * w * h
    r2 = (b2 + torch.sqrt(b2**2 - 4 * a2 * c2)) / 2
    a3, b3, c3 = 4 * min_overlap, -2 * min_overlap * (h + w), (min_overlap - 1) * w * h
    r3 = (b3 + torch.sqrt(b3**2 - 4 * a3 * c3)) / 2
    return torch.minimum(torch.minimum(r1, r2), r3).clamp(min=0)


def center_loss(heat: torch.Tensor, size: torch.Tensor, offset: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """CenterNet: penalty-reduced focal loss on a Gaussian heat map, L1 on size and centre offset."""
    valid = boxes[..., 5] > 0
    gcx = (boxes[..., 0] + boxes[..., 2]) / 2 * GRID
    gcy = (boxes[..., 1] + boxes[..., 3]) / 2 * GRID
    gw = (boxes[..., 2] - boxes[..., 0]) * GRID
    gh = (boxes[..., 3] - boxes[..., 1]) * GRID
    col = gcx.floor().clamp(0, GRID - 1)
    row = gcy.floor().clamp(0, GRID - 1)
    sigma = (2 * gaussian_radius(gh, gw).floor() + 1) / 6
    rows, cols = torch.meshgrid(torch.arange(GRID), torch.arange(GRID), indexing="ij")
    g = torch.exp(
        -((cols - col[..., None, None]) ** 2 + (rows - row[..., None, None]) ** 2) / (2 * sigma[..., None, None] ** 2)
    )  # (B, M, G, G)
    onehot = F.one_hot(boxes[..., 4].long(), CLASSES).float() * valid[..., None]  # (B, M, C)
    target = (onehot[..., None, None] * g[:, :, None]).amax(1)  # (B, C, G, G)

    p = heat.sigmoid().clamp(1e-4, 1 - 1e-4)
    pos = target >= 1.0
    loss_pos = -(torch.log(p) * (1 - p) ** 2)[pos].sum()
    loss_neg = -(torch.log(1 - p) * p**2 * (1 - target) ** 4)[~pos].sum()
    n_pos = valid.sum().clamp(min=1)

    b_idx, m_idx = valid.nonzero(as_tuple=True)
    r_idx, c_idx = row[b_idx, m_idx].long(), col[b_idx, m_idx].long()
    loss_size = F.l1_loss(size[b_idx, :, r_idx, c_idx], torch.stack([gw, gh], -1)[b_idx, m_idx], reduction="sum")
    loss_off = F.l1_loss(
        offset[b_idx, :, r_idx, c_idx], torch.stack([gcx - col, gcy - row], -1)[b_idx, m_idx], reduction="sum"
    )
    return (loss_pos + loss_neg + 0.1 * loss_size + loss_off) / n_pos


# --------------------------------------------------------------------------------------------- export graphs
class ExportClassifier(nn.Module):
    def __init__(self, adapter: nn.Module, net: nn.Module) -> None:
        super().__init__()
        self.adapter, self.net = adapter, net

    def forward(self, data: torch.Tensor) -> torch.Tensor:
        return self.net(self.adapter(data)).softmax(-1)


class ExportTagger(nn.Module):
    def __init__(self, adapter: nn.Module, net: nets.SceneNet) -> None:
        super().__init__()
        self.adapter, self.trunk, self.head = adapter, net.trunk, net.tags

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(self.adapter(image))).sigmoid()


class ExportYolo(nn.Module):
    def __init__(self, adapter: nn.Module, det: nets.SceneNet) -> None:
        super().__init__()
        self.adapter, self.trunk, self.head = adapter, det.trunk, det.yolo

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(self.adapter(images)))


class ExportAnchored(nn.Module):
    """Outputs rois (N, P, 5) in pixels of the input (from ``im_info``), cls_prob (N, P, L+1), bbox_pred."""

    def __init__(self, adapter: nn.Module, det: nets.SceneNet, priors: torch.Tensor) -> None:
        super().__init__()
        self.adapter, self.trunk, self.head = adapter, det.trunk, det.anchored
        xywh = torch.cat([priors[:, :2], priors[:, 2:] - priors[:, :2]], 1)  # normalised x, y, w, h
        self.register_buffer("priors", xywh)

    def forward(self, data: torch.Tensor, im_info: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        scores, offsets = self.head(self.trunk(self.adapter(data)))
        h, w = im_info[:, 0:1], im_info[:, 1:2]
        scale = torch.stack([w, h, w, h], -1)  # (N, 1, 4)
        rois = self.priors[None] * scale  # (N, P, 4) pixels
        rois = torch.cat([torch.ones_like(rois[..., :1]), rois], -1)  # proposal score 1: priors are not proposals
        return rois, scores.softmax(-1), offsets


class ExportDirect(nn.Module):
    """CenterNet decoded in the graph: 3x3 peak picking, top-K over classes and cells, boxes from size + offset."""

    def __init__(self, adapter: nn.Module, det: nets.SceneNet) -> None:
        super().__init__()
        self.adapter, self.trunk, self.head = adapter, det.trunk, det.center

    def forward(self, image_tensor: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        heat, size, offset = self.head(self.trunk(self.adapter(image_tensor)))
        n = heat.shape[0]
        heat = heat.sigmoid()
        peaks = heat * (F.max_pool2d(heat, 3, 1, 1) == heat).float()
        scores, index = peaks.reshape(n, -1).topk(TOP_K, dim=1)  # (N, K) over C*G*G
        label = torch.div(index, GRID * GRID, rounding_mode="floor")
        cell = index - label * GRID * GRID
        row = torch.div(cell, GRID, rounding_mode="floor").float()
        col = (cell - torch.div(cell, GRID, rounding_mode="floor") * GRID).float()
        gather = cell[:, None, :].expand(-1, 2, -1)
        wh = torch.gather(size.reshape(n, 2, -1), 2, gather).clamp(min=0) / GRID  # (N, 2, K)
        off = torch.gather(offset.reshape(n, 2, -1), 2, gather)
        cx, cy = (col + off[:, 0]) / GRID, (row + off[:, 1]) / GRID
        boxes = torch.stack([cx - wh[:, 0] / 2, cy - wh[:, 1] / 2, cx + wh[:, 0] / 2, cy + wh[:, 1] / 2], -1)
        return boxes.clamp(0.0, 1.0), scores, (label + DIRECT_LABEL_IDS[0]).float()


def export_onnx(
    module: nn.Module, args: tuple[torch.Tensor, ...], path: Path, inputs: list[str], outputs: list[str]
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    module.eval()
    torch.onnx.export(
        module,
        args,
        str(path),
        input_names=inputs,
        output_names=outputs,
        dynamic_axes={name: {0: "batch"} for name in inputs + outputs},
        opset_version=OPSET,
        do_constant_folding=True,
        dynamo=False,
    )
    import onnx

    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    model.producer_name = "sightline-zoo"
    model.doc_string = "Sightline demo zoo, trained on generated shape scenes (zoo/train.py)"
    onnx.save(model, str(path))
    log.info("exported %s (%.0f kB)", path, path.stat().st_size / 1024)


# ----------------------------------------------------------------------------------------- model folders
PROTOCOL_TYPES = {"FLOAT32": "FP32", "UINT8": "UINT8"}
MAX_BATCH_SIZE = 16


def write_folder(
    out: Path,
    network: dict[str, Any],
    spec: dict[str, Any],
    version: dict[str, Any],
    inputs: list[tuple[str, str, list[int]]],
    outputs: list[tuple[str, list[int]]],
) -> None:
    """config.pbtxt and sightline.json of one model folder, whose graph is exported.

    The config is the service's one writer's (``service.triton.repository``) over the graph: what an upload of
    it would get, with its name. ``inputs`` and ``outputs`` (dims without the batch dimension) are what the graph
    must take and give; an export that differs stops here."""
    folder = out / network["id"]
    signature = inspect_onnx(folder / "1" / "model.onnx", max_batch_size=MAX_BATCH_SIZE)
    declared = [(n, PROTOCOL_TYPES[t], d) for n, t, d in inputs], [(n, "FP32", d) for n, d in outputs]
    exported = tuple(
        [(t.name, t.dtype, list(signature.sample_dims(t))) for t in tensors]
        for tensors in (signature.inputs, signature.outputs)
    )
    if signature.max_batch_size != MAX_BATCH_SIZE or exported != declared:
        raise SystemExit(f"{network['id']}: the exported graph has {exported} (batch {signature.max_batch_size})")
    (folder / "config.pbtxt").write_text(config_pbtxt(signature, name=network["id"]))
    document = {"network": network, "spec": spec, "version": version}
    (folder / "sightline.json").write_text(json.dumps(document, indent=2) + "\n")


def image_input(
    name: str, layout: str, size: int, channels: str, scaling: float, mean: str, dtype: str
) -> dict[str, Any]:
    return {
        "tensor_name": name,
        "image": {
            "dimension_order": layout,
            "resize_type": "SQUASH",
            "target_size": f"{size}x{size}",
            "color_channels": channels,
            "pixel_scaling": scaling,
            "mean_file": mean,
            "data_type": dtype,
        },
    }


def label_list(ids: list[int] | None = None, names: tuple[str, ...] = scenes.SHAPES) -> list[dict[str, Any]]:
    ids = ids or list(range(len(names)))
    return [{"id": i, "name": n} for i, n in zip(ids, names, strict=True)]


# ------------------------------------------------------------------------------------------------- training
def train_classifier(out: Path, cache: Path | None, scale: float) -> None:
    seed_everything(SEEDS["torch"])
    ds = data.load_or_make(
        cache,
        "classification",
        lambda: data.classification_set(SEEDS["classification"], SIZES["classification"], CLS_SIZE),
    )
    images, labels = torch.from_numpy(ds["images"]), torch.from_numpy(ds["labels"])
    net = nets.Classifier(CLASSES)
    rng = np.random.default_rng(SEEDS["torch"])
    steps, bs = int(2400 * scale), 64
    order = iter(())

    def step(_: int) -> torch.Tensor:
        nonlocal order
        idx = next(order, None)
        if idx is None:
            order = batches(len(labels), bs, rng)
            idx = next(order)
        x, _b = dihedral(to_tensor(images[idx]), None, rng)
        x, _changed = permute_channels(x, rng)
        return F.cross_entropy(net(x), labels[idx], label_smoothing=0.05)

    fit(net, steps, 4e-3, step, "classifier")

    # Caffe-style: BGR, pixels in [0, 255] minus a mean image (the training set's), NCHW, a BlobProto mean file.
    mean_bgr = ds["images"].astype(np.float64).mean(0)[..., ::-1].astype(np.float32)  # (H, W, 3) BGR
    folder = out / "shapes-classifier"
    (folder / "1").mkdir(parents=True, exist_ok=True)
    (folder / "mean.binaryproto").write_bytes(encode_binaryproto(mean_bgr.transpose(2, 0, 1)))
    adapter = nets.InputAdapter("NCHW", "BGR", "FLOAT32", 255.0, torch.from_numpy(mean_bgr))
    export_onnx(
        ExportClassifier(adapter, net),
        (torch.zeros(2, 3, CLS_SIZE, CLS_SIZE),),
        folder / "1" / "model.onnx",
        ["data"],
        ["prob"],
    )
    write_folder(
        out,
        {
            "id": "shapes-classifier",
            "name": "Shapes classifier",
            "description": "Which shape (circle, square, triangle, star, cross, heart) fills the picture. "
            "Trained on generated scenes (zoo/train.py).",
            "framework": "onnx",
            "preprocessing": {
                "inputs": [image_input("data", "NCHW", CLS_SIZE, "BGR", 255.0, "mean.binaryproto", "FLOAT32")],
                "batched_output": True,
            },
        },
        {
            "id": "shapes-v1",
            "name": "Shapes",
            "description": "The one shape of a picture (classification).",
            "metadata": {},
            "outputs": [{"labels": {"labels": label_list(), "exclusive": True, "roi": "NONE"}}],
        },
        {"id": "shapes-v1.1", "post_processings": [{"classification": {"output_tensor": "prob"}}]},
        [("data", "FLOAT32", [3, CLS_SIZE, CLS_SIZE])],
        [("prob", [CLASSES])],
    )


def tune_thresholds(scores: np.ndarray, truth: np.ndarray, low: float = 0.2, high: float = 0.8) -> list[float]:
    """Per label, the threshold in [low, high] with the best F1 on validation data (ties: closest to 0.5)."""
    grid = np.round(np.arange(low, high + 1e-9, 0.05), 2)
    chosen = []
    for j in range(truth.shape[1]):
        known = truth[:, j] >= 0
        f1 = []
        for t in grid:
            p, y = scores[known, j] >= t, truth[known, j] > 0
            tp = float((p & y).sum())
            f1.append(2 * tp / max(float(p.sum() + y.sum()), 1.0) - abs(t - 0.5) * 1e-3)
        chosen.append(float(grid[int(np.argmax(f1))]))
    return chosen


def detection_thresholds(per_image: list[decode.Detections], truth: np.ndarray) -> list[float]:
    """Per label, the score threshold with the best F1 at IoU 0.5 on validation scenes."""
    grid = np.round(np.arange(0.2, 0.81, 0.05), 2)
    chosen = []
    for label in range(CLASSES):
        best, best_t = -1.0, 0.5
        for t in grid:
            tp = fp = fn = 0
            for (boxes, scores, labels), gt in zip(per_image, truth, strict=True):
                g = gt[(gt[:, 5] > 0) & (gt[:, 4] == label), :4]
                p = boxes[(labels == label) & (scores >= t)]
                used = np.zeros(len(g), dtype=bool)
                for box in p:
                    if len(g):
                        iou = box_iou(torch.from_numpy(box[None]).float(), torch.from_numpy(g).float())[0].numpy()
                        iou[used] = 0
                        j = int(iou.argmax())
                        if iou[j] >= 0.5:
                            used[j] = True
                            tp += 1
                            continue
                    fp += 1
                fn += int((~used).sum())
            f1 = 2 * tp / max(2 * tp + fp + fn, 1) - abs(t - 0.5) * 1e-3
            if f1 > best:
                best, best_t = f1, float(t)
        chosen.append(best_t)
    return chosen


def export_tagger(out: Path, model: nets.SceneNet, val: dict[str, np.ndarray]) -> None:
    # Inception style: RGB, NHWC, pixels scaled to [0, 2] minus a unitary mean, i.e. [-1, 1].
    adapter = nets.InputAdapter("NHWC", "RGB", "FLOAT32", 2.0, torch.ones(1, 1, 3))
    tagger = ExportTagger(adapter, model).eval()
    val_images = val[f"images_{DET_SIZE}"]
    with torch.no_grad():
        scores = torch.cat(
            [
                tagger(torch.from_numpy(val_images[i : i + 100]).float() / 127.5 - 1.0)
                for i in range(0, len(val_images), 100)
            ]
        ).numpy()
    thresholds = tune_thresholds(scores, val["tags"])
    log.info("tagger thresholds %s", thresholds)
    folder = out / "shapes-tagger"
    (folder / "1").mkdir(parents=True, exist_ok=True)
    np.save(folder / "unitary_mean.npy", np.ones((1, 1, 3), dtype=np.float32))
    export_onnx(tagger, (torch.zeros(2, DET_SIZE, DET_SIZE, 3),), folder / "1" / "model.onnx", ["image"], ["tags"])
    write_folder(
        out,
        {
            "id": "shapes-tagger",
            "name": "Shape and colour tagger",
            "description": "Which shapes and which colours (red, green, blue, yellow, purple) a picture holds. "
            "Trained on generated scenes (zoo/train.py).",
            "framework": "onnx",
            "preprocessing": {
                "inputs": [image_input("image", "NHWC", DET_SIZE, "RGB", 2.0, "unitary_mean.npy", "FLOAT32")],
                "batched_output": True,
            },
        },
        {
            "id": "shape-tags-v1",
            "name": "Shape tags",
            "description": "Shapes and colours present (tagging).",
            "metadata": {},
            "outputs": [{"labels": {"labels": label_list(names=scenes.TAGS), "exclusive": False, "roi": "NONE"}}],
        },
        {
            "id": "shape-tags-v1.1",
            "post_processings": [{"classification": {"output_tensor": "tags", "thresholds": thresholds}}],
        },
        [("image", "FLOAT32", [DET_SIZE, DET_SIZE, 3])],
        [("tags", [len(scenes.TAGS)])],
    )


def train_scene_net(
    out: Path, scale: float, det: dict[str, np.ndarray], val: dict[str, np.ndarray], checkpoint: Path | None
) -> None:
    """The tagger and the three detectors: one trunk, four heads, one training; four exported networks."""
    seed_everything(SEEDS["torch"] + 2)
    anchors_np = kmeans_anchors(det["boxes"], 4) * GRID
    anchors_np = np.round(anchors_np, 4)
    anchors = torch.from_numpy(anchors_np).float()
    priors = prior_boxes(anchors)
    log.info("anchors (cells) %s", anchors_np.tolist())
    model = nets.SceneNet(CLASSES, len(scenes.TAGS), len(anchors), len(anchors))
    if checkpoint is not None and checkpoint.exists():
        model.load_state_dict(torch.load(checkpoint))
        model.eval()
        log.info("loaded %s", checkpoint)
    else:
        images, boxes, tags = (torch.from_numpy(det[k]) for k in (f"images_{DET_SIZE}", "boxes", "tags"))
        rng = np.random.default_rng(SEEDS["torch"] + 2)
        steps, bs = int(3600 * scale), 32
        order = iter(())
        n_shapes = len(scenes.SHAPES)

        def step(_: int) -> torch.Tensor:
            nonlocal order
            idx = next(order, None)
            if idx is None:
                order = batches(len(boxes), bs, rng)
                idx = next(order)
            x, b = dihedral(to_tensor(images[idx]), boxes[idx], rng)
            x, changed = permute_channels(x, rng, 0.4)
            t = tags[idx].clone()
            t[changed, n_shapes:] = -1.0  # colours unknown once the channels are shuffled
            o = model(x)
            loss_tags = (
                F.binary_cross_entropy_with_logits(o["tags"], t.clamp(min=0), reduction="none") * (t >= 0)
            ).sum() / bs
            return (
                loss_tags
                + yolo_loss(o["yolo"], b, anchors)
                + anchored_loss(o["scores"], o["offsets"], b, priors)
                + center_loss(o["heat"], o["size"], o["offset"], b)
            )

        fit(model, steps, 3e-3, step, "scene-net")
        if checkpoint is not None:
            checkpoint.parent.mkdir(parents=True, exist_ok=True)
            torch.save(model.state_dict(), checkpoint)

    export_tagger(out, model, val)
    anchor_list = [float(v) for v in anchors_np.reshape(-1)]
    val_images = val[f"images_{DET_SIZE}"]
    # One shape per place: a box of another label overlapping a better one at IoU > 0.7 is the same shape
    # read twice (a half-hidden square that also looks like a heart), while shapes of a scene keep 60 % visible.
    common = {"discard_threshold": 0.025, "nms_threshold": 0.45, "class_agnostic_nms_threshold": 0.7}

    # YOLO / darknet style: RGB, NCHW, pixels in [0, 1], no mean.
    yolo = ExportYolo(nets.InputAdapter("NCHW", "RGB", "FLOAT32", 1.0, None), model).eval()
    with torch.no_grad():
        raw = torch.cat([yolo(to_tensor(val_images[i : i + 100])) for i in range(0, len(val_images), 100)]).numpy()
    found = [decode.decode_yolo(r, anchor_list, 0.45, 0.025) for r in raw]
    yolo_thresholds = detection_thresholds(found, val["boxes"])
    log.info("yolo thresholds %s", yolo_thresholds)
    folder = out / "shapes-yolo"
    export_onnx(yolo, (torch.zeros(2, 3, DET_SIZE, DET_SIZE),), folder / "1" / "model.onnx", ["images"], ["output"])
    channels = len(anchors) * (5 + CLASSES)
    write_folder(
        out,
        {
            "id": "shapes-yolo",
            "name": "Shapes detector (YOLO)",
            "description": "Finds circles, squares, triangles, stars, crosses and hearts; YOLOv2 region output. "
            "Trained on generated scenes (zoo/train.py).",
            "framework": "onnx",
            "preprocessing": {
                "inputs": [image_input("images", "NCHW", DET_SIZE, "RGB", 1.0, "", "FLOAT32")],
                "batched_output": True,
            },
        },
        {
            "id": "shapes-yolo-v1",
            "name": "Shapes (YOLO)",
            "description": "Shapes with their boxes (detection).",
            "metadata": {},
            "outputs": [{"labels": {"labels": label_list(), "exclusive": True, "roi": "BBOX"}}],
        },
        {
            "id": "shapes-yolo-v1.1",
            "post_processings": [
                {
                    "detection": {
                        "yolo_output": {"output_tensor": "output", "anchors": anchor_list},
                        "thresholds": yolo_thresholds,
                        **common,
                        "normalize_wrt_tensor": "",
                    }
                }
            ],
        },
        [("images", "FLOAT32", [3, DET_SIZE, DET_SIZE])],
        [("output", [channels, GRID, GRID])],
    )

    # Caffe Faster-RCNN style: BGR, NCHW, [0, 255] minus a per-channel mean, priors in pixels from im_info.
    mean_bgr = det[f"images_{DET_SIZE}"].reshape(-1, 3).mean(0)[::-1].astype(np.float32).reshape(1, 1, 3)
    mean_bgr = np.round(mean_bgr, 2)
    anchored = ExportAnchored(
        nets.InputAdapter("NCHW", "BGR", "FLOAT32", 255.0, torch.from_numpy(mean_bgr)), model, priors
    ).eval()
    im_info = torch.tensor([[DET_SIZE, DET_SIZE, 1.0]])
    found = []
    with torch.no_grad():
        for i in range(0, len(val_images), 100):
            x = to_tensor(val_images[i : i + 100])[:, [2, 1, 0]] * 255.0 - torch.from_numpy(mean_bgr).permute(2, 0, 1)
            rois, probs, offs = anchored(x, im_info.expand(len(x), -1))
            found += [
                decode.decode_anchored(r, p, o, im_info[0].numpy(), 0.45, 0.025)
                for r, p, o in zip(rois.numpy(), probs.numpy(), offs.numpy(), strict=True)
            ]
    anchored_thresholds = detection_thresholds(found, val["boxes"])
    log.info("anchored thresholds %s", anchored_thresholds)
    folder = out / "shapes-anchored"
    (folder / "1").mkdir(parents=True, exist_ok=True)
    np.save(folder / "mean.npy", mean_bgr)
    export_onnx(
        anchored,
        (torch.zeros(2, 3, DET_SIZE, DET_SIZE), torch.full((2, 3), float(DET_SIZE))),
        folder / "1" / "model.onnx",
        ["data", "im_info"],
        ["rois", "cls_prob", "bbox_pred"],
    )
    n = len(priors)
    write_folder(
        out,
        {
            "id": "shapes-anchored",
            "name": "Shapes detector (anchored)",
            "description": "Finds circles, squares, triangles, stars, crosses and hearts; Faster-RCNN style output "
            "(anchors in pixels, class-specific offsets, scores with background). "
            "Trained on generated scenes (zoo/train.py).",
            "framework": "onnx",
            "preprocessing": {
                "inputs": [
                    image_input("data", "NCHW", DET_SIZE, "BGR", 255.0, "mean.npy", "FLOAT32"),
                    {"tensor_name": "im_info", "constant": {"shape": [3], "data": ["data.1", "data.2", 1.0]}},
                ],
                "batched_output": True,
            },
        },
        {
            "id": "shapes-anchored-v1",
            "name": "Shapes (anchored)",
            "description": "Shapes with their boxes (detection).",
            "metadata": {},
            "outputs": [{"labels": {"labels": label_list(), "exclusive": True, "roi": "BBOX"}}],
        },
        {
            "id": "shapes-anchored-v1.1",
            "post_processings": [
                {
                    "detection": {
                        "anchored_output": {
                            "anchors_tensor": "rois",
                            "scores_tensor": "cls_prob",
                            "offsets_tensor": "bbox_pred",
                        },
                        "thresholds": anchored_thresholds,
                        **common,
                        "normalize_wrt_tensor": "im_info",
                    }
                }
            ],
        },
        [("data", "FLOAT32", [3, DET_SIZE, DET_SIZE]), ("im_info", "FLOAT32", [3])],
        [("rois", [n, 5]), ("cls_prob", [n, CLASSES + 1]), ("bbox_pred", [n, (CLASSES + 1) * 4])],
    )

    # TensorFlow detection API style: RGB, NHWC, UINT8 pixels; boxes, scores, classes decoded in the graph.
    direct = ExportDirect(nets.InputAdapter("NHWC", "RGB", "UINT8", 255.0, None), model).eval()
    found = []
    with torch.no_grad():
        for i in range(0, len(val_images), 100):
            bx, sc, cl = direct(torch.from_numpy(val_images[i : i + 100]))
            found += [
                decode.decode_direct(b, s, c, DIRECT_LABEL_IDS, 0.45, 0.025)
                for b, s, c in zip(bx.numpy(), sc.numpy(), cl.numpy(), strict=True)
            ]
    direct_thresholds = detection_thresholds(found, val["boxes"])
    log.info("direct thresholds %s", direct_thresholds)
    folder = out / "shapes-direct"
    export_onnx(
        direct,
        (torch.zeros(2, DET_SIZE, DET_SIZE, 3, dtype=torch.uint8),),
        folder / "1" / "model.onnx",
        ["image_tensor"],
        ["detection_boxes", "detection_scores", "detection_classes"],
    )
    write_folder(
        out,
        {
            "id": "shapes-direct",
            "name": "Shapes detector (direct)",
            "description": "Finds circles, squares, triangles, stars, crosses and hearts; boxes, scores and classes "
            "decoded in the graph (CenterNet, top 100). Trained on generated scenes (zoo/train.py).",
            "framework": "onnx",
            "preprocessing": {
                "inputs": [image_input("image_tensor", "NHWC", DET_SIZE, "RGB", 255.0, "", "UINT8")],
                "batched_output": True,
            },
        },
        {
            "id": "shapes-direct-v1",
            "name": "Shapes (direct)",
            "description": "Shapes with their boxes (detection).",
            "metadata": {},
            "outputs": [{"labels": {"labels": label_list(DIRECT_LABEL_IDS), "exclusive": True, "roi": "BBOX"}}],
        },
        {
            "id": "shapes-direct-v1.1",
            "post_processings": [
                {
                    "detection": {
                        "direct_output": {
                            "boxes_tensor": "detection_boxes",
                            "scores_tensor": "detection_scores",
                            "classes_tensor": "detection_classes",
                        },
                        "thresholds": direct_thresholds,
                        **common,
                        "normalize_wrt_tensor": "",
                    }
                }
            ],
        },
        [("image_tensor", "UINT8", [DET_SIZE, DET_SIZE, 3])],
        [("detection_boxes", [TOP_K, 4]), ("detection_scores", [TOP_K]), ("detection_classes", [TOP_K])],
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "model_repository")
    parser.add_argument("--cache", type=Path, default=None, help="keep generated training sets here (.npz)")
    parser.add_argument("--only", default="classifier,scene-net", help="classifier and/or scene-net")
    parser.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="save the scene net's weights here, or load them if the file exists (no training)",
    )
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the training steps (quick trials)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    only = set(args.only.split(","))
    start = time.time()
    if "classifier" in only:
        train_classifier(args.out, args.cache, args.scale)
    if "scene-net" in only:
        det = data.load_or_make(
            args.cache, "detection", lambda: data.detection_set(SEEDS["detection"], SIZES["detection"], (DET_SIZE,))
        )
        val = data.load_or_make(
            args.cache, "validation", lambda: data.detection_set(SEEDS["validation"], SIZES["validation"], (DET_SIZE,))
        )
        log.info("detection set: %s", data.box_stats(det["boxes"]))
        train_scene_net(args.out, args.scale, det, val, args.checkpoint)
    log.info("done in %.0f s", time.time() - start)


if __name__ == "__main__":
    main()
