"""Image sources given as URLs: fetched over HTTP(S) with strict limits and a guard against server-side request
forgery (SSRF).

``UrlFetcher.fetch(url)`` answers the body of an ``image/*`` response or raises a domain error:

- ``PermissionDeniedError``: the URL's host is, or resolves to, an address that is not publicly routable (loopback,
  RFC 1918 / ULA private, link-local with the cloud metadata endpoints, CGNAT, unspecified, multicast, reserved,
  and IPv4-mapped, 6to4, NAT64 or Teredo IPv6 forms of these), unless the allow-list names the host or the address.
- ``ResourceExhaustedError``: the body is larger than ``max_bytes`` (reading stops there).
- ``DeadlineExceededError``: the whole fetch, redirects included, took longer than ``timeout_s``.
- ``InvalidArgumentError``: not an http(s) URL, too many redirects, a response that is not ``image/*``, a 4xx.
- ``SourceUnavailableError``: the host cannot be reached, or answers 429 or 5xx; retrying later may work.

The guard holds after DNS: every address a host name resolves to is checked, and the connection goes to one of
those checked addresses, never to the result of a second lookup (no DNS rebinding). Redirects are followed here,
one hop at a time, each hop checked like the first URL. Proxy variables from the environment are ignored, since a
proxy would connect on our behalf to addresses we never checked.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import aiohttp
import yarl
from aiohttp.abc import AbstractResolver, ResolveResult

from service.errors import (
    DeadlineExceededError,
    InvalidArgumentError,
    PermissionDeniedError,
    ResourceExhaustedError,
    SightlineError,
    SourceUnavailableError,
)

__all__ = [
    "AddressPolicy",
    "ImageFetcher",
    "Resolver",
    "UrlFetcher",
    "forbidden_kind",
    "is_url_source",
    "system_resolver",
]

log = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

Resolver = Callable[[str, int], Awaitable[Sequence[str]]]
"""Resolves ``(host, port)`` to IP address strings; ``system_resolver`` by default, a fake in tests."""

ALLOW_SETTING = "SIGHTLINE_URL_ALLOW"
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CHUNK = 64 * 1024

_PRIVATE = tuple(ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"))
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = tuple(ipaddress.ip_network(n) for n in ("64:ff9b::/96", "64:ff9b:1::/48"))
_METADATA = frozenset(ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254"))


class ImageFetcher(Protocol):
    """What the recognition use case needs from a URL source fetcher (``UrlFetcher``, or a fake in unit tests)."""

    async def fetch(self, url: str, *, field: str = ...) -> bytes: ...


def is_url_source(source: str) -> bool:
    """Whether an image ``source`` is an http(s) URL (rather than a ``data:`` URI)."""
    return source[:8].lower().startswith(("http://", "https://"))


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for (mapped, 6to4, NAT64, Teredo client), if any."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if any(ip in net for net in _NAT64):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.teredo is not None:
        return ip.teredo[1]
    return None


def forbidden_kind(ip: IPAddress) -> str | None:
    """Why ``ip`` may not be fetched from without an allow-list entry ("loopback", "private", ...), or None when
    it is a publicly routable unicast address."""
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_ipv4(ip)
        if inner is not None:
            kind = forbidden_kind(inner)
            return None if kind is None else f"{kind} (as IPv6 {ip})"
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip in _METADATA:
        return "link-local (cloud metadata endpoint)"
    if ip.is_link_local:
        return "link-local"
    if ip in _CGNAT:
        return "carrier-grade NAT (100.64.0.0/10)"
    if any(ip in net for net in _PRIVATE if net.version == ip.version):
        return "private"
    if ip.is_multicast:
        return "multicast"
    if ip.is_reserved or not ip.is_global:
        return "reserved (not publicly routable)"
    return None


def _looks_numeric(host: str) -> bool:
    """Hosts that socket APIs read as addresses (``127.1``, ``2130706433``, ``::1``): they must parse strictly."""
    return ":" in host or host.replace(".", "").isdigit()


def _parse_ip(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class AddressPolicy:
    """Which non-public addresses may be fetched from: networks (``10.0.0.0/8``, ``127.0.0.1``) and host names
    (``minio.storage.svc``, or ``*.corp.example`` for any name under a domain)."""

    networks: tuple[IPNetwork, ...] = ()
    hosts: frozenset[str] = frozenset()
    domains: tuple[str, ...] = ()

    @classmethod
    def parse(cls, allow: Sequence[str]) -> AddressPolicy:
        """Read allow-list entries; raises ``ValueError`` on one that is neither a network, an address nor a name."""
        networks: list[IPNetwork] = []
        hosts: set[str] = set()
        domains: list[str] = []
        for raw in allow:
            entry = raw.strip().lower().rstrip(".")
            if not entry:
                continue
            if "/" in entry or _looks_numeric(entry):
                try:
                    networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
                except ValueError:
                    raise ValueError(f"{ALLOW_SETTING}: {raw!r} is not an IP address or a CIDR network") from None
            elif entry.startswith("*."):
                domains.append(entry[1:])
            elif "*" in entry or any(c.isspace() for c in entry):
                raise ValueError(f"{ALLOW_SETTING}: {raw!r} is not a host name (wildcards only as '*.domain')")
            else:
                hosts.add(entry)
        return cls(tuple(networks), frozenset(hosts), tuple(domains))

    def allows_host(self, host: str) -> bool:
        name = host.lower().rstrip(".")
        return name in self.hosts or any(name.endswith(d) for d in self.domains)

    def allows_address(self, ip: IPAddress) -> bool:
        candidates: list[IPAddress] = [ip]
        if isinstance(ip, ipaddress.IPv6Address) and (inner := _embedded_ipv4(ip)) is not None:
            candidates.append(inner)
        return any(c in net for c in candidates for net in self.networks if net.version == c.version)

    def check(self, host: str, ip: IPAddress) -> None:
        """Raise ``PermissionDeniedError`` unless ``ip`` (which ``host`` resolved to) may be fetched from."""
        kind = forbidden_kind(ip)
        if kind is None or self.allows_host(host) or self.allows_address(ip):
            return
        where = f"{ip}" if _parse_ip(host) is not None else f"{host} resolves to {ip}, which"
        raise PermissionDeniedError(
            f"{where} is a {kind} address; the server only fetches image URLs from public addresses. "
            f"To fetch from it, add the host or the address to {ALLOW_SETTING} on the server"
        )


async def system_resolver(host: str, port: int) -> Sequence[str]:
    """The host's addresses, from the operating system's resolver (in a thread)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses: list[str] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = str(sockaddr[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


class _GuardedResolver(AbstractResolver):
    """aiohttp's resolver hook: one lookup per connection, every address checked, only checked addresses used."""

    def __init__(self, resolve: Resolver, policy: AddressPolicy) -> None:
        self._resolve = resolve
        self._policy = policy

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        addresses = await self._resolve(host, port)
        if not addresses:
            raise socket.gaierror(socket.EAI_NONAME, f"{host} has no address")
        results: list[ResolveResult] = []
        for address in addresses:
            ip = ipaddress.ip_address(address)
            self._policy.check(host, ip)
            results.append(
                ResolveResult(
                    hostname=host,
                    host=str(ip),
                    port=port,
                    family=socket.AF_INET6 if ip.version == 6 else socket.AF_INET,
                    proto=0,
                    flags=socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
                )
            )
        return results

    async def close(self) -> None:
        return None


def _redacted(url: yarl.URL) -> str:
    """The URL without credentials, query or fragment (signed URLs carry secrets there)."""
    return str(url.with_user(None).with_query(None).with_fragment(None))


class UrlFetcher:
    """Fetches image URLs under a size limit, a total-time limit, a redirect limit and the address guard.

    ``allow`` lists the non-public hosts and networks that may be fetched from (see ``AddressPolicy``); it is
    empty by default, so that only public addresses are reachable. ``resolver`` replaces the system resolver
    (tests). A fetch opens its own connection pool and closes it before returning, so the fetcher holds nothing
    between calls and needs no shutdown.
    """

    def __init__(
        self,
        *,
        max_bytes: int = 20 * 1024 * 1024,
        timeout_s: float = 10.0,
        max_redirects: int = 3,
        allow: Sequence[str] = (),
        user_agent: str = "sightline",
        resolver: Resolver | None = None,
    ) -> None:
        if max_bytes < 1:
            raise ValueError("max_bytes must be at least 1")
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        if max_redirects < 0:
            raise ValueError("max_redirects must not be negative")
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self.max_redirects = max_redirects
        self.policy = AddressPolicy.parse(allow)
        self._user_agent = user_agent
        self._resolve: Resolver = resolver or system_resolver

    async def fetch(self, url: str, *, field: str = "inputs[0].image.source") -> bytes:
        """The body of the ``image/*`` resource at ``url``; ``field`` names the request field in errors."""
        start = self._parse(url, field)
        try:
            async with asyncio.timeout(self.timeout_s):
                return await self._fetch(start, field)
        except TimeoutError:
            raise DeadlineExceededError(
                f"fetching {_redacted(start)} took longer than {self.timeout_s:g} s "
                "(SIGHTLINE_URL_TIMEOUT_S); serve the image faster or send its bytes in content"
            ) from None

    def _parse(self, url: str, field: str) -> yarl.URL:
        try:
            parsed = yarl.URL(url.strip())
        except (ValueError, TypeError):
            raise InvalidArgumentError.field(field, "is not a valid URL") from None
        if parsed.scheme not in ("http", "https"):
            raise InvalidArgumentError.field(field, "a URL source must use http or https")
        if not parsed.host:
            raise InvalidArgumentError.field(field, "a URL source needs a host")
        return parsed

    def _check_literal(self, url: yarl.URL, field: str) -> None:
        """Refuse a hop whose host is an address literal (aiohttp does not resolve those: checked here)."""
        host = url.host or ""
        ip = _parse_ip(host)
        if ip is None and _looks_numeric(host):
            raise InvalidArgumentError.field(field, f"{host!r} is not a valid IP address (use the dotted form)")
        if ip is not None:
            self.policy.check(host, ip)

    async def _fetch(self, start: yarl.URL, field: str) -> bytes:
        connector = aiohttp.TCPConnector(
            resolver=_GuardedResolver(self._resolve, self.policy), use_dns_cache=False, limit=4
        )
        headers = {"User-Agent": self._user_agent, "Accept": "image/*", "Accept-Encoding": "identity"}
        async with aiohttp.ClientSession(
            connector=connector, trust_env=False, auto_decompress=False, timeout=aiohttp.ClientTimeout(total=None)
        ) as session:
            url = start
            for hop in range(self.max_redirects + 1):
                self._check_literal(url, field)
                log.debug("fetching %s (hop %d)", _redacted(url), hop)
                try:
                    async with session.get(url, headers=headers, allow_redirects=False) as response:
                        if response.status in _REDIRECTS:
                            url = self._next_hop(url, response, field)
                            continue
                        return await self._body(url, response, field)
                except SightlineError:
                    raise
                except aiohttp.InvalidURL:
                    raise InvalidArgumentError.field(field, f"{_redacted(url)} is not a valid URL") from None
                except aiohttp.ClientConnectorDNSError as exc:
                    raise self._dns_error(url, exc, field) from None
                except (aiohttp.ClientError, OSError) as exc:
                    raise SourceUnavailableError(
                        f"could not fetch {_redacted(url)}: {type(exc).__name__}: {exc}; retry later or send the "
                        "image bytes in content"
                    ) from None
        raise InvalidArgumentError.field(
            field,
            f"{_redacted(start)} redirects more than {self.max_redirects} times (SIGHTLINE_URL_MAX_REDIRECTS); "
            "give the image's final URL",
        )

    @staticmethod
    def _next_hop(url: yarl.URL, response: aiohttp.ClientResponse, field: str) -> yarl.URL:
        location = response.headers.get("Location")
        if not location:
            raise SourceUnavailableError(f"{_redacted(url)} answered {response.status} without a Location")
        try:
            target = url.join(yarl.URL(location))
        except (ValueError, TypeError):
            raise InvalidArgumentError.field(field, f"{_redacted(url)} redirects to an invalid URL") from None
        if target.scheme not in ("http", "https") or not target.host:
            raise InvalidArgumentError.field(field, f"{_redacted(url)} redirects to a URL that is not http(s)")
        return target

    @staticmethod
    def _dns_error(url: yarl.URL, exc: aiohttp.ClientConnectorDNSError, field: str) -> SightlineError:
        if isinstance(exc.os_error, socket.gaierror) and exc.os_error.errno in (
            socket.EAI_NONAME,
            getattr(socket, "EAI_NODATA", socket.EAI_NONAME),
        ):
            return InvalidArgumentError.field(field, f"host {url.host!r} does not exist (no DNS address)")
        return SourceUnavailableError(f"could not resolve {url.host!r}: {exc.os_error}; retry later")

    async def _body(self, url: yarl.URL, response: aiohttp.ClientResponse, field: str) -> bytes:
        where = _redacted(url)
        if response.status == 429 or response.status >= 500:
            raise SourceUnavailableError(f"{where} answered {response.status} {response.reason or ''}".rstrip())
        if response.status >= 400 or response.status < 200 or response.status == 204:
            raise InvalidArgumentError.field(
                field, f"{where} answered {response.status} {response.reason or ''}".rstrip()
            )
        if not response.content_type.startswith("image/"):
            raise InvalidArgumentError.field(
                field, f"{where} served {response.content_type!r}; a URL source must serve an image (image/*)"
            )
        encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise InvalidArgumentError.field(
                field, f"{where} served the image with Content-Encoding {encoding!r}; serve it uncompressed"
            )
        too_large = ResourceExhaustedError(
            f"{where} serves more than {self.max_bytes} bytes (SIGHTLINE_URL_MAX_BYTES); "
            "send a smaller image or raise the limit"
        )
        if response.content_length is not None and response.content_length > self.max_bytes:
            raise too_large
        body = bytearray()
        async for chunk in response.content.iter_chunked(_CHUNK):
            body += chunk
            if len(body) > self.max_bytes:
                raise too_large
        return bytes(body)
