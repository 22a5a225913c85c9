//! Readiness per kind, decided from an object's status as the API server reports it.

use serde_json::Value;

/// Where an object stands.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "state", content = "reason", rename_all = "snake_case")]
pub enum Readiness {
    Ready,
    /// Still converging; the reason says on what.
    InProgress(String),
    /// Will not get better by itself (a failed Job, a Ready=False custom resource with a
    /// terminal reason, a pod crash-looping).
    Failed(String),
    /// Not on the cluster.
    Missing,
}

impl Readiness {
    pub fn is_ready(&self) -> bool {
        matches!(self, Readiness::Ready)
    }

    /// The sig-apps component status string.
    pub fn status_word(&self) -> &'static str {
        match self {
            Readiness::Ready => "Ready",
            Readiness::InProgress(_) => "InProgress",
            Readiness::Failed(_) => "Failed",
            Readiness::Missing => "NotFound",
        }
    }

    pub fn reason(&self) -> Option<&str> {
        match self {
            Readiness::InProgress(r) | Readiness::Failed(r) => Some(r),
            Readiness::Ready => None,
            Readiness::Missing => Some("not found on the cluster"),
        }
    }
}

fn int(v: &Value, pointer: &str) -> Option<i64> {
    v.pointer(pointer).and_then(Value::as_i64)
}

/// The status of condition `type_` ("True"/"False"/"Unknown") and its message.
pub fn condition<'a>(object: &'a Value, type_: &str) -> Option<(&'a str, &'a str)> {
    object.pointer("/status/conditions")?.as_array()?.iter().find_map(|c| {
        (c.get("type").and_then(Value::as_str) == Some(type_)).then(|| {
            let status = c.get("status").and_then(Value::as_str).unwrap_or("Unknown");
            let message = c.get("message").and_then(Value::as_str).or(c.get("reason").and_then(Value::as_str)).unwrap_or("");
            (status, message)
        })
    })
}

fn generation_observed(object: &Value) -> Result<(), String> {
    let generation = int(object, "/metadata/generation").unwrap_or(0);
    let observed = int(object, "/status/observedGeneration").unwrap_or(0);
    if observed < generation {
        Err(format!("waiting for the controller to observe generation {generation} (seen {observed})"))
    } else {
        Ok(())
    }
}

/// Readiness of a live object of `group`/`kind`.
pub fn readiness(group: &str, kind: &str, object: &Value) -> Readiness {
    match (group, kind) {
        ("apps", "Deployment") => {
            if let Err(r) = generation_observed(object) {
                return Readiness::InProgress(r);
            }
            let replicas = int(object, "/spec/replicas").unwrap_or(1);
            let updated = int(object, "/status/updatedReplicas").unwrap_or(0);
            let available = int(object, "/status/availableReplicas").unwrap_or(0);
            if let Some(("False", msg)) = condition(object, "Progressing")
                && !msg.is_empty()
            {
                return Readiness::Failed(msg.to_owned());
            }
            if updated < replicas {
                return Readiness::InProgress(format!("{updated}/{replicas} replicas updated"));
            }
            match condition(object, "Available") {
                Some(("True", _)) if available >= replicas => Readiness::Ready,
                _ => Readiness::InProgress(format!("{available}/{replicas} replicas available")),
            }
        }
        ("apps", "StatefulSet") => {
            if let Err(r) = generation_observed(object) {
                return Readiness::InProgress(r);
            }
            let replicas = int(object, "/spec/replicas").unwrap_or(1);
            let ready = int(object, "/status/readyReplicas").unwrap_or(0);
            let updated = int(object, "/status/updatedReplicas").unwrap_or(0);
            let current = object.pointer("/status/currentRevision");
            let update = object.pointer("/status/updateRevision");
            if ready < replicas {
                Readiness::InProgress(format!("{ready}/{replicas} replicas ready"))
            } else if updated < replicas && current != update {
                Readiness::InProgress(format!("{updated}/{replicas} replicas updated"))
            } else {
                Readiness::Ready
            }
        }
        ("apps", "DaemonSet") => {
            if let Err(r) = generation_observed(object) {
                return Readiness::InProgress(r);
            }
            let desired = int(object, "/status/desiredNumberScheduled").unwrap_or(0);
            let ready = int(object, "/status/numberReady").unwrap_or(0);
            let updated = int(object, "/status/updatedNumberScheduled").unwrap_or(0);
            if ready < desired || updated < desired {
                Readiness::InProgress(format!("{ready}/{desired} pods ready, {updated} updated"))
            } else {
                Readiness::Ready
            }
        }
        ("batch", "Job") => match (condition(object, "Complete"), condition(object, "Failed")) {
            (Some(("True", _)), _) => Readiness::Ready,
            (_, Some(("True", msg))) => Readiness::Failed(format!("job failed: {msg}")),
            _ => Readiness::InProgress("job not complete".into()),
        },
        ("apiextensions.k8s.io", "CustomResourceDefinition") => match condition(object, "Established") {
            Some(("True", _)) => Readiness::Ready,
            _ => Readiness::InProgress("not Established yet".into()),
        },
        ("", "PersistentVolumeClaim") => match object.pointer("/status/phase").and_then(Value::as_str) {
            Some("Bound") => Readiness::Ready,
            Some("Lost") => Readiness::Failed("claim Lost its volume".into()),
            phase => Readiness::InProgress(format!("claim {} (no volume bound yet)", phase.unwrap_or("Pending"))),
        },
        ("", "Service") => {
            if object.pointer("/spec/type").and_then(Value::as_str) != Some("LoadBalancer") {
                return Readiness::Ready;
            }
            if has_lb_address(object) { Readiness::Ready } else { Readiness::InProgress("waiting for a load balancer address".into()) }
        }
        ("networking.k8s.io" | "extensions", "Ingress") => {
            if has_lb_address(object) { Readiness::Ready } else { Readiness::InProgress("waiting for an ingress address".into()) }
        }
        ("", "Pod") => match condition(object, "Ready") {
            Some(("True", _)) => Readiness::Ready,
            _ => Readiness::InProgress("pod not Ready".into()),
        },
        // Custom resources and everything else: ready once present, unless they publish a Ready
        // condition that says otherwise.
        _ => match condition(object, "Ready") {
            None | Some(("True", _)) => Readiness::Ready,
            Some((_, msg)) => Readiness::InProgress(if msg.is_empty() { "Ready condition not True".into() } else { msg.to_owned() }),
        },
    }
}

