"""The BigQuery module: the one client factory, the dataset rule, and table and view administration.

Everything that talks to BigQuery (the sink, reference data, training, the local stack, the tools) gets its client
from :func:`client_for`, which honours ``BIGQUERY_EMULATOR_HOST`` (the local emulator, anonymous credentials)
and otherwise reaches real BigQuery with application-default credentials; every ``project:dataset`` is read
by :func:`parse_dataset`.

Tables: :func:`ensure_dataset_and_tables` creates the dataset and one table per ``schemas.records.TABLES``
entry (schema from ``schemas.derive``, DAY partitioning, clustering), then the views. What the local emulator
(bqemulator) does with those definitions is measured in ``tests/e2e/test_bigquery.py``: partitioning and
clustering are stored and reported but have no physical effect; ``REQUIRED`` is not enforced on ``insertAll``
and unknown fields are dropped, where real BigQuery rejects both.

Views: one GoogleSQL file per view in ``schemas/views/``.
Each file is named after its view (``speed_to_lead.sql`` -> view ``speed_to_lead``), starts with a ``--``
comment saying which question the view answers (it becomes the view's description), and names tables as
```{project}.{dataset}.<table>``` with the literal placeholders ``{project}`` and ``{dataset}``, which
:func:`render` replaces (Terraform replaces the same two placeholders).

:func:`ensure_views` creates every view through the tables API (``tables.insert`` with a ``view`` and
``useLegacySql: false``, what Terraform's ``google_bigquery_table`` sends too), or updates the query and
description of an existing view; then it checks each view compiles with a dry-run ``SELECT *`` (free on
BigQuery). What the local emulator (bqemulator 1.4 over DuckDB, queries translated by SQLGlot) does
differently, measured in ``tests/e2e/test_views.py``:

* It accepts any view query at creation and reports errors only when the view is queried, so the dry run
  is what catches a broken view locally.
* ``tables.get`` returns neither the view query nor a schema, so an existing view cannot be compared and is
  always updated (reported as ``updated view``; on BigQuery an unchanged view is ``existing view``).
* A view made through the API cannot be replaced with ``CREATE OR REPLACE VIEW`` DDL (DuckDB: "Existing
  object ... is of type Table"); use the API (this module) or drop it first.
* The SQL avoids ``ARRAY_AGG(... IGNORE NULLS ORDER BY ... LIMIT n)`` (SQLGlot mistranslates it; the files
  use ``ROW_NUMBER()`` in a subquery instead) and ``APPROX_QUANTILES`` (approximate on BigQuery, computed
  differently by DuckDB, so tests could not pin its numbers; the files use exact ``PERCENTILE_CONT`` as an
  analytic function, which both engines compute the same way, with linear interpolation). GROUP BY names
  are never both a column and a SELECT alias (the engines resolve that ambiguity differently).
  ``TIMESTAMP_DIFF(a, b, SECOND)`` counts second boundaries crossed in the emulator (0.2 s across a boundary is
  1) but truncates on BigQuery (0); durations are ``TIMESTAMP_DIFF(a, b, MICROSECOND) / 1000000``, exact in both.

Command line (``BIGQUERY_EMULATOR_HOST`` selects the emulator)::

    python -m schemas.bigquery --project P --dataset D            # prints the rendered SQL of every view
    python -m schemas.bigquery --project P --dataset D --create   # creates the dataset, tables and views
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from schemas.derive import bigquery_schema
from schemas.records import RETENTION_DAYS, TABLES

EMULATOR_HOST_ENV = "BIGQUERY_EMULATOR_HOST"
VIEWS_DIR = Path(__file__).resolve().with_name("views")
PLACEHOLDERS = ("{project}", "{dataset}")

# Project ids: 6-30 lower-case letters, digits or hyphens, starting with a letter, optionally "domain:" prefixed.
# Dataset ids: letters, digits, underscores. No named groups: DATASET_SPEC is also a Flex Template regex (Java).
PROJECT_ID = r"(?:[a-z0-9.\-]+:)?[a-z][a-z0-9\-]{4,28}[a-z0-9]"
DATASET_ID = r"[A-Za-z0-9_]{1,1024}"
DATASET_SPEC = re.compile(rf"^{PROJECT_ID}[:.]{DATASET_ID}$")
_PROJECT_RE = re.compile(rf"^{PROJECT_ID}$")
_DATASET_RE = re.compile(rf"^{DATASET_ID}$")
_LEFTOVER = re.compile(r"\{[A-Za-z_]+\}")


# --------------------------------------------------------------------------------------
# The dataset rule and the client
# --------------------------------------------------------------------------------------


def check_project(project: str) -> str:
    if not isinstance(project, str) or not _PROJECT_RE.match(project):
        raise ValueError(
            f"invalid BigQuery project id {project!r}: it must be 6-30 lower-case letters, digits or hyphens, "
            "start with a letter and not end with a hyphen")
    return project


def check_dataset_id(dataset: str) -> str:
    if not isinstance(dataset, str) or not _DATASET_RE.match(dataset):
        raise ValueError(f"invalid BigQuery dataset id {dataset!r}: it may hold only letters, digits and _")
    return dataset


def parse_dataset(spec: str) -> tuple[str, str]:
    """``"project:dataset"`` or ``"project.dataset"`` -> ``(project, dataset)``; ValueError explains bad input."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError("BigQuery dataset is empty; expected 'project:dataset' or 'project.dataset'")
    spec = spec.strip()
    cut = max(spec.rfind(":"), spec.rfind("."))
    if cut <= 0 or cut == len(spec) - 1:
        raise ValueError(f"BigQuery dataset {spec!r}: expected 'project:dataset' or 'project.dataset'")
    project, dataset = spec[:cut], spec[cut + 1:]
    try:
        return check_project(project), check_dataset_id(dataset)
    except ValueError as e:
        raise ValueError(f"BigQuery dataset {spec!r}: {e}") from None


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


