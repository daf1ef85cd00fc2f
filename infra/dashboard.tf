# One Cloud Monitoring dashboard of the signals that say whether each
# workload could survive losing a region, as far as they are metrics today
# (infra/dashboard.json): checkpoint replication lag per location and region
# against the RPO, each front door's uptime check, the gateway's traffic by
# response class and its latency per region, Vertex AI's prediction errors
# and latency per region, and the incidents of failover's alert policies.
# Lifeboat's other records (data exposure, model parity, routing weights,
# failover and drill RTO) are read with `lifeboat status` and the drill
# reports; they are not written as metrics yet.

variable "dashboard_rpo_seconds" {
  description = "The line drawn on the checkpoint replication lag chart: the tightest RPO of the topology's checkpointing workloads, in seconds."
  type        = number
  default     = 300
}

resource "google_monitoring_dashboard" "lifeboat" {
  dashboard_json = templatefile("${path.module}/dashboard.json", {
    checkpoint_rpo_seconds = var.dashboard_rpo_seconds
    gateway_service        = one(distinct([for service in google_cloud_run_v2_service.gateway : service.name]))
    alert_policies = jsonencode(concat(
      [for policy in google_monitoring_alert_policy.region_unreachable : policy.name],
      [for policy in google_monitoring_alert_policy.region_errors : policy.name],
    ))
  })
}
