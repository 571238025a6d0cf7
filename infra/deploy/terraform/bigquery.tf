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

resource "google_bigquery_table" "table" {
  for_each            = local.tables
  dataset_id          = google_bigquery_dataset.leadflow.dataset_id
  table_id            = each.key
  description         = each.value.description
  schema              = jsonencode(each.value.schema)
  clustering          = each.value.clustering
  deletion_protection = true
  labels              = var.labels

  time_partitioning {
    type  = "DAY"
    field = each.value.partition_field
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
