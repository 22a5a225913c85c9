//! The sig-apps Application (app.k8s.io/v1beta1): its CRD (schema written by kfctl), the
//! `kubeflow` Application with selector and componentKinds, and its status, kept the way the
//! sig-apps controller keeps it.

use std::collections::BTreeSet;

use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use serde_json::{Value, json};

use super::{AppStatus, HealthError};
use crate::app::ComponentObject;
use crate::plan::{APP_LABEL, AppTarget};

pub const APPLICATION_API_VERSION: &str = "app.k8s.io/v1beta1";
pub const APPLICATION_KIND: &str = "Application";
/// Status is written under its own field manager: before 1.22 managedFields do not tell a status
/// write from a spec write, and kfctl's spec entry must list only what `apply` sets.
pub const STATUS_FIELD_MANAGER: &str = "kfctl-status";
/// The component name kfctl gives its own objects (the Application CRD and the Application).
pub const APPLICATION_COMPONENT: &str = "application";

/// The Application CRD as kfctl installs it.
pub fn application_crd() -> Value {
    let condition = json!({"type": "object", "required": ["type", "status"], "properties": {
        "type": {"type": "string"}, "status": {"type": "string"}, "reason": {"type": "string"},
        "message": {"type": "string"}, "lastTransitionTime": {"type": "string", "format": "date-time"},
        "lastUpdateTime": {"type": "string", "format": "date-time"}}});
    let component = json!({"type": "object", "properties": {
        "group": {"type": "string", "nullable": true}, "kind": {"type": "string"}, "name": {"type": "string"},
        "namespace": {"type": "string"}, "link": {"type": "string"}, "status": {"type": "string"},
        "message": {"type": "string"}}});
    let spec = json!({"type": "object", "properties": {
        "selector": {"type": "object", "properties": {
            "matchLabels": {"type": "object", "additionalProperties": {"type": "string"}},
            "matchExpressions": {"type": "array", "items": {"type": "object", "properties": {
                "key": {"type": "string"}, "operator": {"type": "string"},
                "values": {"type": "array", "items": {"type": "string"}}}}}}},
        "componentKinds": {"type": "array", "items": {"type": "object", "properties": {
            "group": {"type": "string", "nullable": true}, "kind": {"type": "string"}}}},
        "descriptor": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
        "addOwnerRef": {"type": "boolean"},
        "info": {"type": "array", "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
        "assemblyPhase": {"type": "string"}}});
    let status = json!({"type": "object", "properties": {
        "observedGeneration": {"type": "integer", "format": "int64"},
        "conditions": {"type": "array", "items": condition},
        "components": {"type": "array", "items": component},
        "componentsReady": {"type": "string"}}});
    let schema = json!({
        "type": "object",
        "description": "An Application aggregates the Kubernetes objects of one application (sig-apps).",
        "properties": {"apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": {"type": "object"},
                       "spec": spec, "status": status}});
    let columns = json!([
        {"name": "Type", "type": "string", "jsonPath": ".spec.descriptor.type"},
        {"name": "Version", "type": "string", "jsonPath": ".spec.descriptor.version"},
        {"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"},
        {"name": "Components", "type": "string", "description": "ready components / all components", "jsonPath": ".status.componentsReady"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
    ]);
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "applications.app.k8s.io", "annotations": {"api-approved.kubernetes.io": "https://github.com/kubernetes-sigs/application/pull/2"}},
        "spec": {
            "group": "app.k8s.io",
            "scope": "Namespaced",
            "names": {"kind": "Application", "listKind": "ApplicationList", "plural": "applications", "singular": "application", "shortNames": ["app"]},
            "versions": [{
                "name": "v1beta1",
                "served": true,
                "storage": true,
                "subresources": {"status": {}},
                "additionalPrinterColumns": columns,
                "schema": {"openAPIV3Schema": schema}
            }]
        }
    })
}

/// The Application for `target`, selecting the app's objects by kfctl's app label.
pub fn application(target: &AppTarget, rendered: &[ComponentObject]) -> Value {
    let kinds: BTreeSet<(String, String)> = rendered
        .iter()
        .filter_map(|o| {
            let api_version = o.object.get("apiVersion")?.as_str()?;
            let kind = o.object.get("kind")?.as_str()?;
            let group = api_version.split_once('/').map_or("", |(g, _)| g);
            Some((group.to_owned(), kind.to_owned()))
        })
        .chain([("apiextensions.k8s.io".to_owned(), "CustomResourceDefinition".to_owned())])
        .filter(|(g, k)| !(g == "app.k8s.io" && k == APPLICATION_KIND))
        .collect();
    json!({
        "apiVersion": APPLICATION_API_VERSION,
        "kind": APPLICATION_KIND,
        "metadata": {"name": target.name, "namespace": target.namespace},
        "spec": {
            "selector": {"matchLabels": {APP_LABEL: target.name}},
            "componentKinds": kinds.into_iter().map(|(group, kind)| json!({"group": group_name(&group), "kind": kind})).collect::<Vec<_>>(),
            "descriptor": {"type": "kubeflow", "description": "Kubeflow, deployed and kept by kfctl"},
            "addOwnerRef": false
        }
    })
}

/// The group as sig-apps Applications write it: `core` for the core group (an empty string does
/// not survive server-side apply).
pub fn group_name(group: &str) -> &str {
    if group.is_empty() { "core" } else { group }
}

