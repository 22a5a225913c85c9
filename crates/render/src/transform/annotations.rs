//! `commonAnnotations:`: add annotations to objects and their pod templates (kustomize's
//! AnnotationsTransformer and api/filters/annotations).

use indexmap::IndexMap;

use super::{Result, set_map_entries};
use crate::builtin_config::TransformerConfig;
use crate::resource::Resource;

/// Sets `annotations` wherever the config's commonAnnotations fieldSpecs point.
pub fn apply_annotations(res: &mut [Resource], annotations: &IndexMap<String, String>, cfg: &TransformerConfig) -> Result<()> {
    set_map_entries("commonAnnotations", res, annotations, &cfg.common_annotations)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transform::test_support::{expected, objects, pairs, resources};

    #[test]
    fn annotations_table() {
        // Expected outputs measured with `kubectl kustomize` (kustomize v5.5).
        let cases = [
            (
                "pods get metadata only",
                "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n",
                "apiVersion: v1\nkind: Pod\nmetadata: {name: p, annotations: {ann: '1'}}\n",
            ),
            (
                "deployments get the pod template too",
                "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d, annotations: {old: x}}\n",
                "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d, annotations: {old: x, ann: '1'}}\nspec: {template: {metadata: {annotations: {ann: '1'}}}}\n",
            ),
            (
                "cron jobs get the job template and its pod template",
                "apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: cj}\nspec: {jobTemplate: {spec: {template: {}}}}\n",
                "apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: cj, annotations: {ann: '1'}}\nspec: {jobTemplate: {spec: {template: {metadata: {annotations: {ann: '1'}}}}, metadata: {annotations: {ann: '1'}}}}\n",
            ),
            (
                "an existing value is replaced",
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, annotations: {ann: old}}\n",
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, annotations: {ann: '1'}}\n",
            ),
        ];
        let cfg = TransformerConfig::builtin();
        for (name, input, want) in cases {
            let mut res = resources(input);
            apply_annotations(&mut res, &pairs(&[("ann", "1")]), &cfg).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(objects(&res), expected(want), "{name}");
        }
    }
}
