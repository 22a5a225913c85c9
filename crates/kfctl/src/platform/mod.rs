//! Platforms: where Kubeflow runs and how kfctl gets there.
//!
//! `existing` uses a kubeconfig context as it is. The local platforms (`kind`, `minikube`,
//! `microk8s`, `k3d`) drive their own CLI to create a cluster; the clouds (`gke`, `eks`, `aks`) go
//! through readable Terraform that kfctl writes into the app directory. Every platform ends the
//! same way: a kubeconfig path and context ([`ClusterAccess`]) that the rest of the pipeline uses.
//!
//! The types here are embedded in kfctl.yaml by `config.rs`: [`PlatformSpec`] (what the user
//! chose) and [`ClusterSettings`] (what kfctl detected on the cluster, written down so a person can
//! review and change it).

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Which kind of cluster Kubeflow runs on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum PlatformKind {
    /// Any cluster a kubeconfig context reaches; kfctl creates nothing.
    #[default]
    Existing,
    /// A local cluster in Docker containers (kind).
    Kind,
    /// A local single-node cluster (minikube).
    Minikube,
    /// The host's MicroK8s snap.
    Microk8s,
    /// A local k3s cluster in Docker containers (k3d).
    K3d,
    /// Google Kubernetes Engine, through Terraform.
    Gke,
    /// Amazon EKS, through Terraform.
    Eks,
    /// Azure AKS, through Terraform.
    Aks,
}

impl PlatformKind {
    /// Every platform, in the order the help text lists them.
    pub const ALL: [PlatformKind; 8] = [
        PlatformKind::Existing,
        PlatformKind::Kind,
        PlatformKind::Minikube,
        PlatformKind::Microk8s,
        PlatformKind::K3d,
        PlatformKind::Gke,
        PlatformKind::Eks,
        PlatformKind::Aks,
    ];

    /// The name used in kfctl.yaml and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            PlatformKind::Existing => "existing",
            PlatformKind::Kind => "kind",
            PlatformKind::Minikube => "minikube",
            PlatformKind::Microk8s => "microk8s",
            PlatformKind::K3d => "k3d",
            PlatformKind::Gke => "gke",
            PlatformKind::Eks => "eks",
            PlatformKind::Aks => "aks",
        }
    }

    /// A cluster created by a local tool on this machine.
    pub fn is_local(self) -> bool {
        matches!(self, PlatformKind::Kind | PlatformKind::Minikube | PlatformKind::Microk8s | PlatformKind::K3d)
    }

    /// A cloud cluster created through Terraform.
    pub fn is_cloud(self) -> bool {
        matches!(self, PlatformKind::Gke | PlatformKind::Eks | PlatformKind::Aks)
    }
}

impl fmt::Display for PlatformKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A platform name that is not one of [`PlatformKind::ALL`].
#[derive(Debug, thiserror::Error)]
#[error("unknown platform {0:?}; known platforms: existing, kind, minikube, microk8s, k3d, gke, eks, aks")]
pub struct UnknownPlatform(pub String);

impl std::str::FromStr for PlatformKind {
    type Err = UnknownPlatform;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PlatformKind::ALL
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownPlatform(s.to_string()))
    }
}

/// What the user chose about the platform, as written in kfctl.yaml under `platform:`.
///
/// Only `kind` is required; every other field has a per-platform default (see
/// [`PlatformSpec::resolved`]) so `kfctl deploy --platform kind` works with no more flags, and the
/// resolved values are written back so a later run does exactly the same thing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PlatformSpec {
    /// existing | kind | minikube | microk8s | k3d | gke | eks | aks.
    pub kind: PlatformKind,
    /// Kubeconfig file to use; for created clusters kfctl writes `platform/kubeconfig` in the app
    /// directory and records it here (relative paths are relative to the app directory).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context to use (default: the kubeconfig's current context).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// Name of the cluster kfctl creates (and deletes with `kfctl delete --platform`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_name: Option<String>,
    /// Kubernetes version of the created cluster; must suit the Kubeflow release.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kubernetes_version: Option<String>,
    /// Number of (CPU) worker nodes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_count: Option<u32>,
    /// Machine type / VM size of the worker nodes (for minikube: "CPUS,MEMORY", e.g. "4,12g").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_size: Option<String>,
    /// Cloud region (gke, eks, aks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Cloud zone for a zonal GKE cluster.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// GCP project ID (gke).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// AWS CLI profile (eks) or Azure subscription ID (aks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// Azure resource group (aks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_group: Option<String>,
    /// An optional node pool with GPUs (clouds only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu: Option<GpuPool>,
}

