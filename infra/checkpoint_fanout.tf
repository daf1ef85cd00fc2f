# checkpoint-fanout: every committed training checkpoint copied to every
# target region, marker last. A Cloud Run service fed by an Eventarc trigger
# on the checkpoint source bucket, the replica buckets it writes, a
# dead-letter topic for events it could never handle, and a service account
# that can read the source, write the replicas and the state, and nothing else.

variable "checkpoint_fanout_image" {
  description = "The checkpoint-fanout image (cloudbuild.yaml pushes it to the image_repository output, as checkpoint-fanout)."
  type        = string
}

variable "checkpoint_source_bucket" {
  description = "The bucket training jobs write checkpoints to, in the primary region (a checkpoint location's `bucket`)."
  type        = string
}

# Where the source bucket lives: Eventarc takes a bucket's events only in a
# trigger of the bucket's own location (a region, dual-region or
# multi-region, lowercased).
data "google_storage_bucket" "checkpoint_source" {
  name = var.checkpoint_source_bucket
}

variable "checkpoint_replica_noncurrent_days" {
  description = "Days a replaced or deleted checkpoint replica object is kept as a noncurrent version (so a bad copy or an early retention never destroys the only copy of a checkpoint); checkpoints are large, so kept shorter than data-sync's replicas."
  type        = number
  default     = 7
  validation {
    condition     = var.checkpoint_replica_noncurrent_days >= 1
    error_message = "checkpoint_replica_noncurrent_days must be at least 1."
  }
}

variable "checkpoint_replica_buckets" {
  description = "Replica bucket per target region (the checkpoint location's `replicas`), created here."
  type        = map(string)
}

resource "google_service_account" "checkpoint_fanout" {
  account_id   = "lifeboat-checkpoint-fanout"
  display_name = "Lifeboat checkpoint-fanout: reads checkpoints, writes their replicas"
}

# One bucket per target region, in that region. Versioned with a soft
# delete window, so an overwrite or delete (a bad copy, the retention) keeps
# the previous version for checkpoint_replica_noncurrent_days. No rule moves
# checkpoints to a colder class: a training job resumes from the newest one
# (and every class past Standard charges for that read), and the retention
# removes old ones within days, which Nearline's 30-day minimum storage
# would bill as if kept a month.
resource "google_storage_bucket" "checkpoint_replica" {
  #checkov:skip=CKV_GCP_62:Access is audited by Cloud Audit Logs (Data Access logs of Cloud Storage); a log bucket per replica would add a bucket in some region that every replica's writes depend on.
  for_each                    = var.checkpoint_replica_buckets
  name                        = each.value
  location                    = upper(each.key)
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  versioning {
    enabled = true
  }
  soft_delete_policy {
    retention_duration_seconds = var.replica_soft_delete_days * 86400
  }
  lifecycle_rule {
    condition {
      days_since_noncurrent_time = var.checkpoint_replica_noncurrent_days
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }
  depends_on = [google_project_service.api["storage.googleapis.com"]]
}

# Read the source (list shards, read manifests, be the source of rewrites).
resource "google_storage_bucket_iam_member" "checkpoint_source_reader" {
  bucket = var.checkpoint_source_bucket
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.checkpoint_fanout.email}"
}

# Write and delete replicas (copies, markers, retention) in its own buckets only.
resource "google_storage_bucket_iam_member" "checkpoint_replica_writer" {
  for_each = google_storage_bucket.checkpoint_replica
  bucket   = each.value.name
  role     = "roles/storage.objectAdmin"
  member   = "serviceAccount:${google_service_account.checkpoint_fanout.email}"
}

# Idempotency and RPO records in Firestore.
resource "google_project_iam_member" "checkpoint_fanout_state" {
  project = var.project
  role    = "roles/datastore.user"
  member  = "serviceAccount:${google_service_account.checkpoint_fanout.email}"
}

# The replication lag metric (custom.googleapis.com/lifeboat/checkpoint/replication_lag).
resource "google_project_iam_member" "checkpoint_fanout_metrics" {
  project = var.project
  role    = "roles/monitoring.metricWriter"
  member  = "serviceAccount:${google_service_account.checkpoint_fanout.email}"
}

resource "google_secret_manager_secret_iam_member" "checkpoint_fanout_topology" {
  secret_id = google_secret_manager_secret.topology.id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.checkpoint_fanout.email}"
}

