"""Protobuf ⇄ domain. The contract's JSON form is the v0.7 JSON, so resources cross through the domain's v0.7
parsers and printers; results, on the hot path, are built field by field.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt
from google.protobuf import duration_pb2, field_mask_pb2, json_format, message, struct_pb2, timestamp_pb2

from postprocess.types import LabelsResult, Prediction
from service._proto.sightline.v1 import common_pb2, inference_pb2, networks_pb2, recognition_pb2, streams_pb2, tasks_pb2
from service.api.errors import to_status
from service.domain import (
    DEFAULT_MAX_PREDICTIONS,
    ImageRequest,
    Network,
    RecognitionResult,
    Specification,
    Target,
    Version,
    post_processing_to_v07,
    preprocessing_to_v07,
    spec_output_to_v07,
)
from service.domain.requests import page_bounds
from service.domain.results import TaskData, TensorsResult
from service.errors import InvalidArgumentError
from service.registry import NetworkDraft, UploadFile
from service.streams import (
    CaptureTime,
    DropPolicy,
    FrameInput,
    FrameOutcome,
    FrameStatus,
    Ordering,
    RawPixels,
    StreamConfig,
)
from service.tasks import Task

__all__ = [
    "changes",
    "image_request",
    "network_to_proto",
    "page_bounds",
    "recognize_request",
    "result_to_proto",
    "spec_body",
    "spec_to_proto",
    "task_to_proto",
    "tensor_to_proto",
    "upload_draft",
    "version_body",
    "version_to_proto",
]


def _timestamp(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


def _set_stamp(field: timestamp_pb2.Timestamp, value: datetime | None) -> None:
    if (stamp := _timestamp(value)) is not None:
        field.CopyFrom(stamp)


def _json(msg: message.Message, where: str) -> dict[str, Any]:
    """The message's v0.7 JSON; INVALID_ARGUMENT naming the field for a value JSON cannot hold: NaN or ±inf, a
    Timestamp outside years 1 to 9999, a Duration out of its range."""
    try:
        body: dict[str, Any] = json_format.MessageToDict(msg, preserving_proto_field_name=True)
    except (json_format.SerializeToJsonError, ValueError) as exc:
        found = _unprintable(msg, where)
        path, why = found if found else (where, f"cannot be read: {str(exc)[:200]}")
        raise InvalidArgumentError.field(path, why) from None
    return body


_NON_FINITE = "is not a finite number (NaN and infinities have no JSON form)"
_TIMESTAMP_RANGE = (-62_135_596_800, 253_402_300_799)  # 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59Z
_DURATION_MAX_S = 315_576_000_000  # ±10 000 years, google.protobuf.Duration's range


def _unprintable(value: Any, path: str) -> tuple[str, str] | None:
    """The path of the first value JSON cannot print in a message, a Struct or a Value, and why; or None."""
    if isinstance(value, struct_pb2.Value):
        kind = value.WhichOneof("kind")
        if kind == "number_value":
            return None if math.isfinite(value.number_value) else (path, _NON_FINITE)
        if kind == "struct_value":
            return _unprintable(value.struct_value, path)
        if kind == "list_value":
            values = enumerate(value.list_value.values)
            return next((p for i, v in values if (p := _unprintable(v, f"{path}[{i}]"))), None)
        return None
    if isinstance(value, struct_pb2.Struct):
        return next((p for k, v in value.fields.items() if (p := _unprintable(v, f"{path}.{k}"))), None)
    if isinstance(value, timestamp_pb2.Timestamp):
        low, high = _TIMESTAMP_RANGE
        if low <= value.seconds <= high and 0 <= value.nanos <= 999_999_999:
            return None
        return path, "is not a timestamp between the years 1 and 9999 (nanos 0 to 999999999)"
    if isinstance(value, duration_pb2.Duration):
        if abs(value.seconds) <= _DURATION_MAX_S and abs(value.nanos) <= 999_999_999:
            return None
        return path, "is out of a duration's range (about ±10 000 years)"
    if isinstance(value, message.Message):
        for field, item in value.ListFields():
            items = list(enumerate(item)) if field.is_repeated else [(None, item)]
            for i, element in items:
                where = f"{path}.{field.name}" + ("" if i is None else f"[{i}]")
                if isinstance(element, float) and not math.isfinite(element):
                    return where, _NON_FINITE
                if isinstance(element, message.Message) and (found := _unprintable(element, where)):
                    return found
    return None


def _read_only(body: dict[str, Any], fields: tuple[str, ...], where: str) -> None:
    for name in fields:
        if body.get(name) not in (None, "", {}):
            raise InvalidArgumentError.field(f"{where}.{name}", "is read-only: leave it empty")


def upload_draft(first: networks_pb2.CreateNetworkRequest | None) -> NetworkDraft:
    """The declaration of an upload from its first message."""
    if first is None or first.WhichOneof("kind") != "upload":
        raise InvalidArgumentError.field("upload", "the first message of CreateNetwork must be an upload")
    body = _json(first.upload.network, "upload.network")
    _read_only(body, ("id", "task_id", "create_date", "update_date"), "upload.network")
    files = tuple(UploadFile(f.name, f.size, f.sha256) for f in first.upload.files)
    return NetworkDraft(body=body, files=files)


def spec_body(spec: recognition_pb2.Specification) -> dict[str, Any]:
    """A new specification's v0.7 JSON."""
    body = _json(spec, "specification")
    _read_only(body, ("id", "update_date", "current_version_id"), "specification")
    return body


