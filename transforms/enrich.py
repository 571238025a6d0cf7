"""Enrichment: what the reference data and offline databases say about a lead.

* source registry: whether the primary source is verified, and its reliability weight;
* postal geography: US ZIP -> city, state, latitude/longitude (``zipcodes``);
* phone metadata: number type, original carrier, geographic description and time zones (``phonenumbers``);
* e-mail domain class: free, corporate or disposable (``scoring.features``: the same rule the model uses).

``enrich_lead`` is pure; the Beam stage feeds it the reference data either as a side input (bounded runs,
and the PeriodicImpulse-refreshed side input on Dataflow) or from a ``ReferenceCache`` reloaded on a schedule
in the worker (streaming on the DirectRunner, whose streaming mode cannot run PeriodicImpulse; see README).
Sources the registry does not know are registered once each (``source_registrations``) and reported.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import re
import threading
from datetime import datetime

import apache_beam as beam
import phonenumbers
from apache_beam.metrics import Metrics
from apache_beam.transforms import trigger, window
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec
from phonenumbers import carrier, geocoder, timezone

from schemas.derive import evolve
from schemas.records import Lead, LeadEvent, SourceRegistration
from scoring.features import _PHONE_OTHER, _PHONE_TYPE_CODES, EMAIL_CLASSES, PHONE_TYPES, email_domain_class
from transforms.messages import utcnow
from transforms.reference import ReferenceCache, ReferenceData, load_reference

_log = logging.getLogger(__name__)
_ZIP5 = re.compile(r"^(\d{5})(?:-?\d{4})?$")


@functools.cache
def _zip_index() -> dict[str, tuple[str, str, float, float]]:
    import zipcodes

    out = {}
    for z in zipcodes.list_all():
        try:
            out.setdefault(z["zip_code"], (z["city"], z["state"], float(z["lat"]), float(z["long"])))
        except (KeyError, TypeError, ValueError):
            continue
    return out


def zip_geo(country: str | None, postal_code: str | None) -> tuple[str, str, float, float] | None:
    """(city, state, lat, lon) of a US ZIP (ZIP+4 accepted), or None."""
    if not postal_code or (country or "US") != "US":
        return None
    m = _ZIP5.match(postal_code.strip())
    return _zip_index().get(m.group(1)) if m else None


_MOBILE_TYPES = (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE,
                 phonenumbers.PhoneNumberType.PAGER)
_GEO_TYPES = (phonenumbers.PhoneNumberType.FIXED_LINE, phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE,
              phonenumbers.PhoneNumberType.MOBILE)


@functools.lru_cache(maxsize=65_536)
def phone_facts(phone_e164: str) -> tuple[str, str | None, str | None, tuple[str, ...], str | None]:
    """(number type, carrier, geographic description, time zones, region code) of a valid E.164 number.

    One parse, one number-type and one region lookup (phonenumbers' convenience functions each repeat
    them: 4 type and 6 region lookups per number; figures: docs/performance.md, "Profile: the routing stage")."""
    number = phonenumbers.parse(phone_e164, None)
    kind = phonenumbers.number_type(number)
    region = phonenumbers.region_code_for_number(number)
    type_name = PHONE_TYPES[int(_PHONE_TYPE_CODES.get(kind, _PHONE_OTHER))]
    carrier_name = carrier.name_for_valid_number(number, "en") or None if kind in _MOBILE_TYPES else None
    description = geocoder.description_for_valid_number(number, "en") or None if kind in _GEO_TYPES else None
    zones = tuple(z for z in timezone.time_zones_for_geographical_number(number) if z != "Etc/Unknown") \
        if kind in _GEO_TYPES else tuple(z for z in timezone.time_zones_for_number(number) if z != "Etc/Unknown")
    return type_name, carrier_name, description, zones, region


def phone_metadata(phone_e164: str) -> tuple[str, str | None, str | None, tuple[str, ...]]:
    """(number type, carrier, geographic description, time zones) of a valid E.164 number."""
    return phone_facts(phone_e164)[:4]


def enrichment(lead: Lead, ref: ReferenceData, unverified_reliability: float) -> dict:
    """The enrichment columns of ``lead`` (field -> value) from ``ref`` and the offline databases."""
    source = ref.sources.sources.get(lead.primary_source)
    geo = zip_geo(lead.country, lead.postal_code)
    phone = phone_metadata(lead.phone_e164) if lead.phone_e164 else (None, None, None, ())
    return dict(
        source_verified=source is not None,
        source_reliability=source.reliability if source is not None else unverified_reliability,
        geo_city=geo[0] if geo else None, geo_state=geo[1] if geo else None,
        latitude=geo[2] if geo else None, longitude=geo[3] if geo else None,
        phone_type=phone[0], phone_carrier=phone[1], phone_region=phone[2], phone_timezones=list(phone[3]),
        email_domain_class=EMAIL_CLASSES[int(email_domain_class(lead.email))] if lead.email else None,
    )


def enrich_lead(lead: Lead, ref: ReferenceData, unverified_reliability: float) -> Lead:
    """The lead with every enrichment column filled from ``ref`` and the offline databases."""
    return dataclasses.replace(lead, **enrichment(lead, ref, unverified_reliability))


def registration_for(event: LeadEvent, reliability: float, now: datetime) -> SourceRegistration:
    kind, _, rest = event.source_id.partition(":")
    display = f"Unverified {kind} source {rest}" if rest else f"Unverified source {event.source_id}"
    return SourceRegistration(
        source_id=event.source_id, provider=event.provider, display_name=display, verified=False,
        reliability=reliability, first_message_id=event.message_id, first_seen_at=event.event_time,
        registered_at=now)


class RegisterSourceDoFn(beam.DoFn):
    """Keyed by source id: the first event of a source unknown to the registry registers it, once."""

    SEEN = ReadModifyWriteStateSpec("registered", beam.coders.BooleanCoder())

    def __init__(self, reliability: float):
        self.reliability = reliability
        self.registered = Metrics.counter("enrich", "sources_registered")

    def process(self, keyed, seen=beam.DoFn.StateParam(SEEN)):
        source_id, event = keyed
        if seen.read():
            return
        seen.write(True)
        self.registered.inc()
        # a sender's domain can name a person: the log shows a hash, the source_registrations row the source
        _log.warning("registered unknown source sha256:%s (provider %s) as unverified; verify it in the registry "
                     "(table source_registrations)", hashlib.sha256(source_id.encode()).hexdigest()[:16],
                     event.provider)
        yield registration_for(event, self.reliability, utcnow())


class RegisterUnknownSources(beam.PTransform):
    """lead_events -> one SourceRegistration per source id the registry does not know (never dropped:
    their leads flow on with ``source_verified = false`` and the default reliability)."""

    def __init__(self, reliability: float):
        super().__init__()
        self.reliability = reliability

    def expand(self, events):
        return (
            events
            | "Unverified" >> beam.Filter(lambda e: not e.source_verified)
            | "KeyBySource" >> beam.Map(lambda e: (e.source_id, e))
            | "RegisterOnce" >> beam.ParDo(RegisterSourceDoFn(self.reliability))
        )


# --------------------------------------------------------------------------------------
# Reference data in the pipeline, and the Enrich stage
# --------------------------------------------------------------------------------------


class ReferenceConfig:
    """Where reference data comes from and how often it is reloaded (picklable; loads lazily)."""

    def __init__(self, location: str | None = None, source_registry: str | None = None,
                 refresh_seconds: float = 0.0, unverified_reliability: float = 0.3):
        self.location, self.source_registry = location, source_registry
        self.refresh_seconds, self.unverified_reliability = refresh_seconds, unverified_reliability

    def load(self, _=None) -> ReferenceData:
        return load_reference(self.location, self.source_registry)

    def cache(self) -> ReferenceCache:
        """The worker process's cache for this configuration, shared by every DoFn instance (runners may
        create instances per bundle; the data must not be reloaded for each)."""
        key = (self.location, self.source_registry, self.refresh_seconds)
        with _CACHES_LOCK:
            if key not in _CACHES:
                _CACHES[key] = ReferenceCache(self.location, self.source_registry, self.refresh_seconds)
            return _CACHES[key]


_CACHES: dict[tuple, ReferenceCache] = {}
_CACHES_LOCK = threading.Lock()


class ReferenceSideInput(beam.PTransform):
    """The reference data as a singleton side input.

    ``periodic=False``: loaded once (bounded runs). ``periodic=True``: the slowly-updating global-window
    side input: PeriodicImpulse every ``refresh_seconds`` reloads the tables and a per-element trigger
    publishes each new version (the pattern Dataflow serves; the DirectRunner's streaming mode cannot run
    PeriodicImpulse, so local streaming uses ``ReferenceCache`` in the workers instead)."""

    def __init__(self, config: ReferenceConfig, periodic: bool):
        super().__init__()
        self.config, self.periodic = config, periodic

    def expand(self, pbegin):
        if not self.periodic:
            return pbegin | "Once" >> beam.Impulse() | "Load" >> beam.Map(self.config.load)
        from apache_beam.transforms.periodicsequence import PeriodicImpulse

        return (
            pbegin
            | "Every" >> PeriodicImpulse(fire_interval=self.config.refresh_seconds)
            | "Load" >> beam.Map(self.config.load)
            | "Latest" >> beam.WindowInto(window.GlobalWindows(), trigger=trigger.Repeatedly(trigger.AfterCount(1)),
                                          accumulation_mode=trigger.AccumulationMode.DISCARDING)
        )


class ReferenceDoFn(beam.DoFn):
    """Gets the reference data from the side input when there is one, else from a worker cache."""

    def __init__(self, config: ReferenceConfig):
        self.config = config
        self._cache: ReferenceCache | None = None

    def setup(self):
        self._cache = self.config.cache()

    def reference(self, side: ReferenceData | None) -> ReferenceData:
        return side if side is not None else self._cache.get()


def reference_side_inputs(inputs: dict[str, beam.PCollection]) -> dict[str, beam.pvalue.AsSingleton]:
    """The ``ref`` side input of a stage's DoFns when the graph provides the reference data as a PCollection
    (``inputs["reference"]``: bounded runs, Dataflow); none when workers read it from their cache."""
    return {"ref": beam.pvalue.AsSingleton(inputs["reference"])} if "reference" in inputs else {}


class EnrichDoFn(ReferenceDoFn):
    """Lead -> the lead with its enrichment columns."""

    def process(self, lead: Lead, ref=None):
        yield evolve(lead, **enrichment(lead, self.reference(ref), self.config.unverified_reliability))


class EnrichLeads(beam.PTransform):
    """``{"leads": ..., "reference": ... (optional)}`` -> leads with source, geography, phone and e-mail facts."""

    def __init__(self, config: ReferenceConfig):
        super().__init__()
        self.config = config

    def expand(self, inputs):
        return inputs["leads"] | "Enrich" >> beam.ParDo(EnrichDoFn(self.config), **reference_side_inputs(inputs))
