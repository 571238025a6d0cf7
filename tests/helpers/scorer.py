"""Fixtures for the lead scorer: a tiny LightGBM booster in a temporary BentoML store, and real ``bentoml serve``.

A pytest plugin (``pytest_plugins`` in tests/conftest.py): a test requests ``scorer_store`` or ``scorer_server`` by
name; the builders and constants are plain names, imported from here. The booster is trained on random data with
:data:`FEATURES` and saved as ``lead_scorer`` with ``metadata={"feature_version": "test", "feature_names": FEATURES}``
into a BentoML home under pytest's tmp dir; the scorer reads everything else from that metadata.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
FEATURES = ["provider", "has_phone", "message_length", "sources_count"]
FEATURE_VERSION = "test"
TOKEN = "scorer-test-token"
SERVICE = "scoring.service:LeadScorer"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train_booster(seed: int = 0, n: int = 500):
    """A small binary LightGBM booster over FEATURES, with some NaNs so missing values take a learnt direction."""
    import lightgbm as lgb

    rng = np.random.default_rng(seed)
    x = np.column_stack(
        [
            rng.integers(0, 6, n).astype(float),
            rng.integers(0, 2, n).astype(float),
            rng.gamma(2.0, 80.0, n),
            rng.integers(1, 4, n).astype(float),
        ]
    )
    logit = 0.8 * x[:, 1] + 0.004 * x[:, 2] - 0.3 * x[:, 0] + 0.5 * x[:, 3] - 1.5
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    x[rng.random(x.shape) < 0.08] = np.nan
    params = {"objective": "binary", "num_leaves": 8, "learning_rate": 0.2, "verbose": -1, "num_threads": 1}
    return lgb.train(params, lgb.Dataset(x, y, feature_name=FEATURES), num_boost_round=15)


def make_rows(n: int, seed: int = 1) -> list[dict[str, float]]:
    """Feature dicts over FEATURES; about one value in ten is left out (missing)."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        row = {
            "provider": float(rng.integers(0, 6)),
            "has_phone": float(rng.integers(0, 2)),
            "message_length": float(np.round(rng.gamma(2.0, 80.0), 1)),
            "sources_count": float(rng.integers(1, 4)),
        }
        rows.append({k: v for k, v in row.items() if rng.random() > 0.1})
    return rows


def booster_scores(booster: Any, rows: list[dict[str, float]]) -> np.ndarray:
    """The booster's own predictions on feature dicts: FEATURES order, missing names as NaN."""
    x = np.array([[row.get(name, np.nan) for name in FEATURES] for row in rows], dtype=np.float64)
    return booster.predict(x)


