# The ground every Lifeboat service stands on: the APIs it calls, the state
# database, the event topics with their dead-letter topic, the image
# repository, and the identity Cloud Build deploys with. Each function adds its
# own Cloud Run service, trigger and service account in its own file.

locals {
  apis = [
    "aiplatform.googleapis.com",
    "artifactregistry.googleapis.com",
    "bigquery.googleapis.com",
    "cloudbuild.googleapis.com",
    "cloudscheduler.googleapis.com",
    "compute.googleapis.com",
    "eventarc.googleapis.com",
    "firestore.googleapis.com",
    "iap.googleapis.com",
    "logging.googleapis.com",
    "monitoring.googleapis.com",
    "pubsub.googleapis.com",
    "run.googleapis.com",
    "secretmanager.googleapis.com",
    "storage.googleapis.com",
    "storagetransfer.googleapis.com",
  ]
}

resource "google_project_service" "api" {
  for_each           = toset(local.apis)
  service            = each.value
  disable_on_destroy = false
}

# Leases, idempotency records, RPO bookkeeping, routing tables and incident
# records. Multi-region (var.firestore_location refuses anything else), so a
# regional outage does not take the state, or the ability to write it, with
# it: see docs/infra.md.
resource "google_firestore_database" "lifeboat" {
  name                    = "(default)"
  location_id             = var.firestore_location
  type                    = "FIRESTORE_NATIVE"
  concurrency_mode        = "OPTIMISTIC"
  delete_protection_state = "DELETE_PROTECTION_ENABLED"
  depends_on              = [google_project_service.api["firestore.googleapis.com"]]
}

# Events Lifeboat publishes (replica verified, checkpoint committed, failover
# decided...), and where undeliverable pushes end up.
resource "google_pubsub_topic" "events" {
  #checkov:skip=CKV_GCP_83:Messages carry event metadata (object names, ids, incident labels), no model or customer data, encrypted at rest with Google-managed keys; a customer-managed key would put Cloud KMS in its key's location on every publish of the recovery path.
  name       = "lifeboat-events"
  depends_on = [google_project_service.api["pubsub.googleapis.com"]]
}

resource "google_pubsub_topic" "dead_letter" {
  #checkov:skip=CKV_GCP_83:Messages carry event metadata (object names, ids, incident labels), no model or customer data, encrypted at rest with Google-managed keys; a customer-managed key would put Cloud KMS in its key's location on every publish of the recovery path.
  name                       = "lifeboat-dead-letter"
  message_retention_duration = "604800s"
  depends_on                 = [google_project_service.api["pubsub.googleapis.com"]]
}

# Keeps dead letters until someone looks at them or redrives them.
resource "google_pubsub_subscription" "dead_letter" {
  name                       = "lifeboat-dead-letter"
  topic                      = google_pubsub_topic.dead_letter.id
  message_retention_duration = "604800s"
  expiration_policy {
    ttl = ""
  }
}

resource "google_artifact_registry_repository" "images" {
  #checkov:skip=CKV_GCP_84:Holds container images built from this repository (no customer data), encrypted at rest with Google-managed keys; a customer-managed key would make every pull during a failover depend on Cloud KMS in the key's location.
  repository_id = "lifeboat"
  location      = var.artifact_location
  format        = "DOCKER"
  description   = "Lifeboat service images, built by cloudbuild.yaml."
  depends_on    = [google_project_service.api["artifactregistry.googleapis.com"]]
}

# The identity Cloud Build runs cloudbuild.yaml with: push images, deploy
# Cloud Run services, act as the services' own accounts. Nothing else.
resource "google_service_account" "deployer" {
  account_id   = "lifeboat-deployer"
  display_name = "Lifeboat: builds and deploys the services"
}

resource "google_artifact_registry_repository_iam_member" "deployer_push" {
  location   = google_artifact_registry_repository.images.location
  repository = google_artifact_registry_repository.images.name
  role       = "roles/artifactregistry.writer"
  member     = "serviceAccount:${google_service_account.deployer.email}"
}

resource "google_project_iam_member" "deployer_run" {
  project = var.project
  role    = "roles/run.developer"
  member  = "serviceAccount:${google_service_account.deployer.email}"
}

resource "google_project_iam_member" "deployer_logs" {
  project = var.project
  role    = "roles/logging.logWriter"
  member  = "serviceAccount:${google_service_account.deployer.email}"
}

data "google_project" "this" {}

locals {
  # The Pub/Sub service agent: it forwards an undeliverable message to a
  # subscription's dead-letter topic, so it needs the publisher role on that
  # topic and the subscriber role on the subscription (to acknowledge the
  # message there). Every subscription with a dead-letter policy grants both;
  # tests/tests/permissions.rs checks that none is missing.
  pubsub_service_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
}

resource "google_pubsub_topic_iam_member" "dead_letter_publisher" {
  topic  = google_pubsub_topic.dead_letter.id
  role   = "roles/pubsub.publisher"
  member = local.pubsub_service_agent
}

# The topology file, mounted into every service at /etc/lifeboat/topology.yaml.
resource "google_secret_manager_secret" "topology" {
  secret_id = "lifeboat-topology"
  replication {
    auto {}
  }
  depends_on = [google_project_service.api["secretmanager.googleapis.com"]]
}

resource "google_secret_manager_secret_version" "topology" {
  secret      = google_secret_manager_secret.topology.id
  secret_data = var.topology_yaml
}

# Cloud Storage publishes object events through Pub/Sub on Eventarc's behalf,
# for every function triggered by a bucket.
data "google_storage_project_service_account" "gcs" {}

resource "google_project_iam_member" "gcs_publishes_events" {
  project = var.project
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${data.google_storage_project_service_account.gcs.email_address}"
}
