"""Where identity state lives, outside the job: ``memory`` (one bounded run), ``sqlite:PATH`` (local runs:
survives restarts of the local pipeline), ``bigtable:projects/P/instances/I/tables/T`` (Dataflow; the Bigtable
emulator locally through ``BIGTABLE_EMULATOR_HOST``). All hold the rows of ``transforms.identity`` as JSON.

Every backend gets, puts and deletes rows by key (deletes: ``leadflow forget``); a put of several rows is one
transaction in SQLite and one MutateRows call in Bigtable (atomic per row: the stage's single writer and the journal
make that enough, see docs/identity.md).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path

from transforms.identity import decode_row, encode_row

SPEC_HELP = "memory | memory:NAME | sqlite:PATH | bigtable:projects/P/instances/I/tables/T"
BIGTABLE_FAMILY = "s"
BIGTABLE_COLUMN = b"v"


class MemoryStore:
    """In the process: ``memory:NAME`` names one store shared by every DoFn instance of the process (the
    DirectRunner makes new instances), so a streaming test keeps its state; a bounded run needs no name."""

    _named: dict[str, MemoryStore] = {}

    def __init__(self):
        self.rows: dict[str, bytes] = {}

    @classmethod
    def named(cls, name: str) -> MemoryStore:
        return cls._named.setdefault(name, cls())

    def get(self, keys: Iterable[str]) -> dict[str, dict]:
        return {k: decode_row(self.rows[k]) for k in keys if k in self.rows}

    def put(self, rows: dict[str, dict]) -> None:
        self.rows.update((k, encode_row(v)) for k, v in rows.items())

    def delete(self, keys: Iterable[str]) -> None:
        for k in keys:
            self.rows.pop(k, None)

    def close(self) -> None:
        pass


class SqliteStore:
    """One file; WAL so a reader (``leadflow identity``) never blocks the pipeline."""

    def __init__(self, path: str):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.db = sqlite3.connect(path, timeout=30, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across a process kill
        self.db.execute("CREATE TABLE IF NOT EXISTS identity (k TEXT PRIMARY KEY, v BLOB NOT NULL)")
        self.lock = threading.Lock()

    def get(self, keys: Iterable[str]) -> dict[str, dict]:
        keys = list(keys)
        out: dict[str, dict] = {}
        with self.lock:
            for i in range(0, len(keys), 500):
                chunk = keys[i:i + 500]
                marks = ",".join("?" * len(chunk))
                for k, v in self.db.execute(f"SELECT k, v FROM identity WHERE k IN ({marks})", chunk):
                    out[k] = decode_row(v)
        return out

    def put(self, rows: dict[str, dict]) -> None:
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                self.db.executemany("INSERT OR REPLACE INTO identity (k, v) VALUES (?, ?)",
                                    [(k, encode_row(v)) for k, v in rows.items()])
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    def delete(self, keys: Iterable[str]) -> None:
        with self.lock:
            self.db.executemany("DELETE FROM identity WHERE k = ?", [(k,) for k in keys])

    def count(self, prefix: str) -> int:
        with self.lock:
            return self.db.execute("SELECT COUNT(*) FROM identity WHERE k >= ? AND k < ?",
                                   (prefix, prefix + "\uffff")).fetchone()[0]

    def close(self) -> None:
        self.db.close()


class BigtableStore:
    """Rows in one column family, one cell per row (the newest; a GC rule keeps one version)."""

    def __init__(self, table_path: str, create: bool = False):
        from google.cloud import bigtable
        from google.cloud.bigtable import column_family

        parts = table_path.split("/")
        if len(parts) != 6 or parts[0] != "projects" or parts[2] != "instances" or parts[4] != "tables":
            raise ValueError(f"bigtable store must be projects/P/instances/I/tables/T, not {table_path!r}")
        client = bigtable.Client(project=parts[1], admin=create)
        self.table = client.instance(parts[3]).table(parts[5])
        if create and not self.table.exists():
            self.table.create(column_families={BIGTABLE_FAMILY: column_family.MaxVersionsGCRule(1)})

    def get(self, keys: Iterable[str]) -> dict[str, dict]:
        from google.cloud.bigtable.row_set import RowSet

        keys = list(keys)
        if not keys:
            return {}
        rows = RowSet()
        for k in keys:
            rows.add_row_key(k.encode())
        out = {}
        for row in self.table.read_rows(row_set=rows):
            cells = row.cells.get(BIGTABLE_FAMILY, {}).get(BIGTABLE_COLUMN)
            if cells:
                out[row.row_key.decode()] = decode_row(cells[0].value)
        return out

    def put(self, rows: dict[str, dict]) -> None:
        mutations = []
        for k, v in rows.items():
            row = self.table.direct_row(k.encode())
            row.delete_cell(BIGTABLE_FAMILY, BIGTABLE_COLUMN)  # one version only, whatever the GC rule
            row.set_cell(BIGTABLE_FAMILY, BIGTABLE_COLUMN, encode_row(v))
            mutations.append(row)
        for status in self.table.mutate_rows(mutations):
            if status.code != 0:
                raise RuntimeError(f"bigtable write failed: code {status.code}: {status.message}")

    def delete(self, keys: Iterable[str]) -> None:
        rows = []
        for k in keys:
            row = self.table.direct_row(k.encode())
            row.delete()
            rows.append(row)
        for status in self.table.mutate_rows(rows) if rows else ():
            if status.code != 0:
                raise RuntimeError(f"bigtable delete failed: code {status.code}: {status.message}")

    def close(self) -> None:
        pass


def open_store(spec: str, create: bool = False):
    """The store a spec names (``SPEC_HELP``)."""
    kind, _, rest = spec.partition(":")
    if kind == "memory":
        return MemoryStore.named(rest) if rest else MemoryStore()
    if kind == "sqlite" and rest:
        return SqliteStore(rest)
    if kind == "bigtable" and rest:
        return BigtableStore(rest, create=create)
    raise ValueError(f"unknown identity store {spec!r}: use {SPEC_HELP}")


def check_spec(spec: str) -> None:
    """Refuses a malformed spec before anything starts (no connection is opened)."""
    kind, _, rest = spec.partition(":")
    if not (kind == "memory" or (kind in ("sqlite", "bigtable") and rest)):
        raise ValueError(f"unknown identity store {spec!r}: use {SPEC_HELP}")
