"""The registry use case: networks, specifications and versions of each organisation, beside the public models.

Public resources (the bundled ``Catalog``) have non-numeric string ids, are visible to every organisation and
cannot be changed. User resources have decimal ids from the database and belong to one organisation: to any
other they do not exist (NOT_FOUND, never PERMISSION_DENIED, so that their existence does not leak).

Uploading a network (``create_network``):
  1. the declaration is checked (v0.7 fields, framework and its converter, file names per framework, counts,
     sizes, checksums' form);
  2. the files stream into a staging folder outside the model repository, each checked against its declared
     size and SHA-256;
  3. a Caffe or TensorFlow network is converted to ``1/model.onnx`` (``service.convert``, in a worker thread; its
     files stay in ``original/``); the ONNX graph is read (ONNX Runtime), the preprocessing checked against it
     (inputs fed, shapes, mean files), and ``config.pbtxt`` written;
  4. one transaction inserts the network (state ``deploying``) and its task, and moves the folder into the
     repository with one rename before it commits;
  5. in the background Triton loads the model; the task ends ``success`` (the network is ``ready``), or
     ``error`` with the reason, and then nothing of the network remains: the model is unloaded, its folder
     removed and its row deleted (the task stays, as the record of what happened).
A failure in steps 1 to 4 is the call's error and leaves nothing behind either. A converted network keeps the
names it was uploaded with (``image_tensor:0``) in its preprocessing and versions; its stored signature maps them
to the served names, which recognition, InferNetwork and the version checks use. At start-up ``reconcile``
removes what a stopped service left half-done (staged uploads, folders without rows, rows without folders)
and ``Registry.resume`` retries the deployments that were under way.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hashlib
import logging
import re
import shutil
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any, TypeVar

import numpy as np
import numpy.typing as npt

from service.catalog import Catalog
from service.convert import ConverterOptions, ConverterUnavailableError, canonical_framework, convert_to_onnx
from service.convert.tensorflow import ENABLE_HINT
from service.domain import (
    ClassificationPostProcessing,
    ColorChannels,
    ConstantInput,
    DataType,
    DetectionPostProcessing,
    ImageRequest,
    InputPreprocessing,
    Network,
    PostProcessing,
    Preprocessing,
    ResolvedVersion,
    Specification,
    Target,
    Version,
    check_version_against_spec,
    parse_network,
    parse_post_processings,
    parse_specification,
    post_processing_to_v07,
    preprocessing_to_v07,
    spec_output_to_v07,
)
from service.errors import (
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    SightlineError,
    UnavailableError,
)
from service.images import DecodeBudget
from service.meanfile import load_mean
from service.preprocess import build_inputs, crop, decode_image, resolve_source
from service.recognition import needed_size
from service.sources import ImageFetcher, is_url_source
from service.store import NetworkRecord, SpecRecord, Store, TaskRecord, VersionRecord
from service.store.repository import (
    MODEL_FILE,
    ORIGINALS,
    ModelRepository,
    Signature,
    config_pbtxt,
    inspect_onnx,
)
from service.store.repository import signature_from_json as _signature
from service.tasks import TaskRunner
from service.triton.gateway import TritonGateway

__all__ = ["NetworkDraft", "Registry", "UploadFile", "UploadLimits", "check_preprocessing", "reconcile"]

log = logging.getLogger(__name__)

T = TypeVar("T")

MEAN_SUFFIXES = (".npy", ".binaryproto")
_FILE_NAME = re.compile(r"^[A-Za-z0-9_+-][A-Za-z0-9._+-]{0,254}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_CAFFE_FILES = ("deploy.prototxt", "snapshot.caffemodel")
_TF_GRAPHS = ("saved_model.pb", "saved_model.pbtxt")
_TF_SHARD = re.compile(r"^variables\.data-[0-9]{5}-of-[0-9]{5}$")
_WORK = ".convert"
"""A conversion's scratch folder inside the staging folder (no uploaded name starts with '.')."""
_PUBLIC_SIGNATURE = Signature((), (), 0)
"""What the registry knows of a public network's tensors: nothing to resolve (Triton's names are the names)."""


@dataclass(frozen=True, slots=True)
class UploadFile:
    """A file announced in an upload's first message: its name, its size in bytes and its SHA-256 (hex)."""

    name: str
    size: int
    sha256: str


@dataclass(frozen=True, slots=True)
class NetworkDraft:
    """A network to create, in its v0.7 JSON form (``name``, ``framework``, ``preprocessing``...), and its files."""

    body: Mapping[str, Any]
    files: tuple[UploadFile, ...]


@dataclass(frozen=True, slots=True)
class UploadLimits:
    max_bytes: int = 2 * 1024 * 1024 * 1024
    max_files: int = 16
    max_batch_size: int = 32


