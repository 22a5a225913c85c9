//! kfctl's native kustomize renderer: `build(dir)` renders a kustomization directory like
//! `kubectl kustomize dir` (kustomize v5.5), in-process, without a Kubernetes client.
//!
//! Module map (kustomize's equivalents in brackets): [`kustomization`] the file schema
//! [types.Kustomization], [`loader`] files/dirs/root restrictions [api/loader], [`generator`]
//! configMap/secret generators and the name hash [api/kv, api/hasher], [`krusty`] the build
//! pipeline [api/internal/target], [`sort`] output order [SortOrderTransformer], [`yaml`] YAML in
//! and out [kyaml], [`resource`] the shared object model [api/resource], [`patch`] the patch
//! transformers [api/filters/patchstrategicmerge, patchjson6902, resmap.Select].

pub mod builtin_config;
pub mod error;
pub mod fieldspec;
pub mod generator;
pub mod krusty;
pub mod kustomization;
pub mod loader;
pub mod patch;
pub mod pipeline;
pub mod plugins;
pub mod prefetch;
pub mod resource;
pub mod sort;
pub mod transform;
pub mod yaml;
mod yaml_events;

use std::path::Path;

pub use error::RenderError;
pub use krusty::Build;
pub use resource::{Generated, GeneratorBehavior, Origin, ResId, Resource};

/// Render the kustomization in `dir` as `kubectl kustomize dir` does.
pub fn build(dir: &Path) -> Result<Build, RenderError> {
    krusty::build(dir)
}

/// The multi-document YAML `kubectl kustomize` prints for these objects.
pub fn to_yaml(resources: &[Resource]) -> String {
    yaml::write_documents(resources.iter().map(|r| &r.object))
}
