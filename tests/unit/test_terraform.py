"""Terraform (infra/deploy/terraform) agrees with the code: tables and schemas with ``schemas/``, Pub/Sub with
``schemas/resources.py`` and the pipeline options, views with ``schemas/views``; service accounts hold only
least-privilege roles.

Terraform itself is not installed here: the HCL is parsed with python-hcl2 and checked structurally, and the
generated data file (``python -m infra.deploy.terraform_gen``) must equal what the generator produces from the code now.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import hcl2
import pytest

from infra.deploy import terraform_gen
from infra.deploy.dataflow import graph
from pipelines.options import LeadflowOptions
from schemas import bigquery as views
from schemas import resources as names
from schemas.derive import bigquery_schema
from schemas.records import RETENTION_DAYS, TABLES

TF_DIR = terraform_gen.TERRAFORM_DIR


def _clean(value: Any) -> Any:
    """python-hcl2 keeps HCL's quotes on string literals and block labels; drop them and the block markers."""
    if isinstance(value, dict):
        return {_clean(k): _clean(v) for k, v in value.items() if k not in ("__is_block__", "__comments__")}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def _tf_files() -> list[Path]:
    return sorted(TF_DIR.glob("*.tf"))


@pytest.fixture(scope="module")
def tf() -> dict[str, Any]:
    """{"resource": {(type, name): body}, "data": {...}, "locals": {...}, "variable": {...}, "output": {...}}."""
    out: dict[str, Any] = {"resource": {}, "data": {}, "locals": {}, "variable": {}, "output": {}}
    for path in _tf_files():
        with path.open() as f:
            doc = _clean(hcl2.load(f))
        for kind in ("resource", "data"):
            for block in doc.get(kind, []):
                for rtype, named in block.items():
                    for name, body in named.items():
                        assert (rtype, name) not in out[kind], f"{rtype}.{name} declared twice"
                        out[kind][(rtype, name)] = body
        for block in doc.get("locals", []):
            out["locals"].update(block)
        for kind in ("variable", "output"):
            for block in doc.get(kind, []):
                out[kind].update(block)
    return out


@pytest.fixture(scope="module")
def generated() -> dict[str, Any]:
    return json.loads(terraform_gen.GENERATED_PATH.read_text())


def _block(body: dict, name: str) -> dict:
    (inner,) = body[name]
    return inner


def _expand_for_each(body: dict, locals_: dict) -> list[str]:
    """The keys of a ``for_each = toset([...])`` or ``toset(local.X)`` literal list."""
    expr = body["for_each"]
    m = re.fullmatch(r"\$\{toset\(local\.(\w+)\)\}", expr)
    if m:
        return [_clean(v) for v in locals_[m.group(1)]]
    m = re.fullmatch(r"\$\{toset\(\[(.*)\]\)\}", expr, re.DOTALL)
    assert m, f"unexpected for_each {expr!r}"
    return [v.strip().strip('"') for v in m.group(1).split(",") if v.strip()]


# --- generated data ------------------------------------------------------------------------------------------------


def test_generated_file_is_what_the_generator_writes_now():
    assert terraform_gen.GENERATED_PATH.read_text() == terraform_gen.render(), (
        f"{terraform_gen.GENERATED_PATH} is stale (a record, table, topic or view changed): "
        "run python -m infra.deploy.terraform_gen and commit the result")


def test_generated_tables_match_schemas(generated):
    assert set(generated["tables"]) == set(TABLES)
    for name, spec in TABLES.items():
        table = generated["tables"][name]
        assert table["schema"] == bigquery_schema(spec.record), name
        assert table["partition_field"] == spec.partition_field, name
        assert table["clustering"] == list(spec.cluster_fields), name
        assert 1 <= len(table["clustering"]) <= 4, f"{name}: BigQuery clusters on 1 to 4 columns"
        columns = {f["name"]: f for f in table["schema"]}
        assert columns[spec.partition_field]["type"] in ("TIMESTAMP", "DATE"), name
        assert set(spec.cluster_fields) <= set(columns), name
        assert all(columns[c]["mode"] != "REPEATED" for c in spec.cluster_fields), name


