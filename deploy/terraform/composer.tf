# The Composer 3 environment that runs the DAGs of dags/ (Airflow 3), in the bucket made in
# storage.tf: DAG files go to gs://<composer bucket>/dags/, where Airflow also imports the
# shopflow package from (docs/deploy.md, "Upload the DAGs and the package").
resource "google_composer_environment" "shopflow" {
  name   = var.composer_environment_name
  region = var.region
  labels = local.labels

  storage_config {
    bucket = google_storage_bucket.composer.name
  }

  config {
    environment_size = var.composer_environment_size

    software_config {
      image_version = var.composer_image_version
    }

    node_config {
      service_account = google_service_account.composer.email
    }
  }

  # The SHOPFLOW_* environment variables (the outputs of this configuration plus the secrets
  # from Secret Manager) and the PyPI packages are set by the deploy step with gcloud, so the
  # secret values never enter the Terraform state; Terraform leaves them alone afterwards.
  lifecycle {
    ignore_changes = [
      config[0].software_config[0].env_variables,
      config[0].software_config[0].pypi_packages,
    ]
  }

  depends_on = [
    google_project_iam_member.composer_worker,
    google_service_account_iam_member.composer_agent_ext,
    google_storage_bucket_iam_member.composer_bucket,
  ]
}
