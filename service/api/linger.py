"""Reading what is left of a client stream the server refuses, before its status goes out.

grpcio's asyncio client replaces the status of a call that the server ends while the client is still writing
with ``INTERNAL: Internal error from Core`` (grpc/grpc#36066): a client told that its key is refused, that its
upload names an unknown framework, or that its stream's specification does not exist, would be told of a server
fault instead. Reading the rest first, the way HTTP servers linger before they close, lets the client finish
writing and then receive the real status. The reading is bounded: a client that keeps writing past the bounds (a
live camera) gets the status anyway, and its library may still lose it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from google.protobuf.message import Message

__all__ = ["LINGER_BYTES", "LINGER_S", "linger"]

LINGER_BYTES = 64 * 1024 * 1024
"""Most bytes of a refused stream read and dropped."""
LINGER_S = 5.0
"""Longest a refused stream is read before its status goes out."""


async def linger(requests: AsyncIterator[Message]) -> None:
    """Read and drop the messages left in ``requests`` until the client half-closes, or ``LINGER_BYTES`` or
    ``LINGER_S`` is reached, or the stream fails (the client went away). A cancellation still propagates."""
    read = 0
    with contextlib.suppress(Exception):
        async with asyncio.timeout(LINGER_S):
            async for message in requests:
                read += message.ByteSize()
                if read > LINGER_BYTES:
                    return
