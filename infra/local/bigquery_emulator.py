"""A local BigQuery: start/stop the ``bqemulator`` process offline, and create Leadflow's tables.

``bqemulator`` speaks the real BigQuery REST API (and the Storage gRPC API) over DuckDB. Two facts
shape this module:

* It refuses to start without DuckDB's ``spatial`` extension, which it ``INSTALL``s from the
  network. :func:`ensure_spatial_extension` installs it offline from the ``duckdb-extension-spatial``
  wheel (``duckdb_extensions.import_extension``) into DuckDB's per-user extension directory
  (``~/.duckdb/extensions/v<version>/<platform>``); the emulator's ``INSTALL spatial`` then finds it
  locally. (Its optional ``avro`` extension still fails to download; the emulator logs a warning and
  carries on.)
* google-cloud-bigquery reaches it through ``schemas.bigquery.client_for`` (``BIGQUERY_EMULATOR_HOST``);
  ``schemas.bigquery`` also creates the tables and views and says what the emulator does with them.

Command line (stays in the foreground until SIGTERM/SIGINT)::

    python -m infra.local.bigquery_emulator --port 9050 --grpc_port 9060 --create leadflow-dev.leadflow
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

from infra.local.processes import stop_process
from schemas.bigquery import EMULATOR_HOST_ENV, client_for, ensure_dataset_and_tables, parse_dataset

_log = logging.getLogger(__name__)



class EmulatorError(RuntimeError):
    """The emulator could not be started or did not become ready."""


# --------------------------------------------------------------------------------------
# Process
# --------------------------------------------------------------------------------------


def ensure_spatial_extension() -> str:
    """Install DuckDB's spatial extension from the local wheel (no network). Returns 'installed' or 'present'."""
    import duckdb
    import duckdb_extensions

    con = duckdb.connect()
    try:
        row = con.sql(
            "SELECT installed FROM duckdb_extensions() WHERE extension_name = 'spatial'"
        ).fetchone()
        if row and row[0]:
            return "present"
        duckdb_extensions.import_extension("spatial", con=con)
        con.sql("LOAD spatial")  # proves the installed file matches this DuckDB build
        return "installed"
    finally:
        con.close()


def _log_tail(path: str | None, lines: int = 30) -> str:
    if not path:
        return "(no log)"
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError as e:
        return f"(log unreadable: {e})"


def start(
    host: str = "127.0.0.1",
    port: int = 9050,
    grpc_port: int = 9060,
    data_dir: str | None = None,
    log_path: str | None = None,
    *,
    project: str | None = None,
    log_level: str = "warning",
    ready_timeout: float | None = 60,
) -> subprocess.Popen:
    """Start ``bqemulator start`` as a child process (in-memory unless ``data_dir`` is given).

    Waits until the REST API answers unless ``ready_timeout`` is None. The returned ``Popen`` carries
    ``host_port`` and ``log_path`` attributes; stop it with :func:`stop`.
    """
    ensure_spatial_extension()
    if log_path is None:
        fd, log_path = tempfile.mkstemp(prefix="bqemulator-", suffix=".log")
        os.close(fd)
    cmd = [
        sys.executable, "-m", "infra.local.bigquery_speedups", "start",  # bqemulator, its SQL parses remembered
        "--rest-host", host, "--rest-port", str(port),
        "--grpc-host", host, "--grpc-port", str(grpc_port),
        "--log-level", log_level, "--log-format", "json",
    ]
    if data_dir:
        os.makedirs(data_dir, exist_ok=True)
        cmd += ["--persistent", "--data-dir", data_dir]
    else:
        cmd += ["--ephemeral"]
    if project:
        cmd += ["--project", project]
    log = open(log_path, "ab")  # noqa: SIM115 - closed by stop()
    try:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    except BaseException:
        log.close()
        raise
    proc.host_port = f"{host}:{port}"  # type: ignore[attr-defined]
    proc.log_path = log_path  # type: ignore[attr-defined]
    proc._leadflow_log = log  # type: ignore[attr-defined]
    if ready_timeout is not None:
        try:
            wait_ready(proc.host_port, timeout=ready_timeout, proc=proc)  # type: ignore[attr-defined]
        except BaseException:
            stop(proc)
            raise
    return proc


