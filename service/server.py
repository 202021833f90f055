"""The composition root: builds everything from one ``Settings`` and owns start-up, drain and shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import ssl
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from prometheus_client import start_http_server

from service._proto.sightline.v1 import (
    networks_pb2,
    networks_pb2_grpc,
    recognition_pb2,
    recognition_pb2_grpc,
    tasks_pb2,
    tasks_pb2_grpc,
)
from service.api.auth import AuthInterceptor
from service.api.health import HealthServicer
from service.api.lifecycle import CallLifecycle
from service.api.observability import ObservabilityInterceptor
from service.api.reflection import enable_reflection
from service.api.rest import RestRoutes, RestServer
from service.api.servicers.networks import NetworkServicer
from service.api.servicers.recognition import RecognitionServicer
from service.api.servicers.tasks import TaskServicer
from service.auth import Authenticator
from service.catalog import Catalog
from service.convert import ConverterOptions
from service.domain.results import TaskData
from service.errors import ConfigurationError, StorageFullError, as_domain_error
from service.health import HealthMonitor
from service.images import DecodeBudget
from service.inference_tasks import InferenceTasks
from service.observability import Metrics
from service.preflight import DataFolderLock, check_settings
from service.recognition import Recognizer
from service.registry import Registry, UploadLimits, reconcile
from service.settings import Settings
from service.sources import UrlFetcher
from service.store import Store, open_store
from service.streams import StreamRunner
from service.tasks import TaskRunner, decode_result, encode_result
from service.triton.batching import BatchingGateway
from service.triton.embedded import EmbeddedTriton
from service.triton.gateway import GrpcTritonGateway
from service.triton.repository import ModelRepository
from service.triton.shared_memory import process_prefix

__all__ = ["SERVICE_NAMES", "Application", "running", "serve", "serve_in_thread", "start"]

log = logging.getLogger(__name__)

_TRITON_STOP_RESERVE_S = 3.0
"""The part of the drain grace kept for stopping the embedded Triton."""

SERVICE_NAMES = (
    recognition_pb2.DESCRIPTOR.services_by_name["RecognitionService"].full_name,
    networks_pb2.DESCRIPTOR.services_by_name["NetworkService"].full_name,
    tasks_pb2.DESCRIPTOR.services_by_name["TaskService"].full_name,
)


@dataclass
class Application:
    """A started service: its gRPC server, bound port and the parts it must drain and close."""

    server: grpc.aio.Server
    port: int
    gateway: GrpcTritonGateway
    tasks: TaskRunner[TaskData]
    streams: StreamRunner
    store: Store
    registry: Registry
    health: HealthMonitor
    metrics: Metrics
    tracer_provider: TracerProvider
    data_lock: DataFolderLock
    metrics_port: int | None = None
    metrics_server: Any = None
    triton: EmbeddedTriton | None = None
    lifecycle: CallLifecycle = field(default_factory=CallLifecycle)
    rest: RestServer | None = None
    """The v0.7 REST facade, when ``rest_port`` turns it on; ``rest.port`` is its bound port."""

    async def stop(self, grace_s: float = 5.0, *, delay_s: float = 0.0) -> None:
        """Drain within ``grace_s`` seconds, Triton included.

        Health turns NOT_SERVING at once (``""`` too) while the listener stays open for ``delay_s`` more, so that
        load balancers see it before connections are refused; then new calls are answered UNAVAILABLE (REST: 503),
        streams
        stop reading and answer the frames they hold, and open calls may finish until a reserve for stopping the
        embedded Triton is left, when those still open are aborted with UNAVAILABLE. Then the tasks, the Triton
        client, the store and the embedded Triton are closed.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_s
        await self.health.drain()
        if delay_s > 0:
            await asyncio.sleep(min(delay_s, grace_s))
        self.lifecycle.refuse_new()
        if self.rest is not None:
            self.rest.refuse_new()
        self.streams.drain()
        reserve = min(_TRITON_STOP_RESERVE_S, grace_s / 4) if self.triton is not None else 0.0
        calls_deadline = deadline - reserve
        # gRPC's own grace is only a backstop: the calls are ended below, with UNAVAILABLE rather than CANCELLED.
        stopping = asyncio.create_task(self.server.stop(max(0.0, calls_deadline - loop.time()) + 1.0))
        settling = [self.lifecycle.settle(calls_deadline - loop.time())]
        if self.rest is not None:
            settling.append(self.rest.settle(calls_deadline - loop.time()))
        await asyncio.gather(*settling)
        await self.lifecycle.expire()
        await stopping
        if self.rest is not None:
            await self.rest.stop()
        await self.tasks.close()
        # Requests abandoned in Triton (never cancelled, see the gateway) may end first, within the budget.
        await self.gateway.close(timeout_s=max(0.0, min(2.0, deadline - reserve / 2 - loop.time())))
        await self.store.close()
        if self.triton is not None:
            await self.triton.stop(max(0.5, deadline - loop.time()))
        if self.metrics_server is not None:
            self.metrics_server.shutdown()
            self.metrics_server.server_close()
        self.tracer_provider.shutdown()
        self.data_lock.release()


