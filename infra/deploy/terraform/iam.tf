# Two service accounts, each with only what it uses:
#
#   leadflow-dataflow  the Dataflow job (launcher VM and workers): runs as a Dataflow worker, reads its two
#                      subscriptions, publishes to its three topics, writes the dataset's tables, uses the bucket,
#                      pulls the launcher image. No project-wide data roles.
#   leadflow-scorer    the Cloud Run scorer: reads its token secret and writes logs and metrics. No data access.
#   leadflow-crm-push  the identity in the OIDC tokens of the CRM push subscriptions (the token's email claim);
#                      it holds no roles. Pub/Sub's service agent mints the tokens (projects created after
#                      April 2021 need no extra grant for that).

resource "google_service_account" "dataflow" {
  account_id   = "leadflow-dataflow"
  display_name = "Leadflow Dataflow job"
  description  = "Runs the Leadflow streaming job (Flex Template launcher and workers)."
}

resource "google_service_account" "crm_push" {
  account_id   = local.crm_push.service_account_id
  display_name = "Leadflow CRM push"
  description  = "Signs the CRM push subscriptions' OIDC tokens (schemas/crm_endpoints.toml); no roles."
}

resource "google_service_account" "scorer" {
  account_id   = "leadflow-scorer"
  display_name = "Leadflow scorer (Cloud Run)"
  description  = "Runs the BentoML lead scorer; no access to lead data."
}

# --- the Dataflow job --------------------------------------------------------------------------------------------

# Project-level roles: only the worker role and write-only telemetry.
resource "google_project_iam_member" "dataflow" {
  for_each = toset([
    "roles/dataflow.worker",
    "roles/logging.logWriter",
    "roles/monitoring.metricWriter",
  ])
  project = var.project
  role    = each.key
  member  = "serviceAccount:${google_service_account.dataflow.email}"
}

resource "google_pubsub_subscription_iam_member" "dataflow_subscriber" {
  for_each     = local.pipeline_subscriptions
  subscription = google_pubsub_subscription.subscription[each.key].id
  role         = "roles/pubsub.subscriber"
  member       = "serviceAccount:${google_service_account.dataflow.email}"
}

# Dataflow reads a subscription's metadata (subscriptions.get) when the job starts and to track its backlog.
resource "google_pubsub_subscription_iam_member" "dataflow_viewer" {
  for_each     = local.pipeline_subscriptions
  subscription = google_pubsub_subscription.subscription[each.key].id
  role         = "roles/pubsub.viewer"
  member       = "serviceAccount:${google_service_account.dataflow.email}"
}

resource "google_pubsub_topic_iam_member" "dataflow_publisher" {
  for_each = toset(local.pipeline_topics)
  topic    = google_pubsub_topic.topic[each.key].id
  role     = "roles/pubsub.publisher"
  member   = "serviceAccount:${google_service_account.dataflow.email}"
}

# Streaming inserts into the tables and reading the ref_* tables: dataEditor on this dataset only.
resource "google_bigquery_dataset_iam_member" "dataflow_editor" {
  dataset_id = google_bigquery_dataset.leadflow.dataset_id
  role       = "roles/bigquery.dataEditor"
  member     = "serviceAccount:${google_service_account.dataflow.email}"
}

resource "google_storage_bucket_iam_member" "dataflow_bucket" {
  bucket = google_storage_bucket.dataflow.name
  role   = "roles/storage.objectAdmin"
  member = "serviceAccount:${google_service_account.dataflow.email}"
}

# The Flex Template launcher VM runs as this account and pulls the launcher image.
resource "google_artifact_registry_repository_iam_member" "dataflow_reader" {
  repository = google_artifact_registry_repository.leadflow.name
  location   = google_artifact_registry_repository.leadflow.location
  role       = "roles/artifactregistry.reader"
  member     = "serviceAccount:${google_service_account.dataflow.email}"
}

# The scorer's bearer token, for workers that read it from Secret Manager (this one secret only).
resource "google_secret_manager_secret_iam_member" "dataflow_scorer_token" {
  secret_id = google_secret_manager_secret.scorer_token.id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.dataflow.email}"
}

# Who may launch the job as leadflow-dataflow (actAs on this account only).
resource "google_service_account_iam_member" "dataflow_deployers" {
  for_each           = toset(var.deployer_members)
  service_account_id = google_service_account.dataflow.name
  role               = "roles/iam.serviceAccountUser"
  member             = each.key
}

# --- the scorer --------------------------------------------------------------------------------------------------

resource "google_project_iam_member" "scorer" {
  for_each = toset([
    "roles/logging.logWriter",
    "roles/monitoring.metricWriter",
  ])
  project = var.project
  role    = each.key
  member  = "serviceAccount:${google_service_account.scorer.email}"
}

resource "google_secret_manager_secret_iam_member" "scorer_token" {
  secret_id = google_secret_manager_secret.scorer_token.id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.scorer.email}"
}
