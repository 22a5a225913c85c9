//! `namespace:`: puts every namespaced object into one namespace, and updates the fields that
//! name namespaces (kustomize's NamespaceTransformer and api/filters/namespace).

use std::collections::HashMap;

use serde_json::Value;

use super::{Result, TransformError, effective_namespace, gvk_of};
use crate::builtin_config::TransformerConfig;
use crate::fieldspec::FieldSpec;
use crate::resource::{ResId, Resource};

/// Which RoleBinding/ClusterRoleBinding subjects get the namespace (kustomize's
/// `setRoleBindingSubjects`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SubjectMode {
    /// Only subjects named `default` (what `namespace:` in a kustomization does).
    #[default]
    DefaultOnly,
    /// Every subject of kind ServiceAccount.
    AllServiceAccounts,
    /// No subject.
    None,
}

/// Options of the NamespaceTransformer beyond the namespace itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NamespaceOptions {
    /// Only set namespace fields that are empty (kustomize's `unsetOnly`).
    pub unset_only: bool,
    /// Which binding subjects get the namespace.
    pub subjects: SubjectMode,
}

/// kustomize's `namespace:` field: sets `ns` on every namespaced object and on the namespace
/// fields of the config (APIService service, CRD conversion webhook, a v1 Namespace's name,
/// RoleBinding subjects named `default`). An empty `ns` does nothing.
pub fn apply_namespace(res: &mut [Resource], ns: &str, cfg: &TransformerConfig) -> Result<()> {
    apply_namespace_with(res, ns, &cfg.namespace, NamespaceOptions::default())
}

/// The NamespaceTransformer with explicit fieldSpecs and options.
pub fn apply_namespace_with(
    res: &mut [Resource],
    ns: &str,
    specs: &[FieldSpec],
    options: NamespaceOptions,
) -> Result<()> {
    if ns.is_empty() {
        return Ok(());
    }
    // Ids are counted up front so each object's new id can be checked against all others (the
    // ones not yet moved included), as kustomize does after transforming each object.
    let mut id_counts: HashMap<IdKey, usize> = HashMap::new();
    for r in res.iter() {
        *id_counts.entry(IdKey::of(&r.id())).or_default() += 1;
    }
    for r in res.iter_mut() {
        if r.object.is_empty() {
            continue;
        }
        let before = r.id();
        r.previous_ids.push(before.clone());
        namespace_object(r, ns, specs, options)?;
        let after = r.id();
        let old_key = IdKey::of(&before);
        let new_key = IdKey::of(&after);
        if old_key != new_key {
            if let Some(count) = id_counts.get_mut(&old_key) {
                *count -= 1;
            }
            *id_counts.entry(new_key.clone()).or_default() += 1;
        }
        if id_counts.get(&new_key).copied().unwrap_or(0) != 1 {
            return Err(TransformError::IdConflict { transformer: "namespace", id: after.to_string() });
        }
    }
    Ok(())
}

/// Identity for conflict detection: kustomize's ResId.Equals (namespace "" is "default").
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct IdKey {
    group: String,
    version: String,
    kind: String,
    name: String,
    namespace: Option<String>,
}

impl IdKey {
    fn of(id: &ResId) -> IdKey {
        IdKey {
            group: id.group.clone(),
            version: id.version.clone(),
            kind: id.kind.clone(),
            name: id.name.clone(),
            namespace: effective_namespace(id).map(str::to_string),
        }
    }
}

