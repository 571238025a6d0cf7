"""The Flex Template: metadata.json is generated from LeadflowOptions and in sync; its regexes agree with the
validation in pipelines/options.py; the Dockerfile points the launcher at files that exist."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from infra.deploy.dataflow import metadata
from pipelines.options import LeadflowOptions

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "infra" / "deploy" / "dataflow" / "Dockerfile"


def _options() -> list[argparse.Action]:
    parser = argparse.ArgumentParser(add_help=False)
    LeadflowOptions._add_argparse_args(parser)
    return [a for a in parser._actions if a.option_strings]


def _params() -> dict[str, dict]:
    return {p["name"]: p for p in json.loads(metadata.METADATA_PATH.read_text())["parameters"]}


def test_metadata_json_is_generated_from_the_options_and_current():
    assert metadata.METADATA_PATH.read_text() == metadata.render(), (
        "infra/deploy/dataflow/metadata.json is stale: run python -m infra.deploy.dataflow.metadata")


def test_every_option_is_a_documented_parameter():
    params = _params()
    assert sorted(params) == sorted(a.dest for a in _options())
    for action in _options():
        p = params[action.dest]
        assert p["helpText"] and p["label"] and p["isOptional"] is True, action.dest
        if action.choices:
            assert [o["value"] for o in p["enumOptions"]] == list(action.choices)
        if action.default is not None:
            assert p["defaultValue"] == str(action.default), action.dest


def test_metadata_is_a_valid_dataflow_template_metadata_message():
    from google.cloud.dataflow_v1beta3.types import ParameterType, TemplateMetadata

    message = TemplateMetadata.from_json(metadata.METADATA_PATH.read_text())  # unknown fields or types raise
    assert message.streaming and len(message.parameters) == len(_options())
    assert {p.param_type for p in message.parameters} <= {
        ParameterType.TEXT, ParameterType.ENUM, ParameterType.NUMBER, ParameterType.PUBSUB_TOPIC,
        ParameterType.PUBSUB_SUBSCRIPTION}
    for p in message.parameters:
        for regex in p.regexes:
            re.compile(regex)


def test_environment_defaults_never_reach_the_metadata(monkeypatch):
    monkeypatch.setenv("LEADFLOW_SCORER_URL", "http://127.0.0.1:3000")
    monkeypatch.setenv("LEADFLOW_GOOGLE_ADS_KEY", "not-in-the-repo")
    text = metadata.render()
    assert "127.0.0.1" not in text and "not-in-the-repo" not in text
    assert text == metadata.METADATA_PATH.read_text()


BASE = ["--input_subscription=projects/p/subscriptions/s", "--bq_dataset=proj-1:leads"]


def _validate(*extra: str) -> str | None:
    try:
        PipelineOptions([*BASE, *extra]).view_as(LeadflowOptions).validate_leadflow()
    except ValueError as e:
        return str(e)
    return None


def _matches(name: str, value: str) -> bool:
    return all(re.search(r, value) for r in _params()[name].get("regexes", []))


@pytest.mark.parametrize("name,value", [
    ("input_subscription", "projects/p/subscriptions/leads-in-pipeline"),
    ("input_subscription", "leads-in-pipeline"),
    ("input_subscription", "projects/p/topics/leads-in"),
    ("dead_letter_topic", "projects/p/topics/lead-dead-letters"),
    ("dead_letter_topic", "lead-dead-letters"),
    ("delivery_topic", "projects/p/subscriptions/x"),
    ("bq_dataset", "proj-1:leadflow"),
    ("bq_dataset", "proj-1.leadflow"),
    ("bq_dataset", "leadflow"),
    ("default_region", "GB"),
    ("default_region", "gb"),
    ("max_payload_bytes", "1000"),
    ("max_payload_bytes", "-5"),
    ("hot_threshold", "0.8"),
    ("hot_threshold", "1.5"),
    ("bq_backend", "beam"),
    ("bq_backend", "bigquery"),
])
def test_template_regexes_agree_with_option_validation(name, value):
    """A value Dataflow's launch-time regex accepts is one validate_leadflow accepts, and vice versa."""
    try:
        error = _validate(f"--{name}={value}")
    except SystemExit:  # argparse rejects a value outside choices
        error = "argparse"
    assert _matches(name, value) == (error is None), (name, value, error)


def test_dockerfile_launches_the_shim_with_the_setup_file():
    text = DOCKERFILE.read_text()
    assert re.search(r"^ARG LAUNCHER_BASE=gcr\.io/dataflow-templates-base/python311-template-launcher-base",
                     text, re.M)
    env = dict(re.findall(r"(FLEX_TEMPLATE_PYTHON_\w+)=(\S+)", text))
    assert env == {"FLEX_TEMPLATE_PYTHON_PY_FILE": "/template/infra/deploy/dataflow/main.py",
                   "FLEX_TEMPLATE_PYTHON_SETUP_FILE": "/template/setup.py"}
    for target in env.values():
        assert (REPO / target.removeprefix("/template/")).is_file(), target
    for src in re.findall(r"^COPY (\S+)", text, re.M):
        assert (REPO / src).exists(), f"COPY {src}: not in the repository"
    copied = {src.rstrip("/") for src in re.findall(r"^COPY (\S+)/ ", text, re.M)}
    assert _setup_packages() <= copied, f"setup.py ships {_setup_packages() - copied} but the image lacks them"


def _setup_packages() -> set[str]:
    """Top-level packages setup.py ships (its find_packages include list, parsed, not executed)."""
    import ast

    tree = ast.parse((REPO / "setup.py").read_text())
    include = next(ast.literal_eval(k.value) for node in ast.walk(tree) if isinstance(node, ast.Call)
                   for k in node.keywords if k.arg == "include")
    return {pattern.rstrip("*") for pattern in include}


def test_launcher_shim_runs_the_pipeline_main():
    import ast

    tree = ast.parse((REPO / "infra" / "deploy" / "dataflow" / "main.py").read_text())
    imports = [(n.module, [a.name for a in n.names]) for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert ("pipelines.lead_pipeline", ["main"]) in imports
