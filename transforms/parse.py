"""Parse stage: an InputMessage becomes one Unit per lead (CSV uploads: one per row) or a dead letter.

Checks, in order: payload size (``max_payload_bytes``), empty payload, UTF-8 decoding, then the
provider parser chosen by the ``provider`` attribute (or by the payload's shape when absent).
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass

import apache_beam as beam
from apache_beam.metrics import Metrics

from transforms.messages import InputMessage, RejectedInput, dead_letter_for_message, utcnow
from transforms.normalize import Unit
from transforms.parsers.base import DEFAULT_LIMITS, ParseConfig, ParseError, ParseLimits
from transforms.parsers.registry import parse_payload
from transforms.sources import SourceRegistry

DEFAULT_MAX_PAYLOAD_BYTES = 1_000_000
DEFAULT_MAX_UNIT_SECONDS = 2.0
TIMED_OUT = "timed_out"
PROGRESS_EVERY = 10_000  # each worker logs its progress every this many messages
_log = logging.getLogger(__name__)


class RejectedMessage(RejectedInput):
    """A message rejected before it became units, with the stage that rejected it."""

    def __init__(self, stage: str, error_type: str, message: str, provider: str | None = None):
        super().__init__(error_type, message)
        self.stage, self.provider = stage, provider


def decode_payload(msg: InputMessage, max_payload_bytes: int) -> str:
    """The payload as text, or RejectedMessage(stage='decode')."""
    size = len(msg.data)
    if size > max_payload_bytes:
        raise RejectedMessage(
            "decode", "payload_too_large", f"payload is {size} bytes; the limit is {max_payload_bytes}"
        )
    if not msg.data.strip():
        raise RejectedMessage("decode", "empty_payload", "payload is empty")
    try:
        return msg.data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise RejectedMessage("decode", "invalid_utf8", f"payload is not valid UTF-8 (byte {e.start})") from None


def parse_message(msg: InputMessage, config: ParseConfig, max_payload_bytes: int) -> list[Unit]:
    """The pure parse of one message into units. Raises RejectedMessage."""
    text = decode_payload(msg, max_payload_bytes)
    try:
        provider, leads = parse_payload(text, msg.attributes, config)
    except ParseError as e:
        raise RejectedMessage("parse", e.error_type, e.message, msg.attributes.get("provider")) from None
    if not leads:
        raise RejectedMessage("parse", "no_leads", "the payload holds no lead", provider)
    publish_time = msg.publish_time or utcnow()
    upload = upload_facts(msg) if any(raw.unit_payload is not None for raw in leads) else {}
    units = []
    for raw in leads:
        source_id, verified = raw.source_id, raw.source_verified
        if source_id is None:
            default = config.registry.default_for(provider)
            source_id, verified = (default.source_id, True) if default else (provider, False)
        unit_id = msg.message_id if raw.unit_index is None else f"{msg.message_id}#{raw.unit_index}"
        data = msg.data if raw.unit_payload is None else raw.unit_payload.encode("utf-8")
        units.append(Unit(unit_id, msg.message_id, publish_time, msg.attributes, data, source_id, verified, raw,
                          upload))
    return units


def upload_facts(msg: InputMessage) -> dict[str, str]:
    """What a row's dead letter says of the upload it came from (it carries the row, not the upload)."""
    return {"upload_message_id": msg.message_id, "upload_bytes": str(len(msg.data)),
            "upload_sha256": hashlib.sha256(msg.data).hexdigest()}


