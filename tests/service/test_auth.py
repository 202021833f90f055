"""API keys and what each kind may call (``service.auth``), over a real SQLite store: a key is
``sl_<id>_<secret>``, only its hash is kept, one key a call, read keys run inference only."""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from service.auth import (
    INFERENCE_METHODS,
    LOCAL,
    PRINCIPAL,
    Authenticator,
    KeyKind,
    Principal,
    UnauthenticatedError,
    create_key,
    current_principal,
    revoke_key,
)
from service.errors import InvalidArgumentError, NotFoundError, PermissionDeniedError
from service.store import Store, open_store


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await open_store("", tmp_path)
    yield opened
    await opened.close()


def bearer(key: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {key}")]


async def test_a_new_key_is_shown_once_and_only_its_hash_is_stored(store: Store) -> None:
    record, key = await create_key(store, "acme", KeyKind.READ, "ci")
    match = re.fullmatch(r"sl_([0-9a-f]{12})_([A-Za-z0-9_-]{20,100})", key)
    assert match is not None
    assert match.group(1) == record.id
    stored = await store.get_key(record.id)
    assert stored is not None
    assert (stored.organisation, stored.kind, stored.description) == ("acme", "read", "ci")
    assert stored.key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert match.group(2) not in repr(stored)


async def test_a_key_authenticates_as_its_organisation_and_kind(store: Store) -> None:
    record, key = await create_key(store, "acme", KeyKind.ADMIN)
    auth = Authenticator(store)
    assert await auth.authenticate(bearer(key)) == Principal("acme", KeyKind.ADMIN, record.id)
    assert await auth.authenticate({"x-api-key": key}) == Principal("acme", KeyKind.ADMIN, record.id)
    # The same key under both names is one key; the scheme's case does not matter.
    assert (await auth.authenticate([("authorization", f"bearer {key}"), ("x-api-key", key)])).key_id == record.id


@pytest.mark.parametrize(
    ("metadata", "words"),
    [
        ([], "needs an API key"),
        ([("x-api-key", "")], "needs an API key"),
        ([("authorization", "Basic dXNlcjpwdw==")], "must be 'Bearer <API key>'"),
        ([("authorization", "Bearer ")], "must be 'Bearer <API key>'"),
        ([("authorization", "Bearer a"), ("authorization", "Bearer a")], "more than one key sent"),
        ([("authorization", "Bearer a"), ("x-api-key", "b")], "more than one key sent"),
        ([("authorization", "Bearer sl_000000000000_" + "x" * 30)], "unknown or revoked"),
        ([("x-api-key", "not-a-key")], "unknown or revoked"),
    ],
)
async def test_calls_without_exactly_one_good_key_are_unauthenticated(
    store: Store, metadata: list[tuple[str, str]], words: str
) -> None:
    with pytest.raises(UnauthenticatedError, match=re.escape(words)):
        await Authenticator(store).authenticate(metadata)


async def test_a_key_with_a_known_id_and_another_secret_is_refused(store: Store) -> None:
    record, key = await create_key(store, "acme", KeyKind.ADMIN)
    forged = f"sl_{record.id}_{'A' * 43}"
    assert forged != key
    with pytest.raises(UnauthenticatedError, match="unknown or revoked"):
        await Authenticator(store).authenticate(bearer(forged))


async def test_a_revoked_key_is_refused_once_its_cache_entry_is_gone(store: Store) -> None:
    record, key = await create_key(store, "acme", KeyKind.ADMIN)
    cached, uncached = Authenticator(store, cache_s=60), Authenticator(store, cache_s=0)
    assert (await cached.authenticate(bearer(key))).organisation == "acme"
    assert (await uncached.authenticate(bearer(key))).organisation == "acme"
    await revoke_key(store, record.id)
    # Good keys are remembered for cache_s: a revocation reaches a replica within that time.
    assert (await cached.authenticate(bearer(key))).organisation == "acme"
    with pytest.raises(UnauthenticatedError, match="unknown or revoked"):
        await uncached.authenticate(bearer(key))


async def test_a_cached_key_expires(store: Store) -> None:
    record, key = await create_key(store, "acme", KeyKind.ADMIN)
    auth = Authenticator(store, cache_s=0.05)
    await auth.authenticate(bearer(key))
    await revoke_key(store, record.id)
    await asyncio.sleep(0.1)
    with pytest.raises(UnauthenticatedError):
        await auth.authenticate(bearer(key))


async def test_with_authentication_off_everyone_is_the_local_admin(store: Store) -> None:
    auth = Authenticator(store, enabled=False)
    assert await auth.authenticate([]) is LOCAL
    assert await auth.authenticate(bearer("anything")) is LOCAL
    assert (LOCAL.organisation, LOCAL.kind) == ("local", KeyKind.ADMIN)


@pytest.mark.parametrize("method", sorted(INFERENCE_METHODS))
def test_a_read_key_may_run_inference_and_read_its_tasks(method: str) -> None:
    Authenticator.authorize(Principal("acme", KeyKind.READ), method)


@pytest.mark.parametrize(
    "method",
    [
        "/sightline.v1.NetworkService/CreateNetwork",
        "/sightline.v1.NetworkService/ListNetworks",
        "/sightline.v1.SpecificationService/DeleteSpecification",
    ],
)
def test_a_read_key_may_not_change_or_browse(method: str) -> None:
    name = method.rsplit("/", 1)[-1]
    with pytest.raises(PermissionDeniedError, match=f"a read key may only run inference .*; {name} needs an admin key"):
        Authenticator.authorize(Principal("acme", KeyKind.READ), method)
    Authenticator.authorize(Principal("acme", KeyKind.ADMIN), method)


@pytest.mark.parametrize("organisation", ["", "-acme", "a" * 65, "ac me", "acme/x"])
async def test_an_organisation_name_is_checked(store: Store, organisation: str) -> None:
    with pytest.raises(InvalidArgumentError) as raised:
        await create_key(store, organisation, KeyKind.READ)
    assert [v.field for v in raised.value.violations] == ["organisation"]
    assert await store.list_keys() == []


@pytest.mark.parametrize("organisation", ["a", "acme", "Acme.io_2-b", "a" * 64])
async def test_good_organisation_names_are_accepted(store: Store, organisation: str) -> None:
    record, _ = await create_key(store, organisation, KeyKind.READ)
    assert record.organisation == organisation


async def test_revoking_an_unknown_or_revoked_key_is_not_found(store: Store) -> None:
    record, _ = await create_key(store, "acme", KeyKind.READ)
    await revoke_key(store, record.id)
    with pytest.raises(NotFoundError):
        await revoke_key(store, record.id)
    with pytest.raises(NotFoundError):
        await revoke_key(store, "000000000000")


def test_the_current_principal_is_the_one_set_for_the_call() -> None:
    def read() -> Principal:
        return current_principal()

    with pytest.raises(UnauthenticatedError, match="not authenticated"):
        contextvars.Context().run(read)
    context = contextvars.Context()
    principal = Principal("acme", KeyKind.READ, "k")
    context.run(PRINCIPAL.set, principal)
    assert context.run(read) is principal
