//! The simulated nodes: registration, Ready status, and heartbeats (Lease + NodeStatus).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus, NodeSystemInfo,
    DaemonEndpoint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};

use crate::ipam::{PodIps, PodRange};
use crate::{Args, log};

/// Field manager simnode writes with.
pub const FIELD_MANAGER: &str = "simnode";
/// Label on every simulated node.
pub const SIMNODE_LABEL: &str = "simnode.kfctl.dev/simulated";
const LEASE_NAMESPACE: &str = "kube-node-lease";
const LEASE_DURATION_SECONDS: i32 = 40;
const LEASE_RENEW_INTERVAL: Duration = Duration::from_secs(10);
const STATUS_REFRESH_INTERVAL: Duration = Duration::from_secs(30);
/// The kubelet version the nodes report: that of the control plane they join.
const KUBELET_VERSION: &str = "v1.20.2";

/// One simulated node.
#[derive(Debug)]
pub struct SimNode {
    pub name: String,
    pub index: u8,
    pub internal_ip: Ipv4Addr,
    pub pod_cidr: String,
    pub gpus: u32,
    pub labels: BTreeMap<String, String>,
}

/// All nodes of this simnode process plus the pod IP allocator they share.
pub struct Fleet {
    pub nodes: Vec<SimNode>,
    pub pod_ips: PodIps,
    cpu: String,
    memory: String,
    pods: u32,
    /// When this simnode started: the conditions' lastTransitionTime (they never change).
    started_at: Time,
}

impl Fleet {
    pub fn new(args: &Args) -> anyhow::Result<Self> {
        let range = PodRange::parse(&args.pod_cidr)?;
        anyhow::ensure!(args.nodes >= 1, "--nodes must be at least 1");
        anyhow::ensure!(args.gpu_nodes <= args.nodes, "--gpu-nodes exceeds --nodes");
        let base = u32::from(args.node_ip_base);
        let nodes = (0..args.nodes)
            .map(|index| {
                let name = format!("{}{index}", args.node_name_prefix);
                let gpus = if index >= args.nodes - args.gpu_nodes { args.gpus_per_node } else { 0 };
                let mut labels: BTreeMap<String, String> = [
                    ("kubernetes.io/hostname", name.as_str()),
                    ("kubernetes.io/os", "linux"),
                    ("kubernetes.io/arch", "amd64"),
                    ("beta.kubernetes.io/os", "linux"),
                    ("beta.kubernetes.io/arch", "amd64"),
                    ("node.kubernetes.io/instance-type", "simnode"),
                    (SIMNODE_LABEL, "true"),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
                labels.extend(args.node_labels.iter().cloned());
                if gpus > 0 {
                    labels.insert("nvidia.com/gpu.present".into(), "true".into());
                    labels.extend(args.gpu_node_labels.iter().cloned());
                }
                SimNode {
                    internal_ip: Ipv4Addr::from(base + u32::from(index)),
                    pod_cidr: range.node_cidr(index),
                    name,
                    index,
                    gpus,
                    labels,
                }
            })
            .collect();
        Ok(Fleet {
            nodes,
            pod_ips: PodIps::new(range),
            cpu: args.cpu.clone(),
            memory: args.memory.clone(),
            pods: args.pods,
            started_at: Time(jiff::Timestamp::now()),
        })
    }

    /// The node of this fleet with that name.
    pub fn node(&self, name: &str) -> Option<&SimNode> {
        self.nodes.iter().find(|n| n.name == name)
    }

    fn capacity(&self, node: &SimNode) -> BTreeMap<String, Quantity> {
        let mut c: BTreeMap<String, Quantity> = [
            ("cpu", self.cpu.clone()),
            ("memory", self.memory.clone()),
            ("pods", self.pods.to_string()),
            ("ephemeral-storage", "100Gi".to_string()),
            ("hugepages-2Mi", "0".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), Quantity(v)))
        .collect();
        if node.gpus > 0 {
            c.insert("nvidia.com/gpu".into(), Quantity(node.gpus.to_string()));
        }
        c
    }

