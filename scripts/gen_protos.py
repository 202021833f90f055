"""Generate the Python code of the contract into ``service/_proto`` (or another folder, for the drift check).

The generated modules import each other as ``sightline.v1.x_pb2``; they are rewritten to live inside
``service._proto`` so that the contract's package name does not become a top-level Python package.

Usage: python scripts/gen_protos.py [OUT_DIR]
"""

from __future__ import annotations

import re
import sys
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
PACKAGE = "service._proto"
HEADER = "# Generated from protos/ by scripts/gen_protos.py. Do not edit.\n"


def generate(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    sources = sorted(str(p.relative_to(PROTOS)) for p in (PROTOS / "sightline").rglob("*.proto"))
    well_known = str(resources.files("grpc_tools") / "_proto")
    args = [
        "protoc",
        f"-I{PROTOS}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *sources,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    for path in sorted(out_dir.rglob("*")):
        if path.suffix not in {".py", ".pyi"}:
            continue
        text = path.read_text()
        text = re.sub(r"^from sightline\.v1 import", f"from {PACKAGE}.sightline.v1 import", text, flags=re.M)
        text = re.sub(r"^import sightline\.v1\.(\w+)", rf"import {PACKAGE}.sightline.v1.\1", text, flags=re.M)
        text = re.sub(r"\bsightline\.v1\.(\w+_pb2)\b", rf"{PACKAGE}.sightline.v1.\1", text)
        path.write_text(HEADER + text)
    for package in (out_dir, out_dir / "sightline", out_dir / "sightline" / "v1"):
        (package / "__init__.py").write_text(HEADER)


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "service" / "_proto")