def test_generated_pubsub_is_the_local_stack(generated):
    assert generated["topics"] == names.TOPICS
    assert {n: s["topic"] for n, s in generated["subscriptions"].items()} == names.SUBSCRIPTIONS
    ordered = {n for n, s in generated["subscriptions"].items() if s["message_ordering"]}
    assert ordered == {n for n, key in names.SUBSCRIPTIONS.items() if key == "deliveries"}


# --- BigQuery ------------------------------------------------------------------------------------------------------


def test_hcl_reads_the_generated_file(tf):
    loc = tf["locals"]
    assert loc["generated"] == '${jsondecode(file("${path.module}/generated/leadflow.json"))}'
    assert loc["tables"] == "${local.generated.tables}"
    assert loc["topics"] == "${local.generated.topics}"
    assert loc["subscriptions"] == "${local.generated.subscriptions}"
    assert loc["reference_tables"] == "${local.generated.reference_tables}"


def test_one_partitioned_clustered_table_per_record(tf):
    table = tf["resource"][("google_bigquery_table", "table")]
    assert table["for_each"] == "${local.tables}"
    assert table["table_id"] == "${each.key}"
    assert table["dataset_id"] == "${google_bigquery_dataset.leadflow.dataset_id}"
    assert table["schema"].startswith("${jsonencode([for f in each.value.schema : merge(f, ")  # + policy tags
    assert table["clustering"] == "${each.value.clustering}"
    assert _block(table, "time_partitioning") == {"type": "DAY", "field": "${each.value.partition_field}",
                                                  "expiration_ms": "${local.partition_expiration_ms[each.key]}"}
    assert table["deletion_protection"] is True
    bq_tables = [k for k in tf["resource"] if k[0] == "google_bigquery_table"]
    assert sorted(bq_tables) == [("google_bigquery_table", n) for n in ("reference", "table", "view")]


def test_retention_settings_in_the_generated_terraform(tf, generated):
    assert generated["retention_days"] == RETENTION_DAYS
    assert generated["retention_days"]["dead_letters"] == 30
    for name, spec in TABLES.items():
        table = generated["tables"][name]
        assert table["retention"] == spec.retention, name
        expected = RETENTION_DAYS[spec.retention] if spec.retention else None
        assert table["partition_expiration_days"] == expected, name
    assert generated["tables"]["dead_letters"]["partition_expiration_days"] == 30
    assert generated["tables"]["lead_events"]["retention"] == "events"
    assert tf["variable"]["retention_days"]["default"] == {}
    loc = tf["locals"]
    assert "var.retention_days" in loc["retention_days"] and "local.generated.retention_days" in loc["retention_days"]
    assert "86400000" in loc["partition_expiration_ms"]


def _tagged_columns(generated) -> dict[tuple[str, str], str]:
    return {(table, column): tag
            for table, t in generated["tables"].items() for column, tag in t["pii_columns"].items()}


def test_every_pii_column_has_its_policy_tag_and_no_other_column_has_one(tf, generated):
    from schemas.derive import columns

    pii = {(name, c.name) for name, spec in TABLES.items() for c in columns(spec.record) if c.metadata.get("pii")}
    tagged = _tagged_columns(generated)
    assert set(tagged) == pii
    assert {("dead_letters", "payload"), ("lead_events", "phone_e164"), ("leads", "message")} <= pii
    assert set(tagged.values()) <= set(generated["masking"])
    assert {c for (_t, c), tag in tagged.items() if tag == "identifier"} == {"identity_key", "phone_e164", "email"}
    for name, t in generated["tables"].items():  # the tagged names are columns of the table's schema
        assert set(t["pii_columns"]) <= {f["name"] for f in t["schema"]}, name
    schema = tf["resource"][("google_bigquery_table", "table")]["schema"]
    assert "google_data_catalog_policy_tag.pii[lookup(each.value.pii_columns, f.name" in schema
    assert "if contains(keys(each.value.pii_columns), f.name)" in schema  # only the pii columns get policyTags


