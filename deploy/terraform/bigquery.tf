# The warehouse: one dataset; the load (run by Composer) creates its date-partitioned tables and
# the metric views in it.
resource "google_bigquery_dataset" "warehouse" {
  #checkov:skip=CKV_GCP_81:Tables are encrypted at rest with Google-managed keys; customer-managed Cloud KMS keys (default_encryption_configuration and a grant to the BigQuery service agent) are a compliance choice left to the operator (docs/deploy.md, Hardening)
  dataset_id  = var.bigquery_dataset
  location    = local.bigquery_location
  description = "shopflow warehouse: curated tables loaded hourly and the metric views."
  labels      = local.labels

  # Access is granted per service account in iam.tf; nothing here is public.
  delete_contents_on_destroy = false

  depends_on = [google_project_service.apis]
}
