//! The transformer configuration: kustomize's built-in fieldSpec tables (which fields each
//! built-in transformer touches, per kind) plus what a kustomization's `configurations:` files
//! add to them.
//!
//! The tables follow kustomize v5's `api/internal/konfig/builtinpluginconsts`; where its source and
//! `kubectl kustomize` v5.5 disagree, the measured behaviour wins (noted inline).

use serde::Deserialize;
use serde_json::Value;

use crate::fieldspec::{FieldSpec, Gvk};

/// Which fields each built-in transformer reads or writes, per kind.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TransformerConfig {
    /// Fields that `namePrefix` prefixes.
    pub name_prefix: Vec<FieldSpec>,
    /// Fields that `nameSuffix` suffixes.
    pub name_suffix: Vec<FieldSpec>,
    /// Fields that `namespace` sets.
    pub namespace: Vec<FieldSpec>,
    /// Fields that `commonLabels` (and `labels` with `includeSelectors`) set.
    pub common_labels: Vec<FieldSpec>,
    /// Pod-template label fields that `labels` with `includeTemplates` set.
    pub template_labels: Vec<FieldSpec>,
    /// Fields that `commonAnnotations` set.
    pub common_annotations: Vec<FieldSpec>,
    /// For each kind that can be renamed, the fields of other objects that hold its name.
    pub name_reference: Vec<NameBackReference>,
    /// Fields in which `$(VAR)` references are replaced.
    pub var_reference: Vec<FieldSpec>,
    /// Image fields beyond `containers`/`initContainers`, for `images`.
    pub images: Vec<FieldSpec>,
    /// Replica-count fields, for `replicas`.
    pub replicas: Vec<FieldSpec>,
}

/// kustomize's NameBackReferences: objects of kind `gvk` are referred to by name from `referrers`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NameBackReference {
    /// The referred-to kind (its group/version may be empty = any).
    pub gvk: Gvk,
    /// Fields (in other objects) holding the name of an object of `gvk`.
    pub referrers: Vec<FieldSpec>,
}

/// A `configurations:` file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The file's content does not have the transformer-config shape.
    #[error("invalid transformer configuration: {0}")]
    Invalid(String),
    /// The same field is configured once with `create: true` and once with `create: false`.
    #[error("conflicting fieldspecs: path '{path}' for kind '{kind}' is given with different 'create' values")]
    Conflict {
        /// The field path.
        path: String,
        /// The kind it is given for ("" = any).
        kind: String,
    },
}

/// The shape of a `configurations:` file (kustomize's TransformerConfig YAML).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConfigFile {
    #[serde(default)]
    name_prefix: Option<Vec<FieldSpec>>,
    #[serde(default)]
    name_suffix: Option<Vec<FieldSpec>>,
    #[serde(default)]
    namespace: Option<Vec<FieldSpec>>,
    #[serde(default)]
    common_labels: Option<Vec<FieldSpec>>,
    #[serde(default)]
    template_labels: Option<Vec<FieldSpec>>,
    #[serde(default)]
    common_annotations: Option<Vec<FieldSpec>>,
    #[serde(default)]
    name_reference: Option<Vec<NameReferenceEntry>>,
    #[serde(default)]
    var_reference: Option<Vec<FieldSpec>>,
    #[serde(default)]
    images: Option<Vec<FieldSpec>>,
    #[serde(default)]
    replicas: Option<Vec<FieldSpec>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NameReferenceEntry {
    #[serde(default)]
    group: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    field_specs: Option<Vec<FieldSpec>>,
}

impl TransformerConfig {
    /// kustomize's default configuration (what a kustomization without `configurations:` gets).
    pub fn builtin() -> TransformerConfig {
        TransformerConfig {
            name_prefix: vec![FieldSpec::new("metadata/name", false)],
            name_suffix: vec![FieldSpec::new("metadata/name", false)],
            namespace: specs(NAMESPACE),
            common_labels: [specs(COMMON_LABEL_SELECTORS), specs(METADATA_LABELS)].concat(),
            template_labels: specs(METADATA_LABELS).into_iter().filter(|fs| fs.path != "metadata/labels").collect(),
            common_annotations: specs(COMMON_ANNOTATIONS),
            name_reference: builtin_name_references(),
            var_reference: specs(VAR_REFERENCE),
            images: specs(IMAGES),
            replicas: specs(REPLICAS),
        }
    }

