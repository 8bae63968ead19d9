"""The SQL allow-list: what passes, what is refused, and that refusals name the construct."""

from __future__ import annotations

import pytest

from lomas_server.engines.sql_guard import guard_query
from lomas_server.errors import InvalidQuery
from lomas_server.metadata import DatasetMetadata

META = DatasetMetadata.from_dict(
    {
        "max_ids": 1,
        "row_privacy": True,
        "columns": {
            "sex": {"type": "string", "categories": ["F", "M"]},
            "region": {"type": "string", "nullable": False},
            "age": {"type": "int", "lower": 0, "upper": 120},
            "income": {"type": "float", "lower": 0.0, "upper": 500000.0},
            "wealth": {"type": "float"},
            "employed": {"type": "boolean"},
            "born": {"type": "datetime"},
            "huge": {"type": "int", "lower": 0, "upper": 2**40},
        },
    }
)


def ok(sql: str) -> str:
    return guard_query(sql, META, "SURVEY").text


def refused(sql: str) -> str:
    with pytest.raises(InvalidQuery) as info:
        guard_query(sql, META, "SURVEY")
    return info.value.message


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT COUNT(*) FROM df",
        "SELECT COUNT(*) AS n FROM SURVEY",
        "select count(*) as n from survey",
        "SELECT COUNT(age) AS n, SUM(income) AS s, AVG(age) AS a, VAR(income), STDDEV(age) FROM df",
        "SELECT COUNT(DISTINCT region) AS n FROM df",
        "SELECT sex, COUNT(*) AS n FROM df GROUP BY sex",
        "SELECT sex, region, AVG(income) AS m FROM df GROUP BY sex, region",
        "SELECT AVG(income) * 2 + 1 AS x, ROUND(AVG(age), 1) AS r, ABS(SUM(age) - 10) FROM df",
        "SELECT SUM(income) / 1000 AS k FROM df",
        "SELECT COUNT(*) FROM df WHERE age >= 18 AND (sex = 'F' OR region <> 'North')",
        "SELECT COUNT(*) FROM df WHERE NOT employed",
        "SELECT COUNT(*) FROM df WHERE employed = TRUE AND sex IS NOT NULL",
        "SELECT COUNT(*) FROM df WHERE age BETWEEN 18 AND 65 AND sex IN ('F', 'M')",
        "SELECT COUNT(*) FROM df WHERE income > 1500.5",
        "SELECT COUNT(*) FROM df WHERE born >= '2000-01-01'",
        "SELECT COUNT(*) FROM df AS t WHERE t.age > 3",
        "SELECT region, COUNT(*) AS n FROM df GROUP BY region ORDER BY region LIMIT 5",
        "SELECT sex, COUNT(*) AS n FROM df WHERE sex IS NOT NULL GROUP BY sex ORDER BY sex",
        "SELECT sex, COUNT(*) AS n FROM df GROUP BY sex ORDER BY n DESC",
        "SELECT sex, COUNT(*) AS n FROM df GROUP BY sex HAVING n > 10",
        "SELECT sex, COUNT(*) FROM df GROUP BY sex HAVING COUNT(*) > 10",
        "SELECT TOP 3 region, COUNT(*) AS n FROM df GROUP BY region",
    ],
)
def test_allowed(sql):
    normalized = ok(sql)
    assert " FROM df" in normalized


def test_the_dataset_name_is_rewritten_to_the_canonical_table():
    assert ok("SELECT COUNT(*) AS n FROM Survey") == "SELECT COUNT(*) AS n FROM df"


