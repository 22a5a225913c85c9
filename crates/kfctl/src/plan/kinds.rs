//! What kfctl knows about kinds without asking the cluster: resource names and scope.

use std::collections::HashMap;

use kube::api::{ApiResource, GroupVersionKind};
use serde_json::Value;

/// A kind's resource name (plural) and whether its objects live in a namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindInfo {
    pub plural: String,
    pub namespaced: bool,
}

/// Kinds by (group, kind). Filled from built-in knowledge, CRDs in the rendered set, and (when
/// connected) discovery, which wins.
#[derive(Debug, Clone, Default)]
pub struct KindTable {
    kinds: HashMap<(String, String), KindInfo>,
}

/// Cluster-scoped built-in kinds; every other built-in kind is namespaced.
const CLUSTER_SCOPED: &[(&str, &str)] = &[
    ("", "Namespace"),
    ("", "Node"),
    ("", "PersistentVolume"),
    ("rbac.authorization.k8s.io", "ClusterRole"),
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"),
    ("apiextensions.k8s.io", "CustomResourceDefinition"),
    ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration"),
    ("admissionregistration.k8s.io", "MutatingWebhookConfiguration"),
    ("apiregistration.k8s.io", "APIService"),
    ("storage.k8s.io", "StorageClass"),
    ("storage.k8s.io", "CSIDriver"),
    ("storage.k8s.io", "VolumeAttachment"),
    ("scheduling.k8s.io", "PriorityClass"),
    ("policy", "PodSecurityPolicy"),
    ("networking.k8s.io", "IngressClass"),
    ("node.k8s.io", "RuntimeClass"),
];

/// Whether `group` is one of Kubernetes' own API groups (core, `apps`, `*.k8s.io`, ...), as
/// opposed to a group defined by a CRD (which always contains a dot and is not `*.k8s.io`).
pub fn is_builtin_group(group: &str) -> bool {
    group.is_empty() || !group.contains('.') || group.ends_with(".k8s.io")
}

/// The plural the API server would most likely use, by the same rules kube-rs and kubectl follow.
pub fn guess_plural(kind: &str) -> String {
    ApiResource::from_gvk(&GroupVersionKind::gvk("", "v1", kind)).plural
}

impl KindTable {
    /// Built-in knowledge only: scope of the core kinds; plurals guessed.
    pub fn builtin() -> KindTable {
        let mut table = KindTable::default();
        for (group, kind) in CLUSTER_SCOPED {
            table.insert(group, kind, KindInfo { plural: guess_plural(kind), namespaced: false });
        }
        table
    }

    pub fn insert(&mut self, group: &str, kind: &str, info: KindInfo) {
        self.kinds.insert((group.to_owned(), kind.to_owned()), info);
    }

    /// What is known about `kind` in `group`. Built-in namespaced kinds are not listed: callers
    /// fall back to whether the object carries a namespace.
    pub fn lookup(&self, group: &str, kind: &str) -> Option<KindInfo> {
        self.kinds.get(&(group.to_owned(), kind.to_owned())).cloned()
    }

    /// Whether objects of `kind` in `group` live in a namespace: what the table knows, else
    /// namespaced for the built-in groups (every built-in cluster-scoped kind is listed), else
    /// unknown (a custom kind whose CRD is neither in the set nor discovered).
    pub fn namespaced(&self, group: &str, kind: &str) -> Option<bool> {
        match self.lookup(group, kind) {
            Some(info) => Some(info.namespaced),
            None if is_builtin_group(group) => Some(true),
            None => None,
        }
    }

    /// Learn the kinds defined by the CustomResourceDefinitions among `objects`.
    pub fn add_crds<'a>(&mut self, objects: impl Iterator<Item = &'a Value>) {
        for crd in objects.filter_map(CrdKind::of) {
            self.insert(crd.group, crd.kind, crd.info);
        }
    }
}

/// The kind a CustomResourceDefinition defines, as written in it.
pub struct CrdKind<'a> {
    pub group: &'a str,
    pub kind: &'a str,
    pub info: KindInfo,
    /// The versions it serves: apiextensions v1's `versions` not marked `served: false`, and
    /// v1beta1's single `version`.
    pub served_versions: Vec<&'a str>,
}

impl<'a> CrdKind<'a> {
    /// `object`'s kind, when it is a CRD that names its group, kind and plural.
    pub fn of(object: &'a Value) -> Option<CrdKind<'a>> {
        if object.get("kind").and_then(Value::as_str) != Some("CustomResourceDefinition") {
            return None;
        }
        let spec = |p: &str| object.pointer(p).and_then(Value::as_str);
        let (group, kind, plural) = (spec("/spec/group")?, spec("/spec/names/kind")?, spec("/spec/names/plural")?);
        let namespaced = spec("/spec/scope") != Some("Cluster");
        let mut served_versions: Vec<&str> = object
            .pointer("/spec/versions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|v| v.get("served").and_then(Value::as_bool) != Some(false))
            .filter_map(|v| v.get("name").and_then(Value::as_str))
            .collect();
        served_versions.extend(spec("/spec/version"));
        Some(CrdKind { group, kind, info: KindInfo { plural: plural.to_owned(), namespaced }, served_versions })
    }
}
