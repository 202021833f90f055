"""Uploaded Caffe and TensorFlow networks → ONNX models Triton serves (an ONNX upload needs no conversion).

The registry calls one function::

    result = convert_to_onnx(network.framework, {"deploy.prototxt": path, ...}, workdir, options)
    (model_dir / "1" / "model.onnx").write_bytes(result.onnx_model)

then reads the graph's signature and writes ``config.pbtxt`` as for an ONNX upload (``service.triton.repository``,
the one writer), and resolves the tensor names of a preprocessing or post-processing with ``result.tensor_names``.
Supported layers and ops, and what is refused: ``docs/convert.md``.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from service.convert.caffe import convert_caffe
from service.convert.errors import ConversionError, ConverterUnavailableError, UnsupportedLayerError
from service.convert.result import ConversionResult
from service.convert.tensorflow import convert_tensorflow
from service.errors import InvalidArgumentError

__all__ = [
    "FRAMEWORKS",
    "ConversionError",
    "ConversionResult",
    "ConverterOptions",
    "ConverterUnavailableError",
    "UnsupportedLayerError",
    "canonical_framework",
    "convert_to_onnx",
]

FRAMEWORKS: Mapping[str, str] = {
    "nv-caffe-0.x-mod": "caffe",
    "caffe": "caffe",
    "tensorflow-1.x": "tensorflow",
    "tensorflow-2.x": "tensorflow",
    "onnx": "onnx",
}


@dataclass(frozen=True, slots=True)
class ConverterOptions:
    """How conversions run here (the registry builds this from its Settings)."""

    tf_python: Path | None = None
    """The TensorFlow environment's interpreter (``.venv-tf/bin/python``); None: TensorFlow uploads are refused."""

    tf_timeout_s: float = 600.0
    """Longest a TensorFlow conversion may run."""


def canonical_framework(framework: str) -> str:
    """``caffe``, ``tensorflow`` or ``onnx`` for an accepted framework value; INVALID_ARGUMENT otherwise."""
    try:
        return FRAMEWORKS[framework]
    except KeyError:
        accepted = ", ".join(FRAMEWORKS)
        raise InvalidArgumentError.field("framework", f"{framework!r} is not one of {accepted}") from None


def _need(files: Mapping[str, Path], name: str, framework: str) -> Path:
    by_name = {Path(n).name: p for n, p in files.items()}
    if name not in by_name:
        raise InvalidArgumentError.field("files", f"a {framework} network needs {name}")
    return by_name[name]


def _caffe(framework: str, files: Mapping[str, Path], outputs: Sequence[str]) -> ConversionResult:
    prototxt = _need(files, "deploy.prototxt", framework)
    caffemodel = _need(files, "snapshot.caffemodel", framework)
    model = convert_caffe(prototxt.read_bytes(), caffemodel.read_bytes(), outputs=outputs or None)
    sources = {name: blob for name, blob, _ in [*model.inputs, *model.outputs]}
    return ConversionResult(
        framework=framework,
        onnx_model=model.model.SerializeToString(),
        tensor_names={blob: name for name, blob in sources.items()},
        sources=sources,
        notes=model.notes,
    )


def convert_to_onnx(
    framework: str,
    files: Mapping[str, Path],
    workdir: Path,
    options: ConverterOptions | None = None,
    *,
    input_names: Sequence[str] = (),
    output_names: Sequence[str] = (),
    cancel: threading.Event | None = None,
) -> ConversionResult:
    """Convert an uploaded Caffe or TensorFlow network to an ONNX model for Triton.

    ``framework``: ``nv-caffe-0.x-mod`` / ``caffe`` or ``tensorflow-1.x`` / ``tensorflow-2.x`` (an ``onnx``
    network is served as uploaded: asking to convert one is a ValueError, a caller's mistake).
    ``files``: the uploaded files by file name (``deploy.prototxt`` + ``snapshot.caffemodel``; ``saved_model.pb``
    or ``.pbtxt`` + ``variables.index`` + ``variables.data-00000-of-00001``); other files (means) are ignored.
    ``workdir``: a private scratch folder (TensorFlow's SavedModel layout is rebuilt there).
    ``input_names`` / ``output_names`` (optional): tensors to expose, by their names in the uploaded network; by
    default the network's own (Caffe: blobs no layer consumes; TensorFlow: the serving signature, or a frozen
    graph's placeholders and sinks). ``cancel``: an event another thread sets to
    stop a TensorFlow conversion (its process is killed within 0.2 s; the call then raises ConversionError).

    Raises InvalidArgumentError (ConversionError, UnsupportedLayerError) for a network that cannot be converted,
    and FailedPreconditionError (ConverterUnavailableError) when TensorFlow's converter is not installed.
    Blocking and CPU-bound: run it in a worker thread (``asyncio.to_thread``).
    """
    options = options or ConverterOptions()
    kind = canonical_framework(framework)
    if kind == "caffe":
        return _caffe(framework, files, output_names)
    if kind == "tensorflow":
        return convert_tensorflow(
            files,
            workdir,
            python=options.tf_python,
            framework=framework,
            input_names=input_names,
            output_names=output_names,
            timeout_s=options.tf_timeout_s,
            cancel=cancel,
        )
    raise ValueError(f"{framework} networks are served as uploaded: there is nothing to convert")
