"""The input message (one Pub/Sub message or one line of the bounded input file), units and dead letters.

A *unit* is what ends in exactly one ``lead_events`` or ``dead_letters`` row: a message, or one row
of a ``csv_upload`` message (unit id ``<message_id>#<row>``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from schemas.records import DeadLetter

# How much of an oversize or undecodable payload a dead letter keeps (BigQuery rows must stay small).
DEAD_LETTER_PAYLOAD_LIMIT = 64 * 1024
# Shared secrets providers put inside payloads; a stored payload (dead letters) never keeps their values.
GOOGLE_ADS_KEY_FIELD = "google_key"
SECRET_FIELDS = (GOOGLE_ADS_KEY_FIELD,)
_SECRET_VALUES = re.compile(r'("(?:' + "|".join(SECRET_FIELDS) + r')"\s*:\s*)"(?:[^"\\]|\\.)*"')
REDACTED = "[redacted]"
# The gateway's dead letters: a Meta notification whose lead could not be read from the Graph API, kept on the
# dead-letter topic for ``leadflow meta-refetch`` (its payload is the notification, not a lead input).
GATEWAY_STAGE, META_FETCH_FAILED = "gateway", "meta_fetch_failed"
MAX_MESSAGE_ID_LENGTH = 1024  # Pub/Sub's own ids are decimal strings of about 16 digits


class RejectedInput(ValueError):
    """Input that cannot go on: a stable machine-readable ``error_type`` and a readable, PII-free ``message``."""

    def __init__(self, error_type: str, message: str):
        super().__init__(message)
        self.error_type = error_type
        self.message = message


_FIELD_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


def redact_secrets(text: str) -> str:
    """The JSON text with the values of ``SECRET_FIELDS`` replaced (a linear scan; the text need not parse)."""
    return _SECRET_VALUES.sub(rf'\1"{REDACTED}"', text)


def safe_name(name: object, position: int | None = None) -> str:
    """An unknown key or attribute value as an error message may show it: quoted when it looks like a field name
    (lower-case letters, digits, underscores: what a typo of a field is), else only its position, so an e-mail
    address or phone number someone sent as a key is never echoed into dead letters and logs."""
    if isinstance(name, str) and _FIELD_NAME.match(name):
        return repr(name)
    return "(not shown)" if position is None else f"#{position} (not shown)"


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class InputMessage:
    """A message as Pub/Sub delivers it: id, raw bytes, attributes, publish time (UTC)."""

    message_id: str
    data: bytes
    attributes: dict[str, str] = field(default_factory=dict)
    publish_time: datetime | None = None


class JsonRejected(RejectedInput):
    """JSON that is not accepted anywhere in the pipeline (input lines and payloads alike)."""


def _refuse_constant(name: str):
    raise JsonRejected("json_non_finite_number", f"JSON holds {name}, which is not a JSON number")


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    obj = dict(pairs)
    if len(obj) != len(pairs):  # which value wins differs between decoders: refuse rather than guess
        raise JsonRejected("json_duplicate_key", "a JSON object names the same key twice")
    return obj


def _counted_unique_keys(max_keys: int):
    """``_unique_keys`` that also refuses a document whose objects hold more than ``max_keys`` keys together."""
    seen = 0

    def hook(pairs: list[tuple[str, object]]) -> dict:
        nonlocal seen
        seen += len(pairs)
        if seen > max_keys:
            raise JsonRejected("json_too_many_keys", f"JSON objects hold more than {max_keys} keys")
        return _unique_keys(pairs)

    return hook


def decode_json(text: str | bytes, max_keys: int | None = None):
    """``json.loads`` with what JSON itself refuses refused here too: NaN and Infinity, numbers too long for
    Python to convert (its integer-string limit), and objects that repeat a key; with ``max_keys``, also more keys
    than that in all objects together. Raises JsonRejected with a stable error type."""
    hook = _unique_keys if max_keys is None else _counted_unique_keys(max_keys)
    try:
        return json.loads(text, parse_constant=_refuse_constant, object_pairs_hook=hook)
    except json.JSONDecodeError as e:
        raise JsonRejected("invalid_json", f"invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    except RecursionError:
        raise JsonRejected("json_too_deep", "JSON nests too deeply to decode") from None
    except UnicodeDecodeError:
        raise JsonRejected("invalid_json", "JSON is not valid UTF-8") from None
    except ValueError as e:
        if isinstance(e, JsonRejected):
            raise
        raise JsonRejected("json_number_too_long", "JSON holds a number with too many digits") from None


class InputLineError(ValueError):
    """A line of the bounded input file that is not a message object."""


def message_from_json_line(line: str | bytes) -> InputMessage:
    """Decode one input-file line: ``{"message_id", "publish_time", "attributes", "data"}``.

    ``data`` is the payload as text; ``data_base64`` may carry bytes instead (for payloads that are
    not UTF-8). A missing ``message_id`` becomes a hash of the line, so reruns stay deterministic; a
    missing ``publish_time`` becomes the time the line is read.
    """
    raw = line.encode("utf-8", "surrogateescape") if isinstance(line, str) else line
    try:
        obj = decode_json(raw)
    except JsonRejected as e:
        raise InputLineError(f"input line is not accepted JSON ({e.error_type}): {e.message}") from None
    if not isinstance(obj, dict):
        raise InputLineError("input line must be a JSON object")
    message_id = obj.get("message_id")
    if message_id is None:
        message_id = "sha256:" + hashlib.sha256(raw).hexdigest()[:32]
    elif isinstance(message_id, bool) or not isinstance(message_id, (str, int)):
        raise InputLineError("message_id must be a string or an integer")
    elif len(str(message_id)) > MAX_MESSAGE_ID_LENGTH:
        raise InputLineError(f"message_id is longer than {MAX_MESSAGE_ID_LENGTH} characters")
    attributes = obj.get("attributes") or {}
    if not isinstance(attributes, dict) or not all(isinstance(v, str) for v in attributes.values()):
        raise InputLineError("attributes must be an object of strings")
    if "data_base64" in obj:
        try:
            data = base64.b64decode(obj["data_base64"], validate=True)
        except (ValueError, TypeError):
            raise InputLineError("data_base64 is not valid base64") from None
    else:
        text = obj.get("data", "")
        if not isinstance(text, str):
            raise InputLineError("data must be a string (use data_base64 for bytes)")
        data = text.encode("utf-8", "surrogatepass")
    publish_time = None
    if obj.get("publish_time") is not None:
        try:
            publish_time = datetime.fromisoformat(str(obj["publish_time"]).replace("Z", "+00:00"))
            if publish_time.tzinfo is None:
                publish_time = publish_time.replace(tzinfo=UTC)
            publish_time = publish_time.astimezone(UTC)
        except (ValueError, OverflowError):
            raise InputLineError("publish_time is not an RFC 3339 time in range") from None
    return InputMessage(str(message_id), data, dict(attributes), publish_time or utcnow())


def dead_letter(
    *,
    message_id: str,
    data: bytes,
    attributes: dict[str, str],
    publish_time: datetime | None,
    provider: str | None,
    stage: str,
    error_type: str,
    error_message: str,
    limit: int = DEAD_LETTER_PAYLOAD_LIMIT,
) -> DeadLetter:
    """A dead letter carrying the original payload: text when it is UTF-8, else base64; capped at ``limit``."""
    try:
        text: str | None = data.decode("utf-8")
        encoding = "utf-8"
    except UnicodeDecodeError:
        text, encoding = None, "base64"
    truncated = len(data) > limit
    if encoding == "utf-8":
        payload = redact_secrets(text[:limit] if truncated else text)  # type: ignore[index]
    else:
        payload = base64.b64encode(data[:limit]).decode("ascii")
    return DeadLetter(
        message_id=message_id,
        provider=provider,
        stage=stage,
        error_type=error_type,
        error_message=error_message[:1000],
        payload=payload,
        payload_encoding=encoding,
        payload_bytes=len(data),
        payload_truncated=truncated,
        payload_sha256=hashlib.sha256(data).hexdigest(),
        attributes=json.dumps(attributes, sort_keys=True, ensure_ascii=False),
        publish_time=publish_time,
        failed_at=utcnow(),
    )


def dead_letter_for_message(msg: InputMessage, *, stage: str, error_type: str, error_message: str,
                            provider: str | None = None) -> DeadLetter:
    """The dead letter of a whole input message: its bytes, attributes and publish time, and the reason."""
    return dead_letter(
        message_id=msg.message_id, data=msg.data, attributes=msg.attributes, publish_time=msg.publish_time,
        provider=provider or msg.attributes.get("provider"), stage=stage, error_type=error_type,
        error_message=error_message)


def dead_letter_for_line(line: str | bytes, error: Exception, error_type: str = "invalid_input_line") -> DeadLetter:
    raw = line.encode("utf-8", "surrogateescape") if isinstance(line, str) else line
    return dead_letter(
        message_id="sha256:" + hashlib.sha256(raw).hexdigest()[:32], data=raw, attributes={},
        publish_time=None, provider=None, stage="read", error_type=error_type,
        error_message=str(error),
    )


def as_dict(msg: InputMessage) -> dict[str, Any]:
    """The JSON-line form of a message (inverse of ``message_from_json_line``)."""
    out: dict[str, Any] = {"message_id": msg.message_id, "attributes": msg.attributes}
    if msg.publish_time is not None:
        out["publish_time"] = msg.publish_time.isoformat().replace("+00:00", "Z")
    try:
        out["data"] = msg.data.decode("utf-8")
    except UnicodeDecodeError:
        out["data_base64"] = base64.b64encode(msg.data).decode("ascii")
    return out
