"""Columns as the synthesizers see them: each column's public domain, written from the metadata
alone, and rows as codes over it (synth_encoding.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lomas_server.engines.synth_encoding import MAX_CODES, codec_for, decode, encode
from lomas_server.errors import InvalidQuery
from lomas_server.metadata import DatasetMetadata
from lomas_server.tabular import table_payload

DOCUMENT = {
    "max_ids": 2,
    "row_privacy": False,
    "columns": {
        "pid": {"type": "int", "private_id": True},
        "flag": {"type": "boolean"},
        "kind": {"type": "string", "categories": ["a", "b", "c"], "nullable": False},
        "grade": {"type": "int", "categories": [3, 1, 2]},
        "n": {"type": "int", "lower": 0, "upper": 5, "nullable": False},
        "age": {"type": "int", "lower": 0, "upper": 100},
        "x": {"type": "float", "lower": -1.0, "upper": 1.0, "nullable": False},
        "name": {"type": "string"},
        "when": {"type": "datetime"},
        "free": {"type": "float"},
        "many": {"type": "string", "categories": [f"c{i}" for i in range(MAX_CODES)]},
    },
}
METADATA = DatasetMetadata.from_dict(DOCUMENT)


def _codec(name: str, bins: int = 10):
    return codec_for(METADATA, name, bins)


def test_a_boolean_is_false_true_and_missing():
    codec = _codec("flag")
    assert codec.values == (False, True) and codec.edges is None
    assert codec.size == 3 and codec.missing_code == 2
    assert codec.describe() == {"column": "flag", "values": 2, "nullable": True}


def test_categories_are_codes_in_declared_order():
    kind, grade = _codec("kind"), _codec("grade")
    assert kind.values == ("a", "b", "c") and kind.size == 3 and kind.missing_code is None
    assert grade.values == (3, 1, 2) and grade.size == 4  # nullable: one more, for missing
    assert grade.clamp is None  # declared categories are a set, not a range


def test_a_small_int_range_is_each_value_and_a_wide_one_is_bins():
    small = _codec("n")
    assert small.values == (0, 1, 2, 3, 4, 5) and small.clamp == (0, 5) and small.size == 6
    wide = _codec("age", bins=10)
    assert wide.values is None and wide.edges == tuple(float(e) for e in range(0, 101, 10))
    assert wide.size == 11 and wide.describe() == {"column": "age", "bins": 10, "nullable": True}
    # a range that holds no more values than the bins asked for is each value
    assert _codec("age", bins=100).values is None and len(_codec("n", bins=6).values) == 6
    assert _codec("n", bins=5).values is None  # six values in five bins


def test_a_bounded_float_is_equal_width_bins_between_its_bounds():
    codec = _codec("x", bins=4)
    assert codec.edges == (-1.0, -0.5, 0.0, 0.5, 1.0) and codec.size == 4


@pytest.mark.parametrize(
    ("column", "says"),
    [
        ("nope", "no column 'nope' in this dataset"),
        ("pid", "column 'pid' identifies people; it cannot be synthesized"),
        ("name", "column 'name' has neither declared categories nor numeric bounds"),
        ("when", "column 'when' holds dates and times, which cannot be synthesized yet"),
        ("free", "column 'free' has neither declared categories nor numeric bounds"),
        ("many", f"column 'many' has {MAX_CODES + 1} values; at most {MAX_CODES}"),
    ],
)
def test_a_column_without_a_public_domain_is_refused_by_name(column, says):
    with pytest.raises(InvalidQuery) as refused:
        _codec(column)
    assert says in refused.value.message


def test_numbers_past_a_bound_are_clamped_into_the_end_bin():
    codec = _codec("x", bins=4)
    codes = codec.encode(pd.Series([-7.0, -1.0, -0.5, -0.01, 0.0, 0.49, 0.5, 1.0, 1e300]))
    assert codes.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 3]
    age = _codec("age", bins=10)
    assert age.encode(pd.Series([-3, 0, 9, 10, 99, 100, 250])).tolist() == [0, 0, 0, 1, 9, 9, 9]


def test_small_ints_past_a_bound_are_clamped_to_it():
    codec = _codec("n")
    values = pd.Series([-2, 0, 3, 5, 9, 3.0])  # an int column with nulls reads as floats
    assert codec.encode(values).tolist() == [0, 0, 3, 5, 5, 3]


def test_a_value_outside_the_domain_reads_as_missing():
    flag, grade, kind = _codec("flag"), _codec("grade"), _codec("kind")
    assert flag.encode(pd.Series([True, False, None, np.bool_(True)])).tolist() == [1, 0, 2, 1]
    assert grade.encode(pd.Series([3, 1, 2, 7, None, np.int64(2)])).tolist() == [0, 1, 2, 3, 3, 2]
    # a column that cannot lack a value: -1, its row left out by ``encode``
    assert kind.encode(pd.Series(["a", "z", None, "c"])).tolist() == [0, -1, -1, 2]
    age = _codec("age")
    assert age.encode(pd.Series([5.0, float("nan"), None])).tolist() == [0, 10, 10]


def test_a_row_missing_a_value_its_column_needs_is_left_out_and_no_other():
    codecs = [_codec("kind"), _codec("flag"), _codec("x", bins=2), _codec("n")]
    frame = pd.DataFrame(
        {
            "kind": ["a", "b", "zzz", "c", None, "a"],
            "flag": [True, None, True, False, True, False],
            "x": [0.5, -0.5, 0.1, float("nan"), 0.2, 5.0],
            "n": [1, 2, 3, 4, 5, None],
        }
    )
    codes = encode(frame, codecs)
    # rows 2 (unknown kind), 3 (x missing), 4 (kind missing), 5 (n missing) are left out
    assert codes.to_dict("list") == {"kind": [0, 1], "flag": [1, 2], "x": [1, 0], "n": [1, 2]}
    assert list(codes.columns) == ["kind", "flag", "x", "n"]


def test_no_rows_encode_to_no_codes():
    codecs = [_codec("kind"), _codec("x")]
    codes = encode(pd.DataFrame({"kind": [], "x": []}), codecs)
    assert codes.shape == (0, 2)


@pytest.mark.parametrize(("column", "bins"), [("x", 4), ("x", 7), ("age", 10), ("age", 7)])
def test_a_synthetic_value_lies_within_its_bin(column, bins):
    """Decoding draws within the bin, which encodes back to the same code: for ints, a bin
    holds its lower edge but not its upper one (but the last bin, which holds both)."""
    codec = _codec(column, bins)
    known = codec.size - (1 if codec.nullable else 0)
    codes = np.repeat(np.arange(known), 200)
    values = codec.decode(codes, np.random.default_rng(1))
    assert codec.encode(pd.Series(values)).tolist() == codes.tolist()
    assert all(codec.edges[0] <= v <= codec.edges[-1] for v in values)
    if codec.type == "int":
        assert all(isinstance(v, int) for v in values)
        # every whole number of the range is drawn: none is out of reach
        assert set(values) == set(range(int(codec.edges[0]), int(codec.edges[-1]) + 1))


def test_values_and_missing_decode_to_themselves():
    codecs = [_codec("grade"), _codec("flag"), _codec("n")]
    codes = pd.DataFrame({"grade": [0, 1, 2, 3], "flag": [0, 1, 2, 0], "n": [0, 5, 2, 3]})
    decoded = decode(codes, codecs, seed=3)
    assert decoded.to_dict("list") == {
        "grade": [3, 1, 2, None],
        "flag": [False, True, None, False],
        "n": [0, 5, 2, 3],
    }
    assert encode(decoded, codecs).to_dict("list") == codes.to_dict("list")
    # as the reply carries them: an int column with a missing value stays whole numbers
    payload = table_payload(decoded)
    assert payload["data"][0] == [3, False, 0] and payload["data"][3] == [None, False, 3]
    assert all(type(row[0]) is int for row in payload["data"][:3])


def test_the_domain_is_the_same_whatever_the_data():
    """A codec is the metadata's: nothing of it is read from rows."""
    for name in ("flag", "kind", "grade", "n", "age", "x"):
        assert _codec(name) == codec_for(DatasetMetadata.from_dict(DOCUMENT), name, 10)