@dataclass
class _Upload:
    """Where each announced file is written in the staging folder, and what has arrived so far."""

    files: dict[str, UploadFile]
    targets: dict[str, Path]
    means: frozenset[str] = frozenset()
    received: dict[str, int] = field(default_factory=dict)
    hashes: dict[str, Any] = field(default_factory=dict)
    handles: dict[str, IO[bytes]] = field(default_factory=dict)


class Registry:
    """Networks, specifications and versions per organisation, merged with the public catalog; the
    ``DeploymentResolver`` of recognition."""

    def __init__(
        self,
        catalog: Catalog,
        store: Store,
        repository: ModelRepository,
        gateway: TritonGateway,
        tasks: TaskRunner[Any],
        *,
        limits: UploadLimits | None = None,
        load_timeout_s: float = 300.0,
        max_image_pixels: int = 40_000_000,
        decode_budget: DecodeBudget | None = None,
        fetcher: ImageFetcher | None = None,
        converter: ConverterOptions | None = None,
    ) -> None:
        self._catalog = catalog
        self._store = store
        self._repo = repository
        self._gateway = gateway
        self._tasks = tasks
        self._limits = limits or UploadLimits()
        self._load_timeout_s = load_timeout_s
        self._max_image_pixels = max_image_pixels
        self._decode_budget = decode_budget
        self._fetcher = fetcher
        self._converter = converter or ConverterOptions()
        self._means: dict[str, Mapping[str, npt.NDArray[np.float32]]] = {}

    @property
    def catalog(self) -> Catalog:
        return self._catalog

    # ============================================================================================== networks

    async def list_networks(self, org: str, offset: int, limit: int) -> tuple[int, list[Network]]:
        async def user(o: int, n: int) -> tuple[int, list[Network]]:
            count, rows = await self._store.list_networks(org, o, n)
            return count, [_network(r) for r in rows]

        return await _merge(self._catalog.networks(), offset, limit, user)

    async def get_network(self, org: str, network_id: str) -> Network:
        _required(network_id, "network_id")
        if self._catalog.has_network(network_id):
            return self._catalog.network(network_id)
        return _network(await self._network_record(org, network_id))

    async def _network_record(self, org: str, network_id: str) -> NetworkRecord:
        if (record := await self._store.get_network(org, network_id)) is None:
            raise NotFoundError("network", network_id)
        return record

    async def update_network(self, org: str, network_id: str, changes: Mapping[str, Any]) -> Network:
        """Change a network's name, description or metadata."""
        _required(network_id, "network_id")
        if self._catalog.has_network(network_id):
            raise PermissionDeniedError(f"network {network_id!r} is public and cannot be changed")
        _check_mutable(changes, ("name", "description", "metadata"))
        if (record := await self._store.update_network(org, network_id, changes)) is None:
            raise NotFoundError("network", network_id)
        return _network(record)

    async def delete_network(self, org: str, network_id: str) -> None:
        """Delete a network and its versions, unload it from Triton and remove its folder."""
        _required(network_id, "network_id")
        if self._catalog.has_network(network_id):
            raise PermissionDeniedError(f"network {network_id!r} is public and cannot be deleted")
        if (record := await self._store.delete_network(org, network_id)) is None:
            raise NotFoundError("network", network_id)
        await self._discard_model(record.id)

    async def _discard_model(self, network_id: str) -> None:
        """Unload a network's model and remove its folder (its row is gone already: a crash here leaves a folder
        without a row, which the next start-up removes)."""
        model = self._repo.model_name(network_id)
        try:
            await self._gateway.unload_model(model)
        except SightlineError as exc:
            log.warning("could not unload model %s: %s", model, exc.message)
        self._gateway.forget(model)
        self._means.pop(network_id, None)
        await asyncio.to_thread(self._repo.remove, network_id)

    # ------------------------------------------------------------------------------------------------ upload

    async def create_network(self, org: str, draft: NetworkDraft, chunks: AsyncIterator[tuple[str, bytes]]) -> Network:
        """Create a network from its declaration and the chunks of its files (file name, bytes); the model loads
        in the background, tracked by the network's task."""
        network = parse_network(draft.body, network_id="0")
        kind = canonical_framework(network.framework)
        if kind == "tensorflow":
            self._check_tensorflow_converter()
        upload = self._check_files(draft.files, network.preprocessing, network.framework, kind)
        # Made here, not in a worker thread: a cancelled call must never leave a folder made after its clean-up.
        staged = self._repo.new_staging()
        placed: list[str] = []

        def place(network_id: str) -> None:
            self._repo.place(staged, network_id)
            placed.append(network_id)

        try:
            upload.targets = {name: _staged_path(staged, name, kind, upload.means) for name in upload.files}
            if kind != "onnx":
                (staged / ORIGINALS).mkdir()
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
        self._tasks.start(task, lambda: self._deploy(record.id))
        return _network(record)

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

    def _check_files(
        self, files: Sequence[UploadFile], preprocessing: Preprocessing, framework: str, kind: str
    ) -> _Upload:
        limits = self._limits
        if len(files) > limits.max_files:
            raise ResourceExhaustedError(f"the upload announces {len(files)} files; at most {limits.max_files}")
        total = sum(max(0, f.size) for f in files)
        if total > limits.max_bytes:
            raise ResourceExhaustedError(
                f"the upload announces {total} bytes; at most {limits.max_bytes} (SIGHTLINE_MAX_UPLOAD_BYTES)"
            )
        seen: dict[str, UploadFile] = {}
        for i, f in enumerate(files):
            where = f"files[{i}]"
            if not _FILE_NAME.match(f.name) or f.name in {".", ".."}:
                raise InvalidArgumentError.field(
                    f"{where}.name",
                    f"{f.name!r} is not a plain file name: use letters, digits, '.', '_', '-', '+' (no folders, "
                    "no leading '.', at most 255 characters)",
                )
            if f.name in seen:
                raise InvalidArgumentError.field(f"{where}.name", f"{f.name!r} is announced twice")
            if f.size <= 0:
                raise InvalidArgumentError.field(f"{where}.size", f"must be positive, got {f.size}")
            if not _SHA256.match(f.sha256.lower()):
                raise InvalidArgumentError.field(f"{where}.sha256", "must be the file's SHA-256 in 64 hex digits")
            seen[f.name] = replace(f, sha256=f.sha256.lower())
        means = set(preprocessing.mean_files)
        models = [n for n in seen if n not in means and _model_kind(n) == kind]
        others = sorted({k for n in seen if n not in means and (k := _model_kind(n)) not in (None, kind)})
        if not models and others:
            raise InvalidArgumentError.field(
                "framework",
                f"the upload announces the files of a {others[0]} network, not those of a {framework} network "
                f"({_expected_files(kind)})",
            )
        _check_model_files(models, kind, framework)
        for i, name in enumerate(seen):
            if name not in models and name not in means:
                what = "the .onnx model" if kind == "onnx" else f"a file of a {framework} network"
                raise InvalidArgumentError.field(
                    f"files[{i}].name",
                    f"{name!r} is neither {what} ({_expected_files(kind)}) nor a mean file named by the preprocessing",
                )
        for mean in sorted(means):
            if mean not in seen:
                raise InvalidArgumentError.field(
                    "preprocessing", f"mean file {mean!r} is named by the preprocessing but not uploaded"
                )
            if not mean.endswith(MEAN_SUFFIXES):
                raise InvalidArgumentError.field(
                    "preprocessing", f"mean file {mean!r} must end in .npy or .binaryproto"
                )
        return _Upload(files=seen, targets={}, means=frozenset(means))

    async def _receive(self, upload: _Upload, chunks: AsyncIterator[tuple[str, bytes]]) -> None:
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
            files = {p.name: p for p in sorted((staged / ORIGINALS).iterdir())}
            try:
                result = convert_to_onnx(network.framework, files, staged / _WORK, self._converter, cancel=cancel)
            finally:
                shutil.rmtree(staged / _WORK, ignore_errors=True)
            for note in result.notes:
                log.info("converting %s network %r: %s", network.framework, network.name, note)
            model.write_bytes(result.onnx_model)
            names = dict(result.tensor_names)
        signature = inspect_onnx(model, max_batch_size=self._limits.max_batch_size)
        served = {t.name for t in (*signature.inputs, *signature.outputs)}
        # Served names always mean themselves; an alias is kept only when it names a served tensor.
        aliases = {a: n for a, n in names.items() if a != n and a not in served and n in served}
        signature = replace(signature, names=aliases)
        means = _load_means(staged, network.preprocessing)
        check_preprocessing(_served_preprocessing(network.preprocessing, signature), signature, means)
        (staged / "config.pbtxt").write_text(config_pbtxt(signature))
        return signature

    async def _deploy(self, network_id: str) -> None:
        """Load a placed network into Triton; on failure remove every trace of it but its task."""
        model = self._repo.model_name(network_id)
        try:
            await self._gateway.load_model(model, timeout_s=self._load_timeout_s)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            reason = exc.message if isinstance(exc, SightlineError) else "internal error"
            log.warning("network %s failed to deploy: %s", network_id, reason)
            await self._store.delete_network(None, network_id)
            await self._discard_model(network_id)
            raise FailedPreconditionError(f"the network could not be deployed, and was removed: {reason}") from exc
        if not await self._store.set_network_state(network_id, "ready"):
            log.info("network %s was deleted while it loaded; unloading it", network_id)
            await self._discard_model(network_id)
            raise FailedPreconditionError("the network was deleted while it was being deployed")
        log.info("network %s is ready (model %s)", network_id, model)

    # ---------------------------------------------------------------------------------------- start-up work

    async def resume(self) -> None:
        """After Triton is up: unload leftovers of ours it still serves, retry the deployments under way, and load
        ready networks a (remote) Triton does not serve."""
        try:
            loaded = await self._gateway.loaded_models()
        except SightlineError as exc:
            log.warning("could not read Triton's repository index: %s", exc.message)
            loaded = set()
        records = {r.id: r for r in await self._store.all_networks()}
        for model in sorted(loaded):
            network_id = self._repo.network_id(model)
            if network_id is not None and network_id not in records:
                log.warning("Triton serves %s, which is in no registry; unloading it", model)
                try:
                    await self._gateway.unload_model(model)
                except SightlineError as exc:
                    log.warning("could not unload %s: %s", model, exc.message)
        for record in records.values():
            if record.state == "deploying":
                log.info("resuming the deployment of network %s", record.id)
                await self._store.finish_task(record.task_id, "pending", None, None)
                task = TaskRecord(
                    record.task_id,
                    record.organisation,
                    "deployment",
                    "pending",
                    None,
                    None,
                    record.create_date,
                    record.update_date,
                )
                self._tasks.start(task, functools.partial(self._deploy, record.id))
            elif self._repo.model_name(record.id) not in loaded:
                log.info("loading network %s, which Triton does not serve", record.id)
                try:
                    await self._gateway.load_model(self._repo.model_name(record.id), timeout_s=self._load_timeout_s)
                except SightlineError as exc:
                    log.error("network %s could not be loaded: %s", record.id, exc.message)

    # ================================================================================================= specs

    async def list_specs(self, org: str, offset: int, limit: int) -> tuple[int, list[Specification]]:
        async def user(o: int, n: int) -> tuple[int, list[Specification]]:
            count, rows = await self._store.list_specs(org, o, n)
            return count, [_spec(r) for r in rows]

        return await _merge(self._catalog.specifications(), offset, limit, user)

    async def get_spec(self, org: str, spec_id: str) -> Specification:
        _required(spec_id, "spec_id")
        if self._catalog.has_spec(spec_id):
            return self._catalog.for_spec(spec_id).spec
        return _spec(await self._spec_record(org, spec_id))

    async def _spec_record(self, org: str, spec_id: str) -> SpecRecord:
        if (record := await self._store.get_spec(org, spec_id)) is None:
            raise NotFoundError("specification", spec_id)
        return record

    async def create_spec(self, org: str, body: Mapping[str, Any]) -> Specification:
        """Create a specification from its v0.7 JSON (``name``, ``description``, ``metadata``, ``outputs``)."""
        spec = parse_specification(body, spec_id="0")
        record = await self._store.insert_spec(
            org,
            name=spec.name,
            description=spec.description,
            metadata=spec.metadata,
            outputs=[spec_output_to_v07(o) for o in spec.outputs],
        )
        return _spec(record)

    async def update_spec(self, org: str, spec_id: str, changes: Mapping[str, Any]) -> Specification:
        """Change name, description, metadata or current_version_id (a version of this specification)."""
        _required(spec_id, "spec_id")
        if self._catalog.has_spec(spec_id):
            raise PermissionDeniedError(f"specification {spec_id!r} is public and cannot be changed")
        _check_mutable(changes, ("name", "description", "metadata", "current_version_id"))
        await self._spec_record(org, spec_id)
        if "current_version_id" in changes:
            version_id = str(changes["current_version_id"])
            version = await self._store.get_version(org, version_id)
            if version is None or version.spec_id != spec_id:
                raise InvalidArgumentError.field(
                    "current_version_id", f"{version_id!r} is not a version of specification {spec_id!r}"
                )
        if (record := await self._store.update_spec(org, spec_id, changes)) is None:
            raise NotFoundError("specification", spec_id)
        return _spec(record)

    async def delete_spec(self, org: str, spec_id: str) -> None:
        _required(spec_id, "spec_id")
        if self._catalog.has_spec(spec_id):
            raise PermissionDeniedError(f"specification {spec_id!r} is public and cannot be deleted")
        if await self._store.delete_spec(org, spec_id) is None:
            raise NotFoundError("specification", spec_id)

    # ============================================================================================== versions

    async def list_versions(self, org: str, spec_id: str, offset: int, limit: int) -> tuple[int, list[Version]]:
        public: list[Version] = []
        if spec_id and self._catalog.has_spec(spec_id):
            public = self._catalog.versions(spec_id)
        elif spec_id:
            await self._spec_record(org, spec_id)
        else:
            public = self._catalog.versions()

        async def user(o: int, n: int) -> tuple[int, list[Version]]:
            if spec_id and self._catalog.has_spec(spec_id):
                return 0, []
            count, rows = await self._store.list_versions(org, spec_id or None, o, n)
            return count, [self._version(r) for r in rows]

        return await _merge(public, offset, limit, user)

    async def get_version(self, org: str, version_id: str) -> Version:
        _required(version_id, "version_id")
        if self._catalog.has_version(version_id):
            return self._catalog.for_version(version_id).version
        return self._version(await self._version_record(org, version_id))

    async def _version_record(self, org: str, version_id: str) -> VersionRecord:
        if (record := await self._store.get_version(org, version_id)) is None:
            raise NotFoundError("version", version_id)
        return record

    def _version(self, record: VersionRecord) -> Version:
        network_name = record.network_name
        if network_name is None and self._catalog.has_network(record.network_id):
            network_name = self._catalog.network(record.network_id).name
        return Version(
            id=record.id,
            spec_id=record.spec_id,
            network_id=record.network_id,
            post_processings=parse_post_processings(record.post_processings),
            spec_name=record.spec_name,
            network_name=network_name or "",
            update_date=record.update_date,
        )

    async def create_version(self, org: str, spec_id: str, network_id: str, post_processings: Sequence[Any]) -> Version:
        """Create a version: the network (public or the organisation's) and one post-processing per output of the
        specification, whose tensors the network has."""
        _required(spec_id, "spec_id")
        _required(network_id, "network_id")
        if self._catalog.has_spec(spec_id):
            raise PermissionDeniedError(f"specification {spec_id!r} is public: its versions cannot be changed")
        spec = _spec(await self._spec_record(org, spec_id))
        post = parse_post_processings(list(post_processings))
        check_version_against_spec(post, spec)
        inputs, outputs, signature = await self._tensors(org, network_id)
        served = [_served_post_processing(pp, signature) for pp in post]
        _check_tensors(served, spec, inputs, outputs, network_id)
        record = await self._store.insert_version(
            org,
            spec_id=spec_id,
            network_id=network_id,
            post_processings=[post_processing_to_v07(p) for p in post],
        )
        if record is None:
            raise NotFoundError("specification", spec_id)
        return self._version(record)

    async def _tensors(
        self, org: str, network_id: str
    ) -> tuple[dict[str, tuple[int, ...]], dict[str, tuple[int, ...]], Signature]:
        """A network's inputs and outputs (served name → dims without the batch dimension), and its signature
        (whose ``names`` resolve the names it was uploaded with; empty for public networks)."""
        if self._catalog.has_network(network_id):
            info = await self._gateway.model_info(network_id)
            return (
                {t.name: t.shape for t in info.inputs},
                {t.name: t.shape for t in info.outputs},
                _PUBLIC_SIGNATURE,
            )
        record = await self._network_record(org, network_id)
        signature = _signature(record.signature)
        skip = 1 if signature.max_batch_size else 0
        return (
            {t.name: t.dims[skip:] for t in signature.inputs},
            {t.name: t.dims[skip:] for t in signature.outputs},
            signature,
        )

    async def delete_version(self, org: str, version_id: str) -> None:
        _required(version_id, "version_id")
        if self._catalog.has_version(version_id):
            raise PermissionDeniedError(f"version {version_id!r} is public and cannot be deleted")
        if await self._store.delete_version(org, version_id) is None:
            raise NotFoundError("version", version_id)

    # =========================================================================================== recognition

    async def resolve(self, target: Target) -> ResolvedVersion:
        """The deployment a target names, as its organisation sees it (``DeploymentResolver``)."""
        org = target.organisation
        if target.spec_id:
            if self._catalog.has_spec(target.spec_id):
                return self._catalog.for_spec(target.spec_id)
            spec_record = await self._spec_record(org, target.spec_id)
            if spec_record.current_version_id is None:
                raise FailedPreconditionError(
                    f"specification {target.spec_id!r} has no version yet: create one (CreateVersion)"
                )
            version_record = await self._version_record(org, spec_record.current_version_id)
        else:
            if self._catalog.has_version(target.version_id):
                return self._catalog.for_version(target.version_id)
            version_record = await self._version_record(org, target.version_id)
            spec_record = await self._spec_record(org, version_record.spec_id)
        network, means, model, signature = await self._runnable(org, version_record.network_id)
        version = self._version(version_record)
        if signature.names:
            post = tuple(_served_post_processing(pp, signature) for pp in version.post_processings)
            version = replace(version, post_processings=post)
        return ResolvedVersion(spec=_spec(spec_record), version=version, network=network, means=means, model=model)

    async def _runnable(
        self, org: str, network_id: str
    ) -> tuple[Network, Mapping[str, npt.NDArray[np.float32]], str, Signature]:
        """A network ready to run: the network (its preprocessing with the served tensor names), its mean arrays,
        its Triton model name and its signature (empty for public networks)."""
        if self._catalog.has_network(network_id):
            return self._catalog.network(network_id), self._catalog.means(network_id), network_id, _PUBLIC_SIGNATURE
        record = await self._network_record(org, network_id)
        if record.state != "ready":
            raise UnavailableError(f"network {network_id!r} is still being deployed; retry shortly", retry_after_s=1.0)
        network = _network(record)
        means = self._means.get(record.id)
        if means is None:
            means = await asyncio.to_thread(_load_means, self._repo.folder(record.id), network.preprocessing)
            self._means[record.id] = means
        signature = _signature(record.signature)
        network = replace(network, preprocessing=_served_preprocessing(network.preprocessing, signature))
        return network, means, self._repo.model_name(record.id), signature

    async def infer_network(
        self, org: str, network_id: str, image: ImageRequest, output_names: Sequence[str]
    ) -> dict[str, npt.NDArray[Any]]:
        """Run a network raw on one image (its preprocessing applied): output tensor name → array, batch
        dimension included when the network has one. Outputs come back under the names asked for (a converted
        network's ``detection_boxes:0`` as well as its served ``detection_boxes``); all of them, by their served
        names, when none is asked for."""
        _required(network_id, "network_id")
        network, means, model, signature = await self._runnable(org, network_id)
        info = await self._gateway.model_info(model)
        known = [t.name for t in info.outputs]
        for i, name in enumerate(output_names):
            if signature.served(name) not in known:
                raise InvalidArgumentError.field(
                    f"output_tensors[{i}]", f"{name!r} is not an output of network {network_id!r} ({', '.join(known)})"
                )
        asked = list(dict.fromkeys(output_names)) or known
        names = list(dict.fromkeys(signature.served(n) for n in asked))
        if image.content:
            data = image.content
        elif image.source and self._fetcher is not None and is_url_source(image.source):
            data = await self._fetcher.fetch(image.source, field="inputs[0].image.source")
        elif image.source:
            data = resolve_source(image.source)
        else:
            raise InvalidArgumentError.field("inputs[0].image", "has no image: set content or source")

        def prepare() -> dict[str, npt.NDArray[Any]]:
            decoded = decode_image(
                data,
                max_pixels=self._max_image_pixels,
                min_size=needed_size(network.preprocessing, image),
                budget=self._decode_budget,
            )
            cropped, _ = crop(
                decoded, bbox=image.bbox, polygon=image.polygon, uniform_background=image.crop_uniform_background
            )
            return dict(build_inputs(cropped, network.preprocessing, means).tensors)

        tensors = await asyncio.to_thread(prepare)
        fitted: dict[str, npt.NDArray[Any]] = {}
        for name, array in tensors.items():
            spec = info.input(name)
            if spec is None:
                raise FailedPreconditionError(f"network {network_id!r} has no input {name!r}")
            cast = array.astype(spec.dtype, copy=False)
            fitted[name] = cast[None] if info.batched else cast
        outputs = await self._gateway.infer(model, fitted, names)
        return {name: outputs[signature.served(name)] for name in asked}


