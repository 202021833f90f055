from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, TypeAlias

import grpc

from service._proto.sightline.v1 import common_pb2, inference_pb2, recognition_pb2, recognition_pb2_grpc, streams_pb2
from service.api.converters import (
    outcome_to_proto,
    page,
    recognize_request,
    result_to_proto,
    spec_to_proto,
    stream_message,
    version_to_proto,
)
from service.api.errors import grpc_errors, grpc_stream_errors
from service.catalog import Catalog
from service.errors import InvalidArgumentError
from service.recognition import RecognitionResult, Recognizer
from service.streams import FrameInput, StreamConfig, StreamRunner
from service.tasks import TaskRunner

__all__ = ["RecognitionServicer"]

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]


class RecognitionServicer(recognition_pb2_grpc.RecognitionServiceServicer):
    def __init__(
        self,
        catalog: Catalog,
        recognizer: Recognizer,
        tasks: TaskRunner[RecognitionResult],
        streams: StreamRunner,
    ) -> None:
        self._catalog = catalog
        self._recognizer = recognizer
        self._tasks = tasks
        self._streams = streams

    @grpc_errors
    async def ListSpecifications(
        self, request: common_pb2.ListRequest, context: Context
    ) -> recognition_pb2.ListSpecificationsResponse:
        specs = self._catalog.specifications()
        return recognition_pb2.ListSpecificationsResponse(
            count=len(specs),
            results=[spec_to_proto(s, with_outputs=False) for s in specs[page(request.offset, request.limit)]],
        )

    @grpc_errors
    async def GetSpecification(
        self, request: recognition_pb2.GetSpecificationRequest, context: Context
    ) -> recognition_pb2.Specification:
        if not request.spec_id:
            raise InvalidArgumentError.field("spec_id", "must not be empty")
        return spec_to_proto(self._catalog.for_spec(request.spec_id).spec)

    @grpc_errors
    async def ListVersions(
        self, request: recognition_pb2.ListVersionsRequest, context: Context
    ) -> recognition_pb2.ListVersionsResponse:
        if request.spec_id:
            self._catalog.for_spec(request.spec_id)
        versions = self._catalog.versions(request.spec_id)
        return recognition_pb2.ListVersionsResponse(
            count=len(versions),
            results=[version_to_proto(v) for v in versions[page(request.offset, request.limit)]],
        )

    @grpc_errors
    async def GetVersion(self, request: recognition_pb2.GetVersionRequest, context: Context) -> recognition_pb2.Version:
        if not request.version_id:
            raise InvalidArgumentError.field("version_id", "must not be empty")
        return version_to_proto(self._catalog.for_version(request.version_id).version)

    @grpc_errors
    async def Recognize(
        self, request: inference_pb2.RecognizeRequest, context: Context
    ) -> inference_pb2.RecognitionResult:
        target, image, show_discarded, max_predictions = recognize_request(request)
        result = await self._recognizer.recognize(
            target, image, show_discarded=show_discarded, max_predictions=max_predictions
        )
        return result_to_proto(result)

    @grpc_errors
    async def Infer(self, request: inference_pb2.RecognizeRequest, context: Context) -> recognition_pb2.InferResponse:
        target, image, show_discarded, max_predictions = recognize_request(request)
        # Resolve now so that an unknown spec or version is answered NOT_FOUND, not buried in a task.
        self._recognizer.resolve(target)
        task = self._tasks.submit(
            lambda: self._recognizer.recognize(
                target, image, show_discarded=show_discarded, max_predictions=max_predictions
            )
        )
        return recognition_pb2.InferResponse(task_id=task.id)

    @grpc_stream_errors
    async def StreamRecognize(
        self, request_iterator: AsyncIterator[streams_pb2.StreamRecognizeRequest], context: Context
    ) -> AsyncIterator[streams_pb2.StreamRecognizeResponse]:
        async def messages() -> AsyncIterator[StreamConfig | FrameInput]:
            async for message in request_iterator:
                yield stream_message(message)

        async for outcome in self._streams.stream(messages()):
            yield outcome_to_proto(outcome)
