"""An SMTP receiver (aiosmtpd) for local runs and test setups: each message is published like POST /webhooks/email.

It listens on 127.0.0.1:2525 by default and asks for no authentication, so it is for a laptop or a test network,
not the internet (production mail comes through an inbound-parse service to /webhooks/email). The SMTP answer
follows the publish: 250 once Pub/Sub confirmed it, 451 (try again later) when it failed, so the sending server
keeps the message and retries. Auto-replies and bounces are accepted (250) and recorded, not published.
"""

from __future__ import annotations

import logging

from aiosmtpd.controller import Controller

from gateway.door import Door
from gateway.publishing import PublishFailed, new_request_id, rfc3339_utc
from gateway.webhooks import publish_email

DEFAULT_PORT = 2525
# aiosmtpd logs every command at INFO, envelope addresses included: e-mail addresses are personal data
logging.getLogger("mail.log").setLevel(logging.WARNING)


class PublishingHandler:
    def __init__(self, door: Door):
        self.door = door

    async def handle_DATA(self, server, session, envelope) -> str:
        request_id, received_at = new_request_id(), rfc3339_utc()
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        # the envelope recipients: the pipeline matches the source by them (its ``to`` attribute)
        to = ", ".join(envelope.rcpt_tos) or None
        try:
            await publish_email(self.door, raw, request_id, received_at, "smtp", to=to)
        except PublishFailed:
            return "451 4.3.0 not stored, try again later"
        return "250 OK"


def start_smtp(door: Door, host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> Controller:
    """Start the receiver in its own thread; ``.stop()`` ends it."""
    controller = Controller(PublishingHandler(door), hostname=host, port=port,
                            data_size_limit=door.config.max_body_bytes)
    controller.start()
    return controller
