//! Preflight (`kfctl doctor`): checks a cluster before anything is changed. Each check gives a
//! [`Finding`] with a severity and what to do about it; nothing here writes to the cluster
//! (SelfSubjectAccessReview only asks the API server a question).

use std::fmt;

use k8s_openapi::api::authorization::v1::{ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec};
use k8s_openapi::api::core::v1::Node;
use kube::api::PostParams;
use kube::{Api, Client};
use serde::Serialize;
use serde_json::Value;

use super::detect::{self, ClusterFacts};
use super::releases::{self, KubernetesSupport};
use super::{ClusterAccess, PlatformError};

/// How bad a finding is. `Error` makes `kfctl doctor` exit non-zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Ok,
    Warning,
    Error,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Ok => "ok",
            Severity::Warning => "warning",
            Severity::Error => "error",
        })
    }
}

/// One result of one check.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// Which check: reach, version, capacity, storage, architecture, permissions.
    pub check: &'static str,
    pub severity: Severity,
    pub message: String,
    /// What to do about it (None when there is nothing to do).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl Finding {
    fn ok(check: &'static str, message: String) -> Finding {
        Finding { check, severity: Severity::Ok, message, hint: None }
    }
    fn warning(check: &'static str, message: String, hint: String) -> Finding {
        Finding { check, severity: Severity::Warning, message, hint: Some(hint) }
    }
    fn error(check: &'static str, message: String, hint: String) -> Finding {
        Finding { check, severity: Severity::Error, message, hint: Some(hint) }
    }
}

/// CPU (cores) and memory (bytes).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Resources {
    pub cpu: f64,
    pub memory: f64,
}

impl std::ops::AddAssign for Resources {
    fn add_assign(&mut self, other: Resources) {
        self.cpu += other.cpu;
        self.memory += other.memory;
    }
}

/// A Kubernetes quantity as a number: "250m" -> 0.25, "1Gi" -> 1073741824, "1e3" -> 1000.
pub fn parse_quantity(text: &str) -> Option<f64> {
    let text = text.trim();
    let suffixes: [(&str, f64); 13] = [
        ("Ki", 1024f64),
        ("Mi", 1024f64.powi(2)),
        ("Gi", 1024f64.powi(3)),
        ("Ti", 1024f64.powi(4)),
        ("Pi", 1024f64.powi(5)),
        ("Ei", 1024f64.powi(6)),
        ("n", 1e-9),
        ("u", 1e-6),
        ("m", 1e-3),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
    ];
    for (suffix, factor) in suffixes {
        if let Some(number) = text.strip_suffix(suffix) {
            return number.parse::<f64>().ok().map(|n| n * factor);
        }
    }
    // "P"/"E" decimal suffixes are rare enough to spell out; plain numbers and 1e3 forms parse.
    if let Some(number) = text.strip_suffix('P') {
        return number.parse::<f64>().ok().map(|n| n * 1e15);
    }
    if let Some(number) = text.strip_suffix('E') {
        return number.parse::<f64>().ok().map(|n| n * 1e18);
    }
    text.parse::<f64>().ok()
}

fn quantity_of(value: &Value, key: &str) -> f64 {
    match value.get(key) {
        Some(Value::String(s)) => parse_quantity(s).unwrap_or(0.0),
        Some(Value::Number(n)) => n.as_f64().unwrap_or(0.0),
        _ => 0.0,
    }
}

/// What one container asks for: its requests, or its limits where requests are missing (the API
/// server defaults requests to limits).
fn container_requests(container: &Value) -> Resources {
    let resources = &container["resources"];
    let pick = |key| {
        let requested = quantity_of(&resources["requests"], key);
        if requested > 0.0 { requested } else { quantity_of(&resources["limits"], key) }
    };
    Resources { cpu: pick("cpu"), memory: pick("memory") }
}

/// What one Pod spec asks for: its containers summed, or its largest init container if larger.
fn pod_requests(pod_spec: &Value) -> Resources {
    let mut total = Resources::default();
    for container in pod_spec["containers"].as_array().into_iter().flatten() {
        total += container_requests(container);
    }
    for init in pod_spec["initContainers"].as_array().into_iter().flatten() {
        let init = container_requests(init);
        total.cpu = total.cpu.max(init.cpu);
        total.memory = total.memory.max(init.memory);
    }
    total
}