def version_body(version: recognition_pb2.Version) -> tuple[str, str, list[Any]]:
    """(spec_id, network_id, post_processings) of a new version."""
    body = _json(version, "version")
    _read_only(body, ("id", "update_date", "spec_name", "network_name"), "version")
    return version.spec_id, version.network_id, list(body.get("post_processings", []))


def changes(
    resource: message.Message,
    mask: field_mask_pb2.FieldMask,
    *,
    mutable: tuple[str, ...],
    immutable: tuple[str, ...],
    where: str,
) -> dict[str, Any]:
    """The fields an update changes: those in ``mask``, or, without one, those set in ``resource``."""
    body = _json(resource, where)
    if mask.paths:
        paths = list(mask.paths)
        for i, path in enumerate(paths):
            if path not in mutable:
                reason = "is immutable" if path in immutable else "is not a field that can be changed"
                raise InvalidArgumentError.field(
                    f"update_mask.paths[{i}]", f"{path!r} {reason} (mutable: {', '.join(mutable)})"
                )
    else:
        for name in immutable:
            if body.get(name) not in (None, "", [], {}):
                raise InvalidArgumentError.field(name, "is immutable: leave it empty or create a new resource")
        paths = [p for p in mutable if p in body and (p != "name" or body[p])]
        if not paths:
            raise InvalidArgumentError.field("update_mask", f"nothing to change: set one of {', '.join(mutable)}")
    defaults: dict[str, Any] = {"name": "", "description": "", "metadata": {}}
    result: dict[str, Any] = {}
    for path in paths:
        if path not in body and path not in defaults:
            raise InvalidArgumentError.field(path, "is in update_mask but has no value")
        result[path] = body.get(path, defaults.get(path))
    return result


def tensor_to_proto(name: str, array: npt.NDArray[Any]) -> common_pb2.Tensor:
    values = np.asarray(array, dtype=np.float32).reshape(-1)
    return common_pb2.Tensor(name=name, shape=list(array.shape), data=values.tolist())


def network_to_proto(network: Network) -> networks_pb2.Network:
    message = json_format.ParseDict(
        {
            "id": network.id,
            "name": network.name,
            "description": network.description,
            "metadata": dict(network.metadata),
            "framework": network.framework,
            "preprocessing": preprocessing_to_v07(network.preprocessing),
            "task_id": network.task_id,
        },
        networks_pb2.Network(),
    )
    _set_stamp(message.create_date, network.create_date)
    _set_stamp(message.update_date, network.update_date)
    return message


def spec_to_proto(spec: Specification, *, with_outputs: bool = True) -> recognition_pb2.Specification:
    body: dict[str, Any] = {
        "id": spec.id,
        "name": spec.name,
        "description": spec.description,
        "metadata": dict(spec.metadata),
    }
    if spec.current_version_id is not None:
        body["current_version_id"] = spec.current_version_id
    if with_outputs:
        body["outputs"] = [spec_output_to_v07(o) for o in spec.outputs]
    message = json_format.ParseDict(body, recognition_pb2.Specification())
    _set_stamp(message.update_date, spec.update_date)
    return message


