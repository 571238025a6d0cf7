"""Write Leadflow's tables to BigQuery; rows BigQuery rejects come back as ``DeadLetter`` records.

One PTransform, two backends, one shared first step::

    {table: PCollection of records}
        | <table>/PrepareRows            -> (table, row_id, row_dict)   shared by both backends
        | backend "client": <table>/InsertRows   google-cloud-bigquery insert_rows_json (local, emulator)
        | backend "beam":   <table>/WriteToBigQuery  Beam's WriteToBigQuery (Dataflow)
        -> PCollection of DeadLetter (stage "sink")

Nothing is lost: every prepared row is either inserted or becomes a dead letter.

Row ids (BigQuery ``insertId``, best-effort de-duplication of retried inserts within about a minute)
are deterministic per table, so a retried bundle re-sends the same ids: each table's ``row_key`` in
``schemas.records.TABLES``. Ids longer than 128 characters are replaced by their SHA-256.

Backend ``"client"`` (DirectRunner, emulator): a batching DoFn buffering up to ``batch_size`` rows (and at
most ~9 MB of JSON, under insertAll's 10 MB request limit) per table per bundle, flushed when full and in
``finish_bundle``. It calls ``insert_rows_json(..., row_ids=..., skip_invalid_rows=True)`` so valid rows
of a batch are stored even when others are invalid. Per-row errors become ``bigquery_insert_error`` dead
letters; per-row transient reasons (``backendError``, ``internalError``, ``timeout``, ``stopped``,
``rateLimitExceeded``) and request failures that are transient (connection errors, timeouts, HTTP 408,
429, 5xx, 403 ``rateLimitExceeded``) are retried with exponential backoff within ``retry_budget_s``
(default 60 s); rows still failing then become ``bigquery_unavailable`` dead letters. A permanent request
error (e.g. 404 table not found, 400) dead-letters the whole batch as ``bigquery_insert_error``.
The client is built in ``setup()`` from ``emulator_host`` or ``$BIGQUERY_EMULATOR_HOST`` (else real
BigQuery with application-default credentials).

Backend ``"beam"`` (Dataflow): Beam's ``WriteToBigQuery`` per table with ``CREATE_NEVER``/``WRITE_APPEND``.

* ``STREAMING_INSERTS``: Beam generates its own insertIds (a uuid per bundle plus a counter, made stable
  by a Reshuffle before inserting) and offers no way to pass ours; ``RETRY_ON_TRANSIENT_ERROR`` retries
  rows whose reason is transient and sends the rest to ``failed_rows_with_errors``
  (``(destination, row, [errors])``), which become dead letters here. ``additional_bq_parameters``
  (DAY partitioning, clustering) only matter when Beam creates a table, which ``CREATE_NEVER`` forbids;
  they are passed so the definition is in one place (tables come from ``schemas.bigquery
  .ensure_dataset_and_tables`` / Terraform).
* ``STORAGE_WRITE_API``: a cross-language transform; building the graph needs Beam's Java expansion
  service jar (downloaded from Maven Central on first use). Rows are converted to the Beam Row types it
  needs (TIMESTAMP -> ``Timestamp``, DATE -> ``datetime.date``); exactly-once semantics come from the
  Storage Write API itself, not from row ids. Failed rows (``{"error_message", "failed_row"}``) become
  dead letters.

Dead letters: stage ``sink``, ``error_type`` ``bigquery_insert_error`` or ``bigquery_unavailable``,
``error_message`` BigQuery's reason, location and message with quoted or echoed row values redacted,
``payload`` the row JSON, ``message_id`` the row's ``message_id``, else ``event_id``, else the row id,
``attributes`` ``{"table", "row_id", "reason", "location"}``. Dead letters of the ``dead_letters`` table
itself are in the output too: write them somewhere else (files, logs), never back into this sink.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Iterable
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.utils.windowed_value import WindowedValue

from schemas.bigquery import client_for, parse_dataset
from schemas.derive import bigquery_schema, columns, to_row
from schemas.records import TABLES, DeadLetter
from transforms.messages import dead_letter

_log = logging.getLogger(__name__)

BACKENDS = ("client", "beam")
METHODS = ("STREAMING_INSERTS", "STORAGE_WRITE_API")
STAGE = "sink"
INSERT_ERROR = "bigquery_insert_error"
UNAVAILABLE = "bigquery_unavailable"
MAX_ROW_ID_LENGTH = 128
MAX_REQUEST_BYTES = 9_000_000  # insertAll accepts 10 MB per request; keep headroom for the envelope

# Per-row reasons worth retrying (BigQuery's error reasons; "stopped" marks valid rows of a failed request).
TRANSIENT_ROW_REASONS = frozenset({"backendError", "internalError", "timeout", "stopped", "rateLimitExceeded"})
TRANSIENT_HTTP = frozenset({408, 429, 500, 502, 503, 504})

# --------------------------------------------------------------------------------------
# Shared first step
# --------------------------------------------------------------------------------------


def _short(row_id: str) -> str:
    return row_id if len(row_id) <= MAX_ROW_ID_LENGTH else hashlib.sha256(row_id.encode()).hexdigest()


def row_id_for(table: str, row: dict[str, Any]) -> str:
    """The deterministic insertId of a row: its table's ``row_key`` (``schemas.records.TableSpec``)."""
    spec = TABLES.get(table)
    if spec is None:
        raise ValueError(f"unknown table {table!r}; known: {sorted(TABLES)}")
    values = ["" if row[k] is None else str(row[k]) for k in spec.row_key]
    if spec.row_key_hashed:
        return hashlib.sha256("|".join(values).encode("utf-8", "surrogatepass")).hexdigest()
    return _short(":".join(values))


