"""The pure parts of ``leadflow trace``: the lookup (normalized the pipeline's way, hashed in logs) and the person
behind a set of leads (merge rows, the latest per merged lead)."""

from __future__ import annotations

import pytest

from pipelines.ops import trace as tr


def test_a_phone_or_email_is_normalized_and_only_its_hash_is_logged():
    assert tr.lookup_of(phone="(415) 555-0101") == ("phone", "+14155550101")
    assert tr.lookup_of(email=" Ann@Example.COM ") == ("email", "ann@example.com")
    assert tr.lookup_of(lead_id="L1") == ("lead_id", "L1")
    line = tr.logged("phone", "+14155550101")
    assert line.startswith("phone hash ") and "4155550101" not in line and len(line.split()[-1]) == 32
    assert tr.logged("message_id", "m-1") == "message_id m-1"
    with pytest.raises(tr.TraceError, match="exactly one"):
        tr.lookup_of(lead_id="L1", phone="+14155550101")
    with pytest.raises(tr.TraceError, match="phone number is invalid"):
        tr.lookup_of(phone="12")
    with pytest.raises(tr.TraceError, match="e-mail address is invalid"):
        tr.lookup_of(email="not an address")


def test_the_person_is_the_survivor_of_the_latest_merges():
    merges = [
        {"merged_lead_id": "C", "into_lead_id": "A", "merged_at": "2026-11-16T10:00:00.000000Z"},
        {"merged_lead_id": "A", "into_lead_id": "B", "merged_at": "2026-11-16T11:00:00.000000Z"},
        {"merged_lead_id": "C", "into_lead_id": "B", "merged_at": "2026-11-16T11:00:00.000000Z"},  # re-pointed
    ]
    assert tr.person_of({"C"}, merges) == ("B", ["A", "B", "C"])
    assert tr.person_of({"A", "B"}, merges) == ("B", ["A", "B", "C"])
    assert tr.person_of({"D"}, merges) == ("D", ["D"])
    with pytest.raises(tr.TraceError, match="2 different people"):
        tr.person_of({"B", "D"}, merges)
