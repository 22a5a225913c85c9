//! Making the choices under `cluster:` in kfctl.yaml take effect on the rendered objects.
//!
//! Auto-configuration writes [`ClusterSettings`] (with the reason for each choice); this module
//! turns them into small, named edits of the rendered set, applied after rendering and before
//! apply, so the same kustomize trees serve every cluster:
//! - storage: every PersistentVolumeClaim gets the chosen StorageClass, or, without persistent
//!   volumes, the claims are dropped and the Pods that mounted them get an emptyDir instead (their
//!   data lives as long as the Pod; the reason in kfctl.yaml says so);
//! - GPUs: the notebook spawner's GPU field is offered only when the cluster has GPUs;
//! - access: the Kubeflow gateway Service becomes type LoadBalancer when the cluster hands out
//!   addresses.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::platform::{ClusterSettings, GatewayAccess};
use super::ComponentObject;

/// The gateway Service users reach Kubeflow through.
const GATEWAY: (&str, &str) = ("istio-system", "istio-ingressgateway");
/// The key of the notebook spawner's config inside its ConfigMap.
const SPAWNER_KEY: &str = "spawner_ui_config.yaml";

/// Apply `settings` to `objects` in place; returns one line per edit, for progress and review.
pub fn apply_settings(settings: &ClusterSettings, objects: &mut Vec<ComponentObject>) -> Vec<String> {
    let mut edits = Vec::new();
    storage(settings, objects, &mut edits);
    for item in objects.iter_mut() {
        let object = &mut item.object;
        match object["kind"].as_str() {
            Some("Service") if namespace_name(object) == (GATEWAY.0.to_owned(), GATEWAY.1.to_owned()) => {
                let wanted = match settings.access.gateway {
                    GatewayAccess::LoadBalancer => Some("LoadBalancer"),
                    GatewayAccess::NodePort => Some("NodePort"),
                    // Port-forwarding works whatever the type: keep what the manifests say.
                    GatewayAccess::PortForward => None,
                };
                if let Some(wanted) = wanted.filter(|w| object["spec"]["type"].as_str() != Some(*w)) {
                    object["spec"]["type"] = Value::from(wanted);
                    edits.push(format!("Service {}/{}: type {wanted} (cluster.access)", GATEWAY.0, GATEWAY.1));
                }
            }
            Some("ConfigMap") => {
                if let Some(edit) = spawner_gpus(settings, object) {
                    edits.push(edit);
                }
            }
            _ => {}
        }
    }
    edits
}

fn namespace_name(object: &Value) -> (String, String) {
    let meta = &object["metadata"];
    (
        meta["namespace"].as_str().unwrap_or_default().to_owned(),
        meta["name"].as_str().unwrap_or_default().to_owned(),
    )
}

/// Offer GPUs in the notebook spawner only where the cluster has them (`readOnly` hides the field).
fn spawner_gpus(settings: &ClusterSettings, object: &mut Value) -> Option<String> {
    let text = object["data"][SPAWNER_KEY].as_str()?;
    let mut config: Value = serde_saphyr::from_str(text).ok()?;
    let gpus = config.pointer_mut("/spawnerFormDefaults/gpus")?;
    let read_only = !settings.gpu.enabled;
    if gpus["readOnly"].as_bool() == Some(read_only) {
        return None;
    }
    gpus["readOnly"] = Value::Bool(read_only);
    object["data"][SPAWNER_KEY] = Value::String(serde_saphyr::to_string(&config).ok()?);
    let (ns, name) = namespace_name(object);
    Some(format!(
        "ConfigMap {ns}/{name}: notebook GPU option {} (cluster.gpu)",
        if read_only { "hidden" } else { "offered" }
    ))
}

