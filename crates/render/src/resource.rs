//! The shared resource model: a Kubernetes object as kustomize sees it.

use serde_json::{Map, Value};

/// A Kubernetes object as kustomize sees it: a YAML mapping, plus where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    /// The object. Always a JSON/YAML mapping (serde_json::Map with preserve_order: field order kept).
    pub object: Map<String, Value>,
    /// Where it came from.
    pub origin: Origin,
    /// Ids this resource had before name/namespace/kind changes in this build, oldest first.
    /// Name-reference fixing matches referrers against these (kustomize's previousNames/Namespaces).
    pub previous_ids: Vec<ResId>,
    /// Set for objects made by configMapGenerator/secretGenerator.
    pub generated: Option<Generated>,
    /// Name prefixes added by namePrefix in this build, innermost kustomization first
    /// (kustomize's per-resource prefix history). nameReference uses it to tell apart
    /// candidates that share an original name.
    pub name_prefixes: Vec<String>,
    /// Name suffixes added by nameSuffix in this build, innermost kustomization first.
    pub name_suffixes: Vec<String>,
    /// Where the object, as read, has a mapping key written with no value (`key:`). It reads as
    /// null like `key: null`, but kustomize's strategic merge drops such a key wherever it walks
    /// and keeps an explicit null (see [`crate::patch::strategic_merge::drop_bare_keys`]). Empty
    /// for almost every object, and once a patch has rewritten the object.
    pub bare_keys: Vec<NodePath>,
}

/// A path to a node of an object: mapping keys and list positions, from the top.
pub type NodePath = Vec<PathSegment>;

/// One step of a [`NodePath`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathSegment {
    /// A mapping key.
    Field(String),
    /// A list position.
    Item(usize),
}

/// Generator metadata kept on a generated ConfigMap/Secret.
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    /// How the generator combines with an existing object of the same id.
    pub behavior: GeneratorBehavior,
    /// Whether the content hash is appended to the name at the end of the build.
    pub append_hash: bool,
}

/// configMapGenerator/secretGenerator `behavior`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GeneratorBehavior {
    /// A new object; an existing one with the same id is an error.
    Create,
    /// Merge data into an existing object from a base.
    Merge,
    /// Replace the data of an existing object from a base.
    Replace,
}

/// Which file produced a resource, and through which kustomizations (root first).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Origin {
    /// The file the object was read from; None for generated objects.
    pub file: Option<std::path::PathBuf>,
    /// The kustomization directories that included it, from the root being built down to the one
    /// whose `resources`/generators named it.
    pub kustomizations: Vec<std::path::PathBuf>,
}

/// kustomize's resource id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResId {
    /// API group, "" for the core group.
    pub group: String,
    /// API version without the group.
    pub version: String,
    /// Kind.
    pub kind: String,
    /// metadata.name.
    pub name: String,
    /// metadata.namespace, None when absent or empty.
    pub namespace: Option<String>,
}

impl ResId {
    /// Whether this id's kind is cluster-scoped (see [`is_cluster_scoped`]).
    pub fn is_cluster_scoped(&self) -> bool {
        is_cluster_scoped(&self.group, &self.version, &self.kind)
    }
}

impl std::fmt::Display for ResId {
    /// kustomize's ResId.String(): `Kind.version.group/name.namespace`, with `[noGrp]`,
    /// `[noVer]`, `[noKind]`, `[noName]`, `[noNs]` for empty parts.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let or = |s: &str, d: &'static str| if s.is_empty() { d.to_string() } else { s.to_string() };
        write!(
            f,
            "{}.{}.{}/{}.{}",
            or(&self.kind, "[noKind]"),
            or(&self.version, "[noVer]"),
            or(&self.group, "[noGrp]"),
            or(&self.name, "[noName]"),
            or(self.namespace.as_deref().unwrap_or(""), "[noNs]")
        )
    }
}

