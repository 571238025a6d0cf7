"""Generate ``infra/deploy/dataflow/metadata.json`` (the Flex Template's parameter metadata) from ``LeadflowOptions``.

    python -m infra.deploy.dataflow.metadata            # rewrite metadata.json
    python -m infra.deploy.dataflow.metadata --check    # exit 1 when metadata.json differs from what would be generated

Every option ``LeadflowOptions`` declares becomes one template parameter: its help text, its argparse group as
``groupName``, its default as ``defaultValue``, ``choices`` as an ``ENUM`` with a matching regex, numbers as
``NUMBER`` with a regex, and the resource names ``pipelines/options.py`` validates (subscriptions, topics,
the BigQuery dataset) with the very regexes it validates them with. Dataflow checks the regexes when the template
is launched, before any worker starts. The file is generated so it cannot drift from the options: the unit test
``tests/unit/test_dataflow_template.py`` fails when it is stale.

Defaults that come from the environment (``$LEADFLOW_SCORER_URL``, ``$LEADFLOW_GOOGLE_ADS_KEY``) are never
written: generation runs with every ``LEADFLOW_*`` variable removed, so the output is the same on every machine and
no local URL or key ends up in the repository.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

METADATA_PATH = Path(__file__).resolve().parent / "metadata.json"

TEMPLATE_NAME = "Leadflow lead pipeline"
TEMPLATE_DESCRIPTION = (
    "Streaming lead processing: reads lead messages (and agent events) from Pub/Sub, parses, normalizes, "
    "de-duplicates, scores (BentoML scorer with a fallback) and routes each lead, writes every table to BigQuery "
    "and publishes deliveries, manual-review leads and dead letters to Pub/Sub. See docs/runbook.md."
)
UNIT_INTERVAL = r"^(0(\.[0-9]+)?|1(\.0+)?|\.[0-9]+)$"  # 0 <= x <= 1
NON_NEGATIVE_INT = r"^[0-9]+$"
NON_NEGATIVE_FLOAT = r"^([0-9]+(\.[0-9]*)?|\.[0-9]+)$"
REGION = r"^[A-Z]{2}$"  # ISO 3166-1 alpha-2; options.py also checks phonenumbers knows the region
UNIT_INTERVAL_OPTIONS = frozenset({"hot_threshold", "warm_threshold", "unverified_source_reliability"})


@contextlib.contextmanager
def _without_leadflow_env() -> Iterator[None]:
    saved = {k: v for k, v in os.environ.items() if k.startswith("LEADFLOW_")}
    for k in saved:
        del os.environ[k]
    try:
        yield
    finally:
        os.environ.update(saved)


def leadflow_parser() -> argparse.ArgumentParser:
    """A parser holding only LeadflowOptions' arguments, built without any LEADFLOW_* environment."""
    from pipelines.options import LeadflowOptions

    parser = argparse.ArgumentParser(add_help=False)
    with _without_leadflow_env():
        LeadflowOptions._add_argparse_args(parser)
    return parser


def _label(name: str) -> str:
    words = name.split("_")
    special = {"bq": "BigQuery", "sla": "SLA", "url": "URL", "ttl": "TTL", "ads": "Ads", "id": "ID"}
    out = [special.get(w, w) for w in words]
    out[0] = out[0][:1].upper() + out[0][1:]
    return " ".join(out)


def _resource_regex(name: str) -> tuple[str | None, str | None]:
    """(paramType, regex) for the Pub/Sub and BigQuery names options.py validates."""
    from schemas import bigquery, resources

    if name.endswith("_subscription"):
        return "PUBSUB_SUBSCRIPTION", resources.SUBSCRIPTION_PATH.pattern
    if name.endswith("_topic"):
        return "PUBSUB_TOPIC", resources.TOPIC_PATH.pattern
    if name == "bq_dataset":
        return "TEXT", bigquery.DATASET_SPEC.pattern
    if name == "default_region":
        return "TEXT", REGION
    return None, None


def parameter(action: argparse.Action, group: str) -> dict[str, Any]:
    name = action.dest
    param: dict[str, Any] = {
        "name": name,
        "label": _label(name),
        "helpText": " ".join((action.help or "").split()),
        "isOptional": not action.required,
        "groupName": group,
    }
    regexes: list[str] = []
    if action.choices:
        param["paramType"] = "ENUM"
        param["enumOptions"] = [{"value": str(c), "label": str(c)} for c in action.choices]
        regexes.append("^(" + "|".join(str(c) for c in action.choices) + ")$")
    elif action.type is int:
        param["paramType"] = "NUMBER"
        regexes.append(NON_NEGATIVE_INT)
    elif action.type is float:
        param["paramType"] = "NUMBER"
        regexes.append(UNIT_INTERVAL if name in UNIT_INTERVAL_OPTIONS else NON_NEGATIVE_FLOAT)
    else:
        param_type, regex = _resource_regex(name)
        param["paramType"] = param_type or "TEXT"
        if regex:
            regexes.append(regex)
    if regexes:
        param["regexes"] = regexes
    if action.default is not None and action.default is not argparse.SUPPRESS:
        param["defaultValue"] = str(action.default)
    return param


def generate() -> dict[str, Any]:
    """The metadata document for the current LeadflowOptions."""
    parser = leadflow_parser()
    params = []
    for group in parser._action_groups:
        for action in group._group_actions:
            if action.dest == "help" or not action.option_strings:
                continue
            params.append(parameter(action, group.title or ""))
    return {
        "name": TEMPLATE_NAME,
        "description": TEMPLATE_DESCRIPTION,
        "streaming": True,
        "supportsAtLeastOnce": False,
        "supportsExactlyOnce": True,
        "defaultStreamingMode": "EXACTLY_ONCE",
        "parameters": params,
    }


def render() -> str:
    return json.dumps(generate(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m infra.deploy.dataflow.metadata", description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="only compare; exit 1 when metadata.json is stale")
    ap.add_argument("--out", type=Path, default=METADATA_PATH)
    args = ap.parse_args(argv)
    text = render()
    if args.check:
        current = args.out.read_text() if args.out.exists() else ""
        if current != text:
            print(f"{args.out} is stale: run 'python -m infra.deploy.dataflow.metadata'", file=sys.stderr)
            return 1
        print(f"{args.out} is up to date ({len(generate()['parameters'])} parameters)")
        return 0
    args.out.write_text(text)
    print(f"wrote {args.out} ({len(generate()['parameters'])} parameters)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