class ParseDoFn(beam.DoFn):
    DEAD_LETTERS = "dead_letters"

    def __init__(self, max_payload_bytes: int, google_ads_key: str | None, registry_path: str | None,
                 limits: ParseLimits = DEFAULT_LIMITS):
        self.max_payload_bytes = max_payload_bytes
        self.google_ads_key = google_ads_key
        self.registry_path = registry_path
        self.limits = limits
        self.messages = Metrics.counter("parse", "messages")
        self.units = Metrics.counter("parse", "units")
        self.rejected = Metrics.counter("parse", "dead_letters")
        self.internal_errors = Metrics.counter("parse", "internal_errors")

    def setup(self):
        self.seen = 0
        self.started = time.monotonic()
        self.config = ParseConfig(
            registry=SourceRegistry.from_csv(self.registry_path), google_ads_key=self.google_ads_key or None,
            limits=self.limits)

    def process(self, msg: InputMessage):
        self.messages.inc()
        self.seen += 1
        if self.seen % PROGRESS_EVERY == 0:
            rate = self.seen / max(time.monotonic() - self.started, 1e-9)
            _log.info("parsed %d messages in this worker (%.0f messages/s)", self.seen, rate)
        try:
            units = parse_message(msg, self.config, self.max_payload_bytes)
        except RejectedMessage as e:
            self.rejected.inc()
            yield self._dead_letter(msg, e.stage, e.error_type, e.message, e.provider)
            return
        except Exception as e:  # a parser bug must not stop the pipeline; it is dead-lettered and counted
            self.internal_errors.inc()
            _log.exception("parser failed on message_id=%s", msg.message_id)
            yield self._dead_letter(msg, "parse", "internal_error", f"{type(e).__name__} in parser", None)
            return
        self.units.inc(len(units))
        yield from units

    def _dead_letter(self, msg, stage, error_type, message, provider):
        return beam.pvalue.TaggedOutput(self.DEAD_LETTERS, dead_letter_for_message(
            msg, stage=stage, error_type=error_type, error_message=message, provider=provider))


@dataclass(frozen=True)
class ParseStageConfig:
    """The payload size limit, the Google Ads shared key, the source registry file (None: the bundled one), the
    time budget of one message, and the parsers' limits on payload shapes (docs/input-limits.md)."""

    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
    google_ads_key: str | None = None
    registry_path: str | None = None
    max_unit_seconds: float = DEFAULT_MAX_UNIT_SECONDS
    limits: ParseLimits = DEFAULT_LIMITS


class TimedOutDoFn(beam.DoFn):
    """A message whose parse overran the time budget (Beam's exception-handling output) -> its dead letter."""

    def __init__(self, budget_seconds: float):
        self.budget = budget_seconds
        self.timeouts = Metrics.counter("parse", "processing_timeouts")

    def process(self, failed):
        msg, _error = failed
        self.timeouts.inc()
        _log.error("message_id=%s overran the %.1f s time budget of one unit", msg.message_id, self.budget)
        yield dead_letter_for_message(msg, stage="parse", error_type="processing_timeout",
                                      error_message=f"parsing took longer than {self.budget:g} s")


class ParseMessages(beam.PTransform):
    """InputMessage -> ``{"units": Unit, "dead_letters": DeadLetter}``.

    Each message gets ``max_unit_seconds``: Beam's ``with_exception_handling(timeout=...)`` runs the parse in a
    worker thread and gives up waiting at the deadline, so one slow message ends as a ``processing_timeout`` dead
    letter and the bundle goes on (the overrunning thread finishes in the background: parsers are linear in the
    payload, which the size limit bounds)."""

    def __init__(self, config: ParseStageConfig = ParseStageConfig()):
        super().__init__()
        self.fn = ParseDoFn(config.max_payload_bytes, config.google_ads_key, config.registry_path, config.limits)
        self.budget = config.max_unit_seconds

    def expand(self, messages):
        parsed = messages | "ParseMessage" >> beam.ParDo(self.fn).with_exception_handling(
            main_tag="units", dead_letter_tag=TIMED_OUT, exc_class=TimeoutError, timeout=self.budget,
        ).with_outputs(ParseDoFn.DEAD_LETTERS, main="units")
        timed_out = parsed[TIMED_OUT] | "TimedOut" >> beam.ParDo(TimedOutDoFn(self.budget))
        dead = (parsed[ParseDoFn.DEAD_LETTERS], timed_out) | "ParseDeadLetters" >> beam.Flatten()
        return {"units": parsed["units"], "dead_letters": dead}
