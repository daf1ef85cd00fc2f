# drill: game days on the real deployment (docs/drills.md). One Cloud Run
# service in the primary region, fired by one Cloud Scheduler job per drill
# of the topology, and called by the operators for runs by hand. It fails or
# exercises one region of one workload through the path a real outage takes
# (a fault record the gateways obey, so the real uptime checks, alerts and
# failover run), keeps each run in Firestore, writes an HTML report per run
# to its reports bucket and publishes start, finish and abort on its events
# topic. A drill's fault lives in Lifeboat's own front door, not in Google
# Cloud, so a drill of the primary region leaves this service running.

variable "drill_image" {
  description = "The drill image (cloudbuild.yaml pushes it to the image_repository output, as drill; later deploys only change the revision's image)."
  type        = string
}

variable "drills" {
  description = "The topology's drills to schedule: drill id -> its `schedule` (unix-cron, five fields, UTC), copied from the topology's `drills:`. Each becomes the Cloud Scheduler job lifeboat-drill-ID, which POSTs {\"drill\": \"ID\"} to the drill service. `lifeboat validate` checks the same ids and schedules in the topology; every job here is checked against topology_yaml's drills before it is created."
  type = map(object({
    schedule = string
  }))
  default = {}
  # The topology's drill ids (lifeboat validate: lowercase letters, digits,
  # _ and -, starting with a letter, at most 63 characters), which also
  # keep the job name within Cloud Scheduler's characters.
  validation {
    condition     = alltrue([for id in keys(var.drills) : can(regex("^[a-z][a-z0-9_-]{0,62}$", id))])
    error_message = "drills: each id must be a topology drill id: lowercase letters, digits, _ and -, starting with a letter, at most 63 characters."
  }
  # Cloud Scheduler checks the cron itself when the job is created; this
  # refuses early what the topology would refuse (five fields).
  validation {
    condition     = alltrue([for drill in values(var.drills) : length(regexall("\\S+", drill.schedule)) == 5])
    error_message = "drills: each schedule must be unix-cron with five fields (minute hour day-of-month month day-of-week), as the topology's drills declare it."
  }
}

variable "drill_report_retention_days" {
  description = "Days a drill's HTML report is kept in the reports bucket before it is deleted (a replaced report's old version goes drill_report_noncurrent_days later). The default keeps a year of weekly drills and their season-on-season comparison."
  type        = number
  default     = 400
  validation {
    condition     = var.drill_report_retention_days >= 1
    error_message = "drill_report_retention_days must be at least 1."
  }
}

variable "drill_report_noncurrent_days" {
  description = "Days a replaced or deleted report is kept as a noncurrent version (a report is rewritten when its run's cleanup finishes late)."
  type        = number
  default     = 30
  validation {
    condition     = var.drill_report_noncurrent_days >= 1
    error_message = "drill_report_noncurrent_days must be at least 1."
  }
}

variable "drill_reports_location" {
  description = "Location of the drill reports bucket: a multi-region (US, EU, ASIA) by default so no one region's outage hides the reports, or any Cloud Storage location."
  type        = string
  default     = "US"
  validation {
    condition     = can(regex("^[A-Z0-9-]+$", var.drill_reports_location))
    error_message = "drill_reports_location must be a Cloud Storage location in capitals, e.g. US, EU or US-CENTRAL1."
  }
}

variable "drill_min_instances" {
  description = "Drill service instances kept running. A drill runs in the background after its request is answered, and Cloud Run shuts down an instance that has served no request for a while even with CPU always allocated; with 0 a long drill can lose its instance mid-run (its fault then expires by itself, and the next instance records the run as aborted and finishes its cleanup). 1 keeps the one instance a drill runs on, at the price of one always-on instance."
  type        = number
  default     = 1
  validation {
    condition     = var.drill_min_instances == 0 || var.drill_min_instances == 1
    error_message = "drill_min_instances must be 0 or 1 (the service runs on one instance: see max_instance_count in infra/drill.tf)."
  }
}

