"""Fixtures for the reliability scenarios: ONE local stack and ONE streaming pipeline per module.

The pipeline reaches BigQuery through :class:`TcpProxy`, so a test can make BigQuery unavailable (connections
refused and reset) and available again without losing what the in-memory emulator holds: a killed and restarted
``bqemulator`` comes back empty (its ``--persistent`` mode kept no streamed rows when tried), and between its
restart and ``local_stack.up`` re-creating the tables the sink would get permanent 404s. A refused connection is
what a BigQuery outage looks like to the sink.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from infra.local import stack as local_stack
from infra.local.processes import free_port, stop_process
from tests.helpers.reliability import Run, TcpProxy


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Run:
    home = tmp_path_factory.mktemp("stack")
    cfg = local_stack.StackConfig(pubsub_port=free_port(), bigquery_port=free_port(),
                                  bigquery_grpc_port=free_port(), scorer_port=free_port(), home=home)
    lines: list[str] = []
    saved = {k: os.environ.get(k) for k in cfg.env()}
    local_stack.up(cfg, out=lines.append)
    os.environ.update(cfg.env())
    proxy = TcpProxy((cfg.host, cfg.bigquery_port))
    log_path = home / "pipeline.log"
    log = log_path.open("wb")
    args = [*cfg.pipeline_args(), "--early_firing_seconds=5", "--scorer_retries=1"]
    env = {**os.environ, **cfg.env(), "BIGQUERY_EMULATOR_HOST": f"127.0.0.1:{proxy.port}"}
    command = [sys.executable, "-m", "pipelines.cli", "run", *args]
    pipeline = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    r = Run(cfg, pipeline, log_path, proxy, command=command, env=env)
    try:
        yield r
    finally:
        stop_process(r.pipeline)
        log.close()
        proxy.close()
        local_stack.down(cfg, out=lines.append)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
