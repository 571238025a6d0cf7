# The BentoML scorer (scoring/service.py, built with `bentoml build` and `bentoml containerize`) on Cloud Run.
#
# Authentication is the service's own bearer token (LEADFLOW_SCORER_TOKEN, from Secret Manager), which the
# pipeline sends as "Authorization: Bearer ...". Cloud Run's IAM check would claim that same header for an
# identity token, so it is turned off (invoker_iam_disabled) and the service is reachable only from inside the
# project's VPC (INGRESS_TRAFFIC_INTERNAL_ONLY: Dataflow workers with Private Google Access), never the internet.

# The secret holds no value here (nothing secret in the repository or the Terraform state): add one with
#   openssl rand -hex 32 | gcloud secrets versions add leadflow-scorer-token --data-file=-
resource "google_secret_manager_secret" "scorer_token" {
  secret_id = "leadflow-scorer-token"
  labels    = var.labels
  replication {
    auto {}
  }
  depends_on = [google_project_service.apis]
}

resource "google_cloud_run_v2_service" "scorer" {
  name                 = "lead-scorer"
  location             = var.region
  ingress              = var.scorer_ingress
  invoker_iam_disabled = true
  deletion_protection  = false
  labels               = var.labels

  template {
    service_account                  = google_service_account.scorer.email
    max_instance_request_concurrency = 64
    timeout                          = "30s"

    scaling {
      min_instance_count = var.scorer_min_instances
      max_instance_count = var.scorer_max_instances
    }

    containers {
      image = var.scorer_image

      ports {
        container_port = 3000 # bentoml serve's port in the containerized Bento
      }

      resources {
        limits = {
          cpu    = var.scorer_cpu
          memory = var.scorer_memory
        }
        cpu_idle = false # adaptive batching runs between requests
      }

      env {
        name  = "LEADFLOW_SCORER_MODEL"
        value = var.scorer_model
      }
      env {
        name  = "BENTOML_DO_NOT_TRACK"
        value = "true"
      }
      env {
        name = "LEADFLOW_SCORER_TOKEN"
        value_source {
          secret_key_ref {
            secret  = google_secret_manager_secret.scorer_token.secret_id
            version = "latest"
          }
        }
      }

      startup_probe {
        http_get {
          path = "/readyz"
        }
        initial_delay_seconds = 5
        period_seconds        = 5
        failure_threshold     = 24
      }
      liveness_probe {
        http_get {
          path = "/livez"
        }
        period_seconds = 30
      }
    }
  }

  depends_on = [google_secret_manager_secret_iam_member.scorer_token, google_project_service.apis]
}
