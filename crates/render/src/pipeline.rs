//! Where the build pipeline hands over to the transformer and patch modules, in kustomize's
//! runTransformers order. Core owns the order; the modules own the semantics.

use std::path::PathBuf;

use serde_json::Value;

use crate::error::{RenderError, Result};
use crate::kustomization::KustomizationFile;
use crate::loader::Loader;
use crate::resource::Resource;

/// Everything a kustomization level's transformers need: its kustomization and the transformer
/// configs (`configurations:` and `crds:`) accumulated at this level and below.
pub struct TransformContext<'a> {
    /// The kustomization whose transformers run.
    pub kustomization: &'a KustomizationFile,
    /// Parsed `configurations:` files of this level and below.
    pub configurations: &'a [(PathBuf, Value)],
    /// Parsed `crds:` documents of this level and below.
    pub crds: &'a [(PathBuf, Value)],
}

impl<'a> TransformContext<'a> {
    /// Prepare the transformer config for a level.
    pub fn new(
        kustomization: &'a KustomizationFile,
        configurations: &'a [(PathBuf, Value)],
        crds: &'a [(PathBuf, Value)],
    ) -> Result<Self> {
        Ok(TransformContext { kustomization, configurations, crds })
    }

    fn unavailable(&self, field: &str) -> RenderError {
        RenderError::Transform {
            kustomization: self.kustomization.file.clone(),
            transformer: field.to_string(),
            message: "this field's transformer is not wired into this build yet".into(),
        }
    }

    /// kustomize's builtin transformers for one level, in its order.
    pub fn run_transformers(&self, loader: &Loader, resources: &mut Vec<Resource>) -> Result<()> {
        let kf = self.kustomization;
        let k = &kf.kustomization;
        let file = &kf.file;
        if let Some(entries) = k.patches_strategic_merge.as_deref() {
            crate::patch::apply_patches_strategic_merge(resources, entries, loader, file)?;
        }
        if let Some(patches) = k.patches.as_deref() {
            crate::patch::apply_patches(resources, patches, loader, file)?;
        }
        let used = [
            ("namespace", k.namespace.as_ref().is_some_and(|v| !v.is_empty())),
            ("namePrefix", k.name_prefix.as_ref().is_some_and(|v| !v.is_empty())),
            ("nameSuffix", k.name_suffix.as_ref().is_some_and(|v| !v.is_empty())),
            ("labels", k.labels.as_ref().is_some_and(|v| !v.is_empty())),
            ("commonLabels", k.common_labels.as_ref().is_some_and(|v| !v.is_empty())),
            ("commonAnnotations", k.common_annotations.as_ref().is_some_and(|v| !v.is_empty())),
        ];
        if let Some((field, _)) = used.iter().find(|(_, used)| *used) {
            return Err(self.unavailable(field));
        }
        if let Some(patches) = k.patches_json6902.as_deref() {
            crate::patch::apply_patches_json6902(resources, patches, loader, file)?;
        }
        let used = [
            ("replicas", k.replicas.as_ref().is_some_and(|v| !v.is_empty())),
            ("images", k.images.as_ref().is_some_and(|v| !v.is_empty())),
            ("replacements", k.replacements.as_ref().is_some_and(|v| !v.is_empty())),
        ];
        match used.iter().find(|(_, used)| *used) {
            Some((field, _)) => Err(self.unavailable(field)),
            None => Ok(()),
        }
    }

    /// Rewrite references to renamed objects (kustomize's FixBackReferences), at the root.
    pub fn fix_name_references(&self, resources: &mut [Resource]) -> Result<()> {
        if resources.iter().any(|r| !r.previous_ids.is_empty()) {
            return Err(self.unavailable("nameReference"));
        }
        Ok(())
    }

    /// Substitute `$(VAR)` references (kustomize's ResolveVars), at the root.
    pub fn resolve_vars(&self, _resources: &mut [Resource], vars: &[(PathBuf, Value)]) -> Result<()> {
        if !vars.is_empty() {
            return Err(self.unavailable("vars"));
        }
        Ok(())
    }
}
