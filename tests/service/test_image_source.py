"""The one image-source resolver of the use cases: content first, then a URL through the fetcher, then a data URI;
and the errors for a URL with URL sources off and for a request with no image."""

from __future__ import annotations

import base64

import pytest

from service.domain import ImageRequest
from service.errors import InvalidArgumentError
from service.image_source import image_bytes

PNG = b"\x89PNG\r\n\x1a\n fake"


class RecordingFetcher:
    def __init__(self, answer: bytes = b"fetched") -> None:
        self.answer = answer
        self.fetched: list[tuple[str, str]] = []

    async def fetch(self, url: str, *, field: str = "source") -> bytes:
        self.fetched.append((url, field))
        return self.answer


async def test_content_wins_over_a_source() -> None:
    fetcher = RecordingFetcher()
    assert await image_bytes(ImageRequest(content=PNG, source="https://example.org/a.png"), fetcher) == PNG
    assert fetcher.fetched == []


async def test_a_url_goes_to_the_fetcher_with_the_field_to_name_in_errors() -> None:
    fetcher = RecordingFetcher(b"remote bytes")
    got = await image_bytes(ImageRequest(source="HTTPS://example.org/a.png"), fetcher)
    assert got == b"remote bytes"
    assert fetcher.fetched == [("HTTPS://example.org/a.png", "inputs[0].image.source")]


async def test_a_data_uri_is_decoded_without_the_fetcher() -> None:
    fetcher = RecordingFetcher()
    uri = "data:image/png;base64," + base64.b64encode(PNG).decode()
    assert await image_bytes(ImageRequest(source=uri), fetcher) == PNG
    assert fetcher.fetched == []


async def test_a_url_without_a_fetcher_is_refused_as_url_sources_off() -> None:
    with pytest.raises(InvalidArgumentError, match="URL sources are turned off") as caught:
        await image_bytes(ImageRequest(source="https://example.org/a.png"), None)
    assert [v.field for v in caught.value.violations] == ["inputs[0].image.source"]


async def test_a_request_with_neither_content_nor_source_names_the_image_field() -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        await image_bytes(ImageRequest(), RecordingFetcher())
    assert [v.field for v in caught.value.violations] == ["inputs[0].image"]
