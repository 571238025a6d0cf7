# The ingestion gateway (gateway/, `leadflow gateway`) on Cloud Run: the front door providers and API clients call.
#
# Providers call it from the internet and authenticate by their own signatures and keys (Meta, Twilio, Google Ads,
# Knowlarity, our API keys), which the gateway checks; they cannot present Google identity tokens, so Cloud Run's
# IAM check is off (invoker_iam_disabled) and ingress is public. The service account may only publish to the input
# topic and the dead-letter topic (a Meta lead it could not read) and read its own secrets.
#
# Secrets hold no value here (nothing secret in the repository or the Terraform state): add each with
#   printf %s "$VALUE" | gcloud secrets versions add leadflow-gateway-meta-app-secret --data-file=-
# The config file (API clients with their key hashes and rate limits, Google Ads keys per form id: docs/gateway.md)
# is one more secret, mounted as a file.
#
# Every instance shares one Memorystore Redis (rate-limit windows, idempotency keys, external ids:
# gateway.shared_state), reached over Direct VPC egress on the private network; without it (gateway_shared_state =
# false) each instance keeps its own, which is exact only with gateway_max_instances = 1.

locals {
  # environment variable => secret id; the same names as gateway.config.SECRET_ENV (tests/unit/test_terraform.py)
  gateway_secrets = {
    LEADFLOW_META_APP_SECRET        = "leadflow-gateway-meta-app-secret"
    LEADFLOW_META_VERIFY_TOKEN      = "leadflow-gateway-meta-verify-token"
    LEADFLOW_META_PAGE_ACCESS_TOKEN = "leadflow-gateway-meta-page-access-token"
    LEADFLOW_GOOGLE_ADS_KEY         = "leadflow-gateway-google-ads-key"
    LEADFLOW_TWILIO_AUTH_TOKEN      = "leadflow-gateway-twilio-auth-token"
    LEADFLOW_TWILIO_SHARED_KEY      = "leadflow-gateway-twilio-shared-key"
    LEADFLOW_KNOWLARITY_SECRET      = "leadflow-gateway-knowlarity-secret"
    LEADFLOW_KNOWLARITY_API_KEY     = "leadflow-gateway-knowlarity-api-key"
    LEADFLOW_KNOWLARITY_SR_KEY      = "leadflow-gateway-knowlarity-sr-key"
    LEADFLOW_EMAIL_WEBHOOK_SECRET   = "leadflow-gateway-email-webhook-secret"
  }
  gateway_config_secret = "leadflow-gateway-config"
  gateway_topics        = ["input", "dead_letters"]
}

resource "google_service_account" "gateway" {
  account_id   = "leadflow-gateway"
  display_name = "Leadflow ingestion gateway (Cloud Run)"
  description  = "Runs the ingestion gateway: publishes to the input and dead-letter topics, reads its secrets."
}

resource "google_project_iam_member" "gateway" {
  for_each = toset([
    "roles/logging.logWriter",
    "roles/monitoring.metricWriter",
  ])
  project = var.project
  role    = each.key
  member  = "serviceAccount:${google_service_account.gateway.email}"
}

resource "google_pubsub_topic_iam_member" "gateway_publisher" {
  for_each = toset(local.gateway_topics)
  topic    = google_pubsub_topic.topic[each.key].id
  role     = "roles/pubsub.publisher"
  member   = "serviceAccount:${google_service_account.gateway.email}"
}

resource "google_secret_manager_secret" "gateway" {
  for_each  = toset(concat(values(local.gateway_secrets), [local.gateway_config_secret]))
  secret_id = each.key
  labels    = var.labels
  replication {
    auto {}
  }
  depends_on = [google_project_service.apis]
}

resource "google_secret_manager_secret_iam_member" "gateway" {
  for_each  = google_secret_manager_secret.gateway
  secret_id = each.value.id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.gateway.email}"
}

resource "google_redis_instance" "gateway" {
  count              = var.gateway_shared_state ? 1 : 0
  name               = "leadflow-gateway"
  region             = var.region
  tier               = "BASIC" # lost state costs little: repeats and duplicates published again become replays
  memory_size_gb     = 1
  redis_version      = "REDIS_7_2"
  authorized_network = var.gateway_network
  connect_mode       = "DIRECT_PEERING"
  labels             = var.labels
  depends_on         = [google_project_service.apis]
}

resource "google_cloud_run_v2_service" "gateway" {
  name                 = "leadflow-gateway"
  location             = var.region
  ingress              = "INGRESS_TRAFFIC_ALL"
  invoker_iam_disabled = true
  deletion_protection  = false
  labels               = var.labels

  template {
    service_account                  = google_service_account.gateway.email
    max_instance_request_concurrency = 80
    timeout                          = "30s"

    scaling {
      min_instance_count = var.gateway_min_instances
      max_instance_count = var.gateway_max_instances
    }

    dynamic "vpc_access" {
      for_each = var.gateway_shared_state ? [1] : []
      content {
        egress = "PRIVATE_RANGES_ONLY" # Redis over the VPC; Pub/Sub, Graph and the rest as before
        network_interfaces {
          network    = var.gateway_network
          subnetwork = var.gateway_subnetwork
        }
      }
    }

    volumes {
      name = "gateway-config"
      secret {
        secret = google_secret_manager_secret.gateway[local.gateway_config_secret].secret_id
        items {
          version = "latest"
          path    = "gateway.json"
        }
      }
    }

    containers {
      image = var.gateway_image

      resources {
        limits = {
          cpu    = "1"
          memory = "512Mi"
        }
      }

      volume_mounts {
        name       = "gateway-config"
        mount_path = "/secrets"
      }

      env {
        name  = "LEADFLOW_GATEWAY_CONFIG"
        value = "/secrets/gateway.json"
      }
      env {
        name  = "LEADFLOW_PROJECT"
        value = var.project
      }
      env {
        name  = "LEADFLOW_INPUT_TOPIC"
        value = google_pubsub_topic.topic["input"].id
      }
      env {
        name  = "LEADFLOW_DEAD_LETTER_TOPIC"
        value = google_pubsub_topic.topic["dead_letters"].id
      }
      env {
        name  = "LEADFLOW_PUBLIC_URL"
        value = var.gateway_public_url
      }
      dynamic "env" {
        for_each = google_redis_instance.gateway
        content {
          name  = "LEADFLOW_GATEWAY_STATE_URL"
          value = "redis://${env.value.host}:${env.value.port}/0"
        }
      }
      dynamic "env" {
        for_each = local.gateway_secrets
        content {
          name = env.key
          value_source {
            secret_key_ref {
              secret  = google_secret_manager_secret.gateway[env.value].secret_id
              version = "latest"
            }
          }
        }
      }

      startup_probe {
        http_get {
          path = "/healthz"
        }
        period_seconds    = 2
        failure_threshold = 30
      }
      liveness_probe {
        http_get {
          path = "/healthz"
        }
        period_seconds = 30
      }
    }
  }

  depends_on = [google_secret_manager_secret_iam_member.gateway, google_project_service.apis]
}