# ===================================================================================================== helpers


async def reconcile(store: Store, repository: ModelRepository) -> None:
    """Bring the model repository and the database back in line after a stop (before Triton starts, so that an
    embedded Triton never loads a leftover): staged uploads go, folders without a row go, rows without a folder go
    (their task says why). Deployments under way are resumed by ``Registry.resume`` once Triton is up."""
    cleared = await asyncio.to_thread(repository.clear_staging)
    if cleared:
        log.info("removed %d unfinished upload(s) from %s", cleared, repository.staging)
    records = {r.id: r for r in await store.all_networks()}
    folders = await asyncio.to_thread(repository.folders)
    for network_id in sorted(set(folders) - set(records)):
        log.warning("model folder %s has no network in the registry; removing it", folders[network_id])
        await asyncio.to_thread(repository.remove, network_id)
    for network_id in sorted(set(records) - set(folders)):
        record = records[network_id]
        log.warning("network %s has no model folder; removing it from the registry", network_id)
        await store.delete_network(None, network_id)
        await store.finish_task(
            record.task_id, "error", "the network's files were lost when the service stopped; upload it again", None
        )


def _model_kind(name: str) -> str | None:
    """The framework whose network file a name looks like (None: not a network file, e.g. a mean file)."""
    if name.endswith(".onnx"):
        return "onnx"
    if name.endswith((".prototxt", ".caffemodel")):
        return "caffe"
    if name.endswith((".pb", ".pbtxt")) or name.startswith("variables."):
        return "tensorflow"
    return None


