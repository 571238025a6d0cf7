"""The names of Leadflow's cloud resources: Pub/Sub topics and subscriptions, and the BigQuery dataset.

Defined once, below both the local stack (``infra.local.stack`` creates them in the emulators) and the
deployment (``infra.deploy.terraform_gen`` writes them into Terraform, ``infra.deploy.dataflow.graph`` builds the
production graph with them), so a local run and production read and write the same names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Full Pub/Sub resource names, as options and the Flex Template metadata check them.
SUBSCRIPTION_PATH = re.compile(r"^projects/[^/]+/subscriptions/[^/]+$")
TOPIC_PATH = re.compile(r"^projects/[^/]+/topics/[^/]+$")

LOCAL_PROJECT = "leadflow-local"  # the project the local stack's emulators serve
DATASET = "leadflow"
IDENTITY_INSTANCE, IDENTITY_TABLE = "leadflow-identity", "identity"  # Bigtable: the identity store on Dataflow
TOPICS = {
    "input": "leads-in",
    "deliveries": "lead-deliveries",
    "dead_letters": "lead-dead-letters",
    "agent_events": "agent-events",
    "manual_review": "lead-manual-review",
    "crm_dead_letters": "crm-delivery-dead-letters",  # CRM pushes that failed every attempt (schemas/crm_endpoints)
}
# subscription -> topic key
SUBSCRIPTIONS = {
    "leads-in-pipeline": "input",
    "lead-deliveries-crm": "deliveries",
    "lead-dead-letters-ops": "dead_letters",
    "agent-events-pipeline": "agent_events",
    "lead-manual-review-ops": "manual_review",
    "crm-delivery-dead-letters-ops": "crm_dead_letters",
}
INPUT_SUBSCRIPTION = "leads-in-pipeline"
AGENT_EVENTS_SUBSCRIPTION = "agent-events-pipeline"


@dataclass(frozen=True)
class Resources:
    """Full resource names in one project."""

    project: str
    dataset: str = DATASET

    def topic(self, key: str) -> str:
        return f"projects/{self.project}/topics/{TOPICS[key]}"

    def subscription(self, name: str) -> str:
        return f"projects/{self.project}/subscriptions/{name}"

    @property
    def bq_dataset(self) -> str:
        return f"{self.project}:{self.dataset}"

    def identity_store(self) -> str:
        return f"bigtable:projects/{self.project}/instances/{IDENTITY_INSTANCE}/tables/{IDENTITY_TABLE}"

    def pipeline_args(self) -> list[str]:
        """The lead pipeline's input and output options for these resources."""
        return [
            f"--input_subscription={self.subscription(INPUT_SUBSCRIPTION)}",
            f"--agent_events_subscription={self.subscription(AGENT_EVENTS_SUBSCRIPTION)}",
            f"--bq_dataset={self.bq_dataset}",
            f"--delivery_topic={self.topic('deliveries')}",
            f"--dead_letter_topic={self.topic('dead_letters')}",
            f"--manual_review_topic={self.topic('manual_review')}",
        ]