def test_aggregates_of_a_boolean_add_up_its_number_and_keep_the_written_names():
    guarded = guard_query(
        "SELECT sex, AVG(employed), SUM(t.employed) AS n FROM df AS t GROUP BY sex "
        "HAVING AVG(employed) > 0.5",
        META,
        "SURVEY",
    )
    number = META.booleans_as_numbers["employed"]
    assert (number.type, number.lower, number.upper) == ("int", 0, 1)
    # what the engines run
    assert guarded.sql == (
        f"SELECT sex, AVG({number.name}), SUM({number.name}) AS n FROM df AS t GROUP BY sex "
        f"HAVING AVG({number.name}) > 0.5"
    )
    # what identifies the query and what the analyst is shown: their own names
    assert guarded.text == (
        "SELECT sex, AVG(employed), SUM(t.employed) AS n FROM df AS t GROUP BY sex "
        "HAVING AVG(employed) > 0.5"
    )
    assert guarded.output_names == ["sex", "AVG(employed)", "n"]
    # COUNT counts the same rows (so an AVG's own count is one noisy value); the boolean
    # itself is untouched outside aggregates
    counted = guard_query("SELECT COUNT(employed) AS n FROM df WHERE employed", META, "SURVEY")
    assert counted.sql == f"SELECT COUNT({number.name}) AS n FROM df WHERE employed"
    assert counted.text == "SELECT COUNT(employed) AS n FROM df WHERE employed"


def test_the_number_of_a_boolean_never_takes_a_columns_name():
    long_name = "b" * 60
    taken = DatasetMetadata.from_dict(
        {
            "row_privacy": True,
            "columns": {
                "ok": {"type": "boolean"},
                long_name: {"type": "boolean"},
                "LOMAS_NUMBER_1": {"type": "string"},
            },
        }
    )
    names = [n.name for n in taken.booleans_as_numbers.values()]
    lowered = {c.lower() for c in taken.columns}
    assert len(set(names)) == 2 and not lowered & {n.lower() for n in names}
    # short enough that PostgreSQL keeps every character (it cuts names at 63)
    assert all(len(n) <= 30 for n in names)
    # and an analyst cannot name one: it is not a column of the dataset
    number = META.booleans_as_numbers["employed"].name
    assert "unknown column" in refused(f"SELECT SUM({number}) FROM df")


def test_qualified_columns_are_run_unqualified():
    guarded = guard_query(
        "SELECT t.sex, SUM(t.age) AS s FROM df AS t WHERE t.age > 3 GROUP BY t.sex",
        META,
        "SURVEY",
    )
    assert guarded.sql == "SELECT sex, SUM(age) AS s FROM df AS t WHERE age > 3 GROUP BY sex"
    assert guarded.text == (
        "SELECT t.sex, SUM(t.age) AS s FROM df AS t WHERE t.age > 3 GROUP BY t.sex"
    )
    on_name = guard_query("SELECT AVG(survey.income) AS m FROM survey", META, "SURVEY")
    assert on_name.sql == "SELECT AVG(income) AS m FROM df"


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT sex, AVG(age) AS r FROM df GROUP BY sex HAVING avg(AGE) > 3",
        "SELECT t.sex, AVG(t.age) FROM df AS t GROUP BY t.sex ORDER BY AVG(age)",
        "SELECT t.sex, COUNT(*) AS n FROM df AS t WHERE t.sex IS NOT NULL GROUP BY t.sex "
        "ORDER BY t.sex",
        "SELECT sex, SUM(survey.age) FROM survey GROUP BY sex HAVING SUM(age) > 10",
    ],
)
def test_having_and_order_by_may_repeat_an_aggregate_as_written_in_select(sql):
    assert ok(sql)


def test_a_having_name_that_is_both_a_column_and_an_output_is_refused():
    message = refused("SELECT sex AS s, AVG(age) AS sex FROM df GROUP BY sex HAVING sex > 3")
    assert "names both a column and an output" in message


def test_normalization_ignores_whitespace_and_keyword_case():
    assert ok("select   count(*) as n\n from df  where age>3") == ok(
        "SELECT COUNT(*) AS n FROM df WHERE age > 3"
    )


