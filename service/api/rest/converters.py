"""v0.7 JSON in and out for the REST facade, from and to the domain types.

Out: the v0.7 shapes exactly: an organisation's ids (decimal strings inside) are JSON integers, public ids stay
strings, ``null`` where v0.7 has null, ``predicted`` and ``discarded`` always present, dates in ISO 8601, lists
as ``{count, next, previous, prev, results}`` with absolute URLs. In: the ids of the URL and of bodies, the image
inputs of an inference, the fields an update changes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np
from yarl import URL

from postprocess.types import LabelsResult, Prediction
from service.api.rest.forms import BOOL, FLOAT, INT, JSON, NUMBER_OR_TEXT, SOURCE, TEXT, Schema
from service.domain import (
    DEFAULT_MAX_PREDICTIONS,
    ImageRequest,
    Network,
    Specification,
    Version,
    post_processing_to_v07,
    preprocessing_to_v07,
    spec_output_to_v07,
)
from service.domain.results import TaskData, TensorsResult
from service.errors import InvalidArgumentError, quote
from service.tasks import Task

__all__ = [
    "INFERENCE_SCHEMA",
    "NETWORK_SCHEMA",
    "SPEC_SCHEMA",
    "VERSION_SCHEMA",
    "changes",
    "image_request",
    "inference_options",
    "network_json",
    "page_json",
    "public_id",
    "resource_id",
    "result_json",
    "spec_json",
    "task_json",
    "version_json",
]

JsonDict = dict[str, Any]

_IMAGE: Schema = {
    "source": SOURCE,
    "bbox": {"xmin": FLOAT, "ymin": FLOAT, "xmax": FLOAT, "ymax": FLOAT},
    "polygon": [{"x": FLOAT, "y": FLOAT}],
    "crop_uniform_background": BOOL,
}
INFERENCE_SCHEMA: Mapping[str, Schema] = {
    "inputs": [{"image": _IMAGE}],
    "show_discarded": BOOL,
    "max_predictions": INT,
    "output_tensors": [TEXT],
}
_PREPROCESSING: Schema = {
    "inputs": [
        {
            "tensor_name": TEXT,
            "image": {
                "dimension_order": TEXT,
                "resize_type": TEXT,
                "target_size": TEXT,
                "color_channels": TEXT,
                "pixel_scaling": FLOAT,
                "mean_file": TEXT,
                "data_type": TEXT,
            },
            "constant": {"shape": [INT], "data": [NUMBER_OR_TEXT]},
        }
    ],
    "batched_output": BOOL,
}
NETWORK_SCHEMA: Mapping[str, Schema] = {
    "name": TEXT,
    "description": TEXT,
    "metadata": JSON,
    "framework": TEXT,
    "preprocessing": _PREPROCESSING,
    "postprocessings": JSON,
}
_LABELS: Schema = {"labels": {"labels": [{"id": INT, "name": TEXT}], "exclusive": BOOL, "roi": TEXT}}
SPEC_SCHEMA: Mapping[str, Schema] = {
    "name": TEXT,
    "description": TEXT,
    "metadata": JSON,
    "outputs": [_LABELS],
    "current_version_id": INT,
}
VERSION_SCHEMA: Mapping[str, Schema] = {"spec_id": INT, "network_id": TEXT, "post_processings": JSON}


# ---------------------------------------------------------------------------------------------------- ids


def public_id(value: str) -> int | str:
    """An id as v0.7 prints it: an organisation's (decimal) as an integer, a public one as its string."""
    return int(value) if value.isdecimal() and value.isascii() else value


def _optional_id(value: str | None) -> int | str | None:
    return None if value is None else public_id(value)


def resource_id(raw: Any, where: str) -> str:
    """A resource id from a body (an integer for the organisation's, a string for a public one) or a URL."""
    if isinstance(raw, bool) or not isinstance(raw, (int, str)):
        raise InvalidArgumentError.field(where, "must be an id: an integer, or a public resource's name")
    text = str(raw).strip()
    if not text:
        raise InvalidArgumentError.field(where, "must not be empty")
    return text