fn namespace_object(r: &mut Resource, ns: &str, specs: &[FieldSpec], options: NamespaceOptions) -> Result<()> {
    let gvk = gvk_of(r);
    let api_version = r.api_version().to_string();
    let id = r.id().to_string();
    let mut setter = |node: &mut Value| set_namespace_value(node, ns, options.unset_only);

    // metadata.namespace is set in code, never through fieldSpecs, so that cluster-scoped
    // objects are left alone.
    if !gvk.is_cluster_scoped() {
        FieldSpec::new("metadata/namespace", true)
            .apply_unchecked(&mut r.object, Some(&Value::String(String::new())), &mut setter)
            .map_err(|source| TransformError::FieldPath {
                transformer: "namespace",
                resource: id.clone(),
                source,
            })?;
    }

    let is_binding = gvk.kind == "RoleBinding" || gvk.kind == "ClusterRoleBinding";
    if is_binding {
        set_subject_namespaces(r, ns, options);
    }

    for spec in specs {
        if spec.path == "metadata/namespace" {
            continue;
        }
        // Only a v1 Namespace's name is the namespace itself.
        if spec.path == "metadata/name" && api_version != "v1" {
            continue;
        }
        if is_binding && spec.path == "subjects/namespace" && (spec.kind == "RoleBinding" || spec.kind == "ClusterRoleBinding") {
            continue;
        }
        if !spec.selects(&gvk) {
            continue;
        }
        spec.apply_unchecked(&mut r.object, Some(&Value::String(String::new())), &mut setter).map_err(|source| {
            TransformError::FieldPath { transformer: "namespace", resource: id.clone(), source }
        })?;
    }
    Ok(())
}

fn set_namespace_value(node: &mut Value, ns: &str, unset_only: bool) -> std::result::Result<(), String> {
    match node {
        Value::Object(_) | Value::Array(_) => Err("namespace field specs must target scalar nodes".to_string()),
        Value::String(s) if unset_only && !s.is_empty() => Ok(()),
        Value::Number(_) | Value::Bool(_) if unset_only => Ok(()),
        _ => {
            *node = Value::String(ns.to_string());
            Ok(())
        }
    }
}

