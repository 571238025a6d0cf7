output "dataflow_service_account" {
  description = "Run the job as this account (--service_account_email / flex-template run --service-account-email)."
  value       = google_service_account.dataflow.email
}

output "scorer_service_account" {
  value = google_service_account.scorer.email
}

output "bucket" {
  description = "Staging/temp bucket of the job; the Flex Template spec lives under templates/."
  value       = google_storage_bucket.dataflow.name
}

output "artifact_registry" {
  description = "Docker repository for the launcher and scorer images."
  value       = "${google_artifact_registry_repository.leadflow.location}-docker.pkg.dev/${var.project}/${google_artifact_registry_repository.leadflow.repository_id}"
}

output "scorer_url" {
  description = "The scorer's URL (the pipeline's --scorer_url)."
  value       = google_cloud_run_v2_service.scorer.uri
}

output "bq_dataset" {
  description = "The pipeline's --bq_dataset."
  value       = "${var.project}:${google_bigquery_dataset.leadflow.dataset_id}"
}

output "topics" {
  value = { for key, t in google_pubsub_topic.topic : key => t.id }
}

output "subscriptions" {
  value = { for name, s in google_pubsub_subscription.subscription : name => s.id }
}

# The pipeline parameters of a production launch, in the form `gcloud dataflow flex-template run --parameters`
# takes (see the Makefile's flex-template-run and docs/runbook.md).
output "pipeline_parameters" {
  value = join(",", [
    "input_subscription=${google_pubsub_subscription.subscription["leads-in-pipeline"].id}",
    "agent_events_subscription=${google_pubsub_subscription.subscription["agent-events-pipeline"].id}",
    "bq_dataset=${var.project}:${google_bigquery_dataset.leadflow.dataset_id}",
    "bq_backend=beam",
    "delivery_topic=${google_pubsub_topic.topic["deliveries"].id}",
    "dead_letter_topic=${google_pubsub_topic.topic["dead_letters"].id}",
    "manual_review_topic=${google_pubsub_topic.topic["manual_review"].id}",
    "scorer=bentoml",
    "scorer_url=${google_cloud_run_v2_service.scorer.uri}",
    "reference_data=bq://${var.project}.${google_bigquery_dataset.leadflow.dataset_id}",
    "identity_store=bigtable:${google_bigtable_table.identity.id}",
  ])
}

output "gateway_url" {
  description = "The ingestion gateway's URL (set var.gateway_public_url to it, or to a custom domain in front of it)."
  value       = google_cloud_run_v2_service.gateway.uri
}

output "gateway_service_account" {
  value = google_service_account.gateway.email
}
