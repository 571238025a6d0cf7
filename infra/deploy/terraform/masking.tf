# Masked columns for analysts. One Data Catalog policy tag per masking class (generated/leadflow.json "masking",
# from infra/deploy/terraform_gen.py), set on every pii=True column of schemas/records.py (bigquery.tf), each with a
# BigQuery data-masking rule: identifiers hashed (SHA256: countable, joinable), free text nullified (ALWAYS_NULL).
# var.bi_members read masked values (Masked Reader); var.operations_members read raw ones (Fine-Grained Reader).
# Anyone else with table access is refused the tagged columns. The views count people by lead id, never by a raw
# identifier, so they serve BI unchanged. See docs/runbook.md, "Personal data".

resource "google_data_catalog_taxonomy" "personal_data" {
  region                 = lower(var.bq_location)
  display_name           = "leadflow-personal-data"
  description            = "Personal data in the Leadflow dataset, by masking class (generated from schemas/records.py)."
  activated_policy_types = ["FINE_GRAINED_ACCESS_CONTROL"]
  depends_on             = [google_project_service.apis]
}

resource "google_data_catalog_policy_tag" "pii" {
  for_each     = local.generated.masking
  taxonomy     = google_data_catalog_taxonomy.personal_data.id
  display_name = each.key
  description  = each.value.description
}

resource "google_bigquery_datapolicy_data_policy" "masked" {
  for_each         = local.generated.masking
  location         = var.bq_location
  data_policy_id   = "leadflow_${each.key}_masked"
  policy_tag       = google_data_catalog_policy_tag.pii[each.key].name
  data_policy_type = "DATA_MASKING_POLICY"

  data_masking_policy {
    predefined_expression = each.value.rule
  }
}

# Operations (on-call, `leadflow forget`): raw values of every tagged column.
resource "google_data_catalog_policy_tag_iam_member" "operations_raw" {
  for_each   = { for pair in setproduct(keys(local.generated.masking), var.operations_members) : "${pair[0]} ${pair[1]}" => pair }
  policy_tag = google_data_catalog_policy_tag.pii[each.value[0]].name
  role       = "roles/datacatalog.categoryFineGrainedReader"
  member     = each.value[1]
}

# BI: masked values of every tagged column.
resource "google_bigquery_datapolicy_data_policy_iam_member" "bi_masked" {
  for_each       = { for pair in setproduct(keys(local.generated.masking), var.bi_members) : "${pair[0]} ${pair[1]}" => pair }
  project        = var.project
  location       = var.bq_location
  data_policy_id = google_bigquery_datapolicy_data_policy.masked[each.value[0]].data_policy_id
  role           = "roles/bigquerydatapolicy.maskedReader"
  member         = each.value[1]
}

# Both read the dataset's tables and views (the tags decide what they see of personal columns).
resource "google_bigquery_dataset_iam_member" "readers" {
  for_each   = toset(concat(var.bi_members, var.operations_members))
  dataset_id = google_bigquery_dataset.leadflow.dataset_id
  role       = "roles/bigquery.dataViewer"
  member     = each.key
}
