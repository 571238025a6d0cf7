"""Reference data for enrichment and routing: sources, territories, teams and agents.

One loader serves local runs and production: ``load_reference(location)`` reads

* a directory of CSV files (``sources.csv``, ``territories.csv``, ``teams.csv``, ``agents.csv``; the
  bundled ``transforms/reference_data`` by default), or
* ``bq://PROJECT.DATASET``: the BigQuery tables ``ref_sources``, ``ref_territories``, ``ref_teams`` and
  ``ref_agents`` with the same columns (the local BigQuery emulator too, via ``BIGQUERY_EMULATOR_HOST``).

Every row is checked at load; a malformed one fails the load with ``file:line`` (or ``table:row``) and the
reason, so a bad edit never reaches the pipeline half-applied. ``ReferenceCache`` reloads on a schedule
(streaming on the DirectRunner); on Dataflow the pipeline refreshes a PeriodicImpulse side input instead
(see ``transforms.enrich.ReferenceSideInput``).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from transforms.sources import REGISTRY_COLUMNS, ReferenceDataError, SourceRegistry, csv_rows

_log = logging.getLogger(__name__)

TERRITORY_COLUMNS = ("territory_id", "country", "match_type", "match_values", "description")
TEAM_COLUMNS = ("team_id", "territory_id", "priority_tier", "display_name")
AGENT_COLUMNS = ("agent_id", "team_id", "display_name", "capacity", "timezone", "work_days", "work_start",
                 "work_end", "available")
# optional columns (older tables without them load with the defaults): max_open defaults to capacity,
# overflow_team to none
AGENT_OPTIONAL_COLUMNS = ("max_open",)
TEAM_OPTIONAL_COLUMNS = ("overflow_team",)
MATCH_TYPES = ("postal_prefix", "state", "country")
TIERS = ("hot", "warm", "cold", "*")
TABLE_FILES = {"sources": "sources.csv", "territories": "territories.csv", "teams": "teams.csv",
               "agents": "agents.csv"}
BQ_TABLES = {name: f"ref_{name}" for name in TABLE_FILES}
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HHMM = re.compile(r"^([01]\d|2[0-4]):([0-5]\d)$")

Rows = Iterable[tuple[str, Mapping[str, str]]]  # (location "file:line", row)


# --------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TerritoryRule:
    territory_id: str
    country: str
    match_type: str
    value: str  # upper-cased: a postal prefix without spaces, a state, or the country


@dataclass(frozen=True)
class Agent:
    agent_id: str
    team_id: str
    display_name: str
    capacity: int
    timezone: str
    work_days: frozenset[int]  # 0 = Monday
    work_start: int  # minutes after local midnight
    work_end: int  # exclusive; 1440 = midnight
    available: bool
    max_open: int | None = None  # open leads (offered or accepted, not closed) it may hold; None: capacity

    @property
    def cap(self) -> int:
        return self.capacity if self.max_open is None else self.max_open

    def on_shift(self, at: datetime) -> bool:
        """Whether ``at`` (aware) falls in the agent's working hours, in the agent's time zone."""
        local = at.astimezone(ZoneInfo(self.timezone))
        minute = local.hour * 60 + local.minute
        return local.weekday() in self.work_days and self.work_start <= minute < self.work_end

    def next_shift_start(self, at: datetime) -> datetime | None:
        """The first start of a shift after ``at`` (None: never, within the next 8 days)."""
        zone = ZoneInfo(self.timezone)
        day = at.astimezone(zone).replace(hour=0, minute=0, second=0, microsecond=0)
        for i in range(9):
            d = (day + timedelta(days=i)).replace(tzinfo=None)
            start = datetime(d.year, d.month, d.day, tzinfo=zone) + timedelta(minutes=self.work_start)
            if d.weekday() in self.work_days and start > at:
                return start.astimezone(UTC)
        return None


@dataclass(frozen=True)
class ReferenceData:
    """Everything enrichment and routing look up; immutable, replaced as a whole on refresh."""

    sources: SourceRegistry
    rules: tuple[TerritoryRule, ...]
    teams: Mapping[tuple[str, str], str]  # (territory, tier or "*") -> team
    agents: Mapping[str, tuple[Agent, ...]]  # team -> agents (file order)
    version: str = ""
    loaded_at: float = field(default_factory=time.time)
    # lookup indexes built from rules
    postal: Mapping[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)  # country -> (prefix, t)
    states: Mapping[tuple[str, str], str] = field(default_factory=dict)  # (country, STATE) -> territory
    countries: Mapping[str, str] = field(default_factory=dict)
    overflow: Mapping[str, str] = field(default_factory=dict)  # team -> the team its waiting leads overflow to

    def desk(self, team: str) -> str:
        """The dispatcher key of ``team``: teams linked by overflow share one (the smallest id among the linked
        teams), so a lead can move to its overflow team inside one keyed state."""
        cached = self.__dict__.get("_desks")
        if cached is None:
            cached = desks(self.overflow)
            object.__setattr__(self, "_desks", cached)
        return cached.get(team, team)

    def all_desks(self) -> tuple[str, ...]:
        """Every desk with agents, sorted (computed once per reference version, like the desk map)."""
        cached = self.__dict__.get("_all_desks")
        if cached is None:
            cached = tuple(sorted({self.desk(team) for team in self.agents}))
            object.__setattr__(self, "_all_desks", cached)
        return cached

    def agent(self, agent_id: str) -> Agent | None:
        return self.agents_by_id().get(agent_id)

    def agents_by_id(self) -> dict[str, Agent]:
        cached = self.__dict__.get("_by_id")
        if cached is None:
            cached = {a.agent_id: a for team in self.agents.values() for a in team}
            object.__setattr__(self, "_by_id", cached)
        return cached

    @property
    def territories(self) -> frozenset[str]:
        return frozenset(r.territory_id for r in self.rules)


# --------------------------------------------------------------------------------------
# Row parsing (shared by CSV and BigQuery)
# --------------------------------------------------------------------------------------


def _cell(row: Mapping[str, object], key: str) -> str:
    value = row.get(key)
    return "" if value is None else str(value).strip()


def _split(cell: str) -> list[str]:
    return [p.strip() for p in cell.split(";") if p.strip()]


def _minutes(text: str, what: str) -> int:
    m = _HHMM.match(text)
    if not m or (m.group(1) == "24" and m.group(2) != "00"):
        raise ValueError(f"{what} must be HH:MM (00:00-24:00), not {text!r}")
    return int(m.group(1)) * 60 + int(m.group(2))


def _days(text: str) -> frozenset[int]:
    out: set[int] = set()
    for part in _split(text.replace(",", ";")):
        lo, dash, hi = part.lower().partition("-")
        if lo not in _DAYS or (dash and hi not in _DAYS):
            raise ValueError(f"work_days must be like Mon-Fri or Mon;Wed;Sat, not {text!r}")
        a, b = _DAYS.index(lo), _DAYS.index(hi) if dash else _DAYS.index(lo)
        out.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
    if not out:
        raise ValueError("work_days is empty")
    return frozenset(out)


def _bool(text: str, what: str) -> bool:
    if text.lower() not in ("true", "false", ""):
        raise ValueError(f"{what} must be true or false, not {text!r}")
    return text.lower() != "false"


def parse_territories(rows: Rows) -> tuple[TerritoryRule, ...]:
    out = []
    for where, row in rows:
        try:
            tid, country, kind = _cell(row, "territory_id"), _cell(row, "country").upper(), _cell(row, "match_type")
            if not tid or not re.fullmatch(r"[A-Z]{2}", country):
                raise ValueError("territory_id and a two-letter country are required")
            if kind not in MATCH_TYPES:
                raise ValueError(f"match_type must be one of {', '.join(MATCH_TYPES)}, not {kind!r}")
            values = _split(_cell(row, "match_values"))
            if not values:
                raise ValueError("match_values is empty")
            for v in values:
                v = v.upper().replace(" ", "")
                if kind == "country" and v != country:
                    raise ValueError(f"a country rule must match its own country {country}, not {v!r}")
                out.append(TerritoryRule(tid, country, kind, v))
        except ValueError as e:
            raise ReferenceDataError(f"{where}: {e}") from None
    return tuple(out)


def parse_teams(rows: Rows, territories: frozenset[str]) -> dict[tuple[str, str], str]:
    out: dict[tuple[str, str], str] = {}
    for where, row in rows:
        try:
            team, territory, tier = _cell(row, "team_id"), _cell(row, "territory_id"), _cell(row, "priority_tier")
            if not team:
                raise ValueError("team_id is required")
            if territory not in territories:
                raise ValueError(f"territory_id {territory!r} is not in the territories table")
            tier = tier or "*"
            if tier not in TIERS:
                raise ValueError(f"priority_tier must be hot, warm, cold or *, not {tier!r}")
            if (territory, tier) in out:
                raise ValueError(f"({territory}, {tier}) already has team {out[(territory, tier)]!r}")
            out[(territory, tier)] = team
        except ValueError as e:
            raise ReferenceDataError(f"{where}: {e}") from None
    return out


def parse_overflow(rows: Rows, teams: Iterable[str]) -> dict[str, str]:
    """team -> overflow team, from the optional ``overflow_team`` column; an unknown team, two different
    overflow teams for one team, or a cycle fail with the file and line."""
    known = set(teams)
    out: dict[str, str] = {}
    where_of: dict[str, str] = {}
    for where, row in rows:
        team, target = _cell(row, "team_id"), _cell(row, "overflow_team")
        if not target:
            continue
        if target not in known:
            raise ReferenceDataError(f"{where}: overflow_team {target!r} is not in the teams table")
        if target == team:
            raise ReferenceDataError(f"{where}: team {team!r} cannot overflow to itself")
        if out.get(team, target) != target:
            raise ReferenceDataError(f"{where}: team {team!r} already overflows to {out[team]!r}")
        out[team] = target
        where_of.setdefault(team, where)
    for start in out:
        seen, team = [start], out[start]
        while team in out:
            if team == start:
                raise ReferenceDataError(f"{where_of[start]}: overflow teams form a cycle: "
                                         f"{' -> '.join([*seen, start])}")
            if team in seen:
                break  # a cycle not through start: reported when start is its member
            seen.append(team)
            team = out[team]
    return out


def desks(overflow: Mapping[str, str]) -> dict[str, str]:
    """team -> dispatcher key: the smallest team id of its overflow-linked group (teams without links: absent)."""
    parent: dict[str, str] = {}

    def root(t: str) -> str:
        while parent.get(t, t) != t:
            t = parent[t]
        return t

    for a, b in overflow.items():
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return {t: root(t) for pair in overflow.items() for t in pair}


def parse_agents(rows: Rows, teams: Iterable[str]) -> dict[str, tuple[Agent, ...]]:
    known, seen = set(teams), set()
    out: dict[str, list[Agent]] = {}
    for where, row in rows:
        try:
            agent_id, team = _cell(row, "agent_id"), _cell(row, "team_id")
            if not agent_id:
                raise ValueError("agent_id is required")
            if agent_id in seen:
                raise ValueError(f"duplicate agent_id {agent_id!r} (an agent belongs to one team)")
            if team not in known:
                raise ValueError(f"team_id {team!r} is not in the teams table")
            capacity = int(_cell(row, "capacity") or "1")
            if capacity < 1:
                raise ValueError(f"capacity must be a positive integer, not {capacity}")
            cap_text = _cell(row, "max_open")
            max_open = int(cap_text) if cap_text else None
            if max_open is not None and max_open < 0:
                raise ValueError(f"max_open must be 0 or more, not {max_open}")
            tz = _cell(row, "timezone") or "UTC"
            try:
                ZoneInfo(tz)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown time zone {tz!r}") from None
            start = _minutes(_cell(row, "work_start") or "00:00", "work_start")
            end = _minutes(_cell(row, "work_end") or "24:00", "work_end")
            if end <= start:
                raise ValueError("work_end must be after work_start")
            agent = Agent(agent_id, team, _cell(row, "display_name") or agent_id, capacity, tz,
                          _days(_cell(row, "work_days") or "Mon-Sun"), start, end,
                          _bool(_cell(row, "available"), "available"), max_open)
        except ValueError as e:
            raise ReferenceDataError(f"{where}: {e}") from None
        seen.add(agent_id)
        out.setdefault(team, []).append(agent)
    return {team: tuple(agents) for team, agents in out.items()}


def build_reference(sources: SourceRegistry, territory_rows: Rows, team_rows: Rows, agent_rows: Rows,
                    version: str = "") -> ReferenceData:
    rules = parse_territories(territory_rows)
    team_rows = list(team_rows)
    teams = parse_teams(team_rows, frozenset(r.territory_id for r in rules))
    team_rows = list(team_rows)
    overflow = parse_overflow(team_rows, set(teams.values()))
    agents = parse_agents(agent_rows, set(teams.values()))
    postal: dict[str, list[tuple[str, str]]] = {}
    states: dict[tuple[str, str], str] = {}
    countries: dict[str, str] = {}
    for r in rules:
        if r.match_type == "postal_prefix":
            postal.setdefault(r.country, []).append((r.value, r.territory_id))
        elif r.match_type == "state":
            states.setdefault((r.country, r.value), r.territory_id)
        else:
            countries.setdefault(r.country, r.territory_id)
    postal_sorted = {c: tuple(sorted(v, key=lambda p: -len(p[0]))) for c, v in postal.items()}  # longest first
    return ReferenceData(sources, rules, teams, agents, version=version, postal=postal_sorted, states=states,
                         countries=countries, overflow=overflow)


# --------------------------------------------------------------------------------------
# Loading: CSV directory or BigQuery dataset
# --------------------------------------------------------------------------------------


_COLUMNS = {"sources": REGISTRY_COLUMNS, "territories": TERRITORY_COLUMNS, "teams": TEAM_COLUMNS,
            "agents": AGENT_COLUMNS}
# every column a table may have (what the ref_* BigQuery tables are created with)
ALL_COLUMNS = {**_COLUMNS, "teams": TEAM_COLUMNS + TEAM_OPTIONAL_COLUMNS,
               "agents": AGENT_COLUMNS + AGENT_OPTIONAL_COLUMNS}


def _read_dir(directory: str | None, table: str) -> tuple[str, str]:
    if directory is None:
        text = resources.files("transforms.reference_data").joinpath(TABLE_FILES[table]).read_text("utf-8")
        return text, f"transforms/reference_data/{TABLE_FILES[table]}"
    path = Path(directory) / TABLE_FILES[table]
    try:
        return path.read_text("utf-8"), str(path)
    except FileNotFoundError:
        raise ReferenceDataError(f"{path}: reference file missing") from None


def _bq_rows(client, dataset: str, table: str) -> list[tuple[str, dict[str, object]]]:
    ref = f"{dataset}.{BQ_TABLES[table]}"
    try:
        rows = list(client.list_rows(ref))
    except Exception as e:  # NotFound, Forbidden, transport errors: all fatal at load, with the table named
        raise ReferenceDataError(f"{ref}: cannot read reference table: {type(e).__name__}: {e}") from None
    if rows:
        missing = set(_COLUMNS[table]) - set(rows[0].keys())
        if missing:
            raise ReferenceDataError(f"{ref}: missing columns {sorted(missing)}")
    return [(f"{ref}:row {i}", dict(r.items())) for i, r in enumerate(rows, 1)]


def load_reference(location: str | None = None, source_registry: str | None = None) -> ReferenceData:
    """Load and check all reference tables from a CSV directory (default: bundled) or ``bq://P.D``."""
    version = location or "bundled"
    if location and location.startswith("bq://"):
        from schemas.bigquery import client_for

        dataset = location[len("bq://"):].replace(":", ".")
        project = dataset.split(".")[0]
        client = client_for(project)
        tables = {t: _bq_rows(client, dataset, t) for t in TABLE_FILES}
        sources = SourceRegistry.from_rows(tables["sources"])
    else:
        texts = {t: _read_dir(location, t) for t in TABLE_FILES}
        tables = {t: list(csv_rows(text, name, _COLUMNS[t])) for t, (text, name) in texts.items()}
        sources = SourceRegistry.from_rows(tables["sources"])
    if source_registry:
        sources = SourceRegistry.from_csv(source_registry)
    return build_reference(sources, tables["territories"], tables["teams"], tables["agents"], version=version)


class ReferenceCache:
    """A worker-side copy of the reference data, reloaded when older than ``refresh_seconds``.

    A failed reload keeps the previous data (and logs the error with the file and line): a bad edit to
    the reference tables never stops a running stream. ``refresh_seconds <= 0`` loads once.
    """

    def __init__(self, location: str | None, source_registry: str | None, refresh_seconds: float,
                 clock: Callable[[], float] = time.monotonic):
        self.location, self.source_registry = location, source_registry
        self.refresh_seconds, self.clock = refresh_seconds, clock
        self._data: ReferenceData | None = None
        self._loaded = 0.0
        self._lock = threading.Lock()
        self.reloads = 0

    def get(self) -> ReferenceData:
        now = self.clock()
        if self._data is not None and (self.refresh_seconds <= 0 or now - self._loaded < self.refresh_seconds):
            return self._data
        with self._lock:
            if self._data is None:
                self._data = load_reference(self.location, self.source_registry)
            elif now - self._loaded >= self.refresh_seconds:
                try:
                    self._data = load_reference(self.location, self.source_registry)
                    self.reloads += 1
                except ReferenceDataError as e:
                    _log.error("reference data reload failed, keeping the previous version: %s", e)
            self._loaded = now
            return self._data
