"""Request bodies of the REST facade: JSON, or ``multipart/form-data`` as the v0.7 clients send it.

The official client flattens a body into form fields in Django REST framework's nested notation
(``inputs[0]image.source``, ``preprocessing.inputs[0]image.target_size``, ``metadata.author``) and sends every
scalar as Python's ``str()`` of it (``True``, ``3``, ``1.0``); the v0.7 curl examples send ``preprocessing`` or
``metadata`` as one JSON text part instead. ``read_body`` rebuilds the tree and coerces each leaf by the
endpoint's ``Schema``. Parts with a file name that the schema does not claim are the uploaded files: they are
written to a ``Spool`` while hashed, never held in memory.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

from aiohttp import BodyPartReader, web

from service.api.rest.errors import UnsupportedMediaType
from service.errors import InvalidArgumentError, ResourceExhaustedError, UnavailableError, as_domain_error, quote

__all__ = [
    "BOOL",
    "FLOAT",
    "INT",
    "JSON",
    "NUMBER_OR_TEXT",
    "SOURCE",
    "TEXT",
    "Body",
    "Schema",
    "Spool",
    "SpooledFile",
    "read_body",
]


class Leaf(str):
    """The kind of a scalar field (a ``str`` so that schemas print readably)."""


TEXT, INT, FLOAT, BOOL = Leaf("text"), Leaf("int"), Leaf("float"), Leaf("bool")
NUMBER_OR_TEXT = Leaf("number or text")  # a constant input's data: 1.0 or "data.1"
JSON = Leaf("json")  # free JSON (metadata): kept as sent
SOURCE = Leaf("source")  # an image source: a URL or data URI as text, or the image's bytes as a file part

Schema: TypeAlias = Leaf | Mapping[str, "Schema"] | list["Schema"]
"""A field's kind: a ``Leaf``, an object (``{"name": Schema}``) or an array (``[Schema]``, one item schema)."""

_TEXT_PART_LIMIT = 1024 * 1024
_CHUNK = 256 * 1024
_TOKEN = re.compile(r"\[(\d{1,6})\]|\.?([^.\[\]]+)")
_TRUE, _FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off", ""}
# Magic numbers of the image formats Pillow reads most: a source part without a file name holding one is bytes.
_IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"RIFF", b"BM", b"II*\x00", b"MM\x00*", b"\x00\x00\x01\x00")


def _not_stored(exc: OSError) -> Exception:
    """What a failure to write the spool answers: storage that ran out is itself (the error answer says
    STORAGE_FULL and logs it for the operator); any other failure may pass, 503."""
    if as_domain_error(exc) is not None:
        return exc
    return UnavailableError(f"the server could not store the upload ({exc.strerror}); retry later")


@dataclass(frozen=True, slots=True)
class SpooledFile:
    """An uploaded file written to the spool: its name (the form field's), size in bytes and SHA-256 (hex)."""

    name: str
    path: Path
    size: int
    sha256: str


@dataclass
class Spool:
    """A folder of its own under ``root`` for one request's uploaded files, at most ``max_bytes`` and ``max_files``
    in all; removed with everything in it on exit."""

    root: Path
    max_bytes: int
    max_files: int
    folder: Path = field(init=False)
    files: list[SpooledFile] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.folder = self.root / f"rest-{uuid.uuid4().hex}"

    def __enter__(self) -> Spool:
        try:
            self.folder.mkdir(parents=True)
        except OSError as exc:
            raise _not_stored(exc) from None
        return self

    def __exit__(self, *_: object) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    @property
    def used(self) -> int:
        return sum(f.size for f in self.files)

    async def write(self, name: str, part: BodyPartReader) -> None:
        if any(f.name == name for f in self.files):
            raise InvalidArgumentError.field(name, "is sent twice: send each file once")
        if len(self.files) >= self.max_files:
            raise ResourceExhaustedError(f"more than {self.max_files} files in one upload (SIGHTLINE_MAX_UPLOAD_FILES)")
        path = self.folder / str(len(self.files))
        digest, size = hashlib.sha256(), 0
        try:
            with path.open("wb") as out:
                while chunk := await part.read_chunk(_CHUNK):
                    size += len(chunk)
                    if self.used + size > self.max_bytes:
                        raise ResourceExhaustedError(
                            f"the upload is larger than {self.max_bytes} bytes (SIGHTLINE_MAX_UPLOAD_BYTES)"
                        )
                    digest.update(chunk)
                    out.write(chunk)
        except OSError as exc:
            raise _not_stored(exc) from None
        self.files.append(SpooledFile(name, path, size, digest.hexdigest()))


