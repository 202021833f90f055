"""What a client asks to run, and on what: the target (a specification or a version, as an organisation sees
it) and one image input with its optional crop. Shared by the transports and the use cases."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Target:
    """What to run: a specification (its current version) or a version, as seen by an organisation (which sees
    the public models and its own)."""

    spec_id: str = ""
    version_id: str = ""
    organisation: str = "local"


@dataclass(frozen=True, slots=True)
class ImageRequest:
    """One image input: ``content`` (encoded bytes) or ``source`` (a data: URI or a URL), and an optional crop
    (a normalised bbox xmin, ymin, xmax, ymax or a polygon, origin at the top-left corner)."""

    content: bytes = b""
    source: str = ""
    bbox: tuple[float, float, float, float] | None = None
    polygon: tuple[tuple[float, float], ...] = ()
    crop_uniform_background: bool = False
