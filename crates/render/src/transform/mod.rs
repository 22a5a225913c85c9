//! kustomize's built-in transformers, one module each. Every transformer works on the whole
//! resource list in place, driven by the fieldSpecs of a [`TransformerConfig`].
//!
//! [`TransformerConfig`]: crate::builtin_config::TransformerConfig

pub mod annotations;
pub mod images;
pub mod labels;
pub mod name_reference;
pub mod namespace;
pub mod prefix_suffix;
pub mod replacements;
pub mod replicas;
pub mod vars;

pub use annotations::apply_annotations;
pub use images::{ImageRewrite, apply_images};
pub use labels::{LabelOptions, apply_common_labels, apply_labels};
pub use name_reference::fix_name_references;
pub use namespace::{NamespaceOptions, SubjectMode, apply_namespace, apply_namespace_with};
pub use prefix_suffix::{apply_name_prefix, apply_name_prefix_suffix, apply_name_suffix};
pub use replicas::{ReplicaCount, apply_replicas};
pub use vars::{Var, VarSet, resolve_vars};

use indexmap::IndexMap;
use serde_json::{Map, Value};

use crate::fieldspec::{FieldPathError, FieldSpec, Gvk};
use crate::resource::{ResId, Resource};

/// A transformer could not be applied. Each variant names the object (kustomize's id string)
/// or the kustomization field concerned.
#[derive(Debug, thiserror::Error)]
pub enum TransformError {
    /// A fieldSpec path met a field of the wrong shape in an object.
    #[error("{transformer}: object '{resource}': {source}")]
    FieldPath {
        /// Which transformer (e.g. `namespace`, `commonLabels`).
        transformer: &'static str,
        /// The object's id.
        resource: String,
        /// The path problem.
        #[source]
        source: FieldPathError,
    },
    /// Two objects ended up with the same id.
    #[error("{transformer} transformation produces ID conflict: {id}\n  hint: two objects now share this kind, name and namespace")]
    IdConflict {
        /// Which transformer.
        transformer: &'static str,
        /// The conflicting id.
        id: String,
    },
    /// A kustomization field holds something the transformer cannot use.
    #[error("{field}: {message}")]
    InvalidSpec {
        /// The kustomization field (e.g. `replacements[0].source`).
        field: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// The transformer's input does not select or resolve as it must (kustomize errors here).
    #[error("{transformer}: {message}")]
    Unresolved {
        /// Which transformer.
        transformer: &'static str,
        /// What could not be resolved.
        message: String,
    },
}

/// Result of a transformer.
pub type Result<T, E = TransformError> = std::result::Result<T, E>;

/// The object's group/version/kind.
pub(crate) fn gvk_of(res: &Resource) -> Gvk {
    Gvk::of(&res.object)
}

/// kustomize's OrgId: the id before any change in this build (first previous id) or the current.
pub(crate) fn original_id(res: &Resource) -> ResId {
    res.previous_ids.first().cloned().unwrap_or_else(|| res.id())
}

/// The Gvk of a ResId.
pub(crate) fn gvk_of_id(id: &ResId) -> Gvk {
    Gvk { group: id.group.clone(), version: id.version.clone(), kind: id.kind.clone() }
}

/// kustomize's EffectiveNamespace: cluster-scoped objects have none, namespaced objects without
/// one are in "default".
pub(crate) fn effective_namespace(id: &ResId) -> Option<&str> {
    if id.is_cluster_scoped() {
        return None;
    }
    Some(id.namespace.as_deref().filter(|ns| !ns.is_empty()).unwrap_or("default"))
}

/// A YAML scalar as text, the way it was written (strings unquoted).
pub(crate) fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null => Some(String::new()),
        _ => None,
    }
}

/// The value with every mapping key lower-cased: kustomize decodes its structs with Go's JSON
/// rules, which match field names case-insensitively (`fieldPath` = `fieldpath`).
pub(crate) fn lowercase_keys(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.to_lowercase(), lowercase_keys(v))).collect()),
        Value::Array(items) => Value::Array(items.iter().map(lowercase_keys).collect()),
        other => other.clone(),
    }
}

