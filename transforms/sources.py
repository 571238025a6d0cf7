"""The source registry: which source a message came from.

Every provider has a default source (its own id). E-mail leads are matched like the seed system
did it: by the address the e-mail was sent to (``match_to``: full addresses) and the address it
was received from (``match_from``: addresses or domains, sub-domains included). A message that
matches nothing gets an unverified source id derived from the sender's domain; the enrichment
stage registers such sources.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

REGISTRY_COLUMNS = (
    "source_id", "display_name", "source_type", "sub_source", "provider", "match_to", "match_from",
    "email_template", "reliability", "is_default",
)


class ReferenceDataError(ValueError):
    """A malformed reference row: names the file and line."""


def csv_rows(text: str, name: str, columns: tuple[str, ...]) -> Iterator[tuple[str, dict[str, str]]]:
    """Rows of a CSV text as ("name:line", row); missing columns fail with the file name."""
    reader = csv.DictReader(text.splitlines())
    missing = set(columns) - set(reader.fieldnames or ())
    if missing:
        raise ReferenceDataError(f"{name}: missing columns {sorted(missing)}")
    for row in reader:
        yield f"{name}:{reader.line_num}", row


@dataclass(frozen=True)
class Source:
    source_id: str
    display_name: str
    source_type: str
    sub_source: str
    provider: str
    match_to: tuple[str, ...] = ()
    match_from: tuple[str, ...] = ()
    email_template: str | None = None
    reliability: float = 0.5
    is_default: bool = False
    verified: bool = True


def _split(cell: str) -> tuple[str, ...]:
    return tuple(p.strip().lower() for p in cell.split(";") if p.strip())


def _domain_matches(address: str, rule: str) -> bool:
    """``rule`` is a full address (exact match) or a domain (the domain or any sub-domain)."""
    if "@" in rule:
        return address == rule
    domain = address.rpartition("@")[2]
    return domain == rule or domain.endswith("." + rule)


class SourceRegistry:
    """Sources by id, with provider defaults and e-mail address rules."""

    def __init__(self, sources: Iterable[Source]):
        self.sources: dict[str, Source] = {}
        self.defaults: dict[str, Source] = {}
        for s in sources:
            if s.source_id in self.sources:
                raise ReferenceDataError(f"duplicate source_id {s.source_id!r}")
            self.sources[s.source_id] = s
            if s.is_default:
                self.defaults[s.provider] = s

    @classmethod
    def from_csv(cls, path: str | Path | None = None) -> SourceRegistry:
        """Load the registry CSV (the bundled one by default); bad rows fail with file and line."""
        if path is None:
            text = resources.files("transforms.reference_data").joinpath("sources.csv").read_text("utf-8")
            name = "transforms/reference_data/sources.csv"
        else:
            text, name = Path(path).read_text("utf-8"), str(path)
        return cls.from_rows(csv_rows(text, name, REGISTRY_COLUMNS))

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[str, Mapping[str, object]]]) -> SourceRegistry:
        """Sources from ("where", row) pairs (CSV lines or BigQuery rows); bad rows fail with where and why."""
        out = []
        for where, raw in rows:
            row = {k: "" if raw.get(k) is None else str(raw.get(k)) for k in REGISTRY_COLUMNS}
            try:
                if not row["source_id"].strip() or not row["provider"].strip():
                    raise ValueError("source_id and provider are required")
                reliability = float(row["reliability"] or 0.5)
                if not 0.0 <= reliability <= 1.0:
                    raise ValueError(f"reliability {reliability} is outside 0..1")
                if row["is_default"].strip().lower() not in ("true", "false", ""):
                    raise ValueError(f"is_default must be true or false, not {row['is_default']!r}")
                out.append(Source(
                    source_id=row["source_id"].strip(), display_name=row["display_name"].strip(),
                    source_type=row["source_type"].strip(), sub_source=row["sub_source"].strip(),
                    provider=row["provider"].strip(), match_to=_split(row["match_to"]),
                    match_from=_split(row["match_from"]), email_template=row["email_template"].strip() or None,
                    reliability=reliability, is_default=row["is_default"].strip().lower() == "true",
                ))
            except (ValueError, AttributeError) as e:
                raise ReferenceDataError(f"{where}: {e}") from None
        return cls(out)

    def default_for(self, provider: str) -> Source | None:
        return self.defaults.get(provider)

    def match_email(self, to_addresses: Iterable[str], from_addresses: Iterable[str]) -> Source | None:
        """The first source whose to-rule matches a recipient, else whose from-rule matches a sender."""
        to_list = [a.strip().lower() for a in to_addresses if a]
        from_list = [a.strip().lower() for a in from_addresses if a]
        email_sources = [s for s in self.sources.values() if s.provider == "inbound_email"]
        for s in email_sources:
            if any(_domain_matches(a, r) for a in to_list for r in s.match_to):
                return s
        for s in email_sources:
            if any(_domain_matches(a, r) for a in from_list for r in s.match_from):
                return s
        return None

    @staticmethod
    def unverified_email_source_id(from_address: str | None) -> str:
        domain = (from_address or "").rpartition("@")[2].strip().lower() or "unknown"
        return f"email:{domain}"
