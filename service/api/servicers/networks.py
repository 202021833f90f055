from __future__ import annotations

from typing import Any, TypeAlias

import grpc

from service._proto.sightline.v1 import common_pb2, networks_pb2, networks_pb2_grpc
from service.api.converters import network_to_proto, page
from service.api.errors import grpc_errors
from service.catalog import Catalog
from service.errors import InvalidArgumentError

__all__ = ["NetworkServicer"]

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]


class NetworkServicer(networks_pb2_grpc.NetworkServiceServicer):
    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog

    @grpc_errors
    async def ListNetworks(
        self, request: common_pb2.ListRequest, context: Context
    ) -> networks_pb2.ListNetworksResponse:
        networks = self._catalog.networks()
        return networks_pb2.ListNetworksResponse(
            count=len(networks),
            results=[network_to_proto(n) for n in networks[page(request.offset, request.limit)]],
        )

    @grpc_errors
    async def GetNetwork(self, request: networks_pb2.GetNetworkRequest, context: Context) -> networks_pb2.Network:
        if not request.network_id:
            raise InvalidArgumentError.field("network_id", "must not be empty")
        return network_to_proto(self._catalog.network(request.network_id))
