//! What kfctl knows for certain about each object it applied: "at this resourceVersion (uid,
//! generation) the object was exactly the desired object with this hash". Kept in the inventory
//! ConfigMap, it lets a no-op apply read only object metadata instead of every full object (the
//! Kubeflow CRDs alone are megabytes): an object whose desired hash and resourceVersion both
//! match its record has not been written since, so it still is what kfctl applied.
//!
//! A record is a fact about the object at one version, never a guess: anything that does not
//! match one (a new object, a changed desired object, a write by a person or a controller) is
//! compared in full as before, so a hand edit is still corrected by the next apply.

use std::collections::{BTreeMap, BTreeSet};

use kube::api::ObjectMeta;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::plan::{Plan, PlannedObject};

/// One object's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppliedRecord {
    /// [`desired_hash`] of the object kfctl applied (or found equal to it).
    pub hash: String,
    /// The resourceVersion the object had then.
    pub resource_version: String,
    /// The object's uid then: a deleted and recreated object is a different object.
    pub uid: String,
    /// `metadata.generation` then, where the server keeps one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
}

/// Records by [`record_key`].
pub type AppliedState = BTreeMap<String, AppliedRecord>;

/// The key of an object's record: `group/kind/namespace/name` (an empty namespace when cluster
/// scoped). The version is left out: the hash covers it.
pub fn record_key(o: &PlannedObject) -> String {
    let r = &o.reference;
    format!("{}/{}/{}/{}", r.group, r.kind, r.namespace.as_deref().unwrap_or(""), r.name)
}

