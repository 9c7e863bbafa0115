# The APIs shopflow uses. Service Usage and Cloud Resource Manager themselves must be on before
# Terraform can enable anything (docs/deploy.md, step 1). Disabling on destroy is off: other
# things in the project may use the same APIs.
resource "google_project_service" "apis" {
  for_each = toset([
    "bigquery.googleapis.com",
    "composer.googleapis.com",
    "compute.googleapis.com", # Dataproc Serverless batches run in the region's default VPC subnet
    "dataproc.googleapis.com",
    "iam.googleapis.com",
    "pubsub.googleapis.com",
    "secretmanager.googleapis.com",
    "storage.googleapis.com",
  ])

  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}