def _tracer_provider(settings: Settings) -> TracerProvider:
    provider = TracerProvider()
    exporter: SpanExporter | None = None
    if settings.otel_exporter == "console":
        exporter = ConsoleSpanExporter()
    elif settings.otel_exporter == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        except ImportError:
            raise ConfigurationError(
                "SIGHTLINE_OTEL_EXPORTER='otlp' needs the opentelemetry-exporter-otlp package: install it, or give "
                "'console' or '' (no exporter)"
            ) from None
        exporter = OTLPSpanExporter()
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def _server_options(settings: Settings) -> list[tuple[str, Any]]:
    options: list[tuple[str, Any]] = [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        ("grpc.keepalive_time_ms", int(settings.keepalive_time_s * 1000)),
        ("grpc.keepalive_timeout_ms", int(settings.keepalive_timeout_s * 1000)),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 5000),
        # gRPC's default lets a second server bind the same port and take half the connections.
        ("grpc.so_reuseport", 0),
    ]
    if settings.grpc_stream_window_bytes:
        # With BDP probing on, gRPC sizes each stream's window itself and ignores the lookahead (grpc/grpc#14252).
        options += [
            ("grpc.http2.bdp_probe", 0),
            ("grpc.http2.lookahead_bytes", settings.grpc_stream_window_bytes),
        ]
    if settings.max_connection_age_s:
        options += [
            ("grpc.max_connection_age_ms", int(settings.max_connection_age_s * 1000)),
            ("grpc.max_connection_age_grace_ms", int(settings.max_connection_age_grace_s * 1000)),
        ]
    return options


def _ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The REST facade's TLS, from the same files as gRPC's; building it checks them (``_tls``)."""
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigurationError(
            f"SIGHTLINE_TLS_CERT_FILE={str(settings.tls_cert_file)!r} and SIGHTLINE_TLS_KEY_FILE="
            f"{str(settings.tls_key_file)!r}: not a PEM certificate chain and its private key ({exc})"
        ) from None
    if settings.tls_client_ca_file is not None:
        try:
            context.load_verify_locations(settings.tls_client_ca_file)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigurationError(
                f"SIGHTLINE_TLS_CLIENT_CA_FILE={str(settings.tls_client_ca_file)!r}: not PEM CA certificates ({exc})"
            ) from None
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def _tls(settings: Settings) -> tuple[grpc.ServerCredentials | None, ssl.SSLContext | None]:
    """gRPC's server credentials and the REST facade's context, from the same files, or ``(None, None)``.

    The context is built after the files are read: it parses them, where gRPC takes any bytes and fails only at the
    bind, saying why in its log alone."""
    if settings.tls_cert_file is None and settings.tls_key_file is None:
        if settings.tls_client_ca_file is not None:
            raise ConfigurationError(
                "SIGHTLINE_TLS_CLIENT_CA_FILE needs SIGHTLINE_TLS_CERT_FILE and SIGHTLINE_TLS_KEY_FILE"
            )
        return None, None
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        raise ConfigurationError("TLS needs both SIGHTLINE_TLS_CERT_FILE and SIGHTLINE_TLS_KEY_FILE")
    key = _read("SIGHTLINE_TLS_KEY_FILE", settings.tls_key_file)
    cert = _read("SIGHTLINE_TLS_CERT_FILE", settings.tls_cert_file)
    ca = _read("SIGHTLINE_TLS_CLIENT_CA_FILE", settings.tls_client_ca_file) if settings.tls_client_ca_file else None
    context = _ssl_context(settings)
    credentials = grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=ca is not None)
    return credentials, context


def _read(setting: str, path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"{setting}={str(path)!r}: cannot read it ({exc.strerror or exc})") from None


def _shm_prefix(settings: Settings, triton: EmbeddedTriton | None) -> Callable[[], str | None] | None:
    """The gateway's shared-memory region prefix (``None``: in-band only), and the log line that says which."""
    if not settings.shared_memory_enabled:
        why = "a remote Triton" if settings.triton_url and settings.triton_shared_memory == "auto" else "off"
        log.info(
            "tensors go to Triton in-band (SIGHTLINE_TRITON_SHARED_MEMORY=%s: %s)", settings.triton_shared_memory, why
        )
        return None
    log.info(
        "tensors go to Triton through its system shared memory (SIGHTLINE_TRITON_SHARED_MEMORY=%s)",
        settings.triton_shared_memory,
    )
    if triton is not None:
        # The reaper's prefix: it removes the regions whenever that Triton ends, the service's SIGKILL included.
        return lambda: triton.shm_prefix
    prefix = process_prefix()
    return lambda: prefix