/// The requests of every Pod the rendered objects would run: Deployments, StatefulSets and
/// ReplicaSets times their replicas, DaemonSets once per node, Jobs times parallelism, bare Pods.
pub fn rendered_requests<'a>(objects: impl IntoIterator<Item = &'a Value>, node_count: usize) -> Resources {
    let mut total = Resources::default();
    for object in objects {
        let (pod_spec, copies) = match object["kind"].as_str() {
            Some("Deployment" | "StatefulSet" | "ReplicaSet") => {
                (&object["spec"]["template"]["spec"], object["spec"]["replicas"].as_f64().unwrap_or(1.0))
            }
            Some("DaemonSet") => (&object["spec"]["template"]["spec"], node_count as f64),
            Some("Job") => {
                (&object["spec"]["template"]["spec"], object["spec"]["parallelism"].as_f64().unwrap_or(1.0))
            }
            Some("Pod") => (&object["spec"], 1.0),
            _ => continue,
        };
        let pod = pod_requests(pod_spec);
        total += Resources { cpu: pod.cpu * copies, memory: pod.memory * copies };
    }
    total
}

/// Allocatable CPU and memory of the nodes that can run Pods (Ready and schedulable).
pub fn allocatable(nodes: &[Node]) -> (Resources, usize) {
    let mut total = Resources::default();
    let mut count = 0;
    for node in nodes {
        let schedulable = !node.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false);
        let ready = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|conditions| conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        let Some(alloc) = node.status.as_ref().and_then(|s| s.allocatable.as_ref()) else { continue };
        if !(schedulable && ready) {
            continue;
        }
        count += 1;
        total += Resources {
            cpu: alloc.get("cpu").and_then(|q| parse_quantity(&q.0)).unwrap_or(0.0),
            memory: alloc.get("memory").and_then(|q| parse_quantity(&q.0)).unwrap_or(0.0),
        };
    }
    (total, count)
}

fn gib(bytes: f64) -> String {
    format!("{:.1} GiB", bytes / 1024f64.powi(3))
}

/// Capacity: allocatable CPU and memory of usable nodes against what the rendered set requests.
pub fn check_capacity(nodes: &[Node], objects: &[Value]) -> Finding {
    let (have, usable) = allocatable(nodes);
    let need = rendered_requests(objects, usable);
    let summary = format!(
        "{usable} usable nodes allocate {:.1} CPUs and {}; the enabled components request {:.1} CPUs and {}",
        have.cpu,
        gib(have.memory),
        need.cpu,
        gib(need.memory)
    );
    if need.cpu > have.cpu || need.memory > have.memory {
        Finding::error(
            "capacity",
            format!("cluster too small: {summary}"),
            "add nodes or larger nodes (platform.nodeCount / platform.nodeSize in kfctl.yaml for clusters kfctl creates), or remove components (`kfctl component remove NAME`)".into(),
        )
    } else if need.cpu > 0.8 * have.cpu || need.memory > 0.8 * have.memory {
        Finding::warning(
            "capacity",
            format!("little room left: {summary}"),
            "notebooks and pipeline runs need room beyond Kubeflow itself; consider more nodes".into(),
        )
    } else {
        Finding::ok("capacity", summary)
    }
}

/// Version: the server's minor against the release's supported range.
pub fn check_version(major: &str, minor: &str, git_version: &str, support: &KubernetesSupport) -> Finding {
    let parsed = releases::leading_number(major).zip(releases::leading_number(minor));
    match parsed {
        Some(version) if support.accepts(version) => Finding::ok(
            "version",
            format!("Kubernetes {git_version} suits Kubeflow {} ({})", support.release, support.range()),
        ),
        _ => Finding::error(
            "version",
            format!("Kubernetes {git_version} is outside what Kubeflow {} supports ({})", support.release, support.range()),
            format!(
                "use a cluster running Kubernetes {}; clusters kfctl creates get {} by default",
                support.range(),
                support.cloud_version
            ),
        ),
    }
}

