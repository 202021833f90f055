"""All configuration, from ``SIGHTLINE_*`` environment variables (or arguments in tests)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["BUNDLED_REPOSITORY", "Settings"]

BUNDLED_REPOSITORY = Path(__file__).resolve().parent.parent / "model_repository"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SIGHTLINE_", extra="ignore")

    host: str = "127.0.0.1"
    """The address the gRPC server binds; ``0.0.0.0`` or ``[::]`` to serve other machines."""

    port: int = Field(50051, ge=0, le=65535)
    """The gRPC port; 0 picks a free one (tests)."""

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

    max_message_bytes: int = Field(32 * 1024 * 1024, ge=1024)
    """Largest gRPC message accepted or sent (an encoded image travels in one)."""

    max_image_pixels: int = Field(40_000_000, ge=1)
    """Largest decoded image (width x height); larger ones are refused with RESOURCE_EXHAUSTED."""

    max_pending_tasks: int = Field(256, ge=1)
    """Asynchronous inference tasks running at once; more are refused with RESOURCE_EXHAUSTED."""

    max_kept_tasks: int = Field(10_000, ge=1)
    """Finished tasks kept for GetTask; the oldest are forgotten first."""

    log_level: str = "INFO"
    log_json: bool = False
    """Log one JSON object per line instead of text."""

    @property
    def triton_dir(self) -> Path:
        return self.data_dir / "triton"

    @property
    def user_repository(self) -> Path:
        """The writable Triton model repository (uploaded networks)."""
        return self.data_dir / "models"
