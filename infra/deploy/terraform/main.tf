# Leadflow production infrastructure: Pub/Sub, BigQuery, the Dataflow job's identity and bucket, the scorer on
# Cloud Run. Everything that mirrors code (table schemas, partitioning, clustering, topic and subscription names,
# view descriptions) comes from generated/leadflow.json, written by `python -m infra.deploy.terraform_gen` from
# schemas/records.py and infra/local/stack.py; views come from schemas/views/*.sql. Never edit those by hand here.
# See docs/runbook.md for deploying, updating and operating the job.

locals {
  generated = jsondecode(file("${path.module}/generated/leadflow.json"))

  tables           = local.generated.tables           # name => {description, partition_field, clustering, schema}
  reference_tables = local.generated.reference_tables # ref_* tables read by --reference_data=bq://PROJECT.DATASET
  topics           = local.generated.topics           # key (input, deliveries, ...) => topic name
  subscriptions    = local.generated.subscriptions    # name => {topic (key), message_ordering}
  crm_endpoints    = local.generated.crm_endpoints    # push subscription => {url, filter, audience, backoff, ...}
  crm_push         = local.generated.crm_push         # {service_account_id, dead_letter_topic (key)}

  # Subscriptions the pipeline reads: messages Pub/Sub cannot deliver after var.max_delivery_attempts go to the
  # dead-letter topic (beside the pipeline's own dead letters; `leadflow replay-dead-letters` handles both).
  dead_letter_source_topics = ["input", "agent_events"]
  pipeline_subscriptions    = { for name, s in local.subscriptions : name => s if contains(local.dead_letter_source_topics, s.topic) }
  # Topics the pipeline publishes to.
  pipeline_topics = ["deliveries", "dead_letters", "manual_review"]

  views_dir = "${path.module}/../../../schemas/views"
  views     = { for f in fileset(local.views_dir, "*.sql") : trimsuffix(f, ".sql") => f }

  pubsub_service_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
}

data "google_project" "this" {
  project_id = var.project
}

resource "google_project_service" "apis" {
  for_each = toset([
    "artifactregistry.googleapis.com",
    "bigquery.googleapis.com",
    "cloudbuild.googleapis.com", # builds the Flex Template launcher image (make flex-template-image)
    "bigquerydatapolicy.googleapis.com", # data-masking rules on the personal columns (masking.tf)
    "compute.googleapis.com",
    "datacatalog.googleapis.com", # the policy tags of the personal columns
    "dataflow.googleapis.com",
    "pubsub.googleapis.com",
    "redis.googleapis.com", # the gateway's shared state (Memorystore)
    "run.googleapis.com",
    "secretmanager.googleapis.com",
    "storage.googleapis.com",
  ])
  service            = each.key
  disable_on_destroy = false
}

# Staging and temp files of the Dataflow job, and the Flex Template spec (templates/leadflow.json).
resource "google_storage_bucket" "dataflow" {
  name                        = "${var.project}-leadflow-dataflow"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false
  labels                      = var.labels
  soft_delete_policy {
    retention_duration_seconds = 0 # Beam warns about (and is billed for) soft-deleted temp files
  }
  depends_on = [google_project_service.apis]
}

# Images: the Flex Template launcher (infra/deploy/dataflow/Dockerfile) and the BentoML scorer (bentoml containerize).
resource "google_artifact_registry_repository" "leadflow" {
  repository_id = "leadflow"
  location      = var.region
  format        = "DOCKER"
  description   = "Leadflow images: Dataflow Flex Template launcher and the lead scorer."
  labels        = var.labels
  depends_on    = [google_project_service.apis]
}
