# Values kfctl chose for app "kubeflow" on aks (from kfctl.yaml, platform:).
# Change them here or in kfctl.yaml; `kfctl deploy` plans again and shows the difference.

resource_group     = "kubeflow"
region             = "eastus"
cluster_name       = "kf-prod"
kubernetes_version = "1.34"
node_count         = 3
vm_size            = "Standard_D8s_v3"
gpu_node_count     = 2
gpu_vm_size        = "Standard_NC4as_T4_v3"