def wait_ready(host_port: str, timeout: float = 60, *, proc: subprocess.Popen | None = None) -> float:
    """Poll the REST API (list datasets) until it answers; returns the seconds waited.

    Raises :class:`EmulatorError` with the log tail when ``proc`` died, or when ``timeout`` passes.
    """
    url = f"http://{host_port}/bigquery/v2/projects/readiness-probe/datasets"
    log_path = getattr(proc, "log_path", None)
    t0 = time.monotonic()
    last: str = "no answer yet"
    while True:
        if proc is not None and proc.poll() is not None:
            raise EmulatorError(
                f"bqemulator exited with code {proc.returncode} before it was ready on {host_port}.\n"
                f"--- log tail ({log_path}) ---\n{_log_tail(log_path)}"
            )
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return time.monotonic() - t0
                last = f"HTTP {resp.status}"
        except urllib.error.HTTPError as e:
            last = f"HTTP {e.code}"
        except (OSError, urllib.error.URLError) as e:
            last = str(e)
        if time.monotonic() - t0 > timeout:
            raise EmulatorError(
                f"bqemulator did not answer on {host_port} within {timeout:.0f}s (last: {last}).\n"
                f"--- log tail ({log_path}) ---\n{_log_tail(log_path)}"
            )
        time.sleep(0.2)


def stop(proc: subprocess.Popen, timeout: float = 10) -> int | None:
    """Stop the emulator: SIGTERM, then SIGKILL after ``timeout`` seconds. Returns the exit code."""
    stop_process(proc, timeout)
    log = getattr(proc, "_leadflow_log", None)
    if log is not None:
        log.close()
    return proc.returncode


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------


def _dataset_arg(spec: str) -> tuple[str, str]:
    try:
        return parse_dataset(spec)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.local.bigquery_emulator",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9050, help="REST port")
    parser.add_argument("--grpc_port", type=int, default=9060, help="Storage API gRPC port")
    parser.add_argument("--data_dir", default=None, help="persist to this directory (default: in memory)")
    parser.add_argument("--log_path", default=None, help="emulator log file (default: a temp file)")
    parser.add_argument("--create", metavar="PROJECT.DATASET", type=_dataset_arg, action="append",
                        default=[], help="create the dataset and Leadflow's tables (repeatable)")
    parser.add_argument("--ready_timeout", type=float, default=60)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    stopping = threading.Event()

    def _on_signal(signum, _frame):
        stopping.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _on_signal)

    t0 = time.monotonic()
    try:
        proc = start(args.host, args.port, args.grpc_port, args.data_dir, args.log_path,
                     ready_timeout=args.ready_timeout)
    except EmulatorError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    host_port = proc.host_port  # type: ignore[attr-defined]
    try:
        for project, dataset in args.create:
            for line in ensure_dataset_and_tables(project, dataset, client=client_for(project, host_port)):
                print(line, flush=True)
        print(f"bigquery emulator ready on {host_port} (grpc {args.host}:{args.grpc_port}) "
              f"in {time.monotonic() - t0:.1f}s; export {EMULATOR_HOST_ENV}={host_port}; "
              f"log: {proc.log_path}", flush=True)  # type: ignore[attr-defined]
        while not stopping.wait(0.5):
            if proc.poll() is not None:
                print(f"error: bqemulator exited with code {proc.returncode}\n{_log_tail(proc.log_path)}",
                      file=sys.stderr)  # type: ignore[attr-defined]
                return 1
    finally:
        with contextlib.suppress(Exception):
            stop(proc)
    print("bigquery emulator stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