fn storage(settings: &ClusterSettings, objects: &mut Vec<ComponentObject>, edits: &mut Vec<String>) {
    let is_claim = |o: &ComponentObject| o.object["kind"].as_str() == Some("PersistentVolumeClaim");
    if settings.storage.persistent_volumes {
        let Some(class) = &settings.storage.storage_class else { return };
        for item in objects.iter_mut().filter(|o| is_claim(o)) {
            let spec = &mut item.object["spec"];
            if spec.get("storageClassName").is_none() {
                spec["storageClassName"] = Value::String(class.clone());
                let (ns, name) = namespace_name(&item.object);
                edits.push(format!("PersistentVolumeClaim {ns}/{name}: storageClassName {class} (cluster.storage)"));
            }
        }
        return;
    }
    // No persistent volumes: drop the claims, give their Pods an emptyDir in their place.
    let claims: BTreeSet<(String, String)> =
        objects.iter().filter(|o| is_claim(o)).map(|o| namespace_name(&o.object)).collect();
    if claims.is_empty() {
        return;
    }
    objects.retain(|o| !is_claim(o));
    for (ns, name) in &claims {
        edits.push(format!("PersistentVolumeClaim {ns}/{name}: left out, no persistent volumes (cluster.storage)"));
    }
    for item in objects.iter_mut() {
        let (ns, workload) = namespace_name(&item.object);
        let kind = item.object["kind"].as_str().unwrap_or_default().to_owned();
        let Some(volumes) = item.object.pointer_mut("/spec/template/spec/volumes").and_then(Value::as_array_mut) else {
            continue;
        };
        for volume in volumes.iter_mut() {
            let claim = volume["persistentVolumeClaim"]["claimName"].as_str().map(str::to_owned);
            if let Some(claim) = claim.filter(|c| claims.contains(&(ns.clone(), c.clone()))) {
                let volume_name = volume["name"].clone();
                *volume = serde_json::json!({"name": volume_name, "emptyDir": {}});
                edits.push(format!("{kind} {ns}/{workload}: volume from claim {claim} is an emptyDir (cluster.storage)"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::{AccessSettings, GpuSettings, StorageSettings};
    use serde_json::json;

    fn objects() -> Vec<ComponentObject> {
        let spawner = "spawnerFormDefaults:\n  gpus:\n    value:\n      num: none\n    readOnly: false\n";
        [
            json!({"kind": "PersistentVolumeClaim", "metadata": {"name": "mysql-pv-claim", "namespace": "kubeflow"}, "spec": {}}),
            json!({"kind": "Deployment", "metadata": {"name": "mysql", "namespace": "kubeflow"}, "spec": {"template": {"spec": {"volumes": [
                {"name": "mysql-persistent-storage", "persistentVolumeClaim": {"claimName": "mysql-pv-claim"}},
                {"name": "config", "configMap": {"name": "c"}}]}}}}),
            json!({"kind": "Service", "metadata": {"name": "istio-ingressgateway", "namespace": "istio-system"}, "spec": {"type": "NodePort"}}),
            json!({"kind": "ConfigMap", "metadata": {"name": "jupyter-web-app-config-abc", "namespace": "kubeflow"}, "data": {"spawner_ui_config.yaml": spawner}}),
        ]
        .into_iter()
        .map(|object| ComponentObject { component: "test".into(), object })
        .collect()
    }

    #[test]
    fn without_volumes_claims_go_and_pods_get_empty_dirs_and_gpus_are_hidden() {
        let mut settings = ClusterSettings::default();
        // Nothing detected: the manifests stay as they are.
        let mut objects = objects();
        assert!(apply_settings(&settings, &mut objects).is_empty());
        settings.storage.persistent_volumes = false;
        settings.gpu.enabled = false;
        let edits = apply_settings(&settings, &mut objects);
        assert_eq!(objects.len(), 3, "the claim is left out");
        assert_eq!(
            objects[0].object["spec"]["template"]["spec"]["volumes"],
            json!([{"name": "mysql-persistent-storage", "emptyDir": {}}, {"name": "config", "configMap": {"name": "c"}}])
        );
        assert_eq!(objects[1].object["spec"]["type"], "NodePort", "port-forward keeps the manifests' type");
        let spawner: Value = serde_saphyr::from_str(objects[2].object["data"][SPAWNER_KEY].as_str().unwrap()).unwrap();
        assert_eq!(spawner["spawnerFormDefaults"]["gpus"]["readOnly"], true);
        assert_eq!(edits.len(), 3, "{edits:?}");
    }

    #[test]
    fn with_a_class_gpus_and_a_load_balancer_everything_is_kept_and_pointed_there() {
        let settings = ClusterSettings {
            storage: StorageSettings { persistent_volumes: true, storage_class: Some("fast".into()), reason: None },
            gpu: GpuSettings { enabled: true, resource: Some("nvidia.com/gpu".into()), allocatable: 2, reason: None },
            access: AccessSettings { gateway: GatewayAccess::LoadBalancer, reason: None },
        };
        let mut objects = objects();
        let edits = apply_settings(&settings, &mut objects);
        assert_eq!(objects.len(), 4);
        assert_eq!(objects[0].object["spec"]["storageClassName"], "fast");
        assert_eq!(objects[2].object["spec"]["type"], "LoadBalancer");
        // GPUs were already offered: no edit of the spawner.
        assert_eq!(edits.len(), 2, "{edits:?}");
        // Applying twice changes nothing more.
        assert!(apply_settings(&settings, &mut objects).is_empty());
    }
}
