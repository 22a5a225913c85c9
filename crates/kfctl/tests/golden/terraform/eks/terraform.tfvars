# Values kfctl chose for app "kubeflow" on eks (from kfctl.yaml, platform:).
# Change them here or in kfctl.yaml; `kfctl deploy` plans again and shows the difference.

aws_profile        = "ml-team"
region             = "us-west-2"
cluster_name       = "kubeflow"
kubernetes_version = "1.34"
node_count         = 2
instance_type      = "m5.2xlarge"
gpu_node_count     = 0