/// Storage: a default StorageClass for the volumes of notebooks and pipelines.
pub fn check_storage(facts: &ClusterFacts) -> Finding {
    match facts.storage_classes.iter().find(|c| detect::is_default_class(c)) {
        Some(class) => Finding::ok(
            "storage",
            format!(
                "default StorageClass {} (provisioner {})",
                class.metadata.name.as_deref().unwrap_or_default(),
                class.provisioner
            ),
        ),
        None => Finding::warning(
            "storage",
            format!("no default StorageClass ({} StorageClasses exist)", facts.storage_classes.len()),
            "PersistentVolumeClaims of pipelines and notebooks would stay Pending: mark a StorageClass default with `kubectl patch storageclass NAME -p '{\"metadata\":{\"annotations\":{\"storageclass.kubernetes.io/is-default-class\":\"true\"}}}'`, or let kfctl run them without volumes (cluster.storage.persistentVolumes: false)".into(),
        ),
    }
}

/// Architecture: the release's images are built for one architecture.
pub fn check_architecture(nodes: &[Node], support: &KubernetesSupport) -> Finding {
    let wanted = support.architecture.as_str();
    let mut other: Vec<String> = Vec::new();
    let mut matching = 0;
    // Cordoned nodes run no new Pods, so their architecture does not matter here.
    for node in nodes.iter().filter(|n| !n.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false)) {
        let arch = node.status.as_ref().and_then(|s| s.node_info.as_ref()).map(|i| i.architecture.as_str());
        match arch {
            Some(arch) if arch == wanted => matching += 1,
            arch => other.push(format!(
                "{} ({})",
                node.metadata.name.as_deref().unwrap_or_default(),
                arch.unwrap_or("unknown")
            )),
        }
    }
    let hint = format!(
        "Kubeflow {}'s images are built for {wanted} only; run it on {wanted} nodes",
        support.release
    );
    if matching == 0 {
        Finding::error("architecture", format!("no {wanted} node: {}", other.join(", ")), hint)
    } else if !other.is_empty() {
        Finding::warning(
            "architecture",
            format!("{matching} {wanted} nodes, but also {}: Pods landing there fail with exec format errors", other.join(", ")),
            format!("{hint}, or taint the others"),
        )
    } else {
        Finding::ok("architecture", format!("all {matching} nodes are {wanted}"))
    }
}

/// The cluster-scoped objects Kubeflow's manifests create, as (group, resource).
const CLUSTER_SCOPED: [(&str, &str); 6] = [
    ("", "namespaces"),
    ("apiextensions.k8s.io", "customresourcedefinitions"),
    ("rbac.authorization.k8s.io", "clusterroles"),
    ("rbac.authorization.k8s.io", "clusterrolebindings"),
    ("admissionregistration.k8s.io", "mutatingwebhookconfigurations"),
    ("admissionregistration.k8s.io", "validatingwebhookconfigurations"),
];

/// Permissions: may this user create each cluster-scoped kind Kubeflow needs?
pub async fn check_permissions(client: &Client) -> Result<Finding, PlatformError> {
    let api: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let mut denied = Vec::new();
    for (group, resource) in CLUSTER_SCOPED {
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    group: Some(group.to_owned()),
                    resource: Some(resource.to_owned()),
                    verb: Some("create".to_owned()),
                    ..ResourceAttributes::default()
                }),
                ..SelfSubjectAccessReviewSpec::default()
            },
            ..SelfSubjectAccessReview::default()
        };
        let answer = api.create(&PostParams::default(), &review).await?;
        if !answer.status.is_some_and(|s| s.allowed) {
            denied.push(if group.is_empty() { resource.to_owned() } else { format!("{resource}.{group}") });
        }
    }
    Ok(if denied.is_empty() {
        Finding::ok("permissions", "may create every cluster-scoped kind Kubeflow needs".into())
    } else {
        Finding::error(
            "permissions",
            format!("may not create {}", denied.join(", ")),
            "installing Kubeflow needs cluster-admin: use a context bound to cluster-admin, or ask an administrator to run kfctl".into(),
        )
    })
}

/// The API server's own message, without kube's debug dump of the Status object.
fn short_error(err: &PlatformError) -> String {
    match err {
        PlatformError::Kube(kube::Error::Api(status)) => status.message.clone(),
        other => other.to_string(),
    }
}

