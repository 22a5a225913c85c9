# Kubeflow on Azure Kubernetes Service, written by kfctl.
#
# What this creates, in order:
#   1. a resource group holding everything below,
#   2. an AKS cluster whose default pool is the CPU pool sized for Kubeflow,
#   3. optionally a GPU node pool (var.gpu_node_count > 0),
#   4. a storage account with a blob container for Kubeflow Pipelines artifacts.
# `kfctl delete --platform` runs `terraform destroy` here to remove all of it.

resource "azurerm_resource_group" "kubeflow" {
  name     = var.resource_group
  location = var.region
}

resource "azurerm_kubernetes_cluster" "kubeflow" {
  name                = var.cluster_name
  location            = azurerm_resource_group.kubeflow.location
  resource_group_name = azurerm_resource_group.kubeflow.name
  dns_prefix          = var.cluster_name
  kubernetes_version  = var.kubernetes_version

  default_node_pool {
    name            = "cpu"
    node_count      = var.node_count
    vm_size         = var.vm_size
    os_disk_size_gb = 100
  }

  # The cluster manages its own identity (for load balancers and disks); no secret to rotate.
  identity {
    type = "SystemAssigned"
  }
}

resource "azurerm_kubernetes_cluster_node_pool" "gpu" {
  # No GPU pool unless asked for: GPUs are expensive and need quota.
  count = var.gpu_node_count > 0 ? 1 : 0

  name                  = "gpu"
  kubernetes_cluster_id = azurerm_kubernetes_cluster.kubeflow.id
  vm_size               = var.gpu_vm_size
  node_count            = var.gpu_node_count
  os_disk_size_gb       = 100

  # Only Pods that ask for a GPU land here.
  node_taints = ["nvidia.com/gpu=present:NoSchedule"]
}

resource "azurerm_storage_account" "pipelines" {
  # Storage account names are global, 3-24 lowercase letters and digits: derive one from the
  # resource group's ID so it is unique and stable.
  name                     = "kfp${substr(sha1(azurerm_resource_group.kubeflow.id), 0, 16)}"
  resource_group_name      = azurerm_resource_group.kubeflow.name
  location                 = azurerm_resource_group.kubeflow.location
  account_tier             = "Standard"
  account_replication_type = "LRS"
  min_tls_version          = "TLS1_2"
}

resource "azurerm_storage_container" "pipelines" {
  name                  = "pipelines"
  storage_account_name  = azurerm_storage_account.pipelines.name
  container_access_type = "private"
}
