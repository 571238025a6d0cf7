"""Erasure without BigQuery: the identity stage honours the tombstones ``leadflow forget`` writes (a redelivery, a
replay, a provider's resend and a late event of the erased person end as dead letters without personal data; a new
inquiry is a new lead), and the pure parts of the command (which tables, which dead letters name the person)."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from pipelines.ops import forget
from schemas.derive import columns
from schemas.records import TABLES
from tests.helpers.leads import T0, lead
from transforms.identity import (
    DUPLICATE_SAME_SOURCE,
    ERASED,
    ERASED_TYPE,
    ERASURES_KEY,
    NEW,
    IdentityConfig,
    Resolver,
    identifier_hash,
    micros,
    provider_id,
)
from transforms.identity_store import MemoryStore

KEY = b"test"
P1, E1, P2 = "+14155550101", "ann@example.org", "+14155550102"
ERASED_AT = T0 + timedelta(seconds=1000)


def ann(unit: str, event_s: float, **kw):
    return dataclasses.replace(lead(unit, phone=kw.pop("phone", P1), email=kw.pop("email", None), event_s=event_s,
                                    external_id=kw.pop("external_id", None)), payload_sha256=kw.pop("sha", unit), **kw)


def erase(store: MemoryStore, decisions, delete_rows: bool = True) -> None:
    """What ``leadflow forget`` does to the store for the person of ``decisions`` (tables left out)."""
    person = forget.Person(lead_ids={d.event.lead_id for d in decisions}, phones={P1}, emails={E1},
                           units={d.event.message_id for d in decisions},
                           provider_ids={provider_id(d.event.provider, d.event.external_id)
                                         for d in decisions if d.event.external_id})
    marks = forget.tombstones(person, store, KEY, ERASED_AT)
    store.put({**marks, ERASURES_KEY: {"n": 1, "at": micros(ERASED_AT)}})
    if delete_rows:
        store.delete([f"p:{lead_id}" for lead_id in person.lead_ids] +
                     [f"i:{identifier_hash(k, v, KEY)}" for k, v in person.identifiers()])


def test_the_erased_persons_messages_end_as_dead_letters_and_a_new_inquiry_is_a_new_lead():
    store = MemoryStore()
    first = Resolver(store, IdentityConfig(), key=KEY)
    old = [first.decide(ann("a1", 10, external_id="x1")), first.decide(ann("a2", 20, email=E1))]
    bob = first.decide(ann("b1", 30, phone=P2))
    erase(store, old)

    r = Resolver(store, IdentityConfig(), key=KEY)
    cases = {
        "redelivered": ann("a1", 10, external_id="x1"),
        "replayed under a new id": ann("r-a2", 20, email=E1, sha="a2"),
        "resent by the provider": ann("p-a1", 500, external_id="x1", sha="other bytes"),
        "late, from before the erasure": ann("late", 900, sha="late bytes"),
    }
    for name, unit in cases.items():
        d = r.decide(unit)
        assert (d.outcome, d.event, d.lead) == (ERASED, None, None), name
        dl = d.dead_letter
        assert (dl.message_id, dl.stage, dl.error_type, dl.payload, dl.attributes) == (
            unit.unit_id, "identity", ERASED_TYPE, None, "{}"), name
        assert P1 not in repr(dl) and E1 not in repr(dl) and "Test Person" not in repr(dl), name
    new = r.decide(ann("a-new", 2000, email=E1))
    assert new.outcome == NEW and new.event.lead_id not in {d.event.lead_id for d in old}
    again = r.decide(ann("b2", 40, phone=P2))  # the other person is still known
    assert (bob.outcome, again.outcome, again.event.lead_id) == (NEW, DUPLICATE_SAME_SOURCE, bob.event.lead_id)


def test_a_new_inquiry_is_a_new_lead_while_forget_has_not_deleted_the_old_rows_yet():
    store = MemoryStore()
    r = Resolver(store, IdentityConfig(), key=KEY)
    old = [r.decide(ann("a1", 10))]
    erase(store, old, delete_rows=False)
    r.begin("epoch-2", 0)  # the next bundle: the erasure count changed, the cache goes
    d = r.decide(ann("a-new", 2000))
    assert d.outcome == NEW and d.event.lead_id != old[0].event.lead_id


def test_a_worker_with_a_warm_cache_sees_the_erasure_at_its_next_attempt():
    store = MemoryStore()
    r = Resolver(store, IdentityConfig(), key=KEY)
    old = [r.decide(ann("a1", 10))]
    erase(store, old)
    r.begin("epoch-1", 1)
    assert r.decide(ann("a1", 10)).outcome == ERASED


def test_without_erasures_no_tombstone_is_read():
    class Keys(MemoryStore):
        read: list[str] = []

        def get(self, keys):
            keys = list(keys)
            self.read += keys
            return super().get(keys)

    store = Keys()
    Resolver(store, IdentityConfig(), key=KEY).decide(ann("a1", 10, external_id="x"))
    assert not [k for k in store.read if k.startswith("t:")]


def test_every_table_with_personal_data_is_reached_by_forget():
    reached = set(forget.person_tables()) | {forget.DEAD_LETTERS}
    personal = {name for name, spec in TABLES.items() if any(c.metadata.get("pii") for c in columns(spec.record))}
    assert personal <= reached
    assert {"leads", "lead_events", "lead_versions", "lead_source_history", "lead_merges", "lead_assignments",
            "lead_outcomes"} <= set(forget.person_tables())
    assert forget.AUDIT_TABLE not in forget.person_tables()  # the audit rows outlive the person


def test_a_dead_letter_names_the_person_by_any_format_of_their_phone_or_email():
    phones, emails = {P1}, {E1}
    for text in ('{"phone": "(415) 555-0101"}', "call 415.555.0101 today", "From=%2B14155550101&x=1".replace(
            "%2B", "+"), "Mail: ANN@Example.org"):
        assert forget.names_person(text, phones, emails, "US"), text
    for text in ('{"phone": "(415) 555-0102"}', "annie@example.org", ""):
        assert not forget.names_person(text, phones, emails, "US"), text
    assert forget.payload_text("eyJhIjogMX0=", "base64") == '{"a": 1}'


def test_a_bad_identifier_is_refused_clearly():
    for kind, value in (("phone", "12"), ("email", "not-an-address")):
        try:
            forget.normalized_identifier(kind, value, "US")
        except forget.ForgetError as e:
            assert value not in str(e)
        else:
            raise AssertionError(f"{value!r} was accepted")
