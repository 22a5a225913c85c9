# Kubeflow on Google Kubernetes Engine, written by kfctl.
#
# What this creates, in order:
#   1. a zonal GKE cluster with its default node pool removed (pools are managed below),
#   2. a CPU node pool sized for Kubeflow,
#   3. optionally a GPU node pool (var.gpu_node_count > 0),
#   4. a Cloud Storage bucket for Kubeflow Pipelines artifacts.
# `kfctl delete --platform` runs `terraform destroy` here to remove all of it.

resource "google_container_cluster" "kubeflow" {
  name               = var.cluster_name
  location           = var.zone
  min_master_version = var.kubernetes_version

  # Node pools are separate resources so they can change without replacing the cluster.
  remove_default_node_pool = true
  initial_node_count       = 1

  # Pods reach Google APIs (for example the pipelines bucket) as Google service accounts.
  workload_identity_config {
    workload_pool = "${var.project}.svc.id.goog"
  }

  # Stay on the version written above instead of following a release channel.
  release_channel {
    channel = "UNSPECIFIED"
  }
}

resource "google_container_node_pool" "cpu" {
  name       = "cpu"
  cluster    = google_container_cluster.kubeflow.id
  location   = var.zone
  node_count = var.node_count
  version    = var.kubernetes_version

  node_config {
    machine_type = var.machine_type
    disk_size_gb = 100
    oauth_scopes = ["https://www.googleapis.com/auth/cloud-platform"]

    workload_metadata_config {
      mode = "GKE_METADATA"
    }
  }
}

resource "google_container_node_pool" "gpu" {
  # No GPU pool unless asked for: GPUs are expensive and need quota.
  count = var.gpu_node_count > 0 ? 1 : 0

  name       = "gpu"
  cluster    = google_container_cluster.kubeflow.id
  location   = var.zone
  node_count = var.gpu_node_count
  version    = var.kubernetes_version

  node_config {
    machine_type = var.gpu_machine_type
    disk_size_gb = 100
    oauth_scopes = ["https://www.googleapis.com/auth/cloud-platform"]

    guest_accelerator {
      type  = var.gpu_type
      count = var.gpus_per_node
    }

    # Only Pods that ask for a GPU land here; GKE installs the NVIDIA driver daemonset.
    taint {
      key    = "nvidia.com/gpu"
      value  = "present"
      effect = "NO_SCHEDULE"
    }

    workload_metadata_config {
      mode = "GKE_METADATA"
    }
  }
}

resource "google_storage_bucket" "pipelines" {
  # Bucket names are global: the project ID keeps this one unique.
  name     = "${var.project}-${var.cluster_name}-pipelines"
  location = var.region

  uniform_bucket_level_access = true
  # Keep pipeline artifacts if the bucket still holds any when the cluster is destroyed.
  force_destroy = false
}
