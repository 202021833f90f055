"""The shared-memory region pool against a fake Triton, over real ``/dev/shm`` regions of this test's own prefix."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from service.triton.shared_memory import ALIGNMENT, SIZE_STEP, Layout, RegionPool, RegistrationError, process_prefix

SHM = Path("/dev/shm")


class FakeTriton:
    """Records registrations; fails them as told."""

    def __init__(self) -> None:
        self.registered: dict[str, tuple[str, int]] = {}
        self.registrations = 0
        self.unregistered: list[str] = []
        self.fail: RegistrationError | None = None
        self.unregister_refusals: list[RegistrationError] = []
        """Errors the next unregistrations raise, one each, before one works."""
        self.answer = asyncio.Event()
        self.answer.set()

    async def register(self, name: str, key: str, byte_size: int) -> None:
        await self.answer.wait()
        if self.fail is not None:
            raise self.fail
        assert (SHM / key.lstrip("/")).exists(), "a region is registered after it exists"
        self.registrations += 1
        self.registered[name] = (key, byte_size)

    async def unregister(self, name: str) -> None:
        self.unregistered.append(name)
        if self.unregister_refusals:
            raise self.unregister_refusals.pop(0)
        self.registered.pop(name, None)


class Prefix:
    def __init__(self) -> None:
        self.value: str | None = f"{process_prefix()}test{uuid.uuid4().hex[:8]}_"

    def __call__(self) -> str | None:
        return self.value


def files(prefix: str) -> list[str]:
    return sorted(name for name in os.listdir(SHM) if name.startswith(prefix))


@pytest.fixture
def prefix() -> Prefix:
    return Prefix()


@pytest.fixture
def triton() -> FakeTriton:
    return FakeTriton()


@pytest.fixture
async def pool(triton: FakeTriton, prefix: Prefix) -> AsyncIterator[RegionPool]:
    created = RegionPool(triton, prefix)
    first = prefix.value
    assert first is not None
    yield created
    await created.close()
    assert files(first) == [], "close() leaves regions"


def test_layout_aligns_every_tensor() -> None:
    layout = Layout.of([("a", 10), ("b", 64)], [("out", 3)])
    assert layout.inputs == {"a": (0, 10), "b": (ALIGNMENT, 64)}
    assert layout.outputs == {"out": (2 * ALIGNMENT, 3)}
    assert layout.byte_size == 3 * ALIGNMENT


async def test_a_released_region_is_reused_without_registering_again(
    pool: RegionPool, triton: FakeTriton, prefix: Prefix
) -> None:
    lease = await pool.acquire(1000)
    assert lease is not None
    region = lease.region
    assert prefix.value is not None
    assert region.name.startswith(prefix.value)
    assert files(prefix.value) == [region.name]
    assert triton.registered[region.name] == (f"/{region.name}", SIZE_STEP)
    lease.release()
    lease.release()
    again = await pool.acquire(SIZE_STEP)  # the same size step
    assert again is not None
    assert again.region is region
    assert triton.registrations == 1
    assert pool.regions == 1


async def test_leases_in_flight_get_distinct_regions(pool: RegionPool, triton: FakeTriton) -> None:
    leases = [await pool.acquire(5000) for _ in range(16)]
    names = {lease.region.name for lease in leases if lease is not None}
    assert len(names) == 16
    assert pool.leased == 16
    for lease in leases:
        assert lease is not None
        lease.release()
        lease.release()
    assert pool.leased == 0
    assert pool.regions == 16


async def test_a_region_stays_out_until_both_holders_let_go(pool: RegionPool) -> None:
    # A cancelled call lets go as reader while its request may still be in Triton, which writes the outputs.
    lease = await pool.acquire(100)
    assert lease is not None
    lease.release()
    other = await pool.acquire(100)
    assert other is not None
    assert other.region is not lease.region
    lease.release()  # Triton's answer is in
    assert pool.leased == 1
    third = await pool.acquire(100)
    assert third is not None
    assert third.region is lease.region


async def test_data_written_is_read_back_at_its_offset(pool: RegionPool) -> None:
    lease = await pool.acquire(2 * 4 * 1000)
    assert lease is not None
    data = np.arange(1000, dtype=np.float32).reshape(10, 100)
    lease.region.write(data, 4000)
    read = lease.region.read(np.dtype(np.float32), [10, 100], 4000)
    assert np.array_equal(read, data)
    lease.region.write(np.zeros_like(data), 4000)
    assert np.array_equal(read, data), "a read is a copy, not a view of the region"


async def test_a_new_triton_gets_new_regions_and_the_old_ones_go(
    pool: RegionPool, triton: FakeTriton, prefix: Prefix
) -> None:
    old_prefix = prefix.value
    assert old_prefix is not None
    idle = await pool.acquire(100)
    busy = await pool.acquire(100)
    assert idle is not None
    assert busy is not None
    idle.release()
    idle.release()
    prefix.value = old_prefix.replace("test", "next")  # the embedded Triton restarted under a new reaper
    fresh = await pool.acquire(100)
    assert fresh is not None
    assert fresh.region.name.startswith(prefix.value)
    assert files(old_prefix) == [busy.region.name], "the idle region of the old Triton should be unlinked"
    busy.release()
    busy.release()
    assert files(old_prefix) == [], "a region of the old Triton is not pooled again"
    assert pool.regions == 1
    fresh.release()
    fresh.release()
    await pool.close()
    assert files(prefix.value) == []


async def test_no_prefix_means_in_band(pool: RegionPool, prefix: Prefix, triton: FakeTriton) -> None:
    prefix.value = None  # the embedded Triton is down
    assert await pool.acquire(100) is None
    assert triton.registrations == 0


async def test_a_refused_registration_turns_the_pool_off_and_says_why_once(
    pool: RegionPool, triton: FakeTriton, prefix: Prefix, caplog: pytest.LogCaptureFixture
) -> None:
    triton.fail = RegistrationError("Unable to open shared memory region", transient=False)
    with caplog.at_level(logging.WARNING, "service.triton.shared_memory"):
        assert await pool.acquire(100) is None
        triton.fail = None
        assert await pool.acquire(100) is None, "the pool stays off"
    assert pool.disabled is not None
    assert "Unable to open shared memory region" in pool.disabled
    assert len([r for r in caplog.records if "in-band" in r.getMessage()]) == 1
    assert prefix.value is not None
    assert files(prefix.value) == []
    assert pool.byte_size == 0


async def test_a_transient_registration_failure_skips_one_call(pool: RegionPool, triton: FakeTriton) -> None:
    triton.fail = RegistrationError("unavailable", transient=True)
    assert await pool.acquire(100) is None
    triton.fail = None
    assert pool.disabled is None
    assert await pool.acquire(100) is not None


async def test_the_byte_limit_evicts_idle_regions_then_refuses(triton: FakeTriton, prefix: Prefix) -> None:
    pool = RegionPool(triton, prefix, max_bytes=2 * SIZE_STEP)
    try:
        small = await pool.acquire(100)
        assert small is not None
        small.release()
        small.release()
        big = await pool.acquire(2 * SIZE_STEP)
        assert big is not None, "the idle small region should make room"
        assert small.region.name in triton.unregistered
        assert await pool.acquire(100) is None, "full of leased regions: in-band"
        assert pool.byte_size == 2 * SIZE_STEP
    finally:
        await pool.close()


async def test_forget_registers_new_regions(pool: RegionPool, triton: FakeTriton) -> None:
    lease = await pool.acquire(100)
    assert lease is not None
    lease.release()
    lease.release()
    pool.forget()  # a remote Triton restarted and lost our registrations
    again = await pool.acquire(100)
    assert again is not None
    assert again.region is not lease.region
    assert triton.registrations == 2


async def test_close_unregisters_every_region_by_name(pool: RegionPool, triton: FakeTriton, prefix: Prefix) -> None:
    leased = await pool.acquire(100)
    idle = await pool.acquire(100)
    assert leased is not None
    assert idle is not None
    idle.release()
    idle.release()
    await pool.close()
    assert sorted(triton.unregistered) == sorted([leased.region.name, idle.region.name])
    assert prefix.value is not None
    assert files(prefix.value) == []
    assert await pool.acquire(100) is None
    leased.release()
    leased.release()  # the abandoned call ends after the close: nothing happens twice


async def test_a_region_triton_still_holds_is_unregistered_once_it_lets_go(
    pool: RegionPool, triton: FakeTriton
) -> None:
    lease = await pool.acquire(100)
    assert lease is not None
    name = lease.region.name
    lease.release()
    lease.release()
    in_use = RegistrationError(
        f"Cannot unregister shared memory region '{name}', it is currently in use.", transient=False
    )
    triton.unregister_refusals = [in_use, in_use]
    await pool.close()
    assert triton.unregistered == [name] * 3
    assert name not in triton.registered


async def test_an_unregistration_refused_for_another_reason_is_not_tried_again(
    pool: RegionPool, triton: FakeTriton
) -> None:
    lease = await pool.acquire(100)
    assert lease is not None
    lease.release()
    lease.release()
    triton.unregister_refusals = [RegistrationError("Unable to find system shared memory region", transient=False)]
    await pool.close()
    assert triton.unregistered == [lease.region.name]


async def test_a_region_the_reaper_removed_is_closed_quietly(triton: FakeTriton, prefix: Prefix) -> None:
    pool = RegionPool(triton, prefix)
    lease = await pool.acquire(100)
    assert lease is not None
    (SHM / lease.region.name).unlink()  # what the reaper does when its Triton ends
    await pool.close()
    assert triton.unregistered == [lease.region.name]


async def test_a_call_cancelled_while_its_region_registers_leaves_it_to_the_pool(
    pool: RegionPool, triton: FakeTriton, prefix: Prefix
) -> None:
    triton.answer.clear()  # Triton is slow to register
    acquiring = asyncio.create_task(pool.acquire(100))
    await asyncio.sleep(0.01)
    acquiring.cancel()
    with pytest.raises(asyncio.CancelledError):
        await acquiring
    triton.answer.set()
    await asyncio.sleep(0.01)
    assert pool.regions == 1, "the registered region should be idle in the pool, not lost"
    lease = await pool.acquire(100)
    assert lease is not None
    assert triton.registrations == 1


async def test_a_new_regions_memory_is_taken_when_it_is_made(pool: RegionPool, prefix: Prefix) -> None:
    # tmpfs gives a file its pages at their first write, and a write that finds /dev/shm full is SIGBUS: the pages
    # are reserved when the region is made, where a full /dev/shm is an error the pool can take.
    lease = await pool.acquire(3 * SIZE_STEP)
    assert lease is not None
    [name] = files(prefix.value or "")
    assert os.stat(SHM / name).st_blocks * 512 >= 3 * SIZE_STEP, "the region's pages are not reserved"


async def test_a_full_dev_shm_sends_the_call_in_band_and_leaves_nothing(
    pool: RegionPool, prefix: Prefix, triton: FakeTriton, monkeypatch: pytest.MonkeyPatch
) -> None:
    reserve = os.posix_fallocate

    def full(descriptor: int, offset: int, length: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "posix_fallocate", full)
    assert await pool.acquire(100) is None
    assert files(prefix.value or "") == [], "the region that found no room is removed"
    assert triton.registrations == 0
    assert (pool.disabled, pool.byte_size) == (None, 0), "a full /dev/shm may have room for the next call"
    monkeypatch.setattr(os, "posix_fallocate", reserve)
    assert await pool.acquire(100) is not None
