"""The v0.7 REST endpoints: each handler reads the request (``forms``, ``converters``), calls a use case, and
prints its v0.7 JSON. Authentication, errors, request ids and drain are ``server``'s middleware's.

Every path is served with and without its trailing slash (the official client writes resources with one and
actions without). Each route names the gRPC method it stands for: the same rule decides what a read key may
call, and the metrics and logs name it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from service.api.rest.converters import (
    INFERENCE_SCHEMA,
    NETWORK_SCHEMA,
    SPEC_SCHEMA,
    VERSION_SCHEMA,
    changes,
    image_request,
    inference_options,
    network_json,
    page_json,
    resource_id,
    spec_json,
    task_json,
    version_json,
)
from service.api.rest.errors import json_response
from service.api.rest.forms import Body, Schema, Spool, read_body
from service.auth import current_principal
from service.domain import Target
from service.domain.requests import MAX_PAGE, page_bounds
from service.domain.results import TaskData
from service.errors import InvalidArgumentError
from service.inference_tasks import InferenceTasks
from service.registry import NetworkDraft, Registry, Scope, UploadFile, UploadLimits
from service.tasks import TaskRunner

__all__ = ["PREFIX", "RestRoutes", "Route"]

PREFIX = "/v0.7"
_READ_CHUNK = 1024 * 1024
_RECOGNITION = "/sightline.v1.RecognitionService/"
_NETWORKS = "/sightline.v1.NetworkService/"
_TASKS = "/sightline.v1.TaskService/"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Route:
    """One endpoint: HTTP method, path under ``PREFIX`` (without its trailing slash), the gRPC method it stands
    for, and its handler."""

    method: str
    path: str
    grpc_method: str
    handler: Handler


def _org() -> str:
    return current_principal().organisation


def _int_query(request: web.Request, name: str, default: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise InvalidArgumentError.field(name, f"must be an integer, got {raw[:32]!r}") from None


def _page(request: web.Request) -> tuple[int, int]:
    return page_bounds(_int_query(request, "offset", 0), _int_query(request, "limit", 0))


def _public_asked(request: web.Request) -> bool:
    return request.query.get("public", "").lower() in ("1", "true", "yes")


class RestRoutes:
    """The handlers, over the use cases."""

    def __init__(
        self,
        registry: Registry,
        inference: InferenceTasks,
        tasks: TaskRunner[TaskData],
        *,
        max_body_bytes: int,
        upload_limits: UploadLimits,
        staging_dir: Path,
    ) -> None:
        self._registry = registry
        self._inference = inference
        self._tasks = tasks
        self._max_body_bytes = max_body_bytes
        self._limits = upload_limits
        self._staging = staging_dir

    def routes(self) -> list[Route]:
        r, n, t = _RECOGNITION, _NETWORKS, _TASKS
        return [
            Route("GET", "/recognition/public", r + "ListSpecifications", self.list_public_specs),
            Route("GET", "/recognition/public/{spec_id}", r + "GetSpecification", self.get_spec),
            Route("GET", "/recognition/public/{spec_id}/versions", r + "ListVersions", self.spec_versions),
            Route("POST", "/recognition/public/{spec_id}/inference", r + "Infer", self.infer_spec),
            Route("GET", "/recognition/specs", r + "ListSpecifications", self.list_specs),
            Route("POST", "/recognition/specs", r + "CreateSpecification", self.create_spec),
            Route("GET", "/recognition/specs/{spec_id}", r + "GetSpecification", self.get_spec),
            Route("PATCH", "/recognition/specs/{spec_id}", r + "UpdateSpecification", self.update_spec),
            Route("PUT", "/recognition/specs/{spec_id}", r + "UpdateSpecification", self.update_spec),
            Route("DELETE", "/recognition/specs/{spec_id}", r + "DeleteSpecification", self.delete_spec),
            Route("GET", "/recognition/specs/{spec_id}/versions", r + "ListVersions", self.spec_versions),
            Route("POST", "/recognition/specs/{spec_id}/inference", r + "Infer", self.infer_spec),
            Route("GET", "/recognition/versions", r + "ListVersions", self.list_versions),
            Route("POST", "/recognition/versions", r + "CreateVersion", self.create_version),
            Route("GET", "/recognition/versions/{version_id}", r + "GetVersion", self.get_version),
            Route("DELETE", "/recognition/versions/{version_id}", r + "DeleteVersion", self.delete_version),
            Route("POST", "/recognition/versions/{version_id}/inference", r + "Infer", self.infer_version),
            Route("GET", "/networks/public", n + "ListNetworks", self.list_public_networks),
            Route("GET", "/networks/public/{network_id}", n + "GetNetwork", self.get_network),
            Route("POST", "/networks/public/{network_id}/inference", n + "InferNetwork", self.infer_network),
            Route("GET", "/networks", n + "ListNetworks", self.list_networks),
            Route("POST", "/networks", n + "CreateNetwork", self.create_network),
            Route("GET", "/networks/{network_id}", n + "GetNetwork", self.get_network),
            Route("PATCH", "/networks/{network_id}", n + "UpdateNetwork", self.update_network),
            Route("PUT", "/networks/{network_id}", n + "UpdateNetwork", self.update_network),
            Route("DELETE", "/networks/{network_id}", n + "DeleteNetwork", self.delete_network),
            Route("POST", "/networks/{network_id}/inference", n + "InferNetwork", self.infer_network),
            Route("GET", "/tasks", t + "BatchGetTasks", self.list_tasks),
            Route("GET", "/tasks/{task_id}", t + "GetTask", self.get_task),
        ]

    async def _body(self, request: web.Request, schema: Mapping[str, Schema]) -> Body:
        return await read_body(request, schema, max_bytes=self._max_body_bytes)

    # ------------------------------------------------------------------------------------------ specifications

    async def _spec_page(self, request: web.Request, scope: Scope) -> web.Response:
        offset, limit = _page(request)
        count, specs = await self._registry.list_specs(_org(), offset, limit, scope)
        public = scope is Scope.PUBLIC
        results = [spec_json(s, public=public, with_outputs=False) for s in specs]
        return json_response(page_json(request.url, offset, limit, count, results))

    async def list_public_specs(self, request: web.Request) -> web.Response:
        return await self._spec_page(request, Scope.PUBLIC)

    async def list_specs(self, request: web.Request) -> web.Response:
        return await self._spec_page(request, Scope.PUBLIC if _public_asked(request) else Scope.OWN)

    def _spec(self, spec: Any) -> dict[str, Any]:
        return spec_json(spec, public=self._registry.catalog.has_spec(spec.id))

    async def get_spec(self, request: web.Request) -> web.Response:
        return json_response(self._spec(await self._registry.get_spec(_org(), request.match_info["spec_id"])))

    async def create_spec(self, request: web.Request) -> web.Response:
        body = (await self._body(request, SPEC_SCHEMA)).fields
        body = {k: v for k, v in body.items() if k not in ("id", "update_date", "current_version_id")}
        return json_response(self._spec(await self._registry.create_spec(_org(), body)), 201)

    async def update_spec(self, request: web.Request) -> web.Response:
        body = (await self._body(request, SPEC_SCHEMA)).fields
        update = changes(
            body,
            mutable=("name", "description", "metadata", "current_version_id"),
            replace=request.method == "PUT",
            where="specification",
        )
        spec = await self._registry.update_spec(_org(), request.match_info["spec_id"], update)
        return json_response(self._spec(spec))

    async def delete_spec(self, request: web.Request) -> web.Response:
        await self._registry.delete_spec(_org(), request.match_info["spec_id"])
        return json_response(None, 204)

    async def spec_versions(self, request: web.Request) -> web.Response:
        offset, limit = _page(request)
        count, versions = await self._registry.list_versions(_org(), request.match_info["spec_id"], offset, limit)
        return json_response(page_json(request.url, offset, limit, count, [version_json(v) for v in versions]))

    # ------------------------------------------------------------------------------------------------ versions

    async def list_versions(self, request: web.Request) -> web.Response:
        offset, limit = _page(request)
        scope = Scope.PUBLIC if _public_asked(request) else Scope.OWN
        count, versions = await self._registry.list_versions(_org(), "", offset, limit, scope)
        return json_response(page_json(request.url, offset, limit, count, [version_json(v) for v in versions]))

    async def get_version(self, request: web.Request) -> web.Response:
        version = await self._registry.get_version(_org(), request.match_info["version_id"])
        return json_response(version_json(version))

    async def create_version(self, request: web.Request) -> web.Response:
        body = (await self._body(request, VERSION_SCHEMA)).fields
        for name in ("spec_id", "network_id", "post_processings"):
            if name not in body:
                raise InvalidArgumentError.field(name, "is required")
        version = await self._registry.create_version(
            _org(),
            resource_id(body["spec_id"], "spec_id"),
            resource_id(body["network_id"], "network_id"),
            body["post_processings"],
        )
        return json_response(version_json(version), 201)

    async def delete_version(self, request: web.Request) -> web.Response:
        await self._registry.delete_version(_org(), request.match_info["version_id"])
        return json_response(None, 204)

    # ----------------------------------------------------------------------------------------------- inference

    async def _recognize(self, request: web.Request, target: Target) -> web.Response:
        body = (await self._body(request, INFERENCE_SCHEMA)).fields
        image = image_request(body)
        show_discarded, max_predictions = inference_options(body)
        task = await self._inference.recognize(
            target, image, show_discarded=show_discarded, max_predictions=max_predictions
        )
        return json_response({"task_id": task.id})

    async def infer_spec(self, request: web.Request) -> web.Response:
        return await self._recognize(request, Target(spec_id=request.match_info["spec_id"], organisation=_org()))

    async def infer_version(self, request: web.Request) -> web.Response:
        target = Target(version_id=request.match_info["version_id"], organisation=_org())
        return await self._recognize(request, target)

    async def infer_network(self, request: web.Request) -> web.Response:
        body = (await self._body(request, INFERENCE_SCHEMA)).fields
        image = image_request(body)
        names = body.get("output_tensors") or []
        if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
            raise InvalidArgumentError.field("output_tensors", "must name the network outputs to answer")
        task = await self._inference.infer_network(_org(), request.match_info["network_id"], image, names)
        return json_response({"task_id": task.id})

    # ------------------------------------------------------------------------------------------------ networks

    async def _network_page(self, request: web.Request, scope: Scope) -> web.Response:
        offset, limit = _page(request)
        count, networks = await self._registry.list_networks(_org(), offset, limit, scope)
        return json_response(page_json(request.url, offset, limit, count, [network_json(n) for n in networks]))

    async def list_public_networks(self, request: web.Request) -> web.Response:
        return await self._network_page(request, Scope.PUBLIC)

    async def list_networks(self, request: web.Request) -> web.Response:
        return await self._network_page(request, Scope.PUBLIC if _public_asked(request) else Scope.OWN)

    async def get_network(self, request: web.Request) -> web.Response:
        return json_response(network_json(await self._registry.get_network(_org(), request.match_info["network_id"])))

    async def create_network(self, request: web.Request) -> web.Response:
        """One multipart POST: the network's fields and its files under their own names. The files are spooled
        (hashed on the way) so that the upload use case gets what gRPC's CreateNetwork announces: each file's
        name, size and SHA-256, then its bytes."""
        limits = self._limits
        with Spool(self._staging, max_bytes=limits.max_bytes, max_files=limits.max_files) as spool:
            body = await read_body(request, NETWORK_SCHEMA, max_bytes=self._max_body_bytes, spool=spool)
            fields = {k: v for k, v in body.fields.items() if k != "postprocessings"}
            draft = NetworkDraft(body=fields, files=tuple(UploadFile(f.name, f.size, f.sha256) for f in body.files))

            async def chunks() -> AsyncIterator[tuple[str, bytes]]:
                for spooled in body.files:
                    with spooled.path.open("rb") as handle:
                        while data := handle.read(_READ_CHUNK):
                            yield spooled.name, data

            network = await self._registry.create_network(_org(), draft, chunks())
        return json_response(network_json(network), 201)

    async def update_network(self, request: web.Request) -> web.Response:
        body = (await self._body(request, NETWORK_SCHEMA)).fields
        update = changes(
            body, mutable=("name", "description", "metadata"), replace=request.method == "PUT", where="network"
        )
        network = await self._registry.update_network(_org(), request.match_info["network_id"], update)
        return json_response(network_json(network))

    async def delete_network(self, request: web.Request) -> web.Response:
        await self._registry.delete_network(_org(), request.match_info["network_id"])
        return json_response(None, 204)

    # --------------------------------------------------------------------------------------------------- tasks

    async def get_task(self, request: web.Request) -> web.Response:
        task = await self._tasks.get(request.match_info["task_id"], organisation=_org())
        return json_response(task_json(task))

    async def list_tasks(self, request: web.Request) -> web.Response:
        """``?task_ids=a&task_ids=b`` (or ``task_ids=a,b``), paged over the ids as given: ``batch_wait`` sends
        every pending id on each poll, thousands of them."""
        ids = [i for raw in request.query.getall("task_ids", []) for i in raw.split(",") if i]
        if not ids:
            raise InvalidArgumentError.field("task_ids", "must name at least one task (?task_ids=<id>&task_ids=...)")
        offset, limit = page_bounds(_int_query(request, "offset", 0), _int_query(request, "limit", MAX_PAGE))
        found = (
            await self._tasks.get_many(ids[offset : offset + limit], organisation=_org()) if offset < len(ids) else []
        )
        return json_response(page_json(request.url, offset, limit, len(ids), [task_json(t) for t in found]))