/// A node pool with GPUs for notebooks and training.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GpuPool {
    /// Number of GPU nodes.
    pub node_count: u32,
    /// Machine type / VM size of a GPU node (default per cloud).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_size: Option<String>,
    /// Accelerator type (gke only, e.g. "nvidia-tesla-t4").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accelerator: Option<String>,
    /// GPUs per node (gke only; on eks/aks the machine type decides).
    #[serde(default = "one")]
    pub gpus_per_node: u32,
}

fn one() -> u32 {
    1
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl PlatformSpec {
    /// A spec of the given kind with nothing else chosen yet.
    pub fn new(kind: PlatformKind) -> PlatformSpec {
        PlatformSpec { kind, ..PlatformSpec::default() }
    }

    /// The kubeconfig to use, resolved against the app directory, if one is recorded.
    pub fn kubeconfig_path(&self, app_dir: &Path) -> Option<PathBuf> {
        self.kubeconfig.as_ref().map(|path| if path.is_absolute() { path.clone() } else { app_dir.join(path) })
    }

    /// How the rest of kfctl reaches this platform's cluster: the recorded kubeconfig (relative to
    /// `app_dir`) and context, or the user's default kubeconfig and current context.
    pub fn access(&self, app_dir: &Path) -> ClusterAccess {
        ClusterAccess { kubeconfig: self.kubeconfig_path(app_dir), context: self.context.clone() }
    }
}

/// How to reach a cluster: a kubeconfig (None = KUBECONFIG / ~/.kube/config) and a context
/// (None = its current context). Pass both to `cluster::connect`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterAccess {
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
}

/// What kfctl found on the cluster and chose because of it, as written in kfctl.yaml under
/// `cluster:`. Detected when `deploy` first reaches the cluster (or by `kfctl doctor --save`);
/// afterwards kfctl keeps what is written here, so a person may change any of it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ClusterSettings {
    /// Persistent storage for notebooks and pipelines.
    pub storage: StorageSettings,
    /// GPUs for notebooks.
    pub gpu: GpuSettings,
    /// How users reach the Kubeflow gateway.
    pub access: AccessSettings,
}

/// Persistent volumes for notebook workspaces and the pipelines database/artifact store.
/// Default (nothing detected yet): volumes as the manifests ask for them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct StorageSettings {
    /// Use PersistentVolumeClaims for notebooks and pipelines.
    pub persistent_volumes: bool,
    /// The StorageClass they use (None = the cluster's default StorageClass).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
    /// Why: what kfctl found (for the reader of kfctl.yaml).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// GPU options in the notebook spawner. Default (nothing detected yet): offered, as upstream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct GpuSettings {
    /// Offer GPUs in the notebook spawner.
    pub enabled: bool,
    /// The extended resource that counts GPUs (nvidia.com/gpu).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// GPUs allocatable across the cluster when detected.
    #[serde(skip_serializing_if = "is_zero")]
    pub allocatable: u64,
    /// Why: what kfctl found.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Default for StorageSettings {
    fn default() -> StorageSettings {
        StorageSettings { persistent_volumes: true, storage_class: None, reason: None }
    }
}

impl Default for GpuSettings {
    fn default() -> GpuSettings {
        GpuSettings { enabled: true, resource: None, allocatable: 0, reason: None }
    }
}

/// How the Kubeflow gateway (istio-ingressgateway) is exposed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GatewayAccess {
    /// `kfctl open` port-forwards to the gateway (works everywhere).
    #[default]
    PortForward,
    /// The gateway Service is of type NodePort.
    NodePort,
    /// The gateway Service is of type LoadBalancer and gets an address from the cloud.
    LoadBalancer,
}

/// Gateway exposure and the evidence for it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AccessSettings {
    /// port-forward | node-port | load-balancer.
    pub gateway: GatewayAccess,
    /// Why: what kfctl found.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

pub mod cloud;
pub mod detect;
pub mod doctor;
pub mod host;
pub mod local;
pub mod releases;
pub mod shell;
pub mod terraform;