    /// Parses one `configurations:` file (already read as YAML into a value).
    pub fn from_value(value: &Value) -> Result<TransformerConfig, ConfigError> {
        if value.is_null() {
            return Ok(TransformerConfig::default());
        }
        let file: ConfigFile =
            serde_json::from_value(value.clone()).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        Ok(TransformerConfig {
            name_prefix: file.name_prefix.unwrap_or_default(),
            name_suffix: file.name_suffix.unwrap_or_default(),
            namespace: file.namespace.unwrap_or_default(),
            common_labels: file.common_labels.unwrap_or_default(),
            template_labels: file.template_labels.unwrap_or_default(),
            common_annotations: file.common_annotations.unwrap_or_default(),
            name_reference: file
                .name_reference
                .unwrap_or_default()
                .into_iter()
                .map(|entry| NameBackReference {
                    gvk: Gvk { group: entry.group, version: entry.version, kind: entry.kind },
                    referrers: entry.field_specs.unwrap_or_default(),
                })
                .collect(),
            var_reference: file.var_reference.unwrap_or_default(),
            images: file.images.unwrap_or_default(),
            replicas: file.replicas.unwrap_or_default(),
        })
    }

    /// The built-in configuration merged with each `configurations:` file, in order.
    pub fn with_files(files: &[Value]) -> Result<TransformerConfig, ConfigError> {
        let mut config = TransformerConfig::builtin();
        for file in files {
            config.merge(&TransformerConfig::from_value(file)?)?;
        }
        Ok(config)
    }

    /// Adds `other`'s fieldSpecs to this configuration as kustomize does: a fieldSpec already
    /// covered (same path, and this one's selector matches the other's) is skipped, unless the two
    /// disagree on `create`, which is an error. Name references to the same kind are combined.
    pub fn merge(&mut self, other: &TransformerConfig) -> Result<(), ConfigError> {
        merge_specs(&mut self.name_prefix, &other.name_prefix)?;
        merge_specs(&mut self.name_suffix, &other.name_suffix)?;
        merge_specs(&mut self.namespace, &other.namespace)?;
        merge_specs(&mut self.common_labels, &other.common_labels)?;
        merge_specs(&mut self.template_labels, &other.template_labels)?;
        merge_specs(&mut self.common_annotations, &other.common_annotations)?;
        merge_specs(&mut self.var_reference, &other.var_reference)?;
        merge_specs(&mut self.images, &other.images)?;
        merge_specs(&mut self.replicas, &other.replicas)?;
        for incoming in &other.name_reference {
            match self.name_reference.iter_mut().find(|nbr| nbr.gvk == incoming.gvk) {
                Some(existing) => merge_specs(&mut existing.referrers, &incoming.referrers)?,
                None => self.name_reference.push(incoming.clone()),
            }
        }
        Ok(())
    }
}

impl TransformerConfig {
    /// The config a kustomization's `crds:` file adds (kustomize's LoadConfigFromCRDs): the file
    /// maps OpenAPI type names to definitions; in each definition that looks like a Kubernetes
    /// type (`kind`, `apiVersion`, `metadata` properties), properties marked
    /// `x-kubernetes-annotation`, `x-kubernetes-label-selector`, `x-kubernetes-identity` or
    /// `x-kubernetes-object-ref-api-version` + `x-kubernetes-object-ref-kind` become
    /// commonAnnotations, commonLabels, namePrefix and nameReference fieldSpecs (`$ref`s are
    /// followed).
    pub fn from_crd_openapi(definitions: &Value) -> Result<TransformerConfig, ConfigError> {
        let Some(definitions) = definitions.as_object() else {
            return Err(ConfigError::Invalid("a crds file must map type names to OpenAPI definitions".into()));
        };
        let mut config = TransformerConfig::default();
        for (type_name, definition) in definitions {
            let properties = schema_properties(definition);
            let is_k8s_type = properties
                .is_some_and(|p| p.contains_key("kind") && p.contains_key("apiVersion") && p.contains_key("metadata"));
            if !is_k8s_type {
                continue;
            }
            // kustomize takes only the kind, from the last dot-separated part of the type name.
            let kind = type_name.rsplit('.').next().unwrap_or(type_name).to_string();
            let mut found = TransformerConfig::default();
            crd_fields(&mut found, &kind, definitions, type_name, &mut Vec::new(), 0);
            config.merge(&found)?;
        }
        Ok(config)
    }
}

/// The `properties` of a definition in a `crds:` file. kustomize's files wrap each definition as
/// `{"Schema": {...}, "Dependencies": [...]}` (kube-openapi's OpenAPIDefinition); bare schemas
/// are read as they are.
fn schema_properties(definition: &Value) -> Option<&serde_json::Map<String, Value>> {
    definition.get("Schema").unwrap_or(definition).get("properties").and_then(Value::as_object)
}

