"""Data that does not fit its metadata: refused when added, shaped (never failing) when read.

Over HTTP: the admin adds a file, then it changes under the server, as files do."""

from __future__ import annotations

import shutil
import uuid

import pandas as pd
import pytest

from lomas_server.errors import DatasetUnavailable, InvalidMetadata
from tests.conftest import SAMPLE_DATA, sample_metadata

COUNT = "SELECT COUNT(*) AS n FROM df"


def _name() -> str:
    return f"FIT{uuid.uuid4().hex[:6]}"


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("censor_dims", False),
        ("clamp_columns", False),
        ("sample_max_ids", False),
        ("use_dpsu", True),
    ],
)
def test_metadata_that_weakens_the_guarantee_is_refused_with_the_reason(admin, option, value):
    metadata = {**sample_metadata("penguin"), option: value}
    with pytest.raises(InvalidMetadata, match=option):
        admin.add_dataset(_name(), SAMPLE_DATA / "penguin.csv", metadata)


def test_rows_is_checked_when_added_and_when_the_data_grows(admin, make_user, tmp_path):
    too_few = {**sample_metadata("penguin"), "rows": 300}
    with pytest.raises(DatasetUnavailable, match="344 rows, more than the metadata's 'rows'"):
        admin.add_dataset(_name(), SAMPLE_DATA / "penguin.csv", too_few)
    path = tmp_path / "penguin.csv"
    shutil.copyfile(SAMPLE_DATA / "penguin.csv", path)
    name = _name()
    admin.add_dataset(name, path, {**sample_metadata("penguin"), "rows": 344})
    user = make_user(**{name: (5.0, 0.0)})
    assert user.api.sql(name, COUNT, 1.0).status_code == 200
    rows = pd.read_csv(path)
    pd.concat([rows, rows.iloc[:1]]).to_csv(path, index=False)  # one penguin more than declared
    reply = user.api.sql(name, COUNT, 1.0, fresh=True)
    assert reply.status_code == 503 and "nothing was spent" in reply.json()["message"]
    assert user.api.get(f"/datasets/{name}/budget").json()["spent"]["epsilon"] == 1.0


def test_rows_that_do_not_fit_are_left_out_and_never_fail_a_query(admin, make_user, tmp_path):
    metadata = {
        "max_ids": 1,
        "rows": 1000,
        "columns": {
            "pid": {"type": "int", "private_id": True},
            "x": {"type": "float", "lower": 0.0, "upper": 10.0, "nullable": False},
            "when": {"type": "datetime"},
        },
    }
    path = tmp_path / "people.csv"
    clean = pd.DataFrame({"pid": range(100), "x": [5.0] * 100, "when": ["2020-01-01"] * 100})
    clean.to_csv(path, index=False)
    name = _name()
    admin.add_dataset(name, path, metadata)
    user = make_user(**{name: (50.0, 0.0)})
    # later: a row without an id, a NaN where a value is required, text in a number column, a
    # date nobody's calendar parses, a year past pandas' range
    broken = pd.concat(
        [
            clean.astype(str),
            pd.DataFrame(
                {
                    "pid": ["", "200", "201", "202", "203"],
                    "x": ["5", "nan", "not a number", "5", "5"],
                    "when": ["2020-01-01", "2020-01-01", "2020-01-01", "31/31/2020", "9999-12-31"],
                }
            ),
        ]
    )
    broken.to_csv(path, index=False)
    reply = user.api.sql(name, "SELECT COUNT(*) AS n, SUM(x) AS s FROM df", 5.0)
    assert reply.status_code == 200, reply.text
    (count, total) = reply.json()["result"]["data"][0]
    assert abs(count - 102) <= 4  # the clean 100 and two rows that fit (noise of scale 1/5)
    with pytest.raises(DatasetUnavailable, match="'x' does not hold values of type float"):
        admin.add_dataset(_name(), path, metadata)  # the admin, adding it, hears of them
    clean.iloc[:3].assign(pid=[1, None, 2]).to_csv(path, index=False)
    with pytest.raises(DatasetUnavailable, match="'pid' names each row's person"):
        admin.add_dataset(_name(), path, metadata)
