//! Where the build pipeline hands over to the transformer and patch modules, in kustomize's
//! runTransformers order. Core owns the order; the modules own the semantics.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::builtin_config::TransformerConfig;
use crate::error::{RenderError, Result};
use crate::fieldspec::FieldSpec;
use crate::kustomization::KustomizationFile;
use crate::loader::Loader;
use crate::resource::Resource;
use crate::transform::{self, ImageRewrite, LabelOptions, ReplicaCount, TransformError, VarSet};

/// A kustomization level's transformer setup: its kustomization and the transformer config
/// (built-in fieldSpecs + `configurations:` + `crds:` of this level and below).
pub struct TransformContext<'a> {
    /// The kustomization whose transformers run.
    pub kustomization: &'a KustomizationFile,
    /// The merged transformer config.
    pub config: TransformerConfig,
}

fn transform_error(file: &Path, transformer: &str) -> impl Fn(TransformError) -> RenderError {
    let file = file.to_path_buf();
    let transformer = transformer.to_string();
    move |e| RenderError::Transform { kustomization: file.clone(), transformer: transformer.clone(), message: e.to_string() }
}

impl<'a> TransformContext<'a> {
    /// Merge the built-in config with the `configurations:` and `crds:` documents gathered so far.
    pub fn new(
        kustomization: &'a KustomizationFile,
        configurations: &[(PathBuf, Value)],
        crds: &[(PathBuf, Value)],
    ) -> Result<Self> {
        let mut config = TransformerConfig::builtin();
        for (file, doc) in configurations {
            let more = TransformerConfig::from_value(doc).map_err(|e| RenderError::Kustomization {
                file: file.clone(),
                message: format!("{e}\n  hint: a configurations file holds fieldSpec lists such as nameReference, commonLabels, namespace, varReference, images"),
            })?;
            config.merge(&more).map_err(|e| RenderError::Kustomization { file: file.clone(), message: e.to_string() })?;
        }
        for (file, doc) in crds {
            let more = TransformerConfig::from_crd_openapi(doc).map_err(|e| RenderError::Kustomization {
                file: file.clone(),
                message: format!("unable to parse open API definition: {e}"),
            })?;
            config.merge(&more).map_err(|e| RenderError::Kustomization { file: file.clone(), message: e.to_string() })?;
        }
        Ok(TransformContext { kustomization, config })
    }