def version_to_proto(version: Version) -> recognition_pb2.Version:
    message = json_format.ParseDict(
        {
            "id": version.id,
            "spec_id": version.spec_id,
            "network_id": version.network_id,
            "post_processings": [post_processing_to_v07(p) for p in version.post_processings],
            "spec_name": version.spec_name,
            "network_name": version.network_name,
        },
        recognition_pb2.Version(),
    )
    _set_stamp(message.update_date, version.update_date)
    return message


def recognize_request(
    request: inference_pb2.RecognizeRequest,
) -> tuple[Target, ImageRequest, bool, int]:
    """(target, image, show_discarded, max_predictions) from a request; validates what protobuf cannot."""
    target = Target(spec_id=request.spec_id, version_id=request.version_id)
    max_predictions = request.max_predictions if request.HasField("max_predictions") else DEFAULT_MAX_PREDICTIONS
    return target, image_request(request.inputs), request.show_discarded, max_predictions


def image_request(inputs: Sequence[inference_pb2.Input]) -> ImageRequest:
    """The one image input of a request."""
    if not inputs:
        raise InvalidArgumentError.field("inputs", "must hold one image input; it is empty")
    if len(inputs) > 1:
        raise InvalidArgumentError.field("inputs", f"holds {len(inputs)} inputs; send one image per request")
    if not inputs[0].HasField("image"):
        raise InvalidArgumentError.field("inputs[0].image", "is required")
    image = inputs[0].image
    bbox = None
    if image.HasField("bbox"):
        b = image.bbox
        missing = [n for n in ("xmin", "ymin", "xmax", "ymax") if not b.HasField(n)]
        if missing:
            raise InvalidArgumentError.field("inputs[0].image.bbox", f"lacks {', '.join(missing)}")
        bbox = (b.xmin, b.ymin, b.xmax, b.ymax)
    return ImageRequest(
        content=image.content,
        source=image.source,
        bbox=bbox,
        polygon=tuple((p.x, p.y) for p in image.polygon),
        crop_uniform_background=image.crop_uniform_background,
    )


def _prediction(p: Prediction, out: inference_pb2.Prediction) -> None:
    out.label_name = p.label_name
    out.label_id = p.label_id
    out.score = p.score
    out.threshold = p.threshold
    if p.track_id is not None:
        out.track_id = p.track_id
    if p.region_id is not None:
        out.roi.region_id = p.region_id
    if p.bbox is not None:
        box = out.roi.bbox
        box.xmin, box.ymin, box.xmax, box.ymax = p.bbox.xmin, p.bbox.ymin, p.bbox.xmax, p.bbox.ymax


def labels_to_proto(result: LabelsResult, out: inference_pb2.LabelsResult) -> None:
    for p in result.predicted:
        _prediction(p, out.predicted.add())
    for p in result.discarded:
        _prediction(p, out.discarded.add())


def result_to_proto(result: RecognitionResult) -> inference_pb2.RecognitionResult:
    message = inference_pb2.RecognitionResult()
    for output in result.outputs:
        labels_to_proto(output, message.outputs.add().labels)
    return message


_STATUS = {"pending": tasks_pb2.pending, "success": tasks_pb2.success, "error": tasks_pb2.error}


def task_to_proto(task: Task[TaskData]) -> tasks_pb2.Task:
    message = tasks_pb2.Task(id=task.id, status=_STATUS[task.status.value])
    if task.error is not None:
        message.error = task.error
    _set_stamp(message.date_created, task.date_created)
    _set_stamp(message.date_updated, task.date_updated)
    if isinstance(task.data, TensorsResult):
        for t in task.data.tensors:
            # Tensor.data is float: a string tensor travels with its name and shape only (REST gives its text).
            numbers = [] if any(isinstance(v, str) for v in t.data) else [float(v) for v in t.data]
            message.tensors.add(name=t.name, shape=list(t.shape), data=numbers)
    elif task.data is not None:
        message.data.CopyFrom(result_to_proto(task.data))
    return message