async def start(settings: Settings) -> Application:
    """Start Triton (embedded unless ``triton_url`` is set), then the gRPC server on ``settings.port``."""
    check_settings(settings)
    credentials, ssl_context = _tls(settings)
    catalog = Catalog.load(settings.model_repository)
    provider = _tracer_provider(settings)
    lock = DataFolderLock(settings.data_dir)
    repository = ModelRepository(settings.user_repository, settings.staging_dir, prefix=settings.model_name_prefix)
    store: Store | None = None
    triton: EmbeddedTriton | None = None
    try:
        store = await open_store(settings.database_url, settings.data_dir, pool_size=settings.database_pool_size)
        settings.user_repository.mkdir(parents=True, exist_ok=True)
        # Before the embedded Triton starts, so that it never loads what a stopped upload left behind.
        await reconcile(store, repository)
        url = settings.triton_url
        if not url:
            triton = EmbeddedTriton(
                [settings.model_repository.resolve(), settings.user_repository.resolve()],
                settings.triton_dir,
                log_verbose=settings.triton_log_verbose,
                cpu_threads=settings.triton_cpu_threads,
                stop_grace_s=_TRITON_STOP_RESERVE_S,
            )
            url = await triton.start(timeout_s=settings.triton_startup_timeout_s)
        app = await _start_server(
            settings, catalog, store, repository, url, triton, credentials, ssl_context, provider, lock
        )
        if triton is not None:
            # While it is down every call gets UNAVAILABLE from the gateway; health says so at once, and again
            # SERVING once the restarted server has loaded the bundled and the uploaded networks.
            triton.supervise(on_down=app.health.triton_down, on_up=app.health.check_once)
        return app
    except BaseException as exc:
        if triton is not None:
            await triton.stop()
        if store is not None:
            await store.close()
        provider.shutdown()
        lock.release()
        if isinstance(full := as_domain_error(exc), StorageFullError):
            # The database's migrations, the Triton folder's backends: not a request's, so no status to give.
            raise ConfigurationError(
                f"no room to start ({full.cause}): make room where "
                f"SIGHTLINE_DATA_DIR={str(settings.data_dir)!r} (and the SIGHTLINE_DATABASE_URL's database) "
                "live, or give folders on a disk with room"
            ) from exc
        raise