@pytest.mark.parametrize(
    ("sql", "mentions"),
    [
        # data-dependent failures: arithmetic and functions on row values
        ("SELECT COUNT(*) FROM df WHERE income / (age - 40) > 1", "WHERE"),
        ("SELECT COUNT(*) FROM df WHERE age * 1000000 > 5", "WHERE"),
        ("SELECT SUM(age * age) FROM df", "no expressions inside aggregates"),
        ("SELECT SUM(income) / COUNT(*) FROM df", "positive number"),
        ("SELECT SUM(income) / 0 FROM df", "positive numbers only"),
        ("SELECT SUM(income) % COUNT(*) FROM df", "positive number"),
        ("SELECT LOG(SUM(income)) FROM df", "LOG"),
        ("SELECT SQRT(SUM(income)) FROM df", "SQRT"),
        ("SELECT EXP(AVG(age)) FROM df", "EXP"),
        ("SELECT POWER(SUM(age), 2) FROM df", "POWER"),
        ("SELECT COUNT(*) FROM df WHERE CAST(region AS INTEGER) > 2", "CAST"),
        (
            "SELECT SUM(CASE WHEN age > 3 THEN 1 ELSE 0 END) FROM df",
            "no expressions inside aggregates",
        ),
        ("SELECT COUNT(*) FROM df WHERE (CASE WHEN age > 3 THEN 1 ELSE 0 END) = 1", "WHERE"),
        ("SELECT AVG(income) * 1000000000000 FROM df", "literal"),
        # NULL-dependent failures on the released rows
        ("SELECT sex, COUNT(*) AS n FROM df GROUP BY sex ORDER BY sex", "NULLs"),
        ("SELECT sex, COUNT(*) AS n FROM df GROUP BY sex HAVING sex > 'A'", "HAVING"),
        ("SELECT age + 1 AS a, COUNT(*) AS n FROM df GROUP BY age", "on its own"),
        # types that would compare differently per row or per engine
        ("SELECT COUNT(*) FROM df WHERE region = 5", "'region' is string"),
        ("SELECT COUNT(*) FROM df WHERE age = 'ten'", "'age' is int"),
        ("SELECT COUNT(*) FROM df WHERE born > 'yesterday'", "'YYYY-MM-DD'"),
        ("SELECT COUNT(*) FROM df WHERE age IN (1, 'x')", "'age' is int"),
        ("SELECT COUNT(*) FROM df WHERE age = employed", "cannot compare"),
        # literals typed by the column: one accepted format per type, nothing cast per row
        ("SELECT COUNT(*) FROM df WHERE age > 40.5", "whole number"),
        ("SELECT COUNT(*) FROM df WHERE age IN (1, 2.5)", "whole number"),
        ("SELECT COUNT(*) FROM df WHERE born > '2000/01/01'", "'YYYY-MM-DD'"),
        ("SELECT COUNT(*) FROM df WHERE born > '2000-01-01T10:00:00'", "'YYYY-MM-DD'"),
        ("SELECT COUNT(*) FROM df WHERE born > '2000-01-01 10:00:00+01:00'", "'YYYY-MM-DD'"),
        ("SELECT COUNT(*) FROM df WHERE born > '20000101'", "'YYYY-MM-DD'"),
        ("SELECT COUNT(*) FROM df WHERE born > '2001-02-29'", "not a valid date"),
        ("SELECT COUNT(*) FROM df WHERE born BETWEEN '2000-01-01' AND 5", "'born' is datetime"),
        ("SELECT COUNT(*) FROM df WHERE employed = 1", "true or false"),
        ("SELECT COUNT(*) FROM df WHERE sex = 'a\\b'", "backslash"),
        ("SELECT COUNT(*) FROM df WHERE income > 0.00001", "0.0001"),
        ("SELECT COUNT(*) FROM df WHERE region IN ('" + "x" * 1001 + "')", "1000 characters"),
        ("SELECT COUNT(*) FROM df WHERE region", "not boolean"),
        ("SELECT COUNT(*) FROM df WHERE age = NULL", "IS NULL"),
        # unbounded or overflowing sums
        ("SELECT SUM(wealth) FROM df", "no bounds"),
        ("SELECT VAR(huge) FROM df", "overflow"),
        ("SELECT AVG(sex) FROM df", "numeric or boolean"),
        # shapes outside the subset
        ("SELECT * FROM df", "SELECT *"),
        ("SELECT DISTINCT sex FROM df", "DISTINCT"),
        ("SELECT sex FROM df", "GROUP BY"),
        ("SELECT MIN(age) FROM df", "MIN"),
        ("SELECT COUNT(*) FROM df JOIN df AS b ON df.age = b.age", "JOIN is not supported"),
        ("SELECT COUNT(*) FROM people", "unknown table"),
        ("SELECT COUNT(*) FROM other.df", "unknown table"),
        ("SELECT COUNT(nope) FROM df", "unknown column 'nope'"),
        ("SELECT COUNT(*) FROM df WHERE x.age > 1", "unknown table or alias"),
        ("SELECT region, COUNT(*) AS n FROM df GROUP BY region ORDER BY age", "SELECT list"),
        ("SELECT COUNT(*) FROM df WHERE age > 100000000000000000000", "out of range"),
        ("SELECT COUNT(*) FROM df; SELECT COUNT(*) FROM df", "one SELECT"),
        ("UPDATE df SET age = 1", "only SELECT queries"),
        ("SELECT COUNT(*) FROM df WHERE " + "(" * 200 + "age > 1" + ")" * 200, "nested"),
    ],
)
def test_refused(sql, mentions):
    assert mentions in refused(sql)


