//! `replicas:`: set the replica count of named workloads (kustomize's ReplicaCountTransformer
//! and api/filters/replicacount).

use serde_json::Value;

use super::{Result, TransformError, gvk_of_id};
use crate::builtin_config::TransformerConfig;
use crate::resource::Resource;

/// One `replicas:` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaCount {
    /// The object name (current or any earlier name in this build).
    pub name: String,
    /// The count to set.
    pub count: i64,
}

/// Sets each entry's count in the replica fields of the objects it names. An entry that names
/// no object of a kind the config knows is an error, as in kustomize.
pub fn apply_replicas(res: &mut [Resource], replicas: &[ReplicaCount], cfg: &TransformerConfig) -> Result<()> {
    for replica in replicas {
        let mut found = false;
        for spec in &cfg.replicas {
            let selector = spec.gvk();
            for r in res.iter_mut() {
                let current = r.id();
                let named = std::iter::once(&current)
                    .chain(r.previous_ids.iter())
                    .any(|id| id.name == replica.name && gvk_of_id(id).is_selected_by(&selector));
                if !named {
                    continue;
                }
                found = true;
                let count = Value::from(replica.count);
                spec.apply(&mut r.object, Some(&count), &mut |node| {
                    *node = count.clone();
                    Ok(())
                })
                .map_err(|source| TransformError::FieldPath {
                    transformer: "replicas",
                    resource: current.to_string(),
                    source,
                })?;
            }
        }
        if !found {
            let kinds: Vec<String> = cfg.replicas.iter().map(|fs| fs.kind.clone()).collect();
            return Err(TransformError::Unresolved {
                transformer: "replicas",
                message: format!(
                    "resource with name {} does not match a config with the following kinds {kinds:?}\n  hint: check the name in `replicas:` against the resources",
                    replica.name
                ),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transform::test_support::{expected, objects, resources};

    #[test]
    fn replicas_table() {
        let cases = [
            (
                "existing count replaced, other names untouched",
                vec![ReplicaCount { name: "d".into(), count: 5 }],
                "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec: {replicas: 1}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: e}\nspec: {replicas: 1}\n",
                "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec: {replicas: 5}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: e}\nspec: {replicas: 1}\n",
            ),
            (
                "missing count created; StatefulSet too",
                vec![ReplicaCount { name: "s".into(), count: 0 }],
                "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: s}\n",
                "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: s}\nspec: {replicas: 0}\n",
            ),
        ];
        let cfg = TransformerConfig::builtin();
        for (name, replicas, input, want) in cases {
            let mut res = resources(input);
            apply_replicas(&mut res, &replicas, &cfg).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(objects(&res), expected(want), "{name}");
        }
    }

    #[test]
    fn earlier_names_match() {
        let mut res = resources("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n");
        res[0].rename("p-d");
        apply_replicas(&mut res, &[ReplicaCount { name: "d".into(), count: 3 }], &TransformerConfig::builtin()).unwrap();
        assert_eq!(res[0].object["spec"]["replicas"], 3);
    }

    #[test]
    fn unknown_name_is_an_error() {
        let mut res = resources("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: d}\n");
        let err = apply_replicas(&mut res, &[ReplicaCount { name: "d".into(), count: 3 }], &TransformerConfig::builtin()).unwrap_err();
        assert!(err.to_string().contains("does not match"), "{err}");
    }
}
