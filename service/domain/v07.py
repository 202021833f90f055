"""The v0.7 JSON form of the resource model: one parser for the bundled metadata files and for gRPC requests
(converted with ``json_format.MessageToDict``), and the printers back.

Parsers validate as they go and raise ``InvalidArgumentError`` with the dotted path of the offending field.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal, TypeVar, cast

from postprocess.decoders import AnchoredOutput, DirectOutput, YoloOutput, Yolov5Output, Yolov8Output
from service.domain.resources import (
    FRAMEWORKS,
    ClassificationPostProcessing,
    ColorChannels,
    ConstantInput,
    DataType,
    DetectionOutput,
    DetectionPostProcessing,
    DimensionOrder,
    ImagePreprocessing,
    InputPreprocessing,
    LabelDef,
    Network,
    PostProcessing,
    Preprocessing,
    ResizeType,
    Roi,
    Specification,
    SpecOutput,
)
from service.errors import InvalidArgumentError

JsonDict = dict[str, Any]
BoxFormat = Literal["xyxy", "yxyx"]
AnchorFormat = Literal["xywh", "xyxy"]
E = TypeVar("E", bound=enum.Enum)
DETECTION_KINDS: dict[str, type[DetectionOutput]] = {
    "anchored_output": AnchoredOutput,
    "direct_output": DirectOutput,
    "yolo_output": YoloOutput,
    "yolov5_output": Yolov5Output,
    "yolov8_output": Yolov8Output,
}
"""The v0.7 key of each detection output kind (``"direct_output"``) and its decoder class."""


# ------------------------------------------------------------------------------------------------ parsing


def _get(obj: Mapping[str, Any], key: str, path: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
    value = obj.get(key, default)
    if value is ...:
        raise InvalidArgumentError.field(f"{path}{key}", "is required")
    if value is not default and not isinstance(value, kind):
        raise InvalidArgumentError.field(f"{path}{key}", f"has the wrong type ({type(value).__name__})")
    return value


def _enum(cls: type[E], raw: Any, where: str, aliases: Mapping[str, str] | None = None) -> E:
    name = (aliases or {}).get(str(raw), str(raw))
    try:
        return cls(name)
    except ValueError:
        allowed = ", ".join(m.value for m in cls)
        raise InvalidArgumentError.field(where, f"{raw!r} is not one of {allowed}") from None


def _mapping(raw: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise InvalidArgumentError.field(where, "must be an object")
    return raw


_TARGET_WXH = re.compile(r"^\s*(\d+)\s*x\s*(\d+)\s*$")
_TARGET_N = re.compile(r"^\s*(\d+)\s*$")


def parse_target_size(raw: str, resize_type: ResizeType, where: str) -> tuple[int, int]:
    """``"WxH"`` → (W, H); ``"N"`` → (N, N). NETWORK takes only ``"N"`` (the largest side)."""
    if (m := _TARGET_WXH.match(raw)) and resize_type is not ResizeType.NETWORK:
        w, h = int(m.group(1)), int(m.group(2))
    elif m := _TARGET_N.match(raw):
        w = h = int(m.group(1))
    else:
        expected = '"N"' if resize_type is ResizeType.NETWORK else '"WxH" (e.g. "224x224") or "N"'
        raise InvalidArgumentError.field(where, f"{raw!r} is not a size; expected {expected}")
    if not (1 <= w <= 8192 and 1 <= h <= 8192):
        raise InvalidArgumentError.field(where, f"{raw!r} is out of range (1 to 8192 pixels per side)")
    return w, h


def parse_image_preprocessing(raw: Any, path: str) -> ImagePreprocessing:
    obj = _mapping(raw, path.rstrip("."))
    resize = _enum(ResizeType, _get(obj, "resize_type", path, (str, int)), f"{path}resize_type")
    scaling = float(_get(obj, "pixel_scaling", path, (int, float), 255.0))
    if not scaling > 0:
        raise InvalidArgumentError.field(f"{path}pixel_scaling", "must be positive")
    return ImagePreprocessing(
        dimension_order=_enum(DimensionOrder, _get(obj, "dimension_order", path, (str, int)), f"{path}dimension_order"),
        resize_type=resize,
        target=parse_target_size(_get(obj, "target_size", path, str), resize, f"{path}target_size"),
        color_channels=_enum(
            ColorChannels, _get(obj, "color_channels", path, (str, int)), f"{path}color_channels", {"GRAY": "L"}
        ),
        pixel_scaling=scaling,
        mean_file=_get(obj, "mean_file", path, str, ""),
        data_type=_enum(DataType, _get(obj, "data_type", path, (str, int), "FLOAT32"), f"{path}data_type"),
    )


def parse_preprocessing(raw: Any, path: str = "preprocessing.") -> Preprocessing:
    obj = _mapping(raw, path.rstrip("."))
    items = _get(obj, "inputs", path, list)
    if not items:
        raise InvalidArgumentError.field(f"{path}inputs", "must hold at least one input")
    inputs: list[InputPreprocessing] = []
    for i, item in enumerate(items):
        where = f"{path}inputs[{i}]."
        entry = _mapping(item, where.rstrip("."))
        name = _get(entry, "tensor_name", where, str)
        if not name:
            raise InvalidArgumentError.field(f"{where}tensor_name", "must not be empty")
        if ("image" in entry) == ("constant" in entry):
            raise InvalidArgumentError.field(where.rstrip("."), "needs exactly one of image or constant")
        if "image" in entry:
            inputs.append(InputPreprocessing(name, image=parse_image_preprocessing(entry["image"], f"{where}image.")))
        else:
            inputs.append(InputPreprocessing(name, constant=_parse_constant(entry["constant"], f"{where}constant.")))
    if not any(i.image for i in inputs):
        raise InvalidArgumentError.field(f"{path}inputs", "must hold at least one image input")
    names = [i.tensor_name for i in inputs]
    if len(set(names)) != len(names):
        raise InvalidArgumentError.field(f"{path}inputs", "tensor names must be unique")
    prep = Preprocessing(tuple(inputs), bool(_get(obj, "batched_output", path, bool, True)))
    _check_constant_references(prep, path)
    return prep


def _parse_constant(raw: Any, path: str) -> ConstantInput:
    obj = _mapping(raw, path.rstrip("."))
    shape = tuple(int(d) for d in _get(obj, "shape", path, list))
    data = _get(obj, "data", path, list)
    values: list[float | str] = []
    for j, v in enumerate(data):
        if isinstance(v, bool) or not isinstance(v, int | float | str):
            raise InvalidArgumentError.field(f"{path}data[{j}]", "must be a number or a reference like 'data.1'")
        values.append(v if isinstance(v, str) else float(v))
    count = 1
    for d in shape:
        count *= d
    if any(d < 1 for d in shape) or count != len(values):
        raise InvalidArgumentError.field(f"{path}shape", f"{list(shape)} does not hold {len(values)} values")
    return ConstantInput(shape, tuple(values))


def _check_constant_references(prep: Preprocessing, path: str) -> None:
    images = {i.tensor_name for i in prep.image_inputs}
    for i, item in enumerate(prep.inputs):
        if item.constant is None:
            continue
        for j, v in enumerate(item.constant.data):
            if isinstance(v, str):
                name, _, dim = v.rpartition(".")
                if name not in images or not (dim.isascii() and dim.isdigit()) or not 0 <= int(dim) <= 2:
                    raise InvalidArgumentError.field(
                        f"{path}inputs[{i}].constant.data[{j}]",
                        f"{v!r} must name an image input and a dimension 0-2, like 'data.1'",
                    )


def parse_spec_output(raw: Any, path: str) -> SpecOutput:
    obj = _mapping(_mapping(raw, path.rstrip(".")).get("labels"), f"{path}labels")
    where = f"{path}labels."
    labels_raw = _get(obj, "labels", where, list)
    if not labels_raw:
        raise InvalidArgumentError.field(f"{where}labels", "must hold at least one label")
    labels: list[LabelDef] = []
    for k, lab in enumerate(labels_raw):
        entry = _mapping(lab, f"{where}labels[{k}]")
        labels.append(
            LabelDef(
                int(_get(entry, "id", f"{where}labels[{k}].", int)),
                _get(entry, "name", f"{where}labels[{k}].", str),
            )
        )
    if len({lab.id for lab in labels}) != len(labels):
        raise InvalidArgumentError.field(f"{where}labels", "label ids must be unique")
    roi = _enum(Roi, _get(obj, "roi", where, (str, int), "NONE"), f"{where}roi", {"ROI_TYPE_UNSPECIFIED": "NONE"})
    return SpecOutput(tuple(labels), bool(_get(obj, "exclusive", where, bool, False)), roi)


_TENSORFLOW = ("tensorflow-1.x", "tensorflow-2.x")
_CAFFE = ("nv-caffe-0.x-mod", "caffe")


def default_box_format(framework: str | None) -> BoxFormat:
    """The ``direct_output`` box layout when the post-processing gives none: the TensorFlow Object Detection API's
    ``(ymin, xmin, ymax, xmax)`` for a TensorFlow network (v0.7's ``direct_output`` is that API's), else
    ``(xmin, ymin, xmax, ymax)`` (``framework`` None: not known, as for a stored version, whose layout is written)."""
    return "yxyx" if framework in _TENSORFLOW else "xyxy"


def default_anchor_format(framework: str | None) -> AnchorFormat:
    """The ``anchored_output`` anchor layout when the post-processing gives none: py-faster-rcnn's ``rois`` blob
    ``(batch index, x1, y1, x2, y2)`` for a Caffe network (v0.7's ``anchored_output`` is py-faster-rcnn's), else
    ``(score, x, y, width, height)``."""
    return "xyxy" if framework in _CAFFE else "xywh"


def _layout(body: Mapping[str, Any], key: str, path: str, allowed: tuple[str, ...], default: str) -> str:
    """A layout enum (``box_format``, ``anchor_format``): its proto name (``YXYX``) or lower case; absent or
    ``*_UNSPECIFIED`` gives ``default``."""
    raw: str = _get(body, key, path, str, "")
    value = raw.lower()
    if not value or value.endswith("_unspecified"):
        return default
    if value not in allowed:
        raise InvalidArgumentError.field(
            f"{path}{key}", f"{raw!r} is not one of {', '.join(a.upper() for a in allowed)}"
        )
    return value


def parse_post_processing(raw: Any, path: str, *, framework: str | None = None) -> PostProcessing:
    """One post-processing; ``framework`` (the network's, when known) gives the box layouts left out."""
    obj = _mapping(raw, path.rstrip("."))
    if ("classification" in obj) == ("detection" in obj):
        raise InvalidArgumentError.field(path.rstrip("."), "needs exactly one of classification or detection")
    thresholds_of: Any
    if "classification" in obj:
        cls = _mapping(obj["classification"], f"{path}classification")
        where = f"{path}classification."
        thresholds_of = _get(cls, "thresholds", where, list, None)
        return ClassificationPostProcessing(
            output_tensor=_nonempty(_get(cls, "output_tensor", where, str), f"{where}output_tensor"),
            thresholds=_thresholds(thresholds_of, f"{where}thresholds"),
        )
    det = _mapping(obj["detection"], f"{path}detection")
    where = f"{path}detection."
    kinds = [k for k in DETECTION_KINDS if k in det]
    if len(kinds) != 1:
        raise InvalidArgumentError.field(where.rstrip("."), f"needs exactly one of {', '.join(DETECTION_KINDS)}")
    kind = kinds[0]
    body = _mapping(det[kind], f"{where}{kind}")
    out: DetectionOutput
    ow = f"{where}{kind}."
    if kind == "anchored_output":
        out = AnchoredOutput(
            _tensor(body, "anchors_tensor", ow),
            _tensor(body, "scores_tensor", ow),
            _tensor(body, "offsets_tensor", ow),
            anchor_format=cast(
                AnchorFormat, _layout(body, "anchor_format", ow, ("xywh", "xyxy"), default_anchor_format(framework))
            ),
        )
    elif kind == "direct_output":
        out = DirectOutput(
            _tensor(body, "boxes_tensor", ow),
            _tensor(body, "scores_tensor", ow),
            _tensor(body, "classes_tensor", ow),
            box_format=cast(
                BoxFormat, _layout(body, "box_format", ow, ("xyxy", "yxyx"), default_box_format(framework))
            ),
        )
    elif kind == "yolo_output":
        anchors = tuple(float(a) for a in _get(body, "anchors", ow, list))
        if not anchors or len(anchors) % 2 or any(not a > 0 for a in anchors):
            raise InvalidArgumentError.field(f"{ow}anchors", "must be positive (w, h) pairs in grid cells")
        out = YoloOutput(_tensor(body, "output_tensor", ow), anchors)
    else:
        tensor = _tensor(body, "output_tensor", ow)
        out = Yolov5Output(tensor) if kind == "yolov5_output" else Yolov8Output(tensor)
    agnostic = _get(det, "class_agnostic_nms_threshold", where, (int, float), None)
    return DetectionPostProcessing(
        output=out,
        thresholds=_thresholds(_get(det, "thresholds", where, list, None), f"{where}thresholds"),
        nms_threshold=_unit(_get(det, "nms_threshold", where, (int, float), 0.3), f"{where}nms_threshold"),
        discard_threshold=_unit(
            _get(det, "discard_threshold", where, (int, float), 0.025), f"{where}discard_threshold"
        ),
        normalize_wrt_tensor=_get(det, "normalize_wrt_tensor", where, str, ""),
        class_agnostic_nms_threshold=None
        if agnostic is None
        else _unit(agnostic, f"{where}class_agnostic_nms_threshold"),
    )


def _tensor(body: Mapping[str, Any], key: str, path: str) -> str:
    return _nonempty(_get(body, key, path, str), f"{path}{key}")


def _nonempty(value: str, where: str) -> str:
    if not value:
        raise InvalidArgumentError.field(where, "must not be empty")
    return value


def _unit(value: float, where: str) -> float:
    if not 0.0 <= float(value) <= 1.0:
        raise InvalidArgumentError.field(where, f"{value} is outside [0, 1]")
    return float(value)


def _thresholds(raw: Sequence[Any] | None, where: str) -> tuple[float, ...] | None:
    if not raw:
        return None
    return tuple(_unit(float(t), f"{where}[{i}]") for i, t in enumerate(raw))


def check_version_against_spec(
    post_processings: Sequence[PostProcessing], spec: Specification, path: str = "post_processings"
) -> None:
    """v0.7 rules: one post-processing per spec output, thresholds per label, kind matching the roi."""
    if len(post_processings) != len(spec.outputs):
        raise InvalidArgumentError.field(
            path, f"has {len(post_processings)} entries but the specification has {len(spec.outputs)} outputs"
        )
    for i, (pp, out) in enumerate(zip(post_processings, spec.outputs, strict=True)):
        kind = "detection" if isinstance(pp, DetectionPostProcessing) else "classification"
        if (out.roi is Roi.BBOX) != (kind == "detection"):
            raise InvalidArgumentError.field(
                f"{path}[{i}]", f"{kind} does not implement an output whose roi is {out.roi.value}"
            )
        if pp.thresholds is not None and len(pp.thresholds) != len(out.labels):
            raise InvalidArgumentError.field(
                f"{path}[{i}].{kind}.thresholds",
                f"has {len(pp.thresholds)} values for {len(out.labels)} labels",
            )


def parse_specification(raw: Any, *, spec_id: str) -> Specification:
    obj = _mapping(raw, "specification")
    outputs_raw = _get(obj, "outputs", "", list)
    if not outputs_raw:
        raise InvalidArgumentError.field("outputs", "must hold at least one output")
    return Specification(
        id=spec_id,
        name=_nonempty(_get(obj, "name", "", str), "name"),
        description=_get(obj, "description", "", str, ""),
        metadata=dict(_get(obj, "metadata", "", Mapping, {})),
        outputs=tuple(parse_spec_output(o, f"outputs[{i}].") for i, o in enumerate(outputs_raw)),
    )


def parse_post_processings(
    raw: Any, path: str = "post_processings", *, framework: str | None = None
) -> tuple[PostProcessing, ...]:
    """The post-processings of a version; ``framework`` (the network's, when known) gives the box layouts left
    out (:func:`default_box_format`, :func:`default_anchor_format`)."""
    if not isinstance(raw, list) or not raw:
        raise InvalidArgumentError.field(path, "must hold one post-processing per specification output")
    return tuple(parse_post_processing(p, f"{path}[{i}].", framework=framework) for i, p in enumerate(raw))


def parse_network(raw: Any, *, network_id: str) -> Network:
    obj = _mapping(raw, "network")
    framework = _get(obj, "framework", "", str)
    if framework not in FRAMEWORKS:
        raise InvalidArgumentError.field("framework", f"{framework!r} is not one of {', '.join(FRAMEWORKS)}")
    return Network(
        id=network_id,
        name=_nonempty(_get(obj, "name", "", str), "name"),
        framework=framework,
        preprocessing=parse_preprocessing(_get(obj, "preprocessing", "", Mapping)),
        description=_get(obj, "description", "", str, ""),
        metadata=dict(_get(obj, "metadata", "", Mapping, {})),
    )


# ------------------------------------------------------------------------------------ v0.7 JSON output


def preprocessing_to_v07(prep: Preprocessing) -> JsonDict:
    inputs: list[JsonDict] = []
    for item in prep.inputs:
        if item.image is not None:
            im = item.image
            inputs.append(
                {
                    "tensor_name": item.tensor_name,
                    "image": {
                        "dimension_order": im.dimension_order.value,
                        "resize_type": im.resize_type.value,
                        "target_size": im.target_size,
                        "color_channels": im.color_channels.value,
                        "pixel_scaling": im.pixel_scaling,
                        "mean_file": im.mean_file,
                        "data_type": im.data_type.value,
                    },
                }
            )
        elif item.constant is not None:
            inputs.append(
                {
                    "tensor_name": item.tensor_name,
                    "constant": {"shape": list(item.constant.shape), "data": list(item.constant.data)},
                }
            )
    return {"inputs": inputs, "batched_output": prep.batched_output}


def spec_output_to_v07(out: SpecOutput) -> JsonDict:
    return {
        "labels": {
            "labels": [{"id": lab.id, "name": lab.name} for lab in out.labels],
            "exclusive": out.exclusive,
            "roi": out.roi.value,
        }
    }


def post_processing_to_v07(pp: PostProcessing) -> JsonDict:
    if isinstance(pp, ClassificationPostProcessing):
        body: JsonDict = {"output_tensor": pp.output_tensor}
        if pp.thresholds is not None:
            body["thresholds"] = list(pp.thresholds)
        return {"classification": body}
    kind = next(k for k, cls in DETECTION_KINDS.items() if isinstance(pp.output, cls))
    out = pp.output
    if isinstance(out, AnchoredOutput):
        output: JsonDict = {
            "anchors_tensor": out.anchors_tensor,
            "scores_tensor": out.scores_tensor,
            "offsets_tensor": out.offsets_tensor,
        }
        # Written when it is not what a framework-free parse gives, so that a stored version reads back the same
        # and a v0.7 layout prints as v0.7 JSON.
        if out.anchor_format != default_anchor_format(None):
            output["anchor_format"] = out.anchor_format.upper()
    elif isinstance(out, DirectOutput):
        output = {
            "boxes_tensor": out.boxes_tensor,
            "scores_tensor": out.scores_tensor,
            "classes_tensor": out.classes_tensor,
        }
        if out.box_format != default_box_format(None):
            output["box_format"] = out.box_format.upper()
    elif isinstance(out, YoloOutput):
        output = {"output_tensor": out.output_tensor, "anchors": list(out.anchors)}
    else:
        output = {"output_tensor": out.output_tensor}
    det: JsonDict = {
        kind: output,
        "nms_threshold": pp.nms_threshold,
        "discard_threshold": pp.discard_threshold,
        "normalize_wrt_tensor": pp.normalize_wrt_tensor,
    }
    if pp.thresholds is not None:
        det["thresholds"] = list(pp.thresholds)
    if pp.class_agnostic_nms_threshold is not None:
        det["class_agnostic_nms_threshold"] = pp.class_agnostic_nms_threshold
    return {"detection": det}
