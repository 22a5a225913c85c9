# Values kfctl chose for app "kubeflow" on gke (from kfctl.yaml, platform:).
# Change them here or in kfctl.yaml; `kfctl deploy` plans again and shows the difference.

project            = "my-project"
region             = "europe-west4"
zone               = "europe-west4-a"
cluster_name       = "kubeflow"
kubernetes_version = "1.34"
node_count         = 2
machine_type       = "e2-standard-8"
gpu_node_count     = 1
gpu_machine_type   = "n1-standard-8"
gpu_type           = "nvidia-tesla-t4"
gpus_per_node      = 1
