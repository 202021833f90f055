"""Specifications and versions CRUD: the catalog's public ones merged with the organisation's.

A version joins a specification to a network (public or the organisation's) with one post-processing per output
of the specification; it is checked, when created, against the tensors the network serves.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from postprocess import Label, OutputShapeError, check_output_shapes
from service.catalog import Catalog
from service.domain import (
    DETECTION_KINDS,
    ClassificationPostProcessing,
    DetectionPostProcessing,
    Specification,
    SpecOutput,
    Version,
    check_version_against_spec,
    parse_post_processings,
    parse_specification,
    post_processing_to_v07,
    spec_output_to_v07,
)
from service.errors import InvalidArgumentError, NotFoundError, PermissionDeniedError
from service.registry.records import (
    network_record,
    spec_from_record,
    spec_record,
    version_from_record,
    version_record,
)
from service.registry.requests import check_mutable, merge_pages, required
from service.registry.tensor_names import PUBLIC_SIGNATURE, served_post_processing
from service.store import Store
from service.triton.gateway import TritonGateway
from service.triton.repository import Signature
from service.triton.repository import signature_from_json as _signature

__all__ = ["Specifications", "Versions"]

Dims = dict[str, tuple[int, ...]]


class Specifications:
    """Lists, reads, creates, changes and deletes specifications."""

    def __init__(self, catalog: Catalog, store: Store) -> None:
        self._catalog = catalog
        self._store = store

    async def page(self, org: str, offset: int, limit: int) -> tuple[int, list[Specification]]:
        """One page of the public specifications followed by the organisation's, and their total count."""

        async def user(o: int, n: int) -> tuple[int, list[Specification]]:
            count, rows = await self._store.list_specs(org, o, n)
            return count, [spec_from_record(r) for r in rows]

        return await merge_pages(self._catalog.specifications(), offset, limit, user)

    async def get(self, org: str, spec_id: str) -> Specification:
        """A public specification or one of the organisation's (``NotFoundError`` otherwise)."""
        required(spec_id, "spec_id")
        if self._catalog.has_spec(spec_id):
            return self._catalog.for_spec(spec_id).spec
        return spec_from_record(await spec_record(self._store, org, spec_id))

    async def create(self, org: str, body: Mapping[str, Any]) -> Specification:
        """Create a specification from its v0.7 JSON (``name``, ``description``, ``metadata``, ``outputs``)."""
        spec = parse_specification(body, spec_id="0")
        record = await self._store.insert_spec(
            org,
            name=spec.name,
            description=spec.description,
            metadata=spec.metadata,
            outputs=[spec_output_to_v07(o) for o in spec.outputs],
        )
        return spec_from_record(record)

    async def update(self, org: str, spec_id: str, changes: Mapping[str, Any]) -> Specification:
        """Change name, description, metadata or current_version_id (a version of this specification)."""
        required(spec_id, "spec_id")
        if self._catalog.has_spec(spec_id):
            raise PermissionDeniedError(f"specification {spec_id!r} is public and cannot be changed")
        check_mutable(changes, ("name", "description", "metadata", "current_version_id"))
        await spec_record(self._store, org, spec_id)
        if "current_version_id" in changes:
            version_id = str(changes["current_version_id"])
            version = await self._store.get_version(org, version_id)
            if version is None or version.spec_id != spec_id:
                raise InvalidArgumentError.field(
                    "current_version_id", f"{version_id!r} is not a version of specification {spec_id!r}"
                )
        if (record := await self._store.update_spec(org, spec_id, changes)) is None:
            raise NotFoundError("specification", spec_id)
        return spec_from_record(record)

    async def delete(self, org: str, spec_id: str) -> None:
        """Delete one of the organisation's specifications (``PermissionDeniedError`` for a public one)."""
        required(spec_id, "spec_id")
        if self._catalog.has_spec(spec_id):
            raise PermissionDeniedError(f"specification {spec_id!r} is public and cannot be deleted")
        if await self._store.delete_spec(org, spec_id) is None:
            raise NotFoundError("specification", spec_id)