fn crd_fields(
    config: &mut TransformerConfig,
    kind: &str,
    definitions: &serde_json::Map<String, Value>,
    type_name: &str,
    path: &mut Vec<String>,
    depth: usize,
) {
    // $ref chains are finite in real schemas; the bound only guards against self-references.
    if depth > 32 {
        return;
    }
    let Some(properties) = definitions.get(type_name).and_then(schema_properties) else {
        return;
    };
    for (name, property) in properties {
        path.push(name.clone());
        let at = |extra: Option<&str>| {
            let mut p = path.join("/");
            if let Some(extra) = extra {
                p.push('/');
                p.push_str(extra);
            }
            FieldSpec { kind: kind.to_string(), path: p, ..FieldSpec::default() }
        };
        let has = |key: &str| property.get(key).is_some();
        if has("x-kubernetes-annotation") {
            let _ = merge_specs(&mut config.common_annotations, &[at(None)]);
        }
        if has("x-kubernetes-label-selector") {
            let _ = merge_specs(&mut config.common_labels, &[at(None)]);
        }
        if has("x-kubernetes-identity") {
            let _ = merge_specs(&mut config.name_prefix, &[at(None)]);
        }
        let text = |key: &str| property.get(key).and_then(Value::as_str);
        if let (Some(version), Some(ref_kind)) =
            (text("x-kubernetes-object-ref-api-version"), text("x-kubernetes-object-ref-kind"))
        {
            let name_key = text("x-kubernetes-object-ref-name-key").unwrap_or("name");
            let back_ref = NameBackReference {
                gvk: Gvk { group: String::new(), version: version.to_string(), kind: ref_kind.to_string() },
                referrers: vec![at(Some(name_key))],
            };
            let _ = TransformerConfig::merge(config, &TransformerConfig { name_reference: vec![back_ref], ..Default::default() });
        }
        if let Some(reference) = property.get("$ref").and_then(Value::as_str) {
            crd_fields(config, kind, definitions, reference, path, depth + 1);
        }
        path.pop();
    }
}

/// kustomize's FsSlice.MergeAll.
pub fn merge_specs(into: &mut Vec<FieldSpec>, incoming: &[FieldSpec]) -> Result<(), ConfigError> {
    for spec in incoming {
        let existing = into.iter().find(|have| have.path == spec.path && have.selects(&spec.gvk()));
        match existing {
            Some(have) if have.create != spec.create => {
                return Err(ConfigError::Conflict { path: spec.path.clone(), kind: spec.kind.clone() });
            }
            Some(_) => {}
            None => into.push(spec.clone()),
        }
    }
    Ok(())
}

/// (group, version, kind, path, create)
type Row = (&'static str, &'static str, &'static str, &'static str, bool);

fn specs(rows: &[Row]) -> Vec<FieldSpec> {
    rows.iter().map(|row| spec(*row)).collect()
}

fn spec((group, version, kind, path, create): (&str, &str, &str, &str, bool)) -> FieldSpec {
    FieldSpec {
        group: group.to_string(),
        version: version.to_string(),
        kind: kind.to_string(),
        path: path.to_string(),
        create,
    }
}

const NAMESPACE: &[Row] = &[
    ("", "", "", "metadata/namespace", true),
    // Only apiVersion v1 Namespaces are renamed (the namespace transformer checks this).
    ("", "", "Namespace", "metadata/name", true),
    // RoleBinding subjects are handled in code (only subjects named "default").
    ("", "", "RoleBinding", "subjects/namespace", false),
    ("", "", "ClusterRoleBinding", "subjects/namespace", false),
    ("apiregistration.k8s.io", "", "APIService", "spec/service/namespace", true),
    ("apiextensions.k8s.io", "", "CustomResourceDefinition", "spec/conversion/webhook/clientConfig/service/namespace", false),
];

