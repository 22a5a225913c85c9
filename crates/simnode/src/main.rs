//! simnode: the node simulator of kfctl's test cluster (in the spirit of kwok).
//!
//! `scripts/testenv` runs a real control plane (etcd, kube-apiserver, kube-controller-manager,
//! kube-scheduler) but no kubelet and no container runtime. simnode plays the kubelets' part at the
//! API level, so that everything above the kubelet is real Kubernetes behaviour: the scheduler
//! binds pods, the ReplicaSet/Deployment/Job controllers react to pod status, the endpoints
//! controller fills Endpoints from Ready pod IPs, the node-lifecycle controller watches heartbeats.
//!
//! # What it simulates
//! - **Nodes**: registers `--nodes` Ready nodes (`<prefix>0..`), each with capacity/allocatable
//!   (`--cpu`, `--memory`, `--pods`, ephemeral-storage), an InternalIP from the node range, a pod
//!   CIDR (`/24` number `i` of `--pod-cidr`), no taints, optional extra labels (`--node-label`), and
//!   optionally GPU nodes (`--gpu-nodes`, `nvidia.com/gpu` capacity, `--gpu-node-label`).
//! - **Heartbeats**: renews each node's Lease in `kube-node-lease` every 10s and refreshes the
//!   node's conditions every 30s, so the node-lifecycle controller never marks them NotReady.
//! - **Pods** bound to its nodes: on first sight `Pending`/`ContainerCreating` with hostIP and a
//!   unique podIP from the node's CIDR (never loopback; `hostNetwork` pods get the node IP); after
//!   `--pod-ready-delay-ms`, `Running` with every container ready and started and conditions
//!   PodScheduled/Initialized/ContainersReady/Ready True. Init containers show as Completed.
//! - **Jobs**: pods owned by a Job run for `--job-duration-ms`, then go `Succeeded` (exit code 0).
//! - **Volumes**: the default StorageClass `simnode`; Pending claims of it get a pre-bound
//!   hostPath PersistentVolume (never mounted) that the real PV controller binds; Released
//!   volumes are deleted (see [`storage`]).
//! - **Deletion**: a pod with a deletionTimestamp is deleted with grace period 0, as a kubelet does
//!   once its containers stopped.
//! - **Failures on request**, toggled at run time: the pod annotation `simnode.kfctl.dev/fail` or a
//!   rule in the ConfigMap `kube-system/simnode-faults` (see [`fault`]) keeps a pod in
//!   `CrashLoopBackOff` (waiting reason, restartCount increasing every `--crash-interval-ms`, Ready
//!   False), `ImagePullBackOff`, or `NotReady` (running, readiness failing). Removing the rule lets
//!   the pod become Ready again.
//! - **Image pulls**, for namespaces a test opts in through the ConfigMap
//!   `kube-system/simnode-image-pulls` (see [`pull`]): a pod starts only once every image resolves
//!   by a manifest HEAD in its registry; until then ErrImagePull, then ImagePullBackOff.
//!
//! - **Port-forward**: each node's kubelet endpoint (`https://<InternalIP>:10250`, client
//!   certificates of the cluster CA required) serves `/portForward/<ns>/<pod>[/<uid>]` over
//!   WebSocket (`v4.channel.k8s.io`), so `pods/portforward` through the API server (kube-rs's
//!   `Api::portforward`, `kfctl open`) reaches `<podIP>:<port>`, where a test inside the testenv
//!   netns can listen (see [`kubelet`]).
//!
//! # What it does not simulate
//! No containers run: no processes, logs, exec, probes, volume mounts, resource enforcement or
//! eviction; port-forward connects to whatever listens on the pod IP, and speaks WebSocket only
//! (no SPDY, so `kubectl port-forward` of 1.20 does not work). No networking is set up: pod IPs are just numbers (inside the testenv
//! network namespace the pod range is routed to loopback, which is what lets a test serve on a pod
//! IP). `readinessGates` are not evaluated. Static pods and DaemonSet-specific kubelet behaviour
//! are absent (DaemonSet pods are scheduled and run like any other pod).

mod fault;
mod pull;
mod ipam;
mod kubelet;
mod node;
mod pod;
mod storage;

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;

