"""Bad images end to end: each one through Recognize on the real server and Triton, answered with the right status,
and the server still recognising good images afterwards."""

from __future__ import annotations

import io
from typing import TypeAlias

import cv2
import grpc
import numpy as np
import pytest
from PIL import Image

from service._proto.sightline.v1 import recognition_pb2_grpc
from tests.e2e.helpers import COLORS, request
from tests.fuzz.images_corpus import BAD_IMAGES
from tests.helpers import ROOT, cv2_jpeg, encode

Stub: TypeAlias = recognition_pb2_grpc.RecognitionServiceStub
CODES = {
    "InvalidArgumentError": grpc.StatusCode.INVALID_ARGUMENT,
    "ResourceExhaustedError": grpc.StatusCode.RESOURCE_EXHAUSTED,
}


@pytest.mark.parametrize("name", list(BAD_IMAGES))
async def test_bad_image_gets_its_status(recognition: Stub, name: str) -> None:
    make, expected = BAD_IMAGES[name]
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await recognition.Recognize(request(make()))
    assert error.value.code() == CODES[expected.__name__]
    details = error.value.details() or ""
    if expected.__name__ == "ResourceExhaustedError":
        assert "SIGHTLINE_MAX_IMAGE_PIXELS" in details
    else:
        assert "could not be decoded" in details


async def test_server_still_recognises_after_bad_images(recognition: Stub) -> None:
    for make, _ in BAD_IMAGES.values():
        with pytest.raises(grpc.aio.AioRpcError):
            await recognition.Recognize(request(make()))
    red = np.full((60, 80, 3), COLORS["red"], dtype=np.uint8)
    result = await recognition.Recognize(request(encode(red)))
    assert result.outputs[0].labels.predicted[0].label_name == "red"


async def test_dark_16_bit_gray_png_is_black(recognition: Stub) -> None:
    # 4096 of 65535 is grey 16 of 255: dark. Converted by clipping, as before, it was white.
    dark = np.full((60, 80), 4096, dtype=np.uint16)
    for data in (bytes(cv2.imencode(".png", dark)[1]), encode(dark)):
        result = await recognition.Recognize(request(data))
        assert result.outputs[0].labels.predicted[0].label_name == "black"


async def test_reduced_scale_jpeg_gives_the_same_boxes(recognition: Stub) -> None:
    # The sample scene upscaled 4x (1280 x 960): as PNG it is decoded at full size, as JPEG at 1/4 (320 x 240, still
    # over the network's 128 x 128). Boxes are normalised, so both must agree.
    scene = Image.open(ROOT / "samples" / "shapes-scene.png").convert("RGB")
    large = np.asarray(scene.resize((1280, 960), Image.Resampling.BICUBIC), dtype=np.uint8)
    png = encode(large)
    jpeg = cv2_jpeg(np.ascontiguousarray(large[..., ::-1]), quality=95)
    with Image.open(io.BytesIO(jpeg)) as opened:
        opened.draft("RGB", (128, 128))
        assert opened.size == (320, 240)  # the scale the service's draft picks for a 128 x 128 input
    answers = []
    for data in (png, jpeg):
        result = await recognition.Recognize(request(data, spec="shapes-yolo-v1"))
        answers.append(
            sorted(
                (p.label_name, p.roi.bbox.xmin, p.roi.bbox.ymin, p.roi.bbox.xmax, p.roi.bbox.ymax)
                for p in result.outputs[0].labels.predicted
            )
        )
    full, reduced = answers
    assert len(full) >= 3
    assert [a[0] for a in full] == [b[0] for b in reduced]
    for a, b in zip(full, reduced, strict=True):
        assert np.abs(np.array(a[1:]) - np.array(b[1:])).max() < 0.02, (a, b)
