# Inputs of the Kubeflow cluster on EKS. kfctl writes the values it chose into terraform.tfvars;
# change them there (or with -var) and run `kfctl deploy` again.

variable "aws_profile" {
  description = "AWS CLI profile with the credentials to use (null = the default credential chain)."
  type        = string
  default     = null
}

variable "region" {
  description = "AWS region of the cluster, its network and the pipelines bucket."
  type        = string
  default     = "us-west-2"
}

variable "cluster_name" {
  description = "Name of the EKS cluster."
  type        = string
  default     = "kubeflow"
}

variable "kubernetes_version" {
  description = "Kubernetes version, from the Kubeflow release's catalog (kfctl writes it in terraform.tfvars and checks it suits the release)."
  type        = string
}

variable "node_count" {
  description = "Number of nodes in the CPU node group."
  type        = number
  default     = 2
}

variable "instance_type" {
  description = "Instance type of the CPU node group; Kubeflow needs about 8 vCPUs and 16 GiB in total."
  type        = string
  default     = "m5.2xlarge"
}

variable "gpu_node_count" {
  description = "Number of nodes in the GPU node group; 0 creates no GPU node group."
  type        = number
  default     = 0
}

variable "gpu_instance_type" {
  description = "Instance type of the GPU node group (the instance type decides the GPUs per node)."
  type        = string
  default     = "g4dn.xlarge"
}

variable "vpc_cidr" {
  description = "Address range of the cluster's VPC."
  type        = string
  default     = "10.0.0.0/16"
}
