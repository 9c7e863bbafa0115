# The behaviour-event bus: the events topic, the landing consumer's pull subscription, and a
# dead-letter topic for messages the consumer failed to acknowledge max_delivery_attempts times
# (invalid payloads are not these: the consumer lands them in lake/deadletter/events/ itself).

resource "google_pubsub_topic" "events" {
  #checkov:skip=CKV_GCP_83:Messages are encrypted at rest with Google-managed keys; customer-managed Cloud KMS keys (a key ring, a key, a grant to the Pub/Sub service agent) are a compliance choice left to the operator (docs/deploy.md, Hardening)
  name                       = var.events_topic
  labels                     = local.labels
  message_retention_duration = "604800s"

  depends_on = [google_project_service.apis]
}

resource "google_pubsub_topic" "events_dead_letter" {
  #checkov:skip=CKV_GCP_83:Messages are encrypted at rest with Google-managed keys; customer-managed Cloud KMS keys are a compliance choice left to the operator (docs/deploy.md, Hardening)
  name   = "${var.events_topic}-dead-letter"
  labels = local.labels

  depends_on = [google_project_service.apis]
}

resource "google_pubsub_subscription" "events_landing" {
  name   = var.events_subscription
  topic  = google_pubsub_topic.events.id
  labels = local.labels

  # The consumer acknowledges a batch only after its files are committed to the lake; a batch
  # is written within SHOPFLOW_LANDING_BATCH_MAX_SECONDS, the client extends leases meanwhile.
  ack_deadline_seconds       = 120
  message_retention_duration = "604800s"
  retain_acked_messages      = false

  # Never expire, even when the consumer is down for a long time.
  expiration_policy {
    ttl = ""
  }

  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "600s"
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.events_dead_letter.id
    max_delivery_attempts = var.dead_letter_max_delivery_attempts
  }
}

# Messages published to a topic without a subscription are dropped: this one keeps the dead
# letters for inspection (`gcloud pubsub subscriptions pull`) and replay.
resource "google_pubsub_subscription" "events_dead_letter" {
  name                       = "${var.events_topic}-dead-letter"
  topic                      = google_pubsub_topic.events_dead_letter.id
  labels                     = local.labels
  ack_deadline_seconds       = 60
  message_retention_duration = "604800s"
  retain_acked_messages      = true

  expiration_policy {
    ttl = ""
  }
}

# Dead-lettering is done by the Pub/Sub service agent: it publishes to the dead-letter topic and
# acknowledges the message on the source subscription.
resource "google_pubsub_topic_iam_member" "dead_letter_publisher" {
  topic  = google_pubsub_topic.events_dead_letter.id
  role   = "roles/pubsub.publisher"
  member = local.pubsub_service_agent
}

resource "google_pubsub_subscription_iam_member" "dead_letter_source_subscriber" {
  subscription = google_pubsub_subscription.events_landing.id
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_service_agent
}