Retention = dict[str, float | None]  # policy -> days a partition is kept (None: kept)


def parse_retention(items: list[str] | None) -> Retention:
    """``["events=365", "history=none"]`` -> the policies they set; ValueError names a bad item."""
    out: Retention = {}
    for item in items or []:
        policy, sep, days = item.partition("=")
        if not sep or policy not in RETENTION_DAYS:
            raise ValueError(f"retention {item!r}: expected POLICY=DAYS with POLICY one of {sorted(RETENTION_DAYS)}")
        if days.strip().lower() in ("none", "0", ""):
            out[policy] = None
            continue
        try:
            out[policy] = float(days)
        except ValueError:
            raise ValueError(f"retention {item!r}: DAYS must be a number of days or 'none'") from None
        if out[policy] < 1 / 24:  # BigQuery refuses expirations under an hour
            raise ValueError(f"retention {item!r}: at least one hour (1/24 day)")
    return out


def partition_expiration_days(name: str, retention: Retention | None = None) -> float | None:
    """Days the partitions of table ``name`` are kept under ``retention`` (else the defaults); None: kept."""
    policy = TABLES[name].retention
    if policy is None:
        return None
    return (retention or {}).get(policy, RETENTION_DAYS[policy])


def table_definition(project: str, dataset: str, name: str, retention: Retention | None = None):
    """The ``bigquery.Table`` for ``schemas.records.TABLES[name]``: schema, DAY partitioning (expiring as
    ``retention``, else ``schemas.records.RETENTION_DAYS``, says), clustering."""
    from google.cloud import bigquery

    spec = TABLES[name]
    table = bigquery.Table(
        f"{project}.{dataset}.{spec.name}",
        schema=[bigquery.SchemaField.from_api_repr(f) for f in bigquery_schema(spec.record)],
    )
    days = partition_expiration_days(name, retention)
    table.time_partitioning = bigquery.TimePartitioning(
        type_=bigquery.TimePartitioningType.DAY, field=spec.partition_field,
        expiration_ms=round(days * 86_400_000) if days else None,
    )
    table.clustering_fields = list(spec.cluster_fields) or None
    table.description = spec.description
    return table


