"""Setuptools hook: the bundled public models travel in the wheel.

``model_repository/`` stays at the top of the source tree (Triton serves it from there, and the Dockerfile copies
it); a built wheel gets a copy as package data, ``service/model_repository/``, which ``service.settings`` uses
when there is no source tree beside the package. Editable installs read the source tree's and copy nothing.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


class BuildWithModels(build_py):  # type: ignore[misc]
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        target = Path(self.build_lib) / "service" / "model_repository"
        shutil.copytree(
            ROOT / "model_repository", target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__")
        )


setup(cmdclass={"build_py": BuildWithModels})