def _expected_files(kind: str) -> str:
    if kind == "caffe":
        return "deploy.prototxt and snapshot.caffemodel"
    if kind == "tensorflow":
        return (
            "saved_model.pb (or saved_model.pbtxt), with variables.index and variables.data-00000-of-00001 (or more "
            "shards) for a SavedModel; a frozen graph is uploaded as saved_model.pb"
        )
    return "one .onnx file"


def _check_model_files(models: Sequence[str], kind: str, framework: str) -> None:
    """The network files of an upload are those its framework needs, each once."""
    if kind == "onnx":
        if len(models) != 1:
            raise InvalidArgumentError.field(
                "files", f"an onnx network needs exactly one .onnx file; the upload announces {len(models)}"
            )
        return
    expected = _expected_files(kind)
    if kind == "caffe":
        required = list(_CAFFE_FILES)
        allowed = set(_CAFFE_FILES)
    else:
        graphs = [n for n in models if n in _TF_GRAPHS]
        if len(graphs) > 1:
            raise InvalidArgumentError.field("files", f"a {framework} network has one graph; the upload announces both")
        shards = [n for n in models if _TF_SHARD.match(n)]
        required = [graphs[0] if graphs else _TF_GRAPHS[0]]
        if shards or "variables.index" in models:
            required += ["variables.index"] + ([] if shards else ["variables.data-00000-of-00001"])
        allowed = {*_TF_GRAPHS, "variables.index", *shards}
    for name in models:
        if name not in allowed:
            raise InvalidArgumentError.field(
                "files", f"{name!r} is not a file of a {framework} network: it is uploaded as {expected}"
            )
    missing = [n for n in required if n not in models]
    if missing:
        raise InvalidArgumentError.field(
            "files", f"a {framework} network is uploaded as {expected}; {', '.join(missing)} is missing"
        )