def test_masking_rules_hash_identifiers_and_nullify_free_text_for_bi_and_raw_for_operations(tf, generated):
    assert {k: v["rule"] for k, v in generated["masking"].items()} == {"identifier": "SHA256",
                                                                        "free_text": "ALWAYS_NULL"}
    res = tf["resource"]
    taxonomy = res[("google_data_catalog_taxonomy", "personal_data")]
    assert taxonomy["activated_policy_types"] == ["FINE_GRAINED_ACCESS_CONTROL"]
    tag = res[("google_data_catalog_policy_tag", "pii")]
    assert (tag["for_each"], tag["taxonomy"]) == ("${local.generated.masking}",
                                                  "${google_data_catalog_taxonomy.personal_data.id}")
    policy = res[("google_bigquery_datapolicy_data_policy", "masked")]
    assert policy["data_policy_type"] == "DATA_MASKING_POLICY"
    assert policy["policy_tag"] == "${google_data_catalog_policy_tag.pii[each.key].name}"
    assert _block(policy, "data_masking_policy") == {"predefined_expression": "${each.value.rule}"}
    grants = {(rtype, role) for rtype, member, role in _grants(tf) if member == "${each.value[1]}"}
    assert grants == {("google_data_catalog_policy_tag_iam_member", "roles/datacatalog.categoryFineGrainedReader"),
                      ("google_bigquery_datapolicy_data_policy_iam_member", "roles/bigquerydatapolicy.maskedReader")}
    assert "var.operations_members" in res[("google_data_catalog_policy_tag_iam_member", "operations_raw")]["for_each"]
    assert "var.bi_members" in res[("google_bigquery_datapolicy_data_policy_iam_member", "bi_masked")]["for_each"]


def test_views_count_people_by_lead_id_never_by_a_raw_identifier():
    from schemas.derive import columns

    pii = {c.name for spec in TABLES.values() for c in columns(spec.record) if c.metadata.get("pii")}
    for view in views.load_views():
        sql = "\n".join(line.split("--", 1)[0] for line in view.template.splitlines())
        uses = [line.strip() for line in sql.splitlines() if any(re.search(rf"\b{c}\b", line) for c in pii)]
        if view.name == "leads_current":  # passes the first sighting's contact through, masked for BI as the table
            assert uses == ["l.phone_e164,", "l.email,", "l.full_name,"]
        else:
            assert uses == [], view.name


def test_reference_tables_are_the_ones_the_loader_reads(generated):
    from transforms import reference

    assert set(generated["reference_tables"]) == set(reference.BQ_TABLES.values())
    for key, table in reference.BQ_TABLES.items():  # required and optional columns
        assert [c["name"] for c in generated["reference_tables"][table]["schema"]] == list(reference.ALL_COLUMNS[key])


def test_every_view_file_becomes_a_view_with_the_same_placeholders(tf, generated):
    loc = tf["locals"]
    assert (TF_DIR / loc["views_dir"].replace("${path.module}/", "")).resolve() == views.VIEWS_DIR
    assert loc["views"] == '${{for f in fileset(local.views_dir, "*.sql") : trimsuffix(f, ".sql") => f}}'
    view = tf["resource"][("google_bigquery_table", "view")]
    assert view["for_each"] == "${local.views}"
    body = _block(view, "view")
    assert body["use_legacy_sql"] is False
    expected = ('${trimspace(replace(replace(file("${local.views_dir}/${each.value}"), "{project}", var.project), '
                '"{dataset}", var.dataset))}\\n')
    assert body["query"] == expected
    assert view["depends_on"] == ["${google_bigquery_table.table}"]
    # The HCL expression, evaluated here, renders each file exactly as schemas.bigquery does for the emulator.
    for v in views.load_views():
        hcl_sql = v.template.replace("{project}", "p-roject").replace("{dataset}", "d_s").strip() + "\n"
        assert hcl_sql == views.render(v.template, "p-roject", "d_s"), v.name
    assert set(generated["views"]) == set(views.view_names())
    assert all(d["description"] for d in generated["views"].values())


# --- Pub/Sub -------------------------------------------------------------------------------------------------------


def test_topics_and_subscriptions_are_the_local_stacks(tf):
    topic = tf["resource"][("google_pubsub_topic", "topic")]
    sub = tf["resource"][("google_pubsub_subscription", "subscription")]
    assert (topic["for_each"], topic["name"]) == ("${local.topics}", "${each.value}")
    assert (sub["for_each"], sub["name"]) == ("${local.subscriptions}", "${each.key}")
    assert sub["topic"] == "${google_pubsub_topic.topic[each.value.topic].id}"
    assert sub["enable_message_ordering"] == "${each.value.message_ordering}"
    assert sub["message_retention_duration"] == "${var.message_retention}"
    assert _block(sub, "expiration_policy") == {"ttl": ""}
    assert sorted(k for k in tf["resource"] if k[0] in ("google_pubsub_topic", "google_pubsub_subscription")) == [
        ("google_pubsub_subscription", "crm_push"), ("google_pubsub_subscription", "subscription"),
        ("google_pubsub_topic", "topic")]