_ORDERING = {
    streams_pb2.ORDERING_UNSPECIFIED: Ordering.ORDERED,
    streams_pb2.ORDERED: Ordering.ORDERED,
    streams_pb2.AS_COMPLETED: Ordering.AS_COMPLETED,
}
_DROP_POLICY = {
    streams_pb2.DROP_POLICY_UNSPECIFIED: DropPolicy.BLOCK,
    streams_pb2.BLOCK: DropPolicy.BLOCK,
    streams_pb2.DROP_OLDEST: DropPolicy.DROP_OLDEST,
    streams_pb2.DROP_NEWEST: DropPolicy.DROP_NEWEST,
}
_PIXELS = {streams_pb2.RGB24: (3, False), streams_pb2.BGR24: (3, True), streams_pb2.GRAY8: (1, False)}
_FRAME_STATUS = {
    FrameStatus.OK: streams_pb2.OK,
    FrameStatus.SKIPPED: streams_pb2.SKIPPED,
    FrameStatus.ERROR: streams_pb2.ERROR,
}


def stream_message(message: streams_pb2.StreamRecognizeRequest) -> StreamConfig | FrameInput:
    """A stream's request message as a config or a frame."""
    kind = message.WhichOneof("kind")
    if kind == "config":
        c = message.config
        if c.ordering not in _ORDERING:
            raise InvalidArgumentError.field("config.ordering", f"{c.ordering} is not one of ORDERED, AS_COMPLETED")
        if c.drop_policy not in _DROP_POLICY:
            raise InvalidArgumentError.field(
                "config.drop_policy", f"{c.drop_policy} is not one of BLOCK, DROP_OLDEST, DROP_NEWEST"
            )
        return StreamConfig(
            target=Target(spec_id=c.spec_id, version_id=c.version_id),
            show_discarded=c.show_discarded,
            max_predictions=c.max_predictions if c.HasField("max_predictions") else DEFAULT_MAX_PREDICTIONS,
            max_in_flight=c.max_in_flight,
            ordering=_ORDERING[c.ordering],
            drop_policy=_DROP_POLICY[c.drop_policy],
            max_latency_ms=c.max_latency_ms,
            tracking=c.tracking,
            output_thresholds=tuple(tuple(t.thresholds) for t in c.output_thresholds),
        )
    if kind == "frame":
        f = message.frame
        timestamp = CaptureTime(f.timestamp.seconds, f.timestamp.nanos) if f.HasField("timestamp") else None
        raw = None
        if f.WhichOneof("image") == "raw":
            # An unknown format (0 channels) fails this frame, answered ERROR, not the stream.
            channels, bgr = _PIXELS.get(f.raw.format, (0, False))
            raw = RawPixels(f.raw.data, f.raw.width, f.raw.height, channels, bgr)
        return FrameInput(frame_id=f.frame_id, timestamp=timestamp, encoded=f.encoded, raw=raw)
    raise InvalidArgumentError.field("kind", "a stream message must hold a config or a frame")


def outcome_to_proto(outcome: FrameOutcome) -> streams_pb2.StreamRecognizeResponse:
    message = streams_pb2.StreamRecognizeResponse(
        frame_id=outcome.frame_id, status=_FRAME_STATUS[outcome.status], skip_reason=outcome.skip_reason
    )
    if outcome.timestamp is not None:
        # Echoed exactly as the client sent it, in or out of Timestamp's valid range.
        message.timestamp.CopyFrom(
            timestamp_pb2.Timestamp(seconds=outcome.timestamp.seconds, nanos=outcome.timestamp.nanos)
        )
    if outcome.error is not None:
        message.error.CopyFrom(to_status(outcome.error))
    if outcome.result is not None:
        for output in outcome.result.outputs:
            labels_to_proto(output, message.result.outputs.add().labels)
    t = outcome.timing
    message.timing.queue_ms = t.queue_ms
    message.timing.preprocess_ms = t.preprocess_ms
    message.timing.triton_ms = t.triton_ms
    message.timing.postprocess_ms = t.postprocess_ms
    message.timing.total_ms = t.total_ms
    return message