def _staged_path(staged: Path, name: str, kind: str, means: frozenset[str]) -> Path:
    """Where an uploaded file is written: mean files beside config.pbtxt, an ONNX model as 1/model.onnx, the files
    of a network to convert in original/."""
    if name in means:
        return staged / name
    if kind == "onnx":
        return staged / "1" / MODEL_FILE
    return staged / ORIGINALS / name


# ------------------------------------------------------------------------------------------- tensor names


def _served_preprocessing(preprocessing: Preprocessing, signature: Signature) -> Preprocessing:
    """The preprocessing with its tensor names (and constants' references to image inputs) as served."""
    if not signature.names:
        return preprocessing

    def reference(value: float | str) -> float | str:
        if isinstance(value, str):
            name, _, dim = value.rpartition(".")
            return f"{signature.served(name)}.{dim}"
        return value

    def item(i: InputPreprocessing) -> InputPreprocessing:
        constant = i.constant
        if constant is not None:
            constant = ConstantInput(constant.shape, tuple(reference(v) for v in constant.data))
        return replace(i, tensor_name=signature.served(i.tensor_name), constant=constant)

    return replace(preprocessing, inputs=tuple(item(i) for i in preprocessing.inputs))


def _served_post_processing(pp: PostProcessing, signature: Signature) -> PostProcessing:
    """A post-processing with its tensor names as served (names the network does not know stay as they are)."""
    if not signature.names:
        return pp
    if isinstance(pp, ClassificationPostProcessing):
        return replace(pp, output_tensor=signature.served(pp.output_tensor))
    output: Any = pp.output  # one of the detection output dataclasses, whose ``*_tensor`` fields name tensors
    renamed = {
        f.name: signature.served(value)
        for f in dataclasses.fields(output)
        if f.name.endswith("_tensor") and isinstance(value := getattr(output, f.name), str)
    }
    normalize = signature.served(pp.normalize_wrt_tensor) if pp.normalize_wrt_tensor else ""
    return replace(pp, output=replace(output, **renamed), normalize_wrt_tensor=normalize)


