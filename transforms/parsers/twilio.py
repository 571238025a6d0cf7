"""Parsers for Twilio webhooks: inbound SMS (``twilio_sms``) and inbound calls (``twilio_voice``).

Twilio POSTs ``application/x-www-form-urlencoded`` bodies such as
``MessageSid=SM...&AccountSid=AC...&From=%2B14155550123&To=%2B14155550199&Body=Hi&FromCity=...``.
The caller's number (``From``) and the message or call id are required. Twilio's geographic
hints (``FromCountry``, ``FromState``, ``FromCity``, ``FromZip``) become the lead's location.
The webhooks carry no timestamp, so ``event_time`` stays None (the publish time is used).

Variants (https://www.twilio.com/docs/messaging/guides/webhook-request): a WhatsApp message comes from
``whatsapp:+14155550123`` (the channel prefix is dropped) with the sender's ``ProfileName`` (their name) and
``WaId``; an MMS carries ``NumMedia`` and ``MediaUrl{N}`` / ``MediaContentType{N}`` (kept in ``extra``); with
Advanced Opt-Out, ``OptOutType`` (STOP, START, HELP) is kept in ``extra``.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping

from transforms.parsers.base import DEFAULT_LIMITS, ParseConfig, ParseError, RawLead, clean, limit_exceeded

SMS_PROVIDER = "twilio_sms"
VOICE_PROVIDER = "twilio_voice"
MAX_FIELDS = DEFAULT_LIMITS.max_form_fields
MAX_CHARS = DEFAULT_LIMITS.max_form_chars

_LOCATION = {"country": "FromCountry", "state": "FromState", "city": "FromCity", "postal_code": "FromZip"}
_COMMON_EXTRAS = {"to": "To", "account_sid": "AccountSid", "direction": "Direction"}
_SMS_EXTRAS = {
    **_COMMON_EXTRAS,
    "num_media": "NumMedia",
    "sms_status": "SmsStatus",
    "messaging_service_sid": "MessagingServiceSid",
    "wa_id": "WaId",
    "opt_out_type": "OptOutType",
}
_VOICE_EXTRAS = {**_COMMON_EXTRAS, "call_status": "CallStatus", "caller_name": "CallerName",
                 "forwarded_from": "ForwardedFrom"}
CHANNEL_PREFIXES = ("whatsapp:",)  # Twilio's channel addresses: <channel>:<E.164>
MAX_MEDIA = 10  # Twilio delivers at most 10 media items per message


def too_many_fields(max_fields: int) -> ParseError:
    return limit_exceeded("max_form_fields", f"form body has more than {max_fields} fields")


def too_large(max_chars: int) -> ParseError:
    return limit_exceeded("max_form_chars", f"form body is longer than {max_chars} characters")


def parse_form(text: str, max_fields: int = MAX_FIELDS, max_chars: int = MAX_CHARS) -> dict[str, str]:
    """A form-encoded body as {field: first value}; anything else is ParseError('invalid_form'), more than
    ``max_fields`` fields ParseError('form_too_many_fields'), more than ``max_chars`` characters
    ParseError('form_too_large') (percent-decoding is Python code: a long body of escapes is slow)."""
    body = text.strip()
    if not body or body[0] in "{[<" or "=" not in body or "\n" in body:
        raise ParseError("invalid_form", "expected an application/x-www-form-urlencoded body")
    if len(body) > max_chars:
        raise too_large(max_chars)
    try:
        parsed = urllib.parse.parse_qs(
            body, keep_blank_values=True, strict_parsing=False, max_num_fields=max_fields
        )
    except ValueError:  # parse_qs's only ValueError without strict_parsing: more than max_num_fields
        raise too_many_fields(max_fields) from None
    if not parsed:
        raise ParseError("invalid_form", "form body has no fields")
    return {key: values[0] for key, values in parsed.items()}


def _required(form: Mapping[str, str], keys: tuple[str, ...], error_type: str) -> str:
    for key in keys:
        value = clean(form.get(key))
        if value is not None:
            return value
    raise ParseError(error_type, f"{' or '.join(keys)}: required")


def _address(value: str) -> str:
    for prefix in CHANNEL_PREFIXES:
        if value.lower().startswith(prefix):
            return value[len(prefix):]
    return value


def _lead(provider: str, form: Mapping[str, str], external_id: str, extras: Mapping[str, str]) -> RawLead:
    phone = _address(_required(form, ("From",), "missing_contact"))
    location = {attr: clean(form.get(key)) for attr, key in _LOCATION.items()}
    extra = {name: value for name, key in extras.items() if (value := clean(form.get(key))) is not None}
    if "to" in extra:
        extra["to"] = _address(extra["to"])
    return RawLead(
        provider=provider, external_id=external_id, event_time=None, phone=phone, extra=extra, **location
    )


def parse_sms(text: str, attributes: Mapping[str, str], config: ParseConfig) -> list[RawLead]:
    """An inbound-SMS webhook -> one RawLead with the SMS body as message."""
    form = parse_form(text, config.limits.max_form_fields, config.limits.max_form_chars)
    external_id = _required(form, ("MessageSid", "SmsSid"), "missing_field")
    lead = _lead(SMS_PROVIDER, form, external_id, _SMS_EXTRAS)
    lead.message = clean(form.get("Body"))
    lead.full_name = clean(form.get("ProfileName"))  # WhatsApp: the name the sender gave their profile
    for i in range(MAX_MEDIA):
        url = clean(form.get(f"MediaUrl{i}"))
        if url is None:
            break
        lead.extra[f"media_url_{i}"] = url
        if (kind := clean(form.get(f"MediaContentType{i}"))) is not None:
            lead.extra[f"media_type_{i}"] = kind
    return [lead]


def parse_voice(text: str, attributes: Mapping[str, str], config: ParseConfig) -> list[RawLead]:
    """An inbound-call webhook -> one RawLead (phone and location only)."""
    form = parse_form(text, config.limits.max_form_fields, config.limits.max_form_chars)
    external_id = _required(form, ("CallSid",), "missing_field")
    return [_lead(VOICE_PROVIDER, form, external_id, _VOICE_EXTRAS)]