/// Run every check against the cluster behind `access` for Kubeflow `release`. `objects` are the
/// rendered objects of the enabled components (None skips the capacity check, with a warning).
pub async fn run_checks(access: &ClusterAccess, release: &str, objects: Option<&[Value]>) -> Vec<Finding> {
    let mut findings = Vec::new();
    let support = match super::release_support(release) {
        Ok(support) => support,
        Err(err) => {
            findings.push(Finding::error("version", err.to_string(), "use a release kfctl supports".into()));
            return findings;
        }
    };
    let reached = async {
        let (client, server) = detect::client_for(access).await?;
        let version = tokio::time::timeout(std::time::Duration::from_secs(15), client.apiserver_version())
            .await
            .map_err(|_| PlatformError::NeverReachable { server: server.clone(), seconds: 15, last_error: "no answer".into() })??;
        Ok::<_, PlatformError>((client, server, version))
    }
    .await;
    let (client, server, version) = match reached {
        Ok(reached) => reached,
        Err(err) => {
            findings.push(Finding::error(
                "reach",
                format!("cannot reach the cluster: {err}"),
                "check that the cluster runs and that `kubectl get ns` works with this kubeconfig; choose another with --context".into(),
            ));
            return findings;
        }
    };
    findings.push(Finding::ok("reach", format!("API server {server} answers")));
    findings.push(check_version(&version.major, &version.minor, &version.git_version, support));
    match detect::facts(&client).await {
        Ok(facts) => {
            match objects {
                Some(objects) => findings.push(check_capacity(&facts.nodes, objects)),
                None => findings.push(Finding::warning(
                    "capacity",
                    "no app directory: cannot compare the cluster with what Kubeflow requests".into(),
                    "run `kfctl doctor DIR` on an app directory made by `kfctl init`".into(),
                )),
            }
            findings.push(check_storage(&facts));
            findings.push(check_architecture(&facts.nodes, support));
        }
        // Without read access the other checks cannot run; the permissions check still can.
        Err(err) => findings.push(Finding::error(
            "read",
            format!("cannot list nodes, StorageClasses and Services: {}", short_error(&err)),
            "kfctl needs cluster-wide read access; use a context bound to cluster-admin".into(),
        )),
    }
    match check_permissions(&client).await {
        Ok(finding) => findings.push(finding),
        Err(err) => findings.push(Finding::error(
            "permissions",
            format!("cannot ask the API server about permissions: {err}"),
            "SelfSubjectAccessReview must be allowed (it is for every authenticated user by default)".into(),
        )),
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn quantities_parse_like_the_api_server() {
        assert_eq!(parse_quantity("250m"), Some(0.25));
        assert_eq!(parse_quantity("2"), Some(2.0));
        assert_eq!(parse_quantity("1Gi"), Some(1073741824.0));
        assert_eq!(parse_quantity("128M"), Some(128e6));
        assert_eq!(parse_quantity("1e3"), Some(1000.0));
        assert_eq!(parse_quantity("0.5"), Some(0.5));
        assert_eq!(parse_quantity("lots"), None);
    }

    #[test]
    fn requests_count_replicas_daemonsets_per_node_and_limits_as_requests() {
        let objects = [
            json!({"kind": "Deployment", "spec": {"replicas": 2, "template": {"spec": {"containers": [
                {"resources": {"requests": {"cpu": "500m", "memory": "1Gi"}}},
                {"resources": {"limits": {"cpu": "1", "memory": "512Mi"}}}]}}}}),
            json!({"kind": "DaemonSet", "spec": {"template": {"spec": {"containers": [
                {"resources": {"requests": {"cpu": "100m"}}}]}}}}),
            json!({"kind": "StatefulSet", "spec": {"template": {"spec": {
                "initContainers": [{"resources": {"requests": {"cpu": "4"}}}],
                "containers": [{"resources": {"requests": {"cpu": "1"}}}]}}}}),
            json!({"kind": "ConfigMap", "data": {}}),
        ];
        let total = rendered_requests(objects.iter(), 3);
        assert!((total.cpu - (2.0 * 1.5 + 0.3 + 4.0)).abs() < 1e-9, "{total:?}");
        assert!((total.memory - 2.0 * 1.5 * 1073741824.0).abs() < 1.0, "{total:?}");
    }
}
