//! Platforms: existing, kind, minikube, microk8s, k3d, gke, eks, aks.
