variable "project" {
  description = "The Google Cloud project Lifeboat runs in (the topology file's `project`)."
  type        = string
}

variable "primary_region" {
  description = "The topology's primary region: where the state database and the shared topics live."
  type        = string
}

variable "firestore_location" {
  description = "Location of Lifeboat's Firestore database. A multi-region location (nam5, eur3) keeps the state readable when the primary region is down, which failover needs."
  type        = string
  default     = "nam5"
}

variable "artifact_location" {
  description = "Location of the Artifact Registry repository holding Lifeboat's service images (multi-region `us` or `europe` so a regional outage does not block a deploy)."
  type        = string
  default     = "us"
}

variable "topology_yaml" {
  description = "The topology file's content, given to every service through Secret Manager."
  type        = string
}
