"""Every method of the three services fuzzed against a real server in a process of its own.

Two kinds of request: structured (messages built field by field from their descriptors, half of them a valid
request with a few fields changed; strategies.py) and bytes (random bytes, hand-written wire format, damaged
serialisations of valid messages, and for the streams valid messages with such bytes among them). Whatever
arrives, the server answers with a clear status: never INTERNAL, UNKNOWN or DATA_LOSS (a failure in the server's
own code), always with a ``google.rpc.ErrorInfo`` and a short message; it neither dies nor holds a call past its
deadline, and afterwards still recognises a known image and is SERVING.

``make test`` runs a few dozen derandomised examples a method (reproducible); ``make fuzz`` runs many more with
random seeds (SIGHTLINE_FUZZ_EXAMPLES, SIGHTLINE_FUZZ_RANDOM; docs/fuzzing.md). A summary of the status codes seen
is printed at the end (``pytest -s``).
"""

from __future__ import annotations

import base64
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

import grpc
import pytest
from google.protobuf import message_factory, timestamp_pb2
from google.protobuf.descriptor import Descriptor, ServiceDescriptor
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2
from grpc_status import rpc_status
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from service._proto.sightline.v1 import inference_pb2, networks_pb2, recognition_pb2, streams_pb2, tasks_pb2
from tests.e2e.external import ROOT, ExternalService
from tests.fuzz.strategies import LEARNED, garbage, requests, valid_requests
from tests.helpers import TritonFixture

pytestmark = pytest.mark.e2e

EXAMPLES = int(os.environ.get("SIGHTLINE_FUZZ_EXAMPLES", "30"))
"""Examples per method and kind of request."""
RANDOM = os.environ.get("SIGHTLINE_FUZZ_RANDOM", "") not in ("", "0")
"""Random seeds and hypothesis's example database (``make fuzz``); otherwise derandomised, as CI wants."""
TIMEOUT_S = 20.0
MAX_MESSAGE_CHARS = 2000
CLIENT_METADATA_LIMIT = 8 * 1024
FORBIDDEN = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DATA_LOSS}
RED = (ROOT / "samples" / "red.png").read_bytes()

SERVICES: list[ServiceDescriptor] = [
    recognition_pb2.DESCRIPTOR.services_by_name["RecognitionService"],
    networks_pb2.DESCRIPTOR.services_by_name["NetworkService"],
    tasks_pb2.DESCRIPTOR.services_by_name["TaskService"],
]


@dataclass(frozen=True, slots=True)
class Method:
    name: str
    path: str
    request: Descriptor
    response: Descriptor
    client_streaming: bool
    server_streaming: bool


METHODS = [
    Method(m.name, f"/{s.full_name}/{m.name}", m.input_type, m.output_type, m.client_streaming, m.server_streaming)
    for s in SERVICES
    for m in s.methods
]

# Derandomised runs must not replay what an earlier random run stored: CI sees the same examples every time, and a
# failure there is reported as found, unshrunk: shrinking a call to the server costs tens of seconds. ``make fuzz``
# shrinks, to the smallest request that still fails.
FUZZ = settings(
    max_examples=EXAMPLES,
    database=settings().database if RANDOM else None,
    phases=list(Phase) if RANDOM else [Phase.explicit, Phase.generate],
    deadline=None,
    derandomize=not RANDOM,
    print_blob=RANDOM,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.function_scoped_fixture,
        HealthCheck.filter_too_much,
        HealthCheck.data_too_large,
    ],
)

COUNTS: Counter[tuple[str, str]] = Counter()
"""(method, status code) of every answer; frames answered ERROR in a stream count as ``frame:<code>``."""


@pytest.fixture(scope="module")
def service(triton: TritonFixture, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExternalService]:
    """A throwaway server on the session's Triton: its own data folder, registry and uploads. URL image sources
    are off so that no fuzzed string makes the server look up or fetch a host (tests/e2e/test_url_sources.py
    covers them)."""
    external = ExternalService(
        tmp_path_factory.mktemp("fuzz"), SIGHTLINE_TRITON_URL=triton.url, SIGHTLINE_URL_ENABLED="false"
    )
    with external.running():
        yield external
    print(summary())


@pytest.fixture(scope="module")
def channel(service: ExternalService) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(service.address, options=[("grpc.max_metadata_size", 4 * CLIENT_METADATA_LIMIT)]) as ch:
        yield ch


