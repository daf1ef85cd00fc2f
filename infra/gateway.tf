# gateway: the inference front door. One Cloud Run service per region, all
# behind one global external Application Load Balancer, so clients keep one
# address whichever region is down: the load balancer sends each request to
# the nearest healthy gateway, and the gateway forwards it to the Vertex AI
# region the workload's routing table (Firestore, rewritten by failover)
# chooses. Each gateway also has its own path on the load balancer
# (/regions/REGION/healthz?workload=W, answered by that region's gateway as
# /region/healthz) so uptime checks and failover's probes can look at one
# region's front door for one workload, the one a drill's fault fails.

variable "gateway_image" {
  description = "The gateway image (cloudbuild.yaml pushes it to the image_repository output, as gateway; later deploys only change the revisions' image)."
  type        = string
}

variable "gateway_regions" {
  description = "Regions a gateway runs in: every region of the topology that serves or may serve inference (the primary and the standbys), so losing one region never loses the front door."
  type        = list(string)
  validation {
    condition     = length(var.gateway_regions) >= 2
    error_message = "A front door in one region does not survive that region's outage: give at least two regions."
  }
}

variable "gateway_domain" {
  description = "DNS name clients call the gateway by (e.g. predict.example.com). The Google-managed certificate is issued for it once its A record points at the gateway_address output."
  type        = string
}

variable "gateway_min_instances" {
  description = "Gateway instances kept warm per region. The load balancer sends traffic to the nearest region at once after an outage, so a cold region adds start-up time to the RTO."
  type        = number
  default     = 1
}

resource "google_service_account" "gateway" {
  account_id   = "lifeboat-gateway"
  display_name = "Lifeboat gateway: reads the routing tables and drill faults, writes its traffic counts, calls predict on the workload endpoints"
}

# Read the routing tables and drill faults; write (and sweep) the gateway's
# own traffic counts (gateway-traffic).
resource "google_project_iam_member" "gateway_state" {
  project = var.project
  role    = "roles/datastore.user"
  member  = "serviceAccount:${google_service_account.gateway.email}"
}

# Predict and nothing else: roles/aiplatform.user would also let a
# compromised front door deploy, delete or train.
resource "google_project_iam_custom_role" "gateway" {
  role_id     = "lifeboatGateway"
  title       = "Lifeboat gateway"
  description = "Send online predictions to Vertex AI endpoints."
  permissions = ["aiplatform.endpoints.predict"]
}

resource "google_project_iam_member" "gateway_predict" {
  project = var.project
  role    = google_project_iam_custom_role.gateway.id
  member  = "serviceAccount:${google_service_account.gateway.email}"
}

resource "google_secret_manager_secret_iam_member" "gateway_topology" {
  secret_id = google_secret_manager_secret.topology.id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.gateway.email}"
}

# cloudbuild.yaml rolls out new images as the deployer.
resource "google_service_account_iam_member" "deployer_acts_as_gateway" {
  service_account_id = google_service_account.gateway.name
  role               = "roles/iam.serviceAccountUser"
  member             = "serviceAccount:${google_service_account.deployer.email}"
}

