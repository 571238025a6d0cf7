"""``leadflow forget``: erase one person on request, from every table and from the identity store, for good.

    leadflow forget --phone "+1 415 555 0101" --bq_dataset P:D --identity_store S --requested_by TICKET-42
    leadflow forget --email ann@example.org ... --dry_run        # find and count; change nothing
    leadflow forget --lead_id 6b0c... ...                         # by lead id (also for a shared identifier)

1. **Find** the person: the lead ids whose events carry the identifier (or the one given), every lead merged with
   them (``lead_merges`` and the store's ``absorbed``/``into``), then every identifier on their events and the leads
   those carry, until nothing new comes (a person whose silence outlived the identity TTL became a second lead: the
   same human). Identifiers the fan-in guard made *shared* (``identifier_guards``, the store's ``shared``) link no
   one; naming the person by one is refused (``--lead_id`` says which person). Dead letters that name them: their
   unit ids, or a payload holding one of their e-mails or phones (any format: phonenumbers' matcher).
2. **Tombstone** them in the identity store (``transforms.identity``): keyed hashes (HMAC under
   ``LEADFLOW_IDENTITY_HASH_KEY``, never a raw value) of their identifiers, payload fingerprints and provider ids,
   their unit ids marked erased in the journal, and the erasure count bumped so running workers drop their caches.
   Written first, so the pipeline stops recreating them before anything is deleted.
3. **Delete** their rows: every table with a lead-id column (leads, lead_events, lead_versions, lead_source_history,
   lead_merges, lead_assignments, lead_outcomes, and any later table with one: derived from the records), and those
   dead letters. Rows real BigQuery still holds in the streaming buffer (written by insertAll in the last 30 minutes)
   cannot be deleted yet: those tables are reported as pending (exit 3); run the same command again later.
4. **Delete** their person and identifier rows from the store, and write an ``erasures`` row (who asked, when, how
   many rows: no personal data).

Output and the audit row name the person by a keyed hash only. The command is idempotent: a second run finds what
is left (nothing, or what was pending) and writes the same tombstones again.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import getpass
import json
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import phonenumbers

from schemas.bigquery import EMULATOR_HOST_ENV, client_for, parse_dataset
from schemas.derive import columns, to_row
from schemas.records import TABLES, Erasure
from transforms.identity import (
    EMAIL,
    ERASURES_KEY,
    HASH_KEY_ENV,
    PAYLOAD,
    PHONE,
    PROVIDER_ID,
    hash_key,
    identifier_hash,
    micros,
    provider_id,
    tombstone_key,
)
from transforms.identity_store import SPEC_HELP, check_spec, open_store
from transforms.normalize import normalize_email, normalize_phone

# Columns that hold a lead id: a table with one of them holds rows of a person (one home: derived per table below).
LEAD_ID_COLUMNS = ("lead_id", "merged_lead_id", "into_lead_id", "merged_into")
DEAD_LETTERS = "dead_letters"
AUDIT_TABLE = "erasures"
MAX_ROUNDS = 10  # identifier -> leads -> identifiers rounds before the search is called runaway
STREAMING_BUFFER = "streaming buffer"  # in BigQuery's refusal to DELETE rows written by insertAll lately
EXIT_PENDING = 3


class ForgetError(ValueError):
    """A request that cannot be carried out as asked (bad identifier, shared identifier, unknown person)."""


def person_tables() -> dict[str, tuple[str, ...]]:
    """table -> its lead-id columns, for every table that holds rows of a person by lead id."""
    out = {}
    for name, spec in TABLES.items():
        cols = tuple(c.name for c in columns(spec.record) if c.name in LEAD_ID_COLUMNS)
        if cols:
            out[name] = cols
    return out


def normalized_identifier(kind: str, value: str, region: str) -> str:
    """The identifier as the pipeline stores it; ForgetError when it is not valid."""
    if kind == PHONE:
        e164, status = normalize_phone(value, region)
    else:
        e164, status = normalize_email(value)
    if status != "valid" or not e164:
        raise ForgetError(f"the {kind} given is not a valid {kind} ({status})")
    return e164


# --------------------------------------------------------------------------------------
# What names the person: pure
# --------------------------------------------------------------------------------------


def payload_text(payload: str | None, encoding: str) -> str:
    if payload is None:
        return ""
    if encoding == "base64":
        try:
            return base64.b64decode(payload).decode("utf-8", "replace")
        except (binascii.Error, ValueError):
            return ""
    return payload


def names_person(text: str, phones: Iterable[str], emails: Iterable[str], region: str) -> bool:
    """True when ``text`` holds one of the e-mails (any case) or phones (any format phonenumbers recognises)."""
    lowered = text.lower()
    if any(e.lower() in lowered for e in emails):
        return True
    wanted = set(phones)
    if not wanted:
        return False
    for match in phonenumbers.PhoneNumberMatcher(text, region, leniency=phonenumbers.Leniency.POSSIBLE):
        if phonenumbers.format_number(match.number, phonenumbers.PhoneNumberFormat.E164) in wanted:
            return True
    return False


def national_digits(e164: str) -> str:
    return str(phonenumbers.parse(e164).national_number)


@dataclass
class Person:
    """What was found of one person: ids and raw identifiers (held in memory, never printed)."""

    lead_ids: set[str] = field(default_factory=set)
    phones: set[str] = field(default_factory=set)
    emails: set[str] = field(default_factory=set)
    shared: set[tuple[str, str]] = field(default_factory=set)  # identifiers of theirs that link no one
    units: set[str] = field(default_factory=set)  # lead_events.message_id (unit ids)
    provider_ids: set[str] = field(default_factory=set)
    dead_letters: dict[str, str] = field(default_factory=dict)  # message id -> payload SHA-256
    rounds: int = 0

    def identifiers(self) -> set[tuple[str, str]]:
        return {(PHONE, p) for p in self.phones} | {(EMAIL, e) for e in self.emails}


# --------------------------------------------------------------------------------------
# BigQuery (emulator or real): finding, counting, deleting
# --------------------------------------------------------------------------------------


class Tables:
    """The dataset's tables through google-cloud-bigquery; every value goes in as a query parameter."""

    def __init__(self, client, project: str, dataset: str):
        self.client, self.prefix = client, f"`{project}.{dataset}"

    def ref(self, table: str) -> str:
        return f"{self.prefix}.{table}`"

    def query(self, sql: str, **params) -> list[dict]:
        from google.cloud import bigquery

        config = bigquery.QueryJobConfig(query_parameters=[
            bigquery.ArrayQueryParameter(k, "STRING", sorted(v)) if isinstance(v, (set, list, tuple))
            else bigquery.ScalarQueryParameter(k, "STRING", v) for k, v in params.items()])
        job = self.client.query(sql, job_config=config)
        rows = [dict(r.items()) for r in job.result()]
        self.affected = job.num_dml_affected_rows
        return rows

    def exists(self, table: str) -> bool:
        from google.api_core.exceptions import NotFound

        try:
            self.client.get_table(self.ref(table).strip("`"))
            return True
        except NotFound:
            return False


