"""The public models (``Catalog``): the bundled repository read once, each folder's ``sightline.json`` giving a
network (the folder's name is its id and its Triton model), a specification and its one, current version; a broken
folder stops the start-up, naming the folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from service.catalog import METADATA_FILE, Catalog
from service.domain import Target
from service.errors import NotFoundError
from tests.helpers import ROOT

REPOSITORY = ROOT / "model_repository"
CATALOG = Catalog.load(REPOSITORY)
BUNDLED = sorted(p.parent.name for p in REPOSITORY.glob(f"*/{METADATA_FILE}"))


def test_every_bundled_folder_is_a_public_network_with_its_current_version() -> None:
    assert sorted(n.id for n in CATALOG.networks()) == BUNDLED
    assert len(CATALOG.specifications()) == len(BUNDLED)
    for spec in CATALOG.specifications():
        versions = CATALOG.versions(spec.id)
        assert [v.id for v in versions] == [spec.current_version_id]
        deployment = CATALOG.for_spec(spec.id)
        assert deployment.spec == spec
        assert deployment.version == versions[0]
        assert deployment.model_name == deployment.network.id  # the folder name is the Triton model
        assert CATALOG.for_version(versions[0].id) is deployment
        assert (versions[0].spec_name, versions[0].network_name) == (spec.name, deployment.network.name)


def test_colors_as_its_file_says() -> None:
    raw = json.loads((REPOSITORY / "colors" / METADATA_FILE).read_text())
    deployment = CATALOG.for_spec(raw["spec"]["id"])
    assert deployment.version.id == raw["version"]["id"]
    assert deployment.network == CATALOG.network("colors")
    assert deployment.network.name == raw["network"]["name"]
    assert [label.name for label in deployment.spec.outputs[0].labels] == [
        label["name"] for label in raw["spec"]["outputs"][0]["labels"]["labels"]
    ]
    assert deployment.means.keys() == {"mean.npy"}


def test_a_mean_file_is_read_as_h_w_c_with_the_inputs_channels(tmp_path: Path) -> None:
    """A per-channel mean saved as (C,) comes back (1, 1, C); a grayscale input's mean has one channel."""

    def grey(raw: dict[str, Any]) -> None:
        raw["network"]["preprocessing"]["inputs"][0]["image"].update(color_channels="L", mean_file="grey.npy")

    colour = copy_colors(tmp_path / "a")
    np.save(colour / "mean.npy", np.array([0.25, 0.5, 0.75], dtype=np.float64))
    assert Catalog.load(tmp_path / "a").means("colors")["mean.npy"].tolist() == [[[0.25, 0.5, 0.75]]]
    single = copy_colors(tmp_path / "b", grey)
    np.save(single / "grey.npy", np.full((1, 4, 4), 0.5))
    mean = Catalog.load(tmp_path / "b").means("colors")["grey.npy"]
    assert mean.shape == (4, 4, 1)
    assert mean.dtype == np.float32


async def test_lookups_of_what_is_not_public_are_not_found() -> None:
    for lookup in (CATALOG.network, CATALOG.for_spec, CATALOG.for_version):
        with pytest.raises(NotFoundError):
            lookup("1")
    assert [CATALOG.has_network("1"), CATALOG.has_spec("colors"), CATALOG.has_version("colors-v1")] == [False] * 3
    assert [CATALOG.has_network("colors"), CATALOG.has_spec("colors-v1"), CATALOG.has_version("colors-v1.1")] == [
        True
    ] * 3
    assert CATALOG.means("1") == {}
    assert CATALOG.versions("1") == []


async def test_resolve_finds_a_public_spec_or_version() -> None:
    assert await CATALOG.resolve(Target(spec_id="colors-v1")) is CATALOG.for_spec("colors-v1")
    assert await CATALOG.resolve(Target(version_id="colors-v1.1")) is CATALOG.for_spec("colors-v1")
    with pytest.raises(NotFoundError):
        await CATALOG.resolve(Target(version_id="colors-v9"))


def test_an_empty_repository_has_no_public_models(tmp_path: Path) -> None:
    empty = Catalog.load(tmp_path)
    assert (empty.networks(), empty.specifications(), empty.versions()) == ([], [], [])


def copy_colors(tmp_path: Path, change: Any = None, folder: str = "colors") -> Path:
    """The colors folder copied under ``tmp_path/<folder>``, its sightline.json passed through ``change``."""
    target = tmp_path / folder
    shutil.copytree(REPOSITORY / "colors", target)
    raw = json.loads((target / METADATA_FILE).read_text())
    if change is not None:
        change(raw)
    (target / METADATA_FILE).write_text(json.dumps(raw))
    return target


def test_a_copied_folder_is_a_network_named_after_its_folder(tmp_path: Path) -> None:
    def no_id(raw: dict[str, Any]) -> None:
        del raw["network"]["id"]

    copy_colors(tmp_path, no_id, folder="tinted")
    catalog = Catalog.load(tmp_path)
    assert [n.id for n in catalog.networks()] == ["tinted"]
    assert catalog.for_spec("colors-v1").model_name == "tinted"


def set_id(raw: dict[str, Any]) -> None:
    raw["network"]["id"] = "paints"


def drop_version(raw: dict[str, Any]) -> None:
    del raw["version"]


def two_outputs(raw: dict[str, Any]) -> None:
    raw["version"]["post_processings"] *= 2


def missing_mean(raw: dict[str, Any]) -> None:
    raw["network"]["preprocessing"]["inputs"][0]["image"]["mean_file"] = "absent.npy"


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (set_id, "network id 'paints' differs from the folder name 'colors'"),
        (drop_version, "version"),
        (two_outputs, "post_processings: has 2 entries but the specification has 1 outputs"),
        (missing_mean, "absent.npy"),
    ],
)
def test_a_broken_bundled_model_stops_the_start_up_naming_its_folder(tmp_path: Path, change: Any, words: str) -> None:
    copy_colors(tmp_path, change)
    with pytest.raises(RuntimeError, match=r"^bundled model colors: ") as raised:
        Catalog.load(tmp_path)
    assert words in str(raised.value)


def test_unparseable_json_stops_the_start_up(tmp_path: Path) -> None:
    (copy_colors(tmp_path) / METADATA_FILE).write_text("{")
    with pytest.raises(RuntimeError, match="bundled model colors"):
        Catalog.load(tmp_path)