resource "google_cloud_run_v2_service" "checkpoint_fanout" {
  name     = "checkpoint-fanout"
  location = var.primary_region
  ingress  = "INGRESS_TRAFFIC_INTERNAL_ONLY"

  template {
    service_account                  = google_service_account.checkpoint_fanout.email
    timeout                          = "900s"
    max_instance_request_concurrency = 8
    scaling {
      max_instance_count = 10
    }
    containers {
      image = var.checkpoint_fanout_image
      resources {
        limits = {
          cpu    = "1"
          memory = "512Mi"
        }
      }
      env {
        name  = "LIFEBOAT_TOPOLOGY"
        value = "/etc/lifeboat/topology.yaml"
      }
      volume_mounts {
        name       = "topology"
        mount_path = "/etc/lifeboat"
      }
      startup_probe {
        http_get {
          path = "/readyz"
        }
      }
    }
    volumes {
      name = "topology"
      secret {
        secret = google_secret_manager_secret.topology.secret_id
        items {
          version = "latest"
          path    = "topology.yaml"
        }
      }
    }
  }
  depends_on = [google_project_service.api["run.googleapis.com"]]
}

# The identity Eventarc delivers with: may invoke this service and receive events.
resource "google_service_account" "checkpoint_fanout_trigger" {
  account_id   = "lifeboat-ckpt-fanout-trigger"
  display_name = "Lifeboat checkpoint-fanout: Eventarc delivery"
}

resource "google_cloud_run_v2_service_iam_member" "checkpoint_fanout_invoker" {
  name     = google_cloud_run_v2_service.checkpoint_fanout.name
  location = google_cloud_run_v2_service.checkpoint_fanout.location
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.checkpoint_fanout_trigger.email}"
}

resource "google_project_iam_member" "checkpoint_fanout_event_receiver" {
  project = var.project
  role    = "roles/eventarc.eventReceiver"
  member  = "serviceAccount:${google_service_account.checkpoint_fanout_trigger.email}"
}

resource "google_eventarc_trigger" "checkpoint_fanout" {
  name            = "checkpoint-fanout"
  location        = lower(data.google_storage_bucket.checkpoint_source.location)
  service_account = google_service_account.checkpoint_fanout_trigger.email
  matching_criteria {
    attribute = "type"
    value     = "google.cloud.storage.object.v1.finalized"
  }
  matching_criteria {
    attribute = "bucket"
    value     = var.checkpoint_source_bucket
  }
  destination {
    cloud_run_service {
      service = google_cloud_run_v2_service.checkpoint_fanout.name
      region  = var.primary_region
    }
  }
  depends_on = [
    google_project_service.api["eventarc.googleapis.com"],
    google_project_iam_member.gcs_publishes_events,
    google_project_iam_member.checkpoint_fanout_event_receiver,
  ]
}

# Events the service refused or failed on 20 times land here instead of
# being retried for the subscription's whole retention.
resource "google_pubsub_topic" "checkpoint_fanout_dead_letter" {
  #checkov:skip=CKV_GCP_83:Messages carry event metadata (object names, ids, incident labels), no model or customer data, encrypted at rest with Google-managed keys; a customer-managed key would put Cloud KMS in its key's location on every publish of the recovery path.
  name                       = "checkpoint-fanout-dead-letter"
  message_retention_duration = "604800s"
  depends_on                 = [google_project_service.api["pubsub.googleapis.com"]]
}

resource "google_pubsub_topic_iam_member" "checkpoint_fanout_dead_letter_publisher" {
  topic  = google_pubsub_topic.checkpoint_fanout_dead_letter.id
  role   = "roles/pubsub.publisher"
  member = local.pubsub_service_agent
}

# Dead-lettering acknowledges the message on the trigger's subscription as
# the Pub/Sub service agent.
resource "google_pubsub_subscription_iam_member" "checkpoint_fanout_dead_letter_subscriber" {
  subscription = google_eventarc_trigger.checkpoint_fanout.transport[0].pubsub[0].subscription
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_service_agent
}

# Eventarc owns the trigger's subscription, which Terraform cannot give a
# dead-letter policy; set it once the trigger exists.
resource "terraform_data" "checkpoint_fanout_dead_letter_policy" {
  triggers_replace = [google_eventarc_trigger.checkpoint_fanout.transport[0].pubsub[0].subscription]
  depends_on = [
    google_pubsub_topic_iam_member.checkpoint_fanout_dead_letter_publisher,
    google_pubsub_subscription_iam_member.checkpoint_fanout_dead_letter_subscriber,
  ]
  provisioner "local-exec" {
    command = "gcloud pubsub subscriptions update ${google_eventarc_trigger.checkpoint_fanout.transport[0].pubsub[0].subscription} --project ${var.project} --dead-letter-topic ${google_pubsub_topic.checkpoint_fanout_dead_letter.id} --max-delivery-attempts 20 --min-retry-delay 10s --max-retry-delay 600s --ack-deadline 600"
  }
}
