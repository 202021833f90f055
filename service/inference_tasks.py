"""The use case of v0.7's asynchronous inference: check the request now, run it as a task, answer its id.

Checking first means that an unknown specification, version or network is answered NOT_FOUND by the call
itself, not buried in a task that fails later; what needs the image (decoding, the network) happens in the
task. While Triton is known to be down the call itself is answered UNAVAILABLE (503 in REST), with a retry
delay, rather than with a task bound to fail: clients retry a transient status, never a failed task. Both
transports use it: gRPC's ``Infer`` and the REST facade's ``.../inference`` endpoints.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from service.domain import ImageRequest, Target
from service.domain.results import TaskData, TensorsResult
from service.errors import UnavailableError
from service.recognition import Recognizer
from service.registry import Registry
from service.tasks import Task, TaskRunner

__all__ = ["InferenceTasks"]


class InferenceTasks:
    """Recognition and raw network inference as tasks of ``tasks``."""

    def __init__(
        self,
        recognizer: Recognizer,
        registry: Registry,
        tasks: TaskRunner[TaskData],
        *,
        triton_ready: Callable[[], bool] = lambda: True,
    ) -> None:
        self._recognizer = recognizer
        self._registry = registry
        self._tasks = tasks
        self._triton_ready = triton_ready

    def _check_triton(self) -> None:
        if not self._triton_ready():
            raise UnavailableError("Triton is not reachable at the moment; retry the call shortly")

    async def recognize(
        self, target: Target, image: ImageRequest, *, show_discarded: bool, max_predictions: int
    ) -> Task[TaskData]:
        """A pending task recognising ``image`` with ``target`` (its organisation's view)."""
        await self._recognizer.resolve(target)
        self._check_triton()

        async def work() -> TaskData:
            return await self._recognizer.recognize(
                target, image, show_discarded=show_discarded, max_predictions=max_predictions
            )

        return await self._tasks.submit(work, organisation=target.organisation)

    async def infer_network(
        self, organisation: str, network_id: str, image: ImageRequest, output_names: Sequence[str]
    ) -> Task[TaskData]:
        """A pending task running a network raw on ``image``; its data is the ``output_names`` tensors."""
        await self._registry.get_network(organisation, network_id)
        self._check_triton()
        names = list(output_names)

        async def work() -> TaskData:
            outputs = await self._registry.infer_network(organisation, network_id, image, names)
            return TensorsResult.from_arrays(outputs)

        return await self._tasks.submit(work, organisation=organisation)
