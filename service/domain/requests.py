"""What a client asks to run, and on what: the target (a specification or a version, as an organisation sees
it), one image input with its optional crop, and the bounds of a list page. Shared by the transports and the
use cases."""

from __future__ import annotations

from dataclasses import dataclass

from service.errors import InvalidArgumentError

MAX_PAGE = 1000
DEFAULT_PAGE = 100


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


def page_bounds(offset: int, limit: int) -> tuple[int, int]:
    """(offset, limit) of a list page from a request's: limit 0 is the default, 100; at most ``MAX_PAGE``."""
    if offset < 0:
        raise InvalidArgumentError.field("offset", f"must not be negative, got {offset}")
    if limit < 0 or limit > MAX_PAGE:
        raise InvalidArgumentError.field("limit", f"must be between 0 and {MAX_PAGE}, got {limit}")
    return offset, limit or DEFAULT_PAGE