@pytest.mark.parametrize(
    ("sql", "written"),
    [
        # every value reaches the engines as a constant of its column's type
        ("SELECT COUNT(*) FROM df WHERE income > 1500", "income > 1500.0"),
        ("SELECT COUNT(*) FROM df WHERE age > 3.0", "age > 3"),
        ("SELECT COUNT(*) FROM df WHERE age IN (1, 2.0)", "age IN ( 1, 2 )"),
        (
            "SELECT COUNT(*) FROM df WHERE born >= '2000-01-01'",
            "born >= CAST('2000-01-01 00:00:00.000000' AS TIMESTAMP)",
        ),
        (
            "SELECT COUNT(*) FROM df WHERE born BETWEEN '0001-01-01' AND '9999-12-31 23:59:59.5'",
            "BETWEEN CAST('0001-01-01 00:00:00.000000' AS TIMESTAMP) "
            "AND CAST('9999-12-31 23:59:59.500000' AS TIMESTAMP)",
        ),
        ("SELECT COUNT(*) FROM df WHERE employed = true", "employed = TRUE"),
        ("SELECT COUNT(*) FROM df WHERE 'F' = sex", "'F' = sex"),
    ],
)
def test_values_are_written_as_constants_of_their_column_type(sql, written):
    assert written in ok(sql)


def test_group_keys_are_the_declared_grid_or_thresholded():
    public = DatasetMetadata.from_dict(
        {
            "row_privacy": True,
            "columns": {
                "sex": {"type": "string", "categories": ["F", "M"], "public_keys": True},
                "employed": {"type": "boolean", "public_keys": True},
                "region": {"type": "string", "categories": ["N", "S"]},
            },
        }
    )
    grid = guard_query("SELECT sex, employed, COUNT(*) FROM df GROUP BY sex, employed", public, "S")
    assert grid.group_columns == ("sex", "employed")
    assert grid.key_grid == (("F", True), ("F", False), ("M", True), ("M", False))
    # categories alone are not public keys: those groups are thresholded
    mixed = guard_query("SELECT sex, region, COUNT(*) FROM df GROUP BY sex, region", public, "S")
    assert mixed.key_grid is None and mixed.group_columns == ("sex", "region")
    assert guard_query("SELECT COUNT(*) FROM df", public, "S").group_columns == ()


