"""The memo of SmartNoise-SQL's XPath selectors: the same nodes found, each text parsed once,
and a selector that does not parse keeps failing."""

from __future__ import annotations

import pytest
from snsql.sql.parse import QueryParser
from snsql.xpath.parse import XPath

from lomas_server.engines import xpath_memo
from lomas_server.metadata import DatasetMetadata
from tests.conftest import sample_metadata


@pytest.fixture(autouse=True)
def remembering():
    """What the SmartNoise-SQL engine installs when it starts."""
    xpath_memo.remember_xpaths()


PENGUIN = DatasetMetadata.from_dict(sample_metadata("penguin"))
SELECTORS = [
    "//NamedExpression[@name='n']",
    "//AggFunction",
    "//Column",
    "//Table",
    "/Query/Select//NamedExpression",
]


def _query():
    document = {"": {"": {"df": PENGUIN.smartnoise_table()}}}
    text = "SELECT species, COUNT(*) AS n, AVG(bill_length_mm) AS a FROM df GROUP BY species"
    return QueryParser(document).query(text)


def _found(query, selector):
    return [str(node) for node in query.xpath(selector)]


def test_remembered_selectors_find_the_same_nodes():
    query = _query()
    remembered = {s: _found(query, s) for s in SELECTORS}
    remembered_again = {s: _found(query, s) for s in SELECTORS}  # parsed objects reused
    xpath_memo.forget_xpaths()
    try:
        fresh = {s: _found(query, s) for s in SELECTORS}
    finally:
        xpath_memo.remember_xpaths()
    assert remembered == fresh == remembered_again
    assert all(fresh[s] for s in SELECTORS)  # every selector finds something


def test_each_text_is_parsed_once():
    selector = "//NamedExpression[@name='only_here']"
    first = XPath().parse(selector)
    assert XPath().parse(selector) is first


def test_a_selector_that_does_not_parse_is_not_remembered():
    for _ in range(2):
        with pytest.raises(Exception):  # noqa: B017 - SmartNoise's own syntax error type
            XPath().parse("//[[")
    assert "//[[" not in xpath_memo._parsed
