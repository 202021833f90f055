"""TensorFlow → ONNX, run by the TensorFlow environment's interpreter (``.venv-tf``), never imported by the service.

It imports nothing from the service: the service's environment cannot hold TensorFlow (numpy 2, protobuf 7), so
``service.convert.tensorflow`` runs this file as a script and reads what it writes:

    python worker.py --model PATH --out DIR [--inputs NAME,...] [--outputs NAME,...] [--opset 13]

PATH is a SavedModel folder (``saved_model.pb`` or ``.pbtxt``, ``variables/``) or a frozen GraphDef file. DIR
receives ``model.onnx`` and ``meta.json``: the kind of model, and for each input and output its graph tensor name
(``image_tensor:0``), its ONNX name, the names it is known by (signature keys), dtype and shape. Exit status 2 is
a problem with the model (the message on stderr is for the uploader); 3, ops that tf2onnx cannot translate (listed
in DIR/unsupported.json); anything else is a failure of the tool.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path
from typing import Any

USER_ERROR = 2
UNSUPPORTED = 3
SINK_EXCLUDED = {"NoOp", "Const", "Placeholder", "Assert", "SaveV2", "RestoreV2", "VarHandleOp", "Identity_n"}


class ModelError(Exception):
    """A problem with the uploaded model, reported to the uploader."""


class UnsupportedOps(Exception):
    """TensorFlow ops that tf2onnx left untranslated: (node name, op type) pairs."""

    def __init__(self, ops: list[tuple[str, str]]) -> None:
        super().__init__(f"{len(ops)} op(s) without an ONNX translation")
        self.ops = ops


def _tf() -> Any:
    return importlib.import_module("tensorflow")


def _tensor_meta(tensor: Any, aliases: list[str]) -> dict[str, Any]:
    shape = tensor.shape
    dims = None if shape.rank is None else [-1 if d is None else int(d) for d in shape.as_list()]
    return {"tensor": tensor.name, "aliases": aliases, "dtype": tensor.dtype.name, "shape": dims}


def _read_graph_def(path: Path) -> Any:
    tf = _tf()
    graph_def = tf.compat.v1.GraphDef()
    data = path.read_bytes()
    if path.suffix == ".pbtxt":
        from google.protobuf import text_format

        text_format.Parse(data.decode("utf-8"), graph_def)
    else:
        graph_def.ParseFromString(data)
    return graph_def


def _sinks(graph: Any) -> list[str]:
    """Output tensors of the ops none of whose outputs any op consumes: a frozen graph's natural outputs."""
    consumed = {t.op.name for op in graph.get_operations() for t in op.inputs}
    names: list[str] = []
    for op in graph.get_operations():
        if op.type in SINK_EXCLUDED or not op.outputs or op.name in consumed:
            continue
        names.extend(t.name for t in op.outputs)
    return names


def _tensor_name(name: str) -> str:
    return name if ":" in name else f"{name}:0"


def freeze_graphdef(path: Path, inputs: list[str], outputs: list[str]) -> tuple[Any, list[Any], list[Any]]:
    """A frozen GraphDef: its inputs (placeholders unless given) and outputs (graph sinks unless given)."""
    tf = _tf()
    graph_def = _read_graph_def(path)
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
    try:
        ins = [graph.get_tensor_by_name(_tensor_name(n)) for n in inputs] or [
            op.outputs[0] for op in graph.get_operations() if op.type == "Placeholder"
        ]
        outs = [graph.get_tensor_by_name(_tensor_name(n)) for n in outputs] or [
            graph.get_tensor_by_name(n) for n in _sinks(graph)
        ]
    except (KeyError, ValueError) as exc:
        raise ModelError(f"the graph has no such tensor: {exc}") from None
    if not ins:
        raise ModelError("the graph has no Placeholder input; name its inputs")
    if not outs:
        raise ModelError("the graph has no output; name its outputs")
    variables = [op.name for op in graph.get_operations() if op.type in ("VariableV2", "VarHandleOp", "Variable")]
    if variables:
        raise ModelError(f"the GraphDef is not frozen (variables {variables[:3]}); upload a SavedModel instead")
    meta_in = [_tensor_meta(t, []) for t in ins]
    meta_out = [_tensor_meta(t, []) for t in outs]
    return graph_def, meta_in, meta_out


def _load_saved_model_proto(folder: Path) -> Any:
    saved_model_pb2 = importlib.import_module("tensorflow.core.protobuf.saved_model_pb2")
    saved = saved_model_pb2.SavedModel()
    pb, pbtxt = folder / "saved_model.pb", folder / "saved_model.pbtxt"
    if pb.exists():
        saved.ParseFromString(pb.read_bytes())
    else:
        from google.protobuf import text_format

        text_format.Parse(pbtxt.read_text(), saved)
    return saved


def _signature(meta_graph: Any) -> tuple[str, Any]:
    keys = [k for k in meta_graph.signature_def if not k.startswith("_")]
    if not keys:
        raise ModelError("the SavedModel has no signature")
    key = "serving_default" if "serving_default" in keys else sorted(keys)[0]
    return key, meta_graph.signature_def[key]


