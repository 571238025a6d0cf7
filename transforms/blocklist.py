"""Identifiers that must never link people, from the reference data (``identity_blocklist.csv``).

Placeholder addresses people type (``none@none.com``), role addresses (``noreply@``), our own provider numbers.
Normalize drops a blocked phone or e-mail from the lead (it is no contact); a lead left without any is a dead
letter (``blocked_contact``).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from transforms.sources import ReferenceDataError

BLOCKLIST_FILE = "identity_blocklist.csv"
BLOCK_KINDS = ("email", "email_local", "email_domain", "phone")


@dataclass(frozen=True)
class Blocklist:
    """Identifiers that never link people: whole addresses, local parts (``noreply``), domains, phones."""

    entries: dict[tuple[str, str], str] = field(default_factory=dict)  # (kind, value) -> reason

    def reason(self, kind: str, value: str) -> str | None:
        if kind == "phone":
            return self.entries.get(("phone", value))
        local, _, domain = value.rpartition("@")
        return (self.entries.get(("email", value)) or self.entries.get(("email_local", local))
                or self.entries.get(("email_domain", domain)))

    @classmethod
    def parse(cls, text: str, where: str) -> Blocklist:
        entries = {}
        for n, row in enumerate(csv.DictReader(io.StringIO(text)), 2):
            kind, value = (row.get("kind") or "").strip(), (row.get("value") or "").strip()
            if kind not in BLOCK_KINDS or not value:
                raise ReferenceDataError(f"{where}:{n}: kind must be one of {', '.join(BLOCK_KINDS)}, "
                                         "and value non-empty")
            value = value if kind == "phone" else value.lower()
            entries[(kind, value)] = (row.get("reason") or "blocklisted").strip()
        return cls(entries)

    @classmethod
    def load(cls, reference_dir: str | None = None) -> Blocklist:
        """The blocklist of a reference-data directory (``identity_blocklist.csv``), else the bundled one."""
        path = Path(reference_dir) / BLOCKLIST_FILE if reference_dir and not reference_dir.startswith("bq://") \
            else None
        if path is not None and path.exists():
            return cls.parse(path.read_text("utf-8"), str(path))
        text = resources.files("transforms.reference_data").joinpath(BLOCKLIST_FILE).read_text("utf-8")
        return cls.parse(text, f"transforms/reference_data/{BLOCKLIST_FILE}")
