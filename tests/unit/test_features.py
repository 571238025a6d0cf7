"""scoring.features: every feature on hand-built leads, vector/validate, fallback score, tiers, and parity
between the pipeline's ``Lead`` dataclasses and the trainer's rows."""

from __future__ import annotations

import math
import random
import time
from collections import namedtuple
from dataclasses import dataclass, fields
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from pipelines.synthetic.history import INTENT_PHRASES, NEUTRAL_MESSAGES, generate_history
from schemas.records import Lead
from scoring import features as F
from scoring.train import build_matrix
from transforms.parsers.registry import PARSERS

MONDAY_17_UTC = datetime(2026, 3, 2, 17, 0, tzinfo=UTC)  # winter: New York UTC-5, Los Angeles UTC-8
CODE = {name: {level: float(i) for i, level in enumerate(levels)} for name, levels in F.CATEGORY_LEVELS.items()}


def lead(**overrides) -> dict:
    base = {
        "primary_provider": "meta_lead_ads",
        "phone_e164": None,
        "email": None,
        "country": None,
        "postal_code": None,
        "message": None,
        "first_seen_at": MONDAY_17_UTC,
        "is_test": False,
    }
    return {**base, **overrides}


# --------------------------------------------------------------------------------------
# Definitions
# --------------------------------------------------------------------------------------


def test_definitions_are_consistent():
    assert F.FEATURE_VERSION == "1"
    assert len(set(F.FEATURE_NAMES)) == len(F.FEATURE_NAMES)
    assert set(F.DEFAULTS) == set(F.FEATURE_NAMES)
    assert set(F.CATEGORICAL_FEATURES) <= set(F.FEATURE_NAMES)
    assert set(F.CATEGORY_LEVELS) == set(F.CATEGORICAL_FEATURES)
    assert all(isinstance(v, float) for v in F.DEFAULTS.values())
    assert F.validate(F.DEFAULTS) == []


def test_provider_levels_are_the_registry_parsers_plus_other():
    assert set(F.PROVIDERS[:-1]) == set(PARSERS) and F.PROVIDERS[-1] == "other"
    for i, provider in enumerate(F.PROVIDERS[:-1]):
        assert F.features_for(lead(primary_provider=provider))["provider"] == i
    assert F.features_for(lead(primary_provider="carrier_pigeon"))["provider"] == CODE["provider"]["other"]
    assert F.features_for(lead(primary_provider=None))["provider"] == CODE["provider"]["other"]


# --------------------------------------------------------------------------------------
# Phones and local time
# --------------------------------------------------------------------------------------


def test_us_number_local_time_is_the_numbers_zone():
    f = F.features_for(lead(phone_e164="+14155552671", country="US"))  # San Francisco: 09:00 PST
    assert (f["has_phone"], f["phone_type"], f["phone_region_matches_country"]) == (
        1.0,
        CODE["phone_type"]["fixed_or_mobile"],
        1.0,
    )
    assert (f["local_hour"], f["local_weekday"]) == (9.0, 0.0)
    f = F.features_for(lead(phone_e164="+12125551234", country="US"))  # New York: 12:00 EST
    assert f["local_hour"] == 12.0


def test_gb_fixed_line_and_mobile_in_summer_time():
    july_noon_utc = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
    f = F.features_for(lead(phone_e164="+442079460123", country="GB", first_seen_at=july_noon_utc))
    assert f["phone_type"] == CODE["phone_type"]["fixed"]
    assert f["local_hour"] == 13.0  # BST
    f = F.features_for(lead(phone_e164="+447400123456", country="gb", first_seen_at=july_noon_utc))
    assert (f["phone_type"], f["phone_region_matches_country"], f["local_hour"]) == (
        CODE["phone_type"]["mobile"],
        1.0,
        13.0,
    )


def test_in_mobile_half_hour_zone_crosses_midnight():
    late = datetime(2026, 3, 2, 19, 0, tzinfo=UTC)  # 00:30 Tuesday in India
    f = F.features_for(lead(phone_e164="+919812345678", country="IN", first_seen_at=late))
    assert f["phone_type"] == CODE["phone_type"]["mobile"]
    assert (f["local_hour"], f["local_weekday"]) == (0.0, 1.0)


