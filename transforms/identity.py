"""Identity: one person per human across phones and e-mails, decided the moment an event arrives.

A person is known by every linkable identifier seen with them (a valid E.164 phone, a normalized e-mail).
An event that shares an identifier with a known person belongs to that person and its new identifiers join
them; an event that links two known persons merges them (the older lead survives). Identifiers that must not
link people: the blocklist (``transforms.blocklist``, applied in Normalize: a blocked identifier is no
contact at all) and the fan-in guard (an identifier seen with more than ``max_companions`` distinct other
identifiers within ``fan_in_window_days`` is *shared*: a switchboard, a call-centre number, a family address).

Decided on arrival: nothing waits. An event that arrives later but happened earlier becomes the primary
source with a recorded correction (a ``primary_corrected`` version); the primary is always the earliest
event of the person (event time, then publish time, then unit id), so any arrival order of the same events
ends in the same persons and primary sources.

State lives in an ``IdentityStore`` outside the job (``transforms.identity_store``: memory, SQLite, Bigtable),
as small JSON rows under keyed hashes (never a raw identifier):

* ``i:<hash>``  identifier -> its person, its companions (hash -> last seen, micros), shared flag;
* ``p:<lead id>`` person -> primary, sources, provider ids, identifier hashes, absorbed leads, merged_into;
* ``u:<unit id>`` the decision journal: what the unit was decided as, by which attempt (see ``Resolver``);
* ``t:<hash>`` a tombstone of an erased person (``leadflow forget``): an identifier, a payload fingerprint or a
  provider id of theirs, with the erasure time; ``e:`` counts erasures, so a worker knows when to drop its cache.

Erased persons (docs/identity.md, "Erasure"): a unit whose journal says erased, whose payload fingerprint or
provider id is tombstoned, or that carries a tombstoned identifier and happened before the erasure, is a redelivery,
replay or late event of an erased person: it ends as an ``identity/erased_person`` dead letter without personal
data. A later unit with a tombstoned identifier is a new inquiry: a new lead (the erased person's rows are ignored).

Exactly once under retries: every row a decision writes is written before its outputs leave the DoFn, and
a unit's journal row says which *generation* decided it. The stage's Beam state holds the last committed
generation (Beam commits state and outputs together), so a unit found in the journal with a newer generation
was decided by an attempt whose outputs were thrown away: it is decided again to the same outputs (same ids).
A unit found with a committed generation is a redelivery: outcome ``replay`` with its own event id.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from schemas.records import DeadLetter, IdentifierGuard, Lead, LeadEvent, LeadMerge, LeadVersion, SourceHistory
from transforms.normalize import NormalizedLead

NEW, DUPLICATE_SAME_SOURCE, CROSS_SOURCE, REPLAY = "new", "duplicate_same_source", "cross_source", "replay"
OUTCOMES = (NEW, DUPLICATE_SAME_SOURCE, CROSS_SOURCE, REPLAY)
ERASED = "erased"  # not a lead event: the unit ends as a dead letter (stage ERASED_STAGE, type ERASED_TYPE)
ERASED_STAGE, ERASED_TYPE = "identity", "erased_person"
ERASURES_KEY = "e:"  # {"n": erasures so far}: read uncached at each attempt's start
PHONE, EMAIL = "phone", "email"

# Ids are uuid5 in this namespace, so reruns over the same input produce the same ids.
LEADFLOW_NAMESPACE = uuid.UUID("6f1c1f6e-5b1a-4f39-9a43-0c5e2b8d7a10")
# The identifier hash key: set it (a secret) in production so the store's hashes cannot be reversed by
# hashing a phone book; the local default only keeps raw identifiers out of the store.
HASH_KEY_ENV = "LEADFLOW_IDENTITY_HASH_KEY"
LOCAL_HASH_KEY = "leadflow-local-identity"
MAX_REMEMBERED = 500  # provider ids remembered per person (most recent kept)
MAX_REDIRECTS = 64  # merged_into hops followed before the chain is called broken


def event_id_for(unit_id: str, redelivery: int = 0) -> str:
    name = unit_id if redelivery == 0 else f"{unit_id}#redelivery{redelivery}"
    return str(uuid.uuid5(LEADFLOW_NAMESPACE, "event:" + name))


def lead_id_for(identity_key: str, first_event_id: str) -> str:
    return str(uuid.uuid5(LEADFLOW_NAMESPACE, f"lead:{identity_key}:{first_event_id}"))


def version_id_for(lead_id: str, change: str, cause: str) -> str:
    return str(uuid.uuid5(LEADFLOW_NAMESPACE, f"version:{lead_id}:{change}:{cause}"))


def micros(t: datetime) -> int:
    return int(t.timestamp() * 1_000_000) if t.tzinfo else int(t.replace(tzinfo=UTC).timestamp() * 1_000_000)


def from_micros(m: int) -> datetime:
    return datetime.fromtimestamp(m / 1_000_000, UTC)


def sort_key(lead: NormalizedLead) -> tuple:
    """Which event of a person is the earliest: provider event time, then arrival, then unit id."""
    return (micros(lead.event_time), micros(lead.publish_time), lead.unit_id)


# --------------------------------------------------------------------------------------
# Identifiers and what must not link people
# --------------------------------------------------------------------------------------


def identifiers_of(lead: NormalizedLead) -> list[tuple[str, str]]:
    """The event's valid identifiers as (kind, value), phone first."""
    out = []
    if lead.phone_e164 and lead.phone_status == "valid":
        out.append((PHONE, lead.phone_e164))
    if lead.email and lead.email_status == "valid":
        out.append((EMAIL, lead.email))
    return out


