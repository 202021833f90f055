"""``load_settings``: a value the service cannot use is refused before anything starts, in a message that names
the variable (or the flag) to fix, the value given and the rule (``ConfigurationError``)."""

from __future__ import annotations

import pytest

from service.errors import ConfigurationError
from service.settings import load_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SIGHTLINE_PORT", "SIGHTLINE_AUTH", "SIGHTLINE_TRITON_CPU_THREADS", "SIGHTLINE_OTEL_EXPORTER"):
        monkeypatch.delenv(name, raising=False)


def test_good_values_load_with_overrides_winning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIGHTLINE_PORT", "6001")
    monkeypatch.setenv("SIGHTLINE_TRITON_CPU_THREADS", "3")
    settings = load_settings(port=7000)
    assert (settings.port, settings.triton_cpu_threads) == (7000, 3)


@pytest.mark.parametrize(
    ("variable", "value", "rule"),
    [
        ("SIGHTLINE_TRITON_CPU_THREADS", "0", "greater than or equal to 1"),
        ("SIGHTLINE_PORT", "http", "valid integer"),
        ("SIGHTLINE_PORT", "70000", "less than or equal to 65535"),
        ("SIGHTLINE_AUTH", "maybe", "auto|on|off"),
        ("SIGHTLINE_OTEL_EXPORTER", "jaeger", "console|otlp"),
    ],
)
def test_a_bad_variable_is_named_with_its_value_and_rule(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, rule: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError) as refused:
        load_settings()
    assert str(refused.value).startswith(f"{variable}='{value}': ")
    assert rule in str(refused.value)


def test_every_bad_value_is_said_at_once_and_an_override_by_its_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIGHTLINE_AUTH", "maybe")
    with pytest.raises(ConfigurationError) as refused:
        load_settings(rest_port=-5)
    lines = str(refused.value).splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("--rest-port=-5: ")
    assert "greater than or equal to -1" in lines[0]
    assert lines[1].startswith("SIGHTLINE_AUTH='maybe': ")