/// What kustomize's final RemoveBuildAnnotations does to every object's annotations: it reads
/// them as a string map and writes them back, so values become strings and an empty (or null)
/// `metadata.annotations` disappears. Call once on the build output.
pub fn finalize_annotations(res: &mut [Resource]) {
    for r in res.iter_mut() {
        let Some(Value::Object(metadata)) = r.object.get_mut("metadata") else { continue };
        match metadata.get_mut("annotations") {
            Some(Value::Null) => {
                metadata.remove("annotations");
            }
            Some(Value::Object(annotations)) if annotations.is_empty() => {
                metadata.remove("annotations");
            }
            Some(Value::Object(annotations)) => {
                for value in annotations.values_mut() {
                    if !value.is_string()
                        && let Some(text) = scalar_text(value) {
                            *value = Value::String(text);
                        }
                }
            }
            _ => {}
        }
    }
}

/// Sets `pairs` (in key order, as kustomize sorts them) into every mapping the fieldSpecs reach,
/// creating mappings where a fieldSpec says `create`. Used by labels and annotations.
pub(crate) fn set_map_entries(
    transformer: &'static str,
    res: &mut [Resource],
    pairs: &IndexMap<String, String>,
    specs: &[FieldSpec],
) -> Result<()> {
    if pairs.is_empty() {
        return Ok(());
    }
    let mut sorted: Vec<(&String, &String)> = pairs.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let empty_map = Value::Object(Map::new());
    for r in res.iter_mut() {
        let gvk = gvk_of(r);
        for spec in specs.iter().filter(|spec| spec.selects(&gvk)) {
            let mut set = |node: &mut Value| -> std::result::Result<(), String> {
                if node.is_null() {
                    *node = Value::Object(Map::new());
                }
                let Value::Object(map) = node else {
                    return Err(format!("expected a mapping to set {transformer} in"));
                };
                for (key, value) in &sorted {
                    map.insert((*key).clone(), Value::String((*value).clone()));
                }
                Ok(())
            };
            spec.apply_unchecked(&mut r.object, Some(&empty_map), &mut set).map_err(|source| {
                TransformError::FieldPath { transformer, resource: r.id().to_string(), source }
            })?;
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::*;
    use crate::resource::Origin;

    /// Parses a multi-document YAML literal into resources (test inputs stay readable).
    pub fn resources(yaml: &str) -> Vec<Resource> {
        yaml.split("\n---\n")
            .filter(|doc| !doc.trim().is_empty())
            .map(|doc| {
                let value: Value = serde_saphyr::from_str(doc).expect("test YAML parses");
                Resource::new(value.as_object().expect("mapping").clone(), Origin::default())
            })
            .collect()
    }

    /// The objects of `res` as plain values, for comparison with an expected YAML stream.
    pub fn objects(res: &[Resource]) -> Vec<Value> {
        res.iter().map(|r| Value::Object(r.object.clone())).collect()
    }

    /// Parses an expected multi-document YAML literal into values.
    pub fn expected(yaml: &str) -> Vec<Value> {
        resources(yaml).into_iter().map(|r| Value::Object(r.object)).collect()
    }

    #[test]
    fn final_annotations_are_strings_and_empty_ones_vanish() {
        // kubectl kustomize prints `annotations: {n: 5, b: true}` as strings and drops
        // `annotations:` (null) and `annotations: {}`.
        let mut res = resources("apiVersion: v1\nkind: Pod\nmetadata: {name: p, annotations: {n: 5, b: true, s: x}, labels: {n: 5}}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: s, annotations: null}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: t, annotations: {}, labels: {}}\n");
        super::finalize_annotations(&mut res);
        assert_eq!(
            objects(&res),
            expected("apiVersion: v1\nkind: Pod\nmetadata: {name: p, annotations: {n: '5', b: 'true', s: x}, labels: {n: 5}}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: s}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: t, labels: {}}\n")
        );
    }

    /// Owned string pairs from literals.
    pub fn pairs(items: &[(&str, &str)]) -> IndexMap<String, String> {
        items.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }
}
