# What kfctl reads after `terraform apply` to fetch credentials and configure Kubeflow.

output "cluster_name" {
  description = "Name of the EKS cluster (for aws eks update-kubeconfig)."
  value       = aws_eks_cluster.kubeflow.name
}

output "region" {
  description = "Region of the cluster."
  value       = var.region
}

output "pipelines_bucket" {
  description = "Bucket for Kubeflow Pipelines artifacts."
  value       = aws_s3_bucket.pipelines.bucket
}
