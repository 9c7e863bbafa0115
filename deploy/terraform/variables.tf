variable "project_id" {
  description = "The Google Cloud project to deploy into (at least 6 characters, like SHOPFLOW_GCP_PROJECT)."
  type        = string

  validation {
    condition     = length(var.project_id) >= 6
    error_message = "project_id must have at least 6 characters."
  }
}

variable "region" {
  description = "Region of the buckets, the Composer environment, the secrets' replicas and the Dataproc batches."
  type        = string
  default     = "asia-south1"
}

variable "labels" {
  description = "Extra labels on every resource that takes labels (app = shopflow is always set)."
  type        = map(string)
  default     = {}
}

variable "lake_bucket_name" {
  description = "Name of the lake bucket; empty means <project_id>-shopflow-lake."
  type        = string
  default     = ""
}

variable "composer_bucket_name" {
  description = "Name of the Composer environment's bucket; empty means <project_id>-shopflow-composer."
  type        = string
  default     = ""
}

variable "raw_zone_nearline_after_days" {
  description = "Days after which raw events (lake/raw/events/) move to Nearline storage."
  type        = number
  default     = 30

  validation {
    condition     = var.raw_zone_nearline_after_days >= 1
    error_message = "raw_zone_nearline_after_days must be at least 1."
  }
}

variable "raw_zone_delete_after_days" {
  description = "Days after which raw events are deleted; a backfill of older hours needs them restored first (raw pulls are never aged: every ETL run reads them all)."
  type        = number
  default     = 400

  validation {
    condition     = var.raw_zone_delete_after_days > var.raw_zone_nearline_after_days
    error_message = "raw_zone_delete_after_days must be greater than raw_zone_nearline_after_days."
  }
}

variable "noncurrent_version_retention_days" {
  description = "Days a replaced or deleted object version is kept (for restores) before it is deleted."
  type        = number
  default     = 30

  validation {
    condition     = var.noncurrent_version_retention_days >= 1
    error_message = "noncurrent_version_retention_days must be at least 1."
  }
}

variable "events_topic" {
  description = "Pub/Sub topic of the behaviour events (SHOPFLOW_EVENTS_TOPIC); its dead-letter topic is <name>-dead-letter."
  type        = string
  default     = "shop-events"
}

variable "events_subscription" {
  description = "The landing consumer's pull subscription (SHOPFLOW_EVENTS_SUBSCRIPTION)."
  type        = string
  default     = "shop-events-landing"
}

variable "dead_letter_max_delivery_attempts" {
  description = "Deliveries of a message the landing consumer does not acknowledge before it goes to the dead-letter topic (5 to 100)."
  type        = number
  default     = 10

  validation {
    condition     = var.dead_letter_max_delivery_attempts >= 5 && var.dead_letter_max_delivery_attempts <= 100
    error_message = "dead_letter_max_delivery_attempts must be between 5 and 100 (a Pub/Sub limit)."
  }
}

variable "bigquery_dataset" {
  description = "The warehouse's BigQuery dataset (SHOPFLOW_BIGQUERY_DATASET)."
  type        = string
  default     = "shopflow"
}

variable "bigquery_location" {
  description = "Location of the BigQuery dataset; empty means the region."
  type        = string
  default     = ""
}

variable "dataproc_runtime_version" {
  description = "Dataproc Serverless runtime version of the ETL batches (SHOPFLOW_DATAPROC_RUNTIME_VERSION)."
  type        = string
  default     = "2.2"
}

variable "composer_environment_name" {
  description = "Name of the Cloud Composer environment."
  type        = string
  default     = "shopflow"
}

variable "composer_image_version" {
  description = "Composer 3 image with Airflow 3.1 or later (the DAGs use Airflow 3's Deadline Alerts), e.g. composer-3-airflow-3.1.0, from Cloud Composer's version list for the region."
  type        = string

  validation {
    condition     = can(regex("^composer-3-airflow-3\\.", var.composer_image_version))
    error_message = "composer_image_version must be a Composer 3 image with Airflow 3 (composer-3-airflow-3.*)."
  }
}

variable "composer_environment_size" {
  description = "Composer environment size: ENVIRONMENT_SIZE_SMALL, _MEDIUM or _LARGE."
  type        = string
  default     = "ENVIRONMENT_SIZE_SMALL"
}

variable "orders_api_url" {
  description = "Base URL of the shop's orders API (SHOPFLOW_ORDERS_API_URL); its token goes into Secret Manager, not here."
  type        = string
}
