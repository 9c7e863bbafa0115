# One service account per runtime, each with only what its code calls:
#   landing  - the streaming landing consumer (`shopflow ingest events`, a long-running service)
#   etl      - the Dataproc Serverless batches of the hourly ETL (SHOPFLOW_DATAPROC_SERVICE_ACCOUNT)
#   composer - the Composer environment: the DAG tasks (orders and catalogue pulls, quality
#              gate, BigQuery load, alerts) and the submission of the ETL batches
# Bucket, topic, subscription and dataset roles are granted on that resource, not the project.

resource "google_service_account" "landing" {
  account_id   = "shopflow-landing"
  display_name = "shopflow landing consumer"
  description  = "Pulls behaviour events from Pub/Sub and lands them in the lake's raw zone."
  depends_on   = [google_project_service.apis]
}

resource "google_service_account" "etl" {
  account_id   = "shopflow-etl"
  display_name = "shopflow ETL (Dataproc Serverless)"
  description  = "Runs the hourly ETL batches: reads the raw zone, writes the curated zone."
  depends_on   = [google_project_service.apis]
}

resource "google_service_account" "composer" {
  account_id   = "shopflow-composer"
  display_name = "shopflow Cloud Composer"
  description  = "Runs the shopflow DAGs and submits the ETL's Dataproc batches."
  depends_on   = [google_project_service.apis]
}

# --- landing consumer -------------------------------------------------------------------------

# Pull and acknowledge on its subscription.
resource "google_pubsub_subscription_iam_member" "landing_subscriber" {
  subscription = google_pubsub_subscription.events_landing.id
  role         = "roles/pubsub.subscriber"
  member       = google_service_account.landing.member
}

# The consumer starts by creating the topic and its subscription when missing (create, treating
# "already exists" as success). Pub/Sub checks the create permission before it answers "already
# exists", so the consumer needs these two permissions even though Terraform made both; no
# permission to change or delete anything comes with them. Attaching a subscription needs
# pubsub.topics.attachSubscription on the topic, granted on that topic only.
resource "google_project_iam_custom_role" "landing_bus_setup" {
  role_id     = "shopflowLandingBusSetup"
  title       = "shopflow landing: create topic and subscription if missing"
  description = "pubsub.topics.create and pubsub.subscriptions.create for the landing consumer's idempotent start-up."
  permissions = ["pubsub.topics.create", "pubsub.subscriptions.create"]
}

resource "google_project_iam_member" "landing_bus_setup" {
  project = var.project_id
  role    = google_project_iam_custom_role.landing_bus_setup.id
  member  = google_service_account.landing.member
}

resource "google_pubsub_topic_iam_member" "landing_attach" {
  topic  = google_pubsub_topic.events.id
  role   = "roles/pubsub.subscriber"
  member = google_service_account.landing.member
}

# Write landed batches and dead letters (atomic object writes; a retried batch replaces its file).
resource "google_storage_bucket_iam_member" "landing_lake" {
  bucket = google_storage_bucket.lake.name
  role   = "roles/storage.objectUser"
  member = google_service_account.landing.member
}

# --- ETL on Dataproc Serverless ---------------------------------------------------------------

# What a Dataproc Serverless batch's own service account must have (driver and executors
# report to Dataproc, write logs and metrics).
resource "google_project_iam_member" "etl_dataproc_worker" {
  project = var.project_id
  role    = "roles/dataproc.worker"
  member  = google_service_account.etl.member
}

# Read the raw zone and the artefacts (gs://<lake bucket>/artifacts), replace curated partitions,
# hold the lake's writer lock (an object in lake/_state/locks/).
resource "google_storage_bucket_iam_member" "etl_lake" {
  bucket = google_storage_bucket.lake.name
  role   = "roles/storage.objectUser"
  member = google_service_account.etl.member
}

# --- Cloud Composer ---------------------------------------------------------------------------

# What a Composer environment's service account must have to run Airflow.
resource "google_project_iam_member" "composer_worker" {
  #checkov:skip=CKV_GCP_49:Composer requires roles/composer.worker on the environment's own service account at project level; it carries iam.serviceAccounts.actAs so Airflow's workloads can run as that account, and it is granted to shopflow-composer only
  project = var.project_id
  role    = "roles/composer.worker"
  member  = google_service_account.composer.member
}

# Composer's service agent acts for the environment's service account (Composer 2 and 3).
resource "google_service_account_iam_member" "composer_agent_ext" {
  service_account_id = google_service_account.composer.name
  role               = "roles/composer.ServiceAgentV2Ext"
  member             = local.composer_service_agent
}

# DAG files, the package and logs in the environment's bucket.
resource "google_storage_bucket_iam_member" "composer_bucket" {
  bucket = google_storage_bucket.composer.name
  role   = "roles/storage.objectAdmin"
  member = google_service_account.composer.member
}

# Orders and catalogue pulls write the raw zone; the quality gate and the load read the curated
# zone; run history, alert incidents and the writer lock live in lake/_state/.
resource "google_storage_bucket_iam_member" "composer_lake" {
  bucket = google_storage_bucket.lake.name
  role   = "roles/storage.objectUser"
  member = google_service_account.composer.member
}

# The hourly `etl` task creates a Dataproc Serverless batch, finds it again on a retry (same
# batch id) and waits on it; the load creates the dataset if missing (create, "already exists"
# is success: BigQuery checks the create permission first). Nothing else on Dataproc.
resource "google_project_iam_custom_role" "composer_runner" {
  role_id     = "shopflowComposerRunner"
  title       = "shopflow Composer: submit ETL batches"
  description = "Create, read and cancel Dataproc Serverless batches; create the warehouse dataset if missing."
  permissions = [
    "bigquery.datasets.create",
    "dataproc.batches.cancel",
    "dataproc.batches.create",
    "dataproc.batches.get",
    "dataproc.batches.list",
    "dataproc.operations.get",
  ]
}

resource "google_project_iam_member" "composer_runner" {
  project = var.project_id
  role    = google_project_iam_custom_role.composer_runner.id
  member  = google_service_account.composer.member
}

# A batch created by Composer runs as the ETL's account: Composer may act as that one account only.
resource "google_service_account_iam_member" "composer_acts_as_etl" {
  service_account_id = google_service_account.etl.name
  role               = "roles/iam.serviceAccountUser"
  member             = google_service_account.composer.member
}

# The warehouse load: BigQuery jobs in the project, tables and views in the one dataset.
resource "google_project_iam_member" "composer_bigquery_jobs" {
  project = var.project_id
  role    = "roles/bigquery.jobUser"
  member  = google_service_account.composer.member
}

resource "google_bigquery_dataset_iam_member" "composer_warehouse" {
  dataset_id = google_bigquery_dataset.warehouse.dataset_id
  role       = "roles/bigquery.dataEditor"
  member     = google_service_account.composer.member
}
