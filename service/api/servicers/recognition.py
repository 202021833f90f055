from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import replace
from typing import Any, TypeAlias

import grpc

from service._proto.sightline.v1 import common_pb2, inference_pb2, recognition_pb2, recognition_pb2_grpc, streams_pb2
from service.api.converters import (
    changes,
    outcome_to_proto,
    page_bounds,
    recognize_request,
    result_to_proto,
    spec_body,
    spec_to_proto,
    stream_message,
    version_body,
    version_to_proto,
)
from service.api.errors import grpc_errors, grpc_stream_errors
from service.auth import current_principal
from service.inference_tasks import InferenceTasks
from service.recognition import Recognizer
from service.registry import Registry
from service.streams import FrameInput, StreamConfig, StreamRunner

__all__ = ["RecognitionServicer"]

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]


class RecognitionServicer(recognition_pb2_grpc.RecognitionServiceServicer):
    def __init__(
        self,
        registry: Registry,
        recognizer: Recognizer,
        inference: InferenceTasks,
        streams: StreamRunner,
    ) -> None:
        self._registry = registry
        self._recognizer = recognizer
        self._inference = inference
        self._streams = streams

    @grpc_errors
    async def ListSpecifications(
        self, request: common_pb2.ListRequest, context: Context
    ) -> recognition_pb2.ListSpecificationsResponse:
        offset, limit = page_bounds(request.offset, request.limit)
        count, specs = await self._registry.list_specs(current_principal().organisation, offset, limit)
        return recognition_pb2.ListSpecificationsResponse(
            count=count, results=[spec_to_proto(s, with_outputs=False) for s in specs]
        )

    @grpc_errors
    async def GetSpecification(
        self, request: recognition_pb2.GetSpecificationRequest, context: Context
    ) -> recognition_pb2.Specification:
        return spec_to_proto(await self._registry.get_spec(current_principal().organisation, request.spec_id))

    @grpc_errors
    async def CreateSpecification(
        self, request: recognition_pb2.CreateSpecificationRequest, context: Context
    ) -> recognition_pb2.Specification:
        spec = await self._registry.create_spec(current_principal().organisation, spec_body(request.specification))
        return spec_to_proto(spec)

    @grpc_errors
    async def UpdateSpecification(
        self, request: recognition_pb2.UpdateSpecificationRequest, context: Context
    ) -> recognition_pb2.Specification:
        update = changes(
            request.specification,
            request.update_mask,
            mutable=("name", "description", "metadata", "current_version_id"),
            immutable=("outputs", "update_date"),
            where="specification",
        )
        spec = await self._registry.update_spec(current_principal().organisation, request.specification.id, update)
        return spec_to_proto(spec)

    @grpc_errors
    async def DeleteSpecification(
        self, request: recognition_pb2.DeleteSpecificationRequest, context: Context
    ) -> recognition_pb2.DeleteSpecificationResponse:
        await self._registry.delete_spec(current_principal().organisation, request.spec_id)
        return recognition_pb2.DeleteSpecificationResponse()

    @grpc_errors
    async def ListVersions(
        self, request: recognition_pb2.ListVersionsRequest, context: Context
    ) -> recognition_pb2.ListVersionsResponse:
        offset, limit = page_bounds(request.offset, request.limit)
        count, versions = await self._registry.list_versions(
            current_principal().organisation, request.spec_id, offset, limit
        )
        return recognition_pb2.ListVersionsResponse(count=count, results=[version_to_proto(v) for v in versions])

    @grpc_errors
    async def GetVersion(self, request: recognition_pb2.GetVersionRequest, context: Context) -> recognition_pb2.Version:
        return version_to_proto(await self._registry.get_version(current_principal().organisation, request.version_id))

    @grpc_errors
    async def CreateVersion(
        self, request: recognition_pb2.CreateVersionRequest, context: Context
    ) -> recognition_pb2.Version:
        spec_id, network_id, post_processings = version_body(request.version)
        version = await self._registry.create_version(
            current_principal().organisation, spec_id, network_id, post_processings
        )
        return version_to_proto(version)

    @grpc_errors
    async def DeleteVersion(
        self, request: recognition_pb2.DeleteVersionRequest, context: Context
    ) -> recognition_pb2.DeleteVersionResponse:
        await self._registry.delete_version(current_principal().organisation, request.version_id)
        return recognition_pb2.DeleteVersionResponse()

    @grpc_errors
    async def Recognize(
        self, request: inference_pb2.RecognizeRequest, context: Context
    ) -> inference_pb2.RecognitionResult:
        target, image, show_discarded, max_predictions = recognize_request(request)
        target = replace(target, organisation=current_principal().organisation)
        result = await self._recognizer.recognize(
            target, image, show_discarded=show_discarded, max_predictions=max_predictions
        )
        return result_to_proto(result)

    @grpc_errors
    async def Infer(self, request: inference_pb2.RecognizeRequest, context: Context) -> recognition_pb2.InferResponse:
        target, image, show_discarded, max_predictions = recognize_request(request)
        target = replace(target, organisation=current_principal().organisation)
        task = await self._inference.recognize(
            target, image, show_discarded=show_discarded, max_predictions=max_predictions
        )
        return recognition_pb2.InferResponse(task_id=task.id)

    @grpc_stream_errors
    async def StreamRecognize(
        self, request_iterator: AsyncIterator[streams_pb2.StreamRecognizeRequest], context: Context
    ) -> AsyncGenerator[streams_pb2.StreamRecognizeResponse]:
        organisation = current_principal().organisation

        async def messages() -> AsyncGenerator[StreamConfig | FrameInput]:
            async for message in request_iterator:
                item = stream_message(message)
                if isinstance(item, StreamConfig):
                    item = replace(item, target=replace(item.target, organisation=organisation))
                yield item

        async with (
            contextlib.aclosing(messages()) as requests,
            contextlib.aclosing(self._streams.stream(requests)) as outcomes,
        ):
            async for outcome in outcomes:
                yield outcome_to_proto(outcome)
