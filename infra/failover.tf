# failover: moves a workload's inference traffic off a failed region. Cloud
# Monitoring watches every region of every protected workload (an uptime
# check of that region's gateway, the error rate of its Vertex AI
# endpoints); its incidents go to a Pub/Sub notification channel, and one
# push subscription per region delivers each of them to the failover
# service of that region, which checks it with its own probes before it
# scales, deploys and rewrites the routing table. The service runs in every
# region, so the loss of any one region (the primary included) leaves
# others able to act; the workload's lease in Firestore (multi-region)
# makes exactly one of them act, the others answer 429 while it works and
# find the finished record on Pub/Sub's retry. Every policy carries the
# `lifeboat-workload` and `lifeboat-region` user labels: that is how the
# service knows what an incident is about.

variable "failover_image" {
  description = "The failover image (cloudbuild.yaml pushes it to the image_repository output, as failover; later deploys only change the revision's image)."
  type        = string
}

variable "failover_regions" {
  description = "Regions a failover service runs in, each with its own push subscription to the incidents: every region of the topology. null means gateway_regions (every region that serves or may serve inference). A service in one region alone could not act on that region's own outage."
  type        = list(string)
  default     = null
  validation {
    condition     = var.failover_regions == null || length(distinct(coalesce(var.failover_regions, []))) >= 2
    error_message = "failover_regions: give at least two distinct regions; a failover service in one region cannot act when that region is down."
  }
}

variable "operators" {
  description = "Who may move traffic by hand (POST /move/WORKLOAD, /failback/WORKLOAD on the failover services), as IAM principals: user:EMAIL or serviceAccount:EMAIL. Each gets roles/run.invoker on every failover service, and its email goes into the services' LIFEBOAT_ALLOWED_CALLERS allow-list, which the services check against the caller's verified identity. With none, the services accept internal traffic only (Pub/Sub's pushes and Scheduler's ticks)."
  type        = list(string)
  default     = []
  # The allow-list compares the email in the caller's identity token; a
  # group's members present their own emails, never the group's.
  validation {
    condition     = alltrue([for principal in var.operators : can(regex("^(user|serviceAccount):[^@,\\s]+@[^@,\\s]+$", principal))])
    error_message = "operators: each must be user:EMAIL or serviceAccount:EMAIL (groups and domains cannot be allow-listed: the identity token carries the member's own email)."
  }
}

variable "uptime_check_regions" {
  description = "Where Google's uptime checkers probe each region's front door from (Monitoring's checker regions: USA, EUROPE, SOUTH_AMERICA, ASIA_PACIFIC, or USA_OREGON, USA_IOWA, USA_VIRGINIA). At least three, so one checker location's own trouble never looks like an outage (the policies open an incident only when more than one location fails)."
  type        = list(string)
  default     = ["USA", "EUROPE", "ASIA_PACIFIC", "SOUTH_AMERICA"]
  validation {
    condition     = length(distinct(var.uptime_check_regions)) >= 3
    error_message = "uptime_check_regions: Cloud Monitoring needs at least three checker regions."
  }
  validation {
    condition     = alltrue([for region in var.uptime_check_regions : contains(["USA", "EUROPE", "SOUTH_AMERICA", "ASIA_PACIFIC", "USA_OREGON", "USA_IOWA", "USA_VIRGINIA"], region)])
    error_message = "uptime_check_regions: each must be one of USA, EUROPE, SOUTH_AMERICA, ASIA_PACIFIC, USA_OREGON, USA_IOWA, USA_VIRGINIA."
  }
}

variable "failback_schedule" {
  description = "Cron schedule of the automatic failback check (workloads with `failback: automatic`); every failover region runs it, the lease lets one act."
  type        = string
  default     = "*/5 * * * *"
}

variable "failover_workloads" {
  description = "What failover watches, as in the topology: workload id -> region -> the Vertex AI endpoint ids of the workload's models in that region (their `endpoints`), and optionally probe_url, the URL failover's probes and the uptime check GET for that region instead of the gateway's /regions/REGION/healthz?workload=WORKLOAD."
  type = map(map(object({
    endpoints = list(string)
    probe_url = optional(string)
  })))
  default = {}
  validation {
    condition = alltrue(flatten([
      for regions in var.failover_workloads : [
        for target in regions : target.probe_url == null || can(regex("^https?://[^/:]+(:[0-9]+)?(/.*)?$", target.probe_url))
      ]
    ]))
    error_message = "A probe_url must be an absolute http:// or https:// URL."
  }
  # Workload ids become the policies' lifeboat-workload label values.
  validation {
    condition     = alltrue([for workload in keys(var.failover_workloads) : can(regex("^[a-z][a-z0-9_-]{0,62}$", workload))])
    error_message = "Workload ids must be valid Monitoring label values: lowercase letters, digits, _ and -, starting with a letter, at most 63 characters."
  }
}

