//! Defaulting `protocol: TCP` on ports, as the API server's defaulting would.
//!
//! Server-side apply merges Service and container ports by the key (port, protocol). Kubernetes
//! 1.20 and older build the merge key before defaulting runs, so an omitted protocol is rejected
//! ("associative list with keys has an element that omits key field \"protocol\""). Writing the
//! default ourselves is exactly what the server would store.

use serde_json::Value;

/// Add `protocol: TCP` wherever a Service port or a container port of a pod template omits it.
pub fn default_port_protocols(object: &mut Value) {
    let group_kind = (
        object.get("apiVersion").and_then(Value::as_str).map(|v| v.split_once('/').map_or("", |(g, _)| g).to_owned()),
        object.get("kind").and_then(Value::as_str).map(str::to_owned),
    );
    let (Some(group), Some(kind)) = group_kind else { return };
    let pod_spec_path = match (group.as_str(), kind.as_str()) {
        ("", "Service") => {
            set_protocols(object.pointer_mut("/spec/ports"));
            return;
        }
        ("", "Pod") => "/spec",
        ("", "ReplicationController")
        | ("", "PodTemplate")
        | ("apps", "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet")
        | ("batch", "Job") => "/spec/template/spec",
        ("batch", "CronJob") => "/spec/jobTemplate/spec/template/spec",
        _ => return,
    };
    let pod_spec_path = if kind == "PodTemplate" { "/template/spec" } else { pod_spec_path };
    let Some(pod_spec) = object.pointer_mut(pod_spec_path) else { return };
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        if let Some(containers) = pod_spec.get_mut(list).and_then(Value::as_array_mut) {
            for container in containers {
                set_protocols(container.get_mut("ports"));
            }
        }
    }
}

fn set_protocols(ports: Option<&mut Value>) {
    let Some(ports) = ports.and_then(Value::as_array_mut) else { return };
    for port in ports {
        if let Some(port) = port.as_object_mut() {
            port.entry("protocol").or_insert_with(|| Value::from("TCP"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn services_and_all_pod_templates_get_tcp() {
        let container = || json!({"name": "c", "ports": [{"containerPort": 80}, {"containerPort": 53, "protocol": "UDP"}]});
        let want_ports = json!([{"containerPort": 80, "protocol": "TCP"}, {"containerPort": 53, "protocol": "UDP"}]);
        let template = || json!({"spec": {"containers": [container()], "initContainers": [container()]}});
        let cases = vec![
            (json!({"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"template": template()}}), "/spec/template/spec"),
            (json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "spec": {"template": template()}}), "/spec/template/spec"),
            (json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "spec": {"template": template()}}), "/spec/template/spec"),
            (json!({"apiVersion": "batch/v1", "kind": "Job", "spec": {"template": template()}}), "/spec/template/spec"),
            (json!({"apiVersion": "batch/v1beta1", "kind": "CronJob", "spec": {"jobTemplate": {"spec": {"template": template()}}}}), "/spec/jobTemplate/spec/template/spec"),
            (json!({"apiVersion": "v1", "kind": "Pod", "spec": template()["spec"].clone()}), "/spec"),
        ];
        for (mut object, path) in cases {
            default_port_protocols(&mut object);
            let spec = object.pointer(path).unwrap();
            assert_eq!(spec["containers"][0]["ports"], want_ports, "{}", object["kind"]);
            assert_eq!(spec["initContainers"][0]["ports"], want_ports, "{}", object["kind"]);
        }
        let mut svc = json!({"apiVersion": "v1", "kind": "Service", "spec": {"ports": [{"port": 80}, {"port": 53, "protocol": "UDP"}]}});
        default_port_protocols(&mut svc);
        assert_eq!(svc["spec"]["ports"], json!([{"port": 80, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}]));
    }

    #[test]
    fn other_kinds_are_untouched() {
        let original = json!({"apiVersion": "example.com/v1", "kind": "Widget", "spec": {"ports": [{"port": 1}],
            "template": {"spec": {"containers": [{"ports": [{"containerPort": 1}]}]}}}});
        let mut object = original.clone();
        default_port_protocols(&mut object);
        assert_eq!(object, original);
    }
}