def _set_expiration(client, existing, wanted) -> str:
    """Brings an existing table's partition expiration to ``wanted``'s; what changed, for the report."""
    have = existing.time_partitioning.expiration_ms if existing.time_partitioning else None
    want = wanted.time_partitioning.expiration_ms
    if existing.time_partitioning is None or have == want:
        return ""
    existing.time_partitioning.expiration_ms = want
    client.update_table(existing, ["time_partitioning"])
    return f" (partitions now kept {want / 86_400_000:g} days)" if want else " (partitions now kept)"


def _schema_key(fields: Any) -> list[tuple[str, str, str]]:
    out = []
    for f in fields:
        d = f if isinstance(f, dict) else f.to_api_repr()
        out.append((d["name"], d["type"].upper(), (d.get("mode") or "NULLABLE").upper()))
    return out


def ensure_dataset_and_tables(project: str, dataset: str, *, client=None, location: str = "US",
                              strict_views: bool = False, retention: Retention | None = None) -> list[str]:
    """Create the dataset and every table of ``schemas.records.TABLES`` that does not exist yet, then the views.

    Idempotent: existing tables are left alone (an existing table whose columns differ from the records
    is reported as ``existing (schema differs: ...)``, never altered; only its partition expiration is set to what
    ``retention`` says, reported as ``(partitions now kept N days)``). Returns one line per object,
    e.g. ``"created table leadflow-test.leadflow.leads"``, then one line per view (``ensure_views``)
    (``"created view ..."``, ``"updated view ..."``: views are always brought up to date).
    """
    from google.api_core.exceptions import Conflict, NotFound
    from google.cloud import bigquery

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
        wanted = table_definition(project, dataset, name, retention)
        ref = f"{ds_ref}.{name}"
        existing = get_or_create_table(client, wanted)
        if existing is None:
            report.append(f"created table {ref}")
            continue
        have, want = _schema_key(existing.schema), _schema_key(wanted.schema)
        if have == want:
            line = f"existing table {ref}"
        else:
            diff = sorted(set(want) ^ set(have))
            line = f"existing table {ref} (schema differs: {diff})"
        report.append(line + _set_expiration(client, existing, wanted))
    # the dashboards' views (schemas/views/*.sql)
    report.extend(ensure_views(client, project, dataset, strict=strict_views))
    return report


# --------------------------------------------------------------------------------------
# Views
# --------------------------------------------------------------------------------------


class ViewError(RuntimeError):
    """A view file is malformed, or a view does not compile against its tables."""


@dataclass(frozen=True)
class View:
    """One view: its name, the question it answers (its leading comment) and its GoogleSQL template."""

    name: str
    path: Path
    question: str
    template: str

    def sql(self, project: str, dataset: str) -> str:
        return render(self.template, project, dataset)


def _question(path: Path, text: str) -> str:
    lines = []
    for line in text.splitlines():
        if not line.startswith("--"):
            break
        lines.append(line[2:].strip())
    question = " ".join(lines).strip()
    if not question.startswith("Question:"):
        raise ViewError(f"{path}: must start with a '-- Question: ...' comment saying what the view answers")
    return question.removeprefix("Question:").strip()


def load_views(directory: Path = VIEWS_DIR) -> list[View]:
    """Every ``*.sql`` file of ``directory`` as a :class:`View`, sorted by name."""
    views = []
    for path in sorted(directory.glob("*.sql")):
        text = path.read_text(encoding="utf-8")
        if not re.fullmatch(r"[a-z][a-z0-9_]*", path.stem):
            raise ViewError(f"{path}: a view file name must be a lower-case identifier")
        for placeholder in PLACEHOLDERS:
            if placeholder not in text:
                raise ViewError(f"{path}: name tables `{{project}}.{{dataset}}.<table>` ({placeholder} missing)")
        views.append(View(path.stem, path, _question(path, text), text))
    if not views:
        raise ViewError(f"no view files in {directory}")
    return views