variable "failover_error_ratio" {
  description = "Share of a region's online predictions answered with an error (over 5 minutes) that opens an incident for it."
  type        = number
  default     = 0.05
}

locals {
  failover_regions = toset(coalesce(var.failover_regions, var.gateway_regions))
  # The operators' emails, as the services' allow-list holds them.
  allowed_callers = [for principal in var.operators : split(":", principal)[1]]
  operator_grants = {
    for pair in setproduct(local.failover_regions, var.operators) : "${pair[0]} ${pair[1]}" => {
      region = pair[0]
      member = pair[1]
    }
  }
  # One entry per workload and region: what its policies watch and where
  # it is probed.
  failover_targets = merge([
    for workload, regions in var.failover_workloads : {
      for region, target in regions : "${workload}/${region}" => {
        workload  = workload
        region    = region
        endpoints = target.endpoints
        custom    = target.probe_url != null
        url       = coalesce(target.probe_url, "https://${var.gateway_domain}/regions/${region}/healthz?workload=${workload}")
      }
    }
  ]...)
  # The same URLs cut into what an uptime check wants; path keeps the query
  # string (?workload=W), since `.` matches `?`.
  uptime_checks = {
    for key, target in local.failover_targets : key => merge(target, regex(
      "^(?P<scheme>https?)://(?P<host>[^/:]+)(?::(?P<port>[0-9]+))?(?P<path>/.*)?$", target.url
    ))
  }
  # LIFEBOAT_PROBE_TARGETS: {"workload": {"region": "url"}}.
  probe_targets = {
    for workload, regions in var.failover_workloads : workload => {
      for region, target in regions : region => local.failover_targets["${workload}/${region}"].url
    }
  }
}

resource "google_service_account" "failover" {
  account_id   = "lifeboat-failover"
  display_name = "Lifeboat failover: scales and deploys standbys, rewrites the routing tables"
}

# Exactly what a failover calls: read endpoints and models (a model is read
# by listing its versions), deploy the model on a pilot-light endpoint,
# change a deployed model's replica count, and follow the operations.
# Uploading, undeploying and deleting stay with model-copy or nobody.
resource "google_project_iam_custom_role" "failover" {
  role_id     = "lifeboatFailover"
  title       = "Lifeboat failover"
  description = "Scale up or deploy a standby region's models during a failover."
  permissions = [
    "aiplatform.endpoints.get",
    "aiplatform.endpoints.deploy",
    "aiplatform.endpoints.update",
    "aiplatform.models.get",
    "aiplatform.models.list",
    "aiplatform.operations.get",
  ]
}

resource "google_project_iam_member" "failover_registry" {
  project = var.project
  role    = google_project_iam_custom_role.failover.id
  member  = "serviceAccount:${google_service_account.failover.email}"
}

# Leases, routing tables (compare-and-set writes) and incident records, and
# the parity and RPO records other functions keep, in Firestore.
resource "google_project_iam_member" "failover_state" {
  project = var.project
  role    = "roles/datastore.user"
  member  = "serviceAccount:${google_service_account.failover.email}"
}

# Each routing change's weights and each failover's time from the incident's start to verified predictions (custom.googleapis.com/lifeboat/routing/weight, failover/recovery_time), for the dashboard.
resource "google_project_iam_member" "failover_metrics" {
  project = var.project
  role    = "roles/monitoring.metricWriter"
  member  = "serviceAccount:${google_service_account.failover.email}"
}

resource "google_secret_manager_secret_iam_member" "failover_topology" {
  secret_id = google_secret_manager_secret.topology.id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.failover.email}"
}

resource "google_service_account_iam_member" "deployer_acts_as_failover" {
  service_account_id = google_service_account.failover.name
  role               = "roles/iam.serviceAccountUser"
  member             = "serviceAccount:${google_service_account.deployer.email}"
}

