"""Lead-scoring features, defined once: the trainer (``scoring.train``), the pipeline's model handlers
and the BentoML service all call :func:`features_for` / :func:`vector` from here.

A lead is any object or mapping with the fields of ``schemas.records.Lead`` (a ``Lead`` dataclass, a
dict, a pandas row) plus an optional ``sources_count`` (how many sources sent the person, default 1).
Missing or null fields never fail: the feature takes the value documented in :data:`DEFAULTS`.

=============================  =====================================================================  =======
feature                        meaning                                                                default
=============================  =====================================================================  =======
provider                       categorical: index of ``primary_provider`` in :data:`PROVIDERS`        8 (other)
                               (the 8 parsers of ``transforms.parsers.registry.PARSERS``, then other)
local_hour                     hour (0-23) of ``first_seen_at`` in the lead's time zone               12
local_weekday                  weekday (0 = Monday .. 6 = Sunday) of ``first_seen_at``, same zone     2
has_phone                      1 when ``phone_e164`` is a parseable phone number                      0
phone_type                     categorical: index in :data:`PHONE_TYPES` of ``phonenumbers.number_    6 (unknown)
                               type`` (mobile, fixed, fixed_or_mobile, voip, toll_free, other,
                               unknown); no or unparseable phone -> unknown
phone_region_matches_country   1 when the number's region equals ``country`` (both known)             0
has_email                      1 when ``email`` looks like ``local@domain.tld``                       0
email_domain_class             categorical: index in :data:`EMAIL_CLASSES` (none, free, corporate,    0 (none)
                               disposable); free = :data:`FREE_EMAIL_DOMAINS`, disposable = the
                               ``disposable_email_domains`` blocklist (the domain or a parent
                               domain), corporate = any other domain; free wins over the blocklist
message_length                 characters in ``message`` (stripped)                                   0
intent_words                   occurrences of :data:`INTENT_WORDS` among the message's words          0
sources_count                  ``sources_count`` (at least 1)                                         1
has_postal_code                1 when ``postal_code`` is not blank                                    0
is_test                        1 for provider test leads                                              0
=============================  =====================================================================  =======

The lead's time zone is the first zone ``phonenumbers.timezone.time_zones_for_number`` gives for the
phone number; without a usable one, the first zone of ``country`` (``pytz.country_timezones``); else UTC.
A number spanning several zones takes the country's first zone when it is one of them (:func:`lead_zone`:
a US toll-free number would otherwise land in America/Adak, the alphabetically first).
A naive ``first_seen_at`` is taken as UTC; ISO-8601 strings are accepted. Zones come from ``pytz``
(its bundled database, so workers without system tz data compute the same hours).

Every value is a float; categorical features hold integer codes whose levels are
:data:`CATEGORY_LEVELS` (fixed lists: a code never changes meaning when a level is absent from the
training data). Per-number and per-domain lookups are cached (``functools.lru_cache``), so a lead
costs a few microseconds once its number and domain have been seen.

:func:`fallback_score` is the rule-based score used when the model service is unavailable and
:func:`priority_tier` maps a score to hot / warm / cold.
"""

from __future__ import annotations

import functools
import math
import numbers
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import phonenumbers
import pytz
from disposable_email_domains import blocklist as _DISPOSABLE_BLOCKLIST
from phonenumbers import PhoneNumberType
from phonenumbers import timezone as _pn_timezone

FEATURE_VERSION = "1"

# The providers of transforms.parsers.registry.PARSERS (a unit test keeps the two in step), then "other".
PROVIDERS: tuple[str, ...] = (
    "meta_lead_ads",
    "google_ads_lead_form",
    "knowlarity_call",
    "twilio_sms",
    "twilio_voice",
    "api",
    "csv_upload",
    "inbound_email",
    "other",
)
PHONE_TYPES: tuple[str, ...] = ("mobile", "fixed", "fixed_or_mobile", "voip", "toll_free", "other", "unknown")
EMAIL_CLASSES: tuple[str, ...] = ("none", "free", "corporate", "disposable")

FEATURE_NAMES: tuple[str, ...] = (
    "provider",
    "local_hour",
    "local_weekday",
    "has_phone",
    "phone_type",
    "phone_region_matches_country",
    "has_email",
    "email_domain_class",
    "message_length",
    "intent_words",
    "sources_count",
    "has_postal_code",
    "is_test",
)
CATEGORICAL_FEATURES: tuple[str, ...] = ("provider", "phone_type", "email_domain_class")
CATEGORY_LEVELS: dict[str, tuple[str, ...]] = {
    "provider": PROVIDERS,
    "phone_type": PHONE_TYPES,
    "email_domain_class": EMAIL_CLASSES,
}