async def _start_server(
    settings: Settings,
    catalog: Catalog,
    store: Store,
    repository: ModelRepository,
    url: str,
    triton: EmbeddedTriton | None,
    credentials: grpc.ServerCredentials | None,
    ssl_context: ssl.SSLContext | None,
    provider: TracerProvider,
    lock: DataFolderLock,
) -> Application:
    metrics = Metrics()
    tracer = provider.get_tracer("sightline")
    gateway = GrpcTritonGateway(
        url,
        timeout_s=settings.triton_timeout_s,
        metrics=metrics,
        tracer=tracer,
        shared_memory=_shm_prefix(settings, triton),
        shm_max_bytes=settings.triton_shared_memory_max_bytes,
    )
    tasks: TaskRunner[TaskData] = TaskRunner(
        store,
        encode=encode_result,
        decode=decode_result,
        max_pending=settings.max_pending_tasks,
        max_kept=settings.max_kept_tasks,
        prune_every=100,
        stale_after_s=settings.task_stale_after_s,
    )
    fetcher = (
        UrlFetcher(
            max_bytes=settings.url_max_bytes,
            timeout_s=settings.url_timeout_s,
            max_redirects=settings.url_max_redirects,
            allow=settings.url_allow,
        )
        if settings.url_enabled
        else None
    )
    decode_budget = DecodeBudget(settings.decode_budget_pixels)  # one budget for every decode of the process
    registry_limits = UploadLimits(
        max_bytes=settings.max_upload_bytes,
        max_files=settings.max_upload_files,
        max_batch_size=settings.model_max_batch_size,
    )
    registry = Registry(
        catalog,
        store,
        repository,
        gateway,
        tasks,
        limits=registry_limits,
        load_timeout_s=settings.model_load_timeout_s,
        max_image_pixels=settings.max_image_pixels,
        decode_budget=decode_budget,
        fetcher=fetcher,
        converter=ConverterOptions(tf_python=settings.tf_python, tf_timeout_s=settings.tf_timeout_s),
    )
    recognizer = Recognizer(
        registry,
        # Recognition (streams, images, tasks) batches concurrent images; registry calls go as they are.
        BatchingGateway(
            gateway,
            max_batch=settings.triton_batch_max,
            concurrency=settings.triton_batch_concurrency,
            metrics=metrics,
        ),
        max_image_pixels=settings.max_image_pixels,
        triton_timeout_s=settings.triton_timeout_s,
        fetcher=fetcher,
        decode_budget=decode_budget,
    )
    streams = StreamRunner(recognizer, metrics=metrics)
    metrics.tasks_pending.set_function(lambda: tasks.pending)
    metrics.triton_in_flight.set_function(lambda: gateway.in_flight)

    authenticator = Authenticator(store, enabled=settings.auth_enabled, cache_s=settings.auth_cache_s)
    if not authenticator.enabled:
        log.warning(
            "API keys are off (SIGHTLINE_AUTH=%s, host %s): every caller acts as the admin of organisation 'local'",
            settings.auth,
            settings.host,
        )
    health_servicer = HealthServicer(
        authenticator, registry, gateway, repository.model_name, interval_s=settings.health_interval_s
    )
    monitor = HealthMonitor(
        health_servicer,
        gateway,
        SERVICE_NAMES,
        [n.id for n in catalog.networks()],
        interval_s=settings.health_interval_s,
        process_follows_triton=triton is not None,
    )
    inference = InferenceTasks(recognizer, registry, tasks, triton_ready=lambda: monitor.triton_reachable)
    lifecycle = CallLifecycle()
    server = grpc.aio.server(
        interceptors=[lifecycle, ObservabilityInterceptor(metrics, tracer), AuthInterceptor(authenticator)],
        options=_server_options(settings),
    )
    recognition_pb2_grpc.add_RecognitionServiceServicer_to_server(
        RecognitionServicer(registry, recognizer, inference, streams), server
    )
    networks_pb2_grpc.add_NetworkServiceServicer_to_server(NetworkServicer(registry), server)
    tasks_pb2_grpc.add_TaskServiceServicer_to_server(TaskServicer(tasks), server)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    enable_reflection((*SERVICE_NAMES, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name), server)
    address = f"{settings.host}:{settings.port}"
    try:
        port = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
    except RuntimeError:  # grpcio raises this when the address cannot be bound
        port = 0
    if port == 0:
        raise ConfigurationError(
            f"could not listen on {address}: the port is in use (another sightline serve?) or the address is not "
            "this machine's; set SIGHTLINE_PORT / SIGHTLINE_HOST"
        )
    await monitor.start()
    await registry.resume()
    await server.start()
    metrics_server, metrics_port = None, None
    rest = None
    try:
        if settings.metrics_port >= 0:
            metrics_server, _ = start_http_server(
                settings.metrics_port, settings.metrics_host, registry=metrics.registry
            )
            metrics_port = int(metrics_server.server_port)
            log.info("metrics on http://%s:%d/metrics", settings.metrics_host, metrics_port)
        log.info("listening on %s:%d%s (Triton at %s)", settings.host, port, " with TLS" if credentials else "", url)
        if settings.rest_port >= 0:
            rest = RestServer(
                RestRoutes(
                    registry,
                    inference,
                    tasks,
                    max_body_bytes=settings.max_message_bytes,
                    upload_limits=registry_limits,
                    staging_dir=settings.staging_dir,
                ),
                authenticator,
                metrics,
                tracer,
                max_body_bytes=settings.max_message_bytes,
            )
            rest_port = await rest.start(settings.host, settings.rest_port, ssl_context)
            log.info("v0.7 REST API on http%s://%s:%d/v0.7/", "s" if credentials else "", settings.host, rest_port)
    except BaseException:
        # Lost a race for a port that check_settings found free: nothing of this start may keep running.
        if metrics_server is not None:
            metrics_server.shutdown()
            metrics_server.server_close()
        await server.stop(None)
        await monitor.stop()
        raise
    return Application(
        server,
        port,
        gateway,
        tasks,
        streams,
        store,
        registry,
        monitor,
        metrics,
        provider,
        lock,
        metrics_port,
        metrics_server,
        triton,
        lifecycle,
        rest,
    )