def identifier_hash(kind: str, value: str, key: bytes) -> str:
    return hmac.new(key, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()[:32]


def hash_key() -> bytes:
    return os.environ.get(HASH_KEY_ENV, LOCAL_HASH_KEY).encode()


# Tombstone kinds beside phone and email: what else tells a message of an erased person again.
PAYLOAD, PROVIDER_ID = "payload", "provider_id"


def tombstone_key(kind: str, value: str, key: bytes) -> str:
    """``t:<keyed hash>`` of an identifier (phone, email), a payload's SHA-256 or a provider id (provider\x1fid)."""
    return f"t:{identifier_hash(kind, value, key)}"


def provider_id(provider: str, external_id: str) -> str:
    return f"{provider}\x1f{external_id}"


# --------------------------------------------------------------------------------------
# The store
# --------------------------------------------------------------------------------------


class IdentityStore(Protocol):
    """Rows of JSON objects by key. ``put`` of several rows is applied together where the backend can."""

    def get(self, keys: Iterable[str]) -> dict[str, dict]: ...

    def put(self, rows: dict[str, dict]) -> None: ...

    def delete(self, keys: Iterable[str]) -> None: ...

    def close(self) -> None: ...


def encode_row(row: dict) -> bytes:
    return json.dumps(row, separators=(",", ":")).encode()


def copy_row(value):
    """A copy of a row (JSON values: dicts, lists, strings, numbers, None), 3-4x cheaper than ``copy.deepcopy``."""
    if type(value) is dict:
        return {k: copy_row(v) for k, v in value.items()}
    if type(value) is list:
        return [copy_row(v) for v in value]
    return value


def decode_row(data: bytes) -> dict:
    return json.loads(data)


class CachedStore:
    """A write-through LRU cache in front of a store. Valid while this worker is the only writer, which the
    stage checks (``clear`` when its Beam state shows another worker wrote since)."""

    def __init__(self, store: IdentityStore, max_rows: int = 200_000):
        self.store, self.max_rows = store, max_rows
        self.rows: OrderedDict[str, dict | None] = OrderedDict()
        self.reads = self.misses = 0

    def get(self, keys: Iterable[str]) -> dict[str, dict]:
        keys = list(dict.fromkeys(keys))
        missing = [k for k in keys if k not in self.rows]
        self.reads += len(keys)
        if missing:
            self.misses += len(missing)
            found = self.store.get(missing)
            for k in missing:
                self._keep(k, found.get(k))
        out = {}
        for k in keys:
            self.rows.move_to_end(k)
            if self.rows[k] is not None:
                out[k] = copy_row(self.rows[k])  # callers change what they read before they put it
        return out

    def put(self, rows: dict[str, dict]) -> None:
        if rows:
            self.store.put(rows)
            for k, v in rows.items():
                self._keep(k, v)

    def delete(self, keys: Iterable[str]) -> None:
        keys = list(keys)
        if keys:
            self.store.delete(keys)
            for k in keys:
                self._keep(k, None)

    def _keep(self, key: str, row: dict | None) -> None:
        self.rows[key] = row
        self.rows.move_to_end(key)
        while len(self.rows) > self.max_rows:
            self.rows.popitem(last=False)

    def clear(self) -> None:
        self.rows.clear()

    def close(self) -> None:
        self.store.close()


# --------------------------------------------------------------------------------------
# Decisions
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IdentityConfig:
    """Where identity state lives and the rules for linking people."""

    store: str = "memory"  # memory | sqlite:PATH | bigtable:projects/P/instances/I/tables/T
    max_companions: int = 3  # distinct other identifiers an identifier may be seen with before it is shared
    fan_in_window_days: float = 30.0
    ttl_days: float = 90.0  # a person silent this long is forgotten (becomes a new lead)


@dataclass
class Decision:
    outcome: str
    event: LeadEvent | None  # None for ERASED: the unit's outcome is ``dead_letter``
    lead: Lead | None = None
    history: SourceHistory | None = None
    merges: list[LeadMerge] = field(default_factory=list)
    versions: list[LeadVersion] = field(default_factory=list)
    guards: list[IdentifierGuard] = field(default_factory=list)
    shared: int = 0  # identifiers of the event that no longer link (fan-in guard)
    redecided: bool = False  # a retried attempt's unit decided again to the same outputs
    dead_letter: DeadLetter | None = None  # ERASED: why, without personal data


def _person(lead_id: str, lead: NormalizedLead, event_id: str) -> dict:
    return {"lead": lead_id, "first": list(sort_key(lead)), "primary": [lead.source_id, lead.provider, event_id],
            "sources": {}, "external": {}, "ids": [], "absorbed": [], "into": None,
            "newest": micros(lead.publish_time), "created": event_id}


class Resolver:
    """Decides events against the store, fencing retried attempts (module docstring).

    ``begin(epoch, committed)`` starts an attempt: ``epoch`` names the job's state (a new job, a new epoch),
    ``committed`` is the last generation Beam committed in it. Journal rows carry (epoch, generation, attempt).
    """

    def __init__(self, store: IdentityStore | CachedStore, config: IdentityConfig = IdentityConfig(),
                 key: bytes | None = None,
                 clock: Callable[[], datetime] | None = None):
        self.store = store if isinstance(store, CachedStore) else CachedStore(store)
        self.config = config
        self.key = key if key is not None else hash_key()
        self.ttl = int(timedelta(days=config.ttl_days).total_seconds() * 1_000_000)
        self.window = int(timedelta(days=config.fan_in_window_days).total_seconds() * 1_000_000)
        self.clock = clock or (lambda: datetime.now(UTC))
        self.erasures = 0
        self.begin(uuid.uuid4().hex, 0)

    def begin(self, epoch: str, committed: int) -> int:
        """A new attempt on top of ``committed``; returns the generation this attempt writes.
        Reads the erasure count past the cache: an erasure since the last attempt drops the cached rows."""
        self.epoch, self.committed, self.generation = epoch, committed, committed + 1
        self.attempt = uuid.uuid4().hex
        erasures = self.store.store.get([ERASURES_KEY]).get(ERASURES_KEY, {}).get("n", 0)
        if erasures != self.erasures:
            self.store.clear()
            self.erasures = erasures
        return self.generation

    def _committed(self, journal: dict) -> bool:
        return journal["epoch"] == self.epoch and (journal["gen"] <= self.committed
                                                   or journal["attempt"] == self.attempt)

    def _stamp(self, journal: dict) -> dict:
        return {**journal, "epoch": self.epoch, "gen": self.generation, "attempt": self.attempt}

    # -- reading --------------------------------------------------------------------------------------

    def _owner(self, person_id: str | None, persons: dict[str, dict], newest: int) -> dict | None:
        """The live person a (possibly merged-away) lead id resolves to, or None (unknown or expired)."""
        for _ in range(MAX_REDIRECTS):
            if person_id is None:
                return None
            p = persons.get(person_id)
            if p is None:
                p = self.store.get([f"p:{person_id}"]).get(f"p:{person_id}")
                if p is None:
                    return None
                persons[person_id] = p
            if p["into"] is None:
                return p if newest - p["newest"] <= self.ttl else None
            person_id = p["into"]
        raise RuntimeError(f"identity store: the redirects of merged lead {person_id} do not end in a live person")

    # -- deciding -------------------------------------------------------------------------------------

    def _tombstone_keys(self, lead: NormalizedLead, hashes: dict) -> dict[str, tuple[str, str] | str]:
        """tombstone key -> what it stands for: an identifier (kind, value), PAYLOAD or PROVIDER_ID."""
        if not self.erasures:  # no erasure ever: no tombstone to read
            return {}
        keys: dict[str, tuple[str, str] | str] = {f"t:{h}": kv for kv, h in hashes.items()}
        if lead.payload_sha256:
            keys[tombstone_key(PAYLOAD, lead.payload_sha256, self.key)] = PAYLOAD
        if lead.external_id:
            keys[tombstone_key(PROVIDER_ID, provider_id(lead.provider, lead.external_id), self.key)] = PROVIDER_ID
        return keys

    def decide(self, lead: NormalizedLead) -> Decision:
        now = self.clock()
        hashes = {kv: identifier_hash(*kv, self.key) for kv in identifiers_of(lead)}
        unit_key = f"u:{lead.unit_id}"
        marks = self._tombstone_keys(lead, hashes)
        rows = self.store.get([unit_key, *(f"i:{h}" for h in hashes.values()), *marks])
        journal = rows.get(unit_key)
        if journal is not None and journal.get("erased"):
            return erased(lead, "a redelivery of a message of theirs", now)
        erased_at: dict[tuple[str, str], int] = {}  # tombstoned identifier -> when its person was erased
        for k, what in marks.items():
            if k not in rows:
                continue
            if what == PAYLOAD:
                return erased(lead, "a replay of a message of theirs (same payload)", now)
            if what == PROVIDER_ID:
                return erased(lead, "a provider resending a lead of theirs (same provider id)", now)
            if micros(lead.event_time) <= rows[k]["at"]:
                return erased(lead, "a late event from before the erasure", now)
            erased_at[what] = rows[k]["at"]
        if journal is not None and self._committed(journal):
            journal = {**journal, "n": journal["n"] + 1, "attempt": self.attempt}
            self.store.put({unit_key: journal})
            event = _event(lead, event_id_for(lead.unit_id, journal["n"]), journal["facts"]["lead"], REPLAY, now)
            return Decision(REPLAY, event)
        if journal is not None:  # decided by an attempt whose outputs were lost: the same outputs again
            self.store.put({unit_key: self._stamp(journal)})
            decision = rebuild(lead, journal["facts"], now)
            decision.redecided = True
            return decision
        writes: dict[str, dict] = {}
        facts = self._decide_new(lead, rows, hashes, writes, erased_at)
        journal = {"n": 0, "facts": facts}
        if lead.payload_sha256:  # keyed: what ``leadflow forget`` tombstones so a replay of the bytes stays erased
            journal["fp"] = identifier_hash(PAYLOAD, lead.payload_sha256, self.key)
        writes[unit_key] = self._stamp(journal)
        self.store.put(writes)
        return rebuild(lead, facts, now)

    def _decide_new(self, lead: NormalizedLead, rows: dict, hashes: dict, writes: dict,
                    erased_at: dict | None = None) -> dict:
        """Updates the person, identifier and merged rows (into ``writes``); returns the decision's facts."""
        event_id = event_id_for(lead.unit_id)
        newest, at = micros(lead.publish_time), micros(lead.event_time)
        ident = {kv: rows.get(f"i:{h}") or {"person": None, "companions": {}, "shared": False}
                 for kv, h in hashes.items()}
        guards = self._fan_in(ident, hashes, at)
        linking = [kv for kv in hashes if not ident[kv]["shared"]]
        persons: dict[str, dict] = {}
        owners: dict[str, tuple[dict, str]] = {}  # lead id -> (person, kind of the identifier that found them)
        for kind, value in linking:
            owner = self._owner(ident[(kind, value)]["person"], persons, newest)
            if owner is not None and erased_at and owner["newest"] < erased_at.get((kind, value), -1):
                owner = None  # the erased person's row, while ``leadflow forget`` has not deleted it yet
            if owner is not None:
                owners.setdefault(owner["lead"], (owner, kind))
        merges, versions = [], []
        if not owners:
            person = _person(lead_id_for(lead.identity_key, event_id), lead, event_id)
            outcome = NEW
            versions.append([person["lead"], "created", "", {"status": "new", "primary_source": lead.source_id,
                                                             "primary_provider": lead.provider, "first_seen": 1}])
        else:
            ranked = sorted((p for p, _ in owners.values()), key=lambda p: (p["first"], p["lead"]))
            person = ranked[0]
            for absorbed in ranked[1:]:
                moved = self._merge(absorbed, person, writes)
                merges += [[m, person["lead"], owners[absorbed["lead"]][1]] for m in moved]
                versions += [[person["lead"], "merged", absorbed["lead"], {"merged_lead_id": absorbed["lead"]}],
                             [absorbed["lead"], "merged_into", "", {"status": "merged", "merged_into": person["lead"]}]]
            ext = f"{lead.provider}\x1f{lead.external_id}" if lead.external_id else None
            if ext and ext in person["external"]:
                outcome = REPLAY
            elif lead.source_id in person["sources"]:
                outcome = DUPLICATE_SAME_SOURCE
            else:
                outcome = CROSS_SOURCE
                versions.insert(0, [person["lead"], "new_source", "", {"source_id": lead.source_id}])
            if outcome != REPLAY and list(sort_key(lead)) < person["first"]:
                versions.append([person["lead"], "primary_corrected", "",
                                 {"primary_source": lead.source_id, "primary_provider": lead.provider,
                                  "first_seen": 1}])
                person["first"], person["primary"] = list(sort_key(lead)), [lead.source_id, lead.provider, event_id]
        lead_id = person["lead"]
        person["sources"].setdefault(lead.source_id, event_id)
        if lead.external_id:
            person["external"][f"{lead.provider}\x1f{lead.external_id}"] = event_id
            while len(person["external"]) > MAX_REMEMBERED:
                del person["external"][next(iter(person["external"]))]
        person["newest"] = max(person["newest"], newest)
        for kv in linking:
            ident[kv]["person"] = lead_id
            if hashes[kv] not in person["ids"]:
                person["ids"].append(hashes[kv])
        for kv, h in hashes.items():
            writes[f"i:{h}"] = ident[kv]
        writes[f"p:{lead_id}"] = person
        return {"outcome": outcome, "lead": lead_id, "primary": person["primary"][2] == event_id,
                "merges": merges, "versions": versions, "guards": guards, "shared": len(hashes) - len(linking)}

    def _fan_in(self, ident: dict, hashes: dict, at: int) -> list[list]:
        """Record which identifiers were seen together; trip the guard of one seen with too many others."""
        guards = []
        cap = 4 * self.config.max_companions  # the most recent companions are enough to decide
        for kv, rec in ident.items():
            others = [h for other, h in hashes.items() if other != kv]
            if not others:
                continue
            companions = {h: t for h, t in rec["companions"].items() if at - t <= self.window}
            for h in others:
                companions[h] = max(companions.get(h, at), at)
            if len(companions) > cap:
                companions = dict(sorted(companions.items(), key=lambda x: -x[1])[:cap])
            rec["companions"] = companions
            if not rec["shared"] and len(companions) > self.config.max_companions:
                rec["shared"] = True
                guards.append([hashes[kv], kv[0], len(companions), self.config.fan_in_window_days])
        return guards

    def _merge(self, absorbed: dict, survivor: dict, writes: dict) -> list[str]:
        """``absorbed`` joins ``survivor``: its sources, provider ids, identifiers and absorbed leads move.
        Returns the lead ids now counted under the survivor."""
        for source, first_event in absorbed["sources"].items():
            survivor["sources"].setdefault(source, first_event)
        survivor["external"].update(absorbed["external"])
        survivor["newest"] = max(survivor["newest"], absorbed["newest"])
        for h in absorbed["ids"]:
            if h not in survivor["ids"]:
                survivor["ids"].append(h)
            row = writes.get(f"i:{h}") or self.store.get([f"i:{h}"]).get(f"i:{h}")
            if row is not None and row["person"] == absorbed["lead"]:
                writes[f"i:{h}"] = {**row, "person": survivor["lead"]}
        moved = [absorbed["lead"], *absorbed["absorbed"]]
        survivor["absorbed"] += moved
        writes[f"p:{absorbed['lead']}"] = {**absorbed, "into": survivor["lead"], "absorbed": []}
        for lead_id in absorbed["absorbed"]:  # re-point earlier merges so no chain has to be followed
            row = self.store.get([f"p:{lead_id}"]).get(f"p:{lead_id}")
            if row is not None:
                writes[f"p:{lead_id}"] = {**row, "into": survivor["lead"]}
        return moved


def rebuild(lead: NormalizedLead, facts: dict, now: datetime) -> Decision:
    """A decision's outputs from its journaled facts and the event: the same ids every time."""
    event_id, lead_id, outcome = event_id_for(lead.unit_id), facts["lead"], facts["outcome"]
    decision = Decision(outcome, _event(lead, event_id, lead_id, outcome, now), shared=facts["shared"])
    decision.merges = [LeadMerge(merged_lead_id=m, into_lead_id=into, merged_at=lead.event_time, event_id=event_id,
                                 linked_by=by, processed_at=now) for m, into, by in facts["merges"]]
    for target, change, cause, cols in facts["versions"]:
        cols = dict(cols)
        first_seen = lead.event_time if cols.pop("first_seen", None) else None
        decision.versions.append(LeadVersion(
            version_id=version_id_for(target, change, event_id + cause), lead_id=target, change=change,
            changed_at=lead.event_time, event_id=event_id, status=cols.pop("status", None),
            first_seen_at=first_seen, processed_at=now, **cols))
    decision.guards = [IdentifierGuard(identifier_hash=h, kind=kind, decision="shared", companions=n,
                                       window_days=w, decided_at=lead.event_time, event_id=event_id,
                                       processed_at=now) for h, kind, n, w in facts["guards"]]
    if outcome in (NEW, CROSS_SOURCE):
        decision.history = SourceHistory(
            lead_id=lead_id, source_id=lead.source_id, provider=lead.provider, external_id=lead.external_id,
            is_primary=facts["primary"], event_id=event_id, received_at=lead.event_time)
    if outcome == NEW:
        decision.lead = _lead(lead, lead_id, now)
    return decision


def erased(lead: NormalizedLead, why: str, now: datetime) -> Decision:
    """The outcome of a unit of an erased person: a dead letter with ids and hashes only (no payload)."""
    return Decision(ERASED, None, dead_letter=DeadLetter(
        message_id=lead.unit_id, provider=lead.provider, stage=ERASED_STAGE, error_type=ERASED_TYPE,
        error_message=f"the person was erased on request (leadflow forget); this is {why}",
        payload=None, payload_encoding="utf-8", payload_bytes=0, payload_truncated=False,
        payload_sha256=lead.payload_sha256, attributes="{}", publish_time=lead.publish_time, failed_at=now))


def _event(lead: NormalizedLead, event_id: str, lead_id: str, outcome: str, now: datetime) -> LeadEvent:
    return LeadEvent(
        event_id=event_id, message_id=lead.unit_id, lead_id=lead_id, outcome=outcome, provider=lead.provider,
        source_id=lead.source_id, source_verified=lead.source_verified, external_id=lead.external_id,
        identity_key=lead.identity_key, event_time=lead.event_time, publish_time=lead.publish_time,
        phone_e164=lead.phone_e164, email=lead.email, full_name=lead.full_name, is_test=lead.is_test,
        campaign_id=lead.campaign_id, form_id=lead.form_id, processed_at=now)


def _lead(lead: NormalizedLead, lead_id: str, now: datetime) -> Lead:
    return Lead(
        lead_id=lead_id, identity_key=lead.identity_key, phone_e164=lead.phone_e164, email=lead.email,
        full_name=lead.full_name, first_name=lead.first_name, last_name=lead.last_name, country=lead.country,
        postal_code=lead.postal_code, city=lead.city, state=lead.state, property_address=lead.property_address,
        message=lead.message, primary_source=lead.source_id, primary_provider=lead.provider,
        first_seen_at=lead.event_time, is_test=lead.is_test, processed_at=now)


def decide_in_order(resolver: Resolver, leads: Iterable[NormalizedLead]) -> list[Decision]:
    """Decide events one after another, as they arrive."""
    return [resolver.decide(lead) for lead in leads]


# --------------------------------------------------------------------------------------
# Seeding a store from the tables (a job whose persons lived only in its Beam state)
# --------------------------------------------------------------------------------------


def _survivors(merges: Iterable[dict]) -> dict[str, str]:
    """merged lead id -> the live lead it counts under (the latest merge row of each merged lead, followed)."""
    latest: dict[str, tuple] = {}
    for m in merges:
        key = (str(m["merged_at"]), str(m.get("processed_at") or ""))
        if m["merged_lead_id"] not in latest or key > latest[m["merged_lead_id"]][0]:
            latest[m["merged_lead_id"]] = (key, m["into_lead_id"])
    into = {merged: target for merged, (_, target) in latest.items()}
    out = {}
    for merged in into:
        target, hops = into[merged], 0
        while target in into and hops < MAX_REDIRECTS:
            target, hops = into[target], hops + 1
        out[merged] = target
    return out


def seed_rows(events: Iterable[dict], merges: Iterable[dict], config: IdentityConfig = IdentityConfig(),
              key: bytes | None = None) -> dict[str, dict]:
    """The store rows (``p:`` and ``i:``) that know every person of the ``lead_events`` and ``lead_merges`` rows
    under the lead ids those tables already use, so a new job decides a returning person as that lead.

    An identifier seen with several live leads (the old job keyed a person by phone, else e-mail, never both)
    belongs to the lead seen first; the next event that carries it with another lead's identifier merges them, as
    any merge. Companions inside the fan-in window are counted, so a switchboard number is shared from the start.
    Replays are skipped; no journal rows are written (a redelivered old message is a known person's duplicate).
    """
    key = key if key is not None else hash_key()
    into = _survivors(merges)
    persons: dict[str, dict] = {}
    identifiers: dict[str, dict] = {}
    hashed: dict[tuple[str, str], str] = {}
    cap = 4 * config.max_companions  # the most recent companions are enough to decide (as Resolver._fan_in)
    newest = 0
    for e in events:  # one pass: the events need not be sorted, nor held
        if e["outcome"] == REPLAY:
            continue
        lead_id = into.get(e["lead_id"], e["lead_id"])
        first = [micros(e["event_time"]), micros(e["publish_time"]), e["message_id"]]
        newest = max(newest, first[0])
        event_id = e.get("event_id") or event_id_for(e["message_id"])
        p = persons.get(lead_id)
        if p is None:
            p = persons[lead_id] = {"lead": lead_id, "first": first, "sources": {}, "external": {}, "ids": [],
                                    "primary": [e["source_id"], e["provider"], event_id], "absorbed": [],
                                    "into": None, "newest": first[1], "created": event_id, "_src": {}}
        elif first < p["first"]:
            p["first"], p["primary"], p["created"] = first, [e["source_id"], e["provider"], event_id], event_id
        p["newest"] = max(p["newest"], first[1])
        if e["source_id"] not in p["_src"] or first < p["_src"][e["source_id"]]:
            p["sources"][e["source_id"]], p["_src"][e["source_id"]] = event_id, first
        if e.get("external_id"):
            p["external"][f"{e['provider']}\x1f{e['external_id']}"] = event_id
        hashes = []
        for kv in ((PHONE, e.get("phone_e164")), (EMAIL, e.get("email"))):
            if kv[1]:
                if kv not in hashed:
                    hashed[kv] = identifier_hash(*kv, key)
                hashes.append(hashed[kv])
        for h in hashes:
            if h not in p["ids"]:
                p["ids"].append(h)
            rec = identifiers.get(h)
            if rec is None or first < rec["_first"]:  # an identifier belongs to the lead that carried it first
                rec = identifiers[h] = {"person": lead_id, "companions": {} if rec is None else rec["companions"],
                                        "shared": False, "_first": first}
            companions = rec["companions"]
            for other in hashes:
                if other != h:
                    companions[other] = max(companions.get(other, first[0]), first[0])
            if len(companions) > 2 * cap:
                rec["companions"] = dict(sorted(companions.items(), key=lambda x: -x[1])[:cap])
    window = int(timedelta(days=config.fan_in_window_days).total_seconds() * 1_000_000)
    for rec in identifiers.values():
        del rec["_first"]
        recent = sorted(((h, t) for h, t in rec["companions"].items() if newest - t <= window), key=lambda x: -x[1])
        rec["companions"] = dict(recent[:cap])
        rec["shared"] = len(recent) > config.max_companions
    rows: dict[str, dict] = {f"i:{h}": rec for h, rec in identifiers.items()}
    absorbed: dict[str, list[str]] = {}
    for merged, target in into.items():
        absorbed.setdefault(target, []).append(merged)
    for lead_id, p in persons.items():
        del p["_src"]
        while len(p["external"]) > MAX_REMEMBERED:
            del p["external"][next(iter(p["external"]))]
        p["absorbed"] = sorted(absorbed.get(lead_id, []))
        rows[f"p:{lead_id}"] = p
    for merged, target in into.items():
        rows.setdefault(f"p:{merged}", {**_redirect(merged), "into": target})
    return rows


def _redirect(lead_id: str) -> dict:
    return {"lead": lead_id, "first": [0, 0, ""], "primary": ["", "", ""], "sources": {}, "external": {}, "ids": [],
            "absorbed": [], "into": None, "newest": 0, "created": ""}
