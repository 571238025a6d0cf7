"""``leadflow trace``: the whole journey of one person, in time order, from the BigQuery tables.

    leadflow trace --bq_dataset P:D --lead_id 3aec0cb8-...
    leadflow trace --bq_dataset P:D --message_id 959424996337180424
    leadflow trace --bq_dataset P:D --phone "+1 415 555 0101"      # or --email someone@example.com
    leadflow trace ... --json                                       # the steps as JSON lines

Finds the lead (a phone or e-mail is normalized the pipeline's way and matched on ``lead_events``/``leads``), then
its person: the survivor of its merges (``lead_merges``, the latest row of each merged lead) with every lead merged
into it. Prints every event with its outcome and source, each source's first sighting (``lead_source_history``), the
merges, every change of the living record (``lead_versions``: created, new source, score, primary corrected), each
routing step with its audit (``lead_assignments``: team, agent, attempt, reason, SLA deadline, and the routing
decision: the candidates, the agent chosen with its open leads against its cap, why each other agent was skipped),
and the dead letters of the person's messages. Deliveries to the CRMs (Pub/Sub push) are not recorded in BigQuery:
the journey says so instead of guessing.

No personal data leaves this command's logs: a phone or e-mail is logged only as its keyed hash (the identity
stage's ``identifier_hash``), and the printed journey names leads, messages, sources, teams and agents by id only.
BigQuery is the emulator when ``BIGQUERY_EMULATOR_HOST`` is set.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
from dataclasses import asdict, dataclass
from typing import Any

from schemas import bigquery as bq
from schemas.resources import DATASET, LOCAL_PROJECT
from transforms.identity import EMAIL, PHONE, hash_key, identifier_hash
from transforms.normalize import normalize_email, normalize_phone

log = logging.getLogger("leadflow.trace")
PENDING = ("deliveries: the CRMs' push subscriptions record nothing in BigQuery; each offer above is one delivery",)


class TraceError(ValueError):
    """The lookup cannot be made (bad input) or found nothing."""


@dataclass(frozen=True)
class Step:
    at: str  # ISO time (UTC)
    kind: str  # event | source | merge | change | routing | dead_letter
    lead_id: str | None
    what: str
    ids: dict[str, Any]


# --------------------------------------------------------------------------------------
# Pure: the lookup key, the person, the journey
# --------------------------------------------------------------------------------------


def lookup_of(*, lead_id=None, message_id=None, phone=None, email=None, region: str = "US") -> tuple[str, str]:
    """(column kind, value) to look up; a phone or e-mail normalized as the pipeline does. TraceError when unusable."""
    given = {k: v for k, v in {"lead_id": lead_id, "message_id": message_id, "phone": phone, "email": email}.items()
             if v}
    if len(given) != 1:
        raise TraceError("give exactly one of --lead_id, --message_id, --phone, --email")
    (kind, value), = given.items()
    if kind == "phone":
        value, status = normalize_phone(value, region)
        if status != "valid":
            raise TraceError(f"the phone number is {status} (region {region}); give it in E.164, e.g. +14155550101")
    elif kind == "email":
        value, status = normalize_email(value)
        if status != "valid":
            raise TraceError(f"the e-mail address is {status}")
    return kind, value.strip()


def logged(kind: str, value: str) -> str:
    """What the log may say about the lookup: ids as they are, a phone or e-mail as its keyed hash."""
    if kind in ("phone", "email"):
        return f"{kind} hash {identifier_hash(PHONE if kind == 'phone' else EMAIL, value, hash_key())}"
    return f"{kind} {value}"


def person_of(lead_ids: set[str], merges: list[dict]) -> tuple[str, list[str]]:
    """(survivor, every lead of the person) from merge rows: the latest row of each merged lead names its survivor
    (the pipeline re-points older merges, so no chain is followed)."""
    latest: dict[str, dict] = {}
    for m in sorted(merges, key=lambda m: (m["merged_at"], m.get("processed_at") or "")):
        latest[m["merged_lead_id"]] = m
    survivors = {latest[i]["into_lead_id"] if i in latest else i for i in lead_ids}
    if len(survivors) != 1:
        raise TraceError(f"the lookup matches {len(survivors)} different people: {sorted(survivors)}; "
                         "trace one of them by --lead_id")
    (root,) = survivors
    return root, sorted({root} | {m for m, row in latest.items() if row["into_lead_id"] == root})


def _t(value) -> str:
    if isinstance(value, dt.datetime):
        # always with microseconds, so the strings sort in time order
        return value.astimezone(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    return str(value) if value is not None else ""


KIND_ORDER = {"event": 0, "source": 1, "merge": 2, "change": 3, "routing": 4, "dead_letter": 5}
KIND_NAMES = {"event": "events", "source": "sources", "merge": "merges", "change": "record changes",
              "routing": "routing steps", "dead_letter": "dead letters"}


def journey(rows: dict[str, list[dict]]) -> list[Step]:
    """Every row of the person's tables as one step, in time order (ties: the order things happen in the job)."""
    steps = []
    for e in rows["lead_events"]:
        steps.append(Step(_t(e["event_time"]), "event", e["lead_id"],
                          f"{e['outcome']} via {e['provider']} (source {e['source_id']}"
                          f"{'' if e['source_verified'] else ', unverified'}{', test lead' if e['is_test'] else ''})",
                          {"event_id": e["event_id"], "message_id": e["message_id"],
                           "received_at": _t(e["publish_time"])}))
    for h in rows["lead_source_history"]:
        steps.append(Step(_t(h["received_at"]), "source", h["lead_id"],
                          f"source {h['source_id']} ({h['provider']}){' primary' if h['is_primary'] else ''}",
                          {"event_id": h["event_id"]}))
    for m in rows["lead_merges"]:
        steps.append(Step(_t(m["merged_at"]), "merge", m["into_lead_id"],
                          f"merged {m['merged_lead_id']} into {m['into_lead_id']} (linked by {m['linked_by']})",
                          {"event_id": m["event_id"]}))
    for v in rows["lead_versions"]:
        if v["change"] in ROUTING_CHANGES:
            continue  # the assignment rows below carry the same step with its audit fields
        detail = {"scored": lambda v: f"scored {v['score']:.3f} {v['priority_tier']} by {v['score_source']}",
                  "created": lambda v: f"created, primary source {v['primary_source']}",
                  "new_source": lambda v: f"new source {v['source_id']}",
                  "primary_corrected": lambda v: f"primary source corrected to {v['primary_source']}",
                  "merged": lambda v: f"absorbed {v['merged_lead_id']}",
                  "merged_into": lambda v: f"merged into {v['merged_into']}"}.get(v["change"], lambda v: v["change"])
        steps.append(Step(_t(v["changed_at"]), "change", v["lead_id"],
                          detail(v) + (f" -> status {v['status']}" if v["status"] else ""),
                          {"version_id": v["version_id"], "event_id": v["event_id"]}))
    for a in rows["lead_assignments"]:
        parts = [a["action"], f"attempt {a['attempt']}"]
        parts += [f"{k} {a[k]}" for k in ("team", "territory", "agent_id", "priority_tier", "reason") if a.get(k)]
        if a.get("sla_deadline"):
            parts.append(f"SLA until {_t(a['sla_deadline'])}")
        if a.get("decision"):
            parts.append(decision_text(json.loads(a["decision"]) if isinstance(a["decision"], str) else a["decision"]))
        steps.append(Step(_t(a["action_at"]), "routing", a["lead_id"], ", ".join(parts),
                          {"assignment_event_id": a["assignment_event_id"], "agent_event_id": a["agent_event_id"]}))
    for d in rows["dead_letters"]:
        steps.append(Step(_t(d["failed_at"]), "dead_letter", None,
                          f"dead letter at {d['stage']}: {d['error_type']} (provider {d['provider'] or 'unknown'})",
                          {"message_id": d["message_id"]}))
    return sorted(steps, key=lambda s: (s.at, KIND_ORDER[s.kind]))