def _write(upload: _Upload, name: str, data: bytes) -> None:
    handle = upload.handles.get(name)
    if handle is None:
        handle = upload.handles[name] = upload.targets[name].open("wb")
        upload.hashes[name] = hashlib.sha256()
    handle.write(data)
    upload.hashes[name].update(data)


def _load_means(folder: Path, preprocessing: Preprocessing) -> dict[str, npt.NDArray[np.float32]]:
    means: dict[str, npt.NDArray[np.float32]] = {}
    for item in preprocessing.image_inputs:
        assert item.image is not None
        if item.image.mean_file:
            channels = 1 if item.image.color_channels is ColorChannels.L else 3
            means[item.image.mean_file] = load_mean(folder / item.image.mean_file, channels)
    return means


_FLOAT_TYPES = {"FP32", "FP16", "FP64", "BF16"}


def check_preprocessing(
    preprocessing: Preprocessing, signature: Signature, means: Mapping[str, npt.NDArray[np.float32]]
) -> None:
    """The preprocessing feeds every graph input, with tensors of the shapes the graph takes."""
    names = [t.name for t in signature.inputs]
    for i, item in enumerate(preprocessing.inputs):
        if signature.input(item.tensor_name) is None:
            raise InvalidArgumentError.field(
                f"preprocessing.inputs[{i}].tensor_name",
                f"{item.tensor_name!r} is not an input of the network (its inputs: {', '.join(names)})",
            )
    fed = {item.tensor_name for item in preprocessing.inputs}
    missing = [n for n in names if n not in fed]
    if missing:
        raise InvalidArgumentError.field(
            "preprocessing.inputs", f"the network's input(s) {', '.join(missing)} are not fed by the preprocessing"
        )
    first = preprocessing.image_inputs[0].image
    assert first is not None
    width, height = first.target
    sample = np.full((height, width, 3), 127, dtype=np.uint8)
    tensors = build_inputs(sample, preprocessing, means).tensors
    skip = 1 if signature.max_batch_size else 0
    for i, item in enumerate(preprocessing.inputs):
        sig = signature.input(item.tensor_name)
        assert sig is not None
        dims = sig.dims[skip:]
        shape = tensors[item.tensor_name].shape
        if len(dims) != len(shape) or any(d not in (-1, s) for d, s in zip(dims, shape, strict=True)):
            hint = "check target_size and dimension_order" if item.image is not None else "check its shape"
            raise InvalidArgumentError.field(
                f"preprocessing.inputs[{i}]",
                f"gives {item.tensor_name!r} the shape {list(shape)} but the network takes {list(dims)} "
                f"(batch dimension excluded); {hint}",
            )
        if item.image is not None and item.image.data_type is DataType.FLOAT32 and sig.dtype not in _FLOAT_TYPES:
            raise InvalidArgumentError.field(
                f"preprocessing.inputs[{i}].image.data_type",
                f"is FLOAT32 but the network's input {item.tensor_name!r} is {sig.dtype}",
            )


