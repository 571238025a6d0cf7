"""Which e-mails are not leads: automatic replies and bounces, recognised from their headers (no body is read).

* RFC 3834 section 5: ``Auto-Submitted`` with any value other than ``no`` (``auto-replied``, ``auto-generated``,
  ``auto-notified``) marks a message sent by a machine.
* RFC 3464 / RFC 6522: a delivery status notification is ``multipart/report; report-type=delivery-status`` (a
  bounce or delay report); RFC 8098 disposition notifications are ``report-type=disposition-notification``.
* Common auto-responders that predate RFC 3834 set ``X-Autoreply``/``X-Autorespond`` or ``Precedence:
  auto_reply``; Microsoft sets ``X-Auto-Response-Suppress`` on its own auto-replies only together with
  ``Auto-Submitted``, so that header alone is not used.

Mail from unknown senders is a lead like any other (the pipeline registers the source).
"""

from __future__ import annotations

import email
import email.policy

REPORT_TYPES = {"delivery-status": "bounce", "disposition-notification": "read_receipt"}
_LEGACY_AUTO_HEADERS = ("x-autoreply", "x-autorespond")


def not_a_lead(raw: bytes) -> str | None:
    """Why a raw RFC 5322 message is not a lead (``auto_reply``, ``bounce``, ...), or None when it may be one."""
    try:
        headers = email.message_from_bytes(raw, policy=email.policy.compat32, _class=email.message.Message)
    except Exception:  # a message the stdlib cannot even split is still published: the pipeline dead-letters it
        return None
    auto = str(headers.get("Auto-Submitted") or "").split(";")[0].strip().lower()
    if auto and auto != "no":
        return "auto_reply" if auto == "auto-replied" else "auto_generated"
    if headers.get_content_type() == "multipart/report":
        report = str(headers.get_param("report-type") or "").lower()
        if report in REPORT_TYPES:
            return REPORT_TYPES[report]
    if any(headers.get(name) for name in _LEGACY_AUTO_HEADERS):
        return "auto_reply"
    if str(headers.get("Precedence") or "").strip().lower() == "auto_reply":
        return "auto_reply"
    return None
