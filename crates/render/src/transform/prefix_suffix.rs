//! `namePrefix:` / `nameSuffix:`: prepend or append to object names (and to any other name
//! fields a `configurations:` file lists). CustomResourceDefinitions, APIServices and Namespaces
//! keep their names, as in kustomize, because their names are fixed by the API server.

use serde_json::Value;

use super::{Result, TransformError, gvk_of_id, original_id, scalar_text};
use crate::builtin_config::TransformerConfig;
use crate::fieldspec::{FieldSpec, Gvk};
use crate::resource::Resource;

/// Applies `namePrefix` then `nameSuffix` (each only when non-empty), as kustomize runs its
/// PrefixTransformer and SuffixTransformer.
pub fn apply_name_prefix_suffix(
    res: &mut [Resource],
    prefix: &str,
    suffix: &str,
    cfg: &TransformerConfig,
) -> Result<()> {
    apply_name_prefix(res, prefix, &cfg.name_prefix)?;
    apply_name_suffix(res, suffix, &cfg.name_suffix)
}

/// kustomize's PrefixTransformer with the given fieldSpecs.
pub fn apply_name_prefix(res: &mut [Resource], prefix: &str, specs: &[FieldSpec]) -> Result<()> {
    affix(res, prefix, specs, Affix::Prefix)
}

/// kustomize's SuffixTransformer with the given fieldSpecs.
pub fn apply_name_suffix(res: &mut [Resource], suffix: &str, specs: &[FieldSpec]) -> Result<()> {
    affix(res, suffix, specs, Affix::Suffix)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Affix {
    Prefix,
    Suffix,
}

/// Kinds whose names kustomize never prefixes or suffixes (group "" = any group).
const SKIPPED: &[(&str, &str)] =
    &[("", "CustomResourceDefinition"), ("apiregistration.k8s.io", "APIService"), ("", "Namespace")];

fn skipped(gvk: &Gvk) -> bool {
    SKIPPED.iter().any(|(group, kind)| *kind == gvk.kind && (group.is_empty() || *group == gvk.group))
}

fn affix(res: &mut [Resource], text: &str, specs: &[FieldSpec], which: Affix) -> Result<()> {
    if text.is_empty() {
        return Ok(());
    }
    let transformer = match which {
        Affix::Prefix => "namePrefix",
        Affix::Suffix => "nameSuffix",
    };
    for r in res.iter_mut() {
        // Selection uses the original kind, as kustomize does.
        let gvk = gvk_of_id(&original_id(r));
        if skipped(&gvk) {
            continue;
        }
        for spec in specs.iter().filter(|spec| spec.selects(&gvk)) {
            if spec.path == "metadata/name" {
                match which {
                    Affix::Prefix => r.name_prefixes.push(text.to_string()),
                    Affix::Suffix => r.name_suffixes.push(text.to_string()),
                }
                let id = r.id();
                r.previous_ids.push(id);
            }
            let id = r.id().to_string();
            let mut set = |node: &mut Value| -> std::result::Result<(), String> {
                let Some(current) = scalar_text(node) else {
                    return Err(format!("{transformer} fieldSpecs must target scalar fields"));
                };
                *node = Value::String(match which {
                    Affix::Prefix => format!("{text}{current}"),
                    Affix::Suffix => format!("{current}{text}"),
                });
                Ok(())
            };
            spec.apply_unchecked(&mut r.object, None, &mut set)
                .map_err(|source| TransformError::FieldPath { transformer, resource: id, source })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transform::test_support::{expected, objects, resources};

    #[test]
    fn prefix_suffix_table() {
        // (name, prefix, suffix, input, expected) - expected outputs as `kubectl kustomize` gives.
        let cases = [
            (
                "names get prefix and suffix",
                "p-",
                "-s",
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n",
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: p-cm-s}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: p-d-s}\n",
            ),
            (
                "CRDs, APIServices and Namespaces keep their names",
                "p-",
                "",
                "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: foos.example.com}\n---\napiVersion: apiregistration.k8s.io/v1\nkind: APIService\nmetadata: {name: v1.example.com}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: ns}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: cr}\n",
                "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: foos.example.com}\n---\napiVersion: apiregistration.k8s.io/v1\nkind: APIService\nmetadata: {name: v1.example.com}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: ns}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: p-cr}\n",
            ),
            (
                "empty prefix and suffix change nothing",
                "",
                "",
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm}\n",
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm}\n",
            ),
        ];
        let cfg = TransformerConfig::builtin();
        for (name, prefix, suffix, input, want) in cases {
            let mut res = resources(input);
            apply_name_prefix_suffix(&mut res, prefix, suffix, &cfg).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(objects(&res), expected(want), "{name}");
        }
    }

    #[test]
    fn history_is_recorded_for_name_references() {
        let mut res = resources("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm}\n");
        let cfg = TransformerConfig::builtin();
        apply_name_prefix_suffix(&mut res, "a-", "-z", &cfg).unwrap();
        apply_name_prefix_suffix(&mut res, "b-", "", &cfg).unwrap();
        let r = &res[0];
        assert_eq!(r.name(), "b-a-cm-z");
        assert_eq!(r.name_prefixes, vec!["a-", "b-"]);
        assert_eq!(r.name_suffixes, vec!["-z"]);
        let names: Vec<&str> = r.previous_ids.iter().map(|id| id.name.as_str()).collect();
        assert_eq!(names, vec!["cm", "a-cm", "a-cm-z"]);
    }

    #[test]
    fn configured_extra_name_fields_are_prefixed_too() {
        let mut specs = TransformerConfig::builtin().name_prefix;
        specs.push(FieldSpec { kind: "Gadget".into(), path: "spec/otherName".into(), ..FieldSpec::default() });
        let mut res = resources("apiVersion: example.com/v1\nkind: Gadget\nmetadata: {name: g}\nspec: {otherName: o}\n");
        apply_name_prefix(&mut res, "p-", &specs).unwrap();
        assert_eq!(objects(&res), expected("apiVersion: example.com/v1\nkind: Gadget\nmetadata: {name: p-g}\nspec: {otherName: p-o}\n"));
    }
}
