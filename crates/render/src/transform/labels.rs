//! `commonLabels:` and `labels:`: add labels to objects and, as configured, to selectors and
//! pod templates (kustomize's LabelTransformer and api/filters/labels).

use indexmap::IndexMap;

use super::{Result, set_map_entries};
use crate::builtin_config::{ConfigError, TransformerConfig, merge_specs};
use crate::fieldspec::FieldSpec;
use crate::resource::Resource;

/// One `labels:` entry's options.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LabelOptions {
    /// Also set the labels in selectors (and everywhere commonLabels goes).
    pub include_selectors: bool,
    /// Also set the labels in pod templates (ignored when `include_selectors` is set, which
    /// covers templates already).
    pub include_templates: bool,
    /// Extra fieldSpecs from the entry's `fields:`.
    pub fields: Vec<FieldSpec>,
}

/// `commonLabels:`: sets `labels` on objects, pod templates and selectors per the config.
pub fn apply_common_labels(res: &mut [Resource], labels: &IndexMap<String, String>, cfg: &TransformerConfig) -> Result<()> {
    set_map_entries("commonLabels", res, labels, &cfg.common_labels)
}

/// One `labels:` entry: by default only `metadata.labels`; with `include_selectors` everywhere
/// commonLabels goes; with `include_templates` also pod templates; plus the entry's `fields`.
pub fn apply_labels(
    res: &mut [Resource],
    labels: &IndexMap<String, String>,
    options: &LabelOptions,
    cfg: &TransformerConfig,
) -> Result<()> {
    let specs = label_field_specs(options, cfg).map_err(|e| super::TransformError::InvalidSpec {
        field: "labels".to_string(),
        message: e.to_string(),
    })?;
    set_map_entries("labels", res, labels, &specs)
}

/// The fieldSpecs one `labels:` entry uses (kustomize merges the defaults into the entry's own).
pub fn label_field_specs(options: &LabelOptions, cfg: &TransformerConfig) -> Result<Vec<FieldSpec>, ConfigError> {
    let mut specs = options.fields.clone();
    if options.include_selectors {
        merge_specs(&mut specs, &cfg.common_labels)?;
    } else {
        merge_specs(&mut specs, &[FieldSpec::new("metadata/labels", true)])?;
        if options.include_templates {
            merge_specs(&mut specs, &cfg.template_labels)?;
        }
    }
    Ok(specs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transform::test_support::{expected, objects, pairs, resources};

    const WORKLOADS: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: s}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  template:\n    spec:\n      topologySpreadConstraints:\n      - labelSelector: {matchLabels: {x: y}}\n---\napiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: ss}\nspec:\n  selector: {matchLabels: {a: b}}\n  template: {metadata: {labels: {a: b}}}\n  volumeClaimTemplates:\n  - metadata: {name: v}\n---\napiVersion: batch/v1\nkind: CronJob\nmetadata: {name: cj}\nspec:\n  jobTemplate:\n    spec:\n      template:\n        spec: {}\n---\napiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: p}\nspec: {}\n";

    #[test]
    fn common_labels_go_into_selectors_and_templates() {
        // Expected output measured with `kubectl kustomize` on the same input.
        let want = "apiVersion: v1\nkind: Service\nmetadata: {name: s, labels: {c: cc, z: zz}}\nspec: {selector: {c: cc, z: zz}}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d, labels: {c: cc, z: zz}}\nspec:\n  template:\n    spec:\n      topologySpreadConstraints:\n      - labelSelector: {matchLabels: {x: y, c: cc, z: zz}}\n    metadata: {labels: {c: cc, z: zz}}\n  selector: {matchLabels: {c: cc, z: zz}}\n---\napiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: ss, labels: {c: cc, z: zz}}\nspec:\n  selector: {matchLabels: {a: b, c: cc, z: zz}}\n  template: {metadata: {labels: {a: b, c: cc, z: zz}}}\n  volumeClaimTemplates:\n  - metadata: {name: v, labels: {c: cc, z: zz}}\n---\napiVersion: batch/v1\nkind: CronJob\nmetadata: {name: cj, labels: {c: cc, z: zz}}\nspec:\n  jobTemplate:\n    spec:\n      template:\n        spec: {}\n        metadata: {labels: {c: cc, z: zz}}\n    metadata: {labels: {c: cc, z: zz}}\n---\napiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: p, labels: {c: cc, z: zz}}\nspec: {}\n";
        let mut res = resources(WORKLOADS);
        apply_common_labels(&mut res, &pairs(&[("z", "zz"), ("c", "cc")]), &TransformerConfig::builtin()).unwrap();
        assert_eq!(objects(&res), expected(want));
    }

    #[test]
    fn labels_entry_options_table() {
        let cfg = TransformerConfig::builtin();
        let cases = [
            (
                "default: metadata only",
                LabelOptions::default(),
                "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec: {template: {spec: {}}}\n",
                "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d, labels: {t: tt}}\nspec: {template: {spec: {}}}\n",
            ),
            (
                "includeTemplates: pod templates and volume claim templates, not selectors",
                LabelOptions { include_templates: true, ..LabelOptions::default() },
                "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: ss}\nspec:\n  selector: {matchLabels: {a: b}}\n  template: {metadata: {labels: {a: b}}}\n  volumeClaimTemplates:\n  - metadata: {name: v}\n",
                "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: ss, labels: {t: tt}}\nspec:\n  selector: {matchLabels: {a: b}}\n  template: {metadata: {labels: {a: b, t: tt}}}\n  volumeClaimTemplates:\n  - metadata: {name: v, labels: {t: tt}}\n",
            ),
            (
                "includeSelectors: like commonLabels",
                LabelOptions { include_selectors: true, ..LabelOptions::default() },
                "apiVersion: v1\nkind: Service\nmetadata: {name: s}\n",
                "apiVersion: v1\nkind: Service\nmetadata: {name: s, labels: {t: tt}}\nspec: {selector: {t: tt}}\n",
            ),
            (
                "fields: custom fieldSpecs with create",
                LabelOptions {
                    fields: vec![FieldSpec { kind: "Gadget".into(), path: "spec/podLabels".into(), create: true, ..FieldSpec::default() }],
                    ..LabelOptions::default()
                },
                "apiVersion: example.com/v1\nkind: Gadget\nmetadata: {name: g}\n",
                "apiVersion: example.com/v1\nkind: Gadget\nmetadata: {name: g, labels: {t: tt}}\nspec: {podLabels: {t: tt}}\n",
            ),
        ];
        for (name, options, input, want) in cases {
            let mut res = resources(input);
            apply_labels(&mut res, &pairs(&[("t", "tt")]), &options, &cfg).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(objects(&res), expected(want), "{name}");
        }
    }

    #[test]
    fn label_on_a_scalar_labels_field_is_an_error() {
        let mut res = resources("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, labels: oops}\n");
        let err = apply_common_labels(&mut res, &pairs(&[("a", "b")]), &TransformerConfig::builtin()).unwrap_err();
        assert!(err.to_string().contains("ConfigMap"), "{err}");
    }
}
