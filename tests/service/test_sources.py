"""URL sources against a real HTTP server on 127.0.0.1: limits, redirects, content types and the SSRF guard.

Only loopback traffic: every refused address is refused before any connection is attempted, and host names that
would resolve elsewhere come from a fake resolver (or a patched ``socket.getaddrinfo``).
"""

from __future__ import annotations

import asyncio
import http.server
import ipaddress
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
import numpy as np
import pytest

from service.api.errors import to_status
from service.errors import (
    DeadlineExceededError,
    InvalidArgumentError,
    PermissionDeniedError,
    ResourceExhaustedError,
    SourceUnavailableError,
)
from service.sources import AddressPolicy, UrlFetcher, forbidden_kind, is_url_source
from tests.helpers import encode

RED_PNG = encode(np.full((6, 8, 3), (230, 20, 25), dtype=np.uint8))
LIMIT = 4096


@dataclass
class Seen:
    paths: list[str] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)


class Handler(http.server.BaseHTTPRequestHandler):
    seen: Seen
    stop: threading.Event

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def _send(self, status: int, headers: dict[str, str], body: bytes = b"") -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self.seen.paths.append(self.path)
        self.seen.hosts.append(self.headers.get("Host", ""))
        path = self.path
        if path == "/red.png":
            self._send(200, {"Content-Type": "image/png", "Content-Length": str(len(RED_PNG))}, RED_PNG)
        elif path == "/big-declared":
            self._send(200, {"Content-Type": "image/png", "Content-Length": str(LIMIT * 4)}, b"\0" * (LIMIT * 4))
        elif path == "/big-unsized":
            # HTTP/1.0 without Content-Length: the body runs until the server closes.
            self._send(200, {"Content-Type": "image/png"}, b"\0" * (LIMIT * 4))
        elif path == "/slow-headers":
            self.stop.wait(5)
            self._send(200, {"Content-Type": "image/png", "Content-Length": "0"})
        elif path == "/trickle":
            self._send(200, {"Content-Type": "image/png", "Content-Length": "200"})
            for _ in range(200):
                if self.stop.wait(0.05):
                    break
                try:
                    self.wfile.write(b"\0")
                    self.wfile.flush()
                except OSError:
                    break
        elif path == "/loop":
            self._send(302, {"Location": "/loop", "Content-Length": "0"})
        elif path.startswith("/chain/"):
            left = int(path.rsplit("/", 1)[1])
            target = "/red.png" if left == 0 else f"/chain/{left - 1}"
            self._send(307, {"Location": target, "Content-Length": "0"})
        elif path == "/to-metadata":
            self._send(302, {"Location": "http://169.254.169.254/latest/meta-data/", "Content-Length": "0"})
        elif path.startswith("/to-host/"):
            self._send(301, {"Location": f"http://{path.split('/')[2]}/red.png", "Content-Length": "0"})
        elif path == "/page":
            self._send(200, {"Content-Type": "text/html", "Content-Length": "6"}, b"<html>")
        elif path == "/gzip":
            self._send(200, {"Content-Type": "image/png", "Content-Encoding": "gzip", "Content-Length": "4"}, b"abcd")
        elif path == "/busy":
            self._send(503, {"Content-Length": "0"})
        else:
            self._send(404, {"Content-Length": "0"})


@dataclass
class Server:
    port: int
    seen: Seen

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    seen = Seen()
    stop = threading.Event()
    handler = type("BoundHandler", (Handler,), {"seen": seen, "stop": stop})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield Server(httpd.server_address[1], seen)
    finally:
        stop.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


class FakeResolver:
    """Answers from a table and counts lookups; a name missing from it does not exist."""

    def __init__(self, table: dict[str, list[str] | list[list[str]]]) -> None:
        self.table = table
        self.calls: list[str] = []

    async def __call__(self, host: str, port: int) -> Sequence[str]:
        self.calls.append(host)
        answer = self.table.get(host)
        if answer is None:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        if answer and isinstance(answer[0], list):
            # A rebinding resolver: a different answer on every lookup.
            return answer[min(len(self.calls), len(answer)) - 1]
        return [a for a in answer if isinstance(a, str)]