def decision_text(decision: dict) -> str:
    """The routing audit of one step in a line: candidates, the chosen agent's load against its cap, the skips."""
    out = [f"{len(decision.get('candidates') or [])} candidates"]
    if decision.get("chosen"):
        load = (f" ({decision['open_before']} open of {decision['max_open']})"
                if "open_before" in decision and "max_open" in decision else "")
        out.append(f"chose {decision['chosen']}{load}")
    skipped = decision.get("skipped") or []
    if skipped:
        out.append("skipped " + ", ".join(f"{s['agent_id']} ({s['reason']})" for s in skipped))
    return "; ".join(out)


ROUTING_CHANGES = frozenset({"assigned", "reassigned", "accepted", "rejected", "expired", "manual_review"})


def format_journey(root: str, leads: list[str], steps: list[Step]) -> str:
    counts = {k: sum(1 for s in steps if s.kind == k) for k in KIND_ORDER}
    head = [f"person {root}" + (f" (with merged leads {', '.join(x for x in leads if x != root)})"
                                if len(leads) > 1 else ""),
            "  " + ", ".join(f"{n} {KIND_NAMES[k]}" for k, n in counts.items())
            + ("" if any(s.what.startswith("scored") for s in steps) else "; not scored")]
    body = [f"{s.at:<28} {s.kind:<11} {s.what}  [{' '.join(f'{k}={v}' for k, v in s.ids.items() if v)}]"
            for s in steps]
    return "\n".join(head + body + [f"  ({p})" for p in PENDING])


# --------------------------------------------------------------------------------------
# BigQuery
# --------------------------------------------------------------------------------------

COLUMN = {"lead_id": "lead_id", "phone": "phone_e164", "email": "email"}


