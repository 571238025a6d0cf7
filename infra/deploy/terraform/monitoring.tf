# Cloud Monitoring: the alert policies and the dashboard of infra/deploy/monitoring.py (one definition each, written
# into generated/leadflow.json by `python -m infra.deploy.terraform_gen`). Counter alerts are PromQL conditions over
# dataflow.googleapis.com/job/user_counter; system metrics (watermark age, system lag, the input subscription's
# oldest unacked message) are threshold conditions. What to do for each alert: docs/runbook.md, "alert: <key>".

variable "job_name" {
  description = "Name of the Dataflow job the alerts and the dashboard watch (the Makefile's JOB)."
  type        = string
  default     = "leadflow"
}

variable "alert_notification_channels" {
  description = "Notification channel ids (projects/P/notificationChannels/N) the alerts page; none: console only."
  type        = list(string)
  default     = []
}

resource "google_monitoring_alert_policy" "leadflow" {
  for_each              = local.generated.alerts
  project               = var.project
  display_name          = each.value.display_name
  combiner              = "OR"
  severity              = each.value.severity
  notification_channels = var.alert_notification_channels
  user_labels           = var.labels

  documentation {
    content   = each.value.documentation
    mime_type = "text/markdown"
  }

  dynamic "conditions" {
    for_each = each.value.promql != null ? [each.value] : []
    content {
      display_name = conditions.value.condition
      condition_prometheus_query_language {
        query               = replace(conditions.value.promql, "__JOB_NAME__", var.job_name)
        duration            = conditions.value.duration
        evaluation_interval = "60s"
      }
    }
  }

  dynamic "conditions" {
    for_each = each.value.filter != null ? [each.value] : []
    content {
      display_name = conditions.value.condition
      condition_threshold {
        filter          = replace(conditions.value.filter, "__JOB_NAME__", var.job_name)
        comparison      = "COMPARISON_GT"
        threshold_value = conditions.value.threshold
        duration        = conditions.value.duration
        aggregations {
          alignment_period   = "60s"
          per_series_aligner = "ALIGN_MAX"
        }
      }
    }
  }
}

resource "google_monitoring_dashboard" "leadflow" {
  project        = var.project
  dashboard_json = replace(jsonencode(local.generated.monitoring_dashboard), "__JOB_NAME__", var.job_name)
}