/// Command line of simnode.
#[derive(Parser, Debug, Clone)]
#[command(version, about = "Simulated kubelets for kfctl's test cluster")]
pub struct Args {
    /// Number of simulated nodes.
    #[arg(long, default_value_t = 3)]
    pub nodes: u8,
    /// Node name prefix; nodes are named <prefix>0, <prefix>1, ...
    #[arg(long, default_value = "simnode-")]
    pub node_name_prefix: String,
    /// Pod range (a /16): node i gets the /24 number i, pod IPs come from there.
    #[arg(long, default_value = "10.244.0.0/16")]
    pub pod_cidr: String,
    /// InternalIP of node 0; node i gets this address + i.
    #[arg(long, default_value = "10.243.0.10")]
    pub node_ip_base: Ipv4Addr,
    /// CPU capacity per node (a Kubernetes quantity).
    #[arg(long, default_value = "16")]
    pub cpu: String,
    /// Memory capacity per node (a Kubernetes quantity).
    #[arg(long, default_value = "64Gi")]
    pub memory: String,
    /// Pod capacity per node.
    #[arg(long, default_value_t = 110)]
    pub pods: u32,
    /// Extra label for every node, KEY=VALUE (repeatable).
    #[arg(long = "node-label", value_parser = parse_label)]
    pub node_labels: Vec<(String, String)>,
    /// How many of the nodes (the last ones) have nvidia.com/gpu capacity.
    #[arg(long, default_value_t = 0)]
    pub gpu_nodes: u8,
    /// nvidia.com/gpu capacity of each GPU node.
    #[arg(long, default_value_t = 1)]
    pub gpus_per_node: u32,
    /// Extra label for GPU nodes only, KEY=VALUE (repeatable).
    #[arg(long = "gpu-node-label", value_parser = parse_label)]
    pub gpu_node_labels: Vec<(String, String)>,
    /// Time from a pod's first sighting (ContainerCreating) to Running and Ready.
    #[arg(long, default_value_t = 0)]
    pub pod_ready_delay_ms: u64,
    /// How long a Job's pod runs before it Succeeds.
    #[arg(long, default_value_t = 1000)]
    pub job_duration_ms: u64,
    /// Interval between simulated crashes (restartCount increments) of a CrashLoopBackOff pod.
    #[arg(long, default_value_t = 5000)]
    pub crash_interval_ms: u64,
    /// Failure rule given on the command line, "REASON NAMESPACE/POD_NAME_PREFIX" (repeatable);
    /// same syntax as the values of the kube-system/simnode-faults ConfigMap.
    #[arg(long = "fail")]
    pub fail: Vec<String>,
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    let (k, v) = s.split_once('=').ok_or_else(|| format!("label {s:?} is not KEY=VALUE"))?;
    Ok((k.to_string(), v.to_string()))
}

impl Args {
    fn pod_ready_delay(&self) -> Duration {
        Duration::from_millis(self.pod_ready_delay_ms)
    }
    fn job_duration(&self) -> Duration {
        Duration::from_millis(self.job_duration_ms)
    }
    fn crash_interval(&self) -> Duration {
        Duration::from_millis(self.crash_interval_ms.max(100))
    }
}

/// Prints one log line with a UTC timestamp (simnode's log goes to the testenv log directory).
macro_rules! log {
    ($($arg:tt)*) => {
        eprintln!("{} {}", jiff::Timestamp::now().strftime("%H:%M:%S%.3f"), format!($($arg)*))
    };
}
pub(crate) use log;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    rustls::crypto::ring::default_provider()
        .install_default()
        .map_err(|_| anyhow::anyhow!("a rustls crypto provider was already installed"))?;
    let args = Args::parse();
    let cli_rules = args
        .fail
        .iter()
        .map(|r| fault::FaultRule::parse(r).with_context(|| format!("--fail {r:?}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let config = kube::Config::infer().await.context("loading the API server connection (KUBECONFIG)")?;
    // The kubelet endpoint trusts client certificates of the cluster CA, the one the API server's
    // kubelet client certificate comes from.
    let cluster_ca = config.root_cert.clone().filter(|certs| !certs.is_empty()).context(
        "the kubeconfig names no certificate-authority; simnode needs the cluster CA to check the API \
         server's kubelet client certificate",
    )?;
    let client = kube::Client::try_from(config).context("connecting to the API server (KUBECONFIG)")?;

    let fleet = Arc::new(node::Fleet::new(&args)?);
    fleet.register(&client).await?;
    log!(
        "registered {} nodes: {}",
        fleet.nodes.len(),
        fleet.nodes.iter().map(|n| n.name.as_str()).collect::<Vec<_>>().join(", ")
    );

    storage::ensure_storage_class(&client).await?;
    let faults = fault::FaultBook::new(cli_rules);
    let heartbeats = tokio::spawn(node::heartbeat_loop(client.clone(), fleet.clone()));
    let fault_watch = tokio::spawn(fault::watch_config_map(client.clone(), faults.clone()));
    let pulls = pull::PullBook::default();
    let pull_watch = tokio::spawn(pull::watch_config_map(client.clone(), pulls.clone()));
    let claims = tokio::spawn(storage::provision_claims(client.clone()));
    let volumes = tokio::spawn(storage::reclaim_volumes(client.clone()));
    let kubelets = tokio::spawn(kubelet::serve(client.clone(), fleet.clone(), cluster_ca));
    let pods = tokio::spawn(pod::run(client, fleet, faults, pulls, args));

    tokio::select! {
        r = heartbeats => r.context("heartbeat task")?.context("heartbeats")?,
        r = fault_watch => r.context("fault watch task")?.context("watching simnode-faults")?,
        r = pull_watch => r.context("pull watch task")?.context("watching simnode-image-pulls")?,
        r = pods => r.context("pod task")?.context("pod controller")?,
        r = kubelets => r.context("kubelet endpoint task")?.context("kubelet endpoints")?,
        r = claims => r.context("claim task")?.context("volume provisioning")?,
        r = volumes => r.context("volume task")?.context("volume reclaiming")?,
        _ = shutdown_signal() => log!("shutting down"),
    }
    Ok(())
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {},
        _ = tokio::signal::ctrl_c() => {},
    }
}