DEFAULTS: dict[str, float] = {
    "provider": float(PROVIDERS.index("other")),
    "local_hour": 12.0,  # midday: neither business-hours edge
    "local_weekday": 2.0,  # Wednesday
    "has_phone": 0.0,
    "phone_type": float(PHONE_TYPES.index("unknown")),
    "phone_region_matches_country": 0.0,
    "has_email": 0.0,
    "email_domain_class": float(EMAIL_CLASSES.index("none")),
    "message_length": 0.0,
    "intent_words": 0.0,
    "sources_count": 1.0,
    "has_postal_code": 0.0,
    "is_test": 0.0,
}

# (minimum, maximum, must be an integer) for validate(); None = unbounded.
_RANGES: dict[str, tuple[float | None, float | None, bool]] = {
    "provider": (0, len(PROVIDERS) - 1, True),
    "local_hour": (0, 23, True),
    "local_weekday": (0, 6, True),
    "has_phone": (0, 1, True),
    "phone_type": (0, len(PHONE_TYPES) - 1, True),
    "phone_region_matches_country": (0, 1, True),
    "has_email": (0, 1, True),
    "email_domain_class": (0, len(EMAIL_CLASSES) - 1, True),
    "message_length": (0, None, False),
    "intent_words": (0, None, False),
    "sources_count": (0, None, False),
    "has_postal_code": (0, 1, True),
    "is_test": (0, 1, True),
}

FREE_EMAIL_DOMAINS: frozenset[str] = frozenset(
    """
    gmail.com googlemail.com yahoo.com yahoo.co.in yahoo.co.uk ymail.com rocketmail.com outlook.com hotmail.com
    hotmail.co.uk live.com msn.com icloud.com me.com mac.com aol.com proton.me protonmail.com gmx.com gmx.de
    gmx.net web.de yandex.com yandex.ru mail.com mail.ru zoho.com rediffmail.com btinternet.com sky.com
    virginmedia.com comcast.net verizon.net att.net sbcglobal.net qq.com 163.com
    """.split()  # noqa: SIM905 (a word list reads better as text)
)

INTENT_WORDS: frozenset[str] = frozenset(
    """
    buy buying purchase price pricing quote tour visit viewing schedule today asap urgent urgently interested
    mortgage pre-approved preapproved cash offer deposit available
    """.split()  # noqa: SIM905 (a word list reads better as text)
)
_WORD = re.compile(r"[a-z0-9]+(?:['-][a-z0-9]+)*")

_PHONE_TYPE_CODES: dict[int, float] = {
    PhoneNumberType.MOBILE: float(PHONE_TYPES.index("mobile")),
    PhoneNumberType.FIXED_LINE: float(PHONE_TYPES.index("fixed")),
    PhoneNumberType.FIXED_LINE_OR_MOBILE: float(PHONE_TYPES.index("fixed_or_mobile")),
    PhoneNumberType.VOIP: float(PHONE_TYPES.index("voip")),
    PhoneNumberType.TOLL_FREE: float(PHONE_TYPES.index("toll_free")),
    PhoneNumberType.UNKNOWN: float(PHONE_TYPES.index("unknown")),
}
_PHONE_OTHER = float(PHONE_TYPES.index("other"))
_PROVIDER_CODES = {name: float(i) for i, name in enumerate(PROVIDERS)}
_TRUE_STRINGS = frozenset({"true", "1", "yes", "y", "t"})


# --------------------------------------------------------------------------------------
# Field access and cleaning (Lead dataclasses, dicts and pandas rows alike)
# --------------------------------------------------------------------------------------


def _getter(lead: Any):
    if isinstance(lead, Mapping):
        return lead.get
    get = getattr(lead, "get", None)
    if callable(get) and hasattr(lead, "keys"):  # pandas Series and other mapping-likes
        return get
    return lambda name, default=None: getattr(lead, name, default)


def _is_missing(value: Any) -> bool:
    # NaN and pandas NaT are the only values not equal to themselves.
    return value is None or value != value


def _text(value: Any) -> str | None:
    if _is_missing(value):
        return None
    text = str(value).strip()
    return text or None


def _flag(value: Any) -> float:
    if _is_missing(value):
        return 0.0
    if isinstance(value, str):
        return 1.0 if value.strip().lower() in _TRUE_STRINGS else 0.0
    return 1.0 if bool(value) else 0.0


def _count(value: Any, default: float = 1.0) -> float:
    if _is_missing(value):
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        return default
    return max(1.0, number) if math.isfinite(number) else default


