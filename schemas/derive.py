"""Derive BigQuery, Arrow and JSON schemas, and JSON rows, from the records in ``schemas.records``; copy records."""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from datetime import UTC, date, datetime
from typing import Any

import pyarrow as pa

from schemas import records

_BQ_TYPES: dict[Any, str] = {
    str: "STRING",
    int: "INTEGER",
    float: "FLOAT",
    bool: "BOOLEAN",
    datetime: "TIMESTAMP",
    date: "DATE",
    records.Json: "STRING",
}
_ARROW_TYPES: dict[Any, pa.DataType] = {
    str: pa.string(),
    int: pa.int64(),
    float: pa.float64(),
    bool: pa.bool_(),
    datetime: pa.timestamp("us", tz="UTC"),
    date: pa.date32(),
    records.Json: pa.string(),
}
_JSON_TYPES: dict[Any, dict[str, Any]] = {
    str: {"type": "string"},
    int: {"type": "integer"},
    float: {"type": "number"},
    bool: {"type": "boolean"},
    datetime: {"type": "string", "format": "date-time"},
    date: {"type": "string", "format": "date"},
    records.Json: {"type": "string"},
}


@dataclasses.dataclass(frozen=True)
class Column:
    """One field of a record, resolved: base type, nullability, repetition, description."""

    name: str
    base: Any
    nullable: bool
    repeated: bool
    description: str
    metadata: typing.Mapping[str, Any]


@functools.cache
def columns(record: type) -> tuple[Column, ...]:
    """The resolved columns of a record dataclass, in declaration order."""
    hints = typing.get_type_hints(record)
    out = []
    for f in dataclasses.fields(record):
        hint, nullable, repeated = hints[f.name], False, False
        if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
            args = [a for a in typing.get_args(hint) if a is not type(None)]
            nullable = len(args) != len(typing.get_args(hint))
            if len(args) != 1:
                raise TypeError(f"{record.__name__}.{f.name}: unsupported union {hint}")
            hint = args[0]
        if typing.get_origin(hint) is list:
            (hint,) = typing.get_args(hint)
            repeated = True
        if hint not in _BQ_TYPES:
            raise TypeError(f"{record.__name__}.{f.name}: unsupported type {hint}")
        out.append(Column(f.name, hint, nullable, repeated, f.metadata.get("description", ""), f.metadata))
    return tuple(out)


def bigquery_schema(record: type) -> list[dict[str, str]]:
    """BigQuery schema as the REST API's TableSchema.fields JSON."""
    return [
        {
            "name": c.name,
            "type": _BQ_TYPES[c.base],
            "mode": "REPEATED" if c.repeated else ("NULLABLE" if c.nullable else "REQUIRED"),
            "description": c.description,
        }
        for c in columns(record)
    ]


def arrow_schema(record: type) -> pa.Schema:
    """Arrow schema (Parquet files, BigQuery Storage API) of a record."""
    fields = []
    for c in columns(record):
        t = _ARROW_TYPES[c.base]
        fields.append(
            pa.field(c.name, pa.list_(t) if c.repeated else t, nullable=c.nullable or c.repeated,
                     metadata={"description": c.description})
        )
    return pa.schema(fields, metadata={"record": record.__name__})


_JSON_SCHEMA_KEYWORDS = ("minLength", "maxLength", "pattern", "format", "minimum", "maximum", "enum")


def json_schema(record: type, *, additional_properties: bool = False) -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of a record, used to validate payloads and rows."""
    props: dict[str, Any] = {}
    required = []
    for c in columns(record):
        item = dict(_JSON_TYPES[c.base])
        item.update({k: c.metadata[k] for k in _JSON_SCHEMA_KEYWORDS if k in c.metadata})
        prop: dict[str, Any] = {"type": "array", "items": item} if c.repeated else item
        if c.nullable:
            prop = {**prop, "type": [prop["type"], "null"]}
        prop["description"] = c.description
        props[c.name] = prop
        has_default = c.nullable  # nullable fields may be omitted
        if not has_default:
            required.append(c.name)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": record.__name__,
        "description": (record.__doc__ or "").strip().splitlines()[0],
        "type": "object",
        "properties": props,
        "required": required,
        "additionalProperties": additional_properties,
    }


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetime in a record; every timestamp must be UTC-aware")
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    return value


def to_row(record: Any) -> dict[str, Any]:
    """A record as a JSON-ready dict (timestamps as RFC 3339 UTC strings), for files and BigQuery."""
    return {c.name: _json_value(getattr(record, c.name)) for c in columns(type(record))}


def evolve(record: Any, **changes: Any) -> Any:
    """``dataclasses.replace`` for the plain record dataclasses (not frozen, no ``__post_init__``, every field
    an ``__init__`` argument), where it gives the same object: a shallow copy with ``changes`` set. Cheaper
    (replace re-runs ``__init__`` over Lead's 40 fields, and the dispatcher copies each lead up to three times;
    figures: docs/performance.md, "Profile: the routing stage"); other dataclasses go through
    ``dataclasses.replace``."""
    if type(record) not in _PLAIN:
        return dataclasses.replace(record, **changes)
    unknown = changes.keys() - _PLAIN[type(record)]
    if unknown:  # what dataclasses.replace would refuse, refused here too
        raise TypeError(f"{type(record).__name__} has no fields {sorted(unknown)}")
    new = object.__new__(type(record))
    state = new.__dict__
    state.update(record.__dict__)
    state.update(changes)
    return new


def _is_plain(cls: type) -> bool:
    params = cls.__dataclass_params__
    return (not params.frozen and not hasattr(cls, "__post_init__") and not hasattr(cls, "__slots__")
            and all(f.init for f in dataclasses.fields(cls)))


_PLAIN = {c: frozenset(f.name for f in dataclasses.fields(c)) for c in (records.Lead,) if _is_plain(c)}
