"""Our own API: ``POST /v1/leads`` (one lead or a batch) and ``POST /v1/uploads`` (a CSV or XLSX file).

Every request carries a client's API key (401 without a valid one), counts against the client's rate limit (429
with ``Retry-After``), may carry an ``Idempotency-Key`` (a repeat gets the first response), and is answered 202 with
the Pub/Sub message id once published. A lead whose ``external_id`` this client already sent gets 409 with the
first message id (remembered like idempotency keys: per instance, or in the shared Redis).
``GET /v1/leads/status/{message_id}`` answers what the pipeline made of a message this client sent
(``gateway.status``).
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from gateway import leads, uploads
from gateway.clients import presented_key
from gateway.config import ApiClient
from gateway.door import Door, log, refused, unavailable
from gateway.idempotency import MAX_KEY_LENGTH, KeyReused, StoredResponse
from gateway.publishing import PublishFailed, new_request_id, rfc3339_utc
from transforms.parsers import api, csv_upload

router = APIRouter(prefix="/v1", tags=["lead API"])
IDEMPOTENCY_HEADER = "idempotency-key"
REPLAYED_HEADER = "Idempotent-Replayed"

_ERRORS = {"type": "object", "properties": {"error": {"type": "string"}, "request_id": {"type": "string"}}}
_COMMON_RESPONSES = {
    "401": {"description": "missing or invalid API key", "content": {"application/json": {"schema": _ERRORS}}},
    "413": {"description": "body over the size limit", "content": {"application/json": {"schema": _ERRORS}}},
    "422": {"description": "Idempotency-Key reused with another body",
            "content": {"application/json": {"schema": _ERRORS}}},
    "429": {"description": "over the client's rate limit (Retry-After)",
            "content": {"application/json": {"schema": _ERRORS}}},
    "503": {"description": "not published; retry (Retry-After)", "content": {"application/json": {"schema": _ERRORS}}},
}
_PARAMS = [{"name": "Idempotency-Key", "in": "header", "required": False,
            "schema": {"type": "string", "minLength": 1, "maxLength": MAX_KEY_LENGTH}}]
_ACCEPTED = {"type": "object", "properties": {
    "request_id": {"type": "string"}, "message_id": {"type": "string"},
    "results": {"type": "array", "items": {"type": "object"}}}}
# ``Authorization: Bearer <key>`` is accepted too (docs/gateway.md); the document names one scheme so that clients
# and fuzzers send the key one way.
_SECURITY = [{"ApiKey": []}]


def _door(request: Request) -> Door:
    return request.app.state.door


def _stored(response: Response) -> StoredResponse:
    headers = tuple((k, v) for k, v in response.headers.items() if k.lower() not in ("content-length",))
    return StoredResponse(response.status_code, bytes(response.body), headers)


def _replay(stored: StoredResponse) -> Response:
    response = Response(stored.body, status_code=stored.status, headers=dict(stored.headers))
    response.headers[REPLAYED_HEADER] = "true"
    return response


async def _admitted(request: Request, endpoint: str) -> tuple[Door, str, ApiClient | None, Response | None]:
    """(door, request id, the client, None), or the 401 / 429 answer in place of the client."""
    door, request_id = _door(request), new_request_id()
    client = door.clients.authenticate(presented_key(request.headers))
    if client is None:
        door.count(endpoint, "rejected_key", request_id)
        return door, request_id, None, refused(401, "invalid_api_key", request_id,
                                               {"WWW-Authenticate": 'Bearer realm="leadflow"'})
    wait = await door.rate_limits.hit(client)
    if wait is not None:
        door.count(endpoint, "rate_limited", request_id)
        return door, request_id, None, refused(429, "rate_limited", request_id, {"Retry-After": str(wait)})
    return door, request_id, client, None


async def _guarded(request: Request, endpoint: str, handle) -> Response:
    """Authentication, rate limit and idempotency around ``handle(door, client, body, request_id)``."""
    door, request_id, client, refusal = await _admitted(request, endpoint)
    if refusal is not None:
        return refusal
    body = await request.body()
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is None:
        return await handle(door, client, body, request_id)
    if not key or len(key) > MAX_KEY_LENGTH:
        return refused(400, "invalid_idempotency_key", request_id)
    fingerprint = door.idempotency.fingerprint(request.method, request.url.path, body)
    try:
        first = await door.idempotency.begin(client.client_id, key, fingerprint)
    except KeyReused:
        door.count(endpoint, "idempotency_key_reused", request_id)
        return refused(422, "idempotency_key_reused", request_id)
    if first is not None:
        door.count(endpoint, "idempotent_repeat", request_id)
        return _replay(first)
    response: Response = refused(500, "internal_error", request_id)
    try:
        response = await handle(door, client, body, request_id)
        return response
    finally:
        await door.idempotency.finish(client.client_id, key, _stored(response))


async def _lead_of(door: Door, message_id: str | None) -> str | None:
    """The lead a message became, when status lookups are configured and the pipeline has decided it."""
    if door.status is None or not message_id:
        return None
    try:
        answer = await asyncio.to_thread(door.status.lookup, message_id)
    except Exception as e:  # the 409 stands without it
        log.warning("gateway api_leads lead lookup failed: %s", type(e).__name__)
        return None
    return answer.get("lead_id")


async def _publish_leads(door: Door, client: ApiClient, body: bytes, request_id: str) -> Response:
    received_at = rfc3339_utc()
    checked, errors = leads.check_body(body)
    if checked is None:
        door.count("api_leads", "rejected_invalid", request_id)
        return JSONResponse({"error": "validation_error", "request_id": request_id,
                             "errors": [e.as_dict() for e in errors]}, status_code=400)
    seen = door.external_ids
    results: list[dict] = []
    todo: list[tuple[int, dict]] = []
    for i, lead in enumerate(checked.leads):  # a repeat within the batch finds the claim of its first
        claimed, first = await seen.claim(client.client_id, lead["external_id"])
        if claimed:
            todo.append((i, lead))
        else:
            results.append({"index": i, "error": "duplicate_external_id", "first_message_id": first})
    if not checked.batch and not todo:
        door.count("api_leads", "duplicate", request_id)
        answer = {"error": "duplicate_external_id", "request_id": request_id,
                  "first_message_id": results[0]["first_message_id"]}
        lead_id = await _lead_of(door, results[0]["first_message_id"])
        if lead_id:  # once the pipeline has decided the first message
            answer["lead_id"] = lead_id
        return JSONResponse(answer, status_code=409)
    bodies = [body] if not checked.batch else [leads.message_body(lead) for _, lead in todo]
    published = await asyncio.gather(
        *(door.publish("api_leads", api.PROVIDER, b, request_id, received_at, client.client_id) for b in bodies),
        return_exceptions=True)
    for (i, lead), outcome in zip(todo, published, strict=True):
        if isinstance(outcome, str):
            await seen.settle(client.client_id, lead["external_id"], outcome)
            results.append({"index": i, "message_id": outcome})
        else:
            await seen.release(client.client_id, lead["external_id"])
    if any(isinstance(o, PublishFailed) for o in published):
        return unavailable(request_id)  # the ones published are remembered: a retry gets 409 for them
    for outcome in published:
        if isinstance(outcome, BaseException):
            raise outcome
    door.count("api_leads", "accepted", request_id)
    if not checked.batch:
        return JSONResponse({"request_id": request_id, "message_id": results[0]["message_id"]}, status_code=202)
    results.sort(key=lambda r: r["index"])
    return JSONResponse({"request_id": request_id, "results": results}, status_code=202)


@router.post("/leads", status_code=202, summary="Submit one lead or a batch of up to 500",
             openapi_extra={
                 "requestBody": {"required": True,
                                 "content": {"application/json": {"schema": leads.REQUEST_SCHEMA}}},
                 "parameters": _PARAMS, "security": _SECURITY,
                 "responses": {
                     "202": {"description": "published (message ids)", "content": {"application/json": {
                         "schema": _ACCEPTED}}},
                     "400": {"description": "every field error (values never echoed)",
                             "content": {"application/json": {"schema": {"type": "object", "properties": {
                                 "error": {"type": "string"}, "errors": {"type": "array", "items": {
                                     "type": "object", "properties": {"index": {"type": "integer"},
                                                                      "field": {"type": "string"},
                                                                      "message": {"type": "string"}}}}}}}}},
                     "409": {"description": "this client already sent this external_id (first message id, and the "
                                            "lead id once the pipeline decided it)",
                             "content": {"application/json": {"schema": _ERRORS}}},
                     **_COMMON_RESPONSES}})
async def post_leads(request: Request):
    return await _guarded(request, "api_leads", _publish_leads)


async def _publish_upload(door: Door, client: ApiClient, body: bytes, request_id: str, *, data: bytes,
                          filename: str | None, content_type: str | None) -> Response:
    received_at = rfc3339_utc()
    try:
        payload, kind = uploads.upload_csv(data, filename, content_type)
    except uploads.UploadRejected as e:
        door.count("api_uploads", f"rejected_{e.error_type}", request_id)
        return JSONResponse({"error": e.error_type, "message": str(e), "request_id": request_id}, status_code=400)
    try:
        message_id = await door.publish("api_uploads", csv_upload.PROVIDER, payload, request_id, received_at,
                                        client.client_id, upload_format=kind)
    except PublishFailed:
        return unavailable(request_id)
    door.count("api_uploads", "accepted", request_id)
    return JSONResponse({"request_id": request_id, "message_id": message_id, "format": kind}, status_code=202)


@router.post("/uploads", status_code=202, summary="Upload a CSV or XLSX file of leads (one message per file)",
             openapi_extra={
                 "requestBody": {"required": True, "content": {
                     "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
                         "file": {"type": "string", "format": "binary"}}}},
                     "text/csv": {"schema": {"type": "string"}},
                     "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": {
                         "schema": {"type": "string", "format": "binary"}}}},
                 "parameters": _PARAMS, "security": _SECURITY,
                 "responses": {"202": {"description": "published (message id)"},
                               "400": {"description": "not a readable CSV/XLSX file",
                                       "content": {"application/json": {"schema": _ERRORS}}},
                               **_COMMON_RESPONSES}})
async def post_upload(request: Request):
    content_type = request.headers.get("content-type", "")

    async def handle(door: Door, client: ApiClient, body: bytes, request_id: str) -> Response:
        data, filename, kind = body, None, content_type
        if content_type.startswith("multipart/form-data"):
            form = await request.form()
            upload = form.get("file")
            if upload is None or not hasattr(upload, "read"):
                return refused(400, "missing_file_field", request_id)
            data, filename, kind = await upload.read(), upload.filename, upload.content_type
        return await _publish_upload(door, client, body, request_id, data=data, filename=filename,
                                     content_type=kind)

    return await _guarded(request, "api_uploads", handle)


_STATUS = {"type": "object", "properties": {
    "request_id": {"type": "string"}, "message_id": {"type": "string"},
    "status": {"type": "string", "enum": ["pending", "processed"]},
    "outcome": {"type": "string"}, "lead_id": {"type": "string"}, "stage": {"type": "string"},
    "error_type": {"type": "string"}, "units": {"type": "array", "items": {"type": "object"}},
    "truncated": {"type": "boolean"}}}


@router.get("/leads/status/{message_id}", summary="What the pipeline made of a message this client sent",
            openapi_extra={"security": _SECURITY},
            responses={"200": {"description": "pending, or processed: the outcome (new with the lead id, a "
                                              "duplicate with the existing lead id) or the dead letter's reason",
                               "content": {"application/json": {"schema": _STATUS}}},
                       "401": _COMMON_RESPONSES["401"], "429": _COMMON_RESPONSES["429"],
                       "404": {"description": "no message of this id was sent by this client through this gateway",
                               "content": {"application/json": {"schema": _ERRORS}}},
                       "501": {"description": "status lookups are not configured (LEADFLOW_STATUS_DATASET)",
                               "content": {"application/json": {"schema": _ERRORS}}},
                       "503": {"description": "BigQuery did not answer; retry",
                               "content": {"application/json": {"schema": _ERRORS}}}})
async def lead_status(request: Request, message_id: str):
    door, request_id, client, refusal = await _admitted(request, "api_status")
    if refusal is not None:
        return refusal
    if door.sent_by(message_id) != client.client_id:  # never another client's outcome
        door.count("api_status", "unknown_message", request_id)
        return refused(404, "unknown_message_id", request_id)
    if door.status is None:
        return refused(501, "status_not_configured", request_id)
    try:
        answer = await asyncio.to_thread(door.status.lookup, message_id)
    except Exception as e:  # BigQuery's errors: the client retries later
        door.count("api_status", "lookup_failed", request_id)
        log.warning("gateway api_status lookup failed request=%s: %s", request_id, type(e).__name__)
        return refused(503, "status_unavailable", request_id, {"Retry-After": "5"})
    door.count("api_status", "accepted", request_id)
    return JSONResponse({"request_id": request_id, **answer})