    /// kustomize's builtin transformers for one level, in its order: patchesStrategicMerge,
    /// patches, namespace, namePrefix, nameSuffix, labels + commonLabels, commonAnnotations,
    /// patchesJson6902, replicas, images, replacements.
    pub fn run_transformers(&self, loader: &Loader, resources: &mut Vec<Resource>) -> Result<()> {
        let kf = self.kustomization;
        let k = &kf.kustomization;
        let file = &kf.file;
        let cfg = &self.config;
        if let Some(entries) = k.patches_strategic_merge.as_deref() {
            crate::patch::apply_patches_strategic_merge(resources, entries, loader, file)?;
        }
        if let Some(patches) = k.patches.as_deref() {
            crate::patch::apply_patches(resources, patches, loader, file)?;
        }
        if let Some(ns) = k.namespace.as_deref().filter(|ns| !ns.is_empty()) {
            transform::apply_namespace(resources, ns, cfg).map_err(transform_error(file, "namespace"))?;
        }
        if let Some(prefix) = k.name_prefix.as_deref().filter(|p| !p.is_empty()) {
            transform::apply_name_prefix(resources, prefix, &cfg.name_prefix).map_err(transform_error(file, "namePrefix"))?;
        }
        if let Some(suffix) = k.name_suffix.as_deref().filter(|s| !s.is_empty()) {
            transform::apply_name_suffix(resources, suffix, &cfg.name_suffix).map_err(transform_error(file, "nameSuffix"))?;
        }
        if let Some(labels) = k.labels.as_deref() {
            if let Some(common) = k.common_labels.as_ref() {
                for label in labels {
                    if let Some(key) = label.pairs.iter().flatten().map(|(key, _)| key).find(|key| common.contains_key(*key)) {
                        return Err(RenderError::Kustomization {
                            file: file.clone(),
                            message: format!("label name '{key}' exists in both commonLabels and labels"),
                        });
                    }
                }
            }
            for label in labels {
                let fields: Vec<FieldSpec> = label
                    .fields
                    .iter()
                    .flatten()
                    .map(|v| serde_json::from_value(v.clone()))
                    .collect::<std::result::Result<_, _>>()
                    .map_err(|e| RenderError::Kustomization { file: file.clone(), message: format!("labels: fields: {e}") })?;
                let options = LabelOptions {
                    include_selectors: label.include_selectors,
                    include_templates: label.include_templates,
                    fields,
                };
                let pairs = label.pairs.clone().unwrap_or_default();
                transform::apply_labels(resources, &pairs, &options, cfg).map_err(transform_error(file, "labels"))?;
            }
        }
        if let Some(labels) = k.common_labels.as_ref().filter(|l| !l.is_empty()) {
            transform::apply_common_labels(resources, labels, cfg).map_err(transform_error(file, "commonLabels"))?;
        }
        if let Some(annotations) = k.common_annotations.as_ref().filter(|a| !a.is_empty()) {
            transform::apply_annotations(resources, annotations, cfg).map_err(transform_error(file, "commonAnnotations"))?;
        }
        if let Some(patches) = k.patches_json6902.as_deref() {
            crate::patch::apply_patches_json6902(resources, patches, loader, file)?;
        }
        if let Some(replicas) = k.replicas.as_deref().filter(|r| !r.is_empty()) {
            let replicas: Vec<ReplicaCount> = replicas
                .iter()
                .map(|r| ReplicaCount { name: r.name.clone().unwrap_or_default(), count: r.count })
                .collect();
            transform::apply_replicas(resources, &replicas, cfg).map_err(transform_error(file, "replicas"))?;
        }
        if let Some(images) = k.images.as_deref().filter(|i| !i.is_empty()) {
            let images: Vec<ImageRewrite> = images
                .iter()
                .map(|i| ImageRewrite {
                    name: i.name.clone().unwrap_or_default(),
                    new_name: i.new_name.clone(),
                    new_tag: i.new_tag.clone(),
                    digest: i.digest.clone(),
                    tag_suffix: i.tag_suffix.clone(),
                })
                .collect();
            transform::apply_images(resources, &images, cfg).map_err(transform_error(file, "images"))?;
        }
        if let Some(entries) = k.replacements.as_deref().filter(|r| !r.is_empty()) {
            let replacements = self.load_replacements(loader, entries)?;
            transform::replacements::apply_replacements(resources, &replacements)
                .map_err(transform_error(file, "replacements"))?;
        }
        Ok(())
    }

    fn load_replacements(&self, loader: &Loader, entries: &[Value]) -> Result<Vec<Value>> {
        load_replacement_entries(loader, &self.kustomization.file, entries)
    }

    /// Rewrite references to renamed objects (kustomize's FixBackReferences), at the root.
    pub fn fix_name_references(&self, resources: &mut [Resource]) -> Result<()> {
        transform::fix_name_references(resources, &self.config)
            .map_err(transform_error(&self.kustomization.file, "nameReference"))
    }

    /// Substitute `$(VAR)` references (kustomize's ResolveVars), at the root. Returns kustomize's
    /// log line for declared vars that no field used.
    pub fn resolve_vars(&self, resources: &mut [Resource], vars: &VarSet) -> Result<Option<String>> {
        let unused = transform::resolve_vars(resources, vars, &self.config)
            .map_err(transform_error(&self.kustomization.file, "vars"))?;
        Ok((!unused.is_empty()).then(|| format!("well-defined vars that were never replaced: {}", unused.join(","))))
    }
}

/// Replacement entries as kustomize reads them: inline replacements as they are; `path:` entries
/// read from their file (a list of replacements, or one).
pub fn load_replacement_entries(loader: &Loader, file: &Path, entries: &[Value]) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    for entry in entries {
        match entry.get("path").and_then(Value::as_str) {
            Some(path) => {
                if entry.as_object().is_some_and(|m| m.len() > 1) {
                    return Err(RenderError::Kustomization {
                        file: file.to_path_buf(),
                        message: format!("replacements: the entry with path '{path}' must not also hold an inline replacement"),
                    });
                }
                let (real, text) = loader.read_text(path, file)?;
                for doc in crate::yaml::parse_documents_as(&text, &real, crate::yaml::Dialect::Yaml11)? {
                    match doc {
                        Value::Array(items) => out.extend(items),
                        other => out.push(other),
                    }
                }
            }
            None => out.push(entry.clone()),
        }
    }
    Ok(out)
}