def point_bentoml_at(home: Path) -> None:
    """Use ``home`` as BENTOML_HOME in this process, also if bentoml already resolved its (cached) store paths."""
    os.environ["BENTOML_HOME"] = str(home)
    os.environ["BENTOML_DO_NOT_TRACK"] = "true"
    from bentoml._internal.configuration.containers import BentoMLContainer
    from bentoml._internal.models import ModelStore

    for sub in ("models", "bentos", "tmp", "envs"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    BentoMLContainer.bentoml_home.set(str(home))
    BentoMLContainer.model_store_dir.set(str(home / "models"))
    BentoMLContainer.bento_store_dir.set(str(home / "bentos"))
    BentoMLContainer.tmp_bento_store_dir.set(str(home / "tmp"))
    BentoMLContainer.model_store.set(ModelStore(str(home / "models")))


@dataclass
class ScorerStore:
    home: Path
    tag: str
    booster: Any
    feature_names: list[str] = field(default_factory=lambda: list(FEATURES))

    @property
    def model_store_dir(self) -> str:
        return str(self.home / "models")


@pytest.fixture(scope="session")
def scorer_store(tmp_path_factory) -> ScorerStore:
    """A BentoML home with one ``lead_scorer`` model (the tiny booster); BENTOML_HOME points at it."""
    saved = {k: os.environ.get(k) for k in ("BENTOML_HOME", "BENTOML_DO_NOT_TRACK")}
    home = tmp_path_factory.mktemp("bentoml_home")
    point_bentoml_at(home)
    import bentoml
    import bentoml.lightgbm

    booster = train_booster()
    model = bentoml.lightgbm.save_model(
        "lead_scorer", booster, metadata={"feature_version": FEATURE_VERSION, "feature_names": FEATURES}
    )
    yield ScorerStore(home=home, tag=str(model.tag), booster=booster)
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


class ScorerServer:
    """One ``bentoml serve scoring.service:LeadScorer`` process group on a fixed port; start/stop/kill/restart."""

    def __init__(self, home: Path, port: int | None = None, token: str | None = None, ready_timeout: float = 60.0):
        self.home = home
        self.port = port or free_port()
        self.token = token
        self.ready_timeout = ready_timeout
        self.proc: subprocess.Popen | None = None
        self._log = None
        self.start_seconds: list[float] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def start(self) -> ScorerServer:
        env = {**os.environ, "BENTOML_HOME": str(self.home), "BENTOML_DO_NOT_TRACK": "true"}
        env.pop("LEADFLOW_SCORER_TOKEN", None)
        if self.token:
            env["LEADFLOW_SCORER_TOKEN"] = self.token
        if self._log is not None:
            self._log.close()
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - outlives this method; closed in close()
        cmd = [sys.executable, "-m", "bentoml", "serve", SERVICE, "--host", "127.0.0.1", "--port", str(self.port)]
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            cmd, cwd=REPO, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self._wait_ready()
        self.start_seconds.append(time.monotonic() - t0)
        return self

    def _wait_ready(self) -> None:
        import requests

        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                self._fail(f"bentoml serve exited with {self.proc.returncode} before it was ready")
            with contextlib.suppress(requests.RequestException):
                if requests.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return
            time.sleep(0.2)
        self._fail(f"bentoml serve was not ready on {self.url}/readyz within {self.ready_timeout:.0f} s")

    def log_tail(self, lines: int = 40) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        return "\n".join(self._log.read().decode(errors="replace").splitlines()[-lines:])

    def _fail(self, message: str) -> None:
        tail = self.log_tail()
        self.stop()
        pytest.fail(f"{message}\n--- server log tail ---\n{tail}")

    def _processes(self) -> list:
        """The server process and its descendants (circus starts each worker in its own session)."""
        import psutil

        if self.proc is None:
            return []
        try:
            root = psutil.Process(self.proc.pid)
            return [*root.children(recursive=True), root]
        except psutil.NoSuchProcess:
            return []

    def kill(self) -> None:
        """SIGKILL the server and its workers, and wait until the port refuses connections."""
        import psutil

        procs = self._processes()
        for p in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.send_signal(signal.SIGKILL)
        psutil.wait_procs(procs, timeout=10)
        if self.proc is not None:
            self.proc.wait(timeout=10)
            self.proc = None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) != 0:
                    return
            time.sleep(0.05)
        raise AssertionError(f"port {self.port} still accepts connections after the scorer was killed")

    def stop(self) -> None:
        """SIGTERM the server (it stops its workers), then SIGKILL whatever is left after 10 s."""
        import psutil

        procs = self._processes()
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.proc.terminate()
        _, alive = psutil.wait_procs(procs, timeout=10)
        for p in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.send_signal(signal.SIGKILL)
        psutil.wait_procs(alive, timeout=10)
        self.proc.wait(timeout=10)
        self.proc = None

    def close(self) -> None:
        self.stop()
        if self._log is not None:
            self._log.close()
            self._log = None


@pytest.fixture(scope="module")
def scorer_server(scorer_store: ScorerStore):
    """A real scorer with ``LEADFLOW_SCORER_TOKEN`` set to :data:`TOKEN`, ready on a free port."""
    server = ScorerServer(scorer_store.home, token=TOKEN)
    try:
        server.start()
        yield server
    finally:
        server.close()