use std::time::Duration;

use crate::progress::ProgressSink;
use releases::KubernetesSupport;
use shell::{Created, Shell};

/// Why a platform step failed. Messages name the command or file and say what to do next.
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    #[error("{tool} is not installed (not found on PATH)\n  hint: {install}")]
    ToolMissing { tool: String, install: String },
    #[error("`{command}` could not start: {source}")]
    Spawn { command: String, source: std::io::Error },
    #[error("`{command}` failed ({status}){}", if stderr.is_empty() { String::new() } else { format!(":\n{}", indent(stderr)) })]
    CommandFailed { command: String, status: String, stderr: String },
    #[error("cannot write {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("platform {kind} needs {field}\n  hint: {hint}")]
    MissingSetting { kind: PlatformKind, field: &'static str, hint: String },
    #[error("kfctl does not know which Kubernetes versions Kubeflow {release} supports\n  hint: known releases: {known}")]
    UnknownRelease { release: String, known: String },
    #[error("kubernetesVersion {version} does not suit Kubeflow {release}, which supports {range}\n  hint: set platform.kubernetesVersion in kfctl.yaml to a version in that range (or remove it to get kfctl's default)")]
    UnsupportedVersion { version: String, release: String, range: String },
    #[error("this machine cannot run Kubeflow on a local cluster: {message}\n  hint: {hint}")]
    HostLimits { message: String, hint: String },
    #[error("cannot read kubeconfig {path}: {reason}")]
    Kubeconfig { path: PathBuf, reason: String },
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
    #[error("the cluster's API server ({server}) did not answer within {seconds}s: {last_error}")]
    NeverReachable { server: String, seconds: u64, last_error: String },
    #[error("cluster request failed: {0}")]
    Kube(#[from] kube::Error),
    #[error("{question} (stdin is not a terminal)\n  hint: pass --yes to answer yes, or run kfctl in a terminal")]
    NeedsConfirmation { question: String },
    #[error("stopped: the answer was no; nothing was applied")]
    Declined,
    #[error("platform {0}: kfctl did not create this cluster, so there is nothing to tear down\n  hint: `kfctl delete` without --platform removes what kfctl installed on it")]
    NothingToTearDown(PlatformKind),
    /// A step failed after others had created something: says what exists and how to remove it.
    // `cause`, not `source`: the message already includes it, so error chains must not repeat it.
    #[error("{cause}\n{}", ledger_text(created))]
    Stopped { cause: Box<PlatformError>, created: Vec<Created> },
}

fn indent(text: &str) -> String {
    text.lines().map(|line| format!("    {line}")).collect::<Vec<_>>().join("\n")
}

/// "already created: ... / clean up with: ..." for the end of an error message.
fn ledger_text(created: &[Created]) -> String {
    if created.is_empty() {
        return "  nothing was created".to_owned();
    }
    let mut text = String::from("  already created (it may be partly created):");
    for item in created {
        text.push_str(&format!("\n    - {}", item.what));
    }
    text.push_str("\n  hint: to clean up, run:");
    for item in created {
        text.push_str(&format!("\n    {}", item.cleanup));
    }
    text
}

impl PlatformError {
    /// Attach the ledger of what exists so far (once; nested failures keep the first ledger).
    fn with_ledger(self, created: &[Created]) -> PlatformError {
        match self {
            already @ PlatformError::Stopped { .. } => already,
            cause => PlatformError::Stopped { cause: Box::new(cause), created: created.to_vec() },
        }
    }
}

/// Defaults per platform, so `--platform kind` alone works and kfctl.yaml shows what was used.
impl PlatformSpec {
    /// This spec with every unset field a platform needs filled with kfctl's default for
    /// `support`'s release; checks that a chosen Kubernetes version suits the release.
    pub fn resolved(&self, support: &KubernetesSupport) -> Result<PlatformSpec, PlatformError> {
        let mut spec = self.clone();
        let kind = spec.kind;
        if kind == PlatformKind::Existing {
            return Ok(spec);
        }
        spec.cluster_name.get_or_insert_with(|| "kubeflow".to_owned());
        let default_version = match kind {
            PlatformKind::Kind => support.kind_image.rsplit(':').next().unwrap_or_default(),
            PlatformKind::K3d => support.k3s_image.rsplit(':').next().unwrap_or_default(),
            PlatformKind::Minikube => support.minikube_version.as_str(),
            PlatformKind::Microk8s => support.microk8s_channel.split('/').next().unwrap_or_default(),
            _ => support.cloud_version.as_str(),
        };
        let version = spec.kubernetes_version.get_or_insert_with(|| default_version.to_owned()).clone();
        match releases::parse_minor(&version) {
            Some(minor) if support.accepts(minor) => {}
            _ => {
                return Err(PlatformError::UnsupportedVersion {
                    version,
                    release: support.release.clone(),
                    range: support.range(),
                });
            }
        }
        let (nodes, size) = match kind {
            PlatformKind::Kind | PlatformKind::K3d => (Some(2), None),
            // One VM: give it what Kubeflow's base set needs (4 CPUs, 12 GiB) plus room.
            PlatformKind::Minikube => (Some(1), Some("6,16g")),
            PlatformKind::Microk8s => (None, None),
            PlatformKind::Gke => (Some(2), Some("e2-standard-8")),
            PlatformKind::Eks => (Some(2), Some("m5.2xlarge")),
            PlatformKind::Aks => (Some(2), Some("Standard_D8s_v3")),
            PlatformKind::Existing => (None, None),
        };
        if spec.node_count.is_none() {
            spec.node_count = nodes;
        }
        if spec.node_size.is_none() {
            spec.node_size = size.map(str::to_owned);
        }
        match kind {
            PlatformKind::Gke => {
                spec.region.get_or_insert_with(|| "us-central1".to_owned());
                let zone = format!("{}-a", spec.region.as_deref().unwrap_or("us-central1"));
                spec.zone.get_or_insert(zone);
                if spec.project.is_none() {
                    return Err(PlatformError::MissingSetting {
                        kind,
                        field: "a GCP project",
                        hint: "pass --project PROJECT_ID (or set platform.project in kfctl.yaml); `gcloud projects list` shows yours".into(),
                    });
                }
            }
            PlatformKind::Eks => {
                spec.region.get_or_insert_with(|| "us-west-2".to_owned());
            }
            PlatformKind::Aks => {
                spec.region.get_or_insert_with(|| "eastus".to_owned());
                spec.resource_group.get_or_insert_with(|| "kubeflow".to_owned());
            }
            _ => {}
        }
        if let Some(gpu) = &mut spec.gpu {
            let (size, accelerator) = match kind {
                PlatformKind::Gke => ("n1-standard-8", Some("nvidia-tesla-t4")),
                PlatformKind::Eks => ("g4dn.xlarge", None),
                PlatformKind::Aks => ("Standard_NC6s_v3", None),
                _ => ("", None),
            };
            if gpu.node_size.is_none() && !size.is_empty() {
                gpu.node_size = Some(size.to_owned());
            }
            if gpu.accelerator.is_none() {
                gpu.accelerator = accelerator.map(str::to_owned);
            }
        }
        Ok(spec)
    }
}

/// How a provisioning run behaves.
#[derive(Debug, Clone)]
pub struct ProvisionOptions {
    /// Apply the Terraform plan (and destroy on teardown) without asking.
    pub assume_yes: bool,
    /// How long to wait for a new cluster's API server to answer.
    pub reach_timeout: Duration,
}

impl Default for ProvisionOptions {
    fn default() -> ProvisionOptions {
        ProvisionOptions { assume_yes: false, reach_timeout: Duration::from_secs(300) }
    }
}

/// The outcome of provisioning: how to reach the cluster, and the spec as resolved (defaults
/// filled in, kubeconfig and context recorded) for kfctl.yaml.
#[derive(Debug, Clone)]
pub struct Provisioned {
    pub access: ClusterAccess,
    pub spec: PlatformSpec,
}

/// The support row for a release, or a clear error.
pub fn release_support(release: &str) -> Result<&'static KubernetesSupport, PlatformError> {
    releases::support(release).ok_or_else(|| PlatformError::UnknownRelease {
        release: release.to_owned(),
        known: crate::registry::catalog::supported_versions(),
    })
}

