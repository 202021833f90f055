"""Detection decoders: one frozen dataclass per kind of output, each an :class:`OutputDecoder`.

- :class:`AnchoredOutput`: Faster-RCNN (v0.7 ``anchored_output``);
- :class:`DirectOutput`: TensorFlow detection API (v0.7 ``direct_output``);
- :class:`YoloOutput`: YOLOv2 region layer (v0.7 ``yolo_output``);
- :class:`Yolov5Output`, :class:`Yolov8Output`: ultralytics heads (beyond v0.7).
"""

from __future__ import annotations

from postprocess.decoders.anchored import AnchoredOutput
from postprocess.decoders.base import Candidates, Layout, OutputDecoder
from postprocess.decoders.direct import DirectOutput
from postprocess.decoders.yolo import YoloOutput, Yolov5Output, Yolov8Output

__all__ = [
    "AnchoredOutput",
    "Candidates",
    "DirectOutput",
    "Layout",
    "OutputDecoder",
    "YoloOutput",
    "Yolov5Output",
    "Yolov8Output",
]
