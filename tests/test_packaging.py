"""A built wheel is the product: it serves the bundled public models after ``pip install``, and carries no dev
tools (training, benchmarks, generators, tests)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


SOURCES = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "service", "postprocess", "model_repository")
"""What a wheel is built from, copied to build it afresh: setuptools reuses a source tree's ``build/``, whose
leftovers would hide a file the package no longer carries."""


def test_the_wheel_serves_the_public_models(tmp_path: Path) -> None:
    pip = [sys.executable, "-m", "pip"]
    source = tmp_path / "source"
    source.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "*.so", "*.pyd", "*.egg-info")
            shutil.copytree(ROOT / name, source / name, ignore=ignore)
        else:
            shutil.copy2(ROOT / name, source / name)
    subprocess.run(
        [*pip, "wheel", str(source), "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path / "dist")],
        check=True,
        cwd=tmp_path,
    )
    (wheel,) = (tmp_path / "dist").glob("sightline-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "service/model_repository/colors/1/model.onnx" in names
    # The store's schema, without which no database can be created.
    assert [n for n in names if n.startswith("service/store/migrations/") and n.endswith(".sql")]
    # The compiled NMS kernel, without its source.
    assert [n for n in names if n.startswith("postprocess/_greedy.") and n.endswith((".so", ".pyd"))]
    assert "postprocess/_greedy.c" not in names
    assert not [n for n in names if n.split("/")[0] in {"tools", "zoo", "bench", "tests", "scripts"}]
    assert not [n for n in names if Path(n).name.startswith("gen_")]

    site = tmp_path / "site"
    subprocess.run([*pip, "install", "--no-deps", "-q", "--target", str(site), str(wheel)], check=True)
    # Outside the source tree, with the installed copy first on the path: the package's own models.
    probe = (
        "import json, service, service.settings as s; from service.catalog import Catalog; "
        "import postprocess.nms, postprocess._greedy as g; "
        "specs = Catalog.load(s.BUNDLED_REPOSITORY).specifications(); "
        "print(json.dumps([service.__file__, str(s.BUNDLED_REPOSITORY), sorted(x.id for x in specs), g.__file__, "
        "postprocess.nms._COMPILED is g]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], env={"PYTHONPATH": str(site)}, cwd=tmp_path, capture_output=True, check=True
    ).stdout
    module, repository, specs, kernel, used = json.loads(out)
    assert module.startswith(str(site))
    assert kernel.startswith(str(site))
    assert used
    assert repository == str(site / "service" / "model_repository")
    expected = sorted(
        json.loads(p.read_text())["spec"]["id"] for p in (ROOT / "model_repository").glob("*/sightline.json")
    )
    assert specs == expected

    # The sightline command, both sides of it, from the installed copy.
    assert {"service/cli/__init__.py", "service/cli/server.py", "service/cli/client.py"} <= set(names)
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    assert "sightline = service.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
    usage = subprocess.run(
        [sys.executable, "-m", "service.cli", "--help"],
        env={"PYTHONPATH": str(site)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "{serve,models,recognize,stream,health,keys}" in usage
