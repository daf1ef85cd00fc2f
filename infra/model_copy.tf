# model-copy: every new model version copied to every standby region,
# verified, and served by warm standbys. A Cloud Run service fed by an
# Eventarc trigger on the Vertex AI audit log of UploadModel (an Admin
# Activity log, always on), a dead-letter topic for events it could never
# handle, and a service account that can read, copy and deploy models and
# write its state, and nothing else.

variable "model_copy_image" {
  description = "The model-copy image (cloudbuild.yaml pushes it to the image_repository output, as model-copy)."
  type        = string
}

resource "google_service_account" "model_copy" {
  account_id   = "lifeboat-model-copy"
  display_name = "Lifeboat model-copy: copies model versions, keeps warm standbys serving them"
}

# Only what the calls need: read and copy models (a copy is an upload into
# the target region), follow their operations, and deploy, undeploy, scale
# and shift traffic on endpoints. roles/aiplatform.user would also allow
# training, pipelines and predictions. And the two Cloud Storage reads of
# the parity check (artifacts.rs): a copied version's artifact bucket's
# location (buckets.get) and that its files are there (objects.list), in
# whichever bucket of the project a model's artifactUri names; no object
# is read, written or deleted. Without them every standby would be "not in
# parity" on Google Cloud and failover would refuse every move.
resource "google_project_iam_custom_role" "model_copy" {
  role_id     = "lifeboatModelCopy"
  title       = "Lifeboat model-copy"
  description = "Copy model versions between regions and keep standby endpoints serving them."
  permissions = [
    "aiplatform.models.get",
    "aiplatform.models.list",
    "aiplatform.models.upload",
    "aiplatform.operations.get",
    "aiplatform.operations.list",
    "aiplatform.endpoints.get",
    "aiplatform.endpoints.deploy",
    "aiplatform.endpoints.undeploy",
    "aiplatform.endpoints.update",
    "storage.buckets.get",
    "storage.objects.list",
  ]
}

resource "google_project_iam_member" "model_copy_registry" {
  project = var.project
  role    = google_project_iam_custom_role.model_copy.id
  member  = "serviceAccount:${google_service_account.model_copy.email}"
}

# Idempotency and parity records in Firestore.
resource "google_project_iam_member" "model_copy_state" {
  project = var.project
  role    = "roles/datastore.user"
  member  = "serviceAccount:${google_service_account.model_copy.email}"
}

# Each standby region's parity after every copy
# (custom.googleapis.com/lifeboat/model/parity), for the dashboard.
resource "google_project_iam_member" "model_copy_metrics" {
  project = var.project
  role    = "roles/monitoring.metricWriter"
  member  = "serviceAccount:${google_service_account.model_copy.email}"
}

resource "google_secret_manager_secret_iam_member" "model_copy_topology" {
  secret_id = google_secret_manager_secret.topology.id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.model_copy.email}"
}

# Serving images that live only in the primary's regional Artifact
# Registry are mirrored into a repository per standby region (the
# topology's image-mirrors): model-copy reads the source repositories and
# writes the mirrors, and nothing else in Artifact Registry.
variable "serving_image_sources" {
  description = "The Artifact Registry Docker repositories serving images are mirrored from, as location => repository id (e.g. us-central1 => serving)."
  type        = map(string)
  default     = {}
}

variable "serving_image_mirrors" {
  description = "Per standby region, the Docker repository model-copy mirrors serving images into, as region => repository id; created here. The topology's image-mirrors name them as REGION-docker.pkg.dev/PROJECT/ID."
  type        = map(string)
  default     = {}
}

resource "google_artifact_registry_repository" "serving_mirror" {
  #checkov:skip=CKV_GCP_84:Holds container images built from this repository (no customer data), encrypted at rest with Google-managed keys; a customer-managed key would make every pull during a failover depend on Cloud KMS in the key's location.
  for_each      = var.serving_image_mirrors
  location      = each.key
  repository_id = each.value
  format        = "DOCKER"
  description   = "Lifeboat: serving images mirrored from the primary region"
  depends_on    = [google_project_service.api["artifactregistry.googleapis.com"]]
}

resource "google_artifact_registry_repository_iam_member" "model_copy_mirror_writer" {
  for_each   = google_artifact_registry_repository.serving_mirror
  location   = each.value.location
  repository = each.value.name
  role       = "roles/artifactregistry.writer"
  member     = "serviceAccount:${google_service_account.model_copy.email}"
}

resource "google_artifact_registry_repository_iam_member" "model_copy_source_reader" {
  for_each   = var.serving_image_sources
  location   = each.key
  repository = each.value
  role       = "roles/artifactregistry.reader"
  member     = "serviceAccount:${google_service_account.model_copy.email}"
}