def fetcher(allow: Sequence[str] = ("127.0.0.1",), **kwargs: Any) -> UrlFetcher:
    base: dict[str, Any] = {"max_bytes": LIMIT, "timeout_s": 2.0, "max_redirects": 2, "allow": allow}
    base.update(kwargs)
    return UrlFetcher(**base)


# --- success ---------------------------------------------------------------------------------------------------


async def test_fetches_an_image(server: Server) -> None:
    assert await fetcher().fetch(server.url("/red.png")) == RED_PNG


async def test_connects_to_the_checked_address_after_one_lookup(server: Server) -> None:
    # images.sightline.test exists only in the fake resolver, whose second answer would be private: the fetch
    # works only if the connection goes to the address of the first (checked) lookup, and there is no second one.
    resolver = FakeResolver({"images.sightline.test": [["127.0.0.1"], ["10.0.0.1"]]})
    got = await fetcher(resolver=resolver).fetch(server.url("/red.png", host="images.sightline.test"))
    assert got == RED_PNG
    assert resolver.calls == ["images.sightline.test"]
    assert server.seen.hosts[-1] == f"images.sightline.test:{server.port}"


async def test_follows_redirects_up_to_the_limit(server: Server) -> None:
    before = len(server.seen.paths)
    assert await fetcher(max_redirects=2).fetch(server.url("/chain/1")) == RED_PNG
    assert server.seen.paths[before:] == ["/chain/1", "/chain/0", "/red.png"]


# --- limits ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/big-declared", "/big-unsized"])
async def test_too_large(server: Server, path: str) -> None:
    with pytest.raises(ResourceExhaustedError, match=r"more than 4096 bytes.*SIGHTLINE_URL_MAX_BYTES"):
        await fetcher().fetch(server.url(path))


@pytest.mark.parametrize("path", ["/slow-headers", "/trickle"])
async def test_total_time_is_bounded(server: Server, path: str) -> None:
    # /trickle sends a byte every 50 ms: no single read is slow, only the whole.
    start = time.monotonic()
    with pytest.raises(DeadlineExceededError, match=r"longer than 0.4 s.*SIGHTLINE_URL_TIMEOUT_S"):
        await fetcher(timeout_s=0.4).fetch(server.url(path))
    assert time.monotonic() - start < 1.5


async def test_cancellation_propagates(server: Server) -> None:
    # A client's gRPC deadline cancels the handler: the fetch stops at once and closes its connections.
    task = asyncio.create_task(fetcher(timeout_s=5.0).fetch(server.url("/slow-headers")))
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_redirect_loop(server: Server) -> None:
    with pytest.raises(InvalidArgumentError, match="redirects more than 2 times"):
        await fetcher(max_redirects=2).fetch(server.url("/loop"))


async def test_too_many_redirects(server: Server) -> None:
    with pytest.raises(InvalidArgumentError, match="redirects more than 1 times"):
        await fetcher(max_redirects=1).fetch(server.url("/chain/1"))


async def test_no_redirects_when_the_limit_is_zero(server: Server) -> None:
    with pytest.raises(InvalidArgumentError, match="redirects more than 0 times"):
        await fetcher(max_redirects=0).fetch(server.url("/chain/0"))


# --- responses -------------------------------------------------------------------------------------------------


async def test_wrong_content_type(server: Server) -> None:
    with pytest.raises(InvalidArgumentError, match=r"served 'text/html'; a URL source must serve an image") as info:
        await fetcher().fetch(server.url("/page"))
    assert info.value.violations[0].field == "inputs[0].image.source"


async def test_compressed_body_refused(server: Server) -> None:
    with pytest.raises(InvalidArgumentError, match="Content-Encoding 'gzip'"):
        await fetcher().fetch(server.url("/gzip"))


async def test_not_found_is_the_clients_error(server: Server) -> None:
    with pytest.raises(InvalidArgumentError, match="answered 404"):
        await fetcher().fetch(server.url("/missing"), field="inputs[0].image.source")


