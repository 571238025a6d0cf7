"""Fixtures for end-to-end tests against the local stack."""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from infra.local.processes import stop_process

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def pubsub_emulator() -> Iterator[str]:
    """A Pub/Sub emulator in its own process on a free port; PUBSUB_EMULATOR_HOST points at it.

    Started as ``python -m infra.local.pubsub_emulator --min-ack-deadline 1`` so tests can watch ack deadlines lapse in
    one second. Yields "host:port" and terminates the process at the end of the session.
    """
    from infra.local.pubsub_emulator import wait_ready

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "infra.local.pubsub_emulator", "--host", "127.0.0.1", "--port", str(port)]
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen([*cmd, "--min-ack-deadline", "1"], cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        try:
            try:
                wait_ready(address, timeout=30)
            except TimeoutError:
                proc.kill()
                log.seek(0)
                pytest.fail(f"pubsub emulator did not start: {log.read().decode(errors='replace')}")
            with pytest.MonkeyPatch.context() as mp:
                mp.setenv("PUBSUB_EMULATOR_HOST", address)
                yield address
        finally:
            stop_process(proc, timeout=10)


@pytest.fixture(scope="session")
def gcloud_pubsub_emulator() -> Iterator[str]:
    """Google's official emulator on a free port (skips when it is not installed). Yields "host:port"; unlike
    ``pubsub_emulator`` it does not set PUBSUB_EMULATOR_HOST for the session (``each_pubsub_emulator`` does it
    per test)."""
    from infra.local import gcloud_pubsub
    from infra.local.pubsub_emulator import wait_ready

    if not gcloud_pubsub.available():
        pytest.skip("the official Pub/Sub emulator (gcloud, Java) is not installed")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"127.0.0.1:{port}"
    with tempfile.TemporaryFile() as log:
        proc = gcloud_pubsub.start("127.0.0.1", port, log)
        try:
            try:
                wait_ready(address, timeout=60)
            except TimeoutError:
                log.seek(0)
                pytest.fail(f"the gcloud pubsub emulator did not start: {log.read().decode(errors='replace')}")
            yield address
        finally:
            stop_process(proc, timeout=10)


@dataclass(frozen=True)
class PubSubUnderTest:
    """The emulator a parametrized Pub/Sub test runs against: ``builtin`` (the project's) or ``gcloud``."""

    kind: str
    address: str


@pytest.fixture(params=["builtin", "gcloud"])
def each_pubsub_emulator(request, monkeypatch) -> PubSubUnderTest:
    """Each Pub/Sub-facing test once per emulator (gcloud's only where it is installed): PUBSUB_EMULATOR_HOST points
    at it for the test. The builtin one runs with ``--min-ack-deadline 1``; gcloud's takes 1 s deadlines as is."""
    fixture = "pubsub_emulator" if request.param == "builtin" else "gcloud_pubsub_emulator"
    address = request.getfixturevalue(fixture)
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", address)
    return PubSubUnderTest(request.param, address)


# Where the official emulator departs from what the Pub/Sub documentation promises (each seen on emulator 0.8.20,
# google-cloud-cli 528). A test hitting one is a strict xfail on gcloud's emulator: if a later release fixes it,
# the xfail fails and the entry goes.
GCLOUD_GAPS = {
    "push_202": "a push answered 202 Accepted is redelivered (documented as a success code)",
    "push_dead_letter": "push deliveries carry no deliveryAttempt and are never dead-lettered",
    "push_oidc": "no Authorization header: the emulator does not mint OIDC tokens",
    "filter": "subscription filters are accepted but not applied (every message is delivered)",
    "names": "a topic name with an empty project (projects//topics/abc) is accepted; ListTopics on a project "
             "without 'projects/' answers UNKNOWN (not INVALID_ARGUMENT)",
    "publish_sizes": "no size limits: 12 MB Publish requests, 257-byte attribute keys, 1025-byte values and "
                     "ordering keys are accepted (the service refuses them)",
}


def gcloud_gap(request, emulator: PubSubUnderTest, *gaps: str) -> None:
    """Mark the running test as a known defect of gcloud's emulator (strict xfail) when that is the one under test."""
    if emulator.kind == "gcloud":
        reasons = "; ".join(GCLOUD_GAPS[g] for g in gaps)
        request.applymarker(pytest.mark.xfail(reason=f"official emulator: {reasons}", strict=True))
