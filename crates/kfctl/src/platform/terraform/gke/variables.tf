# Inputs of the Kubeflow cluster on GKE. kfctl writes the values it chose into terraform.tfvars;
# change them there (or with -var) and run `kfctl deploy` again.

variable "project" {
  description = "GCP project ID that owns the cluster and the pipelines bucket."
  type        = string
}

variable "region" {
  description = "GCP region for the bucket and the cluster's network."
  type        = string
  default     = "us-central1"
}

variable "zone" {
  description = "Zone of the (zonal) cluster; a zonal cluster keeps the node count as written."
  type        = string
  default     = "us-central1-a"
}

variable "cluster_name" {
  description = "Name of the GKE cluster."
  type        = string
  default     = "kubeflow"
}

variable "kubernetes_version" {
  description = "Kubernetes version, from the Kubeflow release's catalog (kfctl writes it in terraform.tfvars and checks it suits the release)."
  type        = string
}

variable "node_count" {
  description = "Number of nodes in the CPU pool."
  type        = number
  default     = 2
}

variable "machine_type" {
  description = "Machine type of the CPU pool; Kubeflow needs about 8 vCPUs and 16 GiB in total."
  type        = string
  default     = "e2-standard-8"
}

variable "gpu_node_count" {
  description = "Number of nodes in the GPU pool; 0 creates no GPU pool."
  type        = number
  default     = 0
}

variable "gpu_machine_type" {
  description = "Machine type of the GPU pool."
  type        = string
  default     = "n1-standard-8"
}

variable "gpu_type" {
  description = "Accelerator attached to each GPU node."
  type        = string
  default     = "nvidia-tesla-t4"
}

variable "gpus_per_node" {
  description = "Accelerators per GPU node."
  type        = number
  default     = 1
}