def summary() -> str:
    lines = [f"fuzzing: {sum(COUNTS.values())} answers ({EXAMPLES} examples a method and kind)"]
    totals: Counter[str] = Counter()
    for (_, code), n in COUNTS.items():
        totals[code] += n
    lines.append("  all: " + ", ".join(f"{code} {n}" for code, n in totals.most_common()))
    for method in METHODS:
        seen = {code: n for (name, code), n in COUNTS.items() if name == method.name}
        lines.append(f"  {method.name}: " + ", ".join(f"{c} {n}" for c, n in sorted(seen.items(), key=lambda i: -i[1])))
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------- checks


def shown(payloads: Sequence[bytes]) -> str:
    """The request as the assertion shows it: base64 of each message, so that the case can be replayed."""
    parts = []
    for data in payloads:
        text = base64.b64encode(data).decode()
        parts.append(text if len(text) <= 4000 else f"{text[:4000]}... ({len(data)} bytes)")
    return "[" + ", ".join(repr(p) for p in parts) + "]"


def error_info(status: status_pb2.Status | None) -> error_details_pb2.ErrorInfo | None:
    for packed in status.details if status is not None else ():
        if packed.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            packed.Unpack(info)
            return info
    return None


def trailer_bytes(message: str, trailers: Sequence[tuple[str, str | bytes]]) -> int:
    """The size of an error's trailers on the wire: grpc-message percent-encoded (every byte of UTF-8 outside
    printable ASCII takes three), ``-bin`` values in base64."""
    encoded = message.encode()
    size = len("grpc-message") + sum(1 if 0x20 <= b <= 0x7E and b != 0x25 else 3 for b in encoded)
    for key, value in trailers:
        size += len(key) + (4 * -(-len(value) // 3) if key.endswith("-bin") else len(value))
    return size


def check_error(service: ExternalService, method: Method, payloads: Sequence[bytes], error: grpc.RpcError) -> str:
    call = cast(grpc.Call, error)
    code = call.code()
    message = call.details() or ""
    where = f"{method.name}({shown(payloads)})"
    assert code not in FORBIDDEN, f"{where} answered {code.name}: {message}\nserver log:\n{service.tail(60)}"
    trailers = trailer_bytes(message, call.trailing_metadata() or ())
    # Clients refuse trailers past 8 KiB by default (grpc.max_metadata_size; between 8 and 16 KiB at random), and
    # then see RESOURCE_EXHAUSTED in place of the server's status; this channel takes more, to measure them.
    assert trailers < CLIENT_METADATA_LIMIT, f"{where} answered {code.name} with {trailers} bytes of trailers"
    try:
        status = rpc_status.from_call(call)
    except ValueError as mismatch:  # grpc-status and the google.rpc.Status detail disagree
        raise AssertionError(f"{where} answered {code.name}: {mismatch}") from mismatch
    if code is grpc.StatusCode.DEADLINE_EXCEEDED and status is None:
        raise AssertionError(f"{where} still unanswered after {TIMEOUT_S} s (the client's deadline)")
    assert message, f"{where} answered {code.name} without a message"
    assert len(message) < MAX_MESSAGE_CHARS, f"{where} answered {code.name} with {len(message)} characters"
    assert error_info(status) is not None, f"{where} answered {code.name} without ErrorInfo: {message}"
    return code.name


def check_frames(method: Method, payloads: Sequence[bytes], responses: Sequence[bytes]) -> None:
    """The per-frame errors of a stream follow the same rules as statuses."""
    for data in responses:
        response = streams_pb2.StreamRecognizeResponse.FromString(data)
        if response.status != streams_pb2.ERROR:
            continue
        code = code_pb2.Code.Name(response.error.code)
        where = f"{method.name}({shown(payloads)}), frame {response.frame_id}"
        assert code not in ("INTERNAL", "UNKNOWN", "DATA_LOSS", "OK"), f"{where}: {code} {response.error.message}"
        assert 0 < len(response.error.message) < MAX_MESSAGE_CHARS, f"{where}: message {response.error.message!r}"
        assert error_info(response.error) is not None, f"{where}: {code} without ErrorInfo"
        COUNTS[(method.name, f"frame:{code}")] += 1


def learn(method: Method, responses: Sequence[bytes]) -> None:
    """Remember the ids an answer hands out, for later requests to name (strategies.LEARNED)."""
    cls = message_factory.GetMessageClass(method.response)
    for data in responses:
        response: Any = cls.FromString(data)
        for name in ("id", "task_id"):
            if name in method.response.fields_by_name:
                LEARNED.add(getattr(response, name))


def send(service: ExternalService, channel: grpc.Channel, method: Method, payloads: Sequence[bytes]) -> str:
    """Call ``method`` with ``payloads`` as they are (no serializer: bytes go on the wire untouched), check the
    answer, and return its status code's name."""
    responses: list[bytes]
    bidi: grpc.StreamStreamMultiCallable[bytes, bytes]
    upload: grpc.StreamUnaryMultiCallable[bytes, bytes]
    unary: grpc.UnaryUnaryMultiCallable[bytes, bytes]
    try:
        if method.client_streaming and method.server_streaming:
            bidi = channel.stream_stream(method.path, request_serializer=None, response_deserializer=None)
            responses = list(bidi(iter(payloads), timeout=TIMEOUT_S))
        elif method.client_streaming:
            upload = channel.stream_unary(method.path, request_serializer=None, response_deserializer=None)
            responses = [upload(iter(payloads), timeout=TIMEOUT_S)]
        else:
            unary = channel.unary_unary(method.path, request_serializer=None, response_deserializer=None)
            responses = [unary(payloads[0], timeout=TIMEOUT_S)]
    except grpc.RpcError as error:
        code = check_error(service, method, payloads, error)
    else:
        code = "OK"
        if method.server_streaming:
            check_frames(method, payloads, responses)
        learn(method, responses)
    service.assert_alive()
    COUNTS[(method.name, code)] += 1
    return code


# ---------------------------------------------------------------------------------------- strategies


def serialized(method: Method) -> st.SearchStrategy[bytes]:
    return requests(method.request).map(lambda m: m.SerializeToString())


def valid_serialized(method: Method) -> st.SearchStrategy[bytes]:
    return st.sampled_from([m.SerializeToString() for m in valid_requests(method.request)])


@st.composite
def edited(draw: st.DrawFn, base: list[bytes], element: st.SearchStrategy[bytes]) -> list[bytes]:
    """``base`` with a few of its messages replaced, dropped, repeated or with ``element`` inserted."""
    items = list(base)
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["replace", "insert", "drop", "repeat"]))
        where = draw(st.integers(0, len(items)))
        if op == "insert" or not items:
            items.insert(where, draw(element))
        elif op == "replace":
            items[min(where, len(items) - 1)] = draw(element)
        elif op == "drop":
            del items[min(where, len(items) - 1)]
        else:
            items.insert(where, items[min(where, len(items) - 1)])
    return items


