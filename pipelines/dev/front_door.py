"""Input messages sent the way each provider sends them, through the gateway's front door (``make demo``).

A sample message is a provider's payload with its ``provider`` attribute. This module sends each one as that provider
really delivers it, to a running gateway, signed with the secrets of the local stack (``<home>/gateway-client.json``):

* ``meta_lead_ads``: the lead object is put into the Graph API stand-in, then a ``leadgen`` webhook naming its id is
  posted with ``X-Hub-Signature-256``; the gateway reads the lead back from the stand-in, as it reads Graph.
* ``google_ads_lead_form``: the lead-form webhook, its ``google_key`` the local form key.
* ``twilio_sms`` / ``twilio_voice``: the form body, ``X-Twilio-Signature`` computed by the official ``twilio`` package
  over the public URL.
* ``knowlarity_call``: the call webhook with the shared secret.
* ``inbound_email``: over SMTP to the gateway's receiver (envelope sender and recipients from the headers).
* ``csv_upload``: ``POST /v1/uploads``, the first one converted to an XLSX workbook (openpyxl), as a spreadsheet
  user uploads it; ``api``: ``POST /v1/leads`` with the local API key.

What no provider would send (a payload that is not its provider's shape, an unknown provider, no attributes) goes to
the input topic directly, as another publisher would put it there. Each send is counted by door and answer.
"""

from __future__ import annotations

import email.utils
import functools
import io
import json
import re
import smtplib
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.clients import API_KEY_HEADER
from gateway.verify import form_params, meta_signature
from gateway.webhooks import SECRET_HEADER
from infra.local.graph_stand_in import GraphStandIn, unix_time
from transforms.messages import GOOGLE_ADS_KEY_FIELD, InputMessage
from transforms.parse import ParseConfig, RejectedMessage, parse_message
from transforms.parsers import (
    api,
    csv_upload,
    google_ads_lead_form,
    inbound_email,
    knowlarity_call,
    meta_lead_ads,
    twilio,
)
from transforms.sources import SourceRegistry

TOPIC = "topic"  # the door of messages no provider would send: published to the input topic as they stand
PATHS = {"meta": "/webhooks/meta", "google_ads": "/webhooks/google-ads", "twilio_sms": "/webhooks/twilio/sms",
         "twilio_voice": "/webhooks/twilio/voice", "knowlarity": "/webhooks/knowlarity", "api": "/v1/leads",
         "upload": "/v1/uploads"}
# The pipeline's providers of the messages each door publishes (the summary puts the two side by side).
PROVIDERS_OF = {"meta": (meta_lead_ads.PROVIDER,), "google_ads": (google_ads_lead_form.PROVIDER,),
                "twilio_sms": (twilio.SMS_PROVIDER,), "twilio_voice": (twilio.VOICE_PROVIDER,),
                "knowlarity": (knowlarity_call.PROVIDER,), "smtp": (inbound_email.PROVIDER,),
                "upload": (csv_upload.PROVIDER,), "api": (api.PROVIDER,)}
DEMO_PAGE_ID = "104857600000001"  # the Facebook page the demo's lead forms belong to


def _json_object(data: bytes) -> dict | None:
    try:
        obj = json.loads(data)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


def door_for(data: bytes, attributes: dict[str, str]) -> str:
    """The door a provider would deliver this message through (``TOPIC`` when none would)."""
    provider = attributes.get("provider")
    if provider == meta_lead_ads.PROVIDER:
        lead = _json_object(data)
        return "meta" if lead is not None and str(lead.get("id", "")).isdigit() else TOPIC
    if provider == google_ads_lead_form.PROVIDER:
        return "google_ads" if _json_object(data) is not None else TOPIC
    return {twilio.SMS_PROVIDER: "twilio_sms", twilio.VOICE_PROVIDER: "twilio_voice",
            knowlarity_call.PROVIDER: "knowlarity", inbound_email.PROVIDER: "smtp", csv_upload.PROVIDER: "upload",
            api.PROVIDER: "api"}.get(provider or "", TOPIC)


