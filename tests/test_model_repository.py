"""Every ``config.pbtxt`` bundled under ``model_repository/`` is, byte for byte, what the service's one writer
(``service.triton.repository.config_pbtxt``) gives for its model's graph. The dev tools that write them
(``tools/build_colors_model.py``, ``tools/pretrained``, ``zoo/train.py``) call that writer over the graph they
just saved, as the registry does for an upload; a config edited by hand, or a tool writing its own text again,
fails here."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from service.triton.repository import config_pbtxt, inspect_onnx
from service.triton.tensors import Signature, TensorSignature
from tests.helpers import ROOT

REPOSITORY = ROOT / "model_repository"
CONFIGS = sorted(REPOSITORY.glob("*/config.pbtxt"))


def test_every_bundled_model_folder_has_a_config() -> None:
    folders = sorted(p.parent.parent for p in REPOSITORY.glob("*/1/model.onnx"))
    assert folders, "no bundled models found"
    assert [c.parent for c in CONFIGS] == folders


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.parent.name)
def test_a_bundled_config_is_the_writers_output_for_its_graph(config: Path) -> None:
    folder = config.parent
    # The batching options are the one choice a tool makes; everything else comes from the graph and the writer.
    batching = text_format.Parse(config.read_text(), model_config_pb2.ModelConfig())
    signature = inspect_onnx(folder / "1" / "model.onnx", max_batch_size=batching.max_batch_size)
    written = config_pbtxt(
        signature,
        name=folder.name,
        max_queue_delay_microseconds=batching.dynamic_batching.max_queue_delay_microseconds,
    )
    assert config.read_bytes() == written.encode()


def _signature(batch: int) -> Signature:
    first = -1 if batch else 2
    return Signature(
        (TensorSignature("data", "FP32", (first, 3, 4, 4)),), (TensorSignature("p", "FP32", (first, 6)),), batch
    )


def test_the_bundled_models_options_reach_tritons_model_config() -> None:
    text = config_pbtxt(_signature(32), name="colors", max_queue_delay_microseconds=500)
    config = text_format.Parse(text, model_config_pb2.ModelConfig())
    assert config.name == "colors"
    assert config.max_batch_size == 32
    assert config.dynamic_batching.max_queue_delay_microseconds == 500


@pytest.mark.parametrize("batch", [0, 1])
def test_a_model_that_does_not_batch_gets_no_dynamic_batching_whatever_the_delay(batch: int) -> None:
    config = text_format.Parse(
        config_pbtxt(_signature(batch), max_queue_delay_microseconds=500), model_config_pb2.ModelConfig()
    )
    assert not config.HasField("dynamic_batching")
    assert config.name == ""