/// Label selectors that commonLabels (and `labels` with includeSelectors) also set.
const COMMON_LABEL_SELECTORS: &[Row] = &[
    ("", "v1", "Service", "spec/selector", true),
    ("", "v1", "ReplicationController", "spec/selector", true),
    ("", "", "Deployment", "spec/selector/matchLabels", true),
    ("apps", "", "Deployment", "spec/template/spec/affinity/podAffinity/preferredDuringSchedulingIgnoredDuringExecution/podAffinityTerm/labelSelector/matchLabels", false),
    ("apps", "", "Deployment", "spec/template/spec/affinity/podAffinity/requiredDuringSchedulingIgnoredDuringExecution/labelSelector/matchLabels", false),
    ("apps", "", "Deployment", "spec/template/spec/affinity/podAntiAffinity/preferredDuringSchedulingIgnoredDuringExecution/podAffinityTerm/labelSelector/matchLabels", false),
    ("apps", "", "Deployment", "spec/template/spec/affinity/podAntiAffinity/requiredDuringSchedulingIgnoredDuringExecution/labelSelector/matchLabels", false),
    ("apps", "", "Deployment", "spec/template/spec/topologySpreadConstraints/labelSelector/matchLabels", false),
    ("", "", "ReplicaSet", "spec/selector/matchLabels", true),
    ("", "", "DaemonSet", "spec/selector/matchLabels", true),
    ("apps", "", "StatefulSet", "spec/selector/matchLabels", true),
    ("apps", "", "StatefulSet", "spec/template/spec/affinity/podAffinity/preferredDuringSchedulingIgnoredDuringExecution/podAffinityTerm/labelSelector/matchLabels", false),
    ("apps", "", "StatefulSet", "spec/template/spec/affinity/podAffinity/requiredDuringSchedulingIgnoredDuringExecution/labelSelector/matchLabels", false),
    ("apps", "", "StatefulSet", "spec/template/spec/affinity/podAntiAffinity/preferredDuringSchedulingIgnoredDuringExecution/podAffinityTerm/labelSelector/matchLabels", false),
    ("apps", "", "StatefulSet", "spec/template/spec/affinity/podAntiAffinity/requiredDuringSchedulingIgnoredDuringExecution/labelSelector/matchLabels", false),
    ("apps", "", "StatefulSet", "spec/template/spec/topologySpreadConstraints/labelSelector/matchLabels", false),
    ("batch", "", "Job", "spec/selector/matchLabels", false),
    ("batch", "", "CronJob", "spec/jobTemplate/spec/selector/matchLabels", false),
    ("policy", "", "PodDisruptionBudget", "spec/selector/matchLabels", false),
    ("networking.k8s.io", "", "NetworkPolicy", "spec/podSelector/matchLabels", false),
    ("networking.k8s.io", "", "NetworkPolicy", "spec/ingress/from/podSelector/matchLabels", false),
    ("networking.k8s.io", "", "NetworkPolicy", "spec/egress/to/podSelector/matchLabels", false),
];

/// Object and pod-template label fields (kustomize's metadataLabelsFieldSpecs).
const METADATA_LABELS: &[Row] = &[
    ("", "", "", "metadata/labels", true),
    ("", "v1", "ReplicationController", "spec/template/metadata/labels", true),
    ("", "", "Deployment", "spec/template/metadata/labels", true),
    ("", "", "ReplicaSet", "spec/template/metadata/labels", true),
    ("", "", "DaemonSet", "spec/template/metadata/labels", true),
    ("apps", "", "StatefulSet", "spec/template/metadata/labels", true),
    ("apps", "", "StatefulSet", "spec/volumeClaimTemplates[]/metadata/labels", true),
    ("batch", "", "Job", "spec/template/metadata/labels", true),
    ("batch", "", "CronJob", "spec/jobTemplate/metadata/labels", true),
    ("batch", "", "CronJob", "spec/jobTemplate/spec/template/metadata/labels", true),
];

const COMMON_ANNOTATIONS: &[Row] = &[
    ("", "", "", "metadata/annotations", true),
    ("", "v1", "ReplicationController", "spec/template/metadata/annotations", true),
    ("", "", "Deployment", "spec/template/metadata/annotations", true),
    ("", "", "ReplicaSet", "spec/template/metadata/annotations", true),
    ("", "", "DaemonSet", "spec/template/metadata/annotations", true),
    ("apps", "", "StatefulSet", "spec/template/metadata/annotations", true),
    ("batch", "", "Job", "spec/template/metadata/annotations", true),
    ("batch", "", "CronJob", "spec/jobTemplate/metadata/annotations", true),
    ("batch", "", "CronJob", "spec/jobTemplate/spec/template/metadata/annotations", true),
];

const IMAGES: &[Row] = &[
    ("", "", "", "spec/containers[]/image", true),
    ("", "", "", "spec/initContainers[]/image", true),
    ("", "", "", "spec/template/spec/containers[]/image", true),
    ("", "", "", "spec/template/spec/initContainers[]/image", true),
];

const REPLICAS: &[Row] = &[
    ("", "", "Deployment", "spec/replicas", true),
    ("", "", "ReplicationController", "spec/replicas", true),
    ("", "", "ReplicaSet", "spec/replicas", true),
    ("", "", "StatefulSet", "spec/replicas", true),
];

