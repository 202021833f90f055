"""The domain error vocabulary: user input quoted by a bounded prefix, server paths cut out of library messages,
field errors that name their field, and the retry delays the API layer turns into RetryInfo."""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path

import psycopg.errors
import pytest

from service.errors import (
    FieldViolation,
    InvalidArgumentError,
    MalformedRequestError,
    NotFoundError,
    ShuttingDownError,
    SightlineError,
    StorageFullError,
    UnavailableError,
    as_domain_error,
    quote,
    without_paths,
)


def test_a_short_value_is_quoted_whole() -> None:
    assert quote("colors-v1") == "'colors-v1'"
    assert quote("x" * 64) == repr("x" * 64)


def test_a_long_value_is_quoted_by_a_prefix_with_its_length() -> None:
    value = "a" * 1_000_000
    quoted = quote(value)
    assert quoted.startswith(repr("a" * 64))
    assert "1000000 characters" in quoted
    assert len(quoted) < 100


def test_a_not_found_message_quotes_the_id_the_same_way() -> None:
    error = NotFoundError("specification", "b" * 5000)
    assert (error.resource_type, error.resource_id) == ("specification", "b" * 5000)
    assert len(error.message) < 120
    assert error.message.startswith("specification 'bbbb")
    assert error.message.endswith("not found")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Load model from /srv/data/staging/4f2a/1/model.onnx failed",
            "Load model from model.onnx failed",
        ),
        ("no such file: /var/lib/x/mean.npy, and /etc/y/z.bin", "no such file: mean.npy, and z.bin"),
        # What is not an absolute path stays: relative paths, URLs, a lone slash, ratios.
        ("see docs/convert.md", "see docs/convert.md"),
        ("https://example.org/a/b.png", "https://example.org/a/b.png"),
        ("3/4 of the image, / alone", "3/4 of the image, / alone"),
    ],
)
def test_absolute_paths_are_cut_to_their_last_part(text: str, expected: str) -> None:
    assert without_paths(text) == expected


def test_a_field_error_names_its_field_in_the_message_and_its_violation() -> None:
    error = InvalidArgumentError.field("inputs[0].image.bbox.xmin", "must be in [0, 1]")
    assert error.message == "inputs[0].image.bbox.xmin: must be in [0, 1]"
    assert error.violations == (FieldViolation("inputs[0].image.bbox.xmin", "must be in [0, 1]"),)
    assert error.reason == "INVALID_ARGUMENT"


def test_the_field_constructor_keeps_the_subclass() -> None:
    error = MalformedRequestError.field("body", "does not parse")
    assert isinstance(error, MalformedRequestError)
    assert error.reason == "MALFORMED_REQUEST"


def test_retry_delays_default_per_kind() -> None:
    assert UnavailableError("Triton is away").retry_after_s == 1.0
    assert UnavailableError("Triton is away", retry_after_s=None).retry_after_s is None
    draining = ShuttingDownError()
    assert isinstance(draining, UnavailableError)
    assert draining.reason == "SERVER_SHUTTING_DOWN"
    assert draining.retry_after_s == 0.5


def test_every_error_is_a_sightline_error_with_its_message() -> None:
    error = UnavailableError("down")
    assert isinstance(error, SightlineError)
    assert str(error) == error.message == "down"


# ------------------------------------------------------------------------------ storage that runs out


def test_a_write_to_a_full_device_is_storage_full() -> None:
    # /dev/full answers every write with ENOSPC, as a full disk does.
    with pytest.raises(OSError, match="No space left") as full, Path("/dev/full").open("wb", buffering=0) as device:
        device.write(b"model bytes")
    assert full.value.errno == errno.ENOSPC
    error = as_domain_error(full.value)
    assert isinstance(error, StorageFullError)
    assert error.reason == "STORAGE_FULL"
    assert "No space left on device" in error.message
    assert "nothing of this request was kept" in error.message


def test_a_full_sqlite_database_is_storage_full(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "small.db")
    conn.execute("CREATE TABLE t (v BLOB)")
    conn.execute("PRAGMA max_page_count = 8")  # SQLite answers SQLITE_FULL past it, as on a full disk
    with pytest.raises(sqlite3.OperationalError, match="full") as full:
        conn.executemany("INSERT INTO t VALUES (?)", [(bytes(4096),)] * 100)
    conn.close()
    assert isinstance(as_domain_error(full.value), StorageFullError)


def test_postgres_disk_full_and_quota_and_file_size_are_storage_full() -> None:
    assert isinstance(as_domain_error(psycopg.errors.DiskFull("could not extend file")), StorageFullError)
    assert isinstance(as_domain_error(OSError(errno.EDQUOT, "Disk quota exceeded")), StorageFullError)
    assert isinstance(as_domain_error(OSError(errno.EFBIG, "File too large")), StorageFullError)


def test_other_faults_are_not_domain_errors_and_domain_errors_are_themselves(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as missing:
        (tmp_path / "absent").read_bytes()
    assert as_domain_error(missing.value) is None
    assert as_domain_error(sqlite3.OperationalError("no such table: t")) is None
    assert as_domain_error(RuntimeError("bug")) is None
    not_found = NotFoundError("network", "7")
    assert as_domain_error(not_found) is not_found