@dataclass(frozen=True, slots=True)
class Body:
    """A request's fields, coerced by the schema, and its uploaded files (multipart only)."""

    fields: dict[str, Any]
    files: tuple[SpooledFile, ...] = ()


async def read_body(
    request: web.Request, schema: Mapping[str, Schema], *, max_bytes: int, spool: Spool | None = None
) -> Body:
    """The body of ``request``: JSON (an object) or multipart/form-data, at most ``max_bytes`` of fields and
    images; uploaded files go to ``spool`` (refused without one). An empty body is ``{}``."""
    if not request.body_exists:  # clients send Content-Type: application/json on GET and DELETE too
        return Body({})
    media = request.content_type.lower()
    if media == "application/json" or media.endswith("+json"):
        raw = await request.read()
        if not raw.strip():
            return Body({})
        try:
            parsed = json.loads(raw, parse_constant=_refuse_constant)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidArgumentError(f"the body is not valid JSON: {str(exc)[:200]}") from None
        if not isinstance(parsed, dict):
            raise InvalidArgumentError(f"the body must be a JSON object, not {type(parsed).__name__}")
        return Body(parsed)
    if media.startswith("multipart/"):
        return await _read_multipart(request, schema, max_bytes, spool)
    raise UnsupportedMediaType(
        f"a body of type {quote(media)} cannot be read: send application/json, or multipart/form-data "
        "when files or image bytes are sent"
    )


def _refuse_constant(name: str) -> Any:
    raise InvalidArgumentError(f"the body holds {name}, which is not a JSON number: send finite numbers")


async def _read_multipart(
    request: web.Request, schema: Mapping[str, Schema], max_bytes: int, spool: Spool | None
) -> Body:
    try:
        reader = await request.multipart()
    except (ValueError, AssertionError) as exc:
        raise InvalidArgumentError(f"the multipart body cannot be read: {str(exc)[:200]}") from None
    tree: dict[str, Any] = {}
    budget = max_bytes
    while True:
        part = await reader.next()
        if part is None:
            break
        if not isinstance(part, BodyPartReader):
            raise InvalidArgumentError("nested multipart bodies are not read: send one flat multipart/form-data")
        name = part.name or ""
        head = _TOKEN.match(name)
        top = head.group(2) if head else None
        if top not in schema and part.filename is not None:
            if spool is None:
                raise InvalidArgumentError.field(name, "is a file this endpoint does not take")
            await spool.write(name if name not in ("", "file", "files") else part.filename, part)
            continue
        if top not in schema:
            await part.release()  # unknown fields are ignored, as unknown query parameters are
            continue
        data = await _read_part(part, min(budget, max_bytes))
        budget -= len(data)
        _put(tree, name, (part.filename, data))
    fields = _coerce_object(tree, schema, "")
    return Body(fields, tuple(spool.files) if spool else ())