def _where_lead(cols: tuple[str, ...]) -> str:
    return " OR ".join(f"{c} IN UNNEST(@ids)" for c in cols)


def find_person(tables: Tables, store, key: bytes, kind: str, value: str, region: str) -> Person:
    """The person ``kind``/``value`` names (module docstring, step 1). ForgetError when no one or a shared one."""
    person = Person()
    guards = {r["identifier_hash"]
              for r in tables.query(f"SELECT identifier_hash FROM {tables.ref('identifier_guards')}")}

    def is_shared(kv: tuple[str, str]) -> bool:
        h = identifier_hash(*kv, key)
        row = store.get([f"i:{h}"]).get(f"i:{h}") if store is not None else None
        return h in guards or bool(row and row.get("shared"))

    if kind == "lead_id":
        person.lead_ids.add(value)
        todo: set[tuple[str, str]] = set()
    else:
        if is_shared((kind, value)):
            raise ForgetError(f"that {kind} is shared by several people (fan-in guard): name the person with --lead_id")
        todo = {(kind, value)}
        (person.phones if kind == PHONE else person.emails).add(value)
    seen: set[tuple[str, str]] = set()
    while True:
        person.rounds += 1
        if person.rounds > MAX_ROUNDS:
            raise ForgetError(f"the person's identifiers still reach new leads after {MAX_ROUNDS} rounds: "
                              "name the person with --lead_id")
        new = todo - seen
        if new:  # one query per round for every new identifier
            person.lead_ids |= {r["lead_id"] for r in tables.query(
                f"SELECT DISTINCT lead_id FROM {tables.ref('lead_events')} "
                "WHERE phone_e164 IN UNNEST(@phones) OR email IN UNNEST(@emails)",
                phones={v for k, v in new if k == PHONE}, emails={v for k, v in new if k == EMAIL})}
        if store is not None and new:
            rows = store.get([f"i:{identifier_hash(k, v, key)}" for k, v in new])
            person.lead_ids |= {row["person"] for row in rows.values() if row.get("person")}
        seen |= todo
        before = set(person.lead_ids)
        _merged_closure(tables, store, person)
        events = tables.query(
            f"SELECT message_id, lead_id, provider, external_id, phone_e164, email FROM {tables.ref('lead_events')} "
            "WHERE lead_id IN UNNEST(@ids)", ids=person.lead_ids) if person.lead_ids else []
        found = set()
        for e in events:
            person.units.add(e["message_id"])
            if e["external_id"]:
                person.provider_ids.add(provider_id(e["provider"], e["external_id"]))
            found |= {(PHONE, e["phone_e164"])} if e["phone_e164"] else set()
            found |= {(EMAIL, e["email"])} if e["email"] else set()
        for kv in found - seen - person.shared:
            if is_shared(kv):
                person.shared.add(kv)
            else:
                (person.phones if kv[0] == PHONE else person.emails).add(kv[1])
        todo = person.identifiers() - seen
        if not todo and person.lead_ids == before:
            break
    if not person.lead_ids:
        raise ForgetError(f"no lead carries that {kind}")
    if kind == "lead_id" and not person.units and not (store is not None and store.get([f"p:{value}"])):
        raise ForgetError("no such lead (no event and no identity row names it)")
    person.dead_letters = _dead_letters(tables, person, region)
    return person


