# What kfctl reads after `terraform apply` to fetch credentials and configure Kubeflow.

output "cluster_name" {
  description = "Name of the GKE cluster (for gcloud container clusters get-credentials)."
  value       = google_container_cluster.kubeflow.name
}

output "location" {
  description = "Zone of the cluster."
  value       = google_container_cluster.kubeflow.location
}

output "project" {
  description = "GCP project of the cluster."
  value       = var.project
}

output "pipelines_bucket" {
  description = "Bucket for Kubeflow Pipelines artifacts."
  value       = google_storage_bucket.pipelines.name
}