def meta_webhook(lead: dict[str, Any]) -> bytes:
    """The ``leadgen`` webhook Meta posts for a new lead: ids only (Webhooks for Lead Ads, the ``page`` object)."""
    created = unix_time(lead.get("created_time")) or int(time.time())
    value = {"ad_id": str(lead.get("ad_id", "")), "form_id": str(lead.get("form_id", "")),
             "leadgen_id": str(lead["id"]), "created_time": created, "page_id": DEMO_PAGE_ID,
             "adgroup_id": str(lead.get("adset_id", ""))}
    body = {"object": "page", "entry": [{"id": DEMO_PAGE_ID, "time": created,
                                         "changes": [{"field": "leadgen", "value": value}]}]}
    return json.dumps(body, separators=(",", ":")).encode()


def xlsx_of(csv_bytes: bytes) -> bytes | None:
    """A CSV file as the XLSX workbook a spreadsheet would save (every cell text, as typed); None when not CSV text."""
    import csv

    from openpyxl import Workbook

    try:
        rows = list(csv.reader(io.StringIO(csv_bytes.decode("utf-8-sig"))))
    except (UnicodeDecodeError, csv.Error):
        return None
    book = Workbook(write_only=True)
    sheet = book.create_sheet("Leads")
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


@functools.cache
def _parse_config() -> ParseConfig:
    return ParseConfig(registry=SourceRegistry.from_csv(None))


def units_in(data: bytes, attributes: dict[str, str]) -> int:
    """How many units the pipeline makes of a message (an upload: one per row; anything it rejects: one)."""
    try:
        return len(parse_message(InputMessage("count", data, attributes, None), _parse_config(), len(data) + 1))
    except RejectedMessage:
        return 1


@dataclass(frozen=True)
class Sent:
    door: str
    answer: str  # the HTTP status, the SMTP reply code, or "published"
    published: int  # messages the gateway (or the direct publish) put on the input topic
    units: int  # what the pipeline will account for: lead events plus dead letters


