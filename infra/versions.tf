terraform {
  required_version = ">= 1.5"
  required_providers {
    google = {
      source  = "hashicorp/google"
      # 6.36: IAP on a Cloud Run service (iap_enabled) and its IAM.
      version = ">= 6.36"
    }
  }
}

provider "google" {
  project = var.project
  region  = var.primary_region
}
