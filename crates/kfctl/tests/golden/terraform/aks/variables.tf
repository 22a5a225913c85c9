# Inputs of the Kubeflow cluster on AKS. kfctl writes the values it chose into terraform.tfvars;
# change them there (or with -var) and run `kfctl deploy` again.

variable "subscription_id" {
  description = "Azure subscription that pays for the cluster (null = the az CLI's current one)."
  type        = string
  default     = null
}

variable "resource_group" {
  description = "Resource group kfctl creates for the cluster and its storage account."
  type        = string
  default     = "kubeflow"
}

variable "region" {
  description = "Azure region (location) of everything created here."
  type        = string
  default     = "eastus"
}

variable "cluster_name" {
  description = "Name of the AKS cluster."
  type        = string
  default     = "kubeflow"
}

variable "kubernetes_version" {
  description = "Kubernetes version, from the Kubeflow release's catalog (kfctl writes it in terraform.tfvars and checks it suits the release)."
  type        = string
}

variable "node_count" {
  description = "Number of nodes in the system (CPU) pool."
  type        = number
  default     = 2
}

variable "vm_size" {
  description = "VM size of the CPU pool; Kubeflow needs about 8 vCPUs and 16 GiB in total."
  type        = string
  default     = "Standard_D8s_v3"
}

variable "gpu_node_count" {
  description = "Number of nodes in the GPU pool; 0 creates no GPU pool."
  type        = number
  default     = 0
}

variable "gpu_vm_size" {
  description = "VM size of the GPU pool (the size decides the GPUs per node)."
  type        = string
  default     = "Standard_NC6s_v3"
}