def prepare_row(record: Any, table: str) -> tuple[str, str, dict[str, Any]]:
    """A record -> ``(table, row_id, row_dict)``; rejects records of the wrong type for the table."""
    spec = TABLES[table]
    if not isinstance(record, spec.record):
        raise TypeError(f"table {table!r} takes {spec.record.__name__} records, got {type(record).__name__}")
    row = to_row(record)
    return table, row_id_for(table, row), row


class PrepareRows(beam.PTransform):
    """records -> ``(table, row_id, row_dict)`` with ``row_dict = schemas.derive.to_row(record)``."""

    def __init__(self, table: str):
        super().__init__()
        if table not in TABLES:
            raise ValueError(f"unknown table {table!r}; known: {sorted(TABLES)}")
        self.table = table

    def expand(self, records):
        return records | "ToRow" >> beam.Map(prepare_row, self.table)


# --------------------------------------------------------------------------------------
# Dead letters
# --------------------------------------------------------------------------------------

_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_BAD_VALUE = re.compile(r"\(bad value\):.*", re.DOTALL)


def redact(message: str, row: dict[str, Any] | None) -> str:
    """BigQuery's message without the row's values (they may be PII): quoted text and echoed values go."""
    out = _BAD_VALUE.sub("(bad value): <redacted>", message or "")
    out = _QUOTED.sub("'<redacted>'", out)
    values = sorted(
        (str(v) for v in (row or {}).values() if v is not None and not isinstance(v, bool) and len(str(v)) >= 4),
        key=len, reverse=True)
    for v in values:
        out = out.replace(v, "<redacted>")
    return out


def describe_errors(errors: Iterable[dict[str, Any]], row: dict[str, Any] | None) -> tuple[str, str, str]:
    """BigQuery's per-row errors -> (reason, location, readable message without row values)."""
    errors = list(errors or [])
    parts = []
    for e in errors:
        loc = f" at {e.get('location')}" if e.get("location") else ""
        parts.append(f"{e.get('reason') or 'error'}{loc}: {redact(str(e.get('message') or ''), row)}")
    first = errors[0] if errors else {}
    return (str(first.get("reason") or "error"), str(first.get("location") or ""),
            "; ".join(parts) or "rejected by BigQuery")


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "to_rfc3339"):  # apache_beam Timestamp
        return value.to_rfc3339()
    if isinstance(value, _dt.datetime | _dt.date):
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalars from Beam Rows
        return value.item()
    return value


