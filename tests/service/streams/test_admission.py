"""Admission alone, without a stream or Triton: the waiting room's drop policies one function each, the window
bound, BLOCK's backpressure, ``take`` after ``close``, and the latency budget."""

from __future__ import annotations

import asyncio

import pytest

from service.catalog import Catalog
from service.streams import DropPolicy, FrameInput, SkipKind
from service.streams.admission import Admission, overdue
from service.streams.types import FrameSettings, HeldFrame, window_for
from tests.helpers import ROOT

DEPLOYMENT = Catalog.load(ROOT / "model_repository").for_spec("colors-v1")


def held(seq: int, *, read_at: float = 0.0, max_latency_ms: int = 0) -> HeldFrame:
    settings = FrameSettings(DEPLOYMENT, show_discarded=False, max_predictions=5, max_latency_ms=max_latency_ms)
    return HeldFrame(seq, FrameInput(100 + seq), settings, read_at)


async def fill(admission: Admission, count: int) -> list[object]:
    return [await admission.admit(held(i)) for i in range(count)]


async def test_drop_newest_skips_the_frame_that_finds_the_room_full() -> None:
    admission = Admission(2, DropPolicy.DROP_NEWEST)
    assert await fill(admission, 2) == [None, None]
    dropped = await admission.admit(held(2))
    assert dropped is not None
    frame, outcome = dropped
    assert (frame.seq, outcome.skip_kind) == (2, SkipKind.DROP_NEWEST)
    assert outcome.frame_id == 102
    assert [(await admission.take()).seq for _ in range(2)] == [0, 1]  # type: ignore[union-attr]


async def test_drop_oldest_skips_the_oldest_waiting_frame_for_the_new_one() -> None:
    admission = Admission(2, DropPolicy.DROP_OLDEST)
    await fill(admission, 2)
    dropped = await admission.admit(held(2))
    assert dropped is not None
    frame, outcome = dropped
    assert (frame.seq, outcome.skip_kind) == (0, SkipKind.DROP_OLDEST)
    assert admission.waiting == 2
    assert [(await admission.take()).seq for _ in range(2)] == [1, 2]  # type: ignore[union-attr]


async def test_block_has_no_room_while_the_waiting_room_is_full() -> None:
    admission = Admission(2, DropPolicy.BLOCK)
    await fill(admission, 2)
    room = asyncio.ensure_future(admission.room())
    await asyncio.sleep(0.01)
    assert not room.done()
    assert (await admission.take()) is not None  # a slot frees a place in the waiting room
    await asyncio.wait_for(room, 1)


@pytest.mark.parametrize("policy", list(DropPolicy))
async def test_the_window_bounds_what_is_held_until_the_client_takes_outcomes(policy: DropPolicy) -> None:
    admission = Admission(1, policy)
    assert admission.window == window_for(1) == 20
    for i in range(admission.window):
        await asyncio.wait_for(admission.room(), 1)
        await admission.admit(held(i))
        await admission.take()  # dispatched at once: only the window holds it now
    room = asyncio.ensure_future(admission.room())
    await asyncio.sleep(0.01)
    assert not room.done()
    assert admission.held == admission.window
    await admission.release()
    await asyncio.wait_for(room, 1)


async def test_take_returns_the_frames_left_then_none_once_closed() -> None:
    admission = Admission(4, DropPolicy.BLOCK)
    await fill(admission, 2)
    taking = asyncio.gather(*(admission.take() for _ in range(3)))
    await asyncio.sleep(0.01)
    assert not taking.done()  # the third waits for a frame or the end
    await admission.close()
    first, second, last = await asyncio.wait_for(taking, 1)
    assert (first.seq, second.seq, last) == (0, 1, None)  # type: ignore[union-attr]


def test_a_frame_is_too_old_only_past_its_own_budget() -> None:
    assert overdue(held(0, read_at=10.0, max_latency_ms=0), now=99.0) is None  # 0: no budget
    assert overdue(held(0, read_at=10.0, max_latency_ms=50), now=10.049) is None
    late = overdue(held(0, read_at=10.0, max_latency_ms=50), now=10.080)
    assert late is not None
    assert late.skip_kind is SkipKind.TOO_OLD
    assert "waited 80 ms > 50 ms" in late.skip_reason