def _utc(value: Any) -> datetime | None:
    if _is_missing(value):
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            return None
    if not isinstance(value, datetime):
        return None
    if type(value) is not datetime and hasattr(value, "to_pydatetime"):
        value = value.to_pydatetime()  # pandas Timestamp: its astimezone is several times slower
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


# --------------------------------------------------------------------------------------
# Cached lookups
# --------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=65_536)
def phone_info(phone: str) -> tuple[float, float, str | None, tuple[str, ...]]:
    """(has_phone, phone_type code, region code, time zones) of a phone number, cached."""
    try:
        number = phonenumbers.parse(phone, None)
    except phonenumbers.NumberParseException:
        return 0.0, DEFAULTS["phone_type"], None, ()
    code = _PHONE_TYPE_CODES.get(phonenumbers.number_type(number), _PHONE_OTHER)
    region = phonenumbers.region_code_for_number(number)
    zones = tuple(z for z in _pn_timezone.time_zones_for_number(number) if z != "Etc/Unknown")
    return 1.0, code, region, zones


@functools.lru_cache(maxsize=4096)
def lead_zone(zones: tuple[str, ...], country: str | None) -> str:
    """The time zone name of a lead: the number's first zone, else the country's first zone, else UTC.

    A number that spans several zones (a US toll-free number, a GB mobile: Guernsey, Isle of Man, Jersey,
    London) takes the country's first zone when that is one of them (America/New_York, Europe/London).
    """
    country_zone = _country_zone(country) if country else None
    if zones:
        return country_zone if (len(zones) > 1 and country_zone in zones) else zones[0]
    return country_zone or "UTC"


@functools.lru_cache(maxsize=512)
def _country_zone(country: str) -> str | None:
    try:
        zones = pytz.country_timezones(country)
    except KeyError:
        return None
    return zones[0] if zones else None


@functools.lru_cache(maxsize=1024)
def _zone(name: str | None):
    if not name:
        return pytz.UTC
    try:
        return pytz.timezone(name)
    except pytz.UnknownTimeZoneError:
        return pytz.UTC


@functools.lru_cache(maxsize=65_536)
def email_domain_class(email: str) -> float:
    """The ``email_domain_class`` code of an address (none, free, corporate, disposable), cached per address."""
    local, at, domain = email.strip().lower().rpartition("@")
    return _domain_class(domain) if (at and local and "." in domain.strip(".")) else DEFAULTS["email_domain_class"]


@functools.lru_cache(maxsize=65_536)
def _domain_class(domain: str) -> float:
    domain = domain.strip(".")
    if domain in FREE_EMAIL_DOMAINS:
        return float(EMAIL_CLASSES.index("free"))
    parts = domain.split(".")
    for i in range(len(parts) - 1):  # the domain itself, then each parent domain (sub.mailinator.com)
        if ".".join(parts[i:]) in _DISPOSABLE_BLOCKLIST:
            return float(EMAIL_CLASSES.index("disposable"))
    return float(EMAIL_CLASSES.index("corporate"))


def intent_word_count(message: str | None) -> int:
    """How many words of ``message`` are in :data:`INTENT_WORDS` (every occurrence counts)."""
    if not message:
        return 0
    return sum(1 for word in _WORD.findall(message.lower()) if word in INTENT_WORDS)


# --------------------------------------------------------------------------------------
# Features
# --------------------------------------------------------------------------------------


def features_for(lead: Any) -> dict[str, float]:
    """Every feature of :data:`FEATURE_NAMES` for one lead (dataclass, mapping or pandas row)."""
    get = _getter(lead)
    features = dict(DEFAULTS)

    provider = _text(get("primary_provider"))
    features["provider"] = _PROVIDER_CODES.get(provider, DEFAULTS["provider"]) if provider else DEFAULTS["provider"]

    country = _text(get("country"))
    country = country.upper() if country else None
    phone = _text(get("phone_e164"))
    zones: tuple[str, ...] = ()
    if phone:
        has_phone, phone_type, region, zones = phone_info(phone)
        features["has_phone"] = has_phone
        features["phone_type"] = phone_type
        features["phone_region_matches_country"] = 1.0 if (region and country and region == country) else 0.0

    seen = _utc(get("first_seen_at"))
    if seen is not None:
        local = seen.astimezone(_zone(lead_zone(zones, country)))
        features["local_hour"] = float(local.hour)
        features["local_weekday"] = float(local.weekday())

    email = _text(get("email"))
    if email:
        klass = email_domain_class(email)
        features["email_domain_class"] = klass
        features["has_email"] = 0.0 if klass == DEFAULTS["email_domain_class"] else 1.0

    message = _text(get("message"))
    if message:
        features["message_length"] = float(len(message))
        features["intent_words"] = float(intent_word_count(message))

    features["sources_count"] = _count(get("sources_count"))
    features["has_postal_code"] = 1.0 if _text(get("postal_code")) else 0.0
    features["is_test"] = _flag(get("is_test"))
    return features


