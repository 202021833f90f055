"""Helpers the post-processing tests share: running NMS under each of its kernels (the module's thresholds
patched so that one kernel does all the work)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from unittest import mock

import postprocess.nms  # noqa: F401  (the module object is taken from sys.modules below)

NMS_MODULE = sys.modules["postprocess.nms"]


KERNELS: dict[str, dict[str, int | bool | None]] = {
    # The compiled kernel (postprocess/_greedy.c), which the project's environment must have built.
    "default": {},
    # The compiled kernel spending its budget at once, or after a few comparisons: the numpy kernels finish.
    "compiled-hands-over-at-once": {"_COMPILED_PER_BOX": 0, "_COMPILED_BASE": 0},
    "compiled-hands-over-early": {"_COMPILED_PER_BOX": 1, "_COMPILED_BASE": 3},
    # The numpy kernels (the reference, and what runs where the extension is not built).
    "numpy": {"_COMPILED": None},
    "loop": {"_COMPILED": None, "_SMALL": 1 << 30},
    "heads": {"_COMPILED": None, "_SMALL": 0},
    "heads-early-handover": {"_COMPILED": None, "_SMALL": 0, "_HEADS_PROGRESS": 1, "_HEADS_ROUNDS": 1},
    "heads-to-the-end": {"_COMPILED": None, "_SMALL": 0, "_HEADS_PROGRESS": 1 << 30},
    "sweep": {"_COMPILED": None, "_SMALL": 0, "_HEADS": False},
}


@contextmanager
def kernel(name: str) -> Iterator[None]:
    with ExitStack() as stack:
        for attribute, value in KERNELS[name].items():
            stack.enter_context(mock.patch.object(NMS_MODULE, attribute, value))
        yield
