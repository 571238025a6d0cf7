"""Push delivery for the emulator's push subscriptions, as the Pub/Sub documentation describes it.

For each message of a push subscription the emulator POSTs to ``push_config.push_endpoint``:

* wrapped (the default): a JSON body ``{"message": {"data": base64, "attributes", "messageId", "message_id",
  "publishTime", "publish_time", "orderingKey"?}, "subscription": NAME, "deliveryAttempt"?}``
  (``deliveryAttempt`` only with a dead-letter policy), ``Content-Type: application/json``;
* unwrapped (``no_wrapper``): the message data as the body; with ``write_metadata`` the metadata in
  ``x-goog-pubsub-*`` headers and every attribute as a header of its own.

Success is one of 102, 200, 201, 202, 204: the message is acknowledged. Anything else, a refused connection or no
answer within the subscription's ack deadline is a negative acknowledgement: the message comes back after the
retry policy's exponential backoff (``minimum_backoff * 2^(attempt-1)``, at most ``maximum_backoff``) and, with a
dead-letter policy, goes to the dead-letter topic after ``max_delivery_attempts``. With message ordering a key has
one push outstanding at a time (as the service does for push). ``oidc_token`` adds ``Authorization: Bearer JWT``
with the documented claims (``aud`` = the audience or the endpoint URL, ``email`` = the service account); the
emulator cannot sign as Google, so the token is unsigned (``alg: none``): endpoints can read it, not verify it.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from concurrent import futures
from typing import Any
from urllib.parse import urlsplit

import httpx

log = logging.getLogger("infra.local.pubsub_emulator")

SUCCESS_CODES = frozenset({102, 200, 201, 202, 204})
MAX_OUTSTANDING_PER_SUBSCRIPTION = 32
PUSH_WORKERS = 16


def check_push_endpoint(url: str) -> None:
    """Raise ValueError unless ``url`` is an absolute http(s) URL (the service requires https; emulators take http)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"Invalid push endpoint {url!r}: must be an absolute http(s) URL")


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def oidc_token(push_config: Any, now: float | None = None) -> str:
    """An unsigned JWT with the claims Pub/Sub puts in its push tokens (aud, email, iss, iat, exp)."""
    now = int(time.time() if now is None else now)
    claims = {
        "aud": push_config.oidc_token.audience or push_config.push_endpoint,
        "email": push_config.oidc_token.service_account_email,
        "email_verified": True,
        "iss": "https://accounts.google.com",
        "iat": now,
        "exp": now + 3600,
    }
    header = {"alg": "none", "typ": "JWT"}
    return f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}."


def push_request(subscription: str, push_config: Any, msg: Any, delivery_attempt: int) -> tuple[bytes, dict]:
    """The body and headers of the POST for one message (``delivery_attempt`` 0: no dead-letter policy)."""
    headers: dict[str, str] = {}
    publish_time = msg.publish_time.ToJsonString()
    if push_config.HasField("no_wrapper"):
        body = bytes(msg.data)
        if push_config.no_wrapper.write_metadata:
            headers.update({
                "x-goog-pubsub-subscription-name": subscription,
                "x-goog-pubsub-message-id": msg.message_id,
                "x-goog-pubsub-publish-time": publish_time,
            })
            if delivery_attempt:
                headers["x-goog-pubsub-delivery-attempt"] = str(delivery_attempt)
            if msg.ordering_key:
                headers["x-goog-pubsub-ordering-key"] = msg.ordering_key
            headers.update(dict(msg.attributes))
    else:
        message: dict[str, Any] = {
            "data": base64.b64encode(msg.data).decode(),
            "messageId": msg.message_id,
            "message_id": msg.message_id,
            "publishTime": publish_time,
            "publish_time": publish_time,
        }
        if msg.attributes:
            message["attributes"] = dict(msg.attributes)
        if msg.ordering_key:
            message["orderingKey"] = msg.ordering_key
        envelope: dict[str, Any] = {"message": message, "subscription": subscription}
        if delivery_attempt:
            envelope["deliveryAttempt"] = delivery_attempt
        body = json.dumps(envelope).encode()
        headers["Content-Type"] = "application/json"
    if push_config.HasField("oidc_token"):
        headers["Authorization"] = f"Bearer {oidc_token(push_config)}"
    return body, headers


class Pusher:
    """One thread that hands the push subscriptions' messages to a pool of HTTP workers."""

    def __init__(self, state: Any, interval: float = 0.05):  # a server.PubSubState (no import: no cycle)
        self.state = state
        self.interval = interval
        self.inflight: dict[str, int] = {}
        self._stopped = threading.Event()
        self._pool = futures.ThreadPoolExecutor(PUSH_WORKERS, thread_name_prefix="pubsub-push")
        self._http = httpx.Client(follow_redirects=False)
        self._thread = threading.Thread(target=self._loop, name="pubsub-emulator-pusher", daemon=True)

    def start(self) -> Pusher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        self.state.push_wakeup.set()
        self._thread.join(timeout=2)
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._http.close()

    def _loop(self) -> None:
        while not self._stopped.is_set():
            self.state.push_wakeup.wait(self.interval)
            self.state.push_wakeup.clear()
            try:
                self._dispatch()
            except Exception:
                log.exception("pubsub emulator: push dispatch failed")

    def _dispatch(self) -> None:
        state = self.state
        with state.lock:
            work = []
            for name, sub in state.subs.items():
                if not sub.pb.push_config.push_endpoint:
                    continue
                room = MAX_OUTSTANDING_PER_SUBSCRIPTION - self.inflight.get(name, 0)
                if room <= 0:
                    continue
                batch = state._deliver(sub, room, sub.pb.ack_deadline_seconds)
                if batch:
                    self.inflight[name] = self.inflight.get(name, 0) + len(batch)
                    work.extend((sub, b) for b in batch)
        for sub, (ack_id, msg, attempt, _) in work:
            if self._stopped.is_set():
                return
            self._pool.submit(self._push, sub, ack_id, msg, attempt)

    def _push(self, sub: Any, ack_id: str, msg: Any, attempt: int) -> None:
        config = sub.pb.push_config
        body, headers = push_request(sub.pb.name, config, msg, attempt)
        try:
            response = self._http.post(config.push_endpoint, content=body, headers=headers,
                                       timeout=sub.pb.ack_deadline_seconds)
            ok = response.status_code in SUCCESS_CODES
            outcome = str(response.status_code)
        except httpx.HTTPError as exc:
            ok, outcome = False, type(exc).__name__
        log.debug("push %s message %s attempt %s -> %s", sub.pb.name, msg.message_id, attempt, outcome)
        state = self.state
        with state.lock:
            self.inflight[sub.pb.name] = self.inflight.get(sub.pb.name, 1) - 1
            if sub.deleted or ack_id not in sub.outstanding:
                return  # the lease lapsed meanwhile: the sweeper already released it
            if ok:
                state._ack_locked(sub, [ack_id])
            else:
                state._modack_locked(sub, [ack_id], 0)
        state.push_wakeup.set()
