"""All configuration, from ``SIGHTLINE_*`` environment variables (or arguments in tests)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from service.errors import ConfigurationError

__all__ = ["BUNDLED_REPOSITORY", "Settings", "load_settings"]

_PREFIX = "SIGHTLINE_"

_SOURCE_TREE_REPOSITORY = Path(__file__).resolve().parent.parent / "model_repository"
_PACKAGED_REPOSITORY = Path(__file__).resolve().parent / "model_repository"  # what a wheel carries (setup.py)
BUNDLED_REPOSITORY = _SOURCE_TREE_REPOSITORY if _SOURCE_TREE_REPOSITORY.is_dir() else _PACKAGED_REPOSITORY
"""The public models: the source tree's ``model_repository/``, or the copy an installed wheel holds."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=_PREFIX, extra="ignore")

    host: str = "127.0.0.1"
    """The address the gRPC server binds; ``0.0.0.0`` or ``[::]`` to serve other machines."""

    port: int = Field(50051, ge=0, le=65535)
    """The gRPC port; 0 picks a free one (tests)."""

    rest_port: int = Field(-1, ge=-1, le=65535)
    """The port of the v0.7 REST facade (HTTP/1.1 JSON, for clients of the original API), on ``host`` beside gRPC
    and with the same TLS files; -1 (the default) turns it off, 0 picks a free port (tests)."""

    data_dir: Path = Path(".sightline")
    """Writable state: the uploaded-model repository, the embedded Triton's work folder and log."""

    model_repository: Path = BUNDLED_REPOSITORY
    """The bundled, read-only Triton model repository whose ``sightline.json`` files are the public models."""

    triton_url: str = ""
    """A remote Triton's gRPC address (``host:8001``), e.g. on a GPU host. Empty: start the embedded Triton."""

    triton_timeout_s: float = Field(30.0, gt=0)
    """Deadline of one call to Triton."""

    triton_startup_timeout_s: float = Field(300.0, gt=0)
    """How long the embedded Triton may take to load every model."""

    triton_log_verbose: int = Field(0, ge=0)
    """The embedded Triton's ``--log-verbose`` level."""

    triton_cpu_threads: int = Field(1, ge=1)
    """ONNX Runtime threads per run of a model in the embedded Triton, for models whose ``config.pbtxt`` does not
    set ``intra_op_thread_count``. 1 serves the most frames per second when Triton shares the cores with the service
    (docs/operations.md); more lowers one request's latency on idle cores (efficientnet-lite0 alone: 8.6 ms with
    one, 5.3 ms with two). A remote Triton has its own."""

    triton_shared_memory: str = Field("auto", pattern="^(auto|on|off)$")
    """Tensors to and from Triton through its system shared memory (regions in ``/dev/shm``) instead of inside the
    gRPC messages: ``auto`` (on with the embedded Triton, off with ``triton_url``), ``on`` (also a remote Triton on
    this host that shares its ``/dev/shm``, e.g. a sidecar container with the same memory volume), ``off``. When
    Triton cannot map the regions (it is on another host), calls go in-band from the first one; the log says why,
    once."""

    triton_shared_memory_max_bytes: int = Field(512 * 1024 * 1024, ge=0)
    """Most bytes of shared-memory regions the service keeps (one region a call in Triton, sized to its tensors);
    calls beyond it go in-band. Each region is as large as one call's inputs and fixed-size outputs (5 MB for one
    3x640x640 float32 image)."""

    triton_batch_max: int = Field(8, ge=1)
    """Most images of one Triton request made of concurrent one-image calls of a batched model (frames of several
    streams, or of one stream with ``max_in_flight`` above 1), also capped by the model's ``max_batch_size``; 1
    sends every call alone. A call waits only while an earlier request of its model is in Triton
    (``service/triton/batching.py``)."""

    triton_batch_concurrency: int = Field(2, ge=1)
    """Requests of one kind (model, input shapes) that may be in Triton at once before further calls wait to be
    batched: 2 keeps Triton busy while one answer comes back (measured better than 1, docs/performance.md)."""

    max_message_bytes: int = Field(32 * 1024 * 1024, ge=1024)
    """Largest gRPC message accepted or sent (an encoded image travels in one)."""

    max_image_pixels: int = Field(40_000_000, ge=1)
    """Largest decoded image (width x height); larger ones are refused with RESOURCE_EXHAUSTED."""

    decode_budget_pixels: int = Field(120_000_000, ge=1)
    """Pixels being decoded at once, over all calls and streams (about 4 bytes of memory each while decoding; by
    default three images of the largest size). A decode that would exceed it waits up to 2 s, then is refused with
    RESOURCE_EXHAUSTED and a retry delay; one image larger than the whole budget is still decoded, alone."""

    max_pending_tasks: int = Field(256, ge=1)
    """Asynchronous inference tasks running at once; more are refused with RESOURCE_EXHAUSTED."""

    max_kept_tasks: int = Field(10_000, ge=1)
    """Finished tasks kept for GetTask; the oldest are forgotten first."""

    task_stale_after_s: float = Field(600.0, gt=0)
    """An inference task still pending after this long, and not running in the replica that reads it, is answered
    (and recorded) as an error: the replica that ran it stopped. Inference is bounded by the Triton and URL
    timeouts, far below this."""

    log_level: str = "INFO"
    """The root logger's level (``DEBUG``, ``INFO``, ``WARNING`` ...); health and reflection calls are logged at
    DEBUG."""

    log_json: bool = False
    """Log one JSON object per line instead of text."""

    metrics_port: int = Field(9464, ge=-1, le=65535)
    """Prometheus metrics over HTTP on this port (``/metrics``); -1 turns them off, 0 picks a free port."""

    metrics_host: str = "127.0.0.1"
    """The address the metrics endpoint binds."""

    otel_exporter: str = Field("", pattern="^(|console|otlp)$")
    """Where OpenTelemetry spans go: "" (nowhere; trace context is still passed on), "console", or "otlp"
    (needs the opentelemetry-exporter-otlp package; configured by the standard OTEL_EXPORTER_OTLP_* variables)."""

    health_interval_s: float = Field(2.0, gt=0)
    """How often Triton and each model are checked for the health service."""

    drain_grace_s: float = Field(20.0, ge=0)
    """On SIGTERM: the whole drain, the embedded Triton's stop included, takes at most this long; calls still open
    near its end are answered UNAVAILABLE."""
    drain_delay_s: float = Field(0.0, ge=0)
    """On SIGTERM: how long the listener stays open after health turns NOT_SERVING (part of the grace), so that
    Envoy's and Kubernetes' health checks see NOT_SERVING before connections are refused."""

    keepalive_time_s: float = Field(30.0, gt=0)
    """Server keepalive pings on idle connections (meshes and load balancers drop silent ones)."""

    keepalive_timeout_s: float = Field(10.0, gt=0)
    """How long a keepalive ping may go unanswered before the connection is closed."""

    max_connection_age_s: float = Field(0.0, ge=0)
    """Close connections older than this (with a grace of ``max_connection_age_grace_s``) so that clients
    spread over new replicas; 0 for never."""

    max_connection_age_grace_s: float = Field(30.0, ge=0)
    """How long calls on a connection past ``max_connection_age_s`` may go on before it is closed."""

    grpc_stream_window_bytes: int = Field(1024 * 1024, ge=0)
    """HTTP/2 flow-control window of each incoming gRPC call, in bytes: what a client may send on one call beyond
    what the service has read. A value turns gRPC's bandwidth-delay probing off and fixes the window, so that a
    stream the service stops reading (its admission window full) holds at most this many bytes of unread frames in
    gRPC's buffers, plus the message being received: the memory bound of docs/performance.md (P4). It also caps one
    call's upload rate at about this many bytes per round trip (1 MiB over 20 ms: 50 MB/s). 0: gRPC's default, whose
    probing grows each window with the link (several MB a stream on loopback, not bounded by the service)."""

    tls_cert_file: Path | None = None
    """PEM certificate chain of the server; with ``tls_key_file``, the gRPC port speaks TLS."""

    tls_key_file: Path | None = None
    """PEM private key of ``tls_cert_file``."""

    tls_client_ca_file: Path | None = None
    """PEM CA bundle: clients must present a certificate it signed (mutual TLS)."""

    url_enabled: bool = True
    """Accept ``http(s)://`` image sources (v0.7), fetched through the guard of ``service/sources.py``."""

    url_allow: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Comma-separated hosts, ``*.domain`` names, addresses or CIDRs that URL image sources may reach although they
    are private, loopback or link-local (e.g. ``10.0.0.0/8,minio.internal``)."""

    url_max_bytes: int = Field(20 * 1024 * 1024, ge=1)
    """Largest image fetched from a URL."""

    url_timeout_s: float = Field(10.0, gt=0)
    """Time for a whole URL fetch, redirects included."""

    url_max_redirects: int = Field(3, ge=0)
    """Most redirects a URL fetch follows (each one checked against the address guard again)."""

    database_url: str = ""
    """The registry's database: empty for SQLite in ``<data_dir>/sightline.db``; ``sqlite:///path/file.db``; or a
    PostgreSQL DSN (``postgresql://user:password@host:5432/sightline``) for several replicas."""

    database_pool_size: int = Field(8, ge=1)
    """PostgreSQL connections per replica."""

    models_dir: Path | None = None
    """The writable Triton model repository of uploaded networks; default ``<data_dir>/models``. With a remote
    Triton it must be the same folder that Triton serves (a shared volume), mounted at the same contents."""

    model_name_prefix: str = Field("net-", pattern=r"^[a-z][a-z0-9-]{0,30}$")
    """Triton model names of uploaded networks are this prefix and the network id (``net-12``). Sightline
    deployments sharing one Triton and one repository need prefixes of their own."""

    max_upload_bytes: int = Field(2 * 1024 * 1024 * 1024, ge=1)
    """Largest network upload (all files together); larger ones are refused with RESOURCE_EXHAUSTED."""

    max_upload_files: int = Field(16, ge=1)
    """Most files in one network upload."""

    model_max_batch_size: int = Field(32, ge=1)
    """``max_batch_size`` written in the configuration of an uploaded network that takes any batch size."""

    model_load_timeout_s: float = Field(300.0, gt=0)
    """How long Triton may take to load an uploaded network."""

    tf_python: Path | None = None
    """The interpreter of the TensorFlow environment (``.venv-tf/bin/python``, built by ``make tf-env``; ``make run
    TF=1`` builds it and sets this) that converts uploaded TensorFlow networks to ONNX in a subprocess; a relative
    path is taken from the working folder at start-up. Unset: TensorFlow uploads are refused with
    FAILED_PRECONDITION (Caffe and ONNX uploads need nothing more); the start-up log says which."""

    tf_timeout_s: float = Field(600.0, gt=0)
    """Longest a TensorFlow conversion may run (the CreateNetwork call waits for it); the converter is stopped
    beyond it and the upload refused."""

    auth: str = Field("auto", pattern="^(auto|on|off)$")
    """API keys: ``on`` (every call but health and reflection needs a key), ``off`` (local development: every caller
    acts as the admin of organisation ``local``), ``auto`` (off when ``host`` is a loopback address, else on)."""

    auth_cache_s: float = Field(10.0, ge=0)
    """How long a checked API key is remembered; a revoked key stops working within this time."""

    @field_validator("tf_python")
    @classmethod
    def _absolute_tf_python(cls, value: Path | None) -> Path | None:
        # Absolute, so that the converter subprocess finds it whatever its working folder; not resolved: a
        # virtual environment's python is a symbolic link whose own path selects the environment.
        return None if value is None else value.expanduser().absolute()

    @field_validator("url_allow", mode="before")
    @classmethod
    def _split_allow(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @property
    def triton_dir(self) -> Path:
        return self.data_dir / "triton"

    @property
    def user_repository(self) -> Path:
        """The writable Triton model repository (uploaded networks)."""
        return self.models_dir if self.models_dir is not None else self.data_dir / "models"

    @property
    def staging_dir(self) -> Path:
        """Where uploads are written and checked before they move into ``user_repository`` (one rename)."""
        return self.data_dir / "staging"

    @property
    def shared_memory_enabled(self) -> bool:
        """Whether the gateway tries Triton's system shared memory (``triton_shared_memory``)."""
        if self.triton_shared_memory != "auto":
            return self.triton_shared_memory == "on"
        return not self.triton_url

    @property
    def auth_enabled(self) -> bool:
        if self.auth != "auto":
            return self.auth == "on"
        return self.host not in {"127.0.0.1", "::1", "[::1]", "localhost"}


def load_settings(**overrides: Any) -> Settings:
    """The settings from the environment, ``overrides`` (by field name: the command's flags) winning over it.

    Raises:
        ConfigurationError: a value fails its field's rule; one line per bad value, each naming its variable
            (or, for an override, its flag), the value given and the rule.
    """
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else ""
            name = f"--{field.replace('_', '-')}" if field in overrides else f"{_PREFIX}{field.upper()}"
            lines.append(f"{name}={error.get('input')!r}: {error['msg']}")
        raise ConfigurationError("\n".join(lines)) from None
