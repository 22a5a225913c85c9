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
pub mod remote;
pub mod resource;
pub mod sort;
pub mod transform;
pub mod yaml;
mod yaml_events;

use std::path::Path;

pub use error::RenderError;
pub use krusty::Build;
pub use remote::{NoRemotes, Remote, RemoteSource, RepoSpec};
pub use resource::{Generated, GeneratorBehavior, Origin, ResId, Resource};

/// Render the kustomization in `dir` as `kubectl kustomize dir` does; remote resources are
/// refused ([`remote::NoRemotes`]).
pub fn build(dir: &Path) -> Result<Build, RenderError> {
    krusty::build(dir, &remote::NoRemotes)
}

/// [`build`], taking remote resources from `remotes` (a cache, a mirror, or what an app vendored).
pub fn build_with_remotes(dir: &Path, remotes: &dyn remote::RemoteSource) -> Result<Build, RenderError> {
    krusty::build(dir, remotes)
}

/// The multi-document YAML `kubectl kustomize` prints for these objects.
pub fn to_yaml(resources: &[Resource]) -> String {
    // Large renders are written in two halves at once (documents are independent), then joined
    // with the separator the single writer would have put between them.
    if resources.len() < 64 || std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        return yaml::write_documents(resources.iter().map(|r| &r.object));
    }
    let (first, second) = resources.split_at(resources.len() / 2);
    let (mut out, rest) = std::thread::scope(|scope| {
        let second = scope.spawn(|| yaml::write_documents(second.iter().map(|r| &r.object)));
        let first = yaml::write_documents(first.iter().map(|r| &r.object));
        (first, second.join().expect("YAML writer thread"))
    });
    out.reserve(rest.len() + 4);
    out.push_str("---\n");
    out.push_str(&rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_half_writer_gives_the_single_writer_output() {
        let resources: Vec<Resource> = (0..101)
            .map(|i| {
                let v = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("c{i}")}, "data": {"k": "yes"}});
                Resource::new(v.as_object().unwrap().clone(), Origin::default())
            })
            .collect();
        assert_eq!(to_yaml(&resources), yaml::write_documents(resources.iter().map(|r| &r.object)));
        assert_eq!(to_yaml(&resources[..3]), yaml::write_documents(resources[..3].iter().map(|r| &r.object)));
    }
}
