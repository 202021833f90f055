"""The docs in step with the code.

- ``Settings``: every field has a docstring and is named (as its ``SIGHTLINE_*`` variable) in the README or in
  docs/*.md; every variable in the README's settings tables is a field.
- docs/postprocess.md's list of the names ``postprocess`` re-exports is its ``__all__``.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import postprocess
from service.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def field_docstrings() -> dict[str, str]:
    """Each annotated field of ``Settings`` and the string literal right under it ("" when there is none)."""
    tree = ast.parse((ROOT / "service" / "settings.py").read_text())
    (cls,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Settings"]
    docs: dict[str, str] = {}
    body = cls.body
    for i, node in enumerate(body):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            after = body[i + 1] if i + 1 < len(body) else None
            is_doc = (
                isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            )
            docs[node.target.id] = after.value.value.strip() if is_doc else ""  # type: ignore[union-attr]
    return docs


def docs_text() -> str:
    return "\n".join(p.read_text() for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))])


def readme_table_variables() -> set[str]:
    """The ``SIGHTLINE_*`` names written in full in the first cell of the README's table rows."""
    names: set[str] = set()
    for line in (ROOT / "README.md").read_text().splitlines():
        if line.startswith("| `SIGHTLINE_"):
            names |= set(re.findall(r"`(SIGHTLINE_[A-Z0-9_]+)`", line.split("|")[1]))
    return names


def test_the_parser_sees_every_field() -> None:
    assert set(field_docstrings()) == set(Settings.model_fields)


def test_every_setting_has_a_docstring() -> None:
    missing = sorted(name for name, doc in field_docstrings().items() if not doc)
    assert not missing, f"Settings fields without a docstring: {missing}"


def test_every_setting_is_documented() -> None:
    text = docs_text()
    missing = sorted(
        f"SIGHTLINE_{name.upper()}" for name in Settings.model_fields if f"SIGHTLINE_{name.upper()}" not in text
    )
    assert not missing, f"in no doc (README.md or docs/*.md): {missing}"


def test_every_variable_of_the_readme_tables_is_a_setting() -> None:
    table = readme_table_variables()
    assert len(table) >= 20, "the README's settings tables were not found"
    stale = sorted(name for name in table if name.removeprefix("SIGHTLINE_").lower() not in Settings.model_fields)
    assert not stale, f"README rows name variables Settings does not read: {stale}"


def test_postprocess_re_exports_what_its_doc_lists() -> None:
    text = (ROOT / "docs" / "postprocess.md").read_text()
    start = text.index("The package re-exports")
    listed = text[text.index(":", start) : text.index(".\n", start)]
    assert set(re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)`", listed)) == set(postprocess.__all__)