/// Whether (group, version, kind) is cluster-scoped in the Kubernetes schema kustomize embeds:
/// such objects get no namespace and their ids ignore it. kustomize decides by the exact
/// apiVersion and kind; anything its schema does not list as cluster-scoped (custom kinds, even
/// with a cluster-scoped CRD in the same build, other versions, create-only review kinds such as
/// TokenReview) counts as namespaced. The one table for the whole renderer.
pub fn is_cluster_scoped(group: &str, version: &str, kind: &str) -> bool {
    CLUSTER_SCOPED.iter().any(|(g, versions, k)| *k == kind && *g == group && versions.contains(&version))
}

/// Cluster-scoped (group, versions, kind) in kustomize v5's built-in schema (measured against
/// `kubectl kustomize` v5.5: every other apiVersion/kind receives a namespace).
const CLUSTER_SCOPED: &[(&str, &[&str], &str)] = &[
    ("", &["v1"], "Namespace"),
    ("", &["v1"], "Node"),
    ("", &["v1"], "PersistentVolume"),
    ("", &["v1"], "ComponentStatus"),
    ("admissionregistration.k8s.io", &["v1", "v1beta1"], "MutatingWebhookConfiguration"),
    ("admissionregistration.k8s.io", &["v1", "v1beta1"], "ValidatingWebhookConfiguration"),
    ("apiextensions.k8s.io", &["v1", "v1beta1"], "CustomResourceDefinition"),
    ("apiregistration.k8s.io", &["v1", "v1beta1"], "APIService"),
    ("certificates.k8s.io", &["v1", "v1beta1"], "CertificateSigningRequest"),
    ("flowcontrol.apiserver.k8s.io", &["v1beta1"], "FlowSchema"),
    ("flowcontrol.apiserver.k8s.io", &["v1beta1"], "PriorityLevelConfiguration"),
    ("networking.k8s.io", &["v1", "v1beta1"], "IngressClass"),
    ("node.k8s.io", &["v1", "v1beta1"], "RuntimeClass"),
    ("policy", &["v1beta1"], "PodSecurityPolicy"),
    ("rbac.authorization.k8s.io", &["v1", "v1beta1"], "ClusterRole"),
    ("rbac.authorization.k8s.io", &["v1", "v1beta1"], "ClusterRoleBinding"),
    ("scheduling.k8s.io", &["v1", "v1beta1"], "PriorityClass"),
    ("storage.k8s.io", &["v1", "v1beta1"], "CSIDriver"),
    ("storage.k8s.io", &["v1", "v1beta1"], "CSINode"),
    ("storage.k8s.io", &["v1", "v1beta1"], "StorageClass"),
    ("storage.k8s.io", &["v1", "v1beta1"], "VolumeAttachment"),
];

impl Resource {
    /// A resource read from `file` with no build history yet.
    pub fn new(object: Map<String, Value>, origin: Origin) -> Self {
        Resource {
            object,
            origin,
            previous_ids: Vec::new(),
            generated: None,
            name_prefixes: Vec::new(),
            name_suffixes: Vec::new(),
            bare_keys: Vec::new(),
        }
    }

    /// `apiVersion`, "" when absent.
    pub fn api_version(&self) -> &str {
        self.object.get("apiVersion").and_then(Value::as_str).unwrap_or("")
    }

    /// API group, "" for core.
    pub fn group(&self) -> &str {
        match self.api_version().rsplit_once('/') {
            Some((group, _)) => group,
            None => "",
        }
    }

    /// API version without the group.
    pub fn version(&self) -> &str {
        let api_version = self.api_version();
        match api_version.rsplit_once('/') {
            Some((_, version)) => version,
            None => api_version,
        }
    }

    /// `kind`, "" when absent.
    pub fn kind(&self) -> &str {
        self.object.get("kind").and_then(Value::as_str).unwrap_or("")
    }

    fn metadata(&self) -> Option<&Map<String, Value>> {
        self.object.get("metadata").and_then(Value::as_object)
    }

    /// `metadata.name`, "" when absent.
    pub fn name(&self) -> &str {
        self.metadata().and_then(|m| m.get("name")).and_then(Value::as_str).unwrap_or("")
    }

    /// `metadata.namespace`, None when absent or empty.
    pub fn namespace(&self) -> Option<&str> {
        self.metadata()
            .and_then(|m| m.get("namespace"))
            .and_then(Value::as_str)
            .filter(|ns| !ns.is_empty())
    }

