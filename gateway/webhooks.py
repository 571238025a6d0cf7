"""Provider webhooks: Meta Lead Ads, Google Ads lead forms, Twilio, Knowlarity and inbound e-mail.

Each endpoint first checks its provider's documented verification (gateway.verify), then publishes the body byte
for byte with the provider's pipeline name, and answers the way the provider expects. A verified request with an
odd body is published anyway (the pipeline dead-letters it with its payload): a signed delivery is never dropped
at the door. Nothing is published for a request that fails verification.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from twilio.twiml.messaging_response import MessagingResponse
from twilio.twiml.voice_response import VoiceResponse

from gateway import mail, verify
from gateway.door import Door, json_bytes, log, refused, unavailable
from gateway.meta_graph import LeadFetchFailed, LeadNotification, lead_notifications
from gateway.publishing import PublishFailed, new_request_id, rfc3339_utc
from schemas.derive import to_row
from transforms.messages import (
    GATEWAY_STAGE,
    GOOGLE_ADS_KEY_FIELD,
    META_FETCH_FAILED,
    JsonRejected,
    dead_letter,
    decode_json,
)
from transforms.parsers import google_ads_lead_form, inbound_email, knowlarity_call, meta_lead_ads, twilio

router = APIRouter(prefix="/webhooks", tags=["provider webhooks"])
SECRET_HEADER = "x-leadflow-secret"  # Knowlarity and e-mail: the shared secret (or the ``secret`` query parameter)
META_CONCURRENT_READS = 8  # a delivery may batch many leads: read a few at a time, not all at once (rate limits)
_RAW_BODY = {"requestBody": {"required": True, "content": {"application/octet-stream": {"schema": {}}}}}
# Twilio posts forms; its JSON-body webhooks are signed through the URL's bodySHA256
_FORM_BODY = {"requestBody": {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": {}},
                                                            "application/json": {"schema": {}}}}}


def _door(request: Request) -> Door:
    return request.app.state.door


def _decoded(body: bytes) -> object:
    try:
        return decode_json(body)
    except JsonRejected:
        return None


# --- Meta ---------------------------------------------------------------------------------------------------------

@router.get("/meta", response_class=PlainTextResponse,
            summary="Meta subscription handshake: echoes hub.challenge when hub.verify_token matches")
async def meta_handshake(request: Request):
    door = _door(request)
    challenge = verify.meta_handshake(request.query_params, door.config.meta_verify_token)
    if challenge is None:
        door.count("meta", "rejected_handshake")
        return PlainTextResponse("forbidden", status_code=403)
    door.count("meta", "handshake")
    return PlainTextResponse(challenge)


async def _meta_lead(door: Door, note: LeadNotification, request_id: str, received_at: str) -> str:
    """Fetch and publish one lead: ``published``, or ``kept`` when the lead could not be read and its notification
    went to the dead-letter topic with the reason. PublishFailed when either publish failed."""
    ids = {"leadgen_id": note.leadgen_id, "form_id": note.form_id, "page_id": note.page_id}
    try:
        lead = await door.graph.fetch_lead(note.leadgen_id)
    except LeadFetchFailed as e:
        door.count("meta", "fetch_failed", request_id)
        attrs = {k: v for k, v in ids.items() if v}
        dead = dead_letter(message_id=f"{request_id}:{note.leadgen_id}", data=note.envelope(),
                           attributes={"provider": meta_lead_ads.PROVIDER, **attrs}, publish_time=None,
                           provider=meta_lead_ads.PROVIDER, stage=GATEWAY_STAGE, error_type=META_FETCH_FAILED,
                           error_message=f"the lead could not be read from the Graph API: {e.reason}")
        await door.publish("meta", meta_lead_ads.PROVIDER, json_bytes(to_row(dead)), request_id, received_at,
                           topic=door.config.dead_letter_topic, stage=GATEWAY_STAGE, error_type=META_FETCH_FAILED,
                           message_id=dead.message_id, reason=e.reason, **ids)
        return "kept"
    await door.publish("meta", meta_lead_ads.PROVIDER, lead, request_id, received_at, **ids)
    return "published"


@router.post("/meta", summary="Meta leadgen webhook (X-Hub-Signature-256); each lead is read from the Graph API",
             openapi_extra=_RAW_BODY)
async def meta_webhook(request: Request):
    door, request_id, received_at = _door(request), new_request_id(), rfc3339_utc()
    body = await request.body()
    if not verify.meta_signature_valid(body, request.headers.get("x-hub-signature-256"), door.config.meta_app_secret):
        door.count("meta", "rejected_signature", request_id)
        return refused(403, "invalid_signature", request_id)
    notes = lead_notifications(_decoded(body))
    try:
        if not notes:  # signed, but no lead in it: the pipeline dead-letters it with the payload
            await door.publish("meta", meta_lead_ads.PROVIDER, body, request_id, received_at)
            door.count("meta", "accepted_odd_body", request_id)
            return JSONResponse({"request_id": request_id, "published": 1, "kept_for_retry": 0})
        reads = asyncio.Semaphore(META_CONCURRENT_READS)

        async def one(note: LeadNotification) -> str:
            async with reads:
                return await _meta_lead(door, note, request_id, received_at)

        outcomes = await asyncio.gather(*(one(n) for n in notes), return_exceptions=True)
    except PublishFailed:
        return unavailable(request_id)
    if any(isinstance(o, PublishFailed) for o in outcomes):
        return unavailable(request_id)  # Meta retries the whole delivery; leads already published become replays
    for o in outcomes:
        if isinstance(o, BaseException):
            raise o
    door.count("meta", "accepted", request_id)
    return JSONResponse({"request_id": request_id, "published": outcomes.count("published"),
                         "kept_for_retry": outcomes.count("kept")})


# --- Google Ads ---------------------------------------------------------------------------------------------------

@router.post("/google-ads", summary="Google Ads lead form webhook (google_key in the body)",
             openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": {}}}}})
async def google_ads_webhook(request: Request):
    door, request_id, received_at = _door(request), new_request_id(), rfc3339_utc()
    body = await request.body()
    payload = _decoded(body)
    if not isinstance(payload, dict):
        door.count("google_ads", "rejected_unreadable", request_id)
        return refused(400, "not_a_json_object", request_id)
    if not verify.google_key_valid(payload.get(GOOGLE_ADS_KEY_FIELD), payload.get("form_id"),
                                   door.config.google_ads_form_keys, door.config.google_ads_key):
        door.count("google_ads", "rejected_key", request_id)
        return refused(403, "invalid_google_key", request_id)
    try:
        await door.publish("google_ads", google_ads_lead_form.PROVIDER, body, request_id, received_at)
    except PublishFailed:
        return unavailable(request_id)
    door.count("google_ads", "accepted", request_id)
    return JSONResponse({})  # Google needs only the 200


# --- Twilio -------------------------------------------------------------------------------------------------------

def _twilio_verified(request: Request, door: Door, body: bytes) -> verify.FormParams | None:
    """The POST parameters of a request Twilio signed, else None. A JSON body is signed through the URL: Twilio
    adds ``bodySHA256`` (hex SHA-256 of the body) to it and signs the URL alone; the validator checks both."""
    url = door.config.public(request.url.path) + (f"?{request.url.query}" if request.url.query else "")
    if verify.BODY_HASH_PARAM in request.query_params:
        signed: verify.FormParams | str = body.decode("utf-8", "replace")
        params = verify.FormParams([])
    else:
        signed = params = verify.form_params(body)
    if verify.twilio_signature_valid(url, signed, request.headers.get("x-twilio-signature"),
                                     door.config.twilio_auth_token,
                                     request.headers.get("x-twilio-webhooks-signature-settings"),
                                     door.config.twilio_shared_key):
        return params
    return None


def _twiml(xml: str) -> Response:
    return Response(xml, media_type="text/xml")


async def _twilio_lead(request: Request, endpoint: str, provider: str, answer: str):
    door, request_id, received_at = _door(request), new_request_id(), rfc3339_utc()
    body = await request.body()
    if _twilio_verified(request, door, body) is None:
        door.count(endpoint, "rejected_signature", request_id)
        return refused(403, "invalid_signature", request_id)
    try:
        await door.publish(endpoint, provider, body, request_id, received_at)
    except PublishFailed:
        return unavailable(request_id)
    door.count(endpoint, "accepted", request_id)
    return _twiml(answer)


@router.post("/twilio/sms", summary="Twilio inbound SMS (X-Twilio-Signature); answers TwiML",
             openapi_extra=_FORM_BODY, response_class=Response)
async def twilio_sms(request: Request):
    reply = MessagingResponse()
    if request.app.state.door.config.twilio_sms_reply:
        reply.message(request.app.state.door.config.twilio_sms_reply)
    return await _twilio_lead(request, "twilio_sms", twilio.SMS_PROVIDER, str(reply))


@router.post("/twilio/voice", summary="Twilio inbound call (X-Twilio-Signature); answers TwiML",
             openapi_extra=_FORM_BODY, response_class=Response)
async def twilio_voice(request: Request):
    answer = VoiceResponse()
    if request.app.state.door.config.twilio_voice_say:
        answer.say(request.app.state.door.config.twilio_voice_say)
    return await _twilio_lead(request, "twilio_voice", twilio.VOICE_PROVIDER, str(answer))


@router.post("/twilio/status", status_code=204, summary="Twilio status callback: recorded, never a lead",
             openapi_extra=_FORM_BODY, response_class=Response)
async def twilio_status(request: Request):
    door, request_id = _door(request), new_request_id()
    body = await request.body()
    params = _twilio_verified(request, door, body)
    if params is None:
        door.count("twilio_status", "rejected_signature", request_id)
        return refused(403, "invalid_signature", request_id)
    status = (params.getlist("MessageStatus") or params.getlist("CallStatus") or ["unknown"])[0]
    sid = (params.getlist("MessageSid") or params.getlist("CallSid") or ["-"])[0]
    status = status.lower() if status.replace("-", "").isalpha() and len(status) <= 20 else "other"
    # a SID names a message or call, not a person: it is what support looks a callback up by
    sid = sid if sid.isalnum() and len(sid) <= 64 else "-"
    door.count("twilio_status", status, request_id)
    log.info("gateway twilio_status sid=%s status=%s request=%s", sid, status, request_id)
    return Response(status_code=204)


# --- Knowlarity ---------------------------------------------------------------------------------------------------

def _shared_secret(request: Request) -> str | None:
    return request.headers.get(SECRET_HEADER) or request.query_params.get("secret")


@router.post("/knowlarity", summary="Knowlarity call webhook (shared secret: X-Leadflow-Secret header or ?secret=)",
             openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": {}}}}})
async def knowlarity_webhook(request: Request):
    door, request_id, received_at = _door(request), new_request_id(), rfc3339_utc()
    if not verify.shared_secret_valid(_shared_secret(request), door.config.knowlarity_secret):
        door.count("knowlarity", "rejected_secret", request_id)
        return refused(401, "invalid_secret", request_id)
    body = await request.body()
    try:
        await door.publish("knowlarity", knowlarity_call.PROVIDER, body, request_id, received_at)
    except PublishFailed:
        return unavailable(request_id)
    door.count("knowlarity", "accepted", request_id)
    return JSONResponse({"request_id": request_id})


# --- E-mail -------------------------------------------------------------------------------------------------------

async def _raw_message(request: Request, body: bytes) -> tuple[bytes, str | None]:
    """(the raw MIME message, the envelope recipients when the post names them): the body itself, or the ``email``
    field of an inbound-parse form post (SendGrid's raw mode, with ``to``; Mailgun's ``body-mime``, with
    ``recipient``). The recipients become the ``to`` attribute the e-mail parser matches sources by."""
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        form = await request.form()
        to = next((str(form[n]) for n in ("to", "recipient") if isinstance(form.get(n), str) and form[n]), None)
        for name in ("email", "body-mime"):
            value = form.get(name)
            if value is not None:
                raw = (await value.read()) if hasattr(value, "read") else str(value).encode("utf-8")
                return raw, to
    return body, None


@router.post("/email", summary="Inbound e-mail as a raw MIME message (shared secret); auto-replies and bounces are "
             "recorded, not published", openapi_extra={"requestBody": {"required": True, "content": {
                 "message/rfc822": {"schema": {}}}}})
async def email_webhook(request: Request):
    door, request_id, received_at = _door(request), new_request_id(), rfc3339_utc()
    if not verify.shared_secret_valid(_shared_secret(request), door.config.email_webhook_secret):
        door.count("email", "rejected_secret", request_id)
        return refused(401, "invalid_secret", request_id)
    raw, to = await _raw_message(request, await request.body())
    try:
        recorded = await publish_email(door, raw, request_id, received_at, "email", to=to)
    except PublishFailed:
        return unavailable(request_id)
    if recorded is not None:
        return JSONResponse({"request_id": request_id, "published": 0, "recorded": recorded})
    return JSONResponse({"request_id": request_id, "published": 1})


async def publish_email(door: Door, raw: bytes, request_id: str, received_at: str, endpoint: str,
                        **extra: str | None) -> str | None:
    """Shared by the webhook and the SMTP receiver: an auto-reply or bounce is recorded (its kind returned), any
    other message published byte for byte (None returned). PublishFailed when the publish failed."""
    reason = mail.not_a_lead(raw)
    if reason is not None:
        door.count(endpoint, f"not_a_lead_{reason}", request_id)
        return reason
    await door.publish(endpoint, inbound_email.PROVIDER, raw, request_id, received_at, **extra)
    door.count(endpoint, "accepted", request_id)
    return None