def view_names() -> list[str]:
    return [v.name for v in load_views()]


def render(template: str, project: str, dataset: str) -> str:
    """The SQL with ``{project}`` and ``{dataset}`` replaced; raises ``ValueError`` on an invalid id."""
    check_project(project)
    check_dataset_id(dataset)
    sql = template.replace("{project}", project).replace("{dataset}", dataset)
    leftover = _LEFTOVER.search(sql)
    if leftover:
        raise ValueError(f"unknown placeholder {leftover.group(0)} (only {{project}} and {{dataset}} exist)")
    return sql.rstrip() + "\n"  # a trailing comment must not swallow what the engine wraps around the query


def get_or_create_table(client, wanted):
    """The existing table or view of ``wanted``'s id, or None after creating ``wanted`` (a creation raced by
    another caller returns what that caller created). Serves both the tables and the views."""
    from google.api_core.exceptions import Conflict, NotFound

    try:
        return client.get_table(wanted.reference)
    except NotFound:
        try:
            client.create_table(wanted)
            return None
        except Conflict:
            return client.get_table(wanted.reference)


def ensure_views(client, project: str, dataset: str, *, validate: bool = True, strict: bool = True) -> list[str]:
    """Create or update every view in ``project.dataset``; returns one line per view.

    Lines read ``created view p.d.name``, ``updated view p.d.name`` or ``existing view p.d.name``
    (unchanged). An existing *table* of a view's name is left alone and raises :class:`ViewError`.
    With ``validate``, each view is dry-run (``SELECT *``); a failure raises :class:`ViewError` naming the
    view, its file and BigQuery's message, or with ``strict=False`` is appended to the view's line as
    ``(does not compile: ...)`` (what ``leadflow local up`` shows when, say, an old persistent table lacks a
    column).
    """
    from google.api_core.exceptions import GoogleAPICallError
    from google.cloud import bigquery

    report = []
    views = load_views()
    for view in views:
        ref = f"{project}.{dataset}.{view.name}"
        sql = view.sql(project, dataset)
        wanted = bigquery.Table(ref)
        wanted.view_query = sql
        wanted.view_use_legacy_sql = False
        wanted.description = view.question
        existing = get_or_create_table(client, wanted)
        if existing is None:
            report.append(f"created view {ref}")
            continue
        if existing.table_type != "VIEW":
            raise ViewError(f"{ref} exists as a {existing.table_type}, not a view; left alone")
        if existing.view_query == sql and existing.description == view.question:
            report.append(f"existing view {ref}")
            continue
        existing.view_query = sql
        existing.view_use_legacy_sql = False
        existing.description = view.question
        client.update_table(existing, ["view_query", "view_use_legacy_sql", "description"])
        report.append(f"updated view {ref}")
    if validate:
        config = bigquery.QueryJobConfig(dry_run=True, use_query_cache=False)
        for i, view in enumerate(views):
            try:
                client.query(f"SELECT * FROM `{project}.{dataset}.{view.name}`", job_config=config)
            except GoogleAPICallError as e:
                problem = f"does not compile: {e.message}"
                if strict:
                    raise ViewError(f"view {view.name} ({view.path.name}) {problem}") from e
                report[i] += f" ({problem})"
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m schemas.bigquery", description=__doc__.splitlines()[0])
    parser.add_argument("--project", required=True)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--create", action="store_true",
                        help="create the dataset, tables and views (else print the views' SQL)")
    args = parser.parse_args(argv)
    try:
        check_project(args.project)
        check_dataset_id(args.dataset)
        if not args.create:
            for view in load_views():
                print(f"-- view {args.project}.{args.dataset}.{view.name}\n{view.sql(args.project, args.dataset)}")
            return 0
        for line in ensure_dataset_and_tables(args.project, args.dataset, strict_views=True):
            print(line)
    except (ValueError, ViewError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
