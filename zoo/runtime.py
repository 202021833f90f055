"""Run a bundled model folder offline: onnxruntime + the zoo's preprocessing + the project's ``postprocess``.

:class:`OfflineModel` gives the same ``predict(image) -> result`` callable as the service would: ``result`` is the
v0.7 result JSON (``{"outputs": [{"labels": {"predicted": [...], "discarded": [...]}}]}``), so the evaluation in
``zoo/evaluate.py`` runs unchanged on either. Needs numpy, Pillow, onnxruntime and ``postprocess`` (no PyTorch).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import onnxruntime as ort
from numpy.typing import NDArray

from postprocess.classification import classify
from postprocess.decoders import AnchoredOutput, DirectOutput, YoloOutput
from postprocess.detection import DetectionConfig, detect
from postprocess.types import Label, LabelsResult, Prediction
from zoo.preprocess import prepare

__all__ = ["REPOSITORY", "ZOO_MODELS", "OfflineModel", "result_json"]

REPOSITORY = Path(__file__).resolve().parent.parent / "model_repository"
ZOO_MODELS = ("shapes-classifier", "shapes-tagger", "shapes-yolo", "shapes-anchored", "shapes-direct")
"""The network ids of the zoo's models (folders of ``model_repository/``)."""


def _prediction_json(p: Prediction) -> dict[str, Any]:
    item: dict[str, Any] = {"label_name": p.label_name, "label_id": p.label_id}
    if p.bbox is not None:
        box = p.bbox
        item["roi"] = {
            "region_id": p.region_id,
            "bbox": {"xmin": box.xmin, "ymin": box.ymin, "xmax": box.xmax, "ymax": box.ymax},
        }
    item["score"] = p.score
    item["threshold"] = p.threshold
    return item


def result_json(outputs: Sequence[LabelsResult]) -> dict[str, Any]:
    """The v0.7 result JSON of one image's outputs."""
    return {
        "outputs": [
            {
                "labels": {
                    "predicted": [_prediction_json(p) for p in r.predicted],
                    "discarded": [_prediction_json(p) for p in r.discarded],
                }
            }
            for r in outputs
        ]
    }


def _decoder(detection: Mapping[str, Any]) -> Any:
    if "yolo_output" in detection:
        y = detection["yolo_output"]
        return YoloOutput(output_tensor=y["output_tensor"], anchors=tuple(float(a) for a in y["anchors"]))
    if "anchored_output" in detection:
        return AnchoredOutput(**detection["anchored_output"])
    if "direct_output" in detection:
        return DirectOutput(**detection["direct_output"])
    raise ValueError(f"unknown detection output in {sorted(detection)}")


class OfflineModel:
    """One model folder (``config.pbtxt``, ``1/model.onnx``, ``sightline.json``) run in-process."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.meta: dict[str, Any] = json.loads((folder / "sightline.json").read_text())
        options = ort.SessionOptions()
        options.intra_op_num_threads = 2
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            str(folder / "1" / "model.onnx"), options, providers=["CPUExecutionProvider"]
        )
        self.preprocessing = self.meta["network"]["preprocessing"]
        self.outputs = [o["labels"] for o in self.meta["spec"]["outputs"]]
        self.post = self.meta["version"]["post_processings"]
        self.input_names = [i.name for i in self.session.get_inputs()]

    @property
    def id(self) -> str:
        return str(self.meta["network"]["id"])

    def raw(self, image: bytes | NDArray[Any]) -> tuple[dict[str, NDArray[Any]], dict[str, NDArray[Any]]]:
        """The input feeds and the output tensors (batch of one) for an image."""
        feeds = {k: v[None] for k, v in prepare(image, self.preprocessing, self.folder).items()}
        names = [o.name for o in self.session.get_outputs()]
        values = self.session.run(names, {k: feeds[k] for k in self.input_names})
        return feeds, dict(zip(names, values, strict=True))

    def predict(self, image: bytes | NDArray[Any], max_predictions: int = 100) -> dict[str, Any]:
        """The v0.7 result JSON of one image (predicted and discarded labels)."""
        feeds, tensors = self.raw(image)
        results = []
        for spec_output, post in zip(self.outputs, self.post, strict=True):
            labels = [Label(id=int(label.get("id", 0)), name=label["name"]) for label in spec_output["labels"]]
            if "classification" in post:
                c = post["classification"]
                results.append(
                    classify(
                        tensors[c["output_tensor"]][0],
                        labels,
                        exclusive=bool(spec_output.get("exclusive", False)),
                        thresholds=c.get("thresholds"),
                        max_predictions=max_predictions,
                    )
                )
            else:
                d = post["detection"]
                config = DetectionConfig(
                    output=_decoder(d),
                    labels=tuple(labels),
                    thresholds=tuple(d["thresholds"]) if d.get("thresholds") else None,
                    nms_threshold=float(d.get("nms_threshold", 0.0)),
                    discard_threshold=float(d.get("discard_threshold", 0.0)),
                    normalize_wrt_tensor=d.get("normalize_wrt_tensor", ""),
                    class_agnostic_nms=d.get("class_agnostic_nms_threshold"),
                )
                available = {**tensors, **{k: v for k, v in feeds.items() if k == config.normalize_wrt_tensor}}
                results.append(detect(available, config, max_predictions=max_predictions)[0])
        return result_json(results)

    __call__ = predict
