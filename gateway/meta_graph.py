"""Meta Lead Ads: the leadgen webhook's lead ids, and the Graph API read of each lead (with retries and backoff).

The webhook (``{"object": "page", "entry": [{"id", "time", "changes": [{"field": "leadgen", "value": {"leadgen_id",
"page_id", "form_id", "ad_id", "adgroup_id", "created_time"}}]}]}``) carries ids only; the lead itself is read with
``GET {graph_url}/{leadgen_id}`` (the page token as a bearer token) and comes back as the lead object (``id``,
``created_time``, ``field_data``, ``ad_id``, ``form_id``, ...). Shapes:
developers.facebook.com/docs/marketing-api/guides/lead-ads/retrieving; errors:
developers.facebook.com/docs/graph-api/guides/error-handling.

A read that fails is retried when the failure is transient (network, HTTP 5xx, Graph codes for throttling and
downtime); a permanent one (an unknown lead id, an expired token) is not. The read's raw response bytes are what is
published: the lead travels byte for byte as Graph sent it.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import httpx

# Graph error codes that mean "wait and retry" (error-handling guide: unknown, service, too many calls, user too
# many calls, application limit, temporarily blocked).
TRANSIENT_GRAPH_CODES = frozenset({1, 2, 4, 17, 32, 341, 368, 613})
LEAD_FIELDS = ("id,created_time,field_data,ad_id,ad_name,adset_id,adset_name,campaign_id,campaign_name,form_id,"
               "is_organic,platform,partner_name,retailer_item_id")


@dataclass(frozen=True)
class LeadNotification:
    """One ``leadgen`` change of a webhook: the lead id and the ids around it (no PII)."""

    leadgen_id: str
    page_id: str | None
    form_id: str | None
    entry: dict[str, Any]  # the entry without its other changes
    change: dict[str, Any]

    def envelope(self) -> bytes:
        """This notification alone as a webhook body (what is kept when the lead cannot be read)."""
        entry = {**self.entry, "changes": [self.change]}
        return json.dumps({"object": "page", "entry": [entry]}, separators=(",", ":")).encode("utf-8")


def _text(value: Any) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (str, int)):
        return str(value) or None
    return None


def lead_notifications(payload: Any) -> list[LeadNotification]:
    """Every ``entry[].changes[]`` of field ``leadgen`` with a leadgen id; anything else in the body is ignored."""
    out: list[LeadNotification] = []
    if not isinstance(payload, dict) or not isinstance(payload.get("entry"), list):
        return out
    for entry in payload["entry"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("changes"), list):
            continue
        bare = {k: v for k, v in entry.items() if k != "changes"}
        for change in entry["changes"]:
            if not isinstance(change, dict) or change.get("field", "leadgen") != "leadgen":
                continue
            value = change.get("value")
            if not isinstance(value, dict):
                continue
            leadgen_id = _text(value.get("leadgen_id"))
            if leadgen_id is None:
                continue
            out.append(LeadNotification(leadgen_id, _text(value.get("page_id")) or _text(entry.get("id")),
                                        _text(value.get("form_id")), bare, change))
    return out


class LeadFetchFailed(RuntimeError):
    """The lead could not be read. ``reason`` is short, stable and PII-free (it is kept with the notification)."""

    def __init__(self, reason: str, transient: bool):
        super().__init__(reason)
        self.reason = reason
        self.transient = transient


def _graph_error(response: httpx.Response) -> LeadFetchFailed:
    code = None
    try:
        error = response.json().get("error") or {}
        code = error.get("code")
        kind = str(error.get("type") or "error")[:40]
    except (ValueError, AttributeError):
        kind = "non_json"
    transient = response.status_code >= 500 or response.status_code == 429 or code in TRANSIENT_GRAPH_CODES
    return LeadFetchFailed(f"graph_http_{response.status_code}:{kind}:code_{code}", transient)


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        obj = response.json()
    except ValueError:
        raise LeadFetchFailed("graph_invalid_json", True) from None
    if not isinstance(obj, dict):
        raise LeadFetchFailed("graph_unexpected_answer", False)
    return obj


class GraphClient:
    """Reads leads from the Graph API with ``attempts`` tries, waiting ``backoff`` seconds, doubled each time."""

    def __init__(self, base_url: str, access_token: str | None, *, attempts: int = 4, backoff: float = 0.2,
                 timeout: float = 3.0):
        self.base_url = base_url.rstrip("/")
        self.access_token = access_token
        self.attempts = max(1, attempts)
        self.backoff = backoff
        self._http = httpx.AsyncClient(timeout=timeout)

    async def _once(self, url: str, params: dict[str, str] | None) -> httpx.Response:
        try:
            # the token in a header, not the query string: URLs end up in logs (httpx logs each request's URL)
            response = await self._http.get(url, params=params,
                                            headers={"Authorization": f"Bearer {self.access_token}"})
        except httpx.HTTPError as e:
            raise LeadFetchFailed(f"graph_unreachable:{type(e).__name__}", True) from None
        if response.status_code != 200:
            raise _graph_error(response)
        return response

    async def _get(self, url: str, params: dict[str, str] | None, check) -> Any:
        """``check(response)`` of the first good answer, retrying transient failures with backoff."""
        if not self.access_token:
            raise LeadFetchFailed("no_page_access_token", False)
        delay = self.backoff
        for attempt in range(1, self.attempts + 1):
            try:
                return check(await self._once(url, params))
            except LeadFetchFailed as e:
                if not e.transient or attempt == self.attempts:
                    raise
            await asyncio.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")

    async def fetch_lead(self, leadgen_id: str) -> bytes:
        """The lead object's bytes, or LeadFetchFailed after the last attempt (or at once when permanent)."""
        if not leadgen_id.isdigit():  # ids are numeric; anything else must not be put into the URL path
            raise LeadFetchFailed("invalid_leadgen_id", False)

        def check(response: httpx.Response) -> bytes:
            if str(_json_object(response).get("id")) != leadgen_id:
                raise LeadFetchFailed("graph_unexpected_lead", False)
            return response.content

        return await self._get(f"{self.base_url}/{leadgen_id}", {"fields": LEAD_FIELDS}, check)

    async def form_leads(self, form_id: str, since_unix: int, page_size: int = 100):
        """Bulk read: every lead of a form created after ``since_unix``, page by page (``paging.next``), as
        (lead object, page number). Only ``next`` links on the Graph API's own host are followed: the token goes
        with each request."""
        if not form_id.isdigit():
            raise LeadFetchFailed("invalid_form_id", False)
        url: str | None = f"{self.base_url}/{form_id}/leads"
        params: dict[str, str] | None = {
            "fields": LEAD_FIELDS, "limit": str(page_size),
            "filtering": json.dumps([{"field": "time_created", "operator": "GREATER_THAN", "value": since_unix}])}
        origin = httpx.URL(self.base_url)
        page = 0
        while url:
            page += 1
            body = await self._get(url, params, _json_object)
            for lead in body.get("data") or ():
                if isinstance(lead, dict):
                    yield lead, page
            url, params = (body.get("paging") or {}).get("next"), None
            if url and (httpx.URL(url).host, httpx.URL(url).port) != (origin.host, origin.port):
                raise LeadFetchFailed("graph_next_on_another_host", False)

    async def close(self) -> None:
        await self._http.aclose()
