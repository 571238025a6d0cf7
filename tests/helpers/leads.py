"""Builders for lead test data: NormalizedLead (what dedup reads) and Lead records (what routing reads)."""

from datetime import UTC, datetime, timedelta

from schemas.records import Lead
from transforms.normalize import NormalizedLead

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
WED_15_UTC = datetime(2026, 11, 18, 15, 0, tzinfo=UTC)  # Wednesday: 10:00 in New York


def lead(unit_id: str, key: str = "phone:+14155550123", source: str = "meta_lead_ads", *,
         event_s: float = 0, publish_s: float | None = None, external_id: str | None = None,
         phone: str | None = None, email: str | None = None) -> NormalizedLead:
    """A normalized lead whose provider event time is T0+event_s and publish time T0+publish_s. Its contacts:
    ``phone`` and ``email`` when given, else the one ``key`` names (``phone:<E.164>`` or ``email:<address>``)."""
    publish_s = event_s if publish_s is None else publish_s
    if phone is None and email is None:
        kind, _, value = key.partition(":")
        phone, email = (value, None) if kind == "phone" else (None, value)
    key = f"phone:{phone}" if phone else f"email:{email}"
    return NormalizedLead(
        unit_id=unit_id, message_id=unit_id.split("#")[0], identity_key=key, provider=source, source_id=source,
        source_verified=True, external_id=external_id, event_time=T0 + timedelta(seconds=event_s),
        publish_time=T0 + timedelta(seconds=publish_s), phone_e164=phone, phone_status="valid" if phone else "missing",
        email=email, email_status="valid" if email else "missing", full_name="Test Person", first_name=None,
        last_name=None, country="US", postal_code=None, city=None, state=None, property_address=None,
        message=None, is_test=False, campaign_id=None, form_id=None, ad_id=None,
    )


def lead_record(lead_id: str = "L1", **kw) -> Lead:
    """A US Lead record first seen and processed at WED_15_UTC, without contact or location; ``kw`` sets fields."""
    base = dict(lead_id=lead_id, identity_key=f"phone:{lead_id}", phone_e164=None, email=None, full_name=None,
                first_name=None, last_name=None, country="US", postal_code=None, city=None, state=None,
                property_address=None, message=None, primary_source="meta_lead_ads",
                primary_provider="meta_lead_ads", first_seen_at=WED_15_UTC, is_test=False,
                processed_at=WED_15_UTC)
    base.update(kw)
    return Lead(**base)