def _merged_closure(tables: Tables, store, person: Person) -> None:
    """Adds every lead merged into or with the person's leads (the tables' merges and the store's persons)."""
    while True:
        before = set(person.lead_ids)
        for m in tables.query(f"SELECT merged_lead_id, into_lead_id FROM {tables.ref('lead_merges')} "
                              "WHERE merged_lead_id IN UNNEST(@ids) OR into_lead_id IN UNNEST(@ids)",
                              ids=person.lead_ids):
            person.lead_ids |= {m["merged_lead_id"], m["into_lead_id"]}
        if store is not None:
            for row in store.get([f"p:{lead}" for lead in person.lead_ids]).values():
                person.lead_ids |= set(row.get("absorbed") or []) | ({row["into"]} if row.get("into") else set())
        if person.lead_ids == before:
            return


def _dead_letters(tables: Tables, person: Person, region: str) -> dict[str, str]:
    """Dead letters of the person's units, or whose payload names one of their phones or e-mails."""
    params: dict = {"units": person.units}
    tests = ["message_id IN UNNEST(@units)", "payload_encoding = 'base64'"]
    for i, email in enumerate(sorted(person.emails)):
        params[f"e{i}"] = f"%{email.lower()}%"
        tests.append(f"LOWER(payload) LIKE @e{i}")
    for i, phone in enumerate(sorted(person.phones)):
        params[f"d{i}"] = f"%{national_digits(phone)}%"
        tests.append(f"REGEXP_REPLACE(payload, r'[^0-9]', '') LIKE @d{i}")  # a prefilter; names_person decides
    rows = tables.query(f"SELECT message_id, payload, payload_encoding, payload_sha256 FROM "
                        f"{tables.ref(DEAD_LETTERS)} WHERE {' OR '.join(tests)}", **params)
    return {r["message_id"]: r["payload_sha256"] for r in rows
            if r["message_id"] in person.units
            or names_person(payload_text(r["payload"], r["payload_encoding"]), person.phones, person.emails, region)}