locals {
  # The topology's own drills (id -> schedule, spaces normalised), to
  # check var.drills against.
  topology_drills = {
    for drill in try(yamldecode(var.topology_yaml).drills, []) : drill.id => join(" ", regexall("\\S+", tostring(drill.schedule)))
  }
}

resource "google_service_account" "drill" {
  account_id   = "lifeboat-drill"
  display_name = "Lifeboat drill: runs game days, records and reports them"
}

# pilot-light-deploy drills: deploy the copied model on the pilot-light
# endpoint and undeploy it again, the same calls as failover's deploy (a
# model is read by listing its versions) plus the undeploy; no upload, no
# traffic split, no scaling of a serving standby.
resource "google_project_iam_custom_role" "drill" {
  role_id     = "lifeboatDrill"
  title       = "Lifeboat drill"
  description = "Deploy a model on a pilot-light endpoint for a drill, and undeploy it."
  permissions = [
    "aiplatform.endpoints.get",
    "aiplatform.endpoints.deploy",
    "aiplatform.endpoints.undeploy",
    "aiplatform.models.get",
    "aiplatform.models.list",
    "aiplatform.operations.get",
  ]
}

resource "google_project_iam_member" "drill_registry" {
  project = var.project
  role    = google_project_iam_custom_role.drill.id
  member  = "serviceAccount:${google_service_account.drill.email}"
}

# replication-isolation drills read checkpoint-fanout's replication lag back
# (timeSeries.list) to see it pass the RPO target.
resource "google_project_iam_member" "drill_reads_metrics" {
  project = var.project
  role    = "roles/monitoring.viewer"
  member  = "serviceAccount:${google_service_account.drill.email}"
}

# The RTO each drill measured (custom.googleapis.com/lifeboat/drill/rto), for the dashboard.
resource "google_project_iam_member" "drill_metrics" {
  project = var.project
  role    = "roles/monitoring.metricWriter"
  member  = "serviceAccount:${google_service_account.drill.email}"
}

# Its runs, fault records, leases and replication pauses; the routing
# tables (read, and the pre-drill table written back), and the incident,
# parity, RPO and gateway traffic records its guardrails and measurements
# read, in Firestore.
resource "google_project_iam_member" "drill_state" {
  project = var.project
  role    = "roles/datastore.user"
  member  = "serviceAccount:${google_service_account.drill.email}"
}

resource "google_secret_manager_secret_iam_member" "drill_topology" {
  secret_id = google_secret_manager_secret.topology.id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.drill.email}"
}

resource "google_service_account_iam_member" "deployer_acts_as_drill" {
  service_account_id = google_service_account.drill.name
  role               = "roles/iam.serviceAccountUser"
  member             = "serviceAccount:${google_service_account.deployer.email}"
}

# restore drills read, and change nothing: the checkpoints in every
# checkpoint replica bucket and in the source they are checked against, and
# samples of every data-sync replica bucket and its source.
resource "google_storage_bucket_iam_member" "drill_reads_checkpoint_replicas" {
  for_each = google_storage_bucket.checkpoint_replica
  bucket   = each.value.name
  role     = "roles/storage.objectViewer"
  member   = "serviceAccount:${google_service_account.drill.email}"
}

resource "google_storage_bucket_iam_member" "drill_reads_checkpoint_source" {
  bucket = var.checkpoint_source_bucket
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.drill.email}"
}

resource "google_storage_bucket_iam_member" "drill_reads_replicas" {
  for_each = google_storage_bucket.replica
  bucket   = each.value.name
  role     = "roles/storage.objectViewer"
  member   = "serviceAccount:${google_service_account.drill.email}"
}

resource "google_storage_bucket_iam_member" "drill_reads_sources" {
  for_each = local.source_buckets
  bucket   = each.key
  role     = "roles/storage.objectViewer"
  member   = "serviceAccount:${google_service_account.drill.email}"
}

# ...and compare row counts from table metadata (tables.get), never the
# rows themselves: metadata viewer, not data viewer.
resource "google_bigquery_dataset_iam_member" "drill_reads_source_tables" {
  for_each   = local.source_datasets
  dataset_id = each.key
  role       = "roles/bigquery.metadataViewer"
  member     = "serviceAccount:${google_service_account.drill.email}"
}