async def test_server_errors_are_retryable(server: Server) -> None:
    with pytest.raises(SourceUnavailableError, match="answered 503") as info:
        await fetcher().fetch(server.url("/busy"))
    assert info.value.retry_after_s is not None


async def test_connection_refused_is_unavailable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(SourceUnavailableError, match="could not fetch"):
        await fetcher().fetch(f"http://127.0.0.1:{port}/red.png")


async def test_unknown_host_is_the_clients_error() -> None:
    with pytest.raises(InvalidArgumentError, match="does not exist"):
        await fetcher(resolver=FakeResolver({})).fetch("http://nowhere.sightline.test/red.png")


@pytest.mark.parametrize(
    "url", ["ftp://127.0.0.1/red.png", "file:///etc/passwd", "data:image/png;base64,AAAA", "http:///red.png", "red"]
)
async def test_only_http_urls(url: str) -> None:
    with pytest.raises(InvalidArgumentError, match="URL"):
        await fetcher().fetch(url)


@pytest.mark.parametrize("host", ["127.1", "2130706433", "0177.0.0.1"])
async def test_non_canonical_address_literals_refused(server: Server, host: str) -> None:
    before = len(server.seen.paths)
    with pytest.raises(InvalidArgumentError, match="not a valid IP address"):
        await fetcher().fetch(f"http://{host}:{server.port}/red.png")
    assert len(server.seen.paths) == before


# --- the address guard -----------------------------------------------------------------------------------------


async def test_loopback_refused_without_allow_list(server: Server) -> None:
    before = len(server.seen.paths)
    with pytest.raises(PermissionDeniedError, match=r"127\.0\.0\.1 is a loopback address.*SIGHTLINE_URL_ALLOW"):
        await fetcher(allow=()).fetch(server.url("/red.png"))
    assert len(server.seen.paths) == before


async def test_localhost_name_refused_after_resolution(server: Server) -> None:
    # The real system resolver: localhost resolves to loopback addresses, each of them refused.
    with pytest.raises(PermissionDeniedError, match=r"localhost resolves to .*loopback"):
        await fetcher(allow=()).fetch(server.url("/red.png", host="localhost"))


@pytest.mark.parametrize(
    "host",
    ["169.254.169.254", "[::ffff:169.254.169.254]", "[::ffff:127.0.0.1]", "[::1]", "[fe80::1]", "0.0.0.0"],
)
async def test_address_literals_refused(host: str) -> None:
    # Refused before any connection: none of these is ever contacted.
    with pytest.raises(PermissionDeniedError, match="SIGHTLINE_URL_ALLOW"):
        await fetcher(allow=()).fetch(f"http://{host}/latest/meta-data/")


async def test_metadata_endpoint_named_in_the_message() -> None:
    with pytest.raises(PermissionDeniedError, match=r"link-local \(cloud metadata endpoint\)"):
        await fetcher().fetch("http://169.254.169.254/latest/meta-data/")


async def test_ipv4_mapped_loopback_refused_as_loopback() -> None:
    with pytest.raises(PermissionDeniedError, match=r"loopback \(as IPv6 ::ffff:7f00:1\)"):
        await fetcher(allow=()).fetch("http://[::ffff:127.0.0.1]:8080/red.png")


async def test_redirect_to_metadata_refused(server: Server) -> None:
    with pytest.raises(PermissionDeniedError, match=r"169\.254\.169\.254 is a link-local"):
        await fetcher().fetch(server.url("/to-metadata"))


async def test_redirect_to_a_private_host_refused(server: Server) -> None:
    resolver = FakeResolver({"intranet.sightline.test": ["10.1.2.3"]})
    with pytest.raises(PermissionDeniedError, match=r"intranet.sightline.test resolves to 10\.1\.2\.3.*private"):
        await fetcher(resolver=resolver).fetch(server.url("/to-host/intranet.sightline.test"))
    assert resolver.calls == ["intranet.sightline.test"]


