//! The render crate's one error type. Every variant names the file (kustomization or resource)
//! and, where there is one, the object or field, so the user knows where to look.

use std::path::PathBuf;

/// Everything that can make a build fail.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// A file or directory could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The path that failed.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// A YAML document did not parse.
    #[error("{file}:{line}:{column}: invalid YAML: {message}")]
    Yaml {
        /// The file holding the document.
        file: PathBuf,
        /// 1-based line of the error (0 when the parser did not say).
        line: u64,
        /// 1-based column of the error (0 when the parser did not say).
        column: u64,
        /// The parser's message.
        message: String,
    },

    /// The directory holds no kustomization file.
    #[error(
        "unable to find one of 'kustomization.yaml', 'kustomization.yml' or 'Kustomization' in directory '{dir}'"
    )]
    NoKustomization {
        /// The directory that was expected to hold one.
        dir: PathBuf,
    },

    /// The kustomization file is invalid (unknown field, wrong type, bad value). The message
    /// follows kustomize's wording where kustomize has one.
    #[error("{file}: {message}")]
    Kustomization {
        /// The kustomization file.
        file: PathBuf,
        /// What is wrong, e.g. `invalid Kustomization: json: unknown field "foo"`.
        message: String,
    },

    /// A path listed in `resources`/`bases`/`components`/`crds`/patches/generators does not exist.
    #[error("{kustomization}: accumulating resources: '{path}' does not exist\n  hint: fix or remove this entry")]
    MissingResource {
        /// The path as it was resolved.
        path: PathBuf,
        /// The kustomization file whose entry named it.
        kustomization: PathBuf,
    },

    /// A remote resource (URL or repository) that could not be had: an unsupported form, or what
    /// the remote source said (unreachable, HTTP error, not vendored, digest mismatch).
    #[error("{kustomization}: remote resource '{url}': {message}")]
    RemoteResource {
        /// The entry as written.
        url: String,
        /// The kustomization file whose entry named it.
        kustomization: PathBuf,
        /// Why, with a hint where there is one.
        message: String,
    },

    /// A kustomization includes itself through a chain of resources/bases/components.
    #[error("cycle detected: {}\n  hint: a kustomization cannot include itself", chain.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" -> "))]
    Cycle {
        /// The kustomization directories on the cycle, starting and ending with the same one.
        chain: Vec<PathBuf>,
    },

    /// A resource file holds something that is not a Kubernetes object.
    #[error("{file}: {message}")]
    InvalidResource {
        /// The resource file.
        file: PathBuf,
        /// What is wrong.
        message: String,
    },

    /// Two resources with the same id, or a merge/replace with nothing to merge into.
    #[error("{kustomization}: {message}")]
    Accumulation {
        /// The kustomization directory being accumulated.
        kustomization: PathBuf,
        /// kustomize's message, naming the resource id.
        message: String,
    },

    /// A configMapGenerator/secretGenerator entry is invalid.
    #[error("{kustomization}: generator '{name}': {message}")]
    Generator {
        /// The kustomization file.
        kustomization: PathBuf,
        /// The generator's name.
        name: String,
        /// What is wrong.
        message: String,
    },

    /// A transformer failed (namespace, prefix/suffix, labels, images, replicas, vars, replacements...).
    #[error("{kustomization}: {transformer}: {message}")]
    Transform {
        /// The kustomization file.
        kustomization: PathBuf,
        /// The field or transformer, e.g. `replacements`.
        transformer: String,
        /// What is wrong, naming the object.
        message: String,
    },

    /// A patch failed to apply or parse.
    #[error("{file}: patch on {resource}: {message}")]
    Patch {
        /// The patch file or kustomization holding an inline patch.
        file: PathBuf,
        /// The resource it targeted (kustomize's id string), or the patch's target description.
        resource: String,
        /// What is wrong.
        message: String,
    },
}

/// Shorthand used throughout the crate.
pub type Result<T, E = RenderError> = std::result::Result<T, E>;
