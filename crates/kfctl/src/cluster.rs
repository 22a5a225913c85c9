//! Connecting to a cluster: kubeconfig, context, one rustls crypto provider.
