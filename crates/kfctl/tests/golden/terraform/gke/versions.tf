# Terraform and provider versions, pinned so that a plan made today is the plan made tomorrow.
terraform {
  required_version = ">= 1.3"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 5.44"
    }
  }
}

provider "google" {
  project = var.project
  region  = var.region
}