# --------------------------------------------------------------------------------------
# Tombstones, deletion, audit
# --------------------------------------------------------------------------------------


def tombstones(person: Person, store, key: bytes, at: datetime) -> dict[str, dict]:
    """The store rows that keep the person erased (module docstring, step 2), the erasure count not included."""
    t = micros(at)
    rows: dict[str, dict] = {}
    for kind, value in person.identifiers():
        rows[tombstone_key(kind, value, key)] = {"at": t, "kind": kind}
    for pid in person.provider_ids:
        rows[tombstone_key(PROVIDER_ID, pid, key)] = {"at": t, "kind": PROVIDER_ID}
    for sha in person.dead_letters.values():
        rows[tombstone_key(PAYLOAD, sha, key)] = {"at": t, "kind": PAYLOAD}
    units = sorted(person.units | set(person.dead_letters))
    journals = store.get([f"u:{u}" for u in units]) if store is not None else {}
    for unit in units:
        fp = journals.get(f"u:{unit}", {}).get("fp")
        if fp:
            rows[f"t:{fp}"] = {"at": t, "kind": PAYLOAD}
        rows[f"u:{unit}"] = {"erased": t}
    return rows


def person_rows(tables: Tables, person: Person) -> dict[str, tuple[str, dict]]:
    """table -> (WHERE clause, parameters) selecting the person's rows."""
    out = {}
    for name, cols in person_tables().items():
        out[name] = (_where_lead(cols), {"ids": person.lead_ids})
    out[DEAD_LETTERS] = ("message_id IN UNNEST(@dl)", {"dl": set(person.dead_letters)})
    return out


def erase_rows(tables: Tables, person: Person, dry_run: bool, out: Callable[[str], None]
               ) -> tuple[dict[str, int], list[str]]:
    """Counts (dry run) or deletes the person's rows per table; returns (rows per table, pending tables)."""
    from google.api_core.exceptions import BadRequest

    counts, pending = {}, []
    for name, (where, params) in sorted(person_rows(tables, person).items()):
        if not tables.exists(name):
            continue
        if not any(params.values()):
            counts[name] = 0
            continue
        if dry_run:
            counts[name] = tables.query(f"SELECT COUNT(*) AS n FROM {tables.ref(name)} WHERE {where}", **params)[0]["n"]
            continue
        try:
            tables.query(f"DELETE FROM {tables.ref(name)} WHERE {where}", **params)
            counts[name] = int(tables.affected or 0)
        except BadRequest as e:
            if STREAMING_BUFFER not in str(e):
                raise
            pending.append(name)
            out(f"  {name}: rows still in the streaming buffer; run the command again in 30 minutes")
    return counts, pending


def audit_row(requested_by: str, kind: str, subject_hash: str, person: Person, counts: dict[str, int],
              store_deleted: int, tombstone_count: int, pending: list[str], dry_run: bool,
              started: datetime) -> Erasure:
    return Erasure(
        erasure_id=str(uuid.uuid4()), requested_by=requested_by, requested_at=started, identifier_kind=kind,
        subject_hash=subject_hash, leads=len(person.lead_ids), rows_deleted=sum(counts.values()),
        rows_by_table=json.dumps(counts, sort_keys=True), store_rows_deleted=store_deleted,
        tombstones=tombstone_count, pending_tables=pending, dry_run=dry_run, finished_at=datetime.now(UTC))