    fn status(&self, node: &SimNode) -> NodeStatus {
        let now = Time(jiff::Timestamp::now());
        let condition = |type_: &str, status: &str, reason: &str, message: &str| NodeCondition {
            type_: type_.into(),
            status: status.into(),
            reason: Some(reason.into()),
            message: Some(message.into()),
            last_heartbeat_time: Some(now.clone()),
            last_transition_time: Some(self.started_at.clone()),
        };
        NodeStatus {
            capacity: Some(self.capacity(node)),
            allocatable: Some(self.capacity(node)),
            conditions: Some(vec![
                condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "simulated"),
                condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "simulated"),
                condition("PIDPressure", "False", "KubeletHasSufficientPID", "simulated"),
                condition("Ready", "True", "KubeletReady", "simnode is posting ready status"),
            ]),
            addresses: Some(vec![
                NodeAddress { type_: "InternalIP".into(), address: node.internal_ip.to_string() },
                NodeAddress { type_: "Hostname".into(), address: node.name.clone() },
            ]),
            daemon_endpoints: Some(NodeDaemonEndpoints {
                kubelet_endpoint: Some(DaemonEndpoint { port: i32::from(crate::kubelet::KUBELET_PORT) }),
            }),
            node_info: Some(NodeSystemInfo {
                architecture: "amd64".into(),
                boot_id: format!("simnode-boot-{}", node.index),
                container_runtime_version: "simnode://0.1.0".into(),
                kernel_version: "simulated".into(),
                kube_proxy_version: KUBELET_VERSION.into(),
                kubelet_version: KUBELET_VERSION.into(),
                machine_id: format!("simnode-machine-{}", node.index),
                operating_system: "linux".into(),
                os_image: "simnode (kfctl testenv)".into(),
                system_uuid: format!("simnode-uuid-{}", node.index),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// Creates the nodes (or takes over existing ones after a restart) and posts Ready status.
    pub async fn register(&self, client: &kube::Client) -> anyhow::Result<()> {
        let api: Api<Node> = Api::all(client.clone());
        for node in &self.nodes {
            let desired = Node {
                metadata: ObjectMeta {
                    name: Some(node.name.clone()),
                    labels: Some(node.labels.clone()),
                    ..Default::default()
                },
                spec: Some(NodeSpec {
                    pod_cidr: Some(node.pod_cidr.clone()),
                    pod_cidrs: Some(vec![node.pod_cidr.clone()]),
                    provider_id: Some(format!("simnode://{}", node.name)),
                    ..Default::default()
                }),
                status: Some(self.status(node)),
            };
            match api.create(&PostParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() }, &desired).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    // Left by an earlier simnode: bring labels up to date; podCIDR is immutable.
                    let patch = serde_json::json!({ "metadata": { "labels": node.labels } });
                    api.patch(&node.name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await
                        .with_context(|| format!("updating existing node {}", node.name))?;
                }
                Err(e) => return Err(e).with_context(|| format!("creating node {}", node.name)),
            }
            self.post_status(&api, node).await?;
            self.renew_lease(client, node).await?;
        }
        Ok(())
    }

    async fn post_status(&self, api: &Api<Node>, node: &SimNode) -> anyhow::Result<()> {
        let patch = serde_json::json!({ "status": self.status(node) });
        api.patch_status(&node.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .with_context(|| format!("posting status of node {}", node.name))?;
        Ok(())
    }

    async fn renew_lease(&self, client: &kube::Client, node: &SimNode) -> anyhow::Result<()> {
        let api: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
        let spec = LeaseSpec {
            holder_identity: Some(node.name.clone()),
            lease_duration_seconds: Some(LEASE_DURATION_SECONDS),
            renew_time: Some(MicroTime(jiff::Timestamp::now())),
            ..Default::default()
        };
        let patch = serde_json::json!({ "spec": spec });
        match api.patch(&node.name, &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => {
                let lease = Lease {
                    metadata: ObjectMeta { name: Some(node.name.clone()), ..Default::default() },
                    spec: Some(spec),
                };
                match api.create(&PostParams::default(), &lease).await {
                    Ok(_) => Ok(()),
                    // Created concurrently (e.g. by the previous round): renewed next time.
                    Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
                    Err(e) => Err(e).with_context(|| format!("creating lease of node {}", node.name)),
                }
            }
            Err(e) => Err(e).with_context(|| format!("renewing lease of node {}", node.name)),
        }
    }
}

/// Renews leases every 10s and posts node status every 30s, forever. Transient API errors are
/// logged and retried on the next tick; the node-lifecycle grace period (40s) covers a few misses.
pub async fn heartbeat_loop(client: kube::Client, fleet: Arc<Fleet>) -> anyhow::Result<()> {
    let api: Api<Node> = Api::all(client.clone());
    let mut lease_tick = tokio::time::interval(LEASE_RENEW_INTERVAL);
    let mut status_tick = tokio::time::interval(STATUS_REFRESH_INTERVAL);
    loop {
        tokio::select! {
            _ = lease_tick.tick() => {
                for node in &fleet.nodes {
                    if let Err(e) = fleet.renew_lease(&client, node).await {
                        log!("heartbeat: {e:#}");
                    }
                }
            }
            _ = status_tick.tick() => {
                for node in &fleet.nodes {
                    if let Err(e) = fleet.post_status(&api, node).await {
                        log!("heartbeat: {e:#}");
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    #[test]
    fn gpu_nodes_are_the_last_ones_and_carry_gpu_capacity_and_labels() {
        let args = Args::parse_from([
            "simnode", "--nodes", "3", "--gpu-nodes", "1", "--gpus-per-node", "2",
            "--gpu-node-label", "accelerator=nvidia-tesla-t4", "--node-label", "zone=a",
        ]);
        let fleet = Fleet::new(&args).unwrap();
        let names: Vec<_> = fleet.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["simnode-0", "simnode-1", "simnode-2"]);
        let (cpu_only, gpu) = (&fleet.nodes[0], &fleet.nodes[2]);
        assert_eq!(fleet.capacity(gpu).get("nvidia.com/gpu"), Some(&Quantity("2".into())));
        assert_eq!(fleet.capacity(cpu_only).get("nvidia.com/gpu"), None);
        assert_eq!(gpu.labels.get("accelerator").map(String::as_str), Some("nvidia-tesla-t4"));
        assert_eq!(cpu_only.labels.get("accelerator"), None);
        assert!(fleet.nodes.iter().all(|n| n.labels.get("zone").map(String::as_str) == Some("a")));
        assert_eq!(gpu.pod_cidr, "10.244.2.0/24");
        assert_eq!(gpu.internal_ip, Ipv4Addr::new(10, 243, 0, 12));
    }
}
