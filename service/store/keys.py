"""API keys: insert, read, list, revoke (only hashes are stored)."""

from __future__ import annotations

from service.store.db import Database
from service.store.records import ApiKeyRecord, key_record, now, to_stamp


class KeyQueries:
    """Queries of one aggregate; mixed into ``Store``, which holds ``db``."""

    db: Database

    async def insert_key(self, key: ApiKeyRecord) -> None:
        async with self.db.transaction() as tx:
            await tx.execute(
                "INSERT INTO api_keys (id, organisation, kind, key_hash, description, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (key.id, key.organisation, key.kind, key.key_hash, key.description, to_stamp(key.created_at)),
            )

    async def get_key(self, key_id: str) -> ApiKeyRecord | None:
        async with self.db.transaction() as tx:
            row = await tx.fetchone("SELECT * FROM api_keys WHERE id = ?", (key_id,))
        return key_record(row) if row else None

    async def list_keys(self) -> list[ApiKeyRecord]:
        async with self.db.transaction() as tx:
            return [key_record(r) for r in await tx.fetchall("SELECT * FROM api_keys ORDER BY created_at, id")]

    async def revoke_key(self, key_id: str) -> bool:
        async with self.db.transaction() as tx:
            changed = await tx.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (to_stamp(now()), key_id)
            )
        return changed > 0
