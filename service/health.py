"""Health for ``grpc.health.v1`` (Check and Watch): the process, each Sightline service, each model.

Service names: ``""`` (the process), ``sightline.v1.RecognitionService`` and the other services, and
``model/<network-id>`` for each public model (the Triton model that serves it). A monitor polls Triton: while it
cannot be reached the services are NOT_SERVING, and so is ``""`` when the Triton is the embedded one (then the
container can serve nothing, and its health check must say so; with a remote Triton ``""`` stays SERVING, so that
a liveness probe does not restart replicas that are healthy while Triton is away). A model is SERVING only while
Triton has it ready. Draining sets everything to NOT_SERVING for good. ``models_ready`` is set the first time
every public model is ready at once (the server's "ready" log line). The organisations' own networks are answered
per call by ``service.api.health.HealthServicer``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from grpc_health.v1 import health, health_pb2

from service.triton.gateway import TritonGateway

__all__ = ["HealthMonitor", "model_service_name"]

log = logging.getLogger(__name__)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def model_service_name(model: str) -> str:
    return f"model/{model}"


class HealthMonitor:
    def __init__(
        self,
        servicer: health.aio.HealthServicer,
        gateway: TritonGateway,
        services: Sequence[str],
        models: Sequence[str],
        *,
        interval_s: float = 2.0,
        process_follows_triton: bool = False,
    ) -> None:
        self._servicer = servicer
        self._gateway = gateway
        self._services = tuple(services)
        self._models = tuple(models)
        self._interval_s = interval_s
        self._process_follows_triton = process_follows_triton
        self._task: asyncio.Task[None] | None = None
        self._draining = False
        self.triton_reachable = False
        self.models_ready = asyncio.Event()
        """Set once every public model has been ready in one check."""

    async def check_once(self) -> None:
        if self._draining:
            return
        live = await self._gateway.server_live()
        if live != self.triton_reachable:
            (log.info if live else log.error)("Triton is %s", "reachable" if live else "unreachable")
        self.triton_reachable = live
        if self._draining:  # drain() ran while Triton was being asked
            return
        await self._servicer.set("", SERVING if live or not self._process_follows_triton else NOT_SERVING)
        for name in self._services:
            await self._servicer.set(name, SERVING if live else NOT_SERVING)
        every_ready = live
        for model in self._models:
            ready = live and await self._gateway.model_ready(model)
            every_ready = every_ready and ready
            await self._servicer.set(model_service_name(model), SERVING if ready else NOT_SERVING)
        if every_ready and not self._draining:
            self.models_ready.set()

    async def triton_down(self) -> None:
        """Triton is known to be gone (the embedded one exited): NOT_SERVING now, without waiting for a poll."""
        if self._draining:
            return
        self.triton_reachable = False
        if self._process_follows_triton:
            await self._servicer.set("", NOT_SERVING)
        for name in (*self._services, *(model_service_name(m) for m in self._models)):
            await self._servicer.set(name, NOT_SERVING)

    async def start(self) -> None:
        await self.check_once()
        self._task = asyncio.create_task(self._loop(), name="health-monitor")

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await self.check_once()
            except Exception:
                log.exception("health check failed")

    async def drain(self) -> None:
        """Everything NOT_SERVING, and no more checks: load balancers stop sending new calls."""
        self._draining = True
        await self.stop()
        await self._servicer.enter_graceful_shutdown()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