async def _read_part(part: BodyPartReader, limit: int) -> bytes:
    chunks, size = [], 0
    while chunk := await part.read_chunk(_CHUNK):
        size += len(chunk)
        if size > limit:
            raise ResourceExhaustedError(
                f"the form field {quote(part.name or '')} makes the body larger than it may be "
                "(SIGHTLINE_MAX_MESSAGE_BYTES)"
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _put(tree: dict[str, Any], name: str, value: tuple[str | None, bytes]) -> None:
    """Set ``value`` at the DRF path ``name`` (``a[0]b.c``): names are object keys, ``[i]`` array indices (kept
    as int keys until coercion)."""
    tokens: list[str | int] = []
    pos = 0
    for match in _TOKEN.finditer(name):
        if match.start() != pos:
            break
        tokens.append(int(match.group(1)) if match.group(1) is not None else match.group(2))
        pos = match.end()
    if pos != len(name) or not tokens:
        raise InvalidArgumentError.field(name, "is not a field name this API reads (like inputs[0]image.source)")
    node: dict[str | int, Any] = tree  # type: ignore[assignment]
    for i, token in enumerate(tokens[:-1]):
        child = node.setdefault(token, {})
        if not isinstance(child, dict):
            raise InvalidArgumentError.field(name, f"sets a field inside {_path(tokens[: i + 1])}, which has a value")
        node = child
    if tokens[-1] in node:
        raise InvalidArgumentError.field(_path(tokens), "is sent twice")
    node[tokens[-1]] = value


def _path(tokens: list[str | int]) -> str:
    out = ""
    for t in tokens:
        out += f"[{t}]" if isinstance(t, int) else (f".{t}" if out else t)
    return out


def _text(value: tuple[str | None, bytes], where: str) -> str:
    try:
        return value[1].decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidArgumentError.field(where, "is not UTF-8 text") from None


def _json_part(value: tuple[str | None, bytes], where: str) -> Any:
    try:
        return json.loads(_text(value, where), parse_constant=_refuse_constant)
    except ValueError as exc:
        raise InvalidArgumentError.field(where, f"is not valid JSON: {str(exc)[:200]}") from None


def _coerce(node: Any, schema: Schema, where: str) -> Any:
    if isinstance(node, tuple):  # one part's (file name, bytes)
        if isinstance(schema, Leaf):
            return _coerce_leaf(node, schema, where)
        return _json_part(node, where)  # an object or array sent as one JSON text part
    if isinstance(schema, list):
        return _coerce_array(node, schema[0], where)
    if isinstance(schema, Mapping):
        return _coerce_object(node, schema, where)
    if schema is JSON:
        return _plain(node, where)
    raise InvalidArgumentError.field(where, f"must be a single value ({schema}), not an object or an array")


def _coerce_object(node: dict[Any, Any], schema: Mapping[str, Schema], where: str) -> dict[str, Any]:
    if any(isinstance(k, int) for k in node):
        raise InvalidArgumentError.field(where or "body", "is an object, not an array")
    prefix = f"{where}." if where else ""
    return {k: _coerce(v, schema[k], f"{prefix}{k}") for k, v in node.items() if k in schema}


def _coerce_array(node: dict[Any, Any], item: Schema, where: str) -> list[Any]:
    if not all(isinstance(k, int) for k in node):
        raise InvalidArgumentError.field(where, "is an array: name its items like " + f"{where}[0]")
    for expected, index in enumerate(sorted(node)):
        if index != expected:
            raise InvalidArgumentError.field(f"{where}[{index}]", f"is sent without {where}[{expected}]")
    return [_coerce(node[i], item, f"{where}[{i}]") for i in sorted(node)]


def _plain(node: Any, where: str) -> Any:
    """Free JSON sent in DRF notation: its leaves stay text (their types were lost in the form)."""
    if isinstance(node, tuple):
        return _text(node, where)
    if node and all(isinstance(k, int) for k in node):
        return [_plain(node[i], f"{where}[{i}]") for i in sorted(node)]
    return {str(k): _plain(v, f"{where}.{k}") for k, v in node.items()}


def _coerce_leaf(value: tuple[str | None, bytes], kind: Leaf, where: str) -> Any:
    filename, data = value
    if kind is SOURCE:
        if filename is not None or data.startswith(_IMAGE_MAGIC):
            return data
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return data
    text = _text(value, where).strip()
    if kind is TEXT:
        return _text(value, where)
    if kind is JSON:
        return _json_part(value, where) if text[:1] in ("{", "[") else _text(value, where)
    if kind is BOOL:
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise InvalidArgumentError.field(where, f"{quote(text)} is not a boolean (true or false)")
    if kind is INT:
        try:
            return int(text)
        except ValueError:
            raise InvalidArgumentError.field(where, f"{quote(text)} is not an integer") from None
    number = _number(text)
    if kind is FLOAT:
        if number is None:
            raise InvalidArgumentError.field(where, f"{quote(text)} is not a finite number")
        return number
    return text if number is None else number  # NUMBER_OR_TEXT


def _number(text: str) -> float | None:
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None
