"""Uploading a network (CreateNetwork, a client stream), from its declaration to its deployment under way.

  1. the declaration is checked (v0.7 fields, framework and its converter, file names per framework, counts,
     sizes, checksums' form: ``drafts.check_files``);
  2. the files stream into a staging folder outside the model repository, each checked against its declared
     size and SHA-256;
  3. a Caffe or TensorFlow network is converted to ``1/model.onnx`` (``service.convert``, in a worker thread; its
     files stay in ``original/``); the ONNX graph is read (ONNX Runtime), the preprocessing checked against it
     (inputs fed, shapes, mean files), and ``config.pbtxt`` written;
  4. one transaction inserts the network (state ``deploying``) and its task, and moves the folder into the
     repository with one rename before it commits;
  5. the network's task runs ``Deployments.deploy`` in the background.
A failure in steps 1 to 4 is the call's error and leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import shutil
import threading
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from service.convert import ConverterOptions, ConverterUnavailableError, canonical_framework, convert_to_onnx
from service.convert.tensorflow import ENABLE_HINT, converter_status
from service.domain import Network, parse_network, preprocessing_to_v07
from service.errors import InvalidArgumentError
from service.registry.deployments import Deployments
from service.registry.drafts import (
    NetworkDraft,
    UploadLimits,
    UploadPlan,
    check_files,
    check_preprocessing,
    staged_path,
)
from service.registry.means import load_means
from service.registry.records import network_from_record
from service.registry.tensor_names import served_preprocessing
from service.store import Store
from service.tasks import TaskRunner
from service.triton.repository import MODEL_FILE, ORIGINALS, ModelRepository, Signature, config_pbtxt, inspect_onnx

__all__ = ["Uploads"]

log = logging.getLogger(__name__)

_WORK = ".convert"
"""A conversion's scratch folder inside the staging folder (no uploaded name starts with '.')."""


