"""Uploaded networks' mean arrays: read from the model folder for the image inputs that name one (one channel for
a grayscale input), once per network, until the network is forgotten."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from service.domain import Preprocessing, parse_preprocessing
from service.registry.means import MeanCache, load_means
from tests.service.registry.helpers import image_input, preprocessing_body


def preprocessing(*inputs: dict[str, Any]) -> Preprocessing:
    return parse_preprocessing(preprocessing_body(*inputs))


def test_each_named_mean_is_read_with_its_inputs_channels(tmp_path: Path) -> None:
    np.save(tmp_path / "colour.npy", np.array([1.0, 2.0, 3.0], dtype=np.float32))
    np.save(tmp_path / "grey.npy", np.full((8, 8), 0.25, dtype=np.float32)[None])  # (1, 8, 8): C, H, W
    means = load_means(
        tmp_path,
        preprocessing(
            image_input("a", "colour.npy", "BGR"), image_input("b", "grey.npy", "L"), image_input("c", "", "BGR")
        ),
    )
    assert sorted(means) == ["colour.npy", "grey.npy"]
    assert means["colour.npy"].shape == (1, 1, 3)
    assert means["colour.npy"].ravel().tolist() == [1.0, 2.0, 3.0]
    assert means["grey.npy"].shape == (8, 8, 1)


def test_a_network_without_mean_files_reads_nothing(tmp_path: Path) -> None:
    assert load_means(tmp_path / "absent", preprocessing(image_input("a", "", "BGR"))) == {}


async def test_the_cache_reads_a_networks_means_once_until_forgotten(tmp_path: Path) -> None:
    path = tmp_path / "m.npy"
    np.save(path, np.array([1.0, 1.0, 1.0], dtype=np.float32))
    prep = preprocessing(image_input("a", "m.npy", "BGR"))
    cache = MeanCache()
    first = await cache.get("7", tmp_path, prep)
    np.save(path, np.array([9.0, 9.0, 9.0], dtype=np.float32))  # the file changes on disk
    assert (await cache.get("7", tmp_path, prep))["m.npy"].ravel().tolist() == [1.0, 1.0, 1.0]
    assert await cache.get("7", tmp_path, prep) is first
    cache.forget("7")
    assert (await cache.get("7", tmp_path, prep))["m.npy"].ravel().tolist() == [9.0, 9.0, 9.0]
    cache.forget("unknown")  # forgetting what was never read is no error