resource "google_cloud_run_v2_service" "failover" {
  for_each = local.failover_regions
  name     = "failover"
  location = each.key
  # Pub/Sub pushes and Scheduler ticks from this project are internal
  # traffic. Operators call from outside: with any operator the service
  # takes all traffic, and Cloud Run IAM (no allUsers here) refuses every
  # request without an identity token of an invoker; the service then
  # checks the token's email against LIFEBOAT_ALLOWED_CALLERS for the
  # endpoints that change things.
  ingress = length(var.operators) > 0 ? "INGRESS_TRAFFIC_ALL" : "INGRESS_TRAFFIC_INTERNAL_ONLY"

  template {
    service_account = google_service_account.failover.email
    # Scaling a standby up or deploying a pilot-light model is waited for
    # (the service allows a request 30 minutes).
    timeout                          = "1800s"
    max_instance_request_concurrency = 8
    scaling {
      # Detection to decision is part of the RTO: no cold start.
      min_instance_count = 1
      max_instance_count = 4
    }
    containers {
      image = var.failover_image
      resources {
        limits = {
          cpu    = "1"
          memory = "256Mi"
        }
      }
      env {
        name  = "LIFEBOAT_TOPOLOGY"
        value = "/etc/lifeboat/topology.yaml"
      }
      env {
        name  = "LIFEBOAT_PROBE_TARGETS"
        value = jsonencode(local.probe_targets)
      }
      # Who may POST /move/WORKLOAD and /failback/WORKLOAD (comma-separated
      # emails); empty refuses every caller there.
      env {
        name  = "LIFEBOAT_ALLOWED_CALLERS"
        value = join(",", local.allowed_callers)
      }
      # Where golden requests are sent (/regions/REGION/predict/...): the
      # gateway's load balancer, which hands each to REGION's own gateway.
      env {
        name  = "LIFEBOAT_GATEWAY_URL"
        value = "https://${var.gateway_domain}"
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
    google_secret_manager_secret_iam_member.failover_topology,
  ]
}

# Incidents: Cloud Monitoring publishes here, the push subscription
# delivers to the service.
resource "google_pubsub_topic" "incidents" {
  #checkov:skip=CKV_GCP_83:Messages carry event metadata (object names, ids, incident labels), no model or customer data, encrypted at rest with Google-managed keys; a customer-managed key would put Cloud KMS in its key's location on every publish of the recovery path.
  name       = "lifeboat-incidents"
  depends_on = [google_project_service.api["pubsub.googleapis.com"]]
}

resource "google_monitoring_notification_channel" "incidents" {
  display_name = "Lifeboat failover"
  type         = "pubsub"
  description  = "Incidents of Lifeboat's policies, delivered to the failover service."
  labels = {
    topic = google_pubsub_topic.incidents.id
  }
  depends_on = [google_project_service.api["monitoring.googleapis.com"]]
}

# Monitoring publishes to a Pub/Sub channel as its notification service
# agent, which exists once the project has a Pub/Sub channel: grant after
# the channel.
resource "google_pubsub_topic_iam_member" "incidents_publisher" {
  topic      = google_pubsub_topic.incidents.id
  role       = "roles/pubsub.publisher"
  member     = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-monitoring-notification.iam.gserviceaccount.com"
  depends_on = [google_monitoring_notification_channel.incidents]
}

# The identity Pub/Sub pushes with: may invoke the failover service, nothing else.
resource "google_service_account" "failover_invoker" {
  account_id   = "lifeboat-failover-invoker"
  display_name = "Lifeboat failover: Pub/Sub push delivery of incidents"
}

resource "google_cloud_run_v2_service_iam_member" "failover_invoker" {
  for_each = google_cloud_run_v2_service.failover
  name     = each.value.name
  location = each.value.location
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.failover_invoker.email}"
}

# Operators may invoke every region's service (which one answers does not
# matter: they share the state); the service's allow-list decides what
# they may change.
resource "google_cloud_run_v2_service_iam_member" "failover_operator" {
  for_each = local.operator_grants
  name     = google_cloud_run_v2_service.failover[each.value.region].name
  location = google_cloud_run_v2_service.failover[each.value.region].location
  role     = "roles/run.invoker"
  member   = each.value.member
}

# Pub/Sub mints the push's OIDC token as the invoker account (projects
# created before April 2021 need this grant explicitly); limited to that
# one account.
resource "google_service_account_iam_member" "pubsub_signs_for_failover_invoker" {
  service_account_id = google_service_account.failover_invoker.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_service_agent
}

# One subscription per region: every region's service receives every
# incident, so whichever regions are up can act on it.
resource "google_pubsub_subscription" "incidents" {
  for_each = google_cloud_run_v2_service.failover
  name     = "lifeboat-incidents-failover-${each.key}"
  topic    = google_pubsub_topic.incidents.id
  # The longest Pub/Sub allows; a failover that waits on a scale-up may
  # still outlast it, and the redelivery then finds the lease or the
  # finished record (the handler is idempotent).
  ack_deadline_seconds = 600
  push_config {
    push_endpoint = "${each.value.uri}/"
    oidc_token {
      service_account_email = google_service_account.failover_invoker.email
      audience              = each.value.uri
    }
  }
  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "600s"
  }
  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter.id
    max_delivery_attempts = 20
  }
  # Incidents are rare; a subscription left at the default would expire
  # after 31 days without one, and the next outage would go unanswered.
  expiration_policy {
    ttl = ""
  }
  depends_on = [
    google_cloud_run_v2_service_iam_member.failover_invoker,
    google_pubsub_topic_iam_member.dead_letter_publisher,
  ]
}

