"""The admin's metadata: what it may declare, what is refused, and what the engines are told."""

from __future__ import annotations

import pytest

from lomas_server.errors import InvalidMetadata, InvalidQuery
from lomas_server.metadata import DatasetMetadata
from lomas_server.service.lomas_import import safe_metadata

COLUMNS = {
    "pid": {"type": "int", "private_id": True},
    "kind": {"type": "string", "categories": ["a", "b"], "public_keys": True},
    "flag": {"type": "boolean", "public_keys": True},
    "region": {"type": "string", "categories": ["n", "s"]},
    "x": {"type": "float", "lower": 0.0, "upper": 10.0},
}


def metadata(**options) -> DatasetMetadata:
    return DatasetMetadata.from_dict({"max_ids": 2, "columns": COLUMNS, **options})


@pytest.mark.parametrize(
    ("options", "mentions"),
    [
        ({"censor_dims": False}, "censor_dims: false"),
        ({"clamp_columns": False}, "clamp_columns: false"),
        ({"sample_max_ids": False}, "sample_max_ids: false"),
        ({"use_dpsu": True}, "use_dpsu"),
        ({"row_privacy": True}, "keep one of the two"),
        ({"columns": {**COLUMNS, "x": {**COLUMNS["x"], "sensitivity": 1}}}, "'sensitivity'"),
        ({"columns": {**COLUMNS, "x": {**COLUMNS["x"], "missing_value": "none"}}}, "missing_value"),
        ({"columns": {**COLUMNS, "x": {**COLUMNS["x"], "missing_value": 50.0}}}, "missing_value"),
        ({"columns": {**COLUMNS, "y": {"type": "int", "private_id": True}}}, "only one column"),
    ],
)
def test_options_that_weaken_the_guarantee_are_named(options, mentions):
    found = metadata(**options).weakening_options()
    assert len(found) == 1 and mentions in found[0]


def test_the_engines_never_see_a_weakening_option():
    document = {
        "max_ids": 2,
        "censor_dims": False,
        "clamp_columns": False,
        "sample_max_ids": False,
        "use_dpsu": True,
        "columns": {**COLUMNS, "x": {**COLUMNS["x"], "sensitivity": 0.001, "missing_value": "x"}},
    }
    table = DatasetMetadata.from_dict(document).smartnoise_table()
    assert table["clamp_columns"] is True and table["sample_max_ids"] is True
    assert table["use_dpsu"] is False and table["censor_dims"] is False  # decided per query
    assert "sensitivity" not in table["x"] and "missing_value" not in table["x"]
    # the person id is never missing as far as the engines know: rows without one are left out
    assert table["pid"] == {"type": "int", "nullable": False, "private_id": True}
    assert metadata().required_columns == ["pid"]


def test_the_key_grid_is_every_declared_combination_in_order():
    meta = metadata()
    assert meta.key_grid(["kind", "flag"]) == [
        ("a", True),
        ("a", False),
        ("b", True),
        ("b", False),
    ]
    assert meta.key_grid(["kind", "region"]) is None  # region's values are not public
    big = DatasetMetadata.from_dict(
        {
            "row_privacy": True,
            "columns": {
                f"c{i}": {"type": "int", "categories": list(range(100)), "public_keys": True}
                for i in range(3)
            },
        }
    )
    with pytest.raises(InvalidQuery, match="at most 100000"):
        big.key_grid(["c0", "c1", "c2"])


@pytest.mark.parametrize(
    ("column", "mentions"),
    [
        ({"type": "int", "categories": ["1", "2"]}, "categories must be int"),
        ({"type": "string", "categories": ["a", "a"]}, "listed twice"),
        (
            {"type": "float", "public_keys": True, "categories": [1.5]},
            "only string, int and boolean",
        ),
        ({"type": "float", "lower": 0, "upper": 1e300}, r"at most 1e\+15"),
    ],
)
def test_declarations_that_could_not_hold_are_refused(column, mentions):
    with pytest.raises(InvalidMetadata, match=mentions):
        DatasetMetadata.from_dict({"row_privacy": True, "columns": {"c": column}})


def test_lomas_metadata_is_made_safe_with_a_note_for_each_change():
    document = {
        "max_ids": 1,
        "row_privacy": True,
        "censor_dims": False,
        "clamp_columns": False,
        "columns": {
            "age": {"type": "int", "private_id": True, "lower": 0, "upper": 120},
            "sex": {"type": "string", "categories": ["F", "M"]},
            "income": {"type": "float", "lower": 0.0, "upper": 1e5, "sensitivity": 10},
        },
    }
    safe, notes = safe_metadata(document)
    assert DatasetMetadata.from_dict(safe).weakening_options() == []
    assert len(notes) == 4
    assert any("censor_dims" in n and "sex" in n and "public_keys" in n for n in notes)
    assert "censor_dims" in document  # the caller's document is left as it was
