"""A Triton Python-backend model for the tests: the colors network's answer, 60 ms an execution, one at a time.

It makes "a slow model" for drop policies, latency limits and cancellation. Copied into a test repository as
``slow-colors/1/model.py`` beside the bundled colors model's metadata.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

sys.path[:0] = [p for p in os.environ.get("SIGHTLINE_BACKEND_PATH", "").split(os.pathsep) if p]

import numpy as np  # noqa: E402
import triton_python_backend_utils as pb_utils  # noqa: E402

PROTOTYPES = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [0, 0, 0], [1, 1, 1]], dtype=np.float32) - 0.5
DELAY_S = 0.06


class TritonPythonModel:
    def execute(self, requests: list[Any]) -> list[Any]:
        time.sleep(DELAY_S)
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "data").as_numpy()  # (B, 3, H, W), minus 0.5
            pixels = x.reshape(x.shape[0], 3, -1).transpose(0, 2, 1)  # (B, HW, 3)
            distances = ((pixels[:, :, None, :] - PROTOTYPES[None, None]) ** 2).sum(axis=3)
            nearest = distances.argmin(axis=2)  # (B, HW)
            share = np.stack([(nearest == k).mean(axis=1) for k in range(6)], axis=1).astype(np.float32)
            responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("share", share)]))
        return responses