resource "google_cloud_run_v2_service" "gateway" {
  for_each = toset(var.gateway_regions)
  name     = "gateway"
  location = each.key
  # Only the load balancer reaches it: the run.app URL answers nothing from
  # the internet, so every request passes the load balancer's TLS and routing.
  ingress = "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"

  template {
    service_account = google_service_account.gateway.email
    # Two attempts of at most 10 s each (the gateway's attempt timeout),
    # with room to spare.
    timeout = "60s"
    # A proxy waiting on Vertex AI: many requests per instance.
    max_instance_request_concurrency = 200
    scaling {
      min_instance_count = var.gateway_min_instances
      max_instance_count = 50
    }
    containers {
      image = var.gateway_image
      resources {
        limits = {
          cpu    = "1"
          memory = "512Mi"
        }
        # The routing tables are re-read every 500 ms in the background; with
        # CPU only during requests that loop would stall between requests and
        # an idle region would route on a stale table after a failover.
        cpu_idle          = false
        startup_cpu_boost = true
      }
      env {
        name  = "LIFEBOAT_TOPOLOGY"
        value = "/etc/lifeboat/topology.yaml"
      }
      # Whose front door /region/healthz reports on (drill faults).
      env {
        name  = "LIFEBOAT_REGION"
        value = each.key
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
      # The gateway reads the routing tables before it serves; a revision
      # that cannot never takes traffic.
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
    # cloudbuild.yaml deploys new images (and marks the service as deployed
    # by gcloud).
    ignore_changes = [template[0].containers[0].image, client, client_version]
  }
  depends_on = [
    google_project_service.api["run.googleapis.com"],
    google_secret_manager_secret_iam_member.gateway_topology,
  ]
}

# Requests arriving through an external load balancer carry no Google
# identity, so Cloud Run's IAM check would refuse them all unless allUsers
# may invoke. That is safe here because the ingress setting above already
# refuses everything that does not come through the load balancer: allUsers
# means "anyone the load balancer lets through", not "anyone on the
# internet who finds the run.app URL". Authenticating callers, if the
# workloads need it, belongs on the load balancer (Cloud Armor, IAP) or in
# the gateway, not in Cloud Run IAM.
resource "google_cloud_run_v2_service_iam_member" "gateway_public" {
  for_each = google_cloud_run_v2_service.gateway
  name     = each.value.name
  location = each.value.location
  role     = "roles/run.invoker"
  member   = "allUsers"
}

# One serverless NEG per region: how the load balancer reaches that region's
# Cloud Run service.
resource "google_compute_region_network_endpoint_group" "gateway" {
  for_each              = google_cloud_run_v2_service.gateway
  name                  = "lifeboat-gateway-${each.key}"
  region                = each.key
  network_endpoint_type = "SERVERLESS"
  cloud_run {
    service = each.value.name
  }
  depends_on = [google_project_service.api["compute.googleapis.com"]]
}

# Client traffic: every region's gateway, the nearest one first. Serverless
# NEGs have no health checks; outlier detection is what takes a region whose
# gateway answers 5xx out of rotation for a while.
resource "google_compute_backend_service" "gateway" {
  name                  = "lifeboat-gateway"
  load_balancing_scheme = "EXTERNAL_MANAGED"
  protocol              = "HTTPS"
  dynamic "backend" {
    for_each = google_compute_region_network_endpoint_group.gateway
    content {
      group = backend.value.id
    }
  }
  outlier_detection {
    consecutive_errors = 5
    interval {
      seconds = 10
    }
    base_ejection_time {
      seconds = 30
    }
    max_ejection_percent = 50
  }
  log_config {
    enable      = true
    sample_rate = 0.1
  }
}

# Probe traffic: one backend service per region holding only that region's
# NEG, so /regions/REGION/healthz always answers from REGION (or fails with
# it) instead of from the nearest healthy region.
resource "google_compute_backend_service" "gateway_region" {
  for_each              = google_compute_region_network_endpoint_group.gateway
  name                  = "lifeboat-gateway-${each.key}"
  load_balancing_scheme = "EXTERNAL_MANAGED"
  protocol              = "HTTPS"
  backend {
    group = each.value.id
  }
}

resource "google_compute_url_map" "gateway" {
  name            = "lifeboat-gateway"
  default_service = google_compute_backend_service.gateway.id

  host_rule {
    hosts        = ["*"]
    path_matcher = "gateway"
  }

  path_matcher {
    name            = "gateway"
    default_service = google_compute_backend_service.gateway.id
    dynamic "path_rule" {
      for_each = google_compute_backend_service.gateway_region
      content {
        paths   = ["/regions/${path_rule.key}/healthz"]
        service = path_rule.value.id
        route_action {
          # The query string (?workload=W) is kept by the rewrite.
          url_rewrite {
            path_prefix_rewrite = "/region/healthz"
          }
        }
      }
    }
    # Golden requests (failover's verification, failback steps, drills):
    # /regions/REGION/predict/... is answered by REGION's own gateway, which
    # pins it to REGION's endpoint, so a right answer proves that region's
    # whole front door, not the nearest one.
    dynamic "path_rule" {
      for_each = google_compute_backend_service.gateway_region
      content {
        paths   = ["/regions/${path_rule.key}/predict/*"]
        service = path_rule.value.id
      }
    }
  }
}

resource "google_compute_managed_ssl_certificate" "gateway" {
  name = "lifeboat-gateway"
  managed {
    domains = [var.gateway_domain]
  }
  depends_on = [google_project_service.api["compute.googleapis.com"]]
}

resource "google_compute_target_https_proxy" "gateway" {
  name             = "lifeboat-gateway"
  url_map          = google_compute_url_map.gateway.id
  ssl_certificates = [google_compute_managed_ssl_certificate.gateway.id]
}

# A reserved address, so a rebuilt load balancer keeps the DNS record valid.
resource "google_compute_global_address" "gateway" {
  name       = "lifeboat-gateway"
  depends_on = [google_project_service.api["compute.googleapis.com"]]
}

resource "google_compute_global_forwarding_rule" "gateway" {
  name                  = "lifeboat-gateway"
  load_balancing_scheme = "EXTERNAL_MANAGED"
  ip_protocol           = "TCP"
  port_range            = "443"
  ip_address            = google_compute_global_address.gateway.id
  target                = google_compute_target_https_proxy.gateway.id
}