/// SHA-256 (hex) of the object's canonical JSON: keys sorted at every level, so the hash does
/// not depend on the order the renderer produced them in.
pub fn desired_hash(object: &Value) -> String {
    let mut text = String::new();
    canonical(object, &mut text);
    let digest = Sha256::digest(text.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            out.push('{');
            let sorted: BTreeMap<&String, &Value> = map.iter().collect();
            for (i, (k, v)) in sorted.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                canonical(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(v, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// A record of `meta`, the live metadata of an object equal to the desired one with `hash`.
pub fn record_of(hash: String, meta: &ObjectMeta) -> Option<AppliedRecord> {
    Some(AppliedRecord {
        hash,
        resource_version: meta.resource_version.clone()?,
        uid: meta.uid.clone()?,
        generation: meta.generation,
    })
}

/// The (group, kind)s whose `metadata.generation` the server bumps on every change outside
/// metadata and status: apps workloads, CRDs, and custom resources of the CRDs in `plan` (the
/// apiextensions server does so for every custom resource). For these a resourceVersion moved by
/// a status write (a Deployment becoming ready, a CRD becoming Established) does not hide a change.
pub fn generation_tracked_kinds(plan: &Plan) -> BTreeSet<(String, String)> {
    let mut kinds: BTreeSet<(String, String)> = [
        ("apps", "Deployment"),
        ("apps", "StatefulSet"),
        ("apps", "DaemonSet"),
        ("apps", "ReplicaSet"),
        ("apiextensions.k8s.io", "CustomResourceDefinition"),
    ]
    .iter()
    .map(|(g, k)| (g.to_string(), k.to_string()))
    .collect();
    for o in plan.phases.iter().flat_map(|p| &p.objects) {
        if o.reference.group == "apiextensions.k8s.io" && o.reference.kind == "CustomResourceDefinition" {
            let field = |pointer: &str| o.object.pointer(pointer).and_then(Value::as_str).map(str::to_owned);
            if let (Some(group), Some(kind)) = (field("/spec/group"), field("/spec/names/kind")) {
                kinds.insert((group, kind));
            }
        }
    }
    kinds
}

/// Whether the live object with metadata `meta` is, for certain, still what kfctl applied as
/// `desired` (whose hash is `hash`), without reading it in full: the desired object is the one
/// recorded, and either nobody wrote the object since (same resourceVersion), or — for kinds
/// whose generation tracks every change outside metadata and status — it is the same object at
/// the same generation and its labels and annotations still hold kfctl's.
pub fn unchanged_for_certain(
    record: Option<&AppliedRecord>,
    hash: &str,
    desired: &Value,
    meta: &ObjectMeta,
    generation_tracked: bool,
) -> bool {
    let Some(record) = record else { return false };
    if record.hash != hash || meta.uid.as_deref() != Some(record.uid.as_str()) {
        return false;
    }
    if meta.resource_version.as_deref() == Some(record.resource_version.as_str()) {
        return true;
    }
    generation_tracked
        && record.generation.is_some()
        && meta.generation == record.generation
        && metadata_holds(desired, meta)
}

/// Every label and annotation of `desired` is on the live object with the same value.
fn metadata_holds(desired: &Value, meta: &ObjectMeta) -> bool {
    let holds = |key: &str, live: Option<&BTreeMap<String, String>>| match desired.pointer(&format!("/metadata/{key}")) {
        None | Some(Value::Null) => true,
        Some(Value::Object(want)) => want.iter().all(|(k, v)| {
            let have = live.and_then(|l| l.get(k));
            match v {
                Value::String(s) => have == Some(s),
                Value::Null => have.is_none_or(String::is_empty),
                _ => false,
            }
        }),
        Some(_) => false,
    };
    holds("labels", meta.labels.as_ref()) && holds("annotations", meta.annotations.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn meta(rv: &str, uid: &str, generation: Option<i64>, labels: &[(&str, &str)]) -> ObjectMeta {
        ObjectMeta {
            resource_version: Some(rv.into()),
            uid: Some(uid.into()),
            generation,
            labels: Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
            ..Default::default()
        }
    }

    fn desired() -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "labels": {"app": "d"}}, "spec": {"replicas": 1}})
    }

    #[test]
    fn hash_ignores_key_order_but_not_values() {
        let a = json!({"a": 1, "b": {"c": [1, "x"], "d": null}});
        let b = json!({"b": {"d": null, "c": [1, "x"]}, "a": 1});
        assert_eq!(desired_hash(&a), desired_hash(&b));
        assert_ne!(desired_hash(&a), desired_hash(&json!({"a": 1, "b": {"c": ["x", 1], "d": null}})));
        assert_ne!(desired_hash(&json!({"a": "1"})), desired_hash(&json!({"a": 1})));
    }

    #[test]
    fn same_hash_and_resource_version_is_unchanged() {
        let d = desired();
        let hash = desired_hash(&d);
        let record = record_of(hash.clone(), &meta("10", "u", None, &[("app", "d")])).unwrap();
        assert!(unchanged_for_certain(Some(&record), &hash, &d, &meta("10", "u", None, &[]), false));
        // Anything else is compared in full.
        assert!(!unchanged_for_certain(None, &hash, &d, &meta("10", "u", None, &[]), false));
        assert!(!unchanged_for_certain(Some(&record), "other", &d, &meta("10", "u", None, &[]), false));
        assert!(!unchanged_for_certain(Some(&record), &hash, &d, &meta("11", "u", None, &[("app", "d")]), false));
        assert!(!unchanged_for_certain(Some(&record), &hash, &d, &meta("10", "v", None, &[]), false));
    }

    #[test]
    fn generation_covers_status_writes_only_where_tracked() {
        let d = desired();
        let hash = desired_hash(&d);
        let record = record_of(hash.clone(), &meta("10", "u", Some(1), &[("app", "d")])).unwrap();
        // A status write moved the resourceVersion, not the generation.
        assert!(unchanged_for_certain(Some(&record), &hash, &d, &meta("12", "u", Some(1), &[("app", "d")]), true));
        assert!(!unchanged_for_certain(Some(&record), &hash, &d, &meta("12", "u", Some(1), &[("app", "d")]), false));
        // A spec edit bumps the generation; a label edit does not, but the labels show it.
        assert!(!unchanged_for_certain(Some(&record), &hash, &d, &meta("12", "u", Some(2), &[("app", "d")]), true));
        assert!(!unchanged_for_certain(Some(&record), &hash, &d, &meta("12", "u", Some(1), &[("app", "x")]), true));
        assert!(!unchanged_for_certain(Some(&record), &hash, &d, &meta("12", "u", Some(1), &[]), true));
        // Recreated: same generation, other uid.
        assert!(!unchanged_for_certain(Some(&record), &hash, &d, &meta("12", "w", Some(1), &[("app", "d")]), true));
    }
}