    /// The current id.
    pub fn id(&self) -> ResId {
        ResId {
            group: self.group().to_string(),
            version: self.version().to_string(),
            kind: self.kind().to_string(),
            name: self.name().to_string(),
            namespace: self.namespace().map(str::to_string),
        }
    }

    /// `metadata.labels`.
    pub fn labels(&self) -> Option<&Map<String, Value>> {
        self.metadata().and_then(|m| m.get("labels")).and_then(Value::as_object)
    }

    /// `metadata.annotations`.
    pub fn annotations(&self) -> Option<&Map<String, Value>> {
        self.metadata().and_then(|m| m.get("annotations")).and_then(Value::as_object)
    }

    /// `metadata`, created as an empty mapping when absent or not a mapping.
    pub fn metadata_mut(&mut self) -> &mut Map<String, Value> {
        let entry = self.object.entry("metadata").or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        entry.as_object_mut().expect("metadata was just made a mapping")
    }

    /// Whether this object's kind is cluster-scoped (see [`is_cluster_scoped`]).
    pub fn is_cluster_scoped(&self) -> bool {
        is_cluster_scoped(self.group(), self.version(), self.kind())
    }

    /// Record the current id in previous_ids, then set metadata.name.
    pub fn rename(&mut self, new_name: &str) {
        self.previous_ids.push(self.id());
        self.metadata_mut().insert("name".into(), Value::String(new_name.to_string()));
    }

    /// Record the current id in previous_ids, then set metadata.namespace.
    pub fn set_namespace(&mut self, ns: &str) {
        self.previous_ids.push(self.id());
        self.metadata_mut().insert("namespace".into(), Value::String(ns.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn res(v: Value) -> Resource {
        Resource::new(v.as_object().unwrap().clone(), Origin::default())
    }

    #[test]
    fn group_version_split() {
        let r = res(json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "a"}}));
        assert_eq!((r.group(), r.version(), r.kind(), r.name()), ("apps", "v1", "Deployment", "a"));
        let core = res(json!({"apiVersion": "v1", "kind": "Service"}));
        assert_eq!((core.group(), core.version(), core.name(), core.namespace()), ("", "v1", "", None));
    }

    #[test]
    fn cluster_scoped_by_exact_api_version_as_kustomize() {
        // Measured with kubectl kustomize v5.5 (namespace: ns1 on each kind).
        let cases = [
            ("", "v1", "Namespace", true),
            ("policy", "v1beta1", "PodSecurityPolicy", true),
            ("extensions", "v1beta1", "PodSecurityPolicy", false),
            ("rbac.authorization.k8s.io", "v1alpha1", "ClusterRoleBinding", false),
            ("flowcontrol.apiserver.k8s.io", "v1beta1", "FlowSchema", true),
            ("flowcontrol.apiserver.k8s.io", "v1beta2", "FlowSchema", false),
            ("authentication.k8s.io", "v1", "TokenReview", false),
            ("authorization.k8s.io", "v1", "SubjectAccessReview", false),
            ("storage.k8s.io", "v1beta1", "CSINode", true),
            ("storage.k8s.io", "v1alpha1", "VolumeAttachment", false),
        ];
        for (group, version, kind, want) in cases {
            assert_eq!(is_cluster_scoped(group, version, kind), want, "{group}/{version} {kind}");
        }
        let id = ResId { group: "".into(), version: "v1".into(), kind: "Node".into(), name: "n".into(), namespace: None };
        assert!(id.is_cluster_scoped());
    }

    #[test]
    fn rename_records_previous_id() {
        let mut r = res(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "namespace": "x"}}));
        r.rename("b");
        r.set_namespace("y");
        assert_eq!(r.previous_ids.len(), 2);
        assert_eq!(r.previous_ids[0].name, "a");
        assert_eq!(r.previous_ids[1].name, "b");
        assert_eq!(r.previous_ids[1].namespace.as_deref(), Some("x"));
        assert_eq!(r.id().to_string(), "ConfigMap.v1.[noGrp]/b.y");
    }
}