def test_toll_free_and_region_mismatch():
    f = F.features_for(lead(phone_e164="+18005551234", country="US"))
    assert f["phone_type"] == CODE["phone_type"]["toll_free"]
    assert f["local_hour"] == 12.0  # spans every North American zone: the country's (New York), not Adak
    f = F.features_for(lead(phone_e164="+447400123456", country="US"))
    assert f["phone_region_matches_country"] == 0.0
    assert f["local_hour"] == 17.0  # the number's zone (London) wins over the country
    assert F.features_for(lead(phone_e164="+447400123456"))["phone_region_matches_country"] == 0.0


def test_without_phone_the_country_zone_then_utc():
    f = F.features_for(lead(country="IN", first_seen_at=datetime(2026, 3, 2, 20, 0, tzinfo=UTC)))
    assert (f["has_phone"], f["phone_type"]) == (0.0, CODE["phone_type"]["unknown"])
    assert (f["local_hour"], f["local_weekday"]) == (1.0, 1.0)  # 01:30 Tuesday IST
    f = F.features_for(lead(country="ZZ"))
    assert (f["local_hour"], f["local_weekday"]) == (17.0, 0.0)
    assert F.features_for(lead())["local_hour"] == 17.0


def test_unparseable_phone_counts_as_no_phone():
    f = F.features_for(lead(phone_e164="not a number", country="US"))
    assert (f["has_phone"], f["phone_type"], f["phone_region_matches_country"]) == (0.0, 6.0, 0.0)
    assert f["local_hour"] == 12.0  # country zone


def test_time_formats():
    naive = F.features_for(lead(phone_e164="+14155552671", first_seen_at=datetime(2026, 3, 2, 17, 0)))
    text = F.features_for(lead(phone_e164="+14155552671", first_seen_at="2026-03-02T17:00:00Z"))
    ts = F.features_for(lead(phone_e164="+14155552671", first_seen_at=pd.Timestamp("2026-03-02 17:00", tz="UTC")))
    assert naive["local_hour"] == text["local_hour"] == ts["local_hour"] == 9.0
    for missing in (None, pd.NaT, float("nan"), "yesterday"):
        f = F.features_for(lead(first_seen_at=missing))
        assert (f["local_hour"], f["local_weekday"]) == (F.DEFAULTS["local_hour"], F.DEFAULTS["local_weekday"])


# --------------------------------------------------------------------------------------
# E-mail, message, the rest
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("email", "klass"),
    [
        ("maria@gmail.com", "free"),
        ("Maria@GMAIL.COM ", "free"),
        ("p@rediffmail.com", "free"),
        ("o@btinternet.com", "free"),
        ("ceo@acmecorp.com", "corporate"),
        ("x@mailinator.com", "disposable"),
        ("x@guerrillamail.com", "disposable"),
        ("x@inbox.yopmail.com", "disposable"),  # parent domain on the blocklist
    ],
)
def test_email_domain_classes(email, klass):
    f = F.features_for(lead(email=email))
    assert (f["has_email"], f["email_domain_class"]) == (1.0, CODE["email_domain_class"][klass])


@pytest.mark.parametrize("email", [None, "", "   ", "no-at-sign", "@gmail.com", "me@localhost", float("nan")])
def test_missing_or_broken_email_is_none(email):
    f = F.features_for(lead(email=email))
    assert (f["has_email"], f["email_domain_class"]) == (0.0, CODE["email_domain_class"]["none"])


def test_message_features():
    f = F.features_for(lead(message="  Want to BUY asap! Price? I'm pre-approved; buyer of 2 homes.  "))
    assert f["message_length"] == len("Want to BUY asap! Price? I'm pre-approved; buyer of 2 homes.")
    assert f["intent_words"] == 4.0  # buy, asap, price, pre-approved (not "buyer")
    assert F.intent_word_count("cash cash CASH") == 3
    for message in (None, "", float("nan")):
        f = F.features_for(lead(message=message))
        assert (f["message_length"], f["intent_words"]) == (0.0, 0.0)


def test_history_phrases_hold_the_intent_words_they_claim():
    for neutral in NEUTRAL_MESSAGES:
        assert F.intent_word_count(neutral.format(city="Austin")) == 0, neutral
    for phrase in INTENT_PHRASES:
        assert F.intent_word_count(phrase) == 1, phrase