fn has_lb_address(object: &Value) -> bool {
    object
        .pointer("/status/loadBalancer/ingress")
        .and_then(Value::as_array)
        .is_some_and(|a| a.iter().any(|i| i.get("ip").is_some() || i.get("hostname").is_some()))
}

/// Why a pod is failing, if it is: the first container waiting in a failure state (or
/// terminated with an error), named with pod and container.
pub fn pod_failure(pod: &Value) -> Option<String> {
    let name = pod.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("?");
    for list in ["initContainerStatuses", "containerStatuses"] {
        for cs in pod.pointer(&format!("/status/{list}")).and_then(Value::as_array).into_iter().flatten() {
            let container = cs.get("name").and_then(Value::as_str).unwrap_or("?");
            let restarts = cs.get("restartCount").and_then(Value::as_i64).unwrap_or(0);
            if let Some(reason) = cs.pointer("/state/waiting/reason").and_then(Value::as_str)
                && matches!(reason, "CrashLoopBackOff" | "ImagePullBackOff" | "ErrImagePull" | "CreateContainerConfigError" | "InvalidImageName" | "CreateContainerError" | "RunContainerError")
            {
                let message = cs.pointer("/state/waiting/message").and_then(Value::as_str).unwrap_or("");
                let mut text = format!("pod {name} container {container}: {reason} (restarted {restarts} times)");
                if !message.is_empty() {
                    text.push_str(&format!(": {message}"));
                }
                return Some(text);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn deployment_needs_observed_generation_updated_replicas_and_available() {
        let d = |generation: i64, observed: i64, updated: i64, available: &str| json!({
            "metadata": {"generation": generation}, "spec": {"replicas": 2},
            "status": {"observedGeneration": observed, "updatedReplicas": updated, "availableReplicas": 2,
                "conditions": [{"type": "Available", "status": available}]}});
        assert_eq!(readiness("apps", "Deployment", &d(2, 2, 2, "True")), Readiness::Ready);
        assert!(matches!(readiness("apps", "Deployment", &d(3, 2, 2, "True")), Readiness::InProgress(_)));
        assert!(matches!(readiness("apps", "Deployment", &d(2, 2, 1, "True")), Readiness::InProgress(_)));
        assert!(matches!(readiness("apps", "Deployment", &d(2, 2, 2, "False")), Readiness::InProgress(_)));
    }

    #[test]
    fn other_kinds() {
        let sts = json!({"spec": {"replicas": 1}, "status": {"readyReplicas": 1, "updatedReplicas": 1}});
        assert_eq!(readiness("apps", "StatefulSet", &sts), Readiness::Ready);
        let ds = json!({"status": {"desiredNumberScheduled": 3, "numberReady": 2, "updatedNumberScheduled": 3}});
        assert!(!readiness("apps", "DaemonSet", &ds).is_ready());
        let job = json!({"status": {"conditions": [{"type": "Failed", "status": "True", "message": "BackoffLimitExceeded"}]}});
        assert!(matches!(readiness("batch", "Job", &job), Readiness::Failed(_)));
        let crd = json!({"status": {"conditions": [{"type": "Established", "status": "True"}]}});
        assert!(readiness("apiextensions.k8s.io", "CustomResourceDefinition", &crd).is_ready());
        assert!(!readiness("", "PersistentVolumeClaim", &json!({"status": {"phase": "Pending"}})).is_ready());
        assert!(readiness("", "PersistentVolumeClaim", &json!({"status": {"phase": "Bound"}})).is_ready());
        assert!(readiness("", "Service", &json!({"spec": {"type": "ClusterIP"}})).is_ready());
        assert!(!readiness("", "Service", &json!({"spec": {"type": "LoadBalancer"}, "status": {"loadBalancer": {}}})).is_ready());
        assert!(readiness("", "Service", &json!({"spec": {"type": "LoadBalancer"}, "status": {"loadBalancer": {"ingress": [{"ip": "127.0.0.1"}]}}})).is_ready());
        assert!(!readiness("networking.k8s.io", "Ingress", &json!({})).is_ready());
        assert!(readiness("example.com", "Widget", &json!({})).is_ready());
        let cr = json!({"status": {"conditions": [{"type": "Ready", "status": "False", "message": "waiting for db"}]}});
        assert_eq!(readiness("example.com", "Widget", &cr), Readiness::InProgress("waiting for db".into()));
    }

    #[test]
    fn crash_looping_pod_is_named_with_container() {
        let pod = json!({"metadata": {"name": "web-1"}, "status": {"containerStatuses": [
            {"name": "ok", "restartCount": 0, "state": {"running": {}}},
            {"name": "app", "restartCount": 4, "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}}}]}});
        assert_eq!(pod_failure(&pod).unwrap(), "pod web-1 container app: CrashLoopBackOff (restarted 4 times): back-off 40s");
        assert_eq!(pod_failure(&json!({"metadata": {"name": "x"}})), None);
    }
}
