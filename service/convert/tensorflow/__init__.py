"""TensorFlow networks (SavedModel or frozen GraphDef) → ONNX, through tf2onnx in a separate Python environment.

The service's environment cannot hold TensorFlow (it needs numpy 2 and protobuf 7; the embedded Triton's Python
backend needs numpy < 2), so conversion runs ``worker.py`` with the TensorFlow environment's interpreter
(``make tf-env`` builds ``.venv-tf``; the registry passes its path from ``SIGHTLINE_TF_PYTHON``). Without it, a
TensorFlow upload fails with FAILED_PRECONDITION and a message saying how to enable it.

Names: ONNX tensors are named like Triton's TensorFlow GraphDef backend names them (``image_tensor`` for the graph
tensor ``image_tensor:0``), or by signature key for an object-based (TensorFlow 2.x) SavedModel. The result's
``tensor_names`` accepts the graph name with and without ``:0`` and the signature keys, so the v0.7 names of a
preprocessing or post-processing keep working.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.convert.errors import ConversionError, ConverterUnavailableError, UnsupportedLayerError
from service.convert.onnx_model import load_model, rename_tensors
from service.convert.result import ConversionResult

__all__ = ["ENABLE_HINT", "WORKER", "convert_tensorflow", "converter_status", "default_python", "detect_format"]

log = logging.getLogger(__name__)

WORKER = Path(__file__).resolve().with_name("worker.py")
ENABLE_HINT = (
    "TensorFlow networks need the TensorFlow converter, which lives in an environment of its own: "
    "run `make tf-env` and start the service with SIGHTLINE_TF_PYTHON set to the absolute path of "
    ".venv-tf/bin/python (`make run TF=1` does both)"
)
_USER_ERROR = 2
_UNSUPPORTED = 3
_POLL_S = 0.2


@dataclass(frozen=True, slots=True)
class _Done:
    returncode: int
    stderr: str


def detect_format(data: bytes) -> str:
    """``savedmodel`` or ``graphdef`` for a binary ``saved_model.pb``, from its first field's wire type.

    A SavedModel starts with ``saved_model_schema_version`` (field 1, a varint) or its MetaGraphs (field 2); a
    GraphDef starts with its nodes (field 1, length-delimited). The v0.7 API accepted frozen graphs under the
    SavedModel's file name, so the name alone does not tell.
    """
    if not data:
        raise ConversionError("saved_model.pb is empty")
    key = data[0]
    number, wire = key >> 3, key & 7
    if number == 1 and wire == 0:
        return "savedmodel"
    if number == 1 and wire == 2:
        return "graphdef"
    if number == 2 and wire == 2:
        # A SavedModel without a schema version, or a GraphDef that starts with its function library.
        return "savedmodel"
    if number == 4 and wire == 2:
        return "graphdef"
    raise ConversionError("saved_model.pb is neither a SavedModel nor a GraphDef")


def _layout(files: Mapping[str, Path], workdir: Path) -> tuple[Path, str]:
    """Copy the upload into the layout TensorFlow reads; the model path and its format."""
    by_name = {Path(name).name: path for name, path in files.items()}
    graph = by_name.get("saved_model.pb") or by_name.get("saved_model.pbtxt")
    if graph is None:
        raise ConversionError("a TensorFlow network needs saved_model.pb (or saved_model.pbtxt)")
    variables = {n: p for n, p in by_name.items() if n == "variables.index" or n.startswith("variables.data-")}
    if graph.suffix == ".pbtxt":
        kind = "savedmodel" if variables or b"meta_graphs" in graph.read_bytes()[:4096] else "graphdef"
    else:
        kind = "savedmodel" if variables else detect_format(graph.read_bytes()[:16])
    if kind == "graphdef":
        target = workdir / f"frozen{graph.suffix}"
        shutil.copyfile(graph, target)
        return target, kind
    folder = workdir / "saved_model"
    (folder / "variables").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(graph, folder / graph.name)
    for name, path in variables.items():
        shutil.copyfile(path, folder / "variables" / name)
    # What else TensorFlow wrote goes where it wrote it: fingerprint.pb beside the graph, assets/ (files the graph
    # reads, such as vocabularies) and assets.extra/ in their folders.
    for name, path in files.items():
        if name == "fingerprint.pb" or name.startswith(("assets/", "assets.extra/")):
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, folder / name)
    if variables and "variables.index" not in variables:
        raise ConversionError("a SavedModel's variables need variables.index beside variables.data-*")
    return folder, kind


def _communicate(command: list[str], timeout_s: float, cancel: threading.Event | None) -> _Done:
    """Run the worker to its end, killing it past ``timeout_s`` or as soon as ``cancel`` is set."""
    deadline = time.monotonic() + timeout_s
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as process:
        while True:
            try:
                _, stderr = process.communicate(timeout=_POLL_S)
                return _Done(process.returncode, stderr)
            except subprocess.TimeoutExpired:
                if cancel is not None and cancel.is_set():
                    process.kill()
                    process.communicate()
                    raise ConversionError("TensorFlow conversion cancelled") from None
                if time.monotonic() >= deadline:
                    process.kill()
                    process.communicate()
                    raise ConversionError(f"TensorFlow conversion took more than {timeout_s:.0f} s") from None


def _run_worker(
    python: Path,
    model: Path,
    out: Path,
    inputs: Sequence[str],
    outputs: Sequence[str],
    timeout_s: float,
    cancel: threading.Event | None = None,
) -> dict[str, Any]:
    command = [
        str(python),
        str(WORKER),
        "--model",
        str(model),
        "--out",
        str(out),
        "--inputs",
        ",".join(inputs),
        "--outputs",
        ",".join(outputs),
    ]
    log.info("converting TensorFlow network %s with %s", model.name, python)
    try:
        done = _communicate(command, timeout_s, cancel)
    except OSError as exc:
        raise ConverterUnavailableError(f"{ENABLE_HINT} ({python}: {exc.strerror})") from None
    if done.returncode == _UNSUPPORTED:
        ops = json.loads((out / "unsupported.json").read_text())
        kinds = sorted({o["op"] for o in ops})
        detail = f"tf2onnx has no ONNX translation for the TensorFlow op(s) {', '.join(kinds)} ({len(ops)} node(s))"
        raise UnsupportedLayerError(ops[0]["node"], ops[0]["op"], detail)
    if done.returncode == _USER_ERROR:
        raise ConversionError(f"TensorFlow network: {done.stderr.strip().splitlines()[-1]}")
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        if any("No module named 'tensorflow'" in line or "No module named 'tf2onnx'" in line for line in lines):
            raise ConverterUnavailableError(f"{ENABLE_HINT} ({python} has no TensorFlow or tf2onnx)")
        log.warning("TensorFlow conversion failed:\n%s", "\n".join(lines[-20:]))
        raise ConversionError(f"TensorFlow could not convert the network: {lines[-1] if lines else 'no message'}")
    meta: dict[str, Any] = json.loads((out / "meta.json").read_text())
    return meta


def _served_name(entry: Mapping[str, Any], kind: str) -> str:
    tensor: str = entry["tensor"]
    if kind == "savedmodel-v2" and entry["aliases"]:
        return str(entry["aliases"][0])
    return tensor[:-2] if tensor.endswith(":0") else tensor


def _names(entries: Sequence[Mapping[str, Any]], served: Mapping[str, str]) -> dict[str, str]:
    """Every accepted name of each tensor → its served name."""
    names: dict[str, str] = {}
    for entry in entries:
        target = served[entry["tensor"]]
        tensor: str = entry["tensor"]
        aliases = [tensor, tensor[:-2] if tensor.endswith(":0") else tensor, target]
        for alias in entry["aliases"]:
            aliases += [alias, f"{alias}:0"]
        for alias in aliases:
            names.setdefault(alias, target)
    return names


def convert_tensorflow(
    files: Mapping[str, Path],
    workdir: Path,
    *,
    python: Path | None,
    framework: str = "tensorflow-1.x",
    input_names: Sequence[str] = (),
    output_names: Sequence[str] = (),
    timeout_s: float = 600.0,
    cancel: threading.Event | None = None,
) -> ConversionResult:
    """Convert an uploaded TensorFlow network (its files by name) to ONNX, working inside ``workdir``.

    ``python``: the TensorFlow environment's interpreter (None: not installed → ConverterUnavailableError).
    ``input_names`` / ``output_names``: graph tensors to use (``image_tensor:0`` or ``image_tensor``); by default
    a SavedModel's serving signature, or a frozen graph's placeholders and sinks (tensors no op consumes).
    ``cancel``: once set (by another thread), the TensorFlow process is killed within 0.2 s and the call raises
    ConversionError; so is it past ``timeout_s``.
    """
    if python is None:
        raise ConverterUnavailableError(ENABLE_HINT)
    if not python.exists():
        raise ConverterUnavailableError(f"{ENABLE_HINT} ({python} does not exist)")
    workdir.mkdir(parents=True, exist_ok=True)
    model_path, _ = _layout(files, workdir)
    out = workdir / "converted"
    out.mkdir(exist_ok=True)
    meta = _run_worker(python, model_path, out, input_names, output_names, timeout_s, cancel)
    kind = meta["kind"]
    model = load_model((out / "model.onnx").read_bytes(), "model.onnx")
    entries = [*meta["inputs"], *meta["outputs"]]
    served = {e["onnx"]: _served_name(e, kind) for e in entries}
    rename_tensors(model, served)
    batched = all(e["shape"] and e["shape"][0] == -1 for e in entries)
    sources = {served[e["onnx"]]: e["tensor"] for e in entries}
    notes = [f"converted with {meta['tensorflow']} ({kind})"]
    if not batched:
        notes.append("some inputs or outputs have no free first dimension: served without batching")
    return ConversionResult(
        framework=framework,
        onnx_model=model.SerializeToString(),
        tensor_names=_names(entries, {e["tensor"]: served[e["onnx"]] for e in entries}),
        sources=sources,
        notes=tuple(notes),
    )


def default_python() -> Path:
    """The interpreter of ``.venv-tf`` beside the project (what ``make tf-env`` builds), for tools and tests."""
    root = Path(__file__).resolve().parents[3]
    return root / ".venv-tf" / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def converter_status(tf_python: Path | None) -> tuple[bool, str]:
    """Whether TensorFlow uploads convert with this setting, and the start-up line that says so: the interpreter
    when it is on; when it is off, why, and the absolute path to set (``.venv-tf``'s, if it was built)."""
    if tf_python is not None and tf_python.exists():
        return True, f"TensorFlow conversion is on: {tf_python}"
    built = default_python()
    hint = (
        f"set SIGHTLINE_TF_PYTHON={built.absolute()}"
        if built.exists()
        else "run `make tf-env`, then set SIGHTLINE_TF_PYTHON to the absolute path of .venv-tf/bin/python"
    )
    why = "SIGHTLINE_TF_PYTHON is unset" if tf_python is None else f"SIGHTLINE_TF_PYTHON={tf_python} does not exist"
    return False, f"TensorFlow conversion is off ({why}): TensorFlow uploads are refused; {hint}"
