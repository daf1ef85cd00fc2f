# data-sync: replica buckets and datasets, the Cloud Run service that keeps
# them current, the Eventarc triggers that feed it (object finalized and
# deleted in every source bucket, BigQuery table-change audit entries), the
# Scheduler job of the reconcile, and a service account that may read the
# sources and write the replicas, nothing else.

variable "data_sync_buckets" {
  description = "Bucket assets of the topology: asset id -> source bucket and replica bucket per region (the topology's `buckets`)."
  type = map(object({
    source   = string
    replicas = map(string)
  }))
  default = {}
}

variable "bulk_threshold" {
  description = "Missing or different objects of one replica from which data-sync's reconcile hands the rest to Storage Transfer Service instead of copying object by object."
  type        = number
  default     = 100000
  validation {
    condition     = var.bulk_threshold >= 1 && floor(var.bulk_threshold) == var.bulk_threshold
    error_message = "The bulk_threshold must be a whole number, 1 or more."
  }
}

variable "data_sync_datasets" {
  description = "Dataset assets of the topology: asset id -> source dataset id and replica dataset id per region (ids without the project)."
  type = map(object({
    source   = string
    replicas = map(string)
  }))
  default = {}
}

variable "data_sync_image" {
  description = "The data-sync image (cloudbuild.yaml pushes it; later deploys only change the revision's image)."
  type        = string
}

variable "replica_noncurrent_days" {
  description = "Days a replaced or deleted replica object is kept as a noncurrent version, so a bad sync (a corrupt or emptied source copied over the replica, a delete replayed) can be undone from the replica itself."
  type        = number
  default     = 30
  validation {
    condition     = var.replica_noncurrent_days >= 1
    error_message = "replica_noncurrent_days must be at least 1."
  }
}

variable "replica_cold_storage" {
  description = "Moves replica objects not rewritten for after_days to a colder storage_class (NEARLINE, COLDLINE or ARCHIVE); null keeps them all in Standard. Every class answers reads in milliseconds, so a failover reads them as fast; colder classes charge per GB read instead, and bill a minimum storage time (30, 90, 365 days from the object's creation) that after_days should cover."
  type = object({
    storage_class = string
    after_days    = number
  })
  default = {
    storage_class = "NEARLINE"
    after_days    = 30
  }
  validation {
    condition     = var.replica_cold_storage == null || contains(["NEARLINE", "COLDLINE", "ARCHIVE"], try(var.replica_cold_storage.storage_class, ""))
    error_message = "replica_cold_storage.storage_class must be NEARLINE, COLDLINE or ARCHIVE."
  }
  validation {
    condition     = var.replica_cold_storage == null || try(var.replica_cold_storage.after_days, 0) >= 1
    error_message = "replica_cold_storage.after_days must be at least 1."
  }
}

variable "replica_soft_delete_days" {
  description = "Soft delete window of every replica bucket (data-sync's and checkpoint-fanout's), in days (7-90): even a noncurrent version deleted by a lifecycle rule or by hand can be restored within it."
  type        = number
  default     = 7
  validation {
    condition     = var.replica_soft_delete_days >= 7 && var.replica_soft_delete_days <= 90
    error_message = "replica_soft_delete_days must be between 7 and 90 (Cloud Storage's soft delete range)."
  }
}

variable "reconcile_schedule" {
  description = "Cron schedule of the reconcile; it bounds the RPO when events are lost."
  type        = string
  default     = "*/15 * * * *"
}

locals {
  replica_buckets = merge([
    for asset, bucket in var.data_sync_buckets : {
      for region, name in bucket.replicas : name => { asset = asset, region = region }
    }
  ]...)
  replica_datasets = merge([
    for asset, dataset in var.data_sync_datasets : {
      for region, name in dataset.replicas : name => { asset = asset, region = region }
    }
  ]...)
  source_buckets  = toset([for bucket in var.data_sync_buckets : bucket.source])
  source_datasets = toset([for dataset in var.data_sync_datasets : dataset.source])
  # Audit log methods that change a table's data or schema.
  bigquery_methods = toset([
    "google.cloud.bigquery.v2.JobService.InsertJob",
    "google.cloud.bigquery.v2.TableService.InsertTable",
    "google.cloud.bigquery.v2.TableService.UpdateTable",
    "google.cloud.bigquery.v2.TableService.PatchTable",
  ])
}

resource "google_service_account" "data_sync" {
  account_id   = "lifeboat-data-sync"
  display_name = "Lifeboat data-sync: reads source buckets and datasets, writes their replicas"
}

