# Terraform and provider versions, pinned so that a plan made today is the plan made tomorrow.
terraform {
  required_version = ">= 1.3"

  required_providers {
    azurerm = {
      source  = "hashicorp/azurerm"
      version = "~> 3.116"
    }
  }
}

provider "azurerm" {
  subscription_id = var.subscription_id
  features {}
}