def _check_tensors(
    post: Sequence[ClassificationPostProcessing | DetectionPostProcessing],
    spec: Specification,
    inputs: Mapping[str, tuple[int, ...]],
    outputs: Mapping[str, tuple[int, ...]],
    network_id: str,
) -> None:
    known = ", ".join(outputs)
    for i, (pp, out) in enumerate(zip(post, spec.outputs, strict=True)):
        kind = "classification" if isinstance(pp, ClassificationPostProcessing) else "detection"
        for name in pp.tensor_names:
            if name not in outputs:
                where = f"post_processings[{i}].{kind}" + (".output_tensor" if kind == "classification" else "")
                raise InvalidArgumentError.field(
                    where, f"{name!r} is not an output of network {network_id!r} (its outputs: {known})"
                )
        if isinstance(pp, ClassificationPostProcessing):
            dims = outputs[pp.output_tensor]
            if dims and all(d > 0 for d in dims) and int(np.prod(dims)) != len(out.labels):
                raise InvalidArgumentError.field(
                    f"post_processings[{i}].classification.output_tensor",
                    f"{pp.output_tensor!r} holds {int(np.prod(dims))} values for {len(out.labels)} labels",
                )
        elif (
            pp.normalize_wrt_tensor and pp.normalize_wrt_tensor not in inputs and pp.normalize_wrt_tensor not in outputs
        ):
            raise InvalidArgumentError.field(
                f"post_processings[{i}].detection.normalize_wrt_tensor",
                f"{pp.normalize_wrt_tensor!r} is neither an input nor an output of network {network_id!r}",
            )


