"""v0.7 JSON out of the REST facade, against the v0.7 contract's shapes (design/v07-contract.md)."""

from __future__ import annotations

import json

import numpy as np
from yarl import URL

from postprocess.types import BBox, LabelsResult, Prediction
from service.api.rest.converters import page_json, public_id, result_json, spec_json
from service.domain import LabelDef, Roi, Specification, SpecOutput
from service.domain.results import RecognitionResult, TensorsResult


def test_ids_are_integers_for_an_organisations_resources_and_strings_for_public_ones() -> None:
    assert public_id("42") == 42
    assert public_id("colors-v1") == "colors-v1"
    assert public_id("¹") == "¹"  # a digit to str.isdigit, not a decimal id


def test_list_pages_keep_the_whole_query_in_next_and_previous() -> None:
    url = URL("http://h:8080/v0.7/tasks/?task_ids=a&task_ids=b&offset=100&limit=100&extra=1")
    page = page_json(url, 100, 100, 250, [])
    following, previous = URL(page["next"]), URL(page["previous"])
    assert following.query.getall("task_ids") == ["a", "b"]
    assert (following.query["offset"], following.query["limit"], following.query["extra"]) == ("200", "100", "1")
    assert previous.query["offset"] == "0"
    assert page["prev"] == page["previous"]
    assert page_json(url, 200, 100, 250, [])["next"] is None
    assert page_json(url, 0, 100, 250, [])["previous"] is None


def test_results_print_the_v07_shape_with_float32_values_shortest() -> None:
    score = float(np.float32(0.990304172))
    box = BBox(*(float(np.float32(v)) for v in (0.312604159, 0.366485775, 0.666821837, 0.5318923)))
    result = RecognitionResult((LabelsResult((Prediction(9, "sunglasses", score, 0.347, 1, box),), ()),))
    text = json.dumps(result_json(result))
    assert json.loads(text) == {
        "outputs": [
            {
                "labels": {
                    "predicted": [
                        {
                            "label_name": "sunglasses",
                            "label_id": 9,
                            "roi": {
                                "region_id": 1,
                                "bbox": {"xmin": 0.31260416, "ymin": 0.36648577, "xmax": 0.66682184, "ymax": 0.5318923},
                            },
                            "score": 0.9903042,
                            "threshold": 0.347,
                        }
                    ],
                    "discarded": [],
                }
            }
        ]
    }
    tensors = TensorsResult.from_arrays({"share": np.arange(6, dtype=np.float32).reshape(1, 6)})
    assert result_json(tensors) == {
        "tensors": [{"name": "share", "shape": [1, 6], "data": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]}]
    }


def test_a_public_specification_hides_current_version_id_and_lists_leave_out_outputs() -> None:
    spec = Specification("7", "mine", (SpecOutput((LabelDef(3, "cat"),), True, Roi.NONE),), current_version_id="12")
    assert spec_json(spec, public=False)["current_version_id"] == 12
    assert "current_version_id" not in spec_json(spec, public=True)
    assert "outputs" not in spec_json(spec, public=False, with_outputs=False)
    assert spec_json(spec, public=False)["outputs"] == [
        {"labels": {"labels": [{"id": 3, "name": "cat"}], "exclusive": True, "roi": "NONE"}}
    ]
