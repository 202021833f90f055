"""The gRPC server's options that follow from the settings (no server started)."""

from __future__ import annotations

from service.server import _server_options
from service.settings import Settings


def test_a_stream_window_fixes_each_calls_window_and_turns_bdp_probing_off() -> None:
    options = dict(_server_options(Settings(grpc_stream_window_bytes=256 * 1024)))
    assert options["grpc.http2.bdp_probe"] == 0
    assert options["grpc.http2.lookahead_bytes"] == 256 * 1024


def test_the_default_window_is_fixed_at_one_mib() -> None:
    options = dict(_server_options(Settings()))
    assert options["grpc.http2.lookahead_bytes"] == 1024 * 1024


def test_a_zero_window_leaves_grpcs_own_flow_control() -> None:
    options = dict(_server_options(Settings(grpc_stream_window_bytes=0)))
    assert "grpc.http2.bdp_probe" not in options
    assert "grpc.http2.lookahead_bytes" not in options
