"""The ``grpc.health.v1`` servicer: grpcio's, plus ``model/<network-id>`` of each organisation's own networks.

The process, the services and the public models are entries that ``service.health.HealthMonitor`` keeps up to
date (grpcio's servicer answers them). An uploaded network's ``model/<network-id>`` is looked up per call instead,
as its organisation sees it: with API keys on, only a call that carries a key of the network's organisation sees
it, and any other caller (no key, another organisation's key, an unknown key) is answered NOT_FOUND, exactly as
for a network that does not exist, so that a probe learns nothing of other organisations. With keys off every
caller is the organisation ``local`` and sees its networks. Such a network is SERVING while Triton has its model
ready (NOT_SERVING while it deploys, or while Triton is away); a ``Watch`` on it polls every ``interval_s`` and
answers SERVICE_UNKNOWN once the network is deleted. Draining turns it NOT_SERVING like every other entry.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from grpc_health.v1 import health, health_pb2

from service.api.errors import abort_with
from service.auth import Authenticator
from service.errors import NotFoundError, SightlineError
from service.registry import Registry
from service.triton.gateway import TritonGateway

__all__ = ["MODEL_PREFIX", "HealthServicer"]

MODEL_PREFIX = "model/"
_SERVING = int(health_pb2.HealthCheckResponse.SERVING)
_NOT_SERVING = int(health_pb2.HealthCheckResponse.NOT_SERVING)
_UNKNOWN = int(health_pb2.HealthCheckResponse.SERVICE_UNKNOWN)


class HealthServicer(health.aio.HealthServicer):  # type: ignore[misc]  # grpcio-health-checking has no types
    """grpcio's health servicer, which also answers for the caller's own uploaded networks."""

    def __init__(
        self,
        authenticator: Authenticator,
        registry: Registry,
        gateway: TritonGateway,
        model_name: Callable[[str], str],
        *,
        interval_s: float = 2.0,
    ) -> None:
        """``model_name``: the Triton model name of an uploaded network's id (the model repository's)."""
        super().__init__()
        self._authenticator = authenticator
        self._registry = registry
        self._gateway = gateway
        self._model_name = model_name
        self._interval_s = interval_s

    def _is_uploaded(self, service: str) -> bool:
        return service.startswith(MODEL_PREFIX) and service not in self._server_status

    async def Check(self, request: health_pb2.HealthCheckRequest, context: Any) -> health_pb2.HealthCheckResponse:
        if not self._is_uploaded(request.service):
            if request.service not in self._server_status:
                await abort_with(context, _unknown(request.service))
            return health_pb2.HealthCheckResponse(status=self._server_status[request.service])
        status = await self._network_status(request.service, context)
        if status == _UNKNOWN:
            await abort_with(context, _unknown(request.service))
        return health_pb2.HealthCheckResponse(status=status)

    async def Watch(self, request: health_pb2.HealthCheckRequest, context: Any) -> None:
        if not self._is_uploaded(request.service):
            await super().Watch(request, context)
            return
        last: int | None = None
        while True:
            status = await self._network_status(request.service, context)
            if status != last:
                await context.write(health_pb2.HealthCheckResponse(status=status))
                last = status
            await asyncio.sleep(self._interval_s)

    async def _network_status(self, service: str, context: Any) -> int:
        """SERVING / NOT_SERVING of a network the caller's organisation has; SERVICE_UNKNOWN for any other."""
        metadata = tuple((k, v) for k, v in (context.invocation_metadata() or ()) if isinstance(v, str))
        try:
            principal = await self._authenticator.authenticate(metadata)
            network = await self._registry.get_network(principal.organisation, service[len(MODEL_PREFIX) :])
        except SightlineError:  # no key, an unknown one, another organisation's network, no such network
            return _UNKNOWN
        if self._gracefully_shutting_down:
            return _NOT_SERVING
        # A public network has an entry of its own and never gets here, so this is an uploaded one.
        ready = await self._gateway.model_ready(self._model_name(network.id))
        return _SERVING if ready else _NOT_SERVING


def _unknown(service: str) -> NotFoundError:
    error = NotFoundError("health service", service)
    error.message = (
        f"{error.message}: ask for '' (the process), a service (sightline.v1.RecognitionService ...) or "
        "model/<network-id>, a public network or one of your organisation's (send its API key)"
    )
    return error
