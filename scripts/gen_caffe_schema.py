"""Regenerate ``caffe_pb2.py`` and ``caffe_pb2.pyi`` beside ``caffe.proto`` (or into another folder, to check drift).

Usage: python scripts/gen_caffe_schema.py [OUT_DIR]   (a dev tool: it is not part of the package; `make protos-check`
runs it to catch drift)
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc  # type: ignore[import-untyped]

__all__ = ["generate"]

HERE = Path(__file__).resolve().parent.parent / "service" / "convert" / "caffe"
HEADER = (
    "# Generated from caffe.proto by scripts/gen_caffe_schema.py. Do not edit.\n"
    "# ruff: noqa\n"
    "# fmt: off\n"
    "# mypy: ignore-errors, disallow-any-generics=False\n"
)


def generate(out_dir: Path) -> None:
    """Write ``caffe_pb2.py`` and ``caffe_pb2.pyi`` for ``caffe.proto`` into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        args = ["protoc", f"-I{HERE}", f"--python_out={tmp}", f"--pyi_out={tmp}", str(HERE / "caffe.proto")]
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed")
        for suffix in (".py", ".pyi"):
            text = (Path(tmp) / f"caffe_pb2{suffix}").read_text()
            (out_dir / f"caffe_pb2{suffix}").write_text(HEADER + text)


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE)