def test_refusals_do_not_depend_on_anything_but_query_and_metadata():
    # Same query, same message, every time: there is no data in the guard's reach.
    sql = "SELECT COUNT(*) FROM df WHERE income / (age - 40) > 1"
    assert len({refused(sql) for _ in range(3)}) == 1


@pytest.mark.parametrize(
    ("sql", "mentions"),
    [
        ("SELECT COUNT(DISTINCT *) AS n FROM df", "COUNT(DISTINCT *)"),
        # HAVING and ORDER BY name outputs without regard to case
        ('SELECT region AS n, COUNT(*) AS "N" FROM df GROUP BY region ORDER BY n', "two outputs"),
        ("SELECT STDEV(age) AS s FROM df", "STDEV"),
    ],
)
def test_shapes_the_engines_would_fail_after_spending_are_refused(sql, mentions):
    assert mentions in refused(sql)


@pytest.mark.parametrize(
    ("sql", "says"),
    [
        # where the parser stopped, in our words, with the hint a common cause allows
        ("SELECT COUNT(*) AS n FROM df t WHERE t.age > 1", "near 't' (line 1, column 30)"),
        ("SELECT COUNT(*) FROM df x", "write AS before the alias 'x'"),
        ("SELECT COUNT(*) n FROM df", "write AS before the alias 'n'"),
        ("SELECT COUNT(*) AS n", "no FROM"),
        ("SELECT 1", "no FROM"),
        ("SELECT COUNT(*) FROM df; x", "remove the ';'"),
        ("SELECT COUNT(*) AS count FROM df", 'write it in double quotes ("count")'),
        ("SELECT COUNT(*) FROM df WHERE year = 2000", "YEAR is a keyword"),
        ("SELECT COUNT(*) AS n FORM df", "did you mean FROM?"),
        ("SELEC COUNT(*) FROM df", "did you mean SELECT?"),
        ("SELECT CUNT(*) FROM df", "did you mean COUNT?"),
        ("FROM df SELECT COUNT(*)", "starts with SELECT"),
        ("SELECT COUNT(*) FROM df WHERE sex = 'F", "a quote (') is not closed"),
        ("SELECT COUNT(*) FROM df WHERE sex = 'it''s'", "a quote inside a text value"),
        ('SELECT COUNT(*) AS "n FROM df', "a double quote is not closed"),
        ('SELECT COUNT(*) FROM df WHERE sex = "F"', "write text values in single quotes ('F')"),
        ("SELECT COUNT(* AS n FROM df", "a '(' is not closed"),
        ("SELECT COUNT(*)) AS n FROM df", "closes no '('"),
        ("SELECT COUNT(*), FROM df", "ends with a comma"),
        ("SELECT COUNT(*) FROM df WHERE age > 1e3", "capital E"),
        ("SELECT COUNT(*) FROM df LIMIT 'a'", "LIMIT takes a whole number"),
        ("SELECT COUNT(*) FROM df WHERE sex = N'F'", "a letter before a quote"),
        ("SELECT COUNT(*) FROM df WHERE age > 1 AND AND age < 3", "AND is written twice"),
        ("SELECT COUNT(*) AS n FROM df WHERE sex = 'F' AND", "ends too early, after 'AND'"),
        ("SELECT COUNT(*) FROM df WHERE sex = 'F' @", "'@' has no meaning"),
        ("SELECT COUNT(*) AS n\nFROM df\nWHERE age > 1 t", "(line 3, column 15)"),
        ("-- nothing but a comment", "the query is empty"),
        # constructs the subset leaves out, named, with what to write instead
        ("SELECT MEDIAN(age) FROM df", "%%lomas_opendp with a median or quantile aggregate"),
        ("SELECT PERCENTILE_DISC(age) FROM df", "%%lomas_opendp"),
        ("SELECT MAX(age) FROM df", "%%lomas_opendp"),
        ("WITH t AS (SELECT * FROM df) SELECT COUNT(*) FROM t", "run two queries"),
        ("SELECT COUNT(*) FROM df UNION ALL SELECT COUNT(*) FROM df", "UNION is not supported"),
        ("SELECT COUNT(*) FROM df WHERE EXISTS (SELECT 1 FROM df)", "subqueries"),
        ("SELECT COUNT(*) FROM df WHERE age > (SELECT AVG(age) FROM df)", "subqueries"),
        ("SELECT COUNT(*) FROM (df) AS t", "without parentheses"),
        ("SELECT COUNT(*) FROM df, df AS b", "one table"),
        ("SELECT SUM(age) OVER (PARTITION BY sex) FROM df", "window functions (OVER)"),
        ("SELECT RANK() OVER (ORDER BY age) FROM df", "RANK is not supported"),
        ("SELECT AVG(DISTINCT age) FROM df", "COUNT(DISTINCT col)"),
        ("SELECT COUNT(*) FROM df WHERE sex NOT LIKE 'F%'", "LIKE"),
        ("SELECT COUNT(*) FROM df WHERE sex SIMILAR TO 'F'", "pattern matching"),
        ("SELECT COUNT(*) FROM df WHERE YEAR(born) = 2000", "col >= '2000-01-01'"),
        ("SELECT COUNT(*) FROM df WHERE born > DATE '2000-01-01'", "write dates as text"),
        ("SELECT COUNT(*) FROM df WHERE age = :age", "placeholders"),
        ("SELECT COUNT(*) FROM df WHERE age::int > 1", "'::'"),
        ("SELECT COUNT(*) FROM df OFFSET 3", "use LIMIT"),
        ("SELECT STRING_AGG(sex, ',') FROM df", "COUNT, SUM, AVG, VAR and STDDEV"),
        ("SELECT FOO(age) FROM df", "'FOO' is not a function queries may use"),
        ("SELECT COUNT(*) FROM df WHERE ABS(age) > 1", "ABS is not allowed in WHERE"),
        ("SELECT COUNT(*) FROM df WHERE SUM(age) > 1", "compare them in HAVING"),
        ("SELECT COUNT(*) FROM df WHERE age + 1 > 2", "arithmetic ('+')"),
        ("SELECT STDDEV_SAMP(age) FROM df", "write STDDEV"),
        ("SELECT TRUNC(SUM(age)) FROM df", "use ROUND(x, d)"),
        ("SELECT ROUND(SUM(age)) FROM df", "ROUND(x, 0)"),
        ("SELECT SUM(age) * -2 FROM df", "0 - x"),
        ("SELECT COUNT(*) * 0 FROM df", "positive numbers only"),
        ("SELECT region FROM df GROUP BY region", "add one such as COUNT(*)"),
        ("SELECT COUNT(ag) FROM df", "did you mean 'age'?"),
        ("INSERT INTO df VALUES (1)", "only SELECT queries are accepted"),
    ],
)
def test_refusals_say_what_and_what_instead(sql, says):
    message = refused(sql)
    assert says in message
    assert "\n" not in message
    for word in ("mismatched", "expecting", "extraneous", "viable", "<EOF>", "Function"):
        assert word not in message


def test_a_quoted_part_of_the_query_is_cut_short_and_on_one_line():
    message = refused("SELECT COUNT(*) FROM df WHERE sex = 'F' " + "'a\nb" + "c" * 200)
    assert "\n" not in message
    quoted = message.split("near ", 1)[1].split(" (line")[0]
    assert len(quoted) <= 42 and quoted[-4:-1] == "..."


def test_a_defect_in_the_explanation_is_still_a_refusal(monkeypatch):
    from lomas_server.engines import sql_guard

    def broken(text, failure):
        raise KeyError("internal")

    monkeypatch.setattr(sql_guard, "explain", broken)
    assert refused("SELECT COUNT(*) AS n FROM df t") == (
        "the query cannot be read as one SELECT statement; docs/sql-allowlist.md shows what is "
        "accepted"
    )