const VAR_REFERENCE: &[Row] = &[
    ("", "", "CronJob", "spec/jobTemplate/spec/template/spec/containers/args", false),
    ("", "", "CronJob", "spec/jobTemplate/spec/template/spec/containers/command", false),
    ("", "", "CronJob", "spec/jobTemplate/spec/template/spec/containers/env/value", false),
    ("", "", "CronJob", "spec/jobTemplate/spec/template/spec/containers/volumeMounts/mountPath", false),
    ("", "", "CronJob", "spec/jobTemplate/spec/template/spec/initContainers/args", false),
    ("", "", "CronJob", "spec/jobTemplate/spec/template/spec/initContainers/command", false),
    ("", "", "CronJob", "spec/jobTemplate/spec/template/spec/initContainers/env/value", false),
    ("", "", "CronJob", "spec/jobTemplate/spec/template/spec/initContainers/volumeMounts/mountPath", false),
    ("", "", "CronJob", "spec/jobTemplate/spec/template/spec/volumes/nfs/server", false),
    ("", "", "DaemonSet", "spec/template/spec/containers/args", false),
    ("", "", "DaemonSet", "spec/template/spec/containers/command", false),
    ("", "", "DaemonSet", "spec/template/spec/containers/env/value", false),
    ("", "", "DaemonSet", "spec/template/spec/containers/volumeMounts/mountPath", false),
    ("", "", "DaemonSet", "spec/template/spec/initContainers/args", false),
    ("", "", "DaemonSet", "spec/template/spec/initContainers/command", false),
    ("", "", "DaemonSet", "spec/template/spec/initContainers/env/value", false),
    ("", "", "DaemonSet", "spec/template/spec/initContainers/volumeMounts/mountPath", false),
    ("", "", "DaemonSet", "spec/template/spec/volumes/nfs/server", false),
    ("", "", "Deployment", "spec/template/spec/containers/args", false),
    ("", "", "Deployment", "spec/template/spec/containers/command", false),
    ("", "", "Deployment", "spec/template/spec/containers/env/value", false),
    ("", "", "Deployment", "spec/template/spec/containers/volumeMounts/mountPath", false),
    ("", "", "Deployment", "spec/template/spec/initContainers/args", false),
    ("", "", "Deployment", "spec/template/spec/initContainers/command", false),
    ("", "", "Deployment", "spec/template/spec/initContainers/env/value", false),
    ("", "", "Deployment", "spec/template/spec/initContainers/volumeMounts/mountPath", false),
    ("", "", "Deployment", "spec/template/spec/volumes/nfs/server", false),
    ("", "", "Ingress", "spec/rules/host", false),
    ("", "", "Ingress", "spec/tls/hosts", false),
    ("", "", "Ingress", "spec/tls/secretName", false),
    ("", "", "Job", "spec/template/spec/containers/args", false),
    ("", "", "Job", "spec/template/spec/containers/command", false),
    ("", "", "Job", "spec/template/spec/containers/env/value", false),
    ("", "", "Job", "spec/template/spec/containers/volumeMounts/mountPath", false),
    ("", "", "Job", "spec/template/spec/initContainers/args", false),
    ("", "", "Job", "spec/template/spec/initContainers/command", false),
    ("", "", "Job", "spec/template/spec/initContainers/env/value", false),
    ("", "", "Job", "spec/template/spec/initContainers/volumeMounts/mountPath", false),
    ("", "", "Job", "spec/template/spec/volumes/nfs/server", false),
    ("", "", "Pod", "spec/containers/args", false),
    ("", "", "Pod", "spec/containers/command", false),
    ("", "", "Pod", "spec/containers/env/value", false),
    ("", "", "Pod", "spec/containers/volumeMounts/mountPath", false),
    ("", "", "Pod", "spec/initContainers/args", false),
    ("", "", "Pod", "spec/initContainers/command", false),
    ("", "", "Pod", "spec/initContainers/env/value", false),
    ("", "", "Pod", "spec/initContainers/volumeMounts/mountPath", false),
    ("", "", "Pod", "spec/volumes/nfs/server", false),
    ("", "", "ReplicaSet", "spec/template/spec/containers/args", false),
    ("", "", "ReplicaSet", "spec/template/spec/containers/command", false),
    ("", "", "ReplicaSet", "spec/template/spec/containers/env/value", false),
    ("", "", "ReplicaSet", "spec/template/spec/containers/volumeMounts/mountPath", false),
    ("", "", "ReplicaSet", "spec/template/spec/initContainers/args", false),
    ("", "", "ReplicaSet", "spec/template/spec/initContainers/command", false),
    ("", "", "ReplicaSet", "spec/template/spec/initContainers/env/value", false),
    ("", "", "ReplicaSet", "spec/template/spec/initContainers/volumeMounts/mountPath", false),
    ("", "", "ReplicaSet", "spec/template/spec/volumes/nfs/server", false),
    ("", "", "Service", "spec/ports/port", false),
    ("", "", "Service", "spec/ports/targetPort", false),
    ("", "", "StatefulSet", "spec/template/spec/containers/args", false),
    ("", "", "StatefulSet", "spec/template/spec/containers/command", false),
    ("", "", "StatefulSet", "spec/template/spec/containers/env/value", false),
    ("", "", "StatefulSet", "spec/template/spec/containers/volumeMounts/mountPath", false),
    ("", "", "StatefulSet", "spec/template/spec/initContainers/args", false),
    ("", "", "StatefulSet", "spec/template/spec/initContainers/command", false),
    ("", "", "StatefulSet", "spec/template/spec/initContainers/env/value", false),
    ("", "", "StatefulSet", "spec/template/spec/initContainers/volumeMounts/mountPath", false),
    ("", "", "StatefulSet", "spec/volumeClaimTemplates/spec/nfs/server", false),
    ("", "", "PersistentVolume", "spec/nfs/server", false),
    ("", "", "", "metadata/labels", false),
    ("", "", "", "metadata/annotations", false),
];

