"""The local BigQuery with its SQL parses remembered: ``python -m infra.local.bigquery_speedups start ...`` runs
``bqemulator start ...`` with ``sqlglot.parse_one`` and ``sqlglot.transpile`` memoized per statement text.

The emulator answers every request on one event loop and translates each query through a chain of rewrites, most of
which parse the statement text again (``sqlglot.parse_one``, pure Python): a query of the ``leads_current`` view is
parsed about ten times, and while it is, streaming inserts wait. A dashboard or a latency probe polling a view then
slows the pipeline's inserts (figures: docs/performance.md, "Speed to lead"). A parse depends only on the text and
the dialect, so each distinct (text, dialect, options) is parsed once; every caller gets its own copy of the tree,
since rewrites change trees in place. A transpile (text in one dialect to text in another) is remembered the same
way; its result is text, so it is shared as a new list. Errors are raised every time and never remembered.

Only the local stack starts the emulator this way (``infra.local.bigquery_emulator.start``); real BigQuery is
unaffected.
"""

from __future__ import annotations

import functools
import sys
from typing import Any

import sqlglot

PARSES_REMEMBERED = 4096
_ORIGINAL_PARSE_ONE = sqlglot.parse_one
_ORIGINAL_TRANSPILE = sqlglot.transpile


@functools.lru_cache(maxsize=PARSES_REMEMBERED)
def _parsed(sql: str, read: Any, dialect: Any, options: tuple) -> Any:
    return _ORIGINAL_PARSE_ONE(sql, read=read, dialect=dialect, **dict(options))


def parse_one(sql: str, read: Any = None, dialect: Any = None, into: Any = None, **opts: Any) -> Any:
    """``sqlglot.parse_one``, remembered per hashable arguments; a copy of the remembered tree."""
    if into is not None or not isinstance(sql, str):
        return _ORIGINAL_PARSE_ONE(sql, read=read, dialect=dialect, into=into, **opts)
    try:
        key = (sql, read, dialect, tuple(sorted(opts.items())))
        hash(key)
    except TypeError:  # a Dialect instance or an unhashable option: parse as sqlglot would
        return _ORIGINAL_PARSE_ONE(sql, read=read, dialect=dialect, **opts)
    return _parsed(*key).copy()


@functools.lru_cache(maxsize=PARSES_REMEMBERED)
def _transpiled(sql: str, read: Any, write: Any, identity: bool, error_level: Any, options: tuple) -> tuple:
    return tuple(_ORIGINAL_TRANSPILE(sql, read=read, write=write, identity=identity, error_level=error_level,
                                     **dict(options)))


def transpile(sql: str, read: Any = None, write: Any = None, identity: bool = True, error_level: Any = None,
              **opts: Any) -> list[str]:
    """``sqlglot.transpile``, remembered per hashable arguments."""
    try:
        key = (sql, read, write, identity, error_level, tuple(sorted(opts.items())))
        hash(key)
    except TypeError:
        return _ORIGINAL_TRANSPILE(sql, read=read, write=write, identity=identity, error_level=error_level, **opts)
    return list(_transpiled(*key))


def apply() -> None:
    sqlglot.parse_one = parse_one
    sqlglot.transpile = transpile


def restore() -> None:
    sqlglot.parse_one = _ORIGINAL_PARSE_ONE
    sqlglot.transpile = _ORIGINAL_TRANSPILE
    _parsed.cache_clear()
    _transpiled.cache_clear()


def main() -> None:
    apply()
    from bqemulator.cli import main as emulator_main  # after apply(): nothing may hold the original first

    sys.argv[0] = "bqemulator"
    emulator_main()


if __name__ == "__main__":
    main()
