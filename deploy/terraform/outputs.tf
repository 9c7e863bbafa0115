# One output per shopflow setting this configuration decides. The rule: an output's name is the
# setting's environment variable, SHOPFLOW_<FIELD NAME IN UPPER CASE> (field of
# shopflow.settings.Settings), and its value is the variable's value as a string, so
# `terraform output -json` is the gcp profile's environment (docs/deploy.md).
# tests/deploy/test_terraform.py checks the names against Settings and lists why every other
# setting has no output.

output "SHOPFLOW_PROFILE" {
  description = "The gcp profile: lake on GCS, ETL on Dataproc, warehouse on BigQuery."
  value       = "gcp"
}

output "SHOPFLOW_GCP_PROJECT" {
  description = "The project everything here lives in."
  value       = var.project_id
}

output "SHOPFLOW_GCS_BUCKET" {
  description = "The lake bucket."
  value       = google_storage_bucket.lake.name
}

output "SHOPFLOW_LAKE_ROOT" {
  description = "The lake root (the raw-zone lifecycle rules match lake/raw/events/ under it)."
  value       = "gs://${google_storage_bucket.lake.name}/lake"
}

output "SHOPFLOW_BUS" {
  description = "The event bus: Pub/Sub."
  value       = "pubsub"
}

output "SHOPFLOW_EVENTS_TOPIC" {
  description = "The behaviour-events topic."
  value       = google_pubsub_topic.events.name
}

output "SHOPFLOW_EVENTS_SUBSCRIPTION" {
  description = "The landing consumer's pull subscription (with the dead-letter policy)."
  value       = google_pubsub_subscription.events_landing.name
}

output "SHOPFLOW_PUBSUB_EMULATOR_HOST" {
  description = "Empty: real Pub/Sub, not the local emulator (the setting's default)."
  value       = ""
}

output "SHOPFLOW_BIGQUERY_DATASET" {
  description = "The warehouse dataset."
  value       = google_bigquery_dataset.warehouse.dataset_id
}

output "SHOPFLOW_BIGQUERY_LOCATION" {
  description = "The warehouse dataset's location (BigQuery jobs run there)."
  value       = google_bigquery_dataset.warehouse.location
}

output "SHOPFLOW_ETL_ENGINE" {
  description = "Spark: the gcp profile runs the ETL on Dataproc."
  value       = "spark"
}

output "SHOPFLOW_DATAPROC_REGION" {
  description = "Where the ETL's Dataproc Serverless batches run."
  value       = var.region
}

output "SHOPFLOW_DATAPROC_RUNTIME_VERSION" {
  description = "The Dataproc Serverless runtime of the ETL batches."
  value       = var.dataproc_runtime_version
}

output "SHOPFLOW_DATAPROC_ARTIFACTS_URI" {
  description = "The gs:// folder the built entry point and wheel are uploaded to."
  value       = "gs://${google_storage_bucket.lake.name}/artifacts"
}

output "SHOPFLOW_DATAPROC_SERVICE_ACCOUNT" {
  description = "The account the ETL batches run as."
  value       = google_service_account.etl.email
}

output "SHOPFLOW_ORDERS_API_URL" {
  description = "The shop's orders API (passed through from var.orders_api_url)."
  value       = var.orders_api_url
}
