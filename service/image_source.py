"""Where a request's image comes from: its bytes, a ``data:`` URI, or a URL fetched under guard.

One function, ``image_bytes``, for every use case that takes an ``ImageRequest`` (recognition, raw network
inference), so that they accept the same sources and answer the same errors.
"""

from __future__ import annotations

from service.domain import ImageRequest
from service.errors import InvalidArgumentError
from service.preprocess import resolve_source
from service.sources import ImageFetcher, is_url_source

__all__ = ["image_bytes"]


async def image_bytes(image: ImageRequest, fetcher: ImageFetcher | None) -> bytes:
    """The encoded bytes of a request's image: its ``content`` when set; else its ``source``, fetched through
    ``fetcher`` when it is an http(s) URL and a fetcher is given, or else decoded by ``resolve_source`` (a ``data:``
    URI; with no fetcher a URL is refused there: URL sources are off on this server).

    Raises ``InvalidArgumentError`` on the field ``inputs[0].image`` when the request has neither, and whatever the
    fetcher or ``resolve_source`` raise for a source they refuse (errors name ``inputs[0].image.source``).
    """
    if image.content:
        return image.content
    if image.source and fetcher is not None and is_url_source(image.source):
        return await fetcher.fetch(image.source, field="inputs[0].image.source")
    if image.source:
        return resolve_source(image.source)
    raise InvalidArgumentError.field("inputs[0].image", "has no image: set content or source")