def test_crm_push_subscriptions_are_the_crm_endpoint_file(tf, generated):
    from schemas import crm_endpoints

    endpoints = crm_endpoints.load()
    assert set(generated["crm_endpoints"]) == {e.subscription for e in endpoints}
    for e in endpoints:
        g = generated["crm_endpoints"][e.subscription]
        assert (g["url"], g["filter"], g["audience"], g["max_delivery_attempts"], g["wrapped"]) == (
            e.url, e.filter, e.audience, e.max_delivery_attempts, e.wrapped)
        assert (g["minimum_backoff"], g["maximum_backoff"]) == (
            f"{e.min_backoff_seconds:g}s", f"{e.max_backoff_seconds:g}s")
    assert tf["locals"]["crm_endpoints"] == "${local.generated.crm_endpoints}"
    push = tf["resource"][("google_pubsub_subscription", "crm_push")]
    assert (push["for_each"], push["name"], push["filter"]) == ("${local.crm_endpoints}", "${each.key}",
                                                                "${each.value.filter}")
    assert push["topic"] == '${google_pubsub_topic.topic["deliveries"].id}'
    config = _block(push, "push_config")
    assert config["push_endpoint"] == "${each.value.url}"
    assert _block(config, "oidc_token") == {"service_account_email": "${google_service_account.crm_push.email}",
                                            "audience": "${each.value.audience}"}
    assert _block(push, "retry_policy") == {"minimum_backoff": "${each.value.minimum_backoff}",
                                            "maximum_backoff": "${each.value.maximum_backoff}"}
    dead = _block(push, "dead_letter_policy")
    assert dead["dead_letter_topic"] == "${google_pubsub_topic.topic[local.crm_push.dead_letter_topic].id}"
    assert generated["crm_push"]["dead_letter_topic"] in names.TOPICS
    account = tf["resource"][("google_service_account", "crm_push")]
    assert account["account_id"] == "${local.crm_push.service_account_id}"
    assert generated["crm_push"]["service_account_id"] == crm_endpoints.PUSH_SERVICE_ACCOUNT_ID
    fwd = tf["resource"][("google_pubsub_subscription_iam_member", "crm_dead_letter_forwarder")]
    assert (fwd["for_each"], fwd["role"]) == ("${local.crm_endpoints}", "roles/pubsub.subscriber")


def test_pipeline_subscriptions_dead_letter_to_the_dead_letter_topic(tf):
    loc = tf["locals"]
    assert loc["dead_letter_source_topics"] == ["input", "agent_events"]
    assert loc["pipeline_subscriptions"] == (
        "${{for name, s in local.subscriptions : name => s if contains(local.dead_letter_source_topics, s.topic)}}")
    sub = tf["resource"][("google_pubsub_subscription", "subscription")]
    (dynamic,) = sub["dynamic"]
    policy = dynamic["dead_letter_policy"]
    assert policy["for_each"] == "${contains(local.dead_letter_source_topics, each.value.topic) ? [1] : []}"
    assert _block(policy, "content") == {
        "dead_letter_topic": '${google_pubsub_topic.topic["dead_letters"].id}',
        "max_delivery_attempts": "${var.max_delivery_attempts}"}
    # The pipeline's dead-letter topic option names that same topic.
    assert f"--dead_letter_topic={graph.RESOURCES.topic('dead_letters')}" in graph.PRODUCTION_ARGS
    # Pub/Sub's service agent may forward: publisher on the dead-letter topic, subscriber on the sources.
    fwd_topic = tf["resource"][("google_pubsub_topic_iam_member", "dead_letter_forwarder")]
    assert fwd_topic["topic"] == '${google_pubsub_topic.topic["dead_letters"].id}'
    assert fwd_topic["role"] == "roles/pubsub.publisher"
    fwd_sub = tf["resource"][("google_pubsub_subscription_iam_member", "dead_letter_forwarder")]
    assert (fwd_sub["for_each"], fwd_sub["role"]) == ("${local.pipeline_subscriptions}", "roles/pubsub.subscriber")
    assert loc["pubsub_service_agent"].endswith("@gcp-sa-pubsub.iam.gserviceaccount.com")
    assert 5 <= int(tf["variable"]["max_delivery_attempts"]["default"]) <= 100