# Replicas live in their region, so a regional outage of the primary leaves
# them readable. Versioned with a soft delete window: a sync that copies a
# bad source over a replica, or replays a delete, leaves the previous
# version there for replica_noncurrent_days, so the replica is never the
# only copy destroyed. Objects left alone move to a colder class
# (replica_cold_storage): a replica is read on a failover, rarely before.
resource "google_storage_bucket" "replica" {
  #checkov:skip=CKV_GCP_62:Access is audited by Cloud Audit Logs (Data Access logs of Cloud Storage); a log bucket per replica would add a bucket in some region that every replica's writes depend on.
  for_each                    = local.replica_buckets
  name                        = each.key
  location                    = upper(each.value.region)
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  labels                      = { lifeboat-asset = each.value.asset }
  versioning {
    enabled = true
  }
  soft_delete_policy {
    retention_duration_seconds = var.replica_soft_delete_days * 86400
  }
  lifecycle_rule {
    condition {
      days_since_noncurrent_time = var.replica_noncurrent_days
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }
  dynamic "lifecycle_rule" {
    for_each = var.replica_cold_storage == null ? [] : [var.replica_cold_storage]
    content {
      condition {
        age                   = lifecycle_rule.value.after_days
        with_state            = "LIVE"
        matches_storage_class = ["STANDARD"]
      }
      action {
        type          = "SetStorageClass"
        storage_class = lifecycle_rule.value.storage_class
      }
    }
  }
}

resource "google_bigquery_dataset" "replica" {
  #checkov:skip=CKV_GCP_81:A replica is encrypted like the source datasets this module does not create (Google-managed keys); a source under a customer-managed key needs a key in each replica's own region, never the primary's, or the replica is unreadable in the outage it exists for: not modelled yet, see docs/infra.md.
  for_each    = local.replica_datasets
  dataset_id  = each.key
  location    = each.value.region
  description = "Lifeboat replica of dataset asset ${each.value.asset}, kept by data-sync."
  labels      = { lifeboat-asset = each.value.asset }
}

# Least privilege: read the sources, write the replicas, run copy jobs,
# keep the ledger in Firestore.
resource "google_storage_bucket_iam_member" "source_reader" {
  for_each = local.source_buckets
  bucket   = each.key
  role     = "roles/storage.objectViewer"
  member   = "serviceAccount:${google_service_account.data_sync.email}"
}

resource "google_storage_bucket_iam_member" "replica_writer" {
  for_each = google_storage_bucket.replica
  bucket   = each.value.name
  role     = "roles/storage.objectAdmin"
  member   = "serviceAccount:${google_service_account.data_sync.email}"
}

resource "google_bigquery_dataset_iam_member" "source_reader" {
  for_each   = local.source_datasets
  dataset_id = each.key
  role       = "roles/bigquery.dataViewer"
  member     = "serviceAccount:${google_service_account.data_sync.email}"
}

resource "google_bigquery_dataset_iam_member" "replica_writer" {
  for_each   = google_bigquery_dataset.replica
  dataset_id = each.value.dataset_id
  role       = "roles/bigquery.dataEditor"
  member     = "serviceAccount:${google_service_account.data_sync.email}"
}

resource "google_project_iam_member" "data_sync_jobs" {
  project = var.project
  role    = "roles/bigquery.jobUser"
  member  = "serviceAccount:${google_service_account.data_sync.email}"
}

resource "google_project_iam_member" "data_sync_state" {
  project = var.project
  role    = "roles/datastore.user"
  member  = "serviceAccount:${google_service_account.data_sync.email}"
}

# The RPO exposure each reconcile finds per asset and region (custom.googleapis.com/lifeboat/data/rpo_exposure), for the dashboard.
resource "google_project_iam_member" "data_sync_metrics" {
  project = var.project
  role    = "roles/monitoring.metricWriter"
  member  = "serviceAccount:${google_service_account.data_sync.email}"
}

# Bulk copies (a new replica, or a drift past the reconcile's threshold) run
# as Storage Transfer jobs: data-sync makes one job per asset and replica
# region, runs it and follows its operation, nothing more (it never deletes
# or lists jobs).
resource "google_project_iam_custom_role" "data_sync_transfer" {
  role_id     = "lifeboatDataSyncTransfer"
  title       = "Lifeboat data-sync bulk copies"
  description = "Create, read and run Lifeboat's Storage Transfer jobs and follow their operations."
  permissions = [
    "storagetransfer.jobs.create",
    "storagetransfer.jobs.get",
    "storagetransfer.jobs.run",
    "storagetransfer.operations.get",
  ]
}

resource "google_project_iam_member" "data_sync_transfer" {
  project = var.project
  role    = google_project_iam_custom_role.data_sync_transfer.id
  member  = "serviceAccount:${google_service_account.data_sync.email}"
}

# The Storage Transfer service agent does the copying: it reads the sources
# (objects, and the bucket's metadata for its location) and writes the
# replicas, reading a replica object first to copy only what differs
# (overwrite when different) and listing the replica; it deletes only what
# it overwrites, never an object the source lacks.
data "google_storage_transfer_project_service_account" "sts" {
  project    = var.project
  depends_on = [google_project_service.api["storagetransfer.googleapis.com"]]
}

resource "google_storage_bucket_iam_member" "transfer_source_reader" {
  for_each = local.source_buckets
  bucket   = each.key
  role     = "roles/storage.objectViewer"
  member   = "serviceAccount:${data.google_storage_transfer_project_service_account.sts.email}"
}

resource "google_storage_bucket_iam_member" "transfer_source_bucket_reader" {
  for_each = local.source_buckets
  bucket   = each.key
  role     = "roles/storage.legacyBucketReader"
  member   = "serviceAccount:${data.google_storage_transfer_project_service_account.sts.email}"
}

resource "google_storage_bucket_iam_member" "transfer_replica_writer" {
  for_each = google_storage_bucket.replica
  bucket   = each.value.name
  role     = "roles/storage.legacyBucketWriter"
  member   = "serviceAccount:${data.google_storage_transfer_project_service_account.sts.email}"
}

resource "google_storage_bucket_iam_member" "transfer_replica_reader" {
  for_each = google_storage_bucket.replica
  bucket   = each.value.name
  role     = "roles/storage.objectViewer"
  member   = "serviceAccount:${data.google_storage_transfer_project_service_account.sts.email}"
}

resource "google_secret_manager_secret_iam_member" "data_sync_topology" {
  secret_id = google_secret_manager_secret.topology.id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.data_sync.email}"
}