# Dead-lettering also needs Pub/Sub to acknowledge the message here.
resource "google_pubsub_subscription_iam_member" "incidents_dead_letter" {
  for_each     = google_pubsub_subscription.incidents
  subscription = each.value.name
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_service_agent
}

# Automatic failbacks: every region's Scheduler ticks its own region's
# service, so the check goes on while any region is up; the workload's
# lease keeps two ticks from failing back at once.
resource "google_cloud_scheduler_job" "failover_failbacks" {
  for_each    = google_cloud_run_v2_service.failover
  name        = "lifeboat-failover-failbacks"
  region      = each.key
  schedule    = var.failback_schedule
  description = "failover: returns traffic to the primary for workloads with automatic failback, once stable."
  # A failback step waits for its region's probes and golden requests.
  attempt_deadline = "1800s"
  http_target {
    http_method = "POST"
    uri         = "${each.value.uri}/"
    headers     = { "Content-Type" = "application/json" }
    body        = base64encode(jsonencode({ job = "failbacks" }))
    oidc_token {
      service_account_email = google_service_account.failover_invoker.email
      audience              = each.value.uri
    }
  }
  depends_on = [
    google_project_service.api["cloudscheduler.googleapis.com"],
    google_cloud_run_v2_service_iam_member.failover_invoker,
  ]
}

# Refusals: when every candidate region fails a safety rule, the failover
# service leaves traffic where it is, records why and publishes a
# dev.lifeboat.failover.refused CloudEvent here (workload, failed region,
# incident, the rule each candidate failed). Subscribe paging to it: someone
# must heal the region, fix a standby or force a move.
resource "google_pubsub_topic" "failover_refused" {
  #checkov:skip=CKV_GCP_83:Messages carry event metadata (object names, ids, incident labels), no model or customer data, encrypted at rest with Google-managed keys; a customer-managed key would put Cloud KMS in its key's location on every publish of the recovery path.
  name                       = "lifeboat-failover-refused"
  message_retention_duration = "604800s"
  depends_on                 = [google_project_service.api["pubsub.googleapis.com"]]
}

resource "google_pubsub_topic_iam_member" "failover_publishes_refusals" {
  topic  = google_pubsub_topic.failover_refused.id
  role   = "roles/pubsub.publisher"
  member = "serviceAccount:${google_service_account.failover.email}"
}

# The region as the outside sees it: Google's checkers GET the probe URL
# from several locations every minute.
resource "google_monitoring_uptime_check_config" "region" {
  for_each     = local.uptime_checks
  display_name = "lifeboat ${each.value.workload} ${each.value.region}"
  timeout      = "10s"
  period       = "60s"
  # Several checker regions, so one location's trouble is not an outage.
  selected_regions = var.uptime_check_regions
  http_check {
    path         = coalesce(each.value.path, "/")
    port         = coalesce(each.value.port, each.value.scheme == "https" ? "443" : "80")
    use_ssl      = each.value.scheme == "https"
    validate_ssl = each.value.scheme == "https"
  }
  monitored_resource {
    type = "uptime_url"
    labels = {
      project_id = var.project
      host       = each.value.host
    }
  }
  user_labels = {
    lifeboat-workload = each.value.workload
    lifeboat-region   = each.value.region
  }
  lifecycle {
    precondition {
      condition     = each.value.custom || contains(var.gateway_regions, each.value.region)
      error_message = "failover_workloads: ${each.key} has no probe_url and no gateway runs in ${each.value.region} (gateway_regions)."
    }
  }
}

