"""The writable Triton model repository: uploaded networks as standard Triton model folders.

A network's files are written to a staging folder first (outside the repository, so Triton never sees half a
model), checked, given a ``config.pbtxt`` derived from the ONNX graph, and moved into the repository with one
rename, as ``<prefix><network id>``:

    net-12/config.pbtxt      backend "onnxruntime", inputs and outputs read from the graph, batching
    net-12/1/model.onnx      uploaded (ONNX) or converted (Caffe, TensorFlow)
    net-12/<mean files>      referenced by the preprocessing
    net-12/original/         a converted network's files as uploaded (Triton ignores folders that are not
                             version numbers)

The same folder is served unchanged by an official Triton container's native ONNX Runtime backend.
``config_pbtxt`` is the service's one writer of ``config.pbtxt``; the tensors and their data types are
``service.triton.tensors``'s.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from service.errors import InvalidArgumentError, without_paths
from service.triton.tensors import Signature, TensorSignature, data_type, signature_from_json

__all__ = [
    "MODEL_FILE",
    "ORIGINALS",
    "ModelRepository",
    "Signature",
    "TensorSignature",
    "config_pbtxt",
    "inspect_onnx",
    "signature_from_json",
]

log = logging.getLogger(__name__)

MODEL_FILE = "model.onnx"
ORIGINALS = "original"
"""The folder of a converted network's uploaded files, inside its model folder."""


def inspect_onnx(path: Path, *, max_batch_size: int, field: str = "files") -> Signature:
    """Read an ONNX graph's inputs and outputs with ONNX Runtime (which also proves that it loads).

    Batching: when the first dimension of every input and output is symbolic, Triton may batch requests up to
    ``max_batch_size``; when it is 1 or symbolic everywhere, requests go one at a time (``max_batch_size`` 1);
    otherwise the graph takes its tensors as they are (``max_batch_size`` 0).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise InvalidArgumentError.field(
            field, f"{path.name} is not an ONNX model ONNX Runtime can load: {without_paths(str(exc))}"
        ) from None

    def tensors(items: Sequence[Any], kind: str) -> tuple[TensorSignature, ...]:
        out = []
        for t in items:
            try:
                dtype = data_type(str(t.type)).name
            except KeyError:
                raise InvalidArgumentError.field(
                    field, f"{kind} {t.name!r} has type {t.type}, which is not supported"
                ) from None
            dims = tuple(d if isinstance(d, int) and d >= 0 else -1 for d in (t.shape or []))
            out.append(TensorSignature(str(t.name), dtype, dims))
        return tuple(out)

    inputs, outputs = tensors(session.get_inputs(), "input"), tensors(session.get_outputs(), "output")
    firsts = [t.dims[0] if t.dims else None for t in (*inputs, *outputs)]
    if firsts and all(d == -1 for d in firsts):
        batch = max_batch_size
    elif firsts and all(d in (-1, 1) for d in firsts):
        batch = 1
    else:
        batch = 0
    return Signature(inputs, outputs, batch)


def config_pbtxt(signature: Signature, *, name: str | None = None, max_queue_delay_microseconds: int = 0) -> str:
    """The ``config.pbtxt`` of a model folder, in the layout of Triton's documentation (one field a line).

    ``name`` is left out unless given (Triton takes the folder's). A model that batches (``max_batch_size`` > 1)
    gets dynamic batching, waiting up to ``max_queue_delay_microseconds`` for a batch to fill (0: Triton's
    default, no wait). Uploads give neither; the dev tools that write the bundled public models give both.
    """

    def tensor(t: TensorSignature) -> str:
        dims = list(signature.sample_dims(t))
        reshape = ""
        if not dims:
            dims, reshape = [1], "\n    reshape: { shape: [ ] }"
        return (
            f"  {{\n    name: {json.dumps(t.name)}\n    data_type: {data_type(t.dtype).config}\n"
            f"    dims: [ {', '.join(str(d) for d in dims)} ]{reshape}\n  }}"
        )

    lines = [] if name is None else [f"name: {json.dumps(name)}"]
    lines += ['backend: "onnxruntime"', f"max_batch_size: {signature.max_batch_size}"]
    lines += ["input [", ",\n".join(tensor(t) for t in signature.inputs), "]"]
    lines += ["output [", ",\n".join(tensor(t) for t in signature.outputs), "]"]
    if signature.max_batch_size > 1:
        delay = max_queue_delay_microseconds
        lines.append(
            f"dynamic_batching {{\n  max_queue_delay_microseconds: {delay}\n}}" if delay else "dynamic_batching { }"
        )
    return "\n".join(lines) + "\n"


class ModelRepository:
    """Model folders of uploaded networks under ``root``, staged under ``staging`` first."""

    def __init__(self, root: Path, staging: Path, *, prefix: str = "net-") -> None:
        self.root = root
        self.staging = staging
        self.prefix = prefix
        self._pattern = re.compile(rf"^{re.escape(prefix)}([1-9][0-9]*)$")

    def model_name(self, network_id: str) -> str:
        return f"{self.prefix}{network_id}"

    def folder(self, network_id: str) -> Path:
        return self.root / self.model_name(network_id)

    def network_id(self, folder_name: str) -> str | None:
        """The network id of a folder of ours; ``None`` for anything else in the repository."""
        match = self._pattern.match(folder_name)
        return match.group(1) if match else None

    def new_staging(self) -> Path:
        folder = self.staging / uuid.uuid4().hex
        (folder / "1").mkdir(parents=True)
        return folder

    def place(self, staged: Path, network_id: str) -> None:
        """Move a staged folder into the repository in one rename (a copy then a rename across file systems)."""
        target = self.folder(network_id)
        self.root.mkdir(parents=True, exist_ok=True)
        if target.exists():
            raise FileExistsError(f"{target} already exists")
        try:
            os.rename(staged, target)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            temporary = self.root / f".{target.name}.{uuid.uuid4().hex}.tmp"
            shutil.copytree(staged, temporary)
            os.rename(temporary, target)
            shutil.rmtree(staged, ignore_errors=True)

    def remove(self, network_id: str) -> None:
        """Remove a model folder: renamed away first, so that a crash never leaves half a folder in place."""
        target = self.folder(network_id)
        if not target.exists():
            return
        self.staging.mkdir(parents=True, exist_ok=True)
        trash = self.staging / f"deleted-{target.name}-{uuid.uuid4().hex}"
        try:
            os.rename(target, trash)
        except OSError:
            trash = target
        shutil.rmtree(trash, ignore_errors=True)

    def folders(self) -> dict[str, Path]:
        """Network id → folder, for the folders of ours in the repository."""
        if not self.root.is_dir():
            return {}
        found = {}
        for path in self.root.iterdir():
            if path.is_dir() and (network_id := self.network_id(path.name)) is not None:
                found[network_id] = path
        return found

    def clear_staging(self) -> int:
        """Remove every staged upload (start-up: uploads that were under way when the service stopped)."""
        if not self.staging.is_dir():
            return 0
        count = 0
        for path in self.staging.iterdir():
            with contextlib.suppress(OSError):
                shutil.rmtree(path) if path.is_dir() else path.unlink()
                count += 1
        return count
