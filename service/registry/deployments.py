"""Uploaded networks in Triton: loading a placed network (``Deployments.deploy``), taking one away
(``discard``), and the start-up work that brings the database, the model repository and Triton back in line
after a stop (``reconcile`` before Triton starts, ``Deployments.resume`` once it is up).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any

from service.errors import FailedPreconditionError, SightlineError
from service.registry.means import MeanCache
from service.store import Store, TaskRecord
from service.tasks import TaskRunner
from service.triton.gateway import TritonGateway
from service.triton.repository import ModelRepository

__all__ = ["Deployments", "reconcile"]

log = logging.getLogger(__name__)


class Deployments:
    """Loads uploaded networks into Triton and unloads them; ``means`` is the cache whose entries a discarded
    network loses; a load waits at most ``load_timeout_s``."""

    def __init__(
        self,
        store: Store,
        repository: ModelRepository,
        gateway: TritonGateway,
        tasks: TaskRunner[Any],
        means: MeanCache,
        *,
        load_timeout_s: float = 300.0,
    ) -> None:
        self._store = store
        self._repo = repository
        self._gateway = gateway
        self._tasks = tasks
        self._means = means
        self._load_timeout_s = load_timeout_s

    async def deploy(self, network_id: str) -> None:
        """Load a placed network into Triton and mark it ``ready``; on failure remove every trace of it but its
        task, and raise ``FailedPreconditionError`` with the reason (the task's outcome)."""
        model = self._repo.model_name(network_id)
        try:
            await self._gateway.load_model(model, timeout_s=self._load_timeout_s)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            reason = exc.message if isinstance(exc, SightlineError) else "internal error"
            log.warning("network %s failed to deploy: %s", network_id, reason)
            await self._store.delete_network(None, network_id)
            await self.discard(network_id)
            raise FailedPreconditionError(f"the network could not be deployed, and was removed: {reason}") from exc
        if not await self._store.set_network_state(network_id, "ready"):
            log.info("network %s was deleted while it loaded; unloading it", network_id)
            await self.discard(network_id)
            raise FailedPreconditionError("the network was deleted while it was being deployed")
        log.info("network %s is ready (model %s)", network_id, model)

    async def discard(self, network_id: str) -> None:
        """Unload a network's model and remove its folder (its row is gone already: a crash here leaves a folder
        without a row, which the next start-up removes). An unload Triton refuses is logged, not raised."""
        model = self._repo.model_name(network_id)
        try:
            await self._gateway.unload_model(model)
        except SightlineError as exc:
            log.warning("could not unload model %s: %s", model, exc.message)
        self._gateway.forget(model)
        self._means.forget(network_id)
        await asyncio.to_thread(self._repo.remove, network_id)

    async def resume(self) -> None:
        """After Triton is up: unload leftovers of ours it still serves, retry the deployments under way, and load
        ready networks a (remote) Triton does not serve. Triton's failures are logged, never raised."""
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
                self._tasks.start(task, functools.partial(self.deploy, record.id))
            elif self._repo.model_name(record.id) not in loaded:
                log.info("loading network %s, which Triton does not serve", record.id)
                try:
                    await self._gateway.load_model(self._repo.model_name(record.id), timeout_s=self._load_timeout_s)
                except SightlineError as exc:
                    log.error("network %s could not be loaded: %s", record.id, exc.message)


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
