//! Looking at a cluster: is its API answering, which StorageClass is the default, are there GPUs,
//! do LoadBalancer Services get addresses. `provision` uses it to wait for a new cluster, and
//! auto-configuration turns it into the reviewable [`ClusterSettings`] of kfctl.yaml.

use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{ListParams, Patch, PatchParams};
use kube::config::Kubeconfig;
use kube::{Api, Client};

use super::shell::{Shell, quote};
use super::{
    AccessSettings, ClusterAccess, ClusterSettings, GatewayAccess, GpuSettings, PlatformError, StorageSettings,
};
use crate::cluster::error_chain;
use crate::progress::Progress;

/// The annotation that marks the default StorageClass (and its pre-1.6 beta spelling).
const DEFAULT_CLASS_ANNOTATIONS: [&str; 2] =
    ["storageclass.kubernetes.io/is-default-class", "storageclass.beta.kubernetes.io/is-default-class"];

/// The extended resource NVIDIA's device plugin advertises.
pub const GPU_RESOURCE: &str = "nvidia.com/gpu";

/// A client for `access` (the same as every other command's, see [`crate::cluster::configure`]),
/// without contacting the server yet; also the server URL for messages.
pub async fn client_for(access: &ClusterAccess) -> Result<(Client, String), PlatformError> {
    let configured = crate::cluster::configure(access.kubeconfig.as_deref(), access.context.as_deref()).await?;
    Ok((configured.client, configured.server))
}

/// The current context of the kubeconfig a platform tool wrote.
pub fn current_context(kubeconfig: &Path) -> Result<String, PlatformError> {
    let config = Kubeconfig::read_from(kubeconfig)
        .map_err(|err| PlatformError::Kubeconfig { path: kubeconfig.to_path_buf(), reason: err.to_string() })?;
    config.current_context.filter(|c| !c.is_empty()).ok_or_else(|| PlatformError::Kubeconfig {
        path: kubeconfig.to_path_buf(),
        reason: "it names no current-context".into(),
    })
}