resource "google_bigquery_dataset_iam_member" "drill_reads_replica_tables" {
  for_each   = google_bigquery_dataset.replica
  dataset_id = each.value.dataset_id
  role       = "roles/bigquery.metadataViewer"
  member     = "serviceAccount:${google_service_account.drill.email}"
}

# One HTML report per run, self-contained. Versioned, so a report rewritten
# when a late cleanup finishes keeps the first one for a while; deleted
# after drill_report_retention_days (the run's record in Firestore stays).
resource "google_storage_bucket" "drill_reports" {
  #checkov:skip=CKV_GCP_62:Access is audited by Cloud Audit Logs (Data Access logs of Cloud Storage); a log bucket would be one more bucket to keep for reports that are audit records themselves.
  name                        = "${var.project}-lifeboat-drill-reports"
  location                    = var.drill_reports_location
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  labels                      = { lifeboat-function = "drill" }
  versioning {
    enabled = true
  }
  # With versioning on, deleting a live report leaves it noncurrent: the
  # second rule removes it for good.
  lifecycle_rule {
    condition {
      age        = var.drill_report_retention_days
      with_state = "LIVE"
    }
    action {
      type = "Delete"
    }
  }
  lifecycle_rule {
    condition {
      days_since_noncurrent_time = var.drill_report_noncurrent_days
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }
  depends_on = [google_project_service.api["storage.googleapis.com"]]
}

# Write a report, read it back for GET /runs/RUN/report, and replace its
# own report (an overwrite deletes the previous live object): object admin
# on this bucket only.
resource "google_storage_bucket_iam_member" "drill_writes_reports" {
  bucket = google_storage_bucket.drill_reports.name
  role   = "roles/storage.objectAdmin"
  member = "serviceAccount:${google_service_account.drill.email}"
}

# Start, finish and abort of every run, as CloudEvents
# (dev.lifeboat.drill.started, .finished, .aborted): subscribe paging and
# audit to it.
resource "google_pubsub_topic" "drill_events" {
  #checkov:skip=CKV_GCP_83:Messages carry event metadata (drill and run ids, outcomes, measured times), no model or customer data, encrypted at rest with Google-managed keys; a customer-managed key would put Cloud KMS in its key's location on every publish of the recovery path.
  name                       = "lifeboat-drill-events"
  message_retention_duration = "604800s"
  depends_on                 = [google_project_service.api["pubsub.googleapis.com"]]
}

resource "google_pubsub_topic_iam_member" "drill_publishes_events" {
  topic  = google_pubsub_topic.drill_events.id
  role   = "roles/pubsub.publisher"
  member = "serviceAccount:${google_service_account.drill.email}"
}

resource "google_cloud_run_v2_service" "drill" {
  name     = "drill"
  location = var.primary_region
  # Scheduler's ticks are internal traffic; operators call from outside,
  # as for failover: with any operator the service takes all traffic,
  # Cloud Run IAM (no allUsers) refuses every request without an invoker's
  # identity token, and the service checks the token's email against
  # LIFEBOAT_ALLOWED_CALLERS on the operators' routes.
  ingress = length(var.operators) > 0 ? "INGRESS_TRAFFIC_ALL" : "INGRESS_TRAFFIC_INTERNAL_ONLY"

  template {
    service_account = google_service_account.drill.email
    # A drill runs for up to its max-duration (at most 6 hours), longer
    # than Cloud Run lets a request live (60 minutes). So the service
    # answers the tick or the operator once the run is recorded and runs
    # the drill in the background. That needs CPU when no request is in
    # flight (cpu_idle = false below, billed for the instance's whole
    # life), an instance that stays (drill_min_instances), and one
    # instance only, so a run is never on an instance Cloud Run may reclaim
    # as surplus. A deploy or a crash still stops a run: its fault expires
    # by itself and the new instance finishes the run's cleanup.
    timeout                          = "3600s"
    max_instance_request_concurrency = 20
    scaling {
      min_instance_count = var.drill_min_instances
      max_instance_count = 1
    }
    containers {
      image = var.drill_image
      resources {
        limits = {
          cpu    = "1"
          memory = "512Mi"
        }
        cpu_idle = false
      }
      env {
        name  = "LIFEBOAT_TOPOLOGY"
        value = "/etc/lifeboat/topology.yaml"
      }
      # Who may run or abort drills by hand and read their runs
      # (comma-separated emails); empty refuses every caller there.
      env {
        name  = "LIFEBOAT_ALLOWED_CALLERS"
        value = join(",", local.allowed_callers)
      }
      # Probe and golden predictions go through the front door clients use.
      env {
        name  = "LIFEBOAT_GATEWAY_URL"
        value = "https://${var.gateway_domain}"
      }
      # Where a failback probes the returning region, as failover does: a
      # region-outage drill fails back with failover's own code.
      env {
        name  = "LIFEBOAT_PROBE_TARGETS"
        value = jsonencode(local.probe_targets)
      }
      env {
        name  = "LIFEBOAT_REPORTS_BUCKET"
        value = google_storage_bucket.drill_reports.name
      }
      # The project the service's traces are recorded in.
      env {
        name  = "GOOGLE_CLOUD_PROJECT"
        value = var.project
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
  lifecycle {
    # cloudbuild.yaml deploys new images.
    ignore_changes = [template[0].containers[0].image, client, client_version]
  }
  depends_on = [
    google_project_service.api["run.googleapis.com"],
    google_secret_manager_secret_iam_member.drill_topology,
  ]
}

# The identity Cloud Scheduler ticks with: may invoke the drill service,
# nothing else.
resource "google_service_account" "drill_invoker" {
  account_id   = "lifeboat-drill-invoker"
  display_name = "Lifeboat drill: Cloud Scheduler ticks"
}

resource "google_cloud_run_v2_service_iam_member" "drill_invoker" {
  name     = google_cloud_run_v2_service.drill.name
  location = google_cloud_run_v2_service.drill.location
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.drill_invoker.email}"
}

# Operators may invoke it; the service's allow-list decides what they may do.
resource "google_cloud_run_v2_service_iam_member" "drill_operator" {
  for_each = toset(var.operators)
  name     = google_cloud_run_v2_service.drill.name
  location = google_cloud_run_v2_service.drill.location
  role     = "roles/run.invoker"
  member   = each.value
}

# One job per drill. The service checks the window, the guardrails and its
# lease on every tick, so a repeated or late delivery starts at most one run.
resource "google_cloud_scheduler_job" "drill" {
  for_each    = var.drills
  name        = "lifeboat-drill-${each.key}"
  region      = var.primary_region
  schedule    = each.value.schedule
  time_zone   = "UTC"
  description = "drill ${each.key}: a game day of the topology's drills (docs/drills.md)."
  # The service answers once the run is recorded; the drill goes on in the
  # background.
  attempt_deadline = "1800s"
  http_target {
    http_method = "POST"
    uri         = "${google_cloud_run_v2_service.drill.uri}/"
    headers     = { "Content-Type" = "application/json" }
    body        = base64encode(jsonencode({ drill = each.key }))
    oidc_token {
      service_account_email = google_service_account.drill_invoker.email
      audience              = google_cloud_run_v2_service.drill.uri
    }
  }
  lifecycle {
    precondition {
      condition     = lookup(local.topology_drills, each.key, null) == join(" ", regexall("\\S+", each.value.schedule))
      error_message = "drills: ${each.key} must be a drill of topology_yaml with the same schedule (the topology has ${jsonencode(lookup(local.topology_drills, each.key, null))}): copy the ids and schedules from its drills:."
    }
  }
  depends_on = [
    google_project_service.api["cloudscheduler.googleapis.com"],
    google_cloud_run_v2_service_iam_member.drill_invoker,
  ]
}

# A drill of the topology without a job is never fired; say so on every plan.
check "every_topology_drill_is_scheduled" {
  assert {
    condition     = alltrue([for id in keys(local.topology_drills) : contains(keys(var.drills), id)])
    error_message = "The topology declares drills that var.drills does not schedule: ${join(", ", setsubtract(keys(local.topology_drills), keys(var.drills)))}."
  }
}
