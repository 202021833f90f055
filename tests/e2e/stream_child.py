"""A client process that streams frames as fast as the server takes them and prints a line per result.

``python -m tests.e2e.stream_child ADDRESS SPEC [unary]``: the tests kill it with SIGKILL mid-stream, as a
crashing camera client or a closed laptop would end a stream (no cancel, no half-close: the socket just goes).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import grpc

from service._proto.sightline.v1 import inference_pb2, recognition_pb2_grpc, streams_pb2
from tests.e2e.external import ROOT

SCENE = (ROOT / "samples" / "shapes-scene.png").read_bytes()


def requests(spec: str, max_in_flight: int = 8) -> Iterator[streams_pb2.StreamRecognizeRequest]:
    """A config, then the same encoded scene forever, as fast as gRPC's flow control lets it go."""
    yield streams_pb2.StreamRecognizeRequest(config=streams_pb2.StreamConfig(spec_id=spec, max_in_flight=max_in_flight))
    frame_id = 0
    while True:
        yield streams_pb2.StreamRecognizeRequest(frame=streams_pb2.Frame(frame_id=frame_id, encoded=SCENE))
        frame_id += 1


def main() -> None:
    address, spec = sys.argv[1], sys.argv[2]
    with grpc.insecure_channel(address) as channel:
        stub = recognition_pb2_grpc.RecognitionServiceStub(channel)
        if sys.argv[3:] == ["unary"]:
            image = inference_pb2.ImageInput(content=SCENE)
            while True:
                stub.Recognize(inference_pb2.RecognizeRequest(spec_id=spec, inputs=[inference_pb2.Input(image=image)]))
                print("result", flush=True)
        for _ in stub.StreamRecognize(requests(spec)):
            print("result", flush=True)


if __name__ == "__main__":
    main()
