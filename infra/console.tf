# console: the read-only page that shows whether each workload could
# survive losing a region right now (docs/console.md). One Cloud Run
# service in the primary region that reads the records in Firestore and
# nothing else, with IAP turned on on the service itself: every request,
# on its run.app URL or any load balancer in front of it, passes IAP, which
# lets in only the operators (var.operators). Firestore is multi-region, so
# the page keeps answering from the primary region's service while any
# other region is down; deploy a second one with console_regions.

variable "console_image" {
  description = "The console image (cloudbuild.yaml pushes it to the image_repository output, as console; later deploys only change the revisions' image)."
  type        = string
}

variable "console_regions" {
  description = "Regions to run the console in: the primary by default. Add a standby so the page stays up when the primary's Cloud Run is down (the records are in multi-region Firestore)."
  type        = list(string)
  default     = []
}

locals {
  console_regions = length(var.console_regions) > 0 ? var.console_regions : [var.primary_region]
  # The IAP service agent: IAP calls the service as it, after letting an
  # operator through.
  iap_service_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-iap.iam.gserviceaccount.com"
}

resource "google_service_account" "console" {
  account_id   = "lifeboat-console"
  display_name = "Lifeboat console: reads the records, changes nothing"
}

# Every record it shows (parity, RPO, routing, incidents, drill runs), read
# only: viewer, never user.
resource "google_project_iam_member" "console_reads_state" {
  project = var.project
  role    = "roles/datastore.viewer"
  member  = "serviceAccount:${google_service_account.console.email}"
}

resource "google_secret_manager_secret_iam_member" "console_topology" {
  secret_id = google_secret_manager_secret.topology.id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.console.email}"
}

resource "google_service_account_iam_member" "deployer_acts_as_console" {
  service_account_id = google_service_account.console.name
  role               = "roles/iam.serviceAccountUser"
  member             = "serviceAccount:${google_service_account.deployer.email}"
}

resource "google_cloud_run_v2_service" "console" {
  for_each = toset(local.console_regions)
  name     = "console"
  location = each.key
  # IAP on the service itself (not on a load balancer): it covers the
  # run.app URL too, so no path reaches the page without an operator's
  # identity.
  launch_stage = "BETA"
  iap_enabled  = true
  ingress      = "INGRESS_TRAFFIC_ALL"

  template {
    service_account                  = google_service_account.console.email
    timeout                          = "30s"
    max_instance_request_concurrency = 40
    scaling {
      min_instance_count = 0
      max_instance_count = 2
    }
    containers {
      image = var.console_image
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
    google_project_service.api["iap.googleapis.com"],
    google_secret_manager_secret_iam_member.console_topology,
  ]
}

# IAP forwards the requests it lets through as its service agent.
resource "google_cloud_run_v2_service_iam_member" "console_iap" {
  for_each = google_cloud_run_v2_service.console
  name     = each.value.name
  location = each.value.location
  role     = "roles/run.invoker"
  member   = local.iap_service_agent
}

# Who IAP lets through: the operators, and no one else.
resource "google_iap_web_cloud_run_service_iam_member" "console_operator" {
  for_each = {
    for pair in setproduct(local.console_regions, var.operators) : "${pair[0]}/${pair[1]}" => pair
  }
  project                = var.project
  location               = each.value[0]
  cloud_run_service_name = google_cloud_run_v2_service.console[each.value[0]].name
  role                   = "roles/iap.httpsResourceAccessor"
  member                 = each.value[1]
}