def _query(client, project: str, dataset: str, sql: str, **params) -> list[dict]:
    from google.cloud import bigquery

    qp = [bigquery.ArrayQueryParameter(k, "STRING", v) if isinstance(v, list)
          else bigquery.ScalarQueryParameter(k, "STRING", v) for k, v in params.items()]
    job = client.query(bq.render(sql, project, dataset), job_config=bigquery.QueryJobConfig(query_parameters=qp))
    return [dict(r) for r in job.result()]


def trace(client, project: str, dataset: str, kind: str, value: str) -> tuple[str, list[str], list[Step]]:
    """(survivor, the person's leads, the steps) for one lookup; TraceError when nothing matches."""
    log.info("trace %s in %s.%s", logged(kind, value), project, dataset)
    extra_dead: list[dict] = []
    if kind == "message_id":
        found = _query(client, project, dataset, "SELECT DISTINCT lead_id FROM `{project}.{dataset}.lead_events` "
                       "WHERE message_id = @v OR STARTS_WITH(message_id, CONCAT(@v, '#'))", v=value)
        extra_dead = _query(client, project, dataset,
                            "SELECT * FROM `{project}.{dataset}.dead_letters` WHERE message_id = @v", v=value)
    else:
        column = COLUMN[kind]
        found = _query(client, project, dataset,
                       f"SELECT lead_id FROM `{{project}}.{{dataset}}.lead_events` WHERE {column} = @v "
                       f"UNION DISTINCT SELECT lead_id FROM `{{project}}.{{dataset}}.leads` WHERE {column} = @v",
                       v=value)
    ids = {r["lead_id"] for r in found}
    if not ids:
        if extra_dead:
            return "", [], journey({"lead_events": [], "lead_source_history": [], "lead_merges": [],
                                    "lead_versions": [], "lead_assignments": [], "dead_letters": extra_dead})
        raise TraceError(f"no lead matches {logged(kind, value)}")
    merges = _query(client, project, dataset, "SELECT * FROM `{project}.{dataset}.lead_merges` "
                    "WHERE merged_lead_id IN UNNEST(@ids) OR into_lead_id IN UNNEST(@ids)", ids=sorted(ids))
    root, _ = person_of(ids, [{**m, "merged_at": _t(m["merged_at"]), "processed_at": _t(m["processed_at"])}
                              for m in merges])
    # the survivor's own merges name every lead of the person
    merges = _query(client, project, dataset, "SELECT * FROM `{project}.{dataset}.lead_merges` "
                    "WHERE into_lead_id = @root OR merged_lead_id = @root", root=root)
    root, leads = person_of({root}, [{**m, "merged_at": _t(m["merged_at"]), "processed_at": _t(m["processed_at"])}
                                     for m in merges])
    rows = {"lead_merges": merges}
    keys = {"lead_events": "event_id", "lead_source_history": None, "lead_versions": "version_id",
            "lead_assignments": "assignment_event_id"}
    for table, key in keys.items():
        got = _query(client, project, dataset, f"SELECT * FROM `{{project}}.{{dataset}}.{table}` "
                     "WHERE lead_id IN UNNEST(@ids)", ids=leads)
        rows[table] = list({(r[key] if key else (r["lead_id"], r["source_id"])): r for r in got}.values())
    messages = sorted({e["message_id"] for e in rows["lead_events"]} | {e["message_id"].split("#")[0]
                                                                        for e in rows["lead_events"]})
    dead = _query(client, project, dataset, "SELECT * FROM `{project}.{dataset}.dead_letters` "
                  "WHERE message_id IN UNNEST(@ids)", ids=messages)
    rows["dead_letters"] = list({(d["message_id"], d["stage"], d["error_type"], d["payload_sha256"]): d
                                 for d in dead + extra_dead}.values())
    return root, leads, journey(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="leadflow trace", description=__doc__.splitlines()[0])
    ap.add_argument("--bq_dataset", default=f"{LOCAL_PROJECT}:{DATASET}",
                    help="PROJECT:DATASET of the pipeline's tables (default: the local stack's)")
    for name in ("lead_id", "message_id", "phone", "email"):
        ap.add_argument(f"--{name}")
    ap.add_argument("--region", default="US", help="region for a phone number written without a country code")
    ap.add_argument("--json", action="store_true", help="print each step as a JSON line")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        project, dataset = bq.parse_dataset(args.bq_dataset)
        kind, value = lookup_of(lead_id=args.lead_id, message_id=args.message_id, phone=args.phone,
                                email=args.email, region=args.region)
        root, leads, steps = trace(bq.client_for(project), project, dataset, kind, value)
    except (TraceError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if args.json:
        for s in steps:
            print(json.dumps(asdict(s), sort_keys=True))
    else:
        print(format_journey(root, leads, steps) if root else "\n".join(
            f"{s.at:<28} {s.kind:<11} {s.what}  [message_id={s.ids['message_id']}]" for s in steps))
    return 0