def freeze_saved_model_v1(folder: Path, inputs: list[str], outputs: list[str]) -> tuple[Any, list[Any], list[Any]]:
    """A graph-mode (TensorFlow 1.x style) SavedModel, frozen with its graph's tensor names."""
    tf = _tf()
    graph = tf.Graph()
    with graph.as_default(), tf.compat.v1.Session(graph=graph) as sess:
        meta_graph = tf.compat.v1.saved_model.loader.load(sess, ["serve"], str(folder))
        _, signature = _signature(meta_graph)
        keys_in = {v.name: k for k, v in signature.inputs.items()}
        keys_out = {v.name: k for k, v in signature.outputs.items()}
        in_names = [_tensor_name(n) for n in inputs] or sorted(keys_in)
        out_names = [_tensor_name(n) for n in outputs] or sorted(keys_out)
        try:
            ins = [graph.get_tensor_by_name(n) for n in in_names]
            outs = [graph.get_tensor_by_name(n) for n in out_names]
        except (KeyError, ValueError) as exc:
            raise ModelError(f"the SavedModel has no such tensor: {exc}") from None
        frozen = tf.compat.v1.graph_util.convert_variables_to_constants(
            sess, graph.as_graph_def(), sorted({t.op.name for t in outs})
        )
    meta_in = [_tensor_meta(t, [keys_in[t.name]] if t.name in keys_in else []) for t in ins]
    meta_out = [_tensor_meta(t, [keys_out[t.name]] if t.name in keys_out else []) for t in outs]
    return frozen, meta_in, meta_out


def freeze_saved_model_v2(folder: Path) -> tuple[Any, list[Any], list[Any]]:
    """An object-based (TensorFlow 2.x) SavedModel: its serving signature, frozen by tf2onnx's loader."""
    tf = _tf()
    loader = importlib.import_module("tf2onnx.tf_loader")
    saved = _load_saved_model_proto(folder)
    key, _ = _signature(saved.meta_graphs[0])
    frozen, in_names, out_names, func, _imported, renames = loader.from_saved_model(
        str(folder),
        None,
        None,
        tag=["serve"],
        signatures=[key],
        return_concrete_func=True,
        return_tensors_to_rename=True,
    )
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(frozen, name="")
    ins = [graph.get_tensor_by_name(n) for n in in_names]
    outs = [graph.get_tensor_by_name(n) for n in out_names]
    del func
    meta_in = [_tensor_meta(t, [renames[t.name]] if t.name in renames else []) for t in ins]
    meta_out = [_tensor_meta(t, [renames[t.name]] if t.name in renames else []) for t in outs]
    return frozen, meta_in, meta_out


def convert(model: Path, out: Path, inputs: list[str], outputs: list[str], opset: int) -> dict[str, Any]:
    tf2onnx = importlib.import_module("tf2onnx")
    if model.is_dir():
        saved = _load_saved_model_proto(model)
        if not saved.meta_graphs:
            raise ModelError("the SavedModel holds no MetaGraph")
        object_based = len(saved.meta_graphs[0].object_graph_def.nodes) > 0
        if object_based and not inputs and not outputs:
            kind = "savedmodel-v2"
            frozen, meta_in, meta_out = freeze_saved_model_v2(model)
        else:
            kind = "savedmodel-v1"
            frozen, meta_in, meta_out = freeze_saved_model_v1(model, inputs, outputs)
    else:
        kind = "graphdef"
        frozen, meta_in, meta_out = freeze_graphdef(model, inputs, outputs)
    onnx_model, _ = tf2onnx.convert.from_graph_def(
        frozen,
        input_names=[m["tensor"] for m in meta_in],
        output_names=[m["tensor"] for m in meta_out],
        opset=opset,
    )
    defs = importlib.import_module("onnx.defs")
    untranslated = [(n.name, n.op_type) for n in onnx_model.graph.node if not defs.has(n.op_type, n.domain)]
    if untranslated:
        raise UnsupportedOps(untranslated)
    (out / "model.onnx").write_bytes(onnx_model.SerializeToString())
    names = {i.name for i in onnx_model.graph.input} | {o.name for o in onnx_model.graph.output}
    for m in [*meta_in, *meta_out]:
        if m["tensor"] not in names:
            raise ModelError(f"tf2onnx renamed tensor {m['tensor']}")
        m["onnx"] = m["tensor"]
    meta = {"kind": kind, "inputs": meta_in, "outputs": meta_out, "tensorflow": tf2onnx_version()}
    (out / "meta.json").write_text(json.dumps(meta, indent=2))
    return meta


def tf2onnx_version() -> str:
    tf, tf2onnx = _tf(), importlib.import_module("tf2onnx")
    return f"tensorflow {tf.__version__}, tf2onnx {tf2onnx.__version__}"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--inputs", default="")
    parser.add_argument("--outputs", default="")
    parser.add_argument("--opset", type=int, default=13)
    args = parser.parse_args(argv)
    try:
        inputs, outputs = [n for n in args.inputs.split(",") if n], [n for n in args.outputs.split(",") if n]
        convert(args.model, args.out, inputs, outputs, args.opset)
    except ModelError as exc:
        print(str(exc), file=sys.stderr)
        return USER_ERROR
    except UnsupportedOps as exc:
        (args.out / "unsupported.json").write_text(json.dumps([{"node": n, "op": t} for n, t in exc.ops]))
        return UNSUPPORTED
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
