"""The recognition use case: one image through a version's network and post-processings.

source → bytes → decoded RGB → crop → preprocessing → Triton → post-processing per spec output → result, with
boxes mapped back to the source image's frame.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from postprocess.classification import classify
from postprocess.detection import DetectionConfig, detect
from postprocess.errors import PostprocessError
from postprocess.types import BBox, Label, LabelsResult, Prediction
from service.domain import (
    DEFAULT_MAX_PREDICTIONS,
    ClassificationPostProcessing,
    DetectionPostProcessing,
    ImageRequest,
    Preprocessing,
    RecognitionResult,
    ResolvedVersion,
    SpecOutput,
    Target,
)
from service.errors import FailedPreconditionError, InvalidArgumentError
from service.image_source import image_bytes
from service.images import DecodeBudget, EncodedImage
from service.preprocess import PreparedInputs, RawFrame, Region, RGBImage, build_inputs, crop, with_own_batch_axis
from service.sources import ImageFetcher
from service.triton.gateway import TritonGateway
from service.triton.tensors import Signature

__all__ = [
    "Recognizer",
    "StageTiming",
    "check_max_predictions",
    "needed_size",
    "with_thresholds",
]

log = logging.getLogger(__name__)

INLINE_RAW_PIXELS = 640 * 480
"""Raw frames up to this many pixels are prepared on the event loop; larger ones, and every encoded image, in a
worker thread (decoding and OpenCV release the GIL there)."""


@dataclass(frozen=True, slots=True)
class StageTiming:
    """Milliseconds spent preprocessing (decoding included), in Triton, and post-processing."""

    preprocess_ms: float
    triton_ms: float
    postprocess_ms: float


class DeploymentResolver(Protocol):
    """Finds what a target runs: the public catalog, or the registry (public models and the organisation's)."""

    async def resolve(self, target: Target) -> ResolvedVersion: ...


class Recognizer:
    """The recognition use case. ``decode_budget`` is the pixel budget shared by every decode in flight (give the
    same one to everything that decodes client images); default: its own, three times ``max_image_pixels``."""

    def __init__(
        self,
        resolver: DeploymentResolver,
        gateway: TritonGateway,
        *,
        max_image_pixels: int = 40_000_000,
        triton_timeout_s: float | None = None,
        fetcher: ImageFetcher | None = None,
        decode_budget: DecodeBudget | None = None,
    ) -> None:
        self._resolver = resolver
        self._gateway = gateway
        self._fetcher = fetcher
        self._max_image_pixels = max_image_pixels
        self._timeout_s = triton_timeout_s
        self.decode_budget = decode_budget or DecodeBudget(3 * max_image_pixels)

    def encoded(self, data: bytes, *, field: str = "inputs[0].image") -> EncodedImage:
        """A ``load`` for ``run`` that decodes ``data`` under this recognizer's limits and budget, at the reduced
        scale the deployment and crop allow; its decoding errors name ``field`` (a stream's ``frame.encoded``)."""
        return EncodedImage(data, self._max_image_pixels, self.decode_budget, field)

    async def resolve(self, target: Target) -> ResolvedVersion:
        if bool(target.spec_id) == bool(target.version_id):
            raise InvalidArgumentError.field("target", "give exactly one of spec_id or version_id")
        return await self._resolver.resolve(target)

    async def recognize(
        self,
        target: Target,
        image: ImageRequest,
        *,
        show_discarded: bool = False,
        max_predictions: int = DEFAULT_MAX_PREDICTIONS,
    ) -> RecognitionResult:
        check_max_predictions(max_predictions)
        deployment = await self.resolve(target)
        data = await image_bytes(image, self._fetcher)
        result, _ = await self.run(
            deployment,
            self.encoded(data),
            image,
            show_discarded=show_discarded,
            max_predictions=max_predictions,
        )
        return result

    async def run(
        self,
        deployment: ResolvedVersion,
        load: Callable[[], RGBImage],
        crop_request: ImageRequest | None = None,
        *,
        show_discarded: bool = False,
        max_predictions: int = DEFAULT_MAX_PREDICTIONS,
    ) -> tuple[RecognitionResult, StageTiming]:
        """One image through a deployment: ``load`` (decoding, run in a worker thread; a raw frame of at most
        ``INLINE_RAW_PIXELS`` on the loop), crop, preprocessing,
        Triton, post-processing. Returns the result and the time each stage took.

        ``load`` may be any callable giving the decoded image; an ``EncodedImage`` (``encoded``) is decoded at the
        smallest scale that still gives every image input its full target (``needed_size``)."""
        started = time.perf_counter()
        if isinstance(load, RawFrame) and load.width * load.height <= INLINE_RAW_PIXELS:
            # A small raw frame's preparation (a view, OpenCV's resize, the tensor: ~0.1 ms) costs less than the
            # hand-off to a worker thread and back (~0.5 ms measured with the loop busy): done here.
            prepared = self._prepare(load, crop_request, deployment)
        else:
            prepared = await asyncio.to_thread(self._prepare, load, crop_request, deployment)
        prepared_at = time.perf_counter()
        info = await self._gateway.model_info(deployment.model_name)
        inputs = _fit_inputs(prepared.tensors, info)
        output_names = sorted({n for pp in deployment.version.post_processings for n in pp.tensor_names})
        outputs = await self._gateway.infer(deployment.model_name, inputs, output_names, timeout_s=self._timeout_s)
        if not info.batched:
            outputs = {k: v[None] for k, v in outputs.items()}
        inferred_at = time.perf_counter()
        try:
            results = tuple(
                _postprocess(pp, out, outputs, inputs, info, prepared, max_predictions, show_discarded)
                for pp, out in zip(deployment.version.post_processings, deployment.spec.outputs, strict=True)
            )
        except PostprocessError as exc:
            raise FailedPreconditionError(
                f"the outputs of network {deployment.network.id!r} do not fit version {deployment.version.id!r}: {exc}"
            ) from None
        done_at = time.perf_counter()
        timing = StageTiming(
            preprocess_ms=(prepared_at - started) * 1e3,
            triton_ms=(inferred_at - prepared_at) * 1e3,
            postprocess_ms=(done_at - inferred_at) * 1e3,
        )
        return RecognitionResult(results), timing

    def _prepare(
        self, load: Callable[[], RGBImage], crop_request: ImageRequest | None, deployment: ResolvedVersion
    ) -> PreparedInputs:
        request = crop_request or ImageRequest()
        if isinstance(load, EncodedImage):
            decoded = load.decode(min_size=needed_size(deployment.network.preprocessing, request))
        else:
            decoded = load()
        cropped, crop_region = crop(
            decoded, bbox=request.bbox, polygon=request.polygon, uniform_background=request.crop_uniform_background
        )
        prepared = build_inputs(
            cropped, deployment.network.preprocessing, deployment.means, opencv=isinstance(load, RawFrame)
        )
        return replace(prepared, region=crop_region.then(prepared.region))


def needed_size(preprocessing: Preprocessing, request: ImageRequest) -> tuple[int, int] | None:
    """The fewest (width, height) pixels of the whole image that still give every image input its full target.

    The largest target over the image inputs (``NETWORK``'s N on both sides), divided by the fraction of the image
    the crop keeps (a bbox or polygon covering a fraction f of the width needs target / f pixels of it), rounded up.
    Exactly the needed size, with no margin: the decoder never goes below it (libjpeg's DCT scaling is itself a
    low-pass reduction), so the final resize still only shrinks, by a factor under 2, antialiased. None (full size)
    when there is no image input or the crop is invalid (``crop`` then reports it).
    """
    targets = [item.image.target for item in preprocessing.inputs if item.image is not None]
    if not targets:
        return None
    width, height = max(t[0] for t in targets), max(t[1] for t in targets)
    if request.polygon:
        xs, ys = [p[0] for p in request.polygon], [p[1] for p in request.polygon]
        box = (min(xs), min(ys), max(xs), max(ys))
    elif request.bbox is not None:
        box = request.bbox
    else:
        box = (0.0, 0.0, 1.0, 1.0)
    fx, fy = box[2] - box[0], box[3] - box[1]
    if not (0.0 < fx <= 1.0 and 0.0 < fy <= 1.0):
        return None
    return math.ceil(width / fx), math.ceil(height / fy)


def check_max_predictions(max_predictions: int) -> None:
    if max_predictions < 1:
        raise InvalidArgumentError.field("max_predictions", f"must be at least 1, got {max_predictions}")


def with_thresholds(deployment: ResolvedVersion, thresholds: Sequence[Sequence[float]]) -> ResolvedVersion:
    """The deployment with its version's per-label thresholds replaced (one list per specification output)."""
    if not thresholds:
        return deployment
    if len(thresholds) != len(deployment.spec.outputs):
        raise InvalidArgumentError.field(
            "output_thresholds",
            f"has {len(thresholds)} entries for {len(deployment.spec.outputs)} specification outputs",
        )
    post = []
    for i, (pp, values, out) in enumerate(
        zip(deployment.version.post_processings, thresholds, deployment.spec.outputs, strict=True)
    ):
        if len(values) != len(out.labels):
            raise InvalidArgumentError.field(
                f"output_thresholds[{i}].thresholds", f"has {len(values)} values for {len(out.labels)} labels"
            )
        if not all(0.0 <= v <= 1.0 for v in values):
            raise InvalidArgumentError.field(f"output_thresholds[{i}].thresholds", "values must be in [0, 1]")
        post.append(replace(pp, thresholds=tuple(float(v) for v in values)))
    return replace(deployment, version=replace(deployment.version, post_processings=tuple(post)))


def _fit_inputs(tensors: Mapping[str, npt.NDArray[Any]], info: Signature) -> dict[str, npt.NDArray[Any]]:
    """Check each tensor against the model's declared input, cast it to its dtype and add the batch dimension."""
    fitted: dict[str, npt.NDArray[Any]] = {}
    for name, array in tensors.items():
        spec = info.input(name)
        if spec is None:
            raise FailedPreconditionError(
                f"the network has no input {name!r} (its inputs: {', '.join(t.name for t in info.inputs)}); "
                "its preprocessing does not match it"
            )
        shape = info.sample_dims(spec)
        if not info.batched:
            array = with_own_batch_axis(array, shape)
        if len(shape) != array.ndim or any(d not in (-1, s) for d, s in zip(shape, array.shape, strict=False)):
            raise FailedPreconditionError(
                f"the network input {name!r} takes shape {list(shape)} but the preprocessing gives "
                f"{list(array.shape)}; check target_size and dimension_order"
            )
        cast = array.astype(spec.numpy_dtype, copy=False)
        fitted[name] = cast[None] if info.batched else cast
    return fitted


def _postprocess(
    pp: ClassificationPostProcessing | DetectionPostProcessing,
    output: SpecOutput,
    outputs: Mapping[str, npt.NDArray[Any]],
    inputs: Mapping[str, npt.NDArray[Any]],
    info: Signature,
    prepared: PreparedInputs,
    max_predictions: int,
    show_discarded: bool,
) -> LabelsResult:
    labels = tuple(Label(lab.id, lab.name) for lab in output.labels)
    if isinstance(pp, ClassificationPostProcessing):
        scores = np.asarray(outputs[pp.output_tensor][0], dtype=np.float32).reshape(-1)
        if scores.size != len(labels):
            raise FailedPreconditionError(
                f"output {pp.output_tensor!r} has {scores.size} values for {len(labels)} labels; the version does "
                "not match its network"
            )
        result = classify(
            scores, labels, exclusive=output.exclusive, thresholds=pp.thresholds, max_predictions=max_predictions
        )
    else:
        tensors = dict(outputs)
        if pp.normalize_wrt_tensor and pp.normalize_wrt_tensor not in tensors:
            if pp.normalize_wrt_tensor not in inputs:
                raise FailedPreconditionError(
                    f"normalize_wrt_tensor {pp.normalize_wrt_tensor!r} is neither an input nor an output"
                )
            source = inputs[pp.normalize_wrt_tensor]
            # One image's rows (1, ...): a batched input already has them, an unbatched one may (its own axis).
            tensors[pp.normalize_wrt_tensor] = source if info.batched or source.ndim > 1 else source[None]
        config = _detection_config(pp, labels)
        result = detect(
            tensors,
            config,
            max_predictions=max_predictions,
            input_size=prepared.input_size,
            with_discarded=show_discarded,
        )[0]
        result = _to_source_frame(result, prepared.region)
    return result if show_discarded else LabelsResult(result.predicted, ())


@functools.lru_cache(maxsize=256)
def _detection_config(pp: DetectionPostProcessing, labels: tuple[Label, ...]) -> DetectionConfig:
    return DetectionConfig(
        output=pp.output,
        labels=labels,
        thresholds=pp.thresholds,
        nms_threshold=pp.nms_threshold,
        discard_threshold=pp.discard_threshold,
        normalize_wrt_tensor=pp.normalize_wrt_tensor,
        class_agnostic_nms=pp.class_agnostic_nms_threshold,
    )


def _to_source_frame(result: LabelsResult, region: Region) -> LabelsResult:
    def move(p: Prediction) -> Prediction:
        if p.bbox is None:
            return p
        box = region.apply(np.array([[p.bbox.xmin, p.bbox.ymin, p.bbox.xmax, p.bbox.ymax]], dtype=np.float32))[0]
        return replace(p, bbox=BBox(float(box[0]), float(box[1]), float(box[2]), float(box[3])))

    if region == Region():
        return result
    return LabelsResult(tuple(map(move, result.predicted)), tuple(map(move, result.discarded)))