def structured_calls(method: Method) -> st.SearchStrategy[list[bytes]]:
    if not method.client_streaming:
        return serialized(method).map(lambda data: [data])
    # A stream: the valid conversation (an upload then its chunks; a config then frames) with some messages
    # fuzzed, or fuzzed messages only, none included.
    base = [m.SerializeToString() for m in valid_requests(method.request)]
    return st.one_of(edited(base, serialized(method)), st.lists(serialized(method), max_size=5))


def bytes_calls(method: Method) -> st.SearchStrategy[list[bytes]]:
    bad = garbage(lambda: valid_serialized(method))
    if not method.client_streaming:
        return bad.map(lambda data: [data])
    base = [m.SerializeToString() for m in valid_requests(method.request)]
    return st.one_of(edited(base, bad), st.lists(bad, min_size=1, max_size=3))


# --------------------------------------------------------------------------------------------- tests

IDS = [m.name for m in METHODS]


def test_every_method_is_fuzzed() -> None:
    """A method added to a service is fuzzed too, and the valid requests the strategies start from exist."""
    assert len(METHODS) == sum(len(s.methods) for s in SERVICES) >= 20
    for method in METHODS:
        assert valid_requests(method.request)[0].ByteSize() > 0, f"no valid request for {method.name}"


@pytest.mark.parametrize("method", METHODS, ids=IDS)
@FUZZ
@given(data=st.data())
def test_structured_requests(
    service: ExternalService, channel: grpc.Channel, method: Method, data: st.DataObject
) -> None:
    payloads = data.draw(structured_calls(method), label="messages")
    send(service, channel, method, payloads)


@pytest.mark.parametrize("method", METHODS, ids=IDS)
@FUZZ
@given(data=st.data())
def test_bytes(service: ExternalService, channel: grpc.Channel, method: Method, data: st.DataObject) -> None:
    payloads = data.draw(bytes_calls(method), label="bytes")
    send(service, channel, method, payloads)


def _with_timestamp(method: str, index: int, path: str, **value: int) -> list[bytes]:
    """The valid conversation of ``method`` with the Timestamp at ``path`` (in message ``index``) set to ``value``."""
    found = next(m for m in METHODS if m.name == method)
    messages = valid_requests(found.request)
    target: Any = messages[index]
    *parents, leaf = path.split(".")
    for name in parents:
        target = getattr(target, name)
    getattr(target, leaf).CopyFrom(timestamp_pb2.Timestamp(**value))
    return (
        [m.SerializeToString() for m in messages] if found.client_streaming else [messages[index].SerializeToString()]
    )