/// Where each workload kind keeps its pod spec: (group, version, kind, pod spec path).
const POD_SPEC_OWNERS: &[(&str, &str, &str, &str)] = &[
    ("", "v1", "Pod", "spec"),
    ("", "", "PodTemplate", "template/spec"),
    ("", "", "Deployment", "spec/template/spec"),
    ("", "", "ReplicaSet", "spec/template/spec"),
    ("", "", "DaemonSet", "spec/template/spec"),
    ("", "", "StatefulSet", "spec/template/spec"),
    ("", "", "Job", "spec/template/spec"),
    ("", "", "CronJob", "spec/jobTemplate/spec/template/spec"),
];

/// Pod-spec fields naming a ConfigMap.
const POD_CONFIGMAP_REFS: &[&str] = &[
    "volumes/configMap/name",
    "containers/env/valueFrom/configMapKeyRef/name",
    "initContainers/env/valueFrom/configMapKeyRef/name",
    "containers/envFrom/configMapRef/name",
    "initContainers/envFrom/configMapRef/name",
    "volumes/projected/sources/configMap/name",
];

/// Pod-spec fields naming a Secret.
const POD_SECRET_REFS: &[&str] = &[
    "volumes/secret/secretName",
    "containers/env/valueFrom/secretKeyRef/name",
    "initContainers/env/valueFrom/secretKeyRef/name",
    "containers/envFrom/secretRef/name",
    "initContainers/envFrom/secretRef/name",
    "imagePullSecrets/name",
    "volumes/projected/sources/secret/name",
];

/// Workloads (other than Pod and PodTemplate) whose pod spec may name a ServiceAccount,
/// PersistentVolumeClaim or PriorityClass: (kind, pod spec path).
const WORKLOAD_POD_SPECS: &[(&str, &str)] = &[
    ("StatefulSet", "spec/template/spec"),
    ("Deployment", "spec/template/spec"),
    ("ReplicationController", "spec/template/spec"),
    ("CronJob", "spec/jobTemplate/spec/template/spec"),
    ("Job", "spec/template/spec"),
    ("DaemonSet", "spec/template/spec"),
];

fn pod_refs(field_paths: &[&str]) -> Vec<FieldSpec> {
    let mut out = Vec::new();
    for (group, version, kind, pod_spec) in POD_SPEC_OWNERS {
        for path in field_paths {
            out.push(spec((group, version, kind, &format!("{pod_spec}/{path}"), false)));
        }
    }
    out
}

fn workload_refs(field_path: &str, pod_kind: bool) -> Vec<FieldSpec> {
    let mut out = Vec::new();
    if pod_kind {
        out.push(spec(("", "", "Pod", &format!("spec/{field_path}"), false)));
    }
    for (kind, pod_spec) in WORKLOAD_POD_SPECS {
        out.push(spec(("", "", kind, &format!("{pod_spec}/{field_path}"), false)));
    }
    out
}

fn nbr(group: &str, version: &str, kind: &str, referrers: Vec<FieldSpec>) -> NameBackReference {
    NameBackReference {
        gvk: Gvk { group: group.to_string(), version: version.to_string(), kind: kind.to_string() },
        referrers,
    }
}

