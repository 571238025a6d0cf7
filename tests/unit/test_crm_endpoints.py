"""The CRM endpoint file (schemas/crm_endpoints.toml) is valid for Pub/Sub, and bad entries get clear errors."""

from __future__ import annotations

import pytest

from infra.local.pubsub_emulator.filters import compile_filter
from schemas import crm_endpoints
from schemas.crm_endpoints import ConfigError, CrmEndpoint
from schemas.resources import Resources


def test_the_reference_file_loads_and_its_filters_are_valid_pubsub_filters():
    endpoints = crm_endpoints.load()
    assert endpoints, "schemas/crm_endpoints.toml configures no endpoint"
    for e in endpoints:
        compile_filter(e.filter)  # raises FilterError for what Pub/Sub would refuse
    nyc = next(e for e in endpoints if e.name == "nyc")
    matches = compile_filter(nyc.filter)
    assert matches({"team": "nyc-priority", "is_test": "false"})
    assert not matches({"team": "us-east-sales", "is_test": "false"})
    assert not matches({"team": "nyc-sales", "is_test": "true"})


def test_push_subscription_request():
    e = CrmEndpoint(name="acme", url="https://acme.example/hook", local_url="http://127.0.0.1:9/crm/acme",
                    filter='attributes.team = "t"', audience="acme", min_backoff_seconds=0.5,
                    max_backoff_seconds=30, max_delivery_attempts=7, wrapped=False)
    r = Resources("proj")
    request = e.push_subscription(r, local=True)
    assert request["name"] == "projects/proj/subscriptions/crm-push-acme"
    assert request["topic"] == r.topic("deliveries")
    assert request["push_config"] == {
        "push_endpoint": "http://127.0.0.1:9/crm/acme", "no_wrapper": {"write_metadata": True},
        "oidc_token": {"service_account_email": "leadflow-crm-push@proj.iam.gserviceaccount.com", "audience": "acme"}}
    assert request["retry_policy"] == {"minimum_backoff": {"seconds": 0, "nanos": 500_000_000},
                                       "maximum_backoff": {"seconds": 30, "nanos": 0}}
    assert request["dead_letter_policy"] == {"dead_letter_topic": r.topic("crm_dead_letters"),
                                             "max_delivery_attempts": 7}
    assert e.push_subscription(r, local=False)["push_config"]["push_endpoint"] == "https://acme.example/hook"


@pytest.mark.parametrize(("fields", "why"), [
    ({"name": "A_b"}, "name must be"),
    ({"url": "http://insecure.example/x"}, "https URL"),
    ({"local_url": "ftp://x/y"}, "local_url"),
    ({"min_backoff_seconds": 700}, "within 0..600"),
    ({"min_backoff_seconds": 20, "max_backoff_seconds": 10}, "must not exceed"),
    ({"max_delivery_attempts": 4}, "5..100"),
    ({"filter": "x" * 257}, "256 bytes"),
])
def test_bad_entries_are_refused(fields, why):
    with pytest.raises(ConfigError, match=why):
        CrmEndpoint(**{"name": "acme", "url": "https://acme.example/hook", **fields})


def test_file_errors():
    with pytest.raises(ConfigError, match="unknown fields"):
        crm_endpoints.parse('[[endpoint]]\nname = "acme"\nurl = "https://a.example/x"\nretries = 3\n')
    with pytest.raises(ConfigError, match="unique"):
        crm_endpoints.parse('[[endpoint]]\nname = "acme"\nurl = "https://a.example/x"\n' * 2)
    with pytest.raises(ConfigError, match="not valid TOML"):
        crm_endpoints.parse("[[endpoint]\n")