class Uploads:
    """Creates networks from uploads; ``deployments`` loads each into Triton once it is placed."""

    def __init__(
        self,
        store: Store,
        repository: ModelRepository,
        tasks: TaskRunner[Any],
        deployments: Deployments,
        *,
        limits: UploadLimits | None = None,
        converter: ConverterOptions | None = None,
    ) -> None:
        self._store = store
        self._repo = repository
        self._tasks = tasks
        self._deployments = deployments
        self._limits = limits or UploadLimits()
        self._converter = converter or ConverterOptions()
        on, line = converter_status(self._converter.tf_python)
        # Said once at start-up (the composition root builds one Uploads): a TensorFlow upload is refused otherwise
        # with nothing in the log before it.
        (log.info if on else log.warning)("%s", line)

    async def create(self, org: str, draft: NetworkDraft, chunks: AsyncIterator[tuple[str, bytes]]) -> Network:
        """Create a network from its declaration and the chunks of its files (file name, bytes); the model loads
        in the background, tracked by the network's task. A failure (or a cancellation) before the network is
        stored leaves nothing behind."""
        network = parse_network(draft.body, network_id="0")
        kind = canonical_framework(network.framework)
        if kind == "tensorflow":
            self._check_tensorflow_converter()
        upload = check_files(draft.files, network.preprocessing, network.framework, kind, self._limits)
        # Made here, not in a worker thread: a cancelled call must never leave a folder made after its clean-up.
        staged = self._repo.new_staging()
        placed: list[str] = []

        def place(network_id: str) -> None:
            self._repo.place(staged, network_id)
            placed.append(network_id)

        try:
            upload.targets = {name: staged_path(staged, name, kind, upload.means) for name in upload.files}
            if kind != "onnx":
                (staged / ORIGINALS).mkdir()
                for target in upload.targets.values():
                    target.parent.mkdir(parents=True, exist_ok=True)  # a SavedModel's assets/
            await self._receive(upload, chunks)
            signature = await self._prepare(staged, network, kind)
            task = self._tasks.new(org, "deployment")
            record = await self._store.insert_network(
                org,
                name=network.name,
                description=network.description,
                metadata=network.metadata,
                framework=network.framework,
                preprocessing=preprocessing_to_v07(network.preprocessing),
                signature=signature.to_json(),
                files=sorted(upload.files),
                task=task,
                place=place,
            )
        except BaseException:
            await asyncio.shield(asyncio.to_thread(self._abandon, staged, placed))
            raise
        log.info("network %s uploaded by %s; loading model %s", record.id, org, self._repo.model_name(record.id))
        self._tasks.start(task, lambda: self._deployments.deploy(record.id))
        return network_from_record(record)

    def _abandon(self, staged: Path, placed: list[str]) -> None:
        shutil.rmtree(staged, ignore_errors=True)
        for network_id in placed:
            self._repo.remove(network_id)

    def _check_tensorflow_converter(self) -> None:
        """TensorFlow uploads need the TensorFlow environment: refused before any byte is sent without it."""
        python = self._converter.tf_python
        if python is None:
            raise ConverterUnavailableError(ENABLE_HINT)
        if not python.exists():
            raise ConverterUnavailableError(f"{ENABLE_HINT} ({python} does not exist)")

    async def _receive(self, upload: UploadPlan, chunks: AsyncIterator[tuple[str, bytes]]) -> None:
        try:
            async for name, data in chunks:
                declared = upload.files.get(name)
                if declared is None:
                    raise InvalidArgumentError.field(
                        "chunk.file_name", f"{name!r} is not a file announced in the first message"
                    )
                received = upload.received.get(name, 0) + len(data)
                if received > declared.size:
                    raise InvalidArgumentError.field(
                        "chunk.data", f"{name!r} is larger than its announced {declared.size} bytes"
                    )
                upload.received[name] = received
                write = asyncio.ensure_future(asyncio.to_thread(_write, upload, name, data))
                try:
                    await asyncio.shield(write)
                except asyncio.CancelledError:
                    # The thread goes on after a cancellation: let it finish (it may open a file) before closing.
                    await asyncio.wait([write])
                    raise
        finally:
            for handle in upload.handles.values():
                handle.close()
        for name, declared in upload.files.items():
            got = upload.received.get(name, 0)
            if got != declared.size:
                raise InvalidArgumentError.field(
                    "chunk.data", f"{name!r}: {got} of its announced {declared.size} bytes arrived"
                )
            digest = upload.hashes[name].hexdigest()
            if digest != declared.sha256:
                raise InvalidArgumentError.field(
                    "files", f"{name!r}: its SHA-256 is {digest}, not the announced {declared.sha256}"
                )

    async def _prepare(self, staged: Path, network: Network, kind: str) -> Signature:
        """Convert (Caffe, TensorFlow), read the graph, check the preprocessing, write ``config.pbtxt``, in a worker
        thread. A cancelled call stops a TensorFlow conversion (its process is killed) and returns once the thread
        has ended, so that nothing writes into the staging folder after the call's clean-up."""
        cancel = threading.Event()
        work = asyncio.ensure_future(asyncio.to_thread(self._build, staged, network, kind, cancel))
        try:
            return await asyncio.shield(work)
        except asyncio.CancelledError:
            cancel.set()
            await asyncio.wait([work])
            if not work.cancelled():
                work.exception()  # the call is cancelled: the conversion's outcome no longer matters
            raise

    def _build(self, staged: Path, network: Network, kind: str, cancel: threading.Event) -> Signature:
        model = staged / "1" / MODEL_FILE
        names: dict[str, str] = {}
        if kind != "onnx":
            originals = staged / ORIGINALS
            files = {p.relative_to(originals).as_posix(): p for p in sorted(originals.rglob("*")) if p.is_file()}
            try:
                result = convert_to_onnx(network.framework, files, staged / _WORK, self._converter, cancel=cancel)
            finally:
                shutil.rmtree(staged / _WORK, ignore_errors=True)
            for note in result.notes:
                log.info("converting %s network %r: %s", network.framework, network.name, note)
            model.write_bytes(result.onnx_model)
            names = dict(result.tensor_names)
        signature = inspect_onnx(model, max_batch_size=self._limits.max_batch_size)
        if not network.preprocessing.batched_output:
            # v0.7's batched_output false: the outputs have no batch axis (Faster-RCNN's rois, cls_prob), so Triton
            # must not batch, whatever the first dims look like; inputs keep their own axis (with_own_batch_axis).
            signature = replace(signature, max_batch_size=0)
        served = {t.name for t in (*signature.inputs, *signature.outputs)}
        # Served names always mean themselves; an alias is kept only when it names a served tensor.
        aliases = {a: n for a, n in names.items() if a != n and a not in served and n in served}
        signature = replace(signature, names=aliases)
        means = load_means(staged, network.preprocessing)
        check_preprocessing(served_preprocessing(network.preprocessing, signature), signature, means)
        (staged / "config.pbtxt").write_text(config_pbtxt(signature))
        return signature


def _write(upload: UploadPlan, name: str, data: bytes) -> None:
    handle = upload.handles.get(name)
    if handle is None:
        handle = upload.handles[name] = upload.targets[name].open("wb")
        upload.hashes[name] = hashlib.sha256()
    handle.write(data)
    upload.hashes[name].update(data)
