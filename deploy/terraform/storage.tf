# The lake (gs://<lake bucket>/lake: raw/, deadletter/, curated/, _state/; the Dataproc artefacts
# under artifacts/) and the Composer environment's bucket (dags/, plugins/, data/, logs/).

resource "google_storage_bucket" "lake" {
  #checkov:skip=CKV_GCP_62:Access to the lake is recorded by Cloud Audit Logs (Data Access logs for Cloud Storage, google_project_iam_audit_config.storage below), which replace the legacy usage-log buckets
  name                        = local.lake_bucket_name
  location                    = var.region
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false
  labels                      = local.labels

  # The lake's atomic writes replace whole objects; versioning keeps the replaced generation, so
  # a bad ETL run or a deleted partition can be restored (lifecycle below expires old versions).
  versioning {
    enabled = true
  }

  # The raw zone's events (lake/raw/events/date=/hour=/) are read by date: the hour's dates, dates
  # with late events, backfills. Colder storage after a month, deleted after a retention. The raw
  # pulls (lake/raw/orders|products|users/) are NOT aged: every ETL run reads all of them to
  # rebuild the orders, products and users snapshots, so deleting one would lose rows and
  # Nearline would bill a retrieval every hour.
  lifecycle_rule {
    condition {
      age                   = var.raw_zone_nearline_after_days
      matches_prefix        = ["lake/raw/events/"]
      matches_storage_class = ["STANDARD"]
    }
    action {
      type          = "SetStorageClass"
      storage_class = "NEARLINE"
    }
  }

  lifecycle_rule {
    condition {
      age            = var.raw_zone_delete_after_days
      matches_prefix = ["lake/raw/events/"]
    }
    action {
      type = "Delete"
    }
  }

  # Replaced generations (curated partitions rewritten every hour, lock objects) are kept for
  # restores for a while, then deleted.
  lifecycle_rule {
    condition {
      days_since_noncurrent_time = var.noncurrent_version_retention_days
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.apis]
}

resource "google_storage_bucket" "composer" {
  #checkov:skip=CKV_GCP_62:Access is recorded by Cloud Audit Logs (Data Access logs for Cloud Storage, google_project_iam_audit_config.storage), which replace the legacy usage-log buckets
  name                        = local.composer_bucket_name
  location                    = var.region
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false
  labels                      = local.labels

  # An overwritten DAG file or package can be restored.
  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = var.noncurrent_version_retention_days
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.apis]
}

# Who read or wrote which object: Data Access audit logs for Cloud Storage (Cloud Logging).
resource "google_project_iam_audit_config" "storage" {
  project = var.project_id
  service = "storage.googleapis.com"

  audit_log_config {
    log_type = "DATA_READ"
  }
  audit_log_config {
    log_type = "DATA_WRITE"
  }
}
