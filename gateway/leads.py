"""The body of ``POST /v1/leads``: one lead object, or an array of up to ``MAX_BATCH`` of them.

A lead is what the pipeline's ``api`` parser accepts: the JSON Schema derived from ``schemas.records.ApiLeadPayload``
plus its phone-or-email rule, both from ``transforms.parsers.api`` (one home). Every problem of every lead is
reported at once, by index and field, and never with the value (it may be PII).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from transforms.messages import JsonRejected, decode_json
from transforms.parsers import api

MAX_BATCH = 500
# "Not blank" as the pipeline means it (str.strip): any character Python's isspace() does not call space. Written
# out, because regex engines disagree on \S (ECMA-262's leaves out U+001C-U+001F and U+0085, and adds U+FEFF).
_PYTHON_SPACE = "\\t\\n\\x0b\\x0c\\r\\x1c-\\x20\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000"
_NOT_BLANK = {"type": "string", "pattern": f"[^{_PYTHON_SPACE}]"}
# The derived schema, plus what api.problems checks beyond it (a non-blank external_id, a phone or an e-mail),
# written out for the document's readers and fuzzers; api.problems stays the judge (test_units checks they agree).
LEAD_SCHEMA = {
    **{k: v for k, v in api.SCHEMA.items() if k not in ("$schema", "$id")},
    "allOf": [{"properties": {"external_id": _NOT_BLANK}},
              {"anyOf": [{"required": ["phone"], "properties": {"phone": _NOT_BLANK}},
                         {"required": ["email"], "properties": {"email": _NOT_BLANK}}]}],
}
REQUEST_SCHEMA: dict[str, Any] = {
    "oneOf": [
        {"$ref": "#/components/schemas/Lead"},
        {"type": "array", "items": {"$ref": "#/components/schemas/Lead"}, "minItems": 1, "maxItems": MAX_BATCH},
    ]
}


@dataclass(frozen=True)
class FieldError:
    index: int | None  # the lead's position in a batch; None for a single lead or the body as a whole
    field: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"field": self.field, "message": self.message}
        if self.index is not None:
            out["index"] = self.index
        return out


@dataclass(frozen=True)
class LeadsBody:
    leads: list[dict[str, Any]]
    batch: bool


def _field_error(index: int | None, problem: str) -> FieldError:
    name, sep, message = problem.partition(": ")
    return FieldError(index, name, message) if sep else FieldError(index, "(root)", problem)


def check_body(body: bytes) -> tuple[LeadsBody | None, list[FieldError]]:
    """(the leads, []) for a valid body, else (None, every problem)."""
    try:
        decoded = decode_json(body)
    except JsonRejected as e:
        return None, [FieldError(None, "(body)", f"{e.error_type}: {e.message}")]
    batch = isinstance(decoded, list)
    items = decoded if batch else [decoded]
    if batch and not 1 <= len(items) <= MAX_BATCH:
        return None, [FieldError(None, "(body)", f"a batch holds 1 to {MAX_BATCH} leads")]
    errors: list[FieldError] = []
    for i, item in enumerate(items):
        index = i if batch else None
        if not isinstance(item, dict):
            errors.append(FieldError(index, "(root)", "expected a lead object"))
            continue
        errors.extend(_field_error(index, problem) for problem in api.problems(item))
    return (None, errors) if errors else (LeadsBody(items, batch), [])


def message_body(lead: dict[str, Any]) -> bytes:
    """A batch element as its own message (a single lead is published as it was sent, byte for byte)."""
    return json.dumps(lead, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
