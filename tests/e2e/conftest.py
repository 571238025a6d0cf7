"""Fixtures for end-to-end tests against the local stack."""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
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
