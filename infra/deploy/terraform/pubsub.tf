# Topics and subscriptions: the same names as the local stack (infra/local/stack.py TOPICS / SUBSCRIPTIONS).

resource "google_pubsub_topic" "topic" {
  for_each = local.topics
  name     = each.value
  labels   = var.labels
  # The topics the pipeline reads keep every message for var.message_retention, so a subscription can be
  # seeked back in time to reprocess (docs/runbook.md).
  message_retention_duration = contains(local.dead_letter_source_topics, each.key) ? var.message_retention : null
  depends_on                 = [google_project_service.apis]
}

resource "google_pubsub_subscription" "subscription" {
  for_each                   = local.subscriptions
  name                       = each.key
  topic                      = google_pubsub_topic.topic[each.value.topic].id
  labels                     = var.labels
  ack_deadline_seconds       = 60
  message_retention_duration = var.message_retention
  retain_acked_messages      = false
  enable_message_ordering    = each.value.message_ordering

  expiration_policy {
    ttl = "" # never expire, even when nothing reads for a while
  }

  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "600s"
  }

  dynamic "dead_letter_policy" {
    for_each = contains(local.dead_letter_source_topics, each.value.topic) ? [1] : []
    content {
      dead_letter_topic     = google_pubsub_topic.topic["dead_letters"].id
      max_delivery_attempts = var.max_delivery_attempts
    }
  }
}

# Pub/Sub's own service agent forwards undeliverable messages: it must publish to the dead-letter topic and
# acknowledge on the subscriptions it forwards from.
resource "google_pubsub_topic_iam_member" "dead_letter_forwarder" {
  topic  = google_pubsub_topic.topic["dead_letters"].id
  role   = "roles/pubsub.publisher"
  member = local.pubsub_service_agent
}

resource "google_pubsub_subscription_iam_member" "dead_letter_forwarder" {
  for_each     = local.pipeline_subscriptions
  subscription = google_pubsub_subscription.subscription[each.key].id
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_service_agent
}

# CRM webhooks: one push subscription per endpoint of schemas/crm_endpoints.toml on the deliveries topic, filtered
# on the delivery attributes, authenticated with an OIDC token of the push service account, retried with
# exponential backoff and dead-lettered to the CRM dead-letter topic after the endpoint's max delivery attempts.
resource "google_pubsub_subscription" "crm_push" {
  for_each                   = local.crm_endpoints
  name                       = each.key
  topic                      = google_pubsub_topic.topic["deliveries"].id
  labels                     = var.labels
  filter                     = each.value.filter
  ack_deadline_seconds       = 60
  message_retention_duration = var.message_retention
  enable_message_ordering    = true # deliveries carry the lead id as ordering key

  push_config {
    push_endpoint = each.value.url
    oidc_token {
      service_account_email = google_service_account.crm_push.email
      audience              = each.value.audience
    }
    dynamic "no_wrapper" {
      for_each = each.value.wrapped ? [] : [1]
      content {
        write_metadata = true
      }
    }
  }

  expiration_policy {
    ttl = ""
  }

  retry_policy {
    minimum_backoff = each.value.minimum_backoff
    maximum_backoff = each.value.maximum_backoff
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.topic[local.crm_push.dead_letter_topic].id
    max_delivery_attempts = each.value.max_delivery_attempts
  }
}

# The service agent forwards failed CRM pushes: publisher on the CRM dead-letter topic, subscriber on each push
# subscription.
resource "google_pubsub_topic_iam_member" "crm_dead_letter_forwarder" {
  topic  = google_pubsub_topic.topic[local.crm_push.dead_letter_topic].id
  role   = "roles/pubsub.publisher"
  member = local.pubsub_service_agent
}

resource "google_pubsub_subscription_iam_member" "crm_dead_letter_forwarder" {
  for_each     = local.crm_endpoints
  subscription = google_pubsub_subscription.crm_push[each.key].id
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_service_agent
}
