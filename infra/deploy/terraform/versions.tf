terraform {
  required_version = ">= 1.5"
  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 6.20, < 7.0" # google_cloud_run_v2_service.invoker_iam_disabled needs 6.x
    }
  }
}

provider "google" {
  project = var.project
  region  = var.region
}
