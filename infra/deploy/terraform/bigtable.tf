# The identity store of the streaming job (transforms/identity_store.py, docs/identity.md): one table, one
# column family keeping the newest cell. Rows are small JSON documents under keyed hashes, never raw identifiers.
resource "google_bigtable_instance" "identity" {
  name                = "leadflow-identity"
  deletion_protection = true

  cluster {
    cluster_id   = "leadflow-identity-c1"
    zone         = "${var.region}-b"
    num_nodes    = 1
    storage_type = "SSD"
  }
}

resource "google_bigtable_table" "identity" {
  name          = "identity"
  instance_name = google_bigtable_instance.identity.name

  column_family {
    family = "s"
  }
}

resource "google_bigtable_gc_policy" "identity_newest" {
  instance_name   = google_bigtable_instance.identity.name
  table           = google_bigtable_table.identity.name
  column_family   = "s"
  deletion_policy = "ABANDON"

  max_version {
    number = 1
  }
}

# Read and write rows only: no admin (the table is made here, not by the job).
resource "google_bigtable_table_iam_member" "dataflow_identity" {
  project  = var.project
  instance = google_bigtable_instance.identity.name
  table    = google_bigtable_table.identity.name
  role     = "roles/bigtable.user"
  member   = "serviceAccount:${google_service_account.dataflow.email}"
}