def vector(features: Mapping[str, Any]) -> list[float]:
    """The features as floats in :data:`FEATURE_NAMES` order; missing (or null) ones take :data:`DEFAULTS`."""
    out = []
    for name in FEATURE_NAMES:
        value = features.get(name)
        out.append(DEFAULTS[name] if _is_missing(value) else float(value))
    return out


def validate(features: Any) -> list[str]:
    """Readable problems with a feature mapping (empty when it can be scored). Missing names are fine."""
    if not isinstance(features, Mapping):
        return [f"features must be an object mapping feature names to numbers, not {type(features).__name__}"]
    problems = []
    for name, value in features.items():
        if name not in _RANGES:
            problems.append(f"unknown feature {name!r} (known: {', '.join(FEATURE_NAMES)})")
            continue
        if value is None:
            continue  # takes the default
        if not isinstance(value, numbers.Real):
            problems.append(f"{name} must be a number, not {type(value).__name__} {value!r}")
            continue
        if not math.isfinite(value):
            problems.append(f"{name} must be finite, not {value!r}")
            continue
        low, high, integer = _RANGES[name]
        if integer and value != int(value):
            problems.append(f"{name} must be a whole number, not {value!r}")
        elif (low is not None and value < low) or (high is not None and value > high):
            bounds = f"{low}..{high}" if high is not None else f">= {low}"
            levels = CATEGORY_LEVELS.get(name)
            hint = f" (codes of {', '.join(levels)})" if levels else ""
            problems.append(f"{name} must be in {bounds}{hint}, not {value!r}")
    return problems


# --------------------------------------------------------------------------------------
# Fallback score and tiers
# --------------------------------------------------------------------------------------

#: Base of :func:`fallback_score` by provider: people who call or text in convert best, uploads worst.
FALLBACK_PROVIDER_BASE: dict[str, float] = {
    "knowlarity_call": 0.40,
    "twilio_voice": 0.40,
    "twilio_sms": 0.30,
    "api": 0.30,
    "google_ads_lead_form": 0.25,
    "inbound_email": 0.25,
    "meta_lead_ads": 0.20,
    "csv_upload": 0.10,
    "other": 0.15,
}


def fallback_score(features: Mapping[str, Any]) -> float:
    """A rule-based score in [0, 1] for when the model service fails.

    ``base(provider)`` (:data:`FALLBACK_PROVIDER_BASE`)
    + 0.15 for a mobile (or fixed-or-mobile) phone, + 0.05 for any other phone
    + 0.10 for a corporate e-mail, + 0.03 for a free one, - 0.20 for a disposable one
    + 0.05 per intent word (at most 0.15) + 0.05 per extra source (at most 0.15)
    + 0.03 for a postal code; a test lead gets a tenth of that (so at most 0.1).
    Missing features take :data:`DEFAULTS`; the result is clipped to [0, 1].
    """
    v = dict(zip(FEATURE_NAMES, vector(features), strict=True))
    provider_code = int(v["provider"]) if 0 <= v["provider"] < len(PROVIDERS) else len(PROVIDERS) - 1
    score = FALLBACK_PROVIDER_BASE[PROVIDERS[provider_code]]
    if v["has_phone"]:
        mobile = v["phone_type"] in (PHONE_TYPES.index("mobile"), PHONE_TYPES.index("fixed_or_mobile"))
        score += 0.15 if mobile else 0.05
    email_class = v["email_domain_class"]
    if email_class == EMAIL_CLASSES.index("corporate"):
        score += 0.10
    elif email_class == EMAIL_CLASSES.index("free"):
        score += 0.03
    elif email_class == EMAIL_CLASSES.index("disposable"):
        score -= 0.20
    score += min(0.15, 0.05 * max(0.0, v["intent_words"]))
    score += min(0.15, 0.05 * max(0.0, v["sources_count"] - 1))
    score += 0.03 if v["has_postal_code"] else 0.0
    score = min(1.0, max(0.0, score))
    if v["is_test"]:
        score *= 0.1
    return round(score, 6)


def priority_tier(score: float, hot: float = 0.6, warm: float = 0.3) -> str:
    """``"hot"`` when ``score >= hot``, ``"warm"`` when ``score >= warm``, else ``"cold"``."""
    if warm > hot:
        raise ValueError(f"warm threshold {warm} is above hot threshold {hot}")
    if score >= hot:
        return "hot"
    if score >= warm:
        return "warm"
    return "cold"
