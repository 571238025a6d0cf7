"""infra.local.bigquery_speedups: the emulator's SQL parses remembered, each caller with its own tree."""

from __future__ import annotations

import pytest
import sqlglot
from sqlglot.errors import ParseError

from infra.local import bigquery_speedups as speedups


@pytest.fixture
def remembered():
    speedups.apply()
    yield
    speedups.restore()


def test_a_parse_is_remembered_and_every_caller_gets_its_own_tree(remembered):
    sql = "SELECT lead_id, COUNT(*) AS n FROM `p.d.lead_versions` WHERE kind = 'created' GROUP BY lead_id"
    first = sqlglot.parse_one(sql, read="bigquery")
    first.find(sqlglot.exp.Column).replace(sqlglot.exp.column("changed"))  # rewrites change trees in place
    second = sqlglot.parse_one(sql, read="bigquery")
    assert second is not first
    assert second.sql(dialect="bigquery") == speedups._ORIGINAL_PARSE_ONE(sql, read="bigquery").sql(dialect="bigquery")
    assert speedups._parsed.cache_info().hits >= 1


def test_dialects_and_options_are_part_of_the_key(remembered):
    sql = "SELECT a FROM t"
    sqlglot.parse_one(sql, read="bigquery")
    hits = speedups._parsed.cache_info().hits
    sqlglot.parse_one(sql, read="duckdb")
    sqlglot.parse_one(sql, read="bigquery", error_level=sqlglot.ErrorLevel.IGNORE)
    assert speedups._parsed.cache_info().hits == hits
    sqlglot.parse_one(sql, read="duckdb")
    assert speedups._parsed.cache_info().hits == hits + 1


def test_parse_errors_are_raised_every_time(remembered):
    for _ in range(2):
        with pytest.raises(ParseError):
            sqlglot.parse_one("SELECT (", read="bigquery")
    assert speedups._parsed.cache_info().currsize == 0


def test_restore_gives_sqlglot_back():
    speedups.apply()
    speedups.restore()
    assert sqlglot.parse_one is speedups._ORIGINAL_PARSE_ONE


def test_a_transpile_is_remembered_as_text(remembered):
    sql = "SELECT SAFE_DIVIDE(a, b) AS r FROM `p.d.t` WHERE DATE(ts) = CURRENT_DATE()"
    expected = speedups._ORIGINAL_TRANSPILE(sql, read="bigquery", write="duckdb", pretty=False)
    first = sqlglot.transpile(sql, read="bigquery", write="duckdb", pretty=False)
    first.append("changed by a caller")
    assert sqlglot.transpile(sql, read="bigquery", write="duckdb", pretty=False) == expected
    assert speedups._transpiled.cache_info().hits == 1
