from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, TypeAlias

import grpc

from service._proto.sightline.v1 import common_pb2, networks_pb2, networks_pb2_grpc
from service.api.converters import (
    changes,
    image_request,
    network_to_proto,
    page_bounds,
    tensor_to_proto,
    upload_draft,
)
from service.api.errors import grpc_errors
from service.auth import current_principal
from service.errors import InvalidArgumentError
from service.registry import Registry

__all__ = ["NetworkServicer"]

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]


class NetworkServicer(networks_pb2_grpc.NetworkServiceServicer):
    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    @grpc_errors
    async def ListNetworks(
        self, request: common_pb2.ListRequest, context: Context
    ) -> networks_pb2.ListNetworksResponse:
        offset, limit = page_bounds(request.offset, request.limit)
        count, networks = await self._registry.list_networks(current_principal().organisation, offset, limit)
        return networks_pb2.ListNetworksResponse(count=count, results=[network_to_proto(n) for n in networks])

    @grpc_errors
    async def GetNetwork(self, request: networks_pb2.GetNetworkRequest, context: Context) -> networks_pb2.Network:
        network = await self._registry.get_network(current_principal().organisation, request.network_id)
        return network_to_proto(network)

    @grpc_errors
    async def CreateNetwork(
        self, request_iterator: AsyncIterator[networks_pb2.CreateNetworkRequest], context: Context
    ) -> networks_pb2.Network:
        draft = upload_draft(await anext(aiter(request_iterator), None))

        async def chunks() -> AsyncIterator[tuple[str, bytes]]:
            async for message in request_iterator:
                if message.WhichOneof("kind") != "chunk":
                    raise InvalidArgumentError.field("upload", "only the first message of CreateNetwork is an upload")
                yield message.chunk.file_name, message.chunk.data

        network = await self._registry.create_network(current_principal().organisation, draft, chunks())
        return network_to_proto(network)

    @grpc_errors
    async def UpdateNetwork(self, request: networks_pb2.UpdateNetworkRequest, context: Context) -> networks_pb2.Network:
        update = changes(
            request.network,
            request.update_mask,
            mutable=("name", "description", "metadata"),
            immutable=("framework", "preprocessing", "task_id", "create_date", "update_date"),
            where="network",
        )
        network = await self._registry.update_network(current_principal().organisation, request.network.id, update)
        return network_to_proto(network)

    @grpc_errors
    async def DeleteNetwork(
        self, request: networks_pb2.DeleteNetworkRequest, context: Context
    ) -> networks_pb2.DeleteNetworkResponse:
        await self._registry.delete_network(current_principal().organisation, request.network_id)
        return networks_pb2.DeleteNetworkResponse()

    @grpc_errors
    async def InferNetwork(
        self, request: networks_pb2.InferNetworkRequest, context: Context
    ) -> networks_pb2.InferNetworkResponse:
        image = image_request(request.inputs)
        outputs = await self._registry.infer_network(
            current_principal().organisation, request.network_id, image, list(request.output_tensors)
        )
        return networks_pb2.InferNetworkResponse(tensors=[tensor_to_proto(n, a) for n, a in outputs.items()])
