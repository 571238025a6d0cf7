"""Subscription filters in Pub/Sub's documented syntax, compiled to a predicate on a message's attributes.

The service delivers only the messages a subscription's ``filter`` matches and acknowledges the others itself
(docs: "Filter messages from a subscription"). The syntax, on attributes only (never the data):

* ``attributes:KEY``                         the attribute exists
* ``attributes.KEY = "v"`` / ``!= "v"``      exact, case-sensitive comparison with a string literal
* ``hasPrefix(attributes.KEY, "p")``         the attribute exists and starts with ``p``
* ``AND``, ``OR``, ``NOT`` (or ``-``) and parentheses. As in the service, ``AND`` and ``OR`` cannot be mixed
  without parentheses (``a AND b OR c`` is refused: write ``(a AND b) OR c``).

A KEY with characters other than letters, digits, ``-`` and ``_`` is written as a string literal
(``attributes."my.key" = "x"``). A filter is at most 256 bytes. :func:`compile_filter` raises
:class:`FilterError` with the position of the problem for anything else.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

MAX_FILTER_BYTES = 256

Predicate = Callable[[Mapping[str, str]], bool]

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>"(?:[^"\\]|\\.)*")
      | (?P<op>!=|=|:|\(|\)|,|\.|-)
      | (?P<word>[A-Za-z0-9_]+(?:-[A-Za-z0-9_]+)*)
    )""",
    re.VERBOSE,
)


class FilterError(ValueError):
    """A filter the service would refuse (INVALID_ARGUMENT)."""


def _unquote(literal: str) -> str:
    body = literal[1:-1]
    try:
        return body.encode("latin-1", "backslashreplace").decode("unicode_escape")
    except UnicodeDecodeError as exc:
        raise FilterError(f"bad escape in string literal {literal}") from exc


def _tokens(text: str) -> list[tuple[str, str, int]]:
    out, pos = [], 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise FilterError(f"unexpected character at {pos}: {text[pos:pos + 10]!r}")
        kind = m.lastgroup
        out.append((kind, m.group(kind), m.start(kind)))
        pos = m.end()
    return out


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.toks = _tokens(text)
        self.i = 0

    def peek(self) -> tuple[str, str, int] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self, value: str | None = None, kind: str | None = None) -> tuple[str, str, int]:
        tok = self.peek()
        if tok is None:
            raise FilterError(f"unexpected end of filter, expected {value or kind}")
        if (value is not None and tok[1] != value) or (kind is not None and tok[0] != kind):
            raise FilterError(f"expected {value or kind} at {tok[2]}, got {tok[1]!r}")
        self.i += 1
        return tok

    def parse(self) -> Predicate:
        pred = self.expr()
        if self.peek() is not None:
            tok = self.peek()
            raise FilterError(f"unexpected {tok[1]!r} at {tok[2]}")
        return pred

    def expr(self) -> Predicate:
        terms = [self.term()]
        joiner = None
        while (tok := self.peek()) is not None and tok[0] == "word" and tok[1] in ("AND", "OR"):
            if joiner is not None and tok[1] != joiner:
                raise FilterError(f"AND and OR mixed without parentheses at {tok[2]}")
            joiner = tok[1]
            self.i += 1
            terms.append(self.term())
        if len(terms) == 1:
            return terms[0]
        if joiner == "AND":
            return lambda a: all(t(a) for t in terms)
        return lambda a: any(t(a) for t in terms)

    def term(self) -> Predicate:
        tok = self.peek()
        if tok is None:
            raise FilterError("unexpected end of filter, expected a condition")
        if tok[1] in ("NOT", "-") and tok[0] in ("word", "op"):
            self.i += 1
            inner = self.term()
            return lambda a: not inner(a)
        if tok[1] == "(":
            self.i += 1
            inner = self.expr()
            self.take(")")
            return inner
        if tok == ("word", "hasPrefix", tok[2]):
            self.i += 1
            self.take("(")
            key = self.attribute_key(".")
            self.take(",")
            prefix = _unquote(self.take(kind="string")[1])
            self.take(")")
            return lambda a: key in a and a[key].startswith(prefix)
        if tok[1] == "attributes":
            self.i += 1
            sep = self.take(kind="op")
            if sep[1] == ":":
                key = self.key()
                return lambda a: key in a
            if sep[1] != ".":
                raise FilterError(f"expected '.' or ':' after attributes at {sep[2]}")
            key = self.key()
            op = self.take(kind="op")
            if op[1] not in ("=", "!="):
                raise FilterError(f"expected = or != at {op[2]}, got {op[1]!r}")
            value = _unquote(self.take(kind="string")[1])
            if op[1] == "=":
                return lambda a: a.get(key) == value
            return lambda a: a.get(key) != value
        raise FilterError(f"expected a condition on attributes at {tok[2]}, got {tok[1]!r}")

    def attribute_key(self, sep: str) -> str:
        self.take("attributes")
        self.take(sep)
        return self.key()

    def key(self) -> str:
        tok = self.peek()
        if tok is not None and tok[0] == "string":
            self.i += 1
            return _unquote(tok[1])
        return self.take(kind="word")[1]


def compile_filter(text: str) -> Predicate:
    """A predicate on attributes for ``text``; the empty filter matches every message."""
    if len(text.encode()) > MAX_FILTER_BYTES:
        raise FilterError(f"a filter is at most {MAX_FILTER_BYTES} bytes (got {len(text.encode())})")
    if not text.strip():
        return lambda a: True
    return _Parser(text).parse()