LOWEST = -(2**63)
REGRESSIONS = {
    # Found by this fuzzer: a read-only Timestamp out of Timestamp's range (year 1 to 9999, nanos 0 to 999999999)
    # in a request made json_format raise ValueError in service/api/converters.py's _json, answered INTERNAL.
    "create-spec-update-date-seconds": (
        "CreateSpecification",
        _with_timestamp("CreateSpecification", 0, "specification.update_date", seconds=LOWEST),
    ),
    "create-spec-update-date-nanos": (
        "CreateSpecification",
        _with_timestamp("CreateSpecification", 0, "specification.update_date", nanos=-1),
    ),
    "update-spec-update-date": (
        "UpdateSpecification",
        _with_timestamp("UpdateSpecification", 0, "specification.update_date", seconds=2**63 - 1),
    ),
    "create-version-update-date": (
        "CreateVersion",
        _with_timestamp("CreateVersion", 0, "version.update_date", seconds=LOWEST),
    ),
    "create-network-create-date": (
        "CreateNetwork",
        _with_timestamp("CreateNetwork", 0, "upload.network.create_date", seconds=LOWEST),
    ),
    "update-network-update-date": (
        "UpdateNetwork",
        _with_timestamp("UpdateNetwork", 0, "network.update_date", nanos=10**9),
    ),
    "stream-frame-timestamp": (
        "StreamRecognize",
        _with_timestamp("StreamRecognize", 2, "frame.timestamp", seconds=LOWEST),
    ),
    # Found by this fuzzer: an id of digits by str.isdigit but not by int() (superscript one) made the store's
    # _user_id raise ValueError, answered INTERNAL, on every call that looks up a user's resource by id.
    "delete-network-superscript-id": (
        "DeleteNetwork",
        [networks_pb2.DeleteNetworkRequest(network_id="¹").SerializeToString()],
    ),
    "get-spec-superscript-id": (
        "GetSpecification",
        [recognition_pb2.GetSpecificationRequest(spec_id="¹").SerializeToString()],
    ),
    "get-version-superscript-id": (
        "GetVersion",
        [recognition_pb2.GetVersionRequest(version_id="²").SerializeToString()],
    ),
    "delete-spec-superscript-id": (
        "DeleteSpecification",
        [recognition_pb2.DeleteSpecificationRequest(spec_id="³").SerializeToString()],
    ),
    # Found by this fuzzer: a long non-ASCII update_mask path gave trailers past the clients' 8 KiB default (limits
    # in characters, not bytes): the client saw RESOURCE_EXHAUSTED, at random, against an INVALID_ARGUMENT detail.
    "update-network-long-mask-path": (
        "UpdateNetwork",
        [
            networks_pb2.UpdateNetworkRequest(
                network=networks_pb2.Network(id="1", name="renamed", metadata={"k": "v"}),
                update_mask={"paths": ["name", "metadata", "é" * 3000, "é" * 3000, ""]},
            ).SerializeToString()
        ],
    ),
}
"""Requests that once failed, replayed exactly, every run; the stream's frame timestamp, which the server only
echoes in binary, is there to keep it so."""


@pytest.mark.parametrize(("method_name", "payloads"), list(REGRESSIONS.values()), ids=list(REGRESSIONS))
def test_regressions(service: ExternalService, channel: grpc.Channel, method_name: str, payloads: list[bytes]) -> None:
    method = next(m for m in METHODS if m.name == method_name)
    send(service, channel, method, payloads)


def test_still_right_after_the_barrage(service: ExternalService, channel: grpc.Channel) -> None:
    service.assert_alive()
    recognize = channel.unary_unary(
        "/sightline.v1.RecognitionService/Recognize",
        request_serializer=inference_pb2.RecognizeRequest.SerializeToString,
        response_deserializer=inference_pb2.RecognitionResult.FromString,
    )
    request = inference_pb2.RecognizeRequest(spec_id="colors-v1", inputs=[inference_pb2.Input(image={"content": RED})])
    result: Message = recognize(request, timeout=TIMEOUT_S)
    assert isinstance(result, inference_pb2.RecognitionResult)
    assert result.outputs[0].labels.predicted[0].label_name == "red"
    assert service.health() == health_pb2.HealthCheckResponse.SERVING
    # A failure outside any call (a background task, a stream's reader) reaches no client: only the log shows it.
    log = service.log.read_text(errors="replace")
    assert "Traceback" not in log, f"a traceback in the server's log:\n{service.tail(80)}"