def test_sources_postal_code_and_test_flag():
    assert F.features_for(lead())["sources_count"] == 1.0
    assert F.features_for(lead(sources_count=3))["sources_count"] == 3.0
    assert F.features_for(lead(sources_count=np.int64(2)))["sources_count"] == 2.0
    for bad in (float("nan"), None, "many", 0):
        assert F.features_for(lead(sources_count=bad))["sources_count"] == 1.0
    assert F.features_for(lead(postal_code="94103"))["has_postal_code"] == 1.0
    assert F.features_for(lead(postal_code="  "))["has_postal_code"] == 0.0
    for flag, expected in ((True, 1.0), (np.bool_(True), 1.0), ("true", 1.0), (False, 0.0), ("no", 0.0), (None, 0.0)):
        assert F.features_for(lead(is_test=flag))["is_test"] == expected


def test_missing_fields_take_the_defaults():
    assert F.features_for({}) == F.DEFAULTS
    assert F.features_for(object()) == F.DEFAULTS
    nan_row = pd.Series({name: float("nan") for name in ("phone_e164", "email", "country", "message", "postal_code")})
    assert F.features_for(nan_row) == F.DEFAULTS


def test_features_are_fast():
    rng = random.Random(1)
    rows = generate_history(300, seed=1).to_dict("records")
    for row in rows:  # warm the per-number and per-domain caches, as a long-running worker has them
        F.features_for(row)
    picks = [rng.choice(rows) for _ in range(3000)]
    t0 = time.perf_counter()
    for row in picks:
        F.features_for(row)
    per_lead_us = (time.perf_counter() - t0) / len(picks) * 1e6
    assert per_lead_us < 200  # ~15-30 µs measured; generous for a busy 2-core machine


# --------------------------------------------------------------------------------------
# vector, validate
# --------------------------------------------------------------------------------------


def test_vector_order_and_defaults():
    assert F.vector({}) == [F.DEFAULTS[n] for n in F.FEATURE_NAMES]
    v = F.vector({"intent_words": 2, "provider": 3, "is_test": None, "bogus": 7})
    assert v[F.FEATURE_NAMES.index("intent_words")] == 2.0
    assert v[F.FEATURE_NAMES.index("provider")] == 3.0
    assert v[F.FEATURE_NAMES.index("is_test")] == F.DEFAULTS["is_test"]
    assert len(v) == len(F.FEATURE_NAMES) and all(isinstance(x, float) for x in v)
    f = F.features_for(lead(phone_e164="+14155552671", email="a@acmecorp.com", message="buy"))
    assert F.vector(f) == [f[n] for n in F.FEATURE_NAMES]


def test_validate_reports_problems():
    assert F.validate({"provider": 2, "local_hour": 23, "message_length": 12.5, "is_test": True, "email": None}) != []
    assert F.validate({"provider": 2, "local_hour": 23, "message_length": 12.5, "is_test": True}) == []
    assert F.validate({"has_phone": None}) == []
    problems = F.validate(
        {"colour": 1, "provider": 42, "local_hour": "noon", "phone_type": 1.5, "message_length": float("inf")}
    )
    assert len(problems) == 5
    text = " | ".join(problems)
    for expected in (
        "unknown feature 'colour'",
        "provider must be in 0..8",
        "local_hour must be a number",
        "phone_type must be a whole number",
        "message_length must be finite",
    ):
        assert expected in text
    assert F.validate({"sources_count": -1}) == ["sources_count must be in >= 0, not -1"]
    assert F.validate([1, 2]) and "object" in F.validate([1, 2])[0]


# --------------------------------------------------------------------------------------
# Fallback score and tiers
# --------------------------------------------------------------------------------------


def test_fallback_score_is_a_probability_like_number():
    rng = random.Random(7)
    for _ in range(500):
        f = {name: rng.uniform(-5, 50) if rng.random() < 0.3 else rng.randint(0, 8) for name in F.FEATURE_NAMES}
        assert 0.0 <= F.fallback_score(f) <= 1.0
    assert 0.0 <= F.fallback_score({}) <= 1.0


