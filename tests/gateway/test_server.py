"""The gateway as it runs: uvicorn on a free port (real HTTP), the SMTP receiver beside it, and the
``leadflow gateway`` command; everything published to the real Pub/Sub emulator."""

from __future__ import annotations

import os
import smtplib
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import uvicorn
from twilio.request_validator import RequestValidator

from gateway.app import create_app
from gateway.smtp import start_smtp
from tests.gateway.conftest import fixture_bytes

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(url)


@pytest.fixture
def served(make_config):
    """The app on uvicorn in a thread and the SMTP receiver, both on free ports."""
    port, smtp_port = free_port(), free_port()
    base = f"http://127.0.0.1:{port}"
    app = create_app(make_config(public_url=base))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_http(base + "/healthz")
    smtp = start_smtp(app.state.door, "127.0.0.1", smtp_port)
    yield base, smtp_port
    smtp.stop()
    server.should_exit = True
    thread.join(timeout=10)


def test_real_http_and_smtp(served, bus, test_secrets):
    base, smtp_port = served
    sms = fixture_bytes("twilio_sms.form")
    url = base + "/webhooks/twilio/sms"
    params = dict(httpx.QueryParams(sms.decode()).multi_items())
    signature = RequestValidator(test_secrets.twilio_auth_token).compute_signature(url, params)
    r = httpx.post(url, content=sms, headers={"X-Twilio-Signature": signature,
                                              "Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200 and "<Response" in r.text
    r = httpx.post(base + "/v1/leads", json={"external_id": "H-1", "phone": "+14155550123"},
                   headers={"Authorization": f"Bearer {test_secrets.api_key}"})
    assert r.status_code == 202
    with smtplib.SMTP("127.0.0.1", smtp_port, timeout=10) as smtp:
        smtp.sendmail("leads@portal.example", ["inbox@leadflow.example"], fixture_bytes("email_lead.eml"))
        smtp.sendmail("someone@example.com", ["inbox@leadflow.example"], fixture_bytes("email_auto_reply.eml"))
    messages = {m.attributes["provider"]: m for m in bus.pull("input", 3)}
    assert set(messages) == {"twilio_sms", "api", "inbound_email"}
    assert messages["twilio_sms"].data == sms
    mail = messages["inbound_email"]
    assert mail.attributes["to"] == "inbox@leadflow.example"
    assert mail.data.replace(b"\r\n", b"\n").rstrip() == fixture_bytes("email_lead.eml").rstrip()
    metrics = httpx.get(base + "/metrics").text
    assert 'endpoint="smtp",outcome="not_a_lead_auto_reply"} 1' in metrics


def test_leadflow_gateway_command(bus, pubsub_address, test_secrets):
    port = free_port()
    env = {**os.environ, "PUBSUB_EMULATOR_HOST": pubsub_address, "LEADFLOW_PROJECT": bus.project,
           "LEADFLOW_KNOWLARITY_SECRET": test_secrets.knowlarity_secret}
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "gateway", "--port", str(port), "--no-smtp"],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz")
        r = httpx.post(f"http://127.0.0.1:{port}/webhooks/knowlarity", content=fixture_bytes("knowlarity_call.json"),
                       params={"secret": test_secrets.knowlarity_secret})
        assert r.status_code == 200
        assert len(bus.pull("input", 1)) == 1
    finally:
        proc.terminate()
        output = proc.communicate(timeout=15)[0].decode(errors="replace")
    assert test_secrets.knowlarity_secret not in output  # no access log with the query string
    assert "+919876543210" not in output


def test_chunked_body_over_the_limit_is_413_without_reading_it_all(make_config, bus, test_secrets):
    """No Content-Length (chunked transfer): the body is read only up to the limit, then 413."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    app = create_app(make_config(public_url=base, max_body_bytes=10_000))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_http(base + "/healthz")
        sent = 0

        total = 32 * 1024 * 1024  # far over the limit, and more than loopback socket buffers hold

        def chunks():
            nonlocal sent
            while sent < total:
                sent += 65536
                yield b"x" * 65536

        try:
            r = httpx.post(base + "/webhooks/knowlarity", content=chunks(),
                           headers={"X-Leadflow-Secret": test_secrets.knowlarity_secret}, timeout=10)
            assert r.status_code == 413
        except httpx.HTTPError:
            pass  # the server may close the connection before the client finished sending: also refused
        assert sent < total
        small = httpx.post(base + "/webhooks/knowlarity", content=iter([fixture_bytes("knowlarity_call.json")]),
                           headers={"X-Leadflow-Secret": test_secrets.knowlarity_secret})
        assert small.status_code == 200  # a chunked body under the limit goes through
        (m,) = bus.pull("input", 1)
        assert m.data == fixture_bytes("knowlarity_call.json")
    finally:
        server.should_exit = True
        thread.join(timeout=10)
