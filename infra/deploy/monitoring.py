"""Cloud Monitoring for the job: the alert policies and the dashboard, one definition each, from the Beam counters the
pipeline really defines and the Dataflow / Pub/Sub system metrics.

``infra.deploy.terraform_gen`` writes :func:`alerts` and :func:`dashboard` into ``generated/leadflow.json``;
``infra/deploy/terraform/monitoring.tf`` turns each alert into a ``google_monitoring_alert_policy`` and the dashboard
into a ``google_monitoring_dashboard``. ``tests/unit/test_monitoring.py`` checks that every counter an alert names is
a ``Metrics.counter`` in the code, and that docs/runbook.md has an entry for every alert.

Custom counters reach Cloud Monitoring as ``dataflow.googleapis.com/job/user_counter`` (a GAUGE of the cumulative
value, sampled every 60 s; labels ``metric_name`` = the counter's name, ``ptransform`` = the step, and the
``dataflow_job`` resource's ``job_name``). The namespace is not a label, so a counter is selected by its name, and a
name that several stages share (``dead_letters``) is told apart by ``ptransform``. Rates over a GAUGE cannot use the
filter conditions' ALIGN_DELTA / ALIGN_RATE (those take CUMULATIVE or DELTA metrics), so counter alerts are PromQL
conditions: ``delta()`` over the window of the counter's gauge. System metrics (GAUGE, seconds) are threshold
conditions on their maximum per minute. ``__JOB_NAME__`` is replaced with ``var.job_name`` by Terraform.

Thresholds are the runbook's ("Metrics and alerts"); they are starting points to tune against a real job's traffic.
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas.resources import INPUT_SUBSCRIPTION
from scoring.handlers import METRICS_NAMESPACE as SCORING_NAMESPACE

JOB = "__JOB_NAME__"
USER_COUNTER = "dataflow_googleapis_com:job_user_counter"


@dataclass(frozen=True)
class Counter:
    """A Beam counter as the code defines it: ``Metrics.counter(namespace, name)``."""

    namespace: str
    name: str


@dataclass(frozen=True)
class Alert:
    key: str  # resource key and runbook anchor (docs/runbook.md "### alert: <key>")
    display_name: str
    summary: str  # what it means, the threshold in words
    severity: str  # CRITICAL | ERROR | WARNING
    threshold: float
    duration: str  # how long the condition must hold
    counters: tuple[Counter, ...] = ()  # the counters its PromQL reads (checked against the code)
    promql: str | None = None  # a PromQL expression that is true while the alert should fire
    series: str | None = None  # what the dashboard charts (the PromQL ratio, or the system metric's filter)
    metric_filter: str | None = None  # a system metric: a threshold condition on this filter

    def as_json(self) -> dict:
        return {
            "display_name": self.display_name,
            "severity": self.severity,
            "condition": f"{self.display_name} above {self.threshold:g} for {self.duration}",
            "documentation": f"{self.summary}\n\nRunbook: docs/runbook.md, section 'alert: {self.key}'.",
            "promql": self.promql,
            "filter": self.metric_filter,
            "threshold": self.threshold,
            "duration": self.duration,
            "counters": [f"{c.namespace}/{c.name}" for c in self.counters],
        }


def _delta(name: str, window: str, by: str = "") -> str:
    """The increase of a counter (all its steps, or ``by`` a label) over ``window``, from its cumulative gauge."""
    selector = f'{USER_COUNTER}{{monitored_resource="dataflow_job",job_name="{JOB}",metric_name="{name}"}}'
    return f"sum{f' by ({by})' if by else ''}(delta({selector}[{window}]))"


def _ratio(part: str, whole: str, threshold: float) -> tuple[str, str]:
    series = f"({part}) / ({whole})"
    return series, f"{series} > {threshold:g}"


def _system(metric: str, resource: str, labels: dict[str, str]) -> str:
    where = " AND ".join(f'resource.labels.{k} = "{v}"' for k, v in labels.items())
    return f'metric.type = "{metric}" AND resource.type = "{resource}" AND {where}'


def _counter_alert(key, display_name, summary, severity, threshold, duration, counters, part, whole) -> Alert:
    series, promql = _ratio(part, whole, threshold)
    return Alert(key, display_name, summary, severity, threshold, duration, tuple(counters), promql, series)


UNITS = Counter("parse", "units")
ROUTED = Counter("route", "routed_to_team")
MANUAL = Counter("route", "manual_review")
BY_MODEL = Counter(SCORING_NAMESPACE, "scored_by_model")
BY_FALLBACK = Counter(SCORING_NAMESPACE, "scored_by_fallback")
DEAD_LETTERS = (Counter("parse", "dead_letters"), Counter("normalize", "dead_letters"),
                Counter("agent_events", "dead_letters"))
SINK_FAILURES = (Counter("bigquery_sink", "rows_rejected"), Counter("bigquery_sink", "rows_unavailable"),
                 Counter("sink", "dead_letters_unwritable"))

ALERTS: tuple[Alert, ...] = (
    _counter_alert(
        "dead_letter_rate", "Leadflow: dead-letter rate by stage",
        "More than 5 % of input units were dead-lettered by one stage (ptransform) over 15 minutes: a provider "
        "changed its format, a parser or the normalizer rejects what it used to accept, or agent events are "
        "malformed.", "ERROR", 0.05, "900s", (*DEAD_LETTERS, UNITS),
        _delta("dead_letters", "15m", "ptransform"), f"scalar({_delta('units', '15m')})"),
    _counter_alert(
        "fallback_score_rate", "Leadflow: leads scored by the fallback",
        "More than 10 % of scored leads got the rule-based fallback score over 10 minutes: the scorer service is "
        "down or refusing the token, or the model's feature version does not match the job's.", "ERROR", 0.10,
        "600s", (BY_MODEL, BY_FALLBACK),
        _delta("scored_by_fallback", "10m"),
        f"{_delta('scored_by_model', '10m')} + {_delta('scored_by_fallback', '10m')}"),
    _counter_alert(
        "manual_review_rate", "Leadflow: leads sent to manual review",
        "More than 25 % of routed leads found no team (manual review) over 30 minutes: territories or teams "
        "missing from the reference data, or a new market without a team.", "WARNING", 0.25, "1800s",
        (MANUAL, ROUTED), _delta("manual_review", "30m"),
        f"{_delta('manual_review', '30m')} + {_delta('routed_to_team', '30m')}"),
    _counter_alert(
        "sla_expiry_rate", "Leadflow: assignments expiring unaccepted",
        "More than 20 % of leads routed to a team saw an assignment expire (SLA) over 30 minutes: agents are not "
        "accepting (staffing, the CRM's agent events not arriving).", "WARNING", 0.20, "1800s",
        (Counter("assign", "sla_expired"), ROUTED), _delta("sla_expired", "30m"), _delta("routed_to_team", "30m")),
    Alert(
        "sink_failures", "Leadflow: rows BigQuery refused or could not take",
        "Any row BigQuery rejected or could not be reached for, or a dead letter that could not be written at all, "
        "in 5 minutes: a schema drift between the records and the tables, or a BigQuery outage.", "CRITICAL", 0,
        "300s", SINK_FAILURES,
        " + ".join(f"({_delta(c.name, '5m')} or vector(0))" for c in SINK_FAILURES) + " > 0",
        " + ".join(f"({_delta(c.name, '5m')} or vector(0))" for c in SINK_FAILURES)),
    Alert(
        "data_freshness", "Leadflow: data freshness (watermark age)",
        "The job's data watermark is more than 10 minutes old for 5 minutes: input is late or stuck, and the "
        "decisions that wait on the watermark (dedup hold, daily counts) wait with it.", "ERROR", 600, "300s",
        metric_filter=_system("dataflow.googleapis.com/job/data_watermark_age", "dataflow_job", {"job_name": JOB})),
    Alert(
        "system_lag", "Leadflow: system lag",
        "Some element has waited more than 2 minutes to be processed, for 5 minutes: the job is short of workers or "
        "a step is slow (the scorer, BigQuery, the identity store).", "ERROR", 120, "300s",
        metric_filter=_system("dataflow.googleapis.com/job/system_lag", "dataflow_job", {"job_name": JOB})),
    Alert(
        "input_backlog_age", "Leadflow: oldest unacked input message",
        f"The oldest unacknowledged message on {INPUT_SUBSCRIPTION} is more than 5 minutes old, for 5 minutes: the "
        "job is down, stuck or falling behind the gateway.", "CRITICAL", 300, "300s",
        metric_filter=_system("pubsub.googleapis.com/subscription/oldest_unacked_message_age", "pubsub_subscription",
                              {"subscription_id": INPUT_SUBSCRIPTION})),
)


def alerts() -> dict[str, dict]:
    return {a.key: a.as_json() for a in ALERTS}


def dashboard() -> dict:
    """The Cloud Monitoring dashboard: one chart per alert with its threshold line, then input throughput."""
    tiles = []
    for i, a in enumerate(ALERTS):
        if a.series:
            data = {"timeSeriesQuery": {"prometheusQuery": a.series}, "plotType": "LINE"}
        else:
            data = {"timeSeriesQuery": {"timeSeriesFilter": {
                "filter": a.metric_filter, "aggregation": {"alignmentPeriod": "60s", "perSeriesAligner": "ALIGN_MAX"}}},
                "plotType": "LINE"}
        tiles.append({"xPos": (i % 2) * 24, "yPos": (i // 2) * 16, "width": 24, "height": 16, "widget": {
            "title": a.display_name.removeprefix("Leadflow: "),
            "xyChart": {"dataSets": [data], "thresholds": [{"value": a.threshold, "label": "alert"}]}}})
    throughput = f"{_delta('units', '5m')} / 300"  # delta over a gauge of the cumulative count, per second
    tiles.append({"xPos": 0, "yPos": (len(ALERTS) + 1) // 2 * 16, "width": 48, "height": 16, "widget": {
        "title": "Input units per second (parse/units)",
        "xyChart": {"dataSets": [{"timeSeriesQuery": {"prometheusQuery": throughput}, "plotType": "LINE"}]}}})
    return {"displayName": "Leadflow pipeline", "mosaicLayout": {"columns": 48, "tiles": tiles}}