fn builtin_name_references() -> Vec<NameBackReference> {
    let hpa = || vec![spec(("", "", "HorizontalPodAutoscaler", "spec/scaleTargetRef/name", false))];
    let mut configmap = pod_refs(POD_CONFIGMAP_REFS);
    configmap.extend(specs(&[
        ("", "", "Node", "spec/configSource/configMap", false),
        ("", "", "Role", "rules/resourceNames", false),
        ("", "", "ClusterRole", "rules/resourceNames", false),
        ("", "", "Ingress", "metadata/annotations/nginx.ingress.kubernetes.io\\/fastcgi-params-configmap", false),
    ]));
    let mut secret = pod_refs(POD_SECRET_REFS);
    secret.extend(specs(&[
        ("", "", "Ingress", "spec/tls/secretName", false),
        ("", "", "Ingress", "metadata/annotations/ingress.kubernetes.io\\/auth-secret", false),
        ("", "", "Ingress", "metadata/annotations/nginx.ingress.kubernetes.io\\/auth-secret", false),
        ("", "", "Ingress", "metadata/annotations/nginx.ingress.kubernetes.io\\/auth-tls-secret", false),
        ("", "", "ServiceAccount", "imagePullSecrets/name", false),
        ("", "", "StorageClass", "parameters/secretName", false),
        ("", "", "StorageClass", "parameters/adminSecretName", false),
        ("", "", "StorageClass", "parameters/userSecretName", false),
        ("", "", "StorageClass", "parameters/secretRef", false),
        ("", "", "Role", "rules/resourceNames", false),
        ("", "", "ClusterRole", "rules/resourceNames", false),
        ("serving.knative.dev", "v1", "Service", "spec/template/spec/containers/env/valueFrom/secretKeyRef/name", false),
        ("", "", "PersistentVolume", "spec/azureFile/secretName", false),
    ]));
    let service = specs(&[
        ("apps", "", "StatefulSet", "spec/serviceName", false),
        ("", "", "Ingress", "spec/rules/http/paths/backend/serviceName", false),
        ("", "", "Ingress", "spec/backend/serviceName", false),
        ("", "", "Ingress", "spec/rules/http/paths/backend/service/name", false),
        ("", "", "Ingress", "spec/defaultBackend/service/name", false),
        ("apiregistration.k8s.io", "", "APIService", "spec/service/name", false),
        ("admissionregistration.k8s.io", "", "ValidatingWebhookConfiguration", "webhooks/clientConfig/service", false),
        ("admissionregistration.k8s.io", "", "MutatingWebhookConfiguration", "webhooks/clientConfig/service", false),
        ("", "", "HTTPRoute", "spec/rules/backendRefs/name", false),
    ]);
    let rbac = "rbac.authorization.k8s.io";
    let mut service_account = specs(&[
        (rbac, "", "RoleBinding", "subjects", false),
        (rbac, "", "ClusterRoleBinding", "subjects", false),
    ]);
    service_account.extend(workload_refs("serviceAccountName", true));
    let persistent_volume_claim = workload_refs("volumes/persistentVolumeClaim/claimName", true);
    let priority_class = workload_refs("priorityClassName", true);

    vec![
        nbr("", "", "Deployment", hpa()),
        nbr("", "", "ReplicationController", hpa()),
        nbr("", "", "ReplicaSet", hpa()),
        nbr("", "", "StatefulSet", hpa()),
        nbr("", "v1", "ConfigMap", configmap),
        nbr("", "v1", "Secret", secret),
        nbr("", "v1", "Service", service),
        nbr(rbac, "", "Role", specs(&[(rbac, "", "RoleBinding", "roleRef/name", false)])),
        nbr(
            rbac,
            "",
            "ClusterRole",
            specs(&[(rbac, "", "RoleBinding", "roleRef/name", false), (rbac, "", "ClusterRoleBinding", "roleRef/name", false)]),
        ),
        nbr("", "v1", "ServiceAccount", service_account),
        nbr("", "v1", "PersistentVolumeClaim", persistent_volume_claim),
        nbr(
            "",
            "v1",
            "PersistentVolume",
            specs(&[("", "", "PersistentVolumeClaim", "spec/volumeName", false), ("", "", "ClusterRole", "rules/resourceNames", false)]),
        ),
        nbr(
            "storage.k8s.io",
            "v1",
            "StorageClass",
            specs(&[
                ("", "", "PersistentVolume", "spec/storageClassName", false),
                ("", "", "PersistentVolumeClaim", "spec/storageClassName", false),
                ("", "", "StatefulSet", "spec/volumeClaimTemplates/spec/storageClassName", false),
            ]),
        ),
        nbr("scheduling.k8s.io", "v1", "PriorityClass", priority_class),
        // kustomize writes this target's group as "networking.k8s.io/v1", so it never matches an
        // IngressClass; kept as is for parity.
        nbr("networking.k8s.io/v1", "v1", "IngressClass", specs(&[("", "", "Ingress", "spec/ingressClassName", false)])),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn builtin_tables_have_kustomize_sizes() {
        let config = TransformerConfig::builtin();
        assert_eq!(config.name_prefix, vec![FieldSpec::new("metadata/name", false)]);
        assert_eq!(config.namespace.len(), 6);
        assert_eq!(config.common_labels.len(), COMMON_LABEL_SELECTORS.len() + METADATA_LABELS.len());
        assert_eq!(config.var_reference.len(), 71);
        let configmap = config.name_reference.iter().find(|n| n.gvk.kind == "ConfigMap").unwrap();
        // 8 pod-spec owners x 6 fields + Node, Role, ClusterRole, Ingress annotation.
        assert_eq!(configmap.referrers.len(), 52);
        assert!(configmap.referrers.iter().any(|fs| fs.kind == "CronJob"
            && fs.path == "spec/jobTemplate/spec/template/spec/initContainers/envFrom/configMapRef/name"));
        let secret = config.name_reference.iter().find(|n| n.gvk.kind == "Secret").unwrap();
        assert_eq!(secret.referrers.len(), 8 * 7 + 13);
        let sa = config.name_reference.iter().find(|n| n.gvk.kind == "ServiceAccount").unwrap();
        assert_eq!(sa.referrers.len(), 2 + 1 + 6);
    }

    #[test]
    fn configuration_file_merges_into_builtin() {
        let file = json!({
            "nameReference": [
                {"kind": "ConfigMap", "version": "v1", "fieldSpecs": [
                    {"path": "spec/configMapName", "kind": "MyApp"},
                    {"path": "spec/template/spec/volumes/configMap/name", "kind": "Deployment"}]},
                {"kind": "Gadget", "group": "example.com", "fieldSpecs": [{"path": "spec/gadget", "kind": "MyApp"}]}
            ],
            "commonLabels": [{"path": "spec/labels", "kind": "MyApp", "create": true}],
            "varReference": [{"path": "spec/url", "kind": "MyApp"}],
            "images": [{"path": "spec/image", "kind": "MyApp"}]
        });
        let config = TransformerConfig::with_files(&[file]).unwrap();
        let builtin = TransformerConfig::builtin();
        let configmap = config.name_reference.iter().find(|n| n.gvk.kind == "ConfigMap").unwrap();
        let builtin_cm = builtin.name_reference.iter().find(|n| n.gvk.kind == "ConfigMap").unwrap();
        // The Deployment path was already there; only the MyApp one is new.
        assert_eq!(configmap.referrers.len(), builtin_cm.referrers.len() + 1);
        assert_eq!(config.name_reference.len(), builtin.name_reference.len() + 1);
        assert_eq!(config.common_labels.last().unwrap().path, "spec/labels");
        assert_eq!(config.var_reference.len(), builtin.var_reference.len() + 1);
        assert_eq!(config.images.len(), builtin.images.len() + 1);
    }

    #[test]
    fn conflicting_create_is_an_error() {
        let file = json!({"commonLabels": [{"path": "metadata/labels", "create": false}]});
        let err = TransformerConfig::with_files(&[file]).unwrap_err();
        assert!(matches!(err, ConfigError::Conflict { .. }), "{err}");
    }

    #[test]
    fn crd_openapi_definitions_add_fieldspecs() {
        // Shaped like kustomize's own crds test data (an OpenAPI definitions map).
        let crds = json!({
            "github.com/example/pkg/apis/jingfang/v1beta1.Bee": {
                "properties": {
                    "apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": {"$ref": "k8s.io/ObjectMeta"},
                    "spec": {"$ref": "github.com/example/pkg/apis/jingfang/v1beta1.BeeSpec"}
                }
            },
            "github.com/example/pkg/apis/jingfang/v1beta1.BeeSpec": {
                "properties": {
                    "secretRef": {"x-kubernetes-object-ref-api-version": "v1", "x-kubernetes-object-ref-kind": "Secret"},
                    "selectors": {"x-kubernetes-label-selector": ""},
                    "notes": {"x-kubernetes-annotation": ""}
                }
            }
        });
        let config = TransformerConfig::from_crd_openapi(&crds).unwrap();
        let secret = config.name_reference.iter().find(|n| n.gvk.kind == "Secret").unwrap();
        assert_eq!(secret.referrers, vec![FieldSpec { kind: "Bee".into(), path: "spec/secretRef/name".into(), ..FieldSpec::default() }]);
        assert_eq!(config.common_labels[0].path, "spec/selectors");
        assert_eq!(config.common_annotations[0].path, "spec/notes");
    }

    #[test]
    fn wrong_shape_is_an_error() {
        let err = TransformerConfig::from_value(&json!({"varReference": "spec/x"})).unwrap_err();
        assert!(matches!(err, ConfigError::Invalid(_)), "{err}");
    }
}