@contextlib.asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[Application]:
    """A started application, stopped on exit (tests and the CLI)."""
    app = await start(settings)
    try:
        yield app
    finally:
        await app.stop(settings.drain_grace_s, delay_s=settings.drain_delay_s)


async def serve(settings: Settings, *, on_ready: Callable[[int], None] | None = None) -> None:
    """Serve until SIGINT or SIGTERM, then drain (``drain_grace_s``) and stop Triton.

    Once every public model is loaded in Triton (at once with the embedded Triton, which starts with them; with a
    remote one at the first health check that finds them all ready) it logs one line that starts with ``ready:``
    and calls ``on_ready`` with the gRPC port it listens on (the one it picked, for port 0).
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    stopping = asyncio.create_task(stop.wait())
    starting = asyncio.create_task(start(settings))
    try:
        await asyncio.wait({stopping, starting}, return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():
            # A signal while the embedded Triton loads (minutes, at worst): stop now, not once it has loaded.
            # start()'s clean-up stops Triton and closes the store.
            log.info("stopping before the start finished")
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starting
            return
        app = starting.result()
        try:
            loaded = asyncio.create_task(app.health.models_ready.wait())
            await asyncio.wait({stopping, loaded}, return_when=asyncio.FIRST_COMPLETED)
            if loaded.done():
                models = len(app.registry.catalog.networks())
                log.info("ready: %d public models loaded, serving on %s:%d", models, settings.host, app.port)
                if on_ready is not None:
                    on_ready(app.port)
            loaded.cancel()
            await stopping
            log.info("draining (up to %.0f s)", settings.drain_grace_s)
        finally:
            await app.stop(settings.drain_grace_s, delay_s=settings.drain_delay_s)
    finally:
        stopping.cancel()
        starting.cancel()  # serve() itself cancelled during the start: the start's clean-up runs


def serve_in_thread(settings: Settings) -> tuple[Callable[[], None], int]:
    """Run the service on an event loop of its own thread (benchmarks, evaluations driving it synchronously).

    Returns ``(stop, port)``; ``stop()`` drains and waits for the thread.
    """
    ready = threading.Event()
    state: dict[str, Any] = {}

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        state["stop"] = lambda: loop.call_soon_threadsafe(stop.set)
        try:
            async with running(settings) as app:
                state["port"] = app.port
                ready.set()
                await stop.wait()
        finally:
            ready.set()

    thread = threading.Thread(target=lambda: asyncio.run(main()), name="sightline", daemon=True)
    thread.start()
    ready.wait()
    if "port" not in state:
        thread.join()
        raise RuntimeError("the service did not start; see its log")

    def stop() -> None:
        state["stop"]()
        thread.join()

    return stop, int(state["port"])
