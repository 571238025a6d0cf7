"""Realistic lead history with conversion labels drawn from a documented model, for training and tests.

Each row is a lead as the pipeline writes it (``schemas.records.Lead`` fields the features use, plus
``sources_count``) with two more columns: ``conversion_probability``, the TRUE probability the lead
converts, and ``converted`` (0/1), drawn from it. People come from ``pipelines.synthetic.leads.random_person``
(US 60 %, GB, IN; valid phone numbers, postal codes of their city) and then vary:

* provider: meta_lead_ads 30 %, google_ads_lead_form 18 %, api 10 %, inbound_email 10 %, knowlarity_call 8 %,
  twilio_sms 8 %, csv_upload 8 %, twilio_voice 8 %;
* phone: always for calls and texts, 85 % for forms, API and uploads, 60 % for provider e-mails; of the GB and
  IN numbers 20 % are fixed lines, and 4 % of all people give a number from another country;
* e-mail: 15 % for calls and texts, 90 % otherwise (a lead has at least one of phone and e-mail); 20 % on
  corporate domains (``random_person``), 7 % replaced by a disposable domain (mailinator.com,
  guerrillamail.com, yopmail.com), the rest free webmail;
* message: none for 25 %; else a neutral sentence plus k = 0 (50 %), 1 (25 %), 2 (15 %) or 3 (10 %)
  phrases that each hold exactly one word of ``scoring.features.INTENT_WORDS``;
* sources_count 1 (60 %), 2 (25 %), 3 (10 %), 4 (5 %); postal code 85 %; country 95 %; test leads 2 %;
* first_seen_at: a uniformly drawn day of the window and a local hour drawn from a daily profile (busy
  10-13 h and 18-21 h, quiet at night) in the person's real time zone (their city's), converted to UTC;
  rows are sorted by first_seen_at.

The conversion model (the truth the trainer should recover)::

    logit = -3.8
          + provider effect     knowlarity_call +1.6, twilio_voice +1.45, api +1.0, twilio_sms +0.8,
                                google_ads_lead_form +0.5, inbound_email +0.3, meta_lead_ads 0, csv_upload -0.8
          + 0.7 * k             (intent phrases in the message, 0..3)
          + phone               mobile (or US fixed-or-mobile) +1.0, fixed line +0.3, none 0
          + e-mail              corporate +0.8, free 0, none -0.15, disposable -1.9
          + 0.55 * (sources_count - 1)
          + 0.65                when first seen Monday-Friday 09:00-17:59 in the person's own time zone
          - 3.0                 for test leads
          + noise               Normal(0, 0.5): what no field shows (unobserved intent, timing, ...)
    conversion_probability = sigmoid(logit)          converted ~ Bernoulli(conversion_probability)

Postal code, message length and whether the phone's region matches the country have no effect (the model
should give them little weight). The ROC AUC of ``conversion_probability`` against ``converted`` (the
*ceiling*: no model of the fields can rank better on average) is about 0.8; the base rate about 24 %.

Command line::

    python -m pipelines.synthetic.history --rows 20000 --out history.parquet [--bigquery project.dataset.table]
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import phonenumbers
import pytz

from pipelines.synthetic.leads import WORK_DOMAINS, random_person

PROVIDER_WEIGHTS: dict[str, float] = {
    "meta_lead_ads": 30,
    "google_ads_lead_form": 18,
    "api": 10,
    "inbound_email": 10,
    "knowlarity_call": 8,
    "twilio_sms": 8,
    "csv_upload": 8,
    "twilio_voice": 8,
}
BASE_LOGIT = -3.8
PROVIDER_EFFECT: dict[str, float] = {
    "knowlarity_call": 1.6,
    "twilio_voice": 1.45,
    "api": 1.0,
    "twilio_sms": 0.8,
    "google_ads_lead_form": 0.5,
    "inbound_email": 0.3,
    "meta_lead_ads": 0.0,
    "csv_upload": -0.8,
}
INTENT_EFFECT = 0.7  # per intent phrase
PHONE_EFFECT = {"mobile": 1.0, "fixed": 0.3, "none": 0.0}
EMAIL_EFFECT = {"corporate": 0.8, "free": 0.0, "none": -0.15, "disposable": -1.9}
SOURCE_EFFECT = 0.55  # per source beyond the first
BUSINESS_HOURS_EFFECT = 0.65
TEST_EFFECT = -3.0
NOISE_SD = 0.5

DISPOSABLE_DOMAINS = ("mailinator.com", "guerrillamail.com", "yopmail.com")
VOICE_PROVIDERS = frozenset({"knowlarity_call", "twilio_sms", "twilio_voice"})
NEUTRAL_MESSAGES = (
    "Looking for a 3 bedroom home in {city}.",
    "Please send me more details about listings near {city}.",
    "Can someone call me back after 5pm?",
    "We are relocating to {city} next month.",
    "What are the HOA fees for this one?",
    "Saw your ad, tell me more.",
    "Is parking included?",
    "Do you have anything with a garden?",
)
# Each holds exactly one word of scoring.features.INTENT_WORDS (a unit test checks it).
INTENT_PHRASES = (
    "Ready to buy.",
    "What is the price?",
    "Can we set up a tour?",
    "I am pre-approved.",
    "Paying cash.",
    "I want to make an offer.",
    "Please call me today.",
    "This is urgent.",
    "Need a quote for the move.",
    "I am very interested.",
    "Could I visit this weekend?",
    "Need a mortgage advisor too.",
    "Call me back asap.",
)
_CITY_ZONES = {
    "New York": "America/New_York",
    "Boston": "America/New_York",
    "Miami": "America/New_York",
    "Chicago": "America/Chicago",
    "Austin": "America/Chicago",
    "Denver": "America/Denver",
    "San Francisco": "America/Los_Angeles",
    "Seattle": "America/Los_Angeles",
}
_COUNTRY_ZONES = {"US": "America/New_York", "GB": "Europe/London", "IN": "Asia/Kolkata"}
# Relative frequency of each local hour 0..23 at which leads arrive.
_HOUR_WEIGHTS = (1, 1, 0.5, 0.5, 0.5, 1, 2, 3, 5, 7, 9, 10, 10, 9, 8, 7, 7, 8, 10, 10, 9, 7, 4, 2)
_FIXED_PREFIXES = {"GB": ("+44207946", "+44161496"), "IN": ("+91222", "+91112", "+91802")}


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _fixed_line(rng: random.Random, country: str) -> str:
    for _ in range(200):
        prefix = rng.choice(_FIXED_PREFIXES[country])
        digits = 13 - len(prefix)  # +44 and +91 numbers have 10 national digits
        number = prefix + "".join(rng.choice("0123456789") for _ in range(digits))
        parsed = phonenumbers.parse(number)
        if phonenumbers.is_valid_number(parsed) and phonenumbers.region_code_for_number(parsed) == country:
            return number
    raise RuntimeError(f"no valid {country} fixed line drawn in 200 tries")


def _message(rng: random.Random, city: str) -> tuple[str | None, int]:
    if rng.random() < 0.25:
        return None, 0
    k = rng.choices((0, 1, 2, 3), weights=(50, 25, 15, 10))[0]
    parts = [rng.choice(NEUTRAL_MESSAGES).format(city=city), *rng.sample(INTENT_PHRASES, k)]
    rng.shuffle(parts)
    return " ".join(parts), k


def _row(rng: random.Random, start: datetime, days: int) -> dict[str, Any]:
    person = random_person(rng)
    provider = rng.choices(tuple(PROVIDER_WEIGHTS), weights=tuple(PROVIDER_WEIGHTS.values()))[0]
    voice = provider in VOICE_PROVIDERS

    phone_p = 1.0 if voice else (0.6 if provider == "inbound_email" else 0.85)
    phone, phone_kind = None, "none"
    if rng.random() < phone_p:
        phone, phone_kind = person.phone, "mobile"  # GB/IN mobiles, US fixed-or-mobile
        if person.country in _FIXED_PREFIXES and rng.random() < 0.2:
            phone, phone_kind = _fixed_line(rng, person.country), "fixed"
        elif rng.random() < 0.04:
            other = rng.choice([c for c in ("US", "GB", "IN") if c != person.country])
            phone = random_person(rng, other).phone

    email, email_kind = None, "none"
    if rng.random() < (0.15 if voice else 0.9) or phone is None:
        email = person.email
        email_kind = "corporate" if email.rsplit("@", 1)[1] in WORK_DOMAINS else "free"
        if rng.random() < 0.07:
            email, email_kind = f"{email.rsplit('@', 1)[0]}@{rng.choice(DISPOSABLE_DOMAINS)}", "disposable"

    message, intent = _message(rng, person.city)
    sources = rng.choices((1, 2, 3, 4), weights=(60, 25, 10, 5))[0]
    is_test = rng.random() < 0.02

    zone = pytz.timezone(_CITY_ZONES.get(person.city) or _COUNTRY_ZONES[person.country])
    day = (start + timedelta(days=rng.randrange(days))).date()
    hour = rng.choices(range(24), weights=_HOUR_WEIGHTS)[0]
    local = zone.localize(datetime(day.year, day.month, day.day, hour, rng.randrange(60), rng.randrange(60)))
    business = local.weekday() < 5 and 9 <= local.hour <= 17

    logit = (
        BASE_LOGIT
        + PROVIDER_EFFECT[provider]
        + INTENT_EFFECT * intent
        + PHONE_EFFECT[phone_kind]
        + EMAIL_EFFECT[email_kind]
        + SOURCE_EFFECT * (sources - 1)
        + (BUSINESS_HOURS_EFFECT if business else 0.0)
        + (TEST_EFFECT if is_test else 0.0)
        + rng.gauss(0.0, NOISE_SD)
    )
    probability = sigmoid(logit)
    return {
        "lead_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "primary_provider": provider,
        "first_seen_at": local.astimezone(UTC),
        "phone_e164": phone,
        "email": email,
        "full_name": person.full_name,
        "country": person.country if rng.random() < 0.95 else None,
        "postal_code": person.postal_code if rng.random() < 0.85 else None,
        "city": person.city,
        "message": message,
        "is_test": is_test,
        "sources_count": sources,
        "conversion_probability": probability,
        "converted": int(rng.random() < probability),
    }


def generate_history(
    n: int, seed: int = 0, start: datetime = datetime(2026, 1, 1, tzinfo=UTC), days: int = 300
) -> pd.DataFrame:
    """``n`` leads first seen over ``days`` days from ``start``, sorted by ``first_seen_at``; deterministic per seed."""
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    rng = random.Random(seed)
    rows = [_row(rng, start, days) for _ in range(n)]
    df = pd.DataFrame(rows)
    if n:
        df["first_seen_at"] = pd.to_datetime(df["first_seen_at"], utc=True)
        df = df.sort_values("first_seen_at", kind="stable").reset_index(drop=True)
    return df


# --------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------


def write_parquet(df: pd.DataFrame, path: str) -> str:
    """Write the history to Parquet (timestamps as UTC microseconds). Returns the path."""
    df.to_parquet(path, index=False, coerce_timestamps="us", allow_truncated_timestamps=True)
    return path


def bigquery_schema():
    """The BigQuery columns of a history table."""
    from google.cloud import bigquery

    f = bigquery.SchemaField
    return [
        f("lead_id", "STRING", "REQUIRED"),
        f("primary_provider", "STRING", "REQUIRED"),
        f("first_seen_at", "TIMESTAMP", "REQUIRED"),
        f("phone_e164", "STRING"),
        f("email", "STRING"),
        f("full_name", "STRING"),
        f("country", "STRING"),
        f("postal_code", "STRING"),
        f("city", "STRING"),
        f("message", "STRING"),
        f("is_test", "BOOLEAN"),
        f("sources_count", "INTEGER"),
        f("conversion_probability", "FLOAT"),
        f("converted", "INTEGER"),
    ]


def _json_value(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NaT:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return value


def load_bigquery(df: pd.DataFrame, table: str, client=None, *, batch_rows: int = 2000, progress=None) -> int:
    """Append the history to BigQuery ``project.dataset.table`` (dataset and table created when missing).

    Rows go in with ``insert_rows_json`` in batches (what the bqemulator accepts; real BigQuery takes it
    too). Returns the number of rows sent; raises ``RuntimeError`` with BigQuery's errors if any row is rejected.
    """
    from google.api_core.exceptions import Conflict, NotFound
    from google.cloud import bigquery

    from schemas.bigquery import client_for

    project, dataset, _table = table.split(".")
    client = client or client_for(project)
    try:
        client.get_dataset(f"{project}.{dataset}")
    except NotFound:
        try:
            client.create_dataset(bigquery.Dataset(f"{project}.{dataset}"))
        except Conflict:
            pass
    try:
        client.get_table(table)
    except NotFound:
        definition = bigquery.Table(table, schema=bigquery_schema())
        definition.description = "Lead history with conversion labels (pipelines.synthetic.history)."
        try:
            client.create_table(definition)
        except Conflict:
            pass
    columns = [field.name for field in bigquery_schema()]
    records = df.reindex(columns=columns).to_dict("records")
    sent = 0
    for i in range(0, len(records), batch_rows):
        batch = [{k: _json_value(v) for k, v in r.items()} for r in records[i : i + batch_rows]]
        errors = client.insert_rows_json(table, batch, row_ids=[r["lead_id"] for r in batch])
        if errors:
            raise RuntimeError(f"BigQuery rejected rows of {table}: {errors[:3]}")
        sent += len(batch)
        if progress:
            progress(f"loaded {sent}/{len(records)} rows into {table}")
    return sent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.synthetic.history", description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--start", default="2026-01-01", help="first day (UTC), ISO date")
    parser.add_argument("--days", type=int, default=300)
    parser.add_argument("--out", help="Parquet file to write")
    parser.add_argument("--bigquery", metavar="PROJECT.DATASET.TABLE", help="also append the rows to this table")
    args = parser.parse_args(argv)
    if not args.out and not args.bigquery:
        parser.error("give --out and/or --bigquery")
    start = datetime.fromisoformat(args.start).replace(tzinfo=UTC)
    t0 = time.monotonic()
    print(f"generating {args.rows} leads (seed {args.seed}) ...", file=sys.stderr)
    df = generate_history(args.rows, seed=args.seed, start=start, days=args.days)
    print(
        f"generated {len(df)} leads in {time.monotonic() - t0:.1f}s: conversion rate {df['converted'].mean():.3f}, "
        f"{df['first_seen_at'].min()} .. {df['first_seen_at'].max()}",
        file=sys.stderr,
    )
    if args.out:
        write_parquet(df, args.out)
        print(f"wrote {args.out}", file=sys.stderr)
    if args.bigquery:
        sent = load_bigquery(df, args.bigquery, progress=lambda m: print(m, file=sys.stderr))
        print(f"loaded {sent} rows into {args.bigquery}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
