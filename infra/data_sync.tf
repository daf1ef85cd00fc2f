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
# them readable.
resource "google_storage_bucket" "replica" {
  for_each                    = local.replica_buckets
  name                        = each.key
  location                    = upper(each.value.region)
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  labels                      = { lifeboat-asset = each.value.asset }
}

resource "google_bigquery_dataset" "replica" {
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

resource "google_eventarc_trigger" "storage" {
  for_each        = local.storage_triggers
  name            = substr("lifeboat-ds-${replace(each.key, ".", "-")}", 0, 63)
  location        = var.primary_region
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
