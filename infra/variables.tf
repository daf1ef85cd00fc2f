variable "project" {
  description = "The Google Cloud project Lifeboat runs in (the topology file's `project`)."
  type        = string
}

variable "primary_region" {
  description = "The topology's primary region: where the state database and the shared topics live."
  type        = string
}

variable "firestore_location" {
  description = "Location of Lifeboat's Firestore database (leases, routing tables, incident, parity and RPO records): a multi-region location, nam5 or nam7 (United States) or eur3 (Europe). A multi-region database keeps a quorum of replicas in several regions and stays readable and writable when any one of them is lost; a regional database goes dark with its region, and with it every failover. Choose the one whose regions are nearest the topology's regions. It cannot be changed once the database exists."
  type        = string
  default     = "nam5"
  validation {
    condition     = contains(["nam5", "nam7", "eur3"], var.firestore_location)
    error_message = "firestore_location must be a multi-region location (nam5, nam7 or eur3): a regional Firestore database (e.g. us-central1) stops taking writes when its region is down, and failover cannot take a lease or rewrite a routing table without writes."
  }
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