def _option_resources() -> dict[str, str]:
    """Every *_topic / *_subscription pipeline option -> the resource name the production launch gives it."""
    import argparse

    parser = argparse.ArgumentParser()
    LeadflowOptions._add_argparse_args(parser)
    names = [a.dest for a in parser._actions if a.dest.endswith(("_topic", "_subscription"))]
    given = dict(a[2:].split("=", 1) for a in graph.PRODUCTION_ARGS if "=" in a)
    missing = [n for n in names if n not in given]
    assert not missing, f"the production launch (infra/deploy/dataflow/graph.py) does not set {missing}"
    return {n: given[n] for n in names}


def test_pipeline_reads_and_publishes_exactly_what_terraform_grants(tf):
    resources = _option_resources()
    topic_keys = {key for key, name in names.TOPICS.items()
                  if any(v.endswith(f"/topics/{name}") for v in resources.values())}
    sub_names = {v.rsplit("/", 1)[1] for v in resources.values() if "/subscriptions/" in v}
    assert sorted(tf["locals"]["pipeline_topics"]) == sorted(topic_keys)
    assert sub_names == {n for n, key in names.SUBSCRIPTIONS.items()
                         if key in tf["locals"]["dead_letter_source_topics"]}
    publisher = tf["resource"][("google_pubsub_topic_iam_member", "dataflow_publisher")]
    assert publisher["for_each"] == "${toset(local.pipeline_topics)}"
    assert publisher["topic"] == "${google_pubsub_topic.topic[each.key].id}"
    subscriber = tf["resource"][("google_pubsub_subscription_iam_member", "dataflow_subscriber")]
    assert subscriber["for_each"] == "${local.pipeline_subscriptions}"


def test_output_pipeline_parameters_are_pipeline_options(tf):
    import argparse

    parser = argparse.ArgumentParser()
    LeadflowOptions._add_argparse_args(parser)
    dests = {a.dest for a in parser._actions}
    expr = tf["output"]["pipeline_parameters"]["value"]
    params = re.findall(r'"(\w+)=', expr)
    assert params and set(params) <= dests, set(params) - dests
    assert {"input_subscription", "bq_dataset", "dead_letter_topic", "scorer_url"} <= set(params)


# --- IAM -----------------------------------------------------------------------------------------------------------

FORBIDDEN_ROLES = {"roles/owner", "roles/editor", "roles/viewer", "roles/bigquery.admin", "roles/bigquery.dataOwner",
                   "roles/pubsub.admin", "roles/pubsub.editor", "roles/storage.admin", "roles/secretmanager.admin",
                   "roles/iam.serviceAccountTokenCreator", "roles/iam.serviceAccountAdmin", "roles/dataflow.admin"}


def _grants(tf) -> list[tuple[str, str, str]]:
    """(resource type, member expression, role) of every IAM grant, for_each role lists expanded."""
    out = []
    for (rtype, _name), body in tf["resource"].items():
        if "_iam_" not in rtype:
            continue
        roles = _expand_for_each(body, tf["locals"]) if body["role"] == "${each.key}" else [body["role"]]
        out.extend((rtype, body["member"], role) for role in roles)
    return out


def test_only_additive_iam_members(tf):
    authoritative = [k for k in tf["resource"] if re.search(r"_iam_(binding|policy)$", k[0])]
    assert authoritative == [], "authoritative IAM resources would remove grants made elsewhere"


def test_no_broad_roles_anywhere(tf):
    grants = _grants(tf)
    assert grants
    assert [g for g in grants if g[2] in FORBIDDEN_ROLES] == []
    project_roles = {role for rtype, _m, role in grants if rtype == "google_project_iam_member"}
    assert project_roles <= {"roles/dataflow.worker", "roles/logging.logWriter", "roles/monitoring.metricWriter"}