fn set_subject_namespaces(r: &mut Resource, ns: &str, options: NamespaceOptions) {
    let Some(Value::Array(subjects)) = r.object.get_mut("subjects") else { return };
    for subject in subjects.iter_mut() {
        let Value::Object(subject) = subject else { continue };
        let wanted = match options.subjects {
            SubjectMode::None => false,
            SubjectMode::DefaultOnly => subject.get("name").and_then(Value::as_str) == Some("default"),
            SubjectMode::AllServiceAccounts => subject.get("kind").and_then(Value::as_str) == Some("ServiceAccount"),
        };
        if !wanted {
            continue;
        }
        let field = subject.entry("namespace").or_insert(Value::String(String::new()));
        // Subjects are mappings of scalars; a non-scalar namespace is left as it is.
        let _ = set_namespace_value(field, ns, options.unset_only);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transform::test_support::{expected, objects, resources};

    struct Case {
        name: &'static str,
        namespace: &'static str,
        input: &'static str,
        expected: &'static str,
    }

    #[test]
    fn namespace_table() {
        // Expected outputs measured with `kubectl kustomize` (kustomize v5.5).
        let cases = [
            Case {
                name: "namespaced objects get the namespace, replacing an old one",
                namespace: "newns",
                input: "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d, namespace: orig}\n",
                expected: "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: newns}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d, namespace: newns}\n",
            },
            Case {
                name: "cluster-scoped kinds are left alone, unknown versions are not",
                namespace: "newns",
                input: "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: cr}\n---\napiVersion: rbac.authorization.k8s.io/v1alpha1\nkind: ClusterRole\nmetadata: {name: cr2}\n---\napiVersion: example.com/v1\nkind: Gadget\nmetadata: {name: g}\n",
                expected: "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: cr}\n---\napiVersion: rbac.authorization.k8s.io/v1alpha1\nkind: ClusterRole\nmetadata: {name: cr2, namespace: newns}\n---\napiVersion: example.com/v1\nkind: Gadget\nmetadata: {name: g, namespace: newns}\n",
            },
            Case {
                name: "a v1 Namespace is renamed, another version is namespaced",
                namespace: "newns",
                input: "apiVersion: v1\nkind: Namespace\nmetadata: {name: foo}\n---\napiVersion: v2\nkind: Namespace\nmetadata: {name: foo2}\n",
                expected: "apiVersion: v1\nkind: Namespace\nmetadata: {name: newns}\n---\napiVersion: v2\nkind: Namespace\nmetadata: {name: foo2, namespace: newns}\n",
            },
            Case {
                name: "binding subjects named default get the namespace, others keep theirs",
                namespace: "newns",
                input: "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: rb, namespace: orig}\nsubjects:\n- {kind: ServiceAccount, name: default}\n- {kind: ServiceAccount, name: other, namespace: somewhere}\n- {kind: ServiceAccount, name: third}\n- {kind: User, name: default}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: crb}\nsubjects:\n- {kind: ServiceAccount, name: default, namespace: kube-system}\n- {kind: ServiceAccount, name: sa1, namespace: kube-system}\n",
                expected: "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: rb, namespace: newns}\nsubjects:\n- {kind: ServiceAccount, name: default, namespace: newns}\n- {kind: ServiceAccount, name: other, namespace: somewhere}\n- {kind: ServiceAccount, name: third}\n- {kind: User, name: default, namespace: newns}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: crb}\nsubjects:\n- {kind: ServiceAccount, name: default, namespace: newns}\n- {kind: ServiceAccount, name: sa1, namespace: kube-system}\n",
            },
            Case {
                name: "APIService service namespace is created, CRD conversion service namespace replaced, webhook left",
                namespace: "newns",
                input: "apiVersion: apiregistration.k8s.io/v1\nkind: APIService\nmetadata: {name: api}\nspec:\n  service: {name: s}\n---\napiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: crd}\nspec:\n  conversion:\n    webhook:\n      clientConfig:\n        service: {name: s, namespace: o}\n---\napiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingWebhookConfiguration\nmetadata: {name: vwc}\nwebhooks:\n- name: a\n  clientConfig:\n    service: {name: svc, namespace: old}\n",
                expected: "apiVersion: apiregistration.k8s.io/v1\nkind: APIService\nmetadata: {name: api}\nspec:\n  service: {name: s, namespace: newns}\n---\napiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: crd}\nspec:\n  conversion:\n    webhook:\n      clientConfig:\n        service: {name: s, namespace: newns}\n---\napiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingWebhookConfiguration\nmetadata: {name: vwc}\nwebhooks:\n- name: a\n  clientConfig:\n    service: {name: svc, namespace: old}\n",
            },
        ];
        let cfg = TransformerConfig::builtin();
        for case in cases {
            let mut res = resources(case.input);
            apply_namespace(&mut res, case.namespace, &cfg).unwrap_or_else(|e| panic!("{}: {e}", case.name));
            assert_eq!(objects(&res), expected(case.expected), "{}", case.name);
        }
    }

    #[test]
    fn previous_ids_record_the_old_namespace() {
        let mut res = resources("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: old}\n");
        apply_namespace(&mut res, "new", &TransformerConfig::builtin()).unwrap();
        assert_eq!(res[0].previous_ids.len(), 1);
        assert_eq!(res[0].previous_ids[0].namespace.as_deref(), Some("old"));
    }

    #[test]
    fn moving_two_same_named_objects_together_is_an_id_conflict() {
        let mut res = resources(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: x}\n",
        );
        let err = apply_namespace(&mut res, "x", &TransformerConfig::builtin()).unwrap_err();
        assert!(matches!(err, TransformError::IdConflict { .. }), "{err}");
    }

    #[test]
    fn unset_only_and_all_service_accounts() {
        let mut res = resources(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: keep}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: crb}\nsubjects:\n- {kind: ServiceAccount, name: sa1}\n- {kind: User, name: default}\n",
        );
        let options = NamespaceOptions { unset_only: true, subjects: SubjectMode::AllServiceAccounts };
        apply_namespace_with(&mut res, "x", &TransformerConfig::builtin().namespace, options).unwrap();
        assert_eq!(
            objects(&res),
            expected("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: keep}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: b, namespace: x}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: crb}\nsubjects:\n- {kind: ServiceAccount, name: sa1, namespace: x}\n- {kind: User, name: default}\n")
        );
    }
}