resource "google_cloud_run_v2_service" "model_copy" {
  name     = "model-copy"
  location = var.primary_region
  ingress  = "INGRESS_TRAFFIC_INTERNAL_ONLY"

  template {
    service_account = google_service_account.model_copy.email
    # A copy and a deployment of a large model take minutes each.
    timeout                          = "3600s"
    max_instance_request_concurrency = 8
    scaling {
      max_instance_count = 4
    }
    containers {
      image = var.model_copy_image
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
resource "google_service_account" "model_copy_trigger" {
  account_id   = "lifeboat-model-copy-trigger"
  display_name = "Lifeboat model-copy: Eventarc delivery"
}

resource "google_cloud_run_v2_service_iam_member" "model_copy_invoker" {
  name     = google_cloud_run_v2_service.model_copy.name
  location = google_cloud_run_v2_service.model_copy.location
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.model_copy_trigger.email}"
}

resource "google_project_iam_member" "model_copy_event_receiver" {
  project = var.project
  role    = "roles/eventarc.eventReceiver"
  member  = "serviceAccount:${google_service_account.model_copy_trigger.email}"
}

resource "google_eventarc_trigger" "model_copy" {
  name            = "model-copy"
  location        = var.primary_region
  service_account = google_service_account.model_copy_trigger.email
  matching_criteria {
    attribute = "type"
    value     = "google.cloud.audit.log.v1.written"
  }
  matching_criteria {
    attribute = "serviceName"
    value     = "aiplatform.googleapis.com"
  }
  matching_criteria {
    attribute = "methodName"
    value     = "google.cloud.aiplatform.v1.ModelService.UploadModel"
  }
  destination {
    cloud_run_service {
      service = google_cloud_run_v2_service.model_copy.name
      region  = var.primary_region
    }
  }
  depends_on = [
    google_project_service.api["eventarc.googleapis.com"],
    google_project_service.api["aiplatform.googleapis.com"],
    google_project_iam_member.model_copy_event_receiver,
  ]
}

# Events the service refused or failed on 20 times land here.
resource "google_pubsub_topic" "model_copy_dead_letter" {
  #checkov:skip=CKV_GCP_83:Messages carry event metadata (object names, ids, incident labels), no model or customer data, encrypted at rest with Google-managed keys; a customer-managed key would put Cloud KMS in its key's location on every publish of the recovery path.
  name                       = "model-copy-dead-letter"
  message_retention_duration = "604800s"
  depends_on                 = [google_project_service.api["pubsub.googleapis.com"]]
}

resource "google_pubsub_topic_iam_member" "model_copy_dead_letter_publisher" {
  topic  = google_pubsub_topic.model_copy_dead_letter.id
  role   = "roles/pubsub.publisher"
  member = local.pubsub_service_agent
}

# Dead-lettering acknowledges the message on the trigger's subscription as
# the Pub/Sub service agent.
resource "google_pubsub_subscription_iam_member" "model_copy_dead_letter_subscriber" {
  subscription = google_eventarc_trigger.model_copy.transport[0].pubsub[0].subscription
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_service_agent
}

# Eventarc owns the trigger's subscription; set its dead-letter policy once
# the trigger exists (as for checkpoint-fanout).
resource "terraform_data" "model_copy_dead_letter_policy" {
  triggers_replace = [google_eventarc_trigger.model_copy.transport[0].pubsub[0].subscription]
  depends_on = [
    google_pubsub_topic_iam_member.model_copy_dead_letter_publisher,
    google_pubsub_subscription_iam_member.model_copy_dead_letter_subscriber,
  ]
  provisioner "local-exec" {
    command = "gcloud pubsub subscriptions update ${google_eventarc_trigger.model_copy.transport[0].pubsub[0].subscription} --project ${var.project} --dead-letter-topic ${google_pubsub_topic.model_copy_dead_letter.id} --max-delivery-attempts 20 --min-retry-delay 10s --max-retry-delay 600s --ack-deadline 600"
  }
}

# The reconcile: every hour, the newest version of every protected model to
# every standby region (what a failed copy or a lost event left behind).
resource "google_cloud_scheduler_job" "model_copy_reconcile" {
  name        = "lifeboat-model-copy-reconcile"
  region      = var.primary_region
  schedule    = "17 * * * *"
  description = "model-copy reconcile: copies what failed or was never announced, records parity."
  # Copies and deployments of large models take minutes.
  attempt_deadline = "1800s"
  http_target {
    http_method = "POST"
    uri         = "${google_cloud_run_v2_service.model_copy.uri}/"
    headers     = { "Content-Type" = "application/json" }
    body        = base64encode(jsonencode({ job = "reconcile" }))
    oidc_token {
      service_account_email = google_service_account.model_copy_trigger.email
      audience              = google_cloud_run_v2_service.model_copy.uri
    }
  }
  depends_on = [google_project_service.api["cloudscheduler.googleapis.com"]]
}
