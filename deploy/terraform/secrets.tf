# The secrets shopflow reads (SHOPFLOW_ORDERS_API_TOKEN, SHOPFLOW_ALERT_WEBHOOK_URL). Terraform
# creates the secrets only: their values are added as versions with gcloud (docs/deploy.md), so
# no secret value ever enters the Terraform state.

resource "google_secret_manager_secret" "orders_api_token" {
  secret_id = "shopflow-orders-api-token"
  labels    = local.labels

  replication {
    user_managed {
      replicas {
        location = var.region
      }
    }
  }

  depends_on = [google_project_service.apis]
}

resource "google_secret_manager_secret" "alert_webhook_url" {
  secret_id = "shopflow-alert-webhook-url"
  labels    = local.labels

  replication {
    user_managed {
      replicas {
        location = var.region
      }
    }
  }

  depends_on = [google_project_service.apis]
}

# The gcp profile refuses to start without its own SHOPFLOW_ORDERS_API_TOKEN (the local default
# is rejected), the landing consumer included: its runtime (e.g. Cloud Run's secret environment
# variables) reads the token as this account. Composer gets the token from the deploy step.
resource "google_secret_manager_secret_iam_member" "landing_orders_api_token" {
  secret_id = google_secret_manager_secret.orders_api_token.id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.landing.member
}
