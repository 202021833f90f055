"""API keys, organisations and what each kind of key may do.

A key belongs to one organisation and is of one kind (v0.7): ``read`` keys may only run inference (and read its
tasks), ``admin`` keys may call everything. A key is ``sl_<id>_<secret>``; the database keeps its id and the
SHA-256 of the whole key, never the key itself, which is shown once when it is created.

With authentication off (local development) every caller acts as the admin of organisation ``local``.
"""

from __future__ import annotations

import contextvars
import enum
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from service.errors import InvalidArgumentError, NotFoundError, PermissionDeniedError, SightlineError
from service.store import ApiKeyRecord, Store, now

__all__ = [
    "INFERENCE_METHODS",
    "LOCAL",
    "PRINCIPAL",
    "Authenticator",
    "KeyKind",
    "Principal",
    "UnauthenticatedError",
    "create_key",
    "current_principal",
    "revoke_key",
]

LOCAL_ORGANISATION = "local"
_KEY = re.compile(r"^sl_([0-9a-f]{12})_([A-Za-z0-9_-]{20,100})$")
_ORGANISATION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

INFERENCE_METHODS = frozenset(
    {
        "/sightline.v1.RecognitionService/Recognize",
        "/sightline.v1.RecognitionService/Infer",
        "/sightline.v1.RecognitionService/StreamRecognize",
        "/sightline.v1.NetworkService/InferNetwork",
        "/sightline.v1.TaskService/GetTask",
        "/sightline.v1.TaskService/BatchGetTasks",
    }
)
"""What a ``read`` key may call."""


class UnauthenticatedError(SightlineError):
    """No API key, or one that is unknown or revoked."""

    reason = "UNAUTHENTICATED"


class KeyKind(enum.Enum):
    READ = "read"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who calls: an organisation, and the kind of its key."""

    organisation: str
    kind: KeyKind
    key_id: str = ""


LOCAL = Principal(LOCAL_ORGANISATION, KeyKind.ADMIN)

PRINCIPAL: contextvars.ContextVar[Principal | None] = contextvars.ContextVar("principal", default=None)


def current_principal() -> Principal:
    """The caller of the RPC being served (set by the API layer's authentication)."""
    principal = PRINCIPAL.get()
    if principal is None:
        raise UnauthenticatedError("this call was not authenticated")
    return principal


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _key_from(metadata: Mapping[str, str] | Iterable[tuple[str, str]]) -> str | None:
    """The one API key of a call's metadata (``authorization: Bearer <key>`` or ``x-api-key``), or None.

    Two keys that differ, or two ``authorization`` entries, are refused: which one would act is not the client's
    choice to leave to the server."""
    pairs = list(metadata.items()) if isinstance(metadata, Mapping) else list(metadata)
    headers = [v for k, v in pairs if k == "authorization"]
    keys: set[str] = set()
    for header in headers:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise UnauthenticatedError("the authorization metadata must be 'Bearer <API key>'")
        keys.add(value.strip())
    keys.update(v for k, v in pairs if k == "x-api-key" and v)
    if len(headers) > 1 or len(keys) > 1:
        raise UnauthenticatedError(
            "more than one key sent: send one API key, as 'authorization: Bearer <key>' or as 'x-api-key: <key>'"
        )
    return next(iter(keys), None)


class Authenticator:
    """Checks API keys (remembering good ones for ``cache_s``) and the kind of key each method needs."""

    def __init__(self, store: Store, *, enabled: bool = True, cache_s: float = 10.0) -> None:
        self._store = store
        self.enabled = enabled
        self._cache_s = cache_s
        self._cache: dict[str, tuple[float, Principal]] = {}

    async def authenticate(self, metadata: Mapping[str, str] | Iterable[tuple[str, str]]) -> Principal:
        if not self.enabled:
            return LOCAL
        key = _key_from(metadata)
        if key is None:
            raise UnauthenticatedError(
                "this server needs an API key: send 'authorization: Bearer <key>' or 'x-api-key: <key>' metadata"
            )
        digest = _hash(key)
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        match = _KEY.match(key)
        record = await self._store.get_key(match.group(1)) if match else None
        if record is None or record.revoked_at is not None or not hmac.compare_digest(record.key_hash, digest):
            self._cache.pop(digest, None)
            raise UnauthenticatedError("the API key is unknown or revoked")
        principal = Principal(record.organisation, KeyKind(record.kind), record.id)
        if self._cache_s > 0:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[digest] = (time.monotonic() + self._cache_s, principal)
        return principal

    @staticmethod
    def authorize(principal: Principal, method: str) -> None:
        if principal.kind is KeyKind.READ and method not in INFERENCE_METHODS:
            raise PermissionDeniedError(
                f"a read key may only run inference and read its tasks; {method.rsplit('/', 1)[-1]} needs an admin key"
            )


async def create_key(store: Store, organisation: str, kind: KeyKind, description: str = "") -> tuple[ApiKeyRecord, str]:
    """A new key: its record and the key itself (shown once; only its hash is stored)."""
    if not _ORGANISATION.match(organisation):
        raise InvalidArgumentError.field(
            "organisation", "use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    key_id = secrets.token_hex(6)
    key = f"sl_{key_id}_{secrets.token_urlsafe(32)}"
    record = ApiKeyRecord(key_id, organisation, kind.value, _hash(key), description, now(), None)
    await store.insert_key(record)
    return record, key


async def revoke_key(store: Store, key_id: str) -> None:
    if not await store.revoke_key(key_id):
        raise NotFoundError("API key", key_id)
