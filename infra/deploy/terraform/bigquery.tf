# The dataset, one table per schemas.records.TABLES entry (schema, DAY partitioning, clustering from
# generated/leadflow.json), the ref_* reference tables, and one view per schemas/views/*.sql file.

resource "google_bigquery_dataset" "leadflow" {
  dataset_id                 = var.dataset
  location                   = var.bq_location
  description                = "Leadflow: leads, events, source history, assignments, dead letters and daily counts."
  delete_contents_on_destroy = false
  labels                     = var.labels
  depends_on                 = [google_project_service.apis]
}

locals {
  # Days per retention policy (generated defaults, schemas/records.py RETENTION_DAYS; var.retention_days overrides
  # them; 0 keeps partitions), and each table's partition expiration from its policy (null: kept).
  retention_days = merge({ for k, v in local.generated.retention_days : k => coalesce(v, 0) }, var.retention_days)
  partition_expiration_ms = {
    for name, t in local.tables : name => (
      t.retention == null ? null : (local.retention_days[t.retention] == 0 ? null : local.retention_days[t.retention] * 86400000)
    )
  }
}

# Every pii=True column carries the policy tag of its masking class (masking.tf): BI sees it masked.
resource "google_bigquery_table" "table" {
  for_each    = local.tables
  dataset_id  = google_bigquery_dataset.leadflow.dataset_id
  table_id    = each.key
  description = each.value.description
  schema = jsonencode([for f in each.value.schema : merge(f, {
    for k, v in { policyTags = { names = [google_data_catalog_policy_tag.pii[lookup(each.value.pii_columns, f.name, "identifier")].name] } } :
    k => v if contains(keys(each.value.pii_columns), f.name)
  })])
  clustering          = each.value.clustering
  deletion_protection = true
  labels              = var.labels

  time_partitioning {
    type          = "DAY"
    field         = each.value.partition_field
    expiration_ms = local.partition_expiration_ms[each.key]
  }
}

resource "google_bigquery_table" "reference" {
  for_each            = local.reference_tables
  dataset_id          = google_bigquery_dataset.leadflow.dataset_id
  table_id            = each.key
  description         = each.value.description
  schema              = jsonencode(each.value.schema)
  deletion_protection = true
  labels              = var.labels
}

# Any file in schemas/views becomes a view. The SQL names tables `{project}.{dataset}.<table>` with those literal
# placeholders (schemas/views.py renders them the same way for the local emulator).
resource "google_bigquery_table" "view" {
  for_each            = local.views
  dataset_id          = google_bigquery_dataset.leadflow.dataset_id
  table_id            = each.key
  description         = try(local.generated.views[each.key].description, null)
  deletion_protection = false
  labels              = var.labels

  view {
    query          = "${trimspace(replace(replace(file("${local.views_dir}/${each.value}"), "{project}", var.project), "{dataset}", var.dataset))}\n"
    use_legacy_sql = false
  }

  depends_on = [google_bigquery_table.table]
}