class FrontDoor:
    """Sends messages to a running gateway with the local stack's client settings."""

    def __init__(self, gateway_url: str, smtp: tuple[str, int], client: dict[str, str], graph_dir: Path,
                 input_topic: str, xlsx_uploads: int = 1):
        import httpx
        from google.cloud import pubsub_v1

        self.url, self.smtp, self.client = gateway_url.rstrip("/"), smtp, client
        self.graph = GraphStandIn(client["meta_page_access_token"], graph_dir)
        self.input_topic = input_topic
        self.xlsx_left = xlsx_uploads
        self.http = httpx.Client(timeout=30)
        self.publisher = pubsub_v1.PublisherClient()
        self.answers: Counter = Counter()  # (door, answer) -> requests

    @classmethod
    def for_stack(cls, cfg) -> FrontDoor:
        client = json.loads((cfg.home / "gateway-client.json").read_text())
        return cls(cfg.gateway_url, (cfg.host, cfg.smtp_port), client, cfg.meta_graph_dir, cfg.topic("input"))

    def send(self, data: bytes, attributes: dict[str, str]) -> Sent:
        door = door_for(data, attributes)
        sent = getattr(self, f"_{door}")(data, attributes)
        self.answers[(sent.door, sent.answer)] += 1
        return sent

    def close(self) -> None:
        self.http.close()
        self.publisher.stop()

    # --- one method per door -----------------------------------------------------------------------------------

    def _post(self, door: str, body: bytes, headers: dict[str, str], **kw) -> Any:
        return self.http.post(self.url + PATHS[door], content=body, headers=headers, **kw)

    def _meta(self, data: bytes, attributes: dict[str, str]) -> Sent:
        lead = _json_object(data)
        self.graph.add_lead(str(lead["id"]), data)  # the lead as Graph serves it: the sample's bytes
        body = meta_webhook(lead)
        r = self._post("meta", body, {"Content-Type": "application/json",
                                      "X-Hub-Signature-256": meta_signature(body, self.client["meta_app_secret"])})
        published = r.json().get("published", 0) if r.status_code == 200 else 0
        return Sent("meta", str(r.status_code), published, published)

    def _google_ads(self, data: bytes, attributes: dict[str, str]) -> Sent:
        lead = _json_object(data)
        lead[GOOGLE_ADS_KEY_FIELD] = self.client["google_ads_key"]  # the key configured on the form
        r = self._post("google_ads", json.dumps(lead).encode(), {"Content-Type": "application/json"})
        return self._one("google_ads", r.status_code, r.status_code == 200)

    def _twilio(self, door: str, data: bytes) -> Sent:
        from twilio.request_validator import RequestValidator

        params = form_params(data)
        signature = RequestValidator(self.client["twilio_auth_token"]).compute_signature(
            self.client["public_url"].rstrip("/") + PATHS[door], params)
        r = self._post(door, data, {"Content-Type": "application/x-www-form-urlencoded",
                                    "X-Twilio-Signature": signature})
        return self._one(door, r.status_code, r.status_code == 200)

    def _twilio_sms(self, data: bytes, attributes: dict[str, str]) -> Sent:
        return self._twilio("twilio_sms", data)

    def _twilio_voice(self, data: bytes, attributes: dict[str, str]) -> Sent:
        return self._twilio("twilio_voice", data)

    def _knowlarity(self, data: bytes, attributes: dict[str, str]) -> Sent:
        r = self._post("knowlarity", data, {"Content-Type": "application/json",
                                            SECRET_HEADER: self.client["knowlarity_secret"]})
        return self._one("knowlarity", r.status_code, r.status_code == 200)

    def _smtp(self, data: bytes, attributes: dict[str, str]) -> Sent:
        from email.parser import BytesHeaderParser

        headers = BytesHeaderParser().parsebytes(data)
        sender = email.utils.parseaddr(str(headers.get("From", "")))[1] or "unknown@sender.invalid"
        recipients = [a for _, a in email.utils.getaddresses([str(v) for v in headers.get_all("To", [])]) if a]
        wire = re.sub(rb"\r?\n", b"\r\n", data)  # SMTP lines end in CRLF (RFC 5321); mail agents convert
        with smtplib.SMTP(*self.smtp, timeout=30) as smtp:
            try:
                refused = smtp.sendmail(sender, recipients or ["leads@localhost"], wire)
                code = "250" if not refused else "refused"
            except smtplib.SMTPResponseException as e:
                code = str(e.smtp_code)
        published = self._smtp_published()
        return Sent("smtp", code, published, published)

    def _smtp_published(self) -> int:
        """1 when the receiver published the last message, 0 when it recorded it as an auto-reply or bounce: the
        SMTP answer is 250 for both, so the gateway's own counter tells."""
        count = self._counter("smtp", "published")
        published, self._smtp_seen = count - getattr(self, "_smtp_seen", 0), count
        return published

    def _counter(self, endpoint: str, outcome: str) -> int:
        return self.gateway_counts().get(f"{endpoint}.{outcome}", 0)

    def _upload(self, data: bytes, attributes: dict[str, str]) -> Sent:
        headers = {API_KEY_HEADER: self.client["api_key"]}
        workbook = xlsx_of(data) if self.xlsx_left > 0 else None
        if workbook is not None:
            self.xlsx_left -= 1
            files = {"file": ("leads.xlsx", workbook,
                              "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")}
            r = self.http.post(self.url + PATHS["upload"], files=files, headers=headers)
            kind = "xlsx"
        else:
            r = self._post("upload", data, {**headers, "Content-Type": "text/csv"})
            kind = "csv"
        accepted = r.status_code == 202
        return Sent("upload", f"{kind}:{r.status_code}", int(accepted), units_in(data, attributes) if accepted else 0)

    def _api(self, data: bytes, attributes: dict[str, str]) -> Sent:
        r = self._post("api", data, {"Content-Type": "application/json", API_KEY_HEADER: self.client["api_key"]})
        if r.status_code != 202:
            return Sent("api", str(r.status_code), 0, 0)
        answer = r.json()
        published = len([x for x in answer.get("results", [answer]) if x.get("message_id")])
        return Sent("api", "202", published, published)

    def _topic(self, data: bytes, attributes: dict[str, str]) -> Sent:
        self.publisher.publish(self.input_topic, data, **attributes).result(timeout=60)
        return Sent(TOPIC, "published", 1, units_in(data, attributes))

    def _one(self, door: str, status: int, published: bool) -> Sent:
        return Sent(door, str(status), int(published), int(published))

    def gateway_counts(self) -> dict[str, int]:
        """The gateway's own request counters (``/metrics``), by ``endpoint.outcome``."""
        counts = {}
        for line in self.http.get(self.url + "/metrics").text.splitlines():
            if line.startswith("leadflow_gateway_requests{"):
                labels, _, value = line.partition("} ")
                fields = dict(part.split("=", 1) for part in labels.split("{", 1)[1].split(","))
                counts[f"{fields['endpoint'].strip(chr(34))}.{fields['outcome'].strip(chr(34))}"] = int(value)
        return counts
