"""Helpers the post-processing tests share: running NMS under each of its kernels (the module's thresholds
patched so that one kernel does all the work)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from unittest import mock

import postprocess.nms  # noqa: F401  (the module object is taken from sys.modules below)

NMS_MODULE = sys.modules["postprocess.nms"]


KERNELS: dict[str, dict[str, int | bool]] = {
    "default": {},
    "loop": {"_SMALL": 1 << 30},
    "heads": {"_SMALL": 0},
    "heads-early-handover": {"_SMALL": 0, "_HEADS_PROGRESS": 1, "_HEADS_ROUNDS": 1},
    "heads-to-the-end": {"_SMALL": 0, "_HEADS_PROGRESS": 1 << 30},
    "sweep": {"_SMALL": 0, "_HEADS": False},
}


@contextmanager
def kernel(name: str) -> Iterator[None]:
    with ExitStack() as stack:
        for attribute, value in KERNELS[name].items():
            stack.enter_context(mock.patch.object(NMS_MODULE, attribute, value))
        yield
