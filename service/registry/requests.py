"""What every part checks of a request, and the pages that list public resources before the organisation's."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

from service.errors import InvalidArgumentError

__all__ = ["check_mutable", "merge_pages", "required"]

T = TypeVar("T")


def required(value: str, name: str) -> None:
    """``InvalidArgumentError`` on the field ``name`` when ``value`` is empty."""
    if not value:
        raise InvalidArgumentError.field(name, "must not be empty")


def check_mutable(changes: Mapping[str, Any], mutable: Sequence[str]) -> None:
    """An update changes only the fields in ``mutable``, never to an empty name or to metadata that is no object."""
    for name in changes:
        if name not in mutable:
            raise InvalidArgumentError.field(name, f"cannot be changed (only {', '.join(mutable)} can)")
    if "name" in changes and not changes["name"]:
        raise InvalidArgumentError.field("name", "must not be empty")
    if "metadata" in changes and not isinstance(changes["metadata"], Mapping):
        raise InvalidArgumentError.field("metadata", "must be an object")


async def merge_pages(
    public: Sequence[T],
    offset: int,
    limit: int,
    user: Callable[[int, int], Awaitable[tuple[int, list[T]]]],
) -> tuple[int, list[T]]:
    """One page of the public items followed by the organisation's, and the total count. ``user(offset, limit)``
    gives the organisation's count and one page of its items."""
    head = list(public[offset : offset + limit])
    count, rows = await user(max(0, offset - len(public)), limit - len(head))
    return len(public) + count, head + rows