def _publish_time(row: dict[str, Any]) -> _dt.datetime | None:
    value = row.get("publish_time")
    if not isinstance(value, str):
        return None
    try:
        return _dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def sink_dead_letter(
    table: str, row_id: str | None, row: dict[str, Any], error_type: str, error_message: str,
    reason: str = "", location: str = "",
) -> DeadLetter:
    """A dead letter for one row the sink could not write (payload = the row JSON)."""
    row = _jsonable(row)
    row_id = row_id or (row_id_for(table, row) if table in TABLES else "")
    message_id = row.get("message_id") or row.get("event_id") or row_id or "unknown"
    attributes = {"table": table, "row_id": row_id}
    if reason:
        attributes["reason"] = reason
    if location:
        attributes["location"] = location
    return dead_letter(
        message_id=str(message_id),
        data=json.dumps(row, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode(
            "utf-8", "surrogatepass"),
        attributes=attributes, publish_time=_publish_time(row), provider=None, stage=STAGE,
        error_type=error_type, error_message=error_message)


# --------------------------------------------------------------------------------------
# Backend "client": google-cloud-bigquery insert_rows_json
# --------------------------------------------------------------------------------------


def is_transient(exc: BaseException) -> bool:
    """Connection trouble, timeouts, HTTP 408/429/5xx and rate limits: worth another try."""
    import requests
    from google.api_core import exceptions as gexc
    from google.auth import exceptions as auth_exc

    if isinstance(exc, requests.exceptions.ConnectionError | requests.exceptions.Timeout | ConnectionError
                  | TimeoutError | auth_exc.TransportError | gexc.RetryError):
        return True
    if isinstance(exc, gexc.GoogleAPICallError):
        if exc.code in TRANSIENT_HTTP:
            return True
        reasons = {e.get("reason") for e in (exc.errors or []) if isinstance(e, dict)}
        return bool(reasons & {"rateLimitExceeded", "backendError", "internalError"})
    return False


def _exception_message(exc: BaseException) -> str:
    msg = getattr(exc, "message", None) or str(exc)
    return f"{type(exc).__name__}: {msg}"[:900]


class InsertRowsFn(beam.DoFn):
    """``(table, row_id, row)`` -> inserts via ``insert_rows_json``; outputs DeadLetters for failed rows."""

    def __init__(
        self, project: str, dataset: str, batch_size: int = 500, emulator_host: str | None = None, *,
        retry_budget_s: float = 60.0, initial_backoff_s: float = 0.5, max_backoff_s: float = 10.0,
        request_timeout_s: float = 30.0, max_request_bytes: int = MAX_REQUEST_BYTES,
    ):
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.project, self.dataset = project, dataset
        self.batch_size = batch_size
        self.emulator_host = emulator_host
        self.retry_budget_s = retry_budget_s
        self.initial_backoff_s = initial_backoff_s
        self.max_backoff_s = max_backoff_s
        self.request_timeout_s = request_timeout_s
        self.max_request_bytes = max_request_bytes
        self.inserted = Metrics.counter("bigquery_sink", "rows_inserted")
        self.rejected = Metrics.counter("bigquery_sink", "rows_rejected")
        self.unavailable = Metrics.counter("bigquery_sink", "rows_unavailable")
        self.retried = Metrics.counter("bigquery_sink", "rows_retried")
        self.requests = Metrics.counter("bigquery_sink", "insert_requests")
        self.client = None

    def setup(self):
        host = self.emulator_host or os.environ.get("BIGQUERY_EMULATOR_HOST") or None
        self.client = client_for(self.project, host)

    def teardown(self):
        if self.client is not None:
            try:
                self.client.close()
            finally:
                self.client = None

    def start_bundle(self):
        self._buffers: dict[str, list] = {}
        self._bytes: dict[str, int] = {}

    def process(self, element, timestamp=beam.DoFn.TimestampParam, window=beam.DoFn.WindowParam):
        table, row_id, row = element
        size = len(json.dumps(row, ensure_ascii=False, separators=(",", ":"))) + len(row_id) + 32
        buf = self._buffers.setdefault(table, [])
        if buf and self._bytes[table] + size > self.max_request_bytes:
            yield from self._flush(table)
            buf = self._buffers.setdefault(table, [])
        buf.append((row_id, row, timestamp, window))
        self._bytes[table] = self._bytes.get(table, 0) + size
        if len(buf) >= self.batch_size:
            yield from self._flush(table)

    def finish_bundle(self):
        for table in list(self._buffers):
            yield from self._flush(table)

    # -- internals -----------------------------------------------------------------------

    def _flush(self, table: str):
        batch = self._buffers.pop(table, [])
        self._bytes.pop(table, None)
        if not batch:
            return
        for dl, ts, win in self._insert(table, batch):
            yield WindowedValue(dl, ts, (win,))

    def _insert(self, table: str, batch: list) -> list:
        """Insert ``batch`` [(row_id, row, ts, window)], retrying transient failures; returns dead letters."""
        ref = f"{self.project}.{self.dataset}.{table}"
        deadline = time.monotonic() + self.retry_budget_s
        backoff = self.initial_backoff_s
        pending = list(range(len(batch)))
        out: list = []

        def fail(i: int, error_type: str, message: str, reason: str = "", location: str = ""):
            row_id, row, ts, win = batch[i]
            out.append((sink_dead_letter(table, row_id, row, error_type, message, reason, location), ts, win))

        while pending:
            retry: list[int] = []
            last_error: str | None = None
            try:
                self.requests.inc()
                errors = self.client.insert_rows_json(
                    ref, [batch[i][1] for i in pending], row_ids=[batch[i][0] for i in pending],
                    skip_invalid_rows=True, retry=None, timeout=self.request_timeout_s)
            except Exception as e:
                if not is_transient(e):
                    msg = _exception_message(e)
                    for i in pending:
                        fail(i, INSERT_ERROR, f"insert request rejected: {msg}", str(getattr(e, "code", "")))
                    self.rejected.inc(len(pending))
                    return out
                retry, last_error = pending, _exception_message(e)
            else:
                for entry in errors:
                    i = pending[entry["index"]]
                    reasons = {e.get("reason") for e in entry.get("errors", [])}
                    if reasons and reasons <= TRANSIENT_ROW_REASONS:
                        retry.append(i)
                        last_error = describe_errors(entry.get("errors"), batch[i][1])[2]
                        continue
                    reason, location, message = describe_errors(entry.get("errors"), batch[i][1])
                    fail(i, INSERT_ERROR, message, reason, location)
                    self.rejected.inc()
                retry_set = set(retry)
                self.inserted.inc(len(pending) - len(errors))
                retry = [i for i in pending if i in retry_set]
            if not retry:
                return out
            if time.monotonic() + backoff > deadline:
                for i in retry:
                    fail(i, UNAVAILABLE, f"BigQuery unavailable after {self.retry_budget_s:.0f}s of retries; "
                                         f"last error: {last_error}")
                self.unavailable.inc(len(retry))
                _log.warning("bigquery sink: %d rows of %s dead-lettered as unavailable: %s",
                             len(retry), table, last_error)
                return out
            self.retried.inc(len(retry))
            time.sleep(backoff)
            backoff = min(backoff * 2, self.max_backoff_s)
            pending = retry
        return out


class _ClientTail(beam.PTransform):
    def __init__(self, fn: InsertRowsFn):
        super().__init__()
        self.fn = fn

    def expand(self, prepared):
        return prepared | beam.ParDo(self.fn)


# --------------------------------------------------------------------------------------
# Backend "beam": Beam's WriteToBigQuery (Dataflow)
# --------------------------------------------------------------------------------------

WriteToBigQuery = beam.io.WriteToBigQuery  # module attribute so tests can substitute a recording fake


def to_storage_write_types(row: dict[str, Any], table: str) -> dict[str, Any]:
    """A JSON row -> the Python types Beam's Storage Write API path turns into Beam Rows."""
    from apache_beam.utils.timestamp import Timestamp

    out = dict(row)
    for c in columns(TABLES[table].record):
        v = out.get(c.name)
        if v is None or c.repeated:
            continue
        if c.base is _dt.datetime:
            out[c.name] = Timestamp.from_rfc3339(v)
        elif c.base is _dt.date:
            out[c.name] = _dt.date.fromisoformat(v)
    return out


def beam_failure_to_dead_letter(failure: Any, table: str) -> DeadLetter:
    """A ``failed_rows_with_errors`` element of either method -> DeadLetter."""
    if isinstance(failure, dict) and "failed_row" in failure:  # STORAGE_WRITE_API
        row = failure["failed_row"]
        row = row._asdict() if hasattr(row, "_asdict") else dict(row)
        row = _jsonable(row)
        message = redact(str(failure.get("error_message") or "rejected by the Storage Write API"), row)
        return sink_dead_letter(table, None, row, INSERT_ERROR, message, "storage_write_error")
    _destination, row, errors = failure  # STREAMING_INSERTS: (destination, row, [errors])
    row = _jsonable(row)
    reason, location, message = describe_errors(errors, row)
    return sink_dead_letter(table, None, row, INSERT_ERROR, message, reason, location)


class _BeamTail(beam.PTransform):
    def __init__(self, project: str, dataset: str, table: str, method: str, batch_size: int):
        super().__init__()
        self.project, self.dataset, self.table = project, dataset, table
        self.method, self.batch_size = method, batch_size

    def write_kwargs(self) -> dict[str, Any]:
        spec = TABLES[self.table]
        bq = beam.io.BigQueryDisposition
        kwargs: dict[str, Any] = dict(
            table=f"{self.project}:{self.dataset}.{self.table}",
            schema={"fields": bigquery_schema(spec.record)},
            method=self.method,
            create_disposition=bq.CREATE_NEVER,
            write_disposition=bq.WRITE_APPEND,
            additional_bq_parameters={
                "timePartitioning": {"type": "DAY", "field": spec.partition_field},
                "clustering": {"fields": list(spec.cluster_fields)},
            },
        )
        if self.method == "STREAMING_INSERTS":
            from apache_beam.io.gcp.bigquery_tools import RetryStrategy

            kwargs.update(insert_retry_strategy=RetryStrategy.RETRY_ON_TRANSIENT_ERROR, batch_size=self.batch_size)
        else:
            kwargs.update(type_overrides={"DATE": _dt.date})
        return kwargs

    def expand(self, prepared):
        rows = prepared | "Rows" >> beam.Map(lambda t: t[2])
        if self.method == "STORAGE_WRITE_API":
            rows = rows | "ToStorageWriteTypes" >> beam.Map(to_storage_write_types, self.table)
        result = rows | "WriteToBigQuery" >> WriteToBigQuery(**self.write_kwargs())
        return result.failed_rows_with_errors | "ToDeadLetters" >> beam.Map(
            beam_failure_to_dead_letter, self.table)


# --------------------------------------------------------------------------------------
# The sink
# --------------------------------------------------------------------------------------


class WriteTablesToBigQuery(beam.PTransform):
    """``{table: PCollection of records}`` -> BigQuery; returns a PCollection of sink ``DeadLetter`` records.

    ``dataset`` is ``"project:dataset"`` or ``"project.dataset"``; the tables must exist (see
    ``schemas.bigquery.ensure_dataset_and_tables``). ``backend`` is ``"client"`` (local runs,
    emulator) or ``"beam"`` (Dataflow); ``method`` (beam backend) is ``STREAMING_INSERTS`` or
    ``STORAGE_WRITE_API``. ``client_options`` are extra keyword arguments of :class:`InsertRowsFn`
    (``retry_budget_s``, ``initial_backoff_s``, ``request_timeout_s``, ...).
    """

    def __init__(
        self, dataset: str, backend: str = "client", method: str = "STREAMING_INSERTS", batch_size: int = 500,
        emulator_host: str | None = None, **client_options: Any,
    ):
        super().__init__()
        self.project, self.dataset_id = parse_dataset(dataset)
        if backend not in BACKENDS:
            raise ValueError(f"unknown BigQuery sink backend {backend!r}; choose one of {BACKENDS}")
        method = method.upper()
        if method not in METHODS:
            raise ValueError(f"unsupported BigQuery write method {method!r}; choose one of {METHODS}")
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if client_options and backend != "client":
            raise ValueError(f"options {sorted(client_options)} apply only to the client backend")
        self.backend, self.method, self.batch_size = backend, method, batch_size
        self.emulator_host = emulator_host
        self.client_options = client_options

    def prepare(self, tables: dict[str, beam.PCollection]) -> dict[str, beam.PCollection]:
        """The shared first step: ``{table: PCollection of (table, row_id, row_dict)}``."""
        unknown = set(tables) - set(TABLES)
        if unknown:
            raise ValueError(f"unknown tables {sorted(unknown)}; known: {sorted(TABLES)}")
        return {name: pcoll | f"{name}/PrepareRows" >> PrepareRows(name) for name, pcoll in tables.items()}

    def tails(self, prepared: dict[str, beam.PCollection]) -> dict[str, beam.PCollection]:
        """The backend-specific part: ``{table: PCollection of DeadLetter}``, fed only with prepared rows."""
        out = {}
        for name, rows in prepared.items():
            if self.backend == "client":
                fn = InsertRowsFn(self.project, self.dataset_id, self.batch_size, self.emulator_host,
                                  **self.client_options)
                out[name] = rows | f"{name}/InsertRows" >> _ClientTail(fn)
            else:
                out[name] = rows | f"{name}/WriteToBigQuery" >> _BeamTail(
                    self.project, self.dataset_id, name, self.method, self.batch_size)
        return out

    def expand(self, tables):
        if not tables:
            raise ValueError("no tables to write")
        dead = self.tails(self.prepare(dict(tables)))
        return tuple(dead.values()) | "SinkDeadLetters" >> beam.Flatten()
