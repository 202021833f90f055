"""Triton's system shared memory for the gateway's tensors: a pool of registered ``/dev/shm`` regions.

A co-located Triton reads a request's inputs from, and writes its outputs into, a region both processes map,
instead of receiving and sending the bytes over gRPC. Creating and registering a region costs a system call and
a Triton call, so regions are kept: a call leases one region that holds all its tensors (``Layout``), and gives it
back when it is over. The gateway alone uses this module; nothing above the adapter knows about it.

Contract of the pool (``RegionPool``):

- A lease is exclusive: no other call gets its region until the lease is released. ``Lease.release`` is called
  once by each holder (``Lease(holders=2)``: the request in Triton and the reader of its outputs), and the region
  goes back only when both have let go, so a call cancelled while its request is still in Triton does not hand
  over a region that Triton may still write into.
- Every region's name starts with the prefix it was created under (``prefix()``, read at each acquisition): the
  embedded Triton's ``sightline_<reaper pid>_``, which the reaper removes from ``/dev/shm`` whenever that Triton
  ends, the service's death by SIGKILL included. A new prefix means a new Triton, which knows none of the
  regions: the old ones are dropped (unlinked; the reaper may have done it already) and new ones registered.
- ``acquire`` returns ``None`` rather than failing: the call then goes in-band. It does when the pool is off
  (``disabled``, after Triton refused a registration: it cannot map our memory, e.g. a remote Triton), full
  (``max_bytes``), when ``/dev/shm`` lacks room, or when a registration failed for a reason that may pass.
- ``close`` unregisters (by name: a shared Triton holds other clients' regions) and unlinks every region.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import itertools
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing import resource_tracker
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import tritonclient.utils.shared_memory as shm

from service.triton.embedded import SHM_PREFIX

__all__ = ["Layout", "Lease", "Region", "RegionPool", "Registrar", "RegistrationError", "process_prefix"]

log = logging.getLogger(__name__)

ALIGNMENT = 64
"""Byte alignment of each tensor in a region (a cache line; numpy and ONNX Runtime like aligned buffers)."""
SIZE_STEP = 64 * 1024
"""Regions are sized in steps of this many bytes, so that calls of nearly the same size share regions."""
_SHM_HEADROOM = 16 * 1024 * 1024
"""Free space ``/dev/shm`` must keep beyond a new region, for Triton's own use of it (its Python backend stubs'
regions grow with the tensors they carry)."""
_UNREGISTER_WAITS_S = (0.01, 0.02, 0.05, 0.1, 0.2)
"""Pauses between tries to unregister a region Triton still holds (``RegionPool._unregister``)."""
_gateways = itertools.count()
"""Numbers pools apart: several gateways of one process (tests, tools) may share one Triton and one prefix."""


def process_prefix() -> str:
    """The region prefix for a remote Triton: this process's ``sightline_<pid>_``, which a later embedded Triton's
    start-up removes once this process is dead (``remove_stale_shm``)."""
    return f"{SHM_PREFIX}{os.getpid()}_"


class Registrar(Protocol):
    """The Triton calls the pool needs (the gateway's client); both raise ``RegistrationError``."""

    async def register(self, name: str, key: str, byte_size: int) -> None: ...

    async def unregister(self, name: str) -> None: ...


@dataclass(frozen=True, slots=True)
class Layout:
    """Where each tensor of one call lies in its region: byte offsets by name, and the bytes the call needs."""

    inputs: dict[str, tuple[int, int]]
    """Input name → (offset, byte size)."""
    outputs: dict[str, tuple[int, int]]
    """Output name → (offset, byte size reserved)."""
    byte_size: int

    @staticmethod
    def of(inputs: Sequence[tuple[str, int]], outputs: Sequence[tuple[str, int]]) -> Layout:
        """Inputs then outputs, each at an ``ALIGNMENT``-aligned offset, from ``(name, byte size)`` pairs."""
        offset = 0
        placed: list[dict[str, tuple[int, int]]] = [{}, {}]
        for group, tensors in zip(placed, (inputs, outputs), strict=True):
            for name, size in tensors:
                group[name] = (offset, size)
                offset += -(-size // ALIGNMENT) * ALIGNMENT
        return Layout(placed[0], placed[1], offset)


class RegistrationError(Exception):
    """A ``Registrar`` call failed; ``transient``: it may work later (Triton restarting, overloaded)."""

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


class Region:
    """One ``/dev/shm`` region, mapped here and registered with Triton under ``name``."""

    def __init__(self, name: str, byte_size: int, generation: int, shm_dir: Path = Path("/dev/shm")) -> None:
        """Create and map it, its memory reserved.

        Raises:
            OSError: ``ENOSPC`` when ``shm_dir`` (where ``shm_open`` puts it) has no room for it; nothing is left.
        """
        self.name = name
        """Triton's name for it, and its file name in ``/dev/shm``."""
        self.key = "/" + name
        self.byte_size = byte_size
        self.generation = generation
        """The pool's generation it belongs to: one Triton instance's registrations."""
        self.registered = False
        self._handle = shm.create_shared_memory_region(name, self.key, byte_size, create_only=True)
        # tmpfs gives a file its pages at their first write, and a write that finds it full kills the writer with
        # SIGBUS: reserved now, a full /dev/shm is ENOSPC here, and the call goes in-band.
        try:
            descriptor = os.open(shm_dir / name, os.O_RDWR)
            try:
                os.posix_fallocate(descriptor, 0, byte_size)
            finally:
                os.close(descriptor)
        except OSError:
            self.destroy()
            raise

    def write(self, array: npt.NDArray[Any], offset: int) -> None:
        shm.set_shared_memory_region(self._handle, [array], offset=offset)

    def read(self, dtype: np.dtype[Any], shape: Sequence[int], offset: int) -> npt.NDArray[Any]:
        """A copy of a tensor Triton wrote: the region is reused as soon as the call is over."""
        view = shm.get_contents_as_numpy(self._handle, dtype, list(shape), offset=offset)
        # A copy, so that no view keeps the mapping exported (closing it would fail) or sees the next call's data.
        return np.array(view, copy=True)

    def destroy(self) -> None:
        """Unmap and unlink it; a region the reaper removed already is not an error."""
        try:
            shm.destroy_shared_memory_region(self._handle)
        except FileNotFoundError:
            # multiprocessing's resource tracker would otherwise try to unlink it again at exit, and warn. It knows
            # the region by multiprocessing's own name for it (Python 3.11 puts a second slash in front of the key).
            tracked = getattr(getattr(self._handle, "_mpsm_handle", None), "_name", None) or self.key
            with contextlib.suppress(Exception):
                resource_tracker.unregister(tracked, "shared_memory")


class Lease:
    """One call's exclusive hold on a region; back to the pool once every holder has called ``release``."""

    def __init__(self, region: Region, give_back: Callable[[Region], None], holders: int = 2) -> None:
        self.region = region
        self._give_back = give_back
        self._holders = holders

    def release(self) -> None:
        self._holders -= 1
        if self._holders == 0:
            self._give_back(self.region)


class RegionPool:
    """Registered regions, reused from call to call (see the module's contract); used on one event loop."""

    def __init__(
        self,
        registrar: Registrar,
        prefix: Callable[[], str | None],
        *,
        max_bytes: int = 512 * 1024 * 1024,
        shm_dir: Path = Path("/dev/shm"),
    ) -> None:
        self._registrar = registrar
        self._prefix = prefix
        self._max_bytes = max_bytes
        self._shm_dir = shm_dir
        self._tag = f"gateway{next(_gateways)}_"
        self._numbers = itertools.count()
        self._current: str | None = None
        self._generation = 0
        self._idle: dict[int, list[Region]] = {}
        self._leased: set[Region] = set()
        self._bytes = 0
        """Bytes of every live region, idle and leased, and of those being created."""
        self._closed = False
        self._said: set[str] = set()
        self.disabled: str | None = None
        """Why the pool is off for good (Triton refused a registration, no region can be made), or ``None``."""

    @property
    def regions(self) -> int:
        """How many regions exist now, idle and leased."""
        return len(self._leased) + sum(len(idle) for idle in self._idle.values())

    @property
    def leased(self) -> int:
        return len(self._leased)

    @property
    def names(self) -> list[str]:
        """The names of the regions that exist now (their ``/dev/shm`` file names)."""
        return sorted([r.name for idle in self._idle.values() for r in idle] + [r.name for r in self._leased])

    @property
    def byte_size(self) -> int:
        """Bytes of the regions that exist or are being created."""
        return self._bytes

    async def acquire(self, byte_size: int) -> Lease | None:
        """A lease on a registered region of at least ``byte_size`` bytes, or ``None``: go in-band."""
        if self._closed or self.disabled is not None:
            return None
        prefix = self._prefix()
        if prefix is None:
            return None  # the embedded Triton is down: the call fails in-band as it would anyway
        if prefix != self._current:
            await self._renew(prefix)
        size = -(-byte_size // SIZE_STEP) * SIZE_STEP
        idle = self._idle.get(size)
        region = idle.pop() if idle else await self._create(size, prefix)
        if region is None:
            return None
        self._leased.add(region)
        return Lease(region, self._release)

    def forget(self) -> None:
        """Triton lost the registrations (a remote Triton restarted): new regions from the next acquisition on."""
        self._current = None

    async def close(self) -> None:
        """Unregister and unlink every region, leased ones too (the gateway waited for its calls first)."""
        self._closed = True
        regions = [r for idle in self._idle.values() for r in idle] + list(self._leased)
        self._idle.clear()
        self._leased.clear()
        for region in regions:
            await self._drop(region)

    async def _renew(self, prefix: str) -> None:
        # A new Triton (or one that forgot us) knows none of the regions: drop the idle ones now, leased ones when
        # released. Unregistered all the same, in case the old registrations are still there.
        stale = [r for idle in self._idle.values() for r in idle]
        self._idle.clear()
        for region in stale:
            await self._drop(region)
        self._current = prefix
        self._generation += 1

    async def _create(self, size: int, prefix: str) -> Region | None:
        if self._bytes + size > self._max_bytes and not await self._evict(size):
            self._say("full", f"the pool holds {self._bytes} bytes (max {self._max_bytes}); some calls go in-band")
            return None
        with contextlib.suppress(OSError):
            free = os.statvfs(self._shm_dir)
            if free.f_bavail * free.f_frsize < size + _SHM_HEADROOM:
                self._say("room", f"{self._shm_dir} has too little free space; some calls go in-band")
                return None
        generation = self._generation
        try:
            region = Region(f"{prefix}{self._tag}{next(self._numbers)}", size, generation, self._shm_dir)
        except OSError as error:
            if error.errno != errno.ENOSPC:
                self._disable(f"no region could be created: {error}")
            else:  # full now, by other processes too: maybe not for the next call
                self._say("room", f"{self._shm_dir} is full; some calls go in-band")
            return None
        except shm.SharedMemoryException as error:
            self._disable(f"no region could be created: {error.__cause__ or error}")
            return None
        self._bytes += size
        registering = asyncio.ensure_future(self._registrar.register(region.name, region.key, size))
        try:
            await asyncio.shield(registering)
        except RegistrationError as error:
            self._bytes -= size
            region.destroy()
            if not error.transient:
                self._disable(f"Triton could not map a region of this process: {error}")
            return None  # transient: Triton is restarting or overloaded; this call goes in-band
        except asyncio.CancelledError:
            # The caller went away (a cancelled stream) while Triton registers: the region joins the idle ones
            # once Triton has answered, so that it is neither lost to the pool nor left registered unknown to it.
            registering.add_done_callback(lambda done: self._adopt(region, done))
            raise
        region.registered = True
        if self._closed or generation != self._generation:
            # Closed, or a new Triton came while this one registered: nobody would give it back.
            await self._drop(region)
            return None
        return region

    def _adopt(self, region: Region, registering: asyncio.Future[None]) -> None:
        """A region whose caller was cancelled while it was registered: idle if that worked, else gone."""
        failed = registering.cancelled() or registering.exception() is not None
        if failed or self._closed or region.generation != self._generation:
            # Left registered when it worked: a stale registration dies with its Triton; close() cannot see it.
            self._bytes -= region.byte_size
            region.destroy()
            return
        region.registered = True
        self._idle.setdefault(region.byte_size, []).append(region)

    async def _evict(self, size: int) -> bool:
        """Drop idle regions until ``size`` more bytes fit; whether they do."""
        for idle in self._idle.values():
            while idle and self._bytes + size > self._max_bytes:
                await self._drop(idle.pop())
        return self._bytes + size <= self._max_bytes

    def _release(self, region: Region) -> None:
        self._leased.discard(region)
        if self._closed or region.generation != self._generation:
            # Closing (close() has it), or its Triton is gone: unlinked here, nothing to unregister.
            if not self._closed:
                self._bytes -= region.byte_size
                region.destroy()
            return
        self._idle.setdefault(region.byte_size, []).append(region)

    async def _drop(self, region: Region) -> None:
        self._bytes -= region.byte_size
        if region.registered:
            await self._unregister(region.name)
        region.destroy()

    async def _unregister(self, name: str) -> None:
        """Unregister a region, waiting briefly while Triton still holds it: Triton answers a call before it lets go
        of the call's regions, and refuses to unregister one "currently in use" meanwhile (seen in about 1 of 6
        closes right after a call). Other failures are left: the registration ends with its Triton."""
        for wait_s in (*_UNREGISTER_WAITS_S, None):
            try:
                await self._registrar.unregister(name)
                return
            except RegistrationError as error:
                if wait_s is None or "in use" not in str(error):
                    return
            await asyncio.sleep(wait_s)

    def _disable(self, reason: str) -> None:
        if self.disabled is None:
            self.disabled = reason
            log.warning("Triton's shared memory is off for this gateway (%s); tensors go in-band", reason)

    def _say(self, what: str, message: str) -> None:
        if what not in self._said:
            self._said.add(what)
            log.info("shared memory: %s", message)