async def test_every_resolved_address_is_checked() -> None:
    # One public and one private answer: refused, not filtered.
    resolver = FakeResolver({"mixed.sightline.test": ["93.184.216.34", "192.168.1.10"]})
    with pytest.raises(PermissionDeniedError, match=r"192\.168\.1\.10.*private"):
        await fetcher(resolver=resolver).fetch("http://mixed.sightline.test/red.png")


async def test_system_resolver_answer_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    real = socket.getaddrinfo

    def fake_getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "db.sightline.test":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("172.20.0.5", port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)
    with pytest.raises(PermissionDeniedError, match=r"db.sightline.test resolves to 172\.20\.0\.5, which is a private"):
        await fetcher().fetch("http://db.sightline.test/red.png")


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("::1", "loopback"),
        ("10.0.0.1", "private"),
        ("172.31.255.255", "private"),
        ("192.168.0.1", "private"),
        ("fd12:3456::1", "private"),
        ("169.254.169.254", "link-local (cloud metadata endpoint)"),
        ("fd00:ec2::254", "link-local (cloud metadata endpoint)"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("100.64.0.1", "carrier-grade NAT (100.64.0.0/10)"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "reserved (not publicly routable)"),
        ("255.255.255.255", "reserved (not publicly routable)"),
        ("192.0.2.1", "reserved (not publicly routable)"),
        ("::ffff:10.0.0.1", "private (as IPv6 ::ffff:a00:1)"),
        ("::ffff:169.254.169.254", "link-local (cloud metadata endpoint) (as IPv6 ::ffff:a9fe:a9fe)"),
        ("2002:a00:1::1", "private (as IPv6 2002:a00:1::1)"),
        ("64:ff9b::7f00:1", "loopback (as IPv6 64:ff9b::7f00:1)"),
    ],
)
def test_forbidden_kinds(address: str, kind: str) -> None:
    assert forbidden_kind(ipaddress.ip_address(address)) == kind


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_pass(address: str) -> None:
    assert forbidden_kind(ipaddress.ip_address(address)) is None


def test_allow_list_networks_hosts_and_domains() -> None:
    policy = AddressPolicy.parse(["10.0.0.0/8", "127.0.0.1", " minio.storage.svc. ", "*.corp.sightline.test", ""])
    policy.check("anything", ipaddress.ip_address("10.9.8.7"))
    policy.check("anything", ipaddress.ip_address("::ffff:10.9.8.7"))
    policy.check("127.0.0.1", ipaddress.ip_address("127.0.0.1"))
    policy.check("MinIO.storage.svc", ipaddress.ip_address("192.168.3.4"))
    policy.check("cam7.corp.sightline.test", ipaddress.ip_address("172.16.0.7"))
    with pytest.raises(PermissionDeniedError):
        policy.check("anything", ipaddress.ip_address("127.0.0.2"))
    with pytest.raises(PermissionDeniedError):
        policy.check("corp.sightline.test.evil", ipaddress.ip_address("172.16.0.7"))


@pytest.mark.parametrize("entry", ["10.0.0.0/33", "not a host", "exa*mple.com", "300.1.1.1"])
def test_bad_allow_entries_fail_at_construction(entry: str) -> None:
    with pytest.raises(ValueError, match="SIGHTLINE_URL_ALLOW"):
        UrlFetcher(allow=[entry])


def test_is_url_source() -> None:
    assert is_url_source("https://example.com/a.png")
    assert is_url_source("HTTP://example.com/a.png")
    assert not is_url_source("data:image/png;base64,AAAA")


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (lambda: PermissionDeniedError("no"), grpc.StatusCode.PERMISSION_DENIED),
        (lambda: DeadlineExceededError("slow"), grpc.StatusCode.DEADLINE_EXCEEDED),
        (lambda: SourceUnavailableError("down"), grpc.StatusCode.UNAVAILABLE),
    ],
)
def test_status_codes(error: Callable[[], Exception], code: grpc.StatusCode) -> None:
    exc = error()
    assert isinstance(exc, PermissionDeniedError | DeadlineExceededError | SourceUnavailableError)
    assert to_status(exc).code == code.value[0]