/// Where kfctl keeps a created cluster's kubeconfig, relative to the app directory.
pub const KUBECONFIG_FILE: &str = "platform/kubeconfig";

/// Create (or reach) the cluster for `spec` in app directory `dir`, for Kubeflow `release`:
/// the non-Kubernetes part of a deploy. Goes through `shell`, so a dry run records every command
/// and file instead. On failure the error lists what was already created and how to remove it.
pub async fn provision_in(
    shell: &mut Shell<'_>,
    dir: &Path,
    spec: &PlatformSpec,
    release: &str,
    opts: &ProvisionOptions,
) -> Result<Provisioned, PlatformError> {
    let support = release_support(release)?;
    let spec = spec.resolved(support)?;
    let result = provision_steps(shell, dir, &spec, support, opts).await;
    result.map_err(|err| err.with_ledger(shell.ledger()))
}

async fn provision_steps(
    shell: &mut Shell<'_>,
    dir: &Path,
    spec: &PlatformSpec,
    support: &KubernetesSupport,
    opts: &ProvisionOptions,
) -> Result<Provisioned, PlatformError> {
    let kubeconfig = dir.join(KUBECONFIG_FILE);
    match spec.kind {
        PlatformKind::Existing => {
            let access = spec.access(dir);
            shell.step(&format!(
                "Platform existing: use {} (context {})",
                access.kubeconfig.as_ref().map_or("the default kubeconfig".to_owned(), |p| p.display().to_string()),
                access.context.as_deref().unwrap_or("current")
            ));
            // An existing cluster answers at once or not at all: do not wait minutes for a typo.
            let timeout = opts.reach_timeout.min(Duration::from_secs(15));
            detect::wait_reachable(shell, &access, timeout).await?;
            return Ok(Provisioned { access, spec: spec.clone() });
        }
        kind if kind.is_local() => local::create(shell, dir, spec, support, &kubeconfig).await?,
        _ => cloud::create(shell, dir, spec, opts, &kubeconfig).await?,
    }
    // The cluster exists; from here on everything goes through its API.
    let context = if shell.is_dry_run() { None } else { Some(detect::current_context(&kubeconfig)?) };
    let access = ClusterAccess { kubeconfig: Some(kubeconfig.clone()), context: context.clone() };
    detect::wait_reachable(shell, &access, opts.reach_timeout).await?;
    detect::ensure_default_storage_class(shell, &access).await?;
    let mut recorded = spec.clone();
    recorded.kubeconfig = Some(PathBuf::from(KUBECONFIG_FILE));
    recorded.context = context;
    Ok(Provisioned { access, spec: recorded })
}