def _date(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


# ----------------------------------------------------------------------------------------------- resources


def network_json(network: Network) -> JsonDict:
    return {
        "id": public_id(network.id),
        "name": network.name,
        "description": network.description,
        "metadata": dict(network.metadata),
        "framework": network.framework,
        "preprocessing": preprocessing_to_v07(network.preprocessing),
        "task_id": network.task_id or None,
        "create_date": _date(network.create_date),
        "update_date": _date(network.update_date),
    }


def spec_json(spec: Specification, *, public: bool, with_outputs: bool = True) -> JsonDict:
    """A specification; a public one has no ``current_version_id`` (v0.7 hides it), lists leave out ``outputs``."""
    body: JsonDict = {
        "id": public_id(spec.id),
        "name": spec.name,
        "description": spec.description,
        "metadata": dict(spec.metadata),
        "update_date": _date(spec.update_date),
    }
    if not public:
        body["current_version_id"] = _optional_id(spec.current_version_id)
    if with_outputs:
        body["outputs"] = [spec_output_to_v07(o) for o in spec.outputs]
    return body


def version_json(version: Version) -> JsonDict:
    return {
        "id": public_id(version.id),
        "spec_id": public_id(version.spec_id),
        "network_id": public_id(version.network_id),
        "post_processings": [post_processing_to_v07(p) for p in version.post_processings],
        "spec_name": version.spec_name,
        "network_name": version.network_name,
        "update_date": _date(version.update_date),
    }


def page_json(url: URL, offset: int, limit: int, count: int, results: Sequence[JsonDict]) -> JsonDict:
    """A v0.7 list page; ``next`` and ``previous`` (and ``prev``, which the official client reads) are ``url``
    with its whole query kept and only ``offset`` and ``limit`` changed."""
    following = str(url.update_query(offset=offset + limit, limit=limit)) if offset + limit < count else None
    previous = str(url.update_query(offset=max(0, offset - limit), limit=limit)) if offset > 0 else None
    return {"count": count, "next": following, "previous": previous, "prev": previous, "results": list(results)}


# ------------------------------------------------------------------------------------------ results, tasks


def _f32(value: float) -> float:
    """A float32 value printed as its shortest decimal (0.99999994, not 0.9999999403953552), as protobuf's JSON
    and v0.7 print scores and coordinates."""
    return float(str(np.float32(value)))


def _prediction_json(p: Prediction) -> JsonDict:
    body: JsonDict = {
        "label_name": p.label_name,
        "label_id": p.label_id,
        "score": _f32(p.score),
        "threshold": _f32(p.threshold),
    }
    if p.bbox is not None or p.region_id is not None:
        roi: JsonDict = {}
        if p.region_id is not None:
            roi["region_id"] = p.region_id
        if p.bbox is not None:
            b = p.bbox
            roi["bbox"] = {"xmin": _f32(b.xmin), "ymin": _f32(b.ymin), "xmax": _f32(b.xmax), "ymax": _f32(b.ymax)}
        body["roi"] = roi
    return body


def _labels_json(out: LabelsResult) -> JsonDict:
    return {
        "labels": {
            "predicted": [_prediction_json(p) for p in out.predicted],
            "discarded": [_prediction_json(p) for p in out.discarded],
        }
    }


def result_json(result: TaskData) -> JsonDict:
    """A task's data: ``{"outputs": [{"labels": ...}]}``, or ``{"tensors": [{"name", "shape", "data"}]}``."""
    if isinstance(result, TensorsResult):
        return result.to_v07()
    return {"outputs": [_labels_json(out) for out in result.outputs]}


def task_json(task: Task[TaskData]) -> JsonDict:
    return {
        "id": task.id,
        "status": task.status.value,
        "error": task.error,
        "date_created": _date(task.date_created),
        "date_updated": _date(task.date_updated),
        "data": None if task.data is None else result_json(task.data),
        "subtasks": None,
    }


# ------------------------------------------------------------------------------------------------- inputs


def image_request(body: Mapping[str, Any]) -> ImageRequest:
    """The one image input of an inference body (``inputs[0].image``)."""
    inputs = body.get("inputs")
    if inputs is None or inputs == []:
        raise InvalidArgumentError.field("inputs", "must hold one image input; it is empty")
    if not isinstance(inputs, list):
        raise InvalidArgumentError.field("inputs", "must be an array of inputs")
    if len(inputs) > 1:
        raise InvalidArgumentError.field("inputs", f"holds {len(inputs)} inputs; send one image per request")
    first = inputs[0]
    image = first.get("image") if isinstance(first, Mapping) else None
    if not isinstance(image, Mapping):
        raise InvalidArgumentError.field("inputs[0].image", "is required: an object with a source")
    source = image.get("source")
    if isinstance(source, (bytes, bytearray)):
        content, text = bytes(source), ""
    elif isinstance(source, str) and source:
        content, text = b"", source
    else:
        raise InvalidArgumentError.field(
            "inputs[0].image.source", "is required: a URL, a data: URI, or the image's bytes as a file part"
        )
    return ImageRequest(
        content=content,
        source=text,
        bbox=_bbox(image.get("bbox")),
        polygon=_polygon(image.get("polygon")),
        crop_uniform_background=_flag(image.get("crop_uniform_background", False), "inputs[0].image"),
    )


def _number(raw: Any, where: str) -> float:
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        raise InvalidArgumentError.field(where, "must be a number")
    return float(raw)


def _bbox(raw: Any) -> tuple[float, float, float, float] | None:
    if raw is None:
        return None
    where = "inputs[0].image.bbox"
    if not isinstance(raw, Mapping):
        raise InvalidArgumentError.field(where, "must be an object with xmin, ymin, xmax and ymax")
    missing = [k for k in ("xmin", "ymin", "xmax", "ymax") if k not in raw]
    if missing:
        raise InvalidArgumentError.field(where, f"lacks {', '.join(missing)}")
    xmin, ymin, xmax, ymax = (_number(raw[k], f"{where}.{k}") for k in ("xmin", "ymin", "xmax", "ymax"))
    return xmin, ymin, xmax, ymax


def _polygon(raw: Any) -> tuple[tuple[float, float], ...]:
    if raw is None:
        return ()
    where = "inputs[0].image.polygon"
    if not isinstance(raw, list) or not all(isinstance(p, Mapping) for p in raw):
        raise InvalidArgumentError.field(where, "must be an array of {x, y} points")
    return tuple(
        (_number(p.get("x"), f"{where}[{i}].x"), _number(p.get("y"), f"{where}[{i}].y")) for i, p in enumerate(raw)
    )


def _flag(raw: Any, where: str) -> bool:
    if not isinstance(raw, bool):
        raise InvalidArgumentError.field(where, "must be true or false")
    return raw


def inference_options(body: Mapping[str, Any]) -> tuple[bool, int]:
    """(show_discarded, max_predictions) of an inference body, v0.7's defaults (false, 100) when absent."""
    show = _flag(body.get("show_discarded", False), "show_discarded")
    most = body.get("max_predictions", DEFAULT_MAX_PREDICTIONS)
    if isinstance(most, bool) or not isinstance(most, int) or most < 1:
        raise InvalidArgumentError.field("max_predictions", f"must be an integer of at least 1, got {most!r}")
    return show, most


def changes(body: Mapping[str, Any], *, mutable: Sequence[str], replace: bool, where: str) -> dict[str, Any]:
    """The fields an update sets: with PATCH those sent, with PUT every mutable one (``name`` required, the others
    back to their defaults when left out). Read-only fields are ignored when unchanged clients echo them back;
    immutable ones (``outputs``, ``framework``, ``preprocessing``) refused."""
    immutable = {"outputs", "framework", "preprocessing", "post_processings", "spec_id", "network_id"}
    for key in body:
        if key in immutable:
            raise InvalidArgumentError.field(key, f"is immutable: create a new {where} to change it")
    update = {k: body[k] for k in mutable if k in body}
    if replace:
        if "name" not in update:
            raise InvalidArgumentError.field("name", "is required when replacing (PUT); PATCH changes some fields")
        update = {"description": "", "metadata": {}, **update}
    if not update:
        raise InvalidArgumentError(f"nothing to change: send one of {', '.join(mutable)}")
    if "current_version_id" in update:
        raw = update["current_version_id"]
        update["current_version_id"] = resource_id(raw, "current_version_id")
    for key in ("name", "description"):
        if key in update and not isinstance(update[key], str):
            raise InvalidArgumentError.field(key, "must be a string")
    if "metadata" in update and not isinstance(update["metadata"], Mapping):
        raise InvalidArgumentError.field("metadata", f"must be an object, got {quote(str(update['metadata']))}")
    return update