/// The objects kfctl adds to every app: the Application CRD and the Application.
/// A CRD the rendered set already carries (some releases ship the sig-apps CRD) is not added twice.
pub fn objects(target: &AppTarget, rendered: &[ComponentObject]) -> Vec<ComponentObject> {
    let crd = application_crd();
    let has_crd = rendered.iter().any(|o| {
        o.object.get("kind") == crd.get("kind") && o.object.pointer("/metadata/name") == crd.pointer("/metadata/name")
    });
    let mut out = Vec::new();
    if !has_crd {
        out.push(ComponentObject { component: APPLICATION_COMPONENT.to_owned(), object: crd });
    }
    out.push(ComponentObject { component: APPLICATION_COMPONENT.to_owned(), object: application(target, rendered) });
    out
}

fn application_api(client: &Client, target: &AppTarget) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("app.k8s.io", "v1beta1", APPLICATION_KIND), "applications");
    Api::namespaced_with(client.clone(), &target.namespace, &ar)
}

/// The Application's current status (`None` when the Application does not exist).
pub async fn read_status(client: &Client, target: &AppTarget) -> Result<Option<Value>, HealthError> {
    let api = application_api(client, target);
    match api.get_opt(&target.name).await {
        Ok(Some(app)) => Ok(Some(app.data.get("status").cloned().unwrap_or(Value::Null))),
        Ok(None) => Ok(None),
        // The CRD is not installed yet: same as no Application.
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
        Err(e) => Err(HealthError::Api { reason: crate::cluster::error_chain(&e) }),
    }
}

/// The status the sig-apps controller would write for `status`, keeping lastTransitionTime of
/// conditions whose status did not change.
pub fn desired_status(status: &AppStatus, previous: Option<&Value>, now: &str) -> Value {
    let total = status.objects_total();
    let ready = status.objects_ready();
    let not_ready: Vec<String> = status
        .components
        .iter()
        .filter(|c| !c.ready)
        .map(|c| match c.first_problem() {
            Some(p) => format!("{}: {p}", c.name),
            None => c.name.clone(),
        })
        .collect();
    let failed: Vec<String> = status
        .components
        .iter()
        .flat_map(|c| c.objects.iter())
        .filter(|o| matches!(o.readiness, super::Readiness::Failed(_)))
        .map(|o| format!("{}: {}", o.reference, o.readiness.reason().unwrap_or_default()))
        .collect();
    let transition = |type_: &str, new_status: &str| -> String {
        previous
            .and_then(|p| p.get("conditions"))
            .and_then(Value::as_array)
            .and_then(|cs| cs.iter().find(|c| c.get("type").and_then(Value::as_str) == Some(type_)))
            .filter(|c| c.get("status").and_then(Value::as_str) == Some(new_status))
            .and_then(|c| c.get("lastTransitionTime").and_then(Value::as_str))
            .unwrap_or(now)
            .to_owned()
    };
    let (ready_status, ready_reason, ready_message) = if status.ready {
        ("True", "ComponentsReady", format!("all {total} components ready"))
    } else {
        ("False", "ComponentsNotReady", format!("{ready}/{total} ready; not ready: {}", not_ready.join("; ")))
    };
    let (error_status, error_reason, error_message) = if failed.is_empty() {
        ("False", "NoErrors", "no component failed".to_owned())
    } else {
        ("True", "ComponentsFailed", failed.join("; "))
    };
    let mut components: Vec<Value> = status
        .components
        .iter()
        .flat_map(|c| c.objects.iter())
        .map(|o| {
            let mut v = json!({"group": group_name(&o.reference.group), "kind": o.reference.kind, "name": o.reference.name,
                               "status": o.readiness.status_word()});
            if let Some(ns) = &o.reference.namespace {
                v["namespace"] = json!(ns);
            }
            if let Some(r) = o.readiness.reason() {
                v["message"] = json!(r);
            }
            v
        })
        .collect();
    // The user's notebook server: listed with the app, outside componentsReady and Ready.
    components.extend(status.journey.iter().map(|j| {
        json!({"group": "kubeflow.org", "kind": "Notebook", "name": j.name, "namespace": j.namespace,
               "status": if j.ready { "Ready" } else { "InProgress" },
               "message": "the user's notebook server (kfctl notebook): part of the journey, not required for Ready"})
    }));
    json!({
        "conditions": [
            {"type": "Ready", "status": ready_status, "reason": ready_reason, "message": truncate(&ready_message, 2000),
             "lastTransitionTime": transition("Ready", ready_status)},
            {"type": "Error", "status": error_status, "reason": error_reason, "message": truncate(&error_message, 2000),
             "lastTransitionTime": transition("Error", error_status)},
        ],
        "components": components,
        "componentsReady": format!("{ready}/{total}"),
    })
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max { s.to_owned() } else { format!("{}...", &s[..s.floor_char_boundary(max)]) }
}

/// Write the Application's status if it differs from what is stored. Returns whether it wrote.
pub async fn write_status(client: &Client, target: &AppTarget, status: &AppStatus) -> Result<bool, HealthError> {
    let previous = read_status(client, target).await?;
    let Some(previous) = previous else { return Ok(false) };
    let now = k8s_openapi::jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let desired = desired_status(status, Some(&previous), &now);
    if desired == previous {
        return Ok(false);
    }
    let api = application_api(client, target);
    let patch = json!({"apiVersion": APPLICATION_API_VERSION, "kind": APPLICATION_KIND, "status": desired});
    api.patch_status(&target.name, &PatchParams::apply(STATUS_FIELD_MANAGER).force(), &Patch::Apply(&patch))
        .await
        .map_err(|e| HealthError::Api { reason: crate::cluster::error_chain(&e) })?;
    Ok(true)
}
