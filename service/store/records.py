"""The store's records (rows as values) and how rows become them; shared by the queries of every aggregate."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from service.store.db import Row


def now() -> datetime:
    return datetime.now(UTC)


def to_stamp(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()


def parse_date(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    return datetime.fromisoformat(str(value))


def parse_json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str | bytes) else value


def dump_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class NetworkRecord:
    id: str
    organisation: str
    name: str
    description: str
    metadata: dict[str, Any]
    framework: str
    preprocessing: dict[str, Any]
    signature: dict[str, Any]
    """The network's inputs and outputs as read from its files (names, dtypes, shapes, batching)."""
    files: list[str]
    state: str
    """``deploying``, ``ready``."""
    task_id: str
    create_date: datetime
    update_date: datetime


@dataclass(frozen=True, slots=True)
class SpecRecord:
    id: str
    organisation: str
    name: str
    description: str
    metadata: dict[str, Any]
    outputs: list[Any]
    current_version_id: str | None
    update_date: datetime


@dataclass(frozen=True, slots=True)
class VersionRecord:
    id: str
    organisation: str
    spec_id: str
    network_id: str
    post_processings: list[Any]
    spec_name: str
    network_name: str | None
    """``None`` when the network is a public one (the catalog knows its name)."""
    update_date: datetime


@dataclass(frozen=True, slots=True)
class TaskRecord:
    id: str
    organisation: str
    kind: str
    """``inference`` or ``deployment``."""
    status: str
    error: str | None
    data: Any
    date_created: datetime
    date_updated: datetime


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    id: str
    organisation: str
    kind: str
    key_hash: str
    description: str
    created_at: datetime
    revoked_at: datetime | None


def network_record(row: Row) -> NetworkRecord:
    return NetworkRecord(
        id=str(row["id"]),
        organisation=row["organisation"],
        name=row["name"],
        description=row["description"],
        metadata=parse_json(row["metadata"]),
        framework=row["framework"],
        preprocessing=parse_json(row["preprocessing"]),
        signature=parse_json(row["signature"]),
        files=parse_json(row["files"]),
        state=row["state"],
        task_id=row["task_id"],
        create_date=parse_date(row["create_date"]),
        update_date=parse_date(row["update_date"]),
    )


def spec_record(row: Row) -> SpecRecord:
    return SpecRecord(
        id=str(row["id"]),
        organisation=row["organisation"],
        name=row["name"],
        description=row["description"],
        metadata=parse_json(row["metadata"]),
        outputs=parse_json(row["outputs"]),
        current_version_id=row["current_version_id"],
        update_date=parse_date(row["update_date"]),
    )


def version_record(row: Row) -> VersionRecord:
    return VersionRecord(
        id=str(row["id"]),
        organisation=row["organisation"],
        spec_id=str(row["spec_id"]),
        network_id=row["network_id"],
        post_processings=parse_json(row["post_processings"]),
        spec_name=row["spec_name"],
        network_name=row["network_name"],
        update_date=parse_date(row["update_date"]),
    )


def task_record(row: Row) -> TaskRecord:
    return TaskRecord(
        id=row["id"],
        organisation=row["organisation"],
        kind=row["kind"],
        status=row["status"],
        error=row["error"],
        data=parse_json(row["data"]) if row["data"] is not None else None,
        date_created=parse_date(row["date_created"]),
        date_updated=parse_date(row["date_updated"]),
    )


def key_record(row: Row) -> ApiKeyRecord:
    return ApiKeyRecord(
        id=row["id"],
        organisation=row["organisation"],
        kind=row["kind"],
        key_hash=row["key_hash"],
        description=row["description"],
        created_at=parse_date(row["created_at"]),
        revoked_at=parse_date(row["revoked_at"]) if row["revoked_at"] is not None else None,
    )


def user_id(resource_id: str) -> int | None:
    """User ids are ASCII decimal strings; anything else (a public id, a superscript or an Arabic-Indic
    digit, which ``isdigit`` accepts) is no row of ours."""
    ok = resource_id.isascii() and resource_id.isdigit() and len(resource_id) < 19
    return int(resource_id) if ok else None


def update_clause(mutable: Sequence[str], changes: Mapping[str, Any]) -> tuple[str, list[Any]]:
    """The ``SET`` items (``"name = ?, "`` each) and their values for the fields of ``mutable`` in ``changes``;
    metadata is stored as JSON."""
    fields = [f for f in mutable if f in changes]
    values = [dump_json(dict(changes[f])) if f == "metadata" else changes[f] for f in fields]
    return "".join(f"{f} = ?, " for f in fields), values
