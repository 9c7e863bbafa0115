# shopflow on Google Cloud: the lake bucket, the event bus, the warehouse dataset, the service
# accounts of the three runtimes, the orders API token's secret and the Composer 3 environment.
# docs/deploy.md walks from an empty project to the first hourly run.

terraform {
  required_version = ">= 1.6"

  # State in a GCS bucket made before the first `terraform init` (docs/deploy.md, step 2):
  # terraform init -backend-config="bucket=<state bucket>" -backend-config="prefix=shopflow"
  backend "gcs" {}

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 6.0, < 8.0"
    }
  }
}

provider "google" {
  project = var.project_id
  region  = var.region
}

data "google_project" "this" {
  project_id = var.project_id
}

locals {
  lake_bucket_name     = coalesce(var.lake_bucket_name, "${var.project_id}-shopflow-lake")
  composer_bucket_name = coalesce(var.composer_bucket_name, "${var.project_id}-shopflow-composer")
  bigquery_location    = coalesce(var.bigquery_location, var.region)
  labels               = merge({ app = "shopflow" }, var.labels)

  # Google-managed service agents (they exist once the API is enabled).
  pubsub_service_agent   = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
  composer_service_agent = "serviceAccount:service-${data.google_project.this.number}@cloudcomposer-accounts.iam.gserviceaccount.com"
}