def forget(tables: Tables, store, kind: str, value: str, *, requested_by: str, dry_run: bool = False,
           region: str = "US", key: bytes | None = None, out: Callable[[str], None] = print,
           now: datetime | None = None) -> Erasure:
    """Find, tombstone, delete, audit (module docstring). Prints ids, counts and hashes only."""
    key = key if key is not None else hash_key()
    started = now or datetime.now(UTC)
    if kind in (PHONE, EMAIL):
        value = normalized_identifier(kind, value, region)
    subject = identifier_hash(kind, value, key)
    t0 = time.monotonic()
    person = find_person(tables, store, key, kind, value, region)
    out(f"erasure of subject {subject}: {len(person.lead_ids)} leads, {len(person.units)} events' units, "
        f"{len(person.identifiers())} identifiers ({len(person.shared)} shared ones left alone), "
        f"{len(person.dead_letters)} dead letters; found in {time.monotonic() - t0:.2f} s")
    marks = tombstones(person, store, key, started)
    store_keys = [f"p:{lead}" for lead in sorted(person.lead_ids)] + [
        f"i:{identifier_hash(k, v, key)}" for k, v in sorted(person.identifiers())]
    if not dry_run and store is not None:
        n = store.get([ERASURES_KEY]).get(ERASURES_KEY, {}).get("n", 0)
        store.put({**marks, ERASURES_KEY: {"n": n + 1, "at": micros(started)}})
    counts, pending = erase_rows(tables, person, dry_run, out)
    held = store.get(store_keys) if store is not None else {}
    if not dry_run and store is not None:
        store.delete(list(held))
    audit = audit_row(requested_by, kind, subject, person, counts, len(held), len(marks), pending, dry_run, started)
    if not dry_run and tables.exists(AUDIT_TABLE):
        errors = tables.client.insert_rows_json(tables.ref(AUDIT_TABLE).strip("`"), [to_row(audit)],
                                                row_ids=[audit.erasure_id])
        if errors:
            raise RuntimeError(f"the audit row of erasure {audit.erasure_id} was refused: {errors}")
    verb = "would delete" if dry_run else "deleted"
    for name, n in sorted(counts.items()):
        out(f"  {name}: {verb} {n} rows")
    out(f"erasure {audit.erasure_id}: {verb} {audit.rows_deleted} table rows and {len(held)} store rows, "
        f"{'would write' if dry_run else 'wrote'} {len(marks)} tombstones in {time.monotonic() - t0:.2f} s"
        + (f"; pending: {', '.join(pending)}" if pending else ""))
    return audit


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="leadflow forget", description=__doc__.splitlines()[0])
    who = ap.add_mutually_exclusive_group(required=True)
    who.add_argument("--phone", help="a phone of the person, any common format")
    who.add_argument("--email", help="an e-mail address of the person")
    who.add_argument("--lead_id", help="a lead id of the person")
    ap.add_argument("--bq_dataset", required=True, help="PROJECT:DATASET of the pipeline's tables")
    ap.add_argument("--identity_store", required=True, help=f"the job's identity store: {SPEC_HELP}")
    ap.add_argument("--requested_by", default=None, help="operator or ticket id for the audit row (default: $USER)")
    ap.add_argument("--default_region", default="US", help="region of a phone written without a country code")
    ap.add_argument("--dry_run", action="store_true", help="find and count; change nothing")
    args = ap.parse_args(argv)
    try:
        check_spec(args.identity_store)
        project, dataset = parse_dataset(args.bq_dataset)
    except ValueError as e:
        ap.error(str(e))
    if args.identity_store.startswith("memory"):
        ap.error("a memory store ends with its process: name the job's sqlite: or bigtable: store")
    if not os.environ.get(EMULATOR_HOST_ENV) and not os.environ.get(HASH_KEY_ENV):
        ap.error(f"set {HASH_KEY_ENV} to the job's identity hash key: tombstones under another key match nothing")
    kind, value = ((PHONE, args.phone) if args.phone is not None else (EMAIL, args.email) if args.email is not None
                   else ("lead_id", args.lead_id))
    requested_by = args.requested_by or os.environ.get("USER") or getpass.getuser()
    client = client_for(project)
    store = open_store(args.identity_store)
    try:
        audit = forget(Tables(client, project, dataset), store, kind, value, requested_by=requested_by,
                       dry_run=args.dry_run, region=args.default_region)
    except ForgetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        store.close()
        client.close()
    return EXIT_PENDING if audit.pending_tables else 0


if __name__ == "__main__":
    sys.exit(main())