def test_dataflow_service_account_has_exactly_the_least_privilege_set(tf):
    member = "serviceAccount:${google_service_account.dataflow.email}"
    got = sorted((rtype, role) for rtype, m, role in _grants(tf) if m == member)
    assert got == sorted([
        ("google_project_iam_member", "roles/dataflow.worker"),
        ("google_project_iam_member", "roles/logging.logWriter"),
        ("google_project_iam_member", "roles/monitoring.metricWriter"),
        ("google_pubsub_subscription_iam_member", "roles/pubsub.subscriber"),
        ("google_pubsub_subscription_iam_member", "roles/pubsub.viewer"),
        ("google_pubsub_topic_iam_member", "roles/pubsub.publisher"),
        ("google_bigquery_dataset_iam_member", "roles/bigquery.dataEditor"),
        ("google_storage_bucket_iam_member", "roles/storage.objectAdmin"),
        ("google_artifact_registry_repository_iam_member", "roles/artifactregistry.reader"),
        ("google_secret_manager_secret_iam_member", "roles/secretmanager.secretAccessor"),
        ("google_bigtable_table_iam_member", "roles/bigtable.user"),  # the identity store: rows only
    ])
    editor = tf["resource"][("google_bigquery_dataset_iam_member", "dataflow_editor")]
    assert editor["dataset_id"] == "${google_bigquery_dataset.leadflow.dataset_id}"
    bucket = tf["resource"][("google_storage_bucket_iam_member", "dataflow_bucket")]
    assert bucket["bucket"] == "${google_storage_bucket.dataflow.name}"
    secret = tf["resource"][("google_secret_manager_secret_iam_member", "dataflow_scorer_token")]
    assert secret["secret_id"] == "${google_secret_manager_secret.scorer_token.id}"


def test_scorer_service_account_has_no_data_access(tf):
    member = "serviceAccount:${google_service_account.scorer.email}"
    got = sorted((rtype, role) for rtype, m, role in _grants(tf) if m == member)
    assert got == sorted([
        ("google_project_iam_member", "roles/logging.logWriter"),
        ("google_project_iam_member", "roles/monitoring.metricWriter"),
        ("google_secret_manager_secret_iam_member", "roles/secretmanager.secretAccessor"),
    ])


def test_cloud_run_scorer_runs_as_the_scorer_account_with_the_token_from_secret_manager(tf):
    svc = tf["resource"][("google_cloud_run_v2_service", "scorer")]
    template = _block(svc, "template")
    assert template["service_account"] == "${google_service_account.scorer.email}"
    scaling = _block(template, "scaling")
    assert scaling == {"min_instance_count": "${var.scorer_min_instances}",
                       "max_instance_count": "${var.scorer_max_instances}"}
    container = _block(template, "containers")
    assert container["image"] == "${var.scorer_image}"
    env = {e["name"]: e for e in container["env"]}
    ref = _block(_block(env["LEADFLOW_SCORER_TOKEN"], "value_source"), "secret_key_ref")
    assert ref["secret"] == "${google_secret_manager_secret.scorer_token.secret_id}"
    assert "value" not in env["LEADFLOW_SCORER_TOKEN"]
    assert _block(_block(container, "startup_probe"), "http_get")["path"] == "/readyz"
    assert svc["ingress"] == "${var.scorer_ingress}"
    assert "INGRESS_TRAFFIC_ALL" not in json.dumps(tf["variable"]["scorer_ingress"])
    secret = tf["resource"][("google_secret_manager_secret", "scorer_token")]
    assert not [k for k in tf["resource"] if k[0] == "google_secret_manager_secret_version"], \
        "secret values never go through Terraform (state would hold them)"
    assert secret["secret_id"] == "leadflow-scorer-token"


# --- references resolve ----------------------------------------------------------------------------------------------


def test_every_reference_resolves():
    """A poor man's ``terraform validate``: variables, locals, resources and data sources referenced are declared."""
    text = "\n".join(p.read_text() for p in _tf_files())
    code = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    declared_vars = set(re.findall(r'^variable "(\w+)"', text, re.M))
    used_vars = set(re.findall(r"\bvar\.(\w+)", code))
    assert used_vars == declared_vars, (used_vars - declared_vars, declared_vars - used_vars)
    resources = set(re.findall(r'^resource "(\w+)" "(\w+)"', text, re.M))
    data = set(re.findall(r'^data "(\w+)" "(\w+)"', text, re.M))
    assert set(re.findall(r"(?<![.\w])(google_\w+)\.(\w+)", code)) <= resources
    assert set(re.findall(r"\bdata\.(google_\w+)\.(\w+)", code)) <= data
    blocks = [m.group(1) for m in re.finditer(r"^locals \{\n(.*?)^\}", text, re.M | re.S)]
    assert blocks
    locals_defined = {name for block in blocks for name in re.findall(r"^  (\w+)\s+=", block, re.M)}
    assert set(re.findall(r"\blocal\.(\w+)", code)) <= locals_defined


