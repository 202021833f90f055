"""Whether TensorFlow uploads convert is said, and the interpreter's path holds whatever the working folder
(#17 point 5)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from service.convert.tensorflow import converter_status, default_python
from service.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_a_relative_tf_python_becomes_absolute_without_leaving_its_virtual_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    venv = tmp_path / "venv-tf" / "bin"
    venv.mkdir(parents=True)
    (venv / "python").symlink_to(Path(shutil.which("python3") or "/usr/bin/python3"))
    monkeypatch.chdir(tmp_path)
    settings = Settings(tf_python=Path("venv-tf/bin/python"))
    assert settings.tf_python == tmp_path / "venv-tf" / "bin" / "python", "absolute, the link itself kept"
    assert settings.tf_python.is_symlink()
    monkeypatch.setenv("SIGHTLINE_TF_PYTHON", "venv-tf/bin/python")
    assert Settings().tf_python == tmp_path / "venv-tf" / "bin" / "python"
    assert Settings(tf_python=None).tf_python is None


def test_the_start_up_line_says_whether_tensorflow_converts(tmp_path: Path) -> None:
    python = tmp_path / "python"
    python.write_text("")
    on, line = converter_status(python)
    assert on
    assert line == f"TensorFlow conversion is on: {python}"
    off, line = converter_status(None)
    assert not off
    assert line.startswith("TensorFlow conversion is off (SIGHTLINE_TF_PYTHON is unset): TensorFlow uploads are")
    suggested = str(default_python().absolute()) if default_python().exists() else "make tf-env"
    assert suggested in line
    off, line = converter_status(tmp_path / "missing")
    assert not off
    assert f"SIGHTLINE_TF_PYTHON={tmp_path / 'missing'} does not exist" in line


def test_make_run_tf_builds_and_uses_the_tensorflow_environment() -> None:
    plan = subprocess.run(
        ["make", "--no-print-directory", "-n", "run", "TF=1"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    serve = plan.stdout.strip().splitlines()[-1]
    assert serve.startswith(f"SIGHTLINE_TF_PYTHON={ROOT / '.venv-tf' / 'bin' / 'python'} ")
    assert "sightline serve" in serve
    if not (ROOT / ".venv-tf" / ".installed-stamp").exists():
        assert "service/convert/tensorflow/requirements.txt" in plan.stdout, "make tf-env's steps come first"
    plain = subprocess.run(
        ["make", "--no-print-directory", "-n", "run"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert "SIGHTLINE_TF_PYTHON" not in plain.stdout