def test_fallback_score_is_monotone_in_the_obvious_directions():
    base = F.features_for(lead(primary_provider="google_ads_lead_form", email="a@gmail.com"))
    s = F.fallback_score

    def with_(**kw):
        return {**base, **kw}

    mobile = with_(has_phone=1.0, phone_type=CODE["phone_type"]["mobile"])
    assert s(mobile) > s(with_(has_phone=1.0, phone_type=CODE["phone_type"]["fixed"])) > s(base)
    corporate = with_(email_domain_class=CODE["email_domain_class"]["corporate"])
    disposable = with_(email_domain_class=CODE["email_domain_class"]["disposable"])
    assert s(corporate) > s(base) > s(disposable)
    assert s(with_(intent_words=2)) > s(with_(intent_words=1)) > s(base)
    assert s(with_(sources_count=3)) > s(with_(sources_count=2)) > s(base)
    assert s(with_(is_test=1.0)) < s(base)
    call = with_(provider=CODE["provider"]["knowlarity_call"])
    upload = with_(provider=CODE["provider"]["csv_upload"])
    assert s(call) > s(base) > s(upload)
    best = with_(provider=2.0, has_phone=1.0, phone_type=0.0, email_domain_class=2.0, intent_words=9, sources_count=9)
    assert s(best) == pytest.approx(0.95) and s({**best, "is_test": 1.0}) == pytest.approx(0.095)


def test_priority_tiers():
    assert [F.priority_tier(x) for x in (0.0, 0.29, 0.3, 0.59, 0.6, 1.0)] == [
        "cold",
        "cold",
        "warm",
        "warm",
        "hot",
        "hot",
    ]
    assert F.priority_tier(0.5, hot=0.5, warm=0.2) == "hot"
    assert F.priority_tier(0.1, hot=0.5, warm=0.05) == "warm"
    with pytest.raises(ValueError):
        F.priority_tier(0.5, hot=0.2, warm=0.4)


# --------------------------------------------------------------------------------------
# Parity: the pipeline's Lead dataclasses and the trainer's rows give identical features
# --------------------------------------------------------------------------------------


@dataclass
class LeadWithSources(Lead):
    """A pipeline Lead carrying the number of sources (what the scoring handler passes)."""

    sources_count: int = 1


def _clean(value):
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NaT:
        return None
    return value.to_pydatetime() if isinstance(value, pd.Timestamp) else value


def _as_lead(row: dict, cls=LeadWithSources):
    names = {f.name for f in fields(cls)}
    values = {name: None for name in names}
    values.update({k: _clean(v) for k, v in row.items() if k in names})
    values.update(
        identity_key=f"phone:{values['phone_e164']}" if values["phone_e164"] else f"email:{values['email']}",
        primary_source=f"{row['primary_provider']}-main",
        is_test=bool(row["is_test"]),
        processed_at=datetime(2027, 1, 1, tzinfo=UTC),
    )
    return cls(**values)


def test_pipeline_leads_and_trainer_rows_give_identical_features():
    df = generate_history(400, seed=11)
    X, _ = build_matrix(df)  # exactly what the trainer feeds LightGBM
    trained = X.astype(float).to_numpy()
    records = df.to_dict("records")
    rows = list(df.itertuples(index=False))
    for i, record in enumerate(records):
        from_dataclass = F.vector(F.features_for(_as_lead(record)))
        assert from_dataclass == trained[i].tolist(), (i, record)
        assert F.vector(F.features_for(df.iloc[i])) == from_dataclass  # a pandas row
        assert F.vector(F.features_for(rows[i])) == from_dataclass  # a namedtuple (itertuples)
        assert F.vector(F.features_for(dict(record))) == from_dataclass
    # A plain Lead (no sources_count) equals a row with one source.
    record = dict(records[0], sources_count=1)
    plain = _as_lead(record, Lead)
    assert F.features_for(plain) == F.features_for(record)
    # The rows cover what the parity must prove.
    assert {"none", "free", "corporate", "disposable"} <= {
        F.EMAIL_CLASSES[int(c)] for c in X["email_domain_class"].astype(int)
    }
    assert X["has_phone"].nunique() == 2 and X["intent_words"].max() >= 2 and X["sources_count"].max() >= 3


def test_namedtuple_and_mapping_like_access():
    Row = namedtuple("Row", "primary_provider phone_e164 email first_seen_at")
    row = Row("twilio_sms", "+14155552671", "a@acmecorp.com", MONDAY_17_UTC)
    as_dict = F.features_for(row._asdict())
    assert F.features_for(row) == as_dict
    assert as_dict["provider"] == CODE["provider"]["twilio_sms"] and as_dict["local_hour"] == 9.0