# --- the ingestion gateway on Cloud Run ------------------------------------------------------------------------------


def test_gateway_service_account_may_only_publish_to_its_two_topics_and_read_its_secrets(tf):
    member = "serviceAccount:${google_service_account.gateway.email}"
    got = sorted((rtype, role) for rtype, m, role in _grants(tf) if m == member)
    assert got == sorted([
        ("google_project_iam_member", "roles/logging.logWriter"),
        ("google_project_iam_member", "roles/monitoring.metricWriter"),
        ("google_pubsub_topic_iam_member", "roles/pubsub.publisher"),
        ("google_secret_manager_secret_iam_member", "roles/secretmanager.secretAccessor"),
    ])
    publisher = tf["resource"][("google_pubsub_topic_iam_member", "gateway_publisher")]
    assert publisher["for_each"] == "${toset(local.gateway_topics)}"
    assert tf["locals"]["gateway_topics"] == ["input", "dead_letters"]
    accessor = tf["resource"][("google_secret_manager_secret_iam_member", "gateway")]
    assert accessor["for_each"] == "${google_secret_manager_secret.gateway}"  # its own secrets, each one


def test_cloud_run_gateway_takes_every_secret_from_secret_manager(tf):
    from gateway.config import ENV, SECRET_ENV

    assert set(SECRET_ENV) <= set(ENV)
    assert sorted(tf["locals"]["gateway_secrets"]) == sorted(SECRET_ENV)
    svc = tf["resource"][("google_cloud_run_v2_service", "gateway")]
    template = _block(svc, "template")
    assert template["service_account"] == "${google_service_account.gateway.email}"
    container = _block(template, "containers")
    assert container["image"] == "${var.gateway_image}"
    plain = {e["name"]: e.get("value") for e in container["env"]}
    assert not set(plain) & set(SECRET_ENV), "a secret as a plain value"
    assert set(plain) <= set(ENV)
    assert plain["LEADFLOW_INPUT_TOPIC"] == '${google_pubsub_topic.topic["input"].id}'
    (dynamic,) = [d["env"] for d in container["dynamic"] if "env" in d and "secrets" in d["env"]["for_each"]]
    assert dynamic["for_each"] == "${local.gateway_secrets}"
    ref = _block(_block(_block(dynamic, "content"), "value_source"), "secret_key_ref")
    assert ref["secret"] == "${google_secret_manager_secret.gateway[env.value].secret_id}"
    assert _block(_block(container, "startup_probe"), "http_get")["path"] == "/healthz"
    assert not [k for k in tf["resource"] if k[0] == "google_secret_manager_secret_version"]


def test_gateway_instances_share_one_redis(tf):
    """Memorystore for the shared state, reached over Direct VPC egress, its URL in LEADFLOW_GATEWAY_STATE_URL."""
    from gateway.config import ENV

    redis = tf["resource"][("google_redis_instance", "gateway")]
    assert redis["count"] == "${var.gateway_shared_state ? 1 : 0}"
    assert redis["authorized_network"] == "${var.gateway_network}"
    template = _block(tf["resource"][("google_cloud_run_v2_service", "gateway")], "template")
    (egress,) = [d["vpc_access"] for d in template["dynamic"] if "vpc_access" in d]
    assert egress["for_each"] == "${var.gateway_shared_state ? [1] : []}"
    assert _block(egress, "content")["egress"] == "PRIVATE_RANGES_ONLY"
    container = _block(template, "containers")
    (state,) = [d["env"] for d in container["dynamic"] if "env" in d and "redis" in d["env"]["for_each"]]
    assert state["for_each"] == "${google_redis_instance.gateway}"
    content = _block(state, "content")
    assert content["name"] == "LEADFLOW_GATEWAY_STATE_URL" and content["name"] in ENV
    assert content["value"] == "redis://${env.value.host}:${env.value.port}/0"
