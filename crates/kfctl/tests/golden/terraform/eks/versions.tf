# Terraform and provider versions, pinned so that a plan made today is the plan made tomorrow.
terraform {
  required_version = ">= 1.3"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.70"
    }
  }
}

provider "aws" {
  region  = var.region
  profile = var.aws_profile
}