class Versions:
    """Lists, reads, creates and deletes versions; ``gateway`` tells a public network's tensors."""

    def __init__(self, catalog: Catalog, store: Store, gateway: TritonGateway) -> None:
        self._catalog = catalog
        self._store = store
        self._gateway = gateway

    async def page(self, org: str, spec_id: str, offset: int, limit: int) -> tuple[int, list[Version]]:
        """One page of the versions of a specification (every visible version when ``spec_id`` is empty), the
        public ones first, and their total count."""
        public: list[Version] = []
        if spec_id and self._catalog.has_spec(spec_id):
            public = self._catalog.versions(spec_id)
        elif spec_id:
            await spec_record(self._store, org, spec_id)
        else:
            public = self._catalog.versions()

        async def user(o: int, n: int) -> tuple[int, list[Version]]:
            if spec_id and self._catalog.has_spec(spec_id):
                return 0, []
            count, rows = await self._store.list_versions(org, spec_id or None, o, n)
            return count, [version_from_record(r, self._catalog) for r in rows]

        return await merge_pages(public, offset, limit, user)

    async def get(self, org: str, version_id: str) -> Version:
        """A public version or one of the organisation's (``NotFoundError`` otherwise)."""
        required(version_id, "version_id")
        if self._catalog.has_version(version_id):
            return self._catalog.for_version(version_id).version
        return version_from_record(await version_record(self._store, org, version_id), self._catalog)

    async def create(self, org: str, spec_id: str, network_id: str, post_processings: Sequence[Any]) -> Version:
        """Create a version: the network (public or the organisation's) and one post-processing per output of the
        specification, whose tensors the network has."""
        required(spec_id, "spec_id")
        required(network_id, "network_id")
        if self._catalog.has_spec(spec_id):
            raise PermissionDeniedError(f"specification {spec_id!r} is public: its versions cannot be changed")
        spec = spec_from_record(await spec_record(self._store, org, spec_id))
        # Read first: the network's framework gives the box layouts a post-processing leaves out.
        network = await self._tensors(org, network_id)
        inputs, outputs, signature = network.inputs, network.outputs, network.signature
        post = parse_post_processings(list(post_processings), framework=network.framework)
        check_version_against_spec(post, spec)
        served = [served_post_processing(pp, signature) for pp in post]
        _check_tensors(served, spec, inputs, outputs, network_id)
        record = await self._store.insert_version(
            org,
            spec_id=spec_id,
            network_id=network_id,
            post_processings=[post_processing_to_v07(p) for p in post],
        )
        if record is None:
            raise NotFoundError("specification", spec_id)
        return version_from_record(record, self._catalog)

    async def delete(self, org: str, version_id: str) -> None:
        """Delete one of the organisation's versions (``PermissionDeniedError`` for a public one)."""
        required(version_id, "version_id")
        if self._catalog.has_version(version_id):
            raise PermissionDeniedError(f"version {version_id!r} is public and cannot be deleted")
        if await self._store.delete_version(org, version_id) is None:
            raise NotFoundError("version", version_id)

    async def _tensors(self, org: str, network_id: str) -> _NetworkTensors:
        """A network's inputs and outputs (served name → dims without the batch dimension), its signature
        (whose ``names`` resolve the names it was uploaded with; empty for public networks) and framework."""
        if self._catalog.has_network(network_id):
            served = await self._gateway.model_info(network_id)
            signature, framework = PUBLIC_SIGNATURE, self._catalog.network(network_id).framework
        else:
            record = await network_record(self._store, org, network_id)
            served = signature = _signature(record.signature)
            framework = record.framework
        return _NetworkTensors(
            {t.name: served.sample_dims(t) for t in served.inputs},
            {t.name: served.sample_dims(t) for t in served.outputs},
            signature,
            framework,
        )


@dataclass(frozen=True, slots=True)
class _NetworkTensors:
    inputs: Dims
    outputs: Dims
    signature: Signature
    framework: str


def _check_tensors(
    post: Sequence[ClassificationPostProcessing | DetectionPostProcessing],
    spec: Specification,
    inputs: Mapping[str, tuple[int, ...]],
    outputs: Mapping[str, tuple[int, ...]],
    network_id: str,
) -> None:
    """The tensors each post-processing names are outputs of the network (``normalize_wrt_tensor`` may be an
    input), and a classification's output holds one value per label of its specification output."""
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
        else:
            _check_layout(pp, out, outputs, f"post_processings[{i}].detection", network_id)


def _check_layout(
    pp: DetectionPostProcessing,
    out: SpecOutput,
    outputs: Mapping[str, tuple[int, ...]],
    where: str,
    network_id: str,
) -> None:
    """A detection layout fits the network's output shapes (dims of any size fit any layout), so that a layout
    that cannot decode the network is refused here, not at every recognition."""
    kind = next(k for k, cls in DETECTION_KINDS.items() if isinstance(pp.output, cls))
    labels = [Label(lab.id, lab.name) for lab in out.labels]
    try:
        check_output_shapes(pp.output, labels, outputs)
    except OutputShapeError as exc:
        raise InvalidArgumentError.field(f"{where}.{kind}", f"network {network_id!r}: {exc}") from None
