"""Google's official Pub/Sub emulator (``gcloud beta emulators pubsub start``), found and started without gcloud.

The local stack and the tests can run either emulator: ``builtin`` (``infra.local.pubsub_emulator``, always there,
faster, with push, filters and backoff) or ``gcloud`` (the one users run; Debian package
``google-cloud-cli-pubsub-emulator``, Java 17). ``auto`` picks gcloud's when it is installed.

``gcloud beta emulators pubsub start`` only execs ``platform/pubsub-emulator/bin/cloud-pubsub-emulator`` from the
SDK; starting that launcher directly skips gcloud's own start-up and leaves one process tree to stop.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

CHOICES = ("auto", "gcloud", "builtin")
LAUNCHER = Path("platform") / "pubsub-emulator" / "bin" / "cloud-pubsub-emulator"


def launcher() -> Path | None:
    """The official emulator's launcher, or None when gcloud or its pubsub-emulator component is missing."""
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        return None
    path = Path(os.path.realpath(gcloud)).parent.parent / LAUNCHER
    return path if path.is_file() and shutil.which("java") else None


def available() -> bool:
    return launcher() is not None


def resolve(choice: str) -> str:
    """``auto`` -> ``gcloud`` when installed, else ``builtin``; ``gcloud`` when it is missing is an error."""
    if choice not in CHOICES:
        raise ValueError(f"--pubsub must be one of {', '.join(CHOICES)}, not {choice!r}")
    if choice == "auto":
        return "gcloud" if available() else "builtin"
    if choice == "gcloud" and not available():
        raise ValueError("--pubsub=gcloud: the official emulator is not installed (install the Debian package "
                         "google-cloud-cli-pubsub-emulator, or 'gcloud components install pubsub-emulator', and "
                         "Java 17), or use --pubsub=builtin")
    return choice


def command(host: str, port: int) -> list[str]:
    path = launcher()
    if path is None:
        raise ValueError("the official Pub/Sub emulator is not installed")
    return [str(path), f"--host={host}", f"--port={port}"]


def start(host: str, port: int, log, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start it in a session of its own (stopping the session stops the JVM too); readiness is the caller's."""
    return subprocess.Popen(command(host, port), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            env=env, start_new_session=True)
