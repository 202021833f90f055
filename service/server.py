"""The composition root: builds everything from one ``Settings`` and owns start-up and shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from service._proto.sightline.v1 import (
    networks_pb2,
    networks_pb2_grpc,
    recognition_pb2,
    recognition_pb2_grpc,
    tasks_pb2,
    tasks_pb2_grpc,
)
from service.api.servicers.networks import NetworkServicer
from service.api.servicers.recognition import RecognitionServicer
from service.api.servicers.tasks import TaskServicer
from service.catalog import Catalog
from service.recognition import RecognitionResult, Recognizer
from service.settings import Settings
from service.streams import StreamRunner
from service.tasks import TaskRunner
from service.triton.embedded import EmbeddedTriton
from service.triton.gateway import GrpcTritonGateway

__all__ = ["SERVICE_NAMES", "Application", "running", "serve"]

log = logging.getLogger(__name__)

SERVICE_NAMES = (
    recognition_pb2.DESCRIPTOR.services_by_name["RecognitionService"].full_name,
    networks_pb2.DESCRIPTOR.services_by_name["NetworkService"].full_name,
    tasks_pb2.DESCRIPTOR.services_by_name["TaskService"].full_name,
)


@dataclass
class Application:
    """A started service: its gRPC server, bound port and the parts it must close."""

    server: grpc.aio.Server
    port: int
    gateway: GrpcTritonGateway
    tasks: TaskRunner[RecognitionResult]
    streams: StreamRunner
    health: health.aio.HealthServicer
    triton: EmbeddedTriton | None = None

    async def stop(self, grace_s: float = 5.0) -> None:
        for name in ("", *SERVICE_NAMES):
            await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.server.stop(grace_s)
        await self.tasks.close()
        await self.gateway.close()
        if self.triton is not None:
            await self.triton.stop()


async def start(settings: Settings) -> Application:
    """Start Triton (embedded unless ``triton_url`` is set), then the gRPC server on ``settings.port``."""
    catalog = Catalog.load(settings.model_repository)
    triton: EmbeddedTriton | None = None
    url = settings.triton_url
    if not url:
        settings.user_repository.mkdir(parents=True, exist_ok=True)
        triton = EmbeddedTriton(
            [settings.model_repository.resolve(), settings.user_repository.resolve()],
            settings.triton_dir,
            log_verbose=settings.triton_log_verbose,
        )
        url = await triton.start(timeout_s=settings.triton_startup_timeout_s)
    try:
        return await _start_server(settings, catalog, url, triton)
    except BaseException:
        if triton is not None:
            await triton.stop()
        raise


async def _start_server(settings: Settings, catalog: Catalog, url: str, triton: EmbeddedTriton | None) -> Application:
    gateway = GrpcTritonGateway(url, timeout_s=settings.triton_timeout_s)
    tasks: TaskRunner[RecognitionResult] = TaskRunner(
        max_pending=settings.max_pending_tasks, max_kept=settings.max_kept_tasks
    )
    recognizer = Recognizer(
        catalog, gateway, max_image_pixels=settings.max_image_pixels, triton_timeout_s=settings.triton_timeout_s
    )
    options = [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
    ]
    server = grpc.aio.server(options=options)
    streams = StreamRunner(recognizer, max_image_pixels=settings.max_image_pixels)
    recognition_pb2_grpc.add_RecognitionServiceServicer_to_server(
        RecognitionServicer(catalog, recognizer, tasks, streams), server
    )
    networks_pb2_grpc.add_NetworkServiceServicer_to_server(NetworkServicer(catalog), server)
    tasks_pb2_grpc.add_TaskServiceServicer_to_server(TaskServicer(tasks), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (*SERVICE_NAMES, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
        server,
    )
    port = server.add_insecure_port(f"{settings.host}:{settings.port}")
    if port == 0:
        raise OSError(f"could not bind {settings.host}:{settings.port}")
    await server.start()
    for name in ("", *SERVICE_NAMES):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info("Sightline serves on %s:%d (Triton at %s)", settings.host, port, url)
    return Application(server, port, gateway, tasks, streams, health_servicer, triton)


@contextlib.asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[Application]:
    """A started application, stopped on exit (tests and the CLI)."""
    app = await start(settings)
    try:
        yield app
    finally:
        await app.stop()


async def serve(settings: Settings, *, on_ready: asyncio.Event | None = None) -> None:
    """Serve until SIGINT or SIGTERM, then drain and stop Triton."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with running(settings):
        if on_ready is not None:
            on_ready.set()
        await stop.wait()
        log.info("stopping")
