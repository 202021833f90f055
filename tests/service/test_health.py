"""The health monitor over a ``FakeTritonGateway`` and the real ``grpc.health.v1`` servicer: the services follow
Triton, the process follows it only when the Triton is the embedded one, a model is SERVING only while Triton has it
ready, ``models_ready`` waits for all of them at once, and draining is for good."""

from __future__ import annotations

from typing import Any

from grpc_health.v1 import health, health_pb2

from service.health import HealthMonitor, model_service_name
from service.triton.gateway import TritonGateway
from service.triton.tensors import Signature
from tests.fakes import FakeTritonGateway

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICES = ("sightline.v1.RecognitionService", "sightline.v1.NetworkService")
MODELS = ("colors", "shapes-yolo")


def monitor(*, embedded: bool = False) -> tuple[HealthMonitor, health.aio.HealthServicer, FakeTritonGateway]:
    empty = Signature((), (), 0)
    gateway = FakeTritonGateway(dict.fromkeys(MODELS, empty), {})
    servicer = health.aio.HealthServicer()
    checked: TritonGateway = gateway
    return HealthMonitor(servicer, checked, SERVICES, MODELS, process_follows_triton=embedded), servicer, gateway


async def status(servicer: Any, service: str) -> Any:
    response = await servicer.Check(health_pb2.HealthCheckRequest(service=service), None)
    return response.status


async def statuses(servicer: Any) -> dict[str, Any]:
    names = ("", *SERVICES, *(model_service_name(m) for m in MODELS))
    return {name: await status(servicer, name) for name in names}


async def test_everything_serves_while_triton_has_every_model_ready() -> None:
    mon, servicer, _ = monitor()
    await mon.check_once()
    assert set((await statuses(servicer)).values()) == {SERVING}
    assert mon.triton_reachable
    assert mon.models_ready.is_set()


async def test_a_model_triton_does_not_have_ready_is_not_serving_and_holds_models_ready_back() -> None:
    mon, servicer, gateway = monitor()
    gateway.loaded.discard("shapes-yolo")
    await mon.check_once()
    got = await statuses(servicer)
    assert got[model_service_name("shapes-yolo")] == NOT_SERVING
    assert got[model_service_name("colors")] == SERVING
    assert all(got[s] == SERVING for s in SERVICES)
    assert not mon.models_ready.is_set()
    gateway.loaded.add("shapes-yolo")
    await mon.check_once()
    assert mon.models_ready.is_set()


async def test_with_a_remote_triton_away_the_services_stop_but_the_process_serves() -> None:
    mon, servicer, gateway = monitor(embedded=False)
    await mon.check_once()
    gateway.closed = True  # server_live() is False
    await mon.check_once()
    got = await statuses(servicer)
    assert got[""] == SERVING
    assert {got[name] for name in got if name} == {NOT_SERVING}
    assert not mon.triton_reachable


async def test_with_the_embedded_triton_away_the_process_stops_too() -> None:
    mon, servicer, gateway = monitor(embedded=True)
    gateway.closed = True
    await mon.check_once()
    assert set((await statuses(servicer)).values()) == {NOT_SERVING}
    assert not mon.models_ready.is_set()


async def test_triton_down_says_not_serving_at_once_though_the_last_check_found_it_live() -> None:
    mon, servicer, _ = monitor(embedded=True)
    await mon.check_once()
    await mon.triton_down()
    assert set((await statuses(servicer)).values()) == {NOT_SERVING}
    assert not mon.triton_reachable


async def test_after_drain_nothing_serves_again_even_when_triton_answers() -> None:
    mon, servicer, _ = monitor()
    await mon.start()
    await mon.drain()
    await mon.check_once()
    await mon.triton_down()
    assert set((await statuses(servicer)).values()) == {NOT_SERVING}
