//! Output order: kustomize's SortOrderTransformer (`sortOptions`), legacy order by default.

use crate::error::{RenderError, Result};
use crate::kustomization::SortOptions;
use crate::resource::Resource;

/// kustomize's default `orderFirst` for legacy sorting. Do not change: it is kustomize's.
pub const DEFAULT_ORDER_FIRST: [&str; 22] = [
    "Namespace",
    "ResourceQuota",
    "StorageClass",
    "CustomResourceDefinition",
    "ServiceAccount",
    "PodSecurityPolicy",
    "Role",
    "ClusterRole",
    "RoleBinding",
    "ClusterRoleBinding",
    "ConfigMap",
    "Secret",
    "Endpoints",
    "Service",
    "LimitRange",
    "PriorityClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "Deployment",
    "StatefulSet",
    "CronJob",
    "PodDisruptionBudget",
];

/// kustomize's default `orderLast` for legacy sorting.
pub const DEFAULT_ORDER_LAST: [&str; 2] = ["MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"];

/// Sort `resources` per the root kustomization's `sortOptions` (None: legacy, as `kubectl
/// kustomize` does without `--reorder`).
pub fn apply_sort_options(resources: &mut [Resource], options: Option<&SortOptions>, kustomization: &std::path::Path) -> Result<()> {
    let err = |message: String| RenderError::Transform {
        kustomization: kustomization.to_path_buf(),
        transformer: "sortOptions".into(),
        message,
    };
    let (order, legacy) = match options {
        None => ("legacy", None),
        Some(o) => (o.order.as_deref().unwrap_or(""), o.legacy_sort_options.as_ref()),
    };
    match order {
        "fifo" => {
            if legacy.is_some() {
                return Err(err(
                    "the field 'sortOptions.legacySortOptions' is set but the selected sort order is 'fifo', not 'legacy'"
                        .into(),
                ));
            }
            Ok(())
        }
        "legacy" => {
            let (first, last): (Vec<&str>, Vec<&str>) = match legacy {
                None => (DEFAULT_ORDER_FIRST.to_vec(), DEFAULT_ORDER_LAST.to_vec()),
                Some(l) => (
                    l.order_first.iter().flatten().map(String::as_str).collect(),
                    l.order_last.iter().flatten().map(String::as_str).collect(),
                ),
            };
            legacy_sort(resources, &first, &last);
            Ok(())
        }
        _ => Err(err("the field 'sortOptions.order' must be one of [fifo, legacy]".into())),
    }
}

/// Legacy order: kinds ranked by the first/last lists, ties by group/version/kind string, then
/// namespace and name.
pub fn legacy_sort(resources: &mut [Resource], order_first: &[&str], order_last: &[&str]) {
    let mut rank = std::collections::HashMap::new();
    let n = order_first.len() as i64;
    for (i, kind) in order_first.iter().enumerate() {
        rank.insert(*kind, -n + i as i64);
    }
    for (i, kind) in order_last.iter().enumerate() {
        rank.insert(*kind, 1 + i as i64);
    }
    let or = |s: &str, d: &'static str| if s.is_empty() { d.to_string() } else { s.to_string() };
    // Keys computed once, then the indices sorted and the resources moved (never copied) into
    // their places.
    struct Key {
        rank: i64,
        gvk: String,
        id: String,
        is_core_namespace: bool,
        is_namespace: bool,
    }
    let keys: Vec<Key> = resources
        .iter()
        .map(|r| Key {
            rank: rank.get(r.kind()).copied().unwrap_or(0),
            gvk: format!("{}_{}_{}", or(r.group(), "~G"), or(r.version(), "~V"), or(r.kind(), "~K")),
            id: format!("{}|{}", or(r.namespace().unwrap_or(""), "~X"), or(r.name(), "~N")),
            is_core_namespace: r.kind() == "Namespace" && r.group().is_empty(),
            is_namespace: r.kind() == "Namespace",
        })
        .collect();
    let mut order: Vec<usize> = (0..resources.len()).collect();
    order.sort_by(|&i, &j| {
        let (a, b) = (&keys[i], &keys[j]);
        if a.gvk != b.gvk {
            if a.rank != b.rank {
                return a.rank.cmp(&b.rank);
            }
            // kustomize reverses the comparison for two Namespaces when one is in the core group.
            if a.is_namespace && b.is_namespace && (a.is_core_namespace || b.is_core_namespace) {
                return b.gvk.cmp(&a.gvk);
            }
            return a.gvk.cmp(&b.gvk);
        }
        a.id.cmp(&b.id)
    });
    let mut slots: Vec<Option<Resource>> = resources.iter_mut().map(|r| Some(std::mem::replace(r, Resource::new(Default::default(), Default::default())))).collect();
    for (slot, i) in resources.iter_mut().zip(order) {
        *slot = slots[i].take().expect("each index appears once");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::Origin;
    use serde_json::json;

    fn res(api: &str, kind: &str, name: &str) -> Resource {
        let v = json!({"apiVersion": api, "kind": kind, "metadata": {"name": name}});
        Resource::new(v.as_object().unwrap().clone(), Origin::default())
    }

    #[test]
    fn legacy_order() {
        let mut r = vec![
            res("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration", "v"),
            res("apps/v1", "Deployment", "b"),
            res("example.com/v1", "Foo", "x"),
            res("v1", "Service", "s"),
            res("apps/v1", "Deployment", "a"),
            res("v1", "Namespace", "ns"),
            res("batch/v1", "Job", "j"),
        ];
        apply_sort_options(&mut r, None, std::path::Path::new("k")).unwrap();
        let names: Vec<&str> = r.iter().map(|r| r.name()).collect();
        assert_eq!(names, ["ns", "s", "a", "b", "j", "x", "v"]);
    }

    #[test]
    fn fifo_keeps_order_and_rejects_legacy_options() {
        let mut r = vec![res("apps/v1", "Deployment", "b"), res("v1", "Namespace", "a")];
        let fifo = SortOptions { order: Some("fifo".into()), legacy_sort_options: None };
        apply_sort_options(&mut r, Some(&fifo), std::path::Path::new("k")).unwrap();
        assert_eq!(r[0].name(), "b");
        let bad = SortOptions { order: Some("random".into()), legacy_sort_options: None };
        assert!(apply_sort_options(&mut r, Some(&bad), std::path::Path::new("k")).is_err());
    }
}