/// Wait, at most `timeout`, until the API server behind `access` answers `/version`.
pub async fn wait_reachable(
    shell: &mut Shell<'_>,
    access: &ClusterAccess,
    timeout: Duration,
) -> Result<Option<Client>, PlatformError> {
    let seconds = timeout.as_secs();
    shell.step(&format!("Wait until the cluster's API server answers (at most {seconds}s)"));
    if shell.is_dry_run() {
        let kubectl = kubectl_prefix(access);
        shell.script_only(&format!(
            "tries=0; until {kubectl} get --raw /version >/dev/null 2>&1; do\n  tries=$((tries + 1)); [ \"$tries\" -lt {} ] || {{ echo 'the API server never answered' >&2; exit 1; }}; sleep 2\ndone",
            seconds.div_ceil(2).max(1)
        ));
        return Ok(None);
    }
    let (client, server) = client_for(access).await?;
    let deadline = Instant::now() + timeout;
    loop {
        let attempt = tokio::time::timeout(Duration::from_secs(10), client.apiserver_version()).await;
        let last_error = match attempt {
            Ok(Ok(version)) => {
                shell.step(&format!("API server {server} answers: Kubernetes {}", version.git_version));
                return Ok(Some(client));
            }
            Ok(Err(err)) => error_chain(&err),
            Err(_) => "no answer within 10s".to_owned(),
        };
        if Instant::now() + Duration::from_secs(2) > deadline {
            return Err(PlatformError::NeverReachable { server, seconds, last_error });
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// "kubectl --kubeconfig K --context C" for script lines.
fn kubectl_prefix(access: &ClusterAccess) -> String {
    let mut line = String::from("kubectl");
    if let Some(path) = &access.kubeconfig {
        line.push_str(&format!(" --kubeconfig {}", quote(&path.to_string_lossy())));
    }
    if let Some(context) = &access.context {
        line.push_str(&format!(" --context {}", quote(context)));
    }
    line
}

/// Is this StorageClass marked as the default?
pub fn is_default_class(class: &StorageClass) -> bool {
    class.metadata.annotations.as_ref().is_some_and(|annotations| {
        DEFAULT_CLASS_ANNOTATIONS.iter().any(|key| annotations.get(*key).is_some_and(|v| v == "true"))
    })
}

/// A freshly created local/cloud cluster must have a default StorageClass for Kubeflow's volumes.
/// When there is exactly one StorageClass and it is not marked default, kfctl marks it (the tool
/// created it for this purpose); when there is none, kfctl warns and auto-configuration records
/// that volumes are off.
pub async fn ensure_default_storage_class(shell: &mut Shell<'_>, access: &ClusterAccess) -> Result<(), PlatformError> {
    shell.step("Check that the cluster has a default StorageClass (for notebook and pipeline volumes)");
    if shell.is_dry_run() {
        shell.script_only(&format!("{} get storageclass", kubectl_prefix(access)));
        return Ok(());
    }
    let (client, _) = client_for(access).await?;
    let api: Api<StorageClass> = Api::all(client);
    let classes = api.list(&ListParams::default()).await?.items;
    if let Some(default) = classes.iter().find(|c| is_default_class(c)) {
        shell.step(&format!("Default StorageClass: {}", default.metadata.name.as_deref().unwrap_or_default()));
        return Ok(());
    }
    match classes.as_slice() {
        [only] => {
            let name = only.metadata.name.clone().unwrap_or_default();
            shell.step(&format!("Mark the only StorageClass, {name}, as the default"));
            let patch = serde_json::json!({"metadata": {"annotations": {DEFAULT_CLASS_ANNOTATIONS[0]: "true"}}});
            api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
        }
        _ => shell.step(
            "warning: no default StorageClass; notebooks and pipelines will run without persistent volumes \
             (see cluster.storage in kfctl.yaml)",
        ),
    }
    Ok(())
}

/// Everything auto-configuration and `doctor` read from the cluster, in one pass.
#[derive(Debug, Clone, Default)]
pub struct ClusterFacts {
    pub storage_classes: Vec<StorageClass>,
    pub nodes: Vec<Node>,
    pub load_balancers: Vec<Service>,
}

/// Read StorageClasses, Nodes and Services of type LoadBalancer.
pub async fn facts(client: &Client) -> Result<ClusterFacts, PlatformError> {
    let storage_classes = Api::<StorageClass>::all(client.clone()).list(&ListParams::default()).await?.items;
    let nodes = Api::<Node>::all(client.clone()).list(&ListParams::default()).await?.items;
    let load_balancers = Api::<Service>::all(client.clone())
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|s| s.spec.as_ref().and_then(|spec| spec.type_.as_deref()) == Some("LoadBalancer"))
        .collect();
    Ok(ClusterFacts { storage_classes, nodes, load_balancers })
}

fn name_of<K: kube::Resource>(object: &K) -> String {
    let meta = object.meta();
    match &meta.namespace {
        Some(ns) => format!("{ns}/{}", meta.name.as_deref().unwrap_or_default()),
        None => meta.name.clone().unwrap_or_default(),
    }
}

/// GPUs allocatable per node (only nodes that have some).
pub fn gpu_nodes(nodes: &[Node]) -> Vec<(String, u64)> {
    nodes
        .iter()
        .filter_map(|node| {
            let quantity = node.status.as_ref()?.allocatable.as_ref()?.get(GPU_RESOURCE)?;
            let count: u64 = quantity.0.trim().parse().ok()?;
            (count > 0).then(|| (name_of(node), count))
        })
        .collect()
}

/// Turn what the cluster shows into the choices kfctl writes into kfctl.yaml, each with its reason.
pub fn settings_from(facts: &ClusterFacts) -> ClusterSettings {
    let storage = match facts.storage_classes.iter().find(|c| is_default_class(c)) {
        Some(class) => StorageSettings {
            persistent_volumes: true,
            storage_class: class.metadata.name.clone(),
            reason: Some(format!(
                "default StorageClass {} (provisioner {}) found: notebook workspaces and the pipelines database and artifact store use PersistentVolumeClaims",
                class.metadata.name.as_deref().unwrap_or_default(),
                class.provisioner
            )),
        },
        None => StorageSettings {
            persistent_volumes: false,
            storage_class: None,
            reason: Some(format!(
                "no default StorageClass ({} StorageClasses, none marked default): PersistentVolumeClaims would stay Pending, so kfctl leaves the claims of pipelines (and other components) out and gives their Pods emptyDir volumes, whose data is lost when a Pod restarts; create notebooks without a workspace volume. To use volumes, mark a StorageClass default (kubectl patch storageclass NAME -p '{{\"metadata\":{{\"annotations\":{{\"{}\":\"true\"}}}}}}') and set persistentVolumes: true",
                facts.storage_classes.len(),
                DEFAULT_CLASS_ANNOTATIONS[0]
            )),
        },
    };

    let gpus = gpu_nodes(&facts.nodes);
    let total: u64 = gpus.iter().map(|(_, n)| n).sum();
    let gpu = if total > 0 {
        GpuSettings {
            enabled: true,
            resource: Some(GPU_RESOURCE.to_owned()),
            allocatable: total,
            reason: Some(format!(
                "{total} {GPU_RESOURCE} allocatable on {}: the notebook spawner offers GPUs",
                gpus.iter().map(|(n, c)| format!("{n} ({c})")).collect::<Vec<_>>().join(", ")
            )),
        }
    } else {
        GpuSettings {
            enabled: false,
            resource: None,
            allocatable: 0,
            reason: Some(format!(
                "no node has {GPU_RESOURCE} allocatable: GPU options are hidden in the notebook spawner (install the NVIDIA device plugin on GPU nodes, then set enabled: true)"
            )),
        }
    };

    let with_address: Vec<String> = facts
        .load_balancers
        .iter()
        .filter(|s| {
            s.status
                .as_ref()
                .and_then(|st| st.load_balancer.as_ref())
                .and_then(|lb| lb.ingress.as_ref())
                .is_some_and(|ingress| !ingress.is_empty())
        })
        .map(name_of)
        .collect();
    let cloud_provider = facts.nodes.iter().find_map(|node| {
        let provider = node.spec.as_ref()?.provider_id.as_deref()?;
        let scheme = provider.split("://").next()?;
        // Clouds (and k3s's built-in service load balancer) give LoadBalancer Services addresses.
        ["gce", "aws", "azure", "k3s"].contains(&scheme).then(|| format!("{} ({provider})", name_of(node)))
    });
    let access = if let Some(service) = with_address.first() {
        AccessSettings {
            gateway: GatewayAccess::LoadBalancer,
            reason: Some(format!("Service {service} of type LoadBalancer has an address: the gateway gets one too")),
        }
    } else if let Some(node) = cloud_provider.filter(|_| facts.load_balancers.is_empty()) {
        AccessSettings {
            gateway: GatewayAccess::LoadBalancer,
            reason: Some(format!("node {node} runs on a provider that serves LoadBalancer Services")),
        }
    } else {
        let evidence = match facts.load_balancers.first() {
            Some(service) => format!("Service {} of type LoadBalancer has no address", name_of(service)),
            None => "no Service of type LoadBalancer has an address and the nodes name no cloud provider".to_owned(),
        };
        AccessSettings {
            gateway: GatewayAccess::PortForward,
            reason: Some(format!(
                "{evidence}: reach Kubeflow with `kfctl open` (port-forward), or set gateway: node-port"
            )),
        }
    };
    ClusterSettings { storage, gpu, access }
}

/// Auto-configuration: read the cluster behind `client` and return the settings for kfctl.yaml.
pub async fn detect(client: &Client, sink: &dyn crate::progress::ProgressSink) -> Result<ClusterSettings, PlatformError> {
    let facts = facts(client).await?;
    let settings = settings_from(&facts);
    for reason in [&settings.storage.reason, &settings.gpu.reason, &settings.access.reason].into_iter().flatten() {
        sink.report(Progress::Message { text: format!("auto-configuration: {reason}") });
    }
    Ok(settings)
}