# Opens an incident when the check fails from more than one checker
# location for a minute; one location failing is the checker's problem.
resource "google_monitoring_alert_policy" "region_unreachable" {
  for_each     = local.failover_targets
  display_name = "lifeboat ${each.value.workload}: ${each.value.region} unreachable"
  combiner     = "OR"
  severity     = "CRITICAL"
  conditions {
    display_name = "${each.value.url} fails from several locations"
    condition_threshold {
      filter          = "metric.type=\"monitoring.googleapis.com/uptime_check/check_passed\" AND resource.type=\"uptime_url\" AND metric.label.check_id=\"${google_monitoring_uptime_check_config.region[each.key].uptime_check_id}\""
      comparison      = "COMPARISON_GT"
      threshold_value = 1
      duration        = "60s"
      aggregations {
        alignment_period     = "120s"
        per_series_aligner   = "ALIGN_NEXT_OLDER"
        cross_series_reducer = "REDUCE_COUNT_FALSE"
        group_by_fields      = ["resource.label.*"]
      }
    }
  }
  alert_strategy {
    auto_close = "1800s"
  }
  documentation {
    content   = "Lifeboat: the ${each.value.region} front door of workload ${each.value.workload} fails its uptime check. The failover service verifies with its own probes and moves traffic if confirmed; see the failover-incidents records."
    mime_type = "text/markdown"
  }
  notification_channels = [google_monitoring_notification_channel.incidents.name]
  user_labels = {
    lifeboat-workload = each.value.workload
    lifeboat-region   = each.value.region
  }
  # An incident published before the grant would be lost.
  depends_on = [google_pubsub_topic_iam_member.incidents_publisher]
}

# Opens an incident when too many of the region's predictions fail. A
# ratio, not a count, so a busy region is not judged more harshly than a
# quiet one; a region with no traffic (a pilot light) gives no ratio and
# never fires.
resource "google_monitoring_alert_policy" "region_errors" {
  for_each     = { for key, target in local.failover_targets : key => target if length(target.endpoints) > 0 }
  display_name = "lifeboat ${each.value.workload}: ${each.value.region} prediction errors"
  combiner     = "OR"
  severity     = "CRITICAL"
  conditions {
    display_name = "Prediction error ratio above ${var.failover_error_ratio}"
    condition_threshold {
      filter             = "metric.type=\"aiplatform.googleapis.com/prediction/online/error_count\" AND resource.type=\"aiplatform.googleapis.com/Endpoint\" AND resource.label.location=\"${each.value.region}\" AND resource.label.endpoint_id=one_of(${join(",", [for id in each.value.endpoints : "\"${id}\""])})"
      denominator_filter = "metric.type=\"aiplatform.googleapis.com/prediction/online/prediction_count\" AND resource.type=\"aiplatform.googleapis.com/Endpoint\" AND resource.label.location=\"${each.value.region}\" AND resource.label.endpoint_id=one_of(${join(",", [for id in each.value.endpoints : "\"${id}\""])})"
      comparison         = "COMPARISON_GT"
      threshold_value    = var.failover_error_ratio
      duration           = "120s"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["resource.label.location"]
      }
      denominator_aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["resource.label.location"]
      }
    }
  }
  alert_strategy {
    auto_close = "1800s"
  }
  documentation {
    content   = "Lifeboat: more than ${var.failover_error_ratio * 100}% of workload ${each.value.workload}'s predictions in ${each.value.region} fail. The failover service verifies with its own probes and moves traffic if confirmed."
    mime_type = "text/markdown"
  }
  notification_channels = [google_monitoring_notification_channel.incidents.name]
  user_labels = {
    lifeboat-workload = each.value.workload
    lifeboat-region   = each.value.region
  }
  # An incident published before the grant would be lost.
  depends_on = [google_pubsub_topic_iam_member.incidents_publisher]
}
