"""A local BigQuery: start/stop the ``bqemulator`` process offline, and create Leadflow's tables.

``bqemulator`` speaks the real BigQuery REST API (and the Storage gRPC API) over DuckDB. Two facts
shape this module:

* It refuses to start without DuckDB's ``spatial`` extension, which it ``INSTALL``s from the
  network. :func:`ensure_spatial_extension` installs it offline from the ``duckdb-extension-spatial``
  wheel (``duckdb_extensions.import_extension``) into DuckDB's per-user extension directory
  (``~/.duckdb/extensions/v<version>/<platform>``); the emulator's ``INSTALL spatial`` then finds it
  locally. (Its optional ``avro`` extension still fails to download; the emulator logs a warning and
  carries on.)
* google-cloud-bigquery reaches it through ``client_options={"api_endpoint": "http://host:port"}``
  with ``AnonymousCredentials`` (:func:`client_for`); ``BIGQUERY_EMULATOR_HOST`` selects it.

What bqemulator 1.4.0 does with Leadflow's table definitions (measured, see tests/e2e/test_bigquery.py):

* Partitioning and clustering are stored and reported back exactly as sent (``Table.time_partitioning``,
  ``Table.clustering_fields``), ``INFORMATION_SCHEMA.PARTITIONS`` lists one partition per day of the
  partition column and ``INFORMATION_SCHEMA.COLUMNS.clustering_ordinal_position`` is set; but the data
  sits in one DuckDB table: partition decorators (``table$20261120``) are not found, and clustering
  has no physical effect. ``ensure_dataset_and_tables`` sends the same calls either way, so real
  BigQuery gets DAY partitioning and clustering.
* Column descriptions and table descriptions are kept.
* ``REQUIRED`` is not enforced on ``insertAll`` (a missing or null REQUIRED value is stored as NULL),
  and unknown fields are silently dropped; real BigQuery rejects both.

Command line (stays in the foreground until SIGTERM/SIGINT)::

    python -m infra.bigquery_emulator --port 9050 --grpc_port 9060 --create leadflow-dev.leadflow
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
from typing import Any

from infra.processes import stop_process

_log = logging.getLogger(__name__)

EMULATOR_HOST_ENV = "BIGQUERY_EMULATOR_HOST"


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
        sys.executable, "-m", "bqemulator", "start",
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
# Client, dataset and tables
# --------------------------------------------------------------------------------------


def client_for(project: str, host_port: str | None = None):
    """A ``bigquery.Client``: the emulator at ``host_port`` (or ``$BIGQUERY_EMULATOR_HOST``), else real BigQuery."""
    from google.cloud import bigquery

    host_port = host_port or os.environ.get(EMULATOR_HOST_ENV) or None
    if not host_port:
        return bigquery.Client(project=project)
    from google.auth.credentials import AnonymousCredentials

    endpoint = host_port if host_port.startswith(("http://", "https://")) else f"http://{host_port}"
    return bigquery.Client(
        project=project, credentials=AnonymousCredentials(), client_options={"api_endpoint": endpoint}
    )


def table_definition(project: str, dataset: str, name: str):
    """The ``bigquery.Table`` for ``schemas.records.TABLES[name]``: schema, DAY partitioning, clustering."""
    from google.cloud import bigquery

    from schemas.derive import bigquery_schema
    from schemas.records import TABLES

    spec = TABLES[name]
    table = bigquery.Table(
        f"{project}.{dataset}.{spec.name}",
        schema=[bigquery.SchemaField.from_api_repr(f) for f in bigquery_schema(spec.record)],
    )
    table.time_partitioning = bigquery.TimePartitioning(
        type_=bigquery.TimePartitioningType.DAY, field=spec.partition_field
    )
    table.clustering_fields = list(spec.cluster_fields) or None
    table.description = spec.description
    return table


def _schema_key(fields: Any) -> list[tuple[str, str, str]]:
    out = []
    for f in fields:
        d = f if isinstance(f, dict) else f.to_api_repr()
        out.append((d["name"], d["type"].upper(), (d.get("mode") or "NULLABLE").upper()))
    return out


def ensure_dataset_and_tables(project: str, dataset: str, *, client=None, location: str = "US") -> list[str]:
    """Create the dataset and every table of ``schemas.records.TABLES`` that does not exist yet, then the views.

    Idempotent: existing tables are left alone (an existing table whose columns differ from the records
    is reported as ``existing (schema differs: ...)``, never altered). Returns one line per object,
    e.g. ``"created table leadflow-test.leadflow.leads"``, then one line per view of ``schemas.views``
    (``"created view ..."``, ``"updated view ..."``: views are always brought up to date).
    """
    from google.api_core.exceptions import Conflict, NotFound
    from google.cloud import bigquery

    from schemas.records import TABLES
    from schemas.views import get_or_create_table

    client = client or client_for(project)
    report = []
    ds_ref = f"{project}.{dataset}"
    try:
        client.get_dataset(ds_ref)
        report.append(f"existing dataset {ds_ref}")
    except NotFound:
        ds = bigquery.Dataset(ds_ref)
        ds.location = location
        ds.description = "Leadflow lead pipeline output."
        try:
            client.create_dataset(ds)
            report.append(f"created dataset {ds_ref}")
        except Conflict:
            report.append(f"existing dataset {ds_ref}")
    for name in TABLES:
        wanted = table_definition(project, dataset, name)
        ref = f"{ds_ref}.{name}"
        existing = get_or_create_table(client, wanted)
        if existing is None:
            report.append(f"created table {ref}")
            continue
        have, want = _schema_key(existing.schema), _schema_key(wanted.schema)
        if have == want:
            report.append(f"existing table {ref}")
        else:
            diff = sorted(set(want) ^ set(have))
            report.append(f"existing table {ref} (schema differs: {diff})")
    from schemas.views import ensure_views

    report.extend(ensure_views(client, project, dataset, strict=False))  # dashboards' views (schemas/views/*.sql)
    return report


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------


def _parse_project_dataset(spec: str) -> tuple[str, str]:
    for sep in (":", "."):
        if sep in spec:
            project, _, dataset = spec.rpartition(sep)
            if project and dataset:
                return project, dataset
    raise argparse.ArgumentTypeError(f"expected project.dataset or project:dataset, got {spec!r}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.bigquery_emulator", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9050, help="REST port")
    parser.add_argument("--grpc_port", type=int, default=9060, help="Storage API gRPC port")
    parser.add_argument("--data_dir", default=None, help="persist to this directory (default: in memory)")
    parser.add_argument("--log_path", default=None, help="emulator log file (default: a temp file)")
    parser.add_argument("--create", metavar="PROJECT.DATASET", type=_parse_project_dataset, action="append",
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
