output "events_topic" {
  description = "Topic Lifeboat publishes its own events to."
  value       = google_pubsub_topic.events.id
}

output "dead_letter_topic" {
  description = "Topic every push subscription dead-letters to."
  value       = google_pubsub_topic.dead_letter.id
}

output "image_repository" {
  description = "Docker repository cloudbuild.yaml pushes to."
  value       = "${google_artifact_registry_repository.images.location}-docker.pkg.dev/${var.project}/${google_artifact_registry_repository.images.repository_id}"
}

output "deployer_service_account" {
  description = "Service account to run cloudbuild.yaml with."
  value       = google_service_account.deployer.email
}

output "checkpoint_fanout_url" {
  description = "The checkpoint-fanout service (internal ingress)."
  value       = google_cloud_run_v2_service.checkpoint_fanout.uri
}

output "gateway_address" {
  description = "The gateway's global address: point gateway_domain's A record here; the managed certificate is issued once it resolves."
  value       = google_compute_global_address.gateway.address
}

output "gateway_url" {
  description = "Where clients send predictions (POST /predict/WORKLOAD/MODEL)."
  value       = "https://${var.gateway_domain}"
}

output "gateway_region_health_urls" {
  description = "Per region, the gateway's health through the load balancer (what uptime checks and failover's probes GET by default)."
  value       = { for region in var.gateway_regions : region => "https://${var.gateway_domain}/regions/${region}/healthz" }
}

output "failover_urls" {
  description = "Per region, the failover service (Pub/Sub pushes every incident to each; operators POST /move/WORKLOAD or /failback/WORKLOAD to any one that is up, with an identity token)."
  value       = { for region, service in google_cloud_run_v2_service.failover : region => service.uri }
}

output "incidents_topic" {
  description = "Topic of the Monitoring notification channel that feeds failover; add the channel to any other policy whose incidents should move traffic (with the lifeboat-workload and lifeboat-region user labels)."
  value       = google_pubsub_topic.incidents.id
}

output "incidents_notification_channel" {
  description = "The Monitoring notification channel publishing to incidents_topic."
  value       = google_monitoring_notification_channel.incidents.name
}

output "drill_url" {
  description = "The drill service (operators POST /drills/DRILL/run, /runs/RUN/abort and GET /runs, /runs/RUN, /runs/RUN/report with an identity token)."
  value       = google_cloud_run_v2_service.drill.uri
}

output "drill_reports_bucket" {
  description = "Where every drill run's HTML report is written."
  value       = google_storage_bucket.drill_reports.name
}

output "drill_events_topic" {
  description = "Topic of the drills' start, finish and abort CloudEvents (dev.lifeboat.drill.*): subscribe paging and audit to it."
  value       = google_pubsub_topic.drill_events.id
}