def _required(value: str, name: str) -> None:
    if not value:
        raise InvalidArgumentError.field(name, "must not be empty")


def _check_mutable(changes: Mapping[str, Any], mutable: Sequence[str]) -> None:
    for name in changes:
        if name not in mutable:
            raise InvalidArgumentError.field(name, f"cannot be changed (only {', '.join(mutable)} can)")
    if "name" in changes and not changes["name"]:
        raise InvalidArgumentError.field("name", "must not be empty")
    if "metadata" in changes and not isinstance(changes["metadata"], Mapping):
        raise InvalidArgumentError.field("metadata", "must be an object")


def _network(record: NetworkRecord) -> Network:
    body = {
        "name": record.name,
        "description": record.description,
        "metadata": record.metadata,
        "framework": record.framework,
        "preprocessing": record.preprocessing,
    }
    return replace(
        parse_network(body, network_id=record.id),
        task_id=record.task_id,
        create_date=record.create_date,
        update_date=record.update_date,
    )


def _spec(record: SpecRecord) -> Specification:
    body = {
        "name": record.name,
        "description": record.description,
        "metadata": record.metadata,
        "outputs": record.outputs,
    }
    return replace(
        parse_specification(body, spec_id=record.id),
        current_version_id=record.current_version_id,
        update_date=record.update_date,
    )


async def _merge(
    public: Sequence[T],
    offset: int,
    limit: int,
    user: Callable[[int, int], Awaitable[tuple[int, list[T]]]],
) -> tuple[int, list[T]]:
    """One page of the public items followed by the organisation's, and the total count."""
    head = list(public[offset : offset + limit])
    count, rows = await user(max(0, offset - len(public)), limit - len(head))
    return len(public) + count, head + rows