resource "google_cloud_run_v2_service" "data_sync" {
  name     = "lifeboat-data-sync"
  location = var.primary_region
  ingress  = "INGRESS_TRAFFIC_INTERNAL_ONLY"

  template {
    service_account = google_service_account.data_sync.email
    # A reconcile of a large bucket runs long; events are short.
    timeout = "3600s"
    scaling {
      max_instance_count = 20
    }
    containers {
      image = var.data_sync_image
      env {
        name  = "LIFEBOAT_TOPOLOGY"
        value = "/etc/lifeboat/topology.yaml"
      }
      env {
        name  = "LIFEBOAT_BULK_THRESHOLD"
        value = tostring(var.bulk_threshold)
      }
      volume_mounts {
        name       = "topology"
        mount_path = "/etc/lifeboat"
      }
      resources {
        limits = { cpu = "1", memory = "512Mi" }
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
  lifecycle {
    # cloudbuild.yaml deploys new images.
    ignore_changes = [template[0].containers[0].image]
  }
  depends_on = [google_secret_manager_secret_iam_member.data_sync_topology]
}

# Eventarc and Cloud Scheduler call the service as this identity.
resource "google_service_account" "data_sync_invoker" {
  account_id   = "lifeboat-data-sync-invoker"
  display_name = "Lifeboat: delivers storage, audit and scheduler events to data-sync"
}

resource "google_cloud_run_v2_service_iam_member" "invoker" {
  name     = google_cloud_run_v2_service.data_sync.name
  location = google_cloud_run_v2_service.data_sync.location
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.data_sync_invoker.email}"
}

resource "google_project_iam_member" "invoker_receives_events" {
  project = var.project
  role    = "roles/eventarc.eventReceiver"
  member  = "serviceAccount:${google_service_account.data_sync_invoker.email}"
}

resource "google_service_account_iam_member" "deployer_acts_as_data_sync" {
  service_account_id = google_service_account.data_sync.name
  role               = "roles/iam.serviceAccountUser"
  member             = "serviceAccount:${google_service_account.deployer.email}"
}

locals {
  storage_triggers = merge([
    for bucket in local.source_buckets : {
      for kind in ["finalized", "deleted"] : "${bucket}-${kind}" => { bucket = bucket, kind = kind }
    }
  ]...)
}

# Where each source bucket lives: Eventarc takes a bucket's events only in a
# trigger of the bucket's own location (a region, dual-region or
# multi-region, lowercased), whatever the primary region is.
data "google_storage_bucket" "data_sync_source" {
  for_each = local.source_buckets
  name     = each.key
}

resource "google_eventarc_trigger" "storage" {
  for_each        = local.storage_triggers
  name            = substr("lifeboat-ds-${replace(each.key, ".", "-")}", 0, 63)
  location        = lower(data.google_storage_bucket.data_sync_source[each.value.bucket].location)
  service_account = google_service_account.data_sync_invoker.email
  matching_criteria {
    attribute = "type"
    value     = "google.cloud.storage.object.v1.${each.value.kind}"
  }
  matching_criteria {
    attribute = "bucket"
    value     = each.value.bucket
  }
  destination {
    cloud_run_service {
      service = google_cloud_run_v2_service.data_sync.name
      region  = var.primary_region
    }
  }
  depends_on = [google_project_iam_member.gcs_publishes_events]
}

resource "google_eventarc_trigger" "bigquery" {
  for_each        = local.bigquery_methods
  name            = "lifeboat-ds-bq-${lower(element(split(".", each.key), length(split(".", each.key)) - 1))}"
  location        = "global"
  service_account = google_service_account.data_sync_invoker.email
  matching_criteria {
    attribute = "type"
    value     = "google.cloud.audit.log.v1.written"
  }
  matching_criteria {
    attribute = "serviceName"
    value     = "bigquery.googleapis.com"
  }
  matching_criteria {
    attribute = "methodName"
    value     = each.key
  }
  destination {
    cloud_run_service {
      service = google_cloud_run_v2_service.data_sync.name
      region  = var.primary_region
    }
  }
}

# Events the service refused or failed on 20 times land here instead of
# being retried for the subscription's whole retention (the reconcile
# repairs what they would have done).
resource "google_pubsub_topic" "data_sync_dead_letter" {
  #checkov:skip=CKV_GCP_83:Messages carry event metadata (object names, ids, incident labels), no model or customer data, encrypted at rest with Google-managed keys; a customer-managed key would put Cloud KMS in its key's location on every publish of the recovery path.
  name                       = "data-sync-dead-letter"
  message_retention_duration = "604800s"
  depends_on                 = [google_project_service.api["pubsub.googleapis.com"]]
}

resource "google_pubsub_topic_iam_member" "data_sync_dead_letter_publisher" {
  topic  = google_pubsub_topic.data_sync_dead_letter.id
  role   = "roles/pubsub.publisher"
  member = local.pubsub_service_agent
}

locals {
  # The subscription Eventarc made for each trigger.
  data_sync_trigger_subscriptions = merge(
    { for key, trigger in google_eventarc_trigger.storage : "storage-${key}" => trigger.transport[0].pubsub[0].subscription },
    { for key, trigger in google_eventarc_trigger.bigquery : "bigquery-${key}" => trigger.transport[0].pubsub[0].subscription },
  )
}

# Dead-lettering acknowledges the message on each trigger's subscription as
# the Pub/Sub service agent.
resource "google_pubsub_subscription_iam_member" "data_sync_dead_letter_subscriber" {
  for_each     = local.data_sync_trigger_subscriptions
  subscription = each.value
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_service_agent
}

# Eventarc owns the triggers' subscriptions; set their dead-letter policy
# once they exist (as for checkpoint-fanout).
resource "terraform_data" "data_sync_dead_letter_policy" {
  for_each         = local.data_sync_trigger_subscriptions
  triggers_replace = [each.value]
  depends_on = [
    google_pubsub_topic_iam_member.data_sync_dead_letter_publisher,
    google_pubsub_subscription_iam_member.data_sync_dead_letter_subscriber,
  ]
  provisioner "local-exec" {
    command = "gcloud pubsub subscriptions update ${each.value} --project ${var.project} --dead-letter-topic ${google_pubsub_topic.data_sync_dead_letter.id} --max-delivery-attempts 20 --min-retry-delay 10s --max-retry-delay 600s --ack-deadline 600"
  }
}

resource "google_cloud_scheduler_job" "reconcile" {
  name        = "lifeboat-data-sync-reconcile"
  region      = var.primary_region
  schedule    = var.reconcile_schedule
  description = "data-sync reconcile: repairs what lost events missed, records RPO."
  # The reconcile of a large bucket may take minutes.
  attempt_deadline = "1800s"
  http_target {
    http_method = "POST"
    uri         = "${google_cloud_run_v2_service.data_sync.uri}/"
    headers     = { "Content-Type" = "application/json" }
    body        = base64encode(jsonencode({ job = "reconcile" }))
    oidc_token {
      service_account_email = google_service_account.data_sync_invoker.email
      audience              = google_cloud_run_v2_service.data_sync.uri
    }
  }
}