/// Remove the cluster kfctl created for `spec` (`kfctl delete --platform`): the local tool's
/// delete, or `terraform destroy` (asking first unless `opts.assume_yes`).
pub async fn teardown_in(
    shell: &mut Shell<'_>,
    dir: &Path,
    spec: &PlatformSpec,
    opts: &ProvisionOptions,
) -> Result<(), PlatformError> {
    match spec.kind {
        PlatformKind::Existing => return Err(PlatformError::NothingToTearDown(spec.kind)),
        kind if kind.is_local() => local::delete(shell, spec).await?,
        _ => cloud::destroy(shell, dir, opts).await?,
    }
    let kubeconfig = dir.join(KUBECONFIG_FILE);
    if shell.is_dry_run() {
        shell.script_only(&format!("rm -f {}", shell::quote(&kubeconfig.to_string_lossy())));
    } else if kubeconfig.exists() {
        std::fs::remove_file(&kubeconfig).map_err(|source| PlatformError::Io { path: kubeconfig, source })?;
    }
    Ok(())
}

/// Teardown for a real run, for callers outside the CLI's dry-run path (`kfctl delete
/// --platform`, the web app).
pub async fn teardown(dir: &Path, spec: &PlatformSpec, opts: &ProvisionOptions, sink: &dyn ProgressSink) -> Result<(), PlatformError> {
    let mut shell = Shell::real(sink);
    teardown_in(&mut shell, dir, spec, opts).await
}

#[cfg(test)]
mod catalog_names {
    /// The catalogs name platforms by string (they are data); those names are the platform kinds.
    #[test]
    fn platform_names_are_the_platform_kinds() {
        let kinds: Vec<&str> = super::PlatformKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(kinds, crate::registry::catalog::PLATFORM_NAMES);
    }
}
