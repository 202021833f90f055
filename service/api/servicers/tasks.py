from __future__ import annotations

from typing import Any, TypeAlias

import grpc

from service._proto.sightline.v1 import tasks_pb2, tasks_pb2_grpc
from service.api.converters import task_to_proto
from service.api.errors import grpc_errors
from service.auth import current_principal
from service.domain.results import TaskData
from service.tasks import TaskRunner

__all__ = ["TaskServicer"]

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]


class TaskServicer(tasks_pb2_grpc.TaskServiceServicer):
    def __init__(self, tasks: TaskRunner[TaskData]) -> None:
        self._tasks = tasks

    @grpc_errors
    async def GetTask(self, request: tasks_pb2.GetTaskRequest, context: Context) -> tasks_pb2.Task:
        task = await self._tasks.get(request.task_id, organisation=current_principal().organisation)
        return task_to_proto(task)

    @grpc_errors
    async def BatchGetTasks(
        self, request: tasks_pb2.BatchGetTasksRequest, context: Context
    ) -> tasks_pb2.BatchGetTasksResponse:
        found = await self._tasks.get_many(list(request.task_ids), organisation=current_principal().organisation)
        return tasks_pb2.BatchGetTasksResponse(tasks=[task_to_proto(t) for t in found])
