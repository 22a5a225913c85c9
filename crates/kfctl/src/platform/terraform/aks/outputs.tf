# What kfctl reads after `terraform apply` to fetch credentials and configure Kubeflow.

output "cluster_name" {
  description = "Name of the AKS cluster (for az aks get-credentials)."
  value       = azurerm_kubernetes_cluster.kubeflow.name
}

output "resource_group" {
  description = "Resource group of the cluster."
  value       = azurerm_resource_group.kubeflow.name
}

output "pipelines_storage_account" {
  description = "Storage account holding the Kubeflow Pipelines container."
  value       = azurerm_storage_account.pipelines.name
}
