//! Reading files the way kustomize's file loader does: paths relative to a kustomization root,
//! files restricted to that root (kubectl's default `--load-restrictor LoadRestrictionsRootOnly`),
//! new roots (bases, components) checked for cycles, remote repositories kept apart.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::error::{RenderError, Result};
use crate::resource::{Origin, PathSegment, Resource};
use crate::yaml::ObjectDocument;

/// A kustomization root and the chain of roots that led to it (root of the build first).
#[derive(Debug, Clone)]
pub struct Loader {
    /// The kustomization directory, symlinks resolved.
    pub root: PathBuf,
    /// Roots of the referrers, outermost first (for cycle detection).
    pub referrers: Vec<PathBuf>,
    /// The remote repository this root is inside, if any: its local bases must stay in it.
    pub repo: Option<Arc<RepoRoot>>,
    /// The repositories entered on the way here, outermost first (kustomize's repo cycle check).
    pub repo_keys: Vec<String>,
}

/// A remote repository checkout a loader's root is inside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoRoot {
    /// [`crate::remote::RepoSpec::key`]: host, repository and ref.
    pub key: String,
    /// The repository's local root, symlinks resolved.
    pub dir: PathBuf,
}

/// Why a file could not be loaded; kept apart so the caller can try the path as a directory.
#[derive(Debug)]
pub enum FileLoadError {
    /// The path is not a readable file under the root.
    NotAFile(String),
    /// The file is outside the root.
    Security(String),
    /// The file was read but is not valid YAML or not a valid object.
    Malformed(RenderError),
}

pub use crate::remote::is_remote;

/// Lexically normalise `a/./b/../c` to `a/c` (kustomize joins and cleans before symlink checks).
pub fn clean(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for comp in path.components() {
        match comp {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

impl Loader {
    /// The loader for the directory being built.
    pub fn new_root(dir: &Path) -> Result<Loader> {
        let root = std::fs::canonicalize(dir).map_err(|source| RenderError::Io { path: dir.to_path_buf(), source })?;
        if !root.is_dir() {
            return Err(RenderError::NoKustomization { dir: dir.to_path_buf() });
        }
        Ok(Loader { root, referrers: Vec::new(), repo: None, repo_keys: Vec::new() })
    }

    /// The absolute, symlink-resolved path of a file entry, checked to be in or below the root.
    pub fn resolve_file(&self, entry: &str) -> std::result::Result<PathBuf, FileLoadError> {
        let joined = if Path::new(entry).is_absolute() { PathBuf::from(entry) } else { self.root.join(entry) };
        let joined = clean(&joined);
        let file_name = joined.file_name().map(|f| f.to_os_string());
        let parent = joined.parent().map(Path::to_path_buf).unwrap_or_default();
        let real_dir = std::fs::canonicalize(&parent).map_err(|e| {
            FileLoadError::NotAFile(format!("evalsymlink failure on '{}' : {e}", joined.display()))
        })?;
        let Some(file_name) = file_name else {
            return Err(FileLoadError::NotAFile(format!("'{}' must resolve to a file", joined.display())));
        };
        let candidate = real_dir.join(&file_name);
        // A symlinked file resolves to its target, as kustomize's EvalSymlinks does.
        let real = match std::fs::canonicalize(&candidate) {
            Ok(p) => p,
            Err(e) => {
                return Err(FileLoadError::NotAFile(format!(
                    "evalsymlink failure on '{}' : {e}",
                    joined.display()
                )));
            }
        };
        if real.is_dir() {
            return Err(FileLoadError::NotAFile(format!("'{}' must resolve to a file", real.display())));
        }
        let real_parent = real.parent().unwrap_or(Path::new("/"));
        if !real_parent.starts_with(&self.root) {
            return Err(FileLoadError::Security(format!(
                "security; file '{}' is not in or below '{}'",
                joined.display(),
                self.root.display()
            )));
        }
        Ok(real)
    }

    /// Read a file entry (patch, generator source, config) relative to the root.
    pub fn read_file(&self, entry: &str, kustomization: &Path) -> Result<(PathBuf, Vec<u8>)> {
        match self.resolve_file(entry) {
            Ok(path) => {
                let bytes = std::fs::read(&path).map_err(|source| RenderError::Io { path: path.clone(), source })?;
                Ok((path, bytes))
            }
            Err(FileLoadError::NotAFile(_)) if !self.root.join(entry).exists() => {
                Err(RenderError::MissingResource { path: self.root.join(entry), kustomization: kustomization.to_path_buf() })
            }
            Err(FileLoadError::NotAFile(m)) | Err(FileLoadError::Security(m)) => {
                Err(RenderError::InvalidResource { file: self.root.join(entry), message: m })
            }
            Err(FileLoadError::Malformed(e)) => Err(e),
        }
    }

    /// Read a text file entry.
    pub fn read_text(&self, entry: &str, kustomization: &Path) -> Result<(PathBuf, String)> {
        let (path, bytes) = self.read_file(entry, kustomization)?;
        match String::from_utf8(bytes) {
            Ok(text) => Ok((path, text)),
            Err(_) => Err(RenderError::InvalidResource { file: path, message: "file is not valid UTF-8".into() }),
        }
    }

    /// A loader for a base or component directory named by `entry`, with kustomize's checks:
    /// not absolute, a directory, and not equal to or above this root or any referrer's root.
    pub fn child(&self, entry: &str) -> std::result::Result<Loader, String> {
        if Path::new(entry).is_absolute() {
            return Err(format!("new root '{entry}' cannot be absolute"));
        }
        let joined = clean(&self.root.join(entry));
        let real = std::fs::canonicalize(&joined)
            .map_err(|e| format!("must build at directory: not a valid directory: evalsymlink failure on '{}' : {e}", joined.display()))?;
        if !real.is_dir() {
            return Err(format!("must build at directory: '{}' must resolve to a directory", real.display()));
        }
        for visited in std::iter::once(&self.root).chain(self.referrers.iter().rev()) {
            if visited.starts_with(&real) {
                return Err(format!(
                    "cycle detected: candidate root '{}' contains visited root '{}'",
                    real.display(),
                    visited.display()
                ));
            }
        }
        if let Some(repo) = self.repo.as_ref().filter(|repo| !real.starts_with(&repo.dir)) {
            return Err(format!("'{}' refers to directory outside of repo '{}'", real.display(), repo.key));
        }
        let mut referrers = self.referrers.clone();
        referrers.push(self.root.clone());
        Ok(Loader { root: real, referrers, repo: self.repo.clone(), repo_keys: self.repo_keys.clone() })
    }

    /// A loader for the directory `spec.path` of a remote repository unpacked at `repo_dir`, with
    /// kustomize's check that no repository is entered again below itself.
    pub fn remote_child(&self, spec: &crate::remote::RepoSpec, repo_dir: &Path) -> std::result::Result<Loader, String> {
        let key = spec.key();
        if let Some(previous) = self.repo_keys.iter().find(|k| **k == key) {
            return Err(format!("cycle detected: repository '{key}' is referenced again below '{previous}'"));
        }
        let dir = std::fs::canonicalize(repo_dir).map_err(|e| format!("{}: {e}", repo_dir.display()))?;
        let root = std::fs::canonicalize(clean(&dir.join(&spec.path)))
            .map_err(|e| format!("'{}' is not a directory of {key}: {e}", spec.path))?;
        if !root.is_dir() || !root.starts_with(&dir) {
            return Err(format!("'{}' is not a directory of {key}", spec.path));
        }
        let mut referrers = self.referrers.clone();
        referrers.push(self.root.clone());
        let mut repo_keys = self.repo_keys.clone();
        repo_keys.push(key.clone());
        Ok(Loader { root, referrers, repo: Some(Arc::new(RepoRoot { key, dir })), repo_keys })
    }
}

/// Parse a resource file's documents into resources, as kustomize's resource factory does: empty
/// documents dropped, every object needs `kind` and `metadata.name` (lists excepted), `*List` kinds with `items` expanded (their items queued after the file's other documents).
pub fn resources_from_text(text: &str, file: &Path, origin: &Origin) -> Result<Vec<Resource>> {
    resources_from_documents(crate::yaml::parse_object_documents(text, file)?, file, origin)
}

/// [`resources_from_text`] for a file whose documents are already parsed.
pub fn resources_from_documents(docs: Vec<ObjectDocument>, file: &Path, origin: &Origin) -> Result<Vec<Resource>> {
    let mut queue: std::collections::VecDeque<ObjectDocument> = docs.into();
    let mut out = Vec::new();
    let invalid = |message: String| RenderError::InvalidResource { file: file.to_path_buf(), message };
    while let Some(ObjectDocument { value: doc, bare_keys }) = queue.pop_front() {
        let Value::Object(obj) = doc else {
            return Err(invalid(format!("expected a YAML mapping (a Kubernetes object), found: {}", crate::yaml::to_string(&doc).trim_end())));
        };
        if obj.is_empty() {
            continue;
        }
        let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
        if kind.is_empty() {
            return Err(invalid(format!("missing kind in object {}", describe(&obj))));
        }
        let name = obj.get("metadata").and_then(|m| m.get("name")).and_then(Value::as_str).unwrap_or("");
        if !kind.ends_with("List") && name.is_empty() {
            return Err(invalid(format!("missing metadata.name in object {}", describe(&obj))));
        }
        if kind.ends_with("List") {
            match obj.get("items") {
                None => {}
                Some(Value::Null) => continue,
                Some(Value::Array(items)) => {
                    queue.extend(items.iter().enumerate().map(|(i, item)| {
                        let prefix = [PathSegment::Field("items".into()), PathSegment::Item(i)];
                        let bare_keys = bare_keys.iter().filter_map(|path| path.strip_prefix(&prefix[..]).map(<[_]>::to_vec)).collect();
                        ObjectDocument { value: item.clone(), bare_keys }
                    }));
                    continue;
                }
                Some(_) => return Err(invalid(format!("expected array in {kind}/items"))),
            }
        }
        let mut res = Resource::new(obj, origin.clone());
        res.bare_keys = bare_keys;
        out.push(res);
    }
    Ok(out)
}

fn describe(obj: &Map<String, Value>) -> String {
    let get = |k: &str| obj.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let name = obj.get("metadata").and_then(|m| m.get("name")).and_then(Value::as_str).unwrap_or("");
    format!("{{apiVersion: {}, kind: {}, name: {name}}}", get("apiVersion"), get("kind"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_expanded_after_other_documents() {
        let text = "apiVersion: v1\nkind: ConfigMapList\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata:\n    name: b\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n";
        let res = resources_from_text(text, Path::new("f.yaml"), &Origin::default()).unwrap();
        let names: Vec<&str> = res.iter().map(|r| r.name()).collect();
        assert_eq!(names, ["a", "b"]);
    }

    #[test]
    fn missing_name_is_an_error_null_items_are_not() {
        let err = resources_from_text("apiVersion: v1\nkind: ConfigMap\n", Path::new("f.yaml"), &Origin::default());
        assert!(err.unwrap_err().to_string().contains("missing metadata.name"));
        let ok = resources_from_text(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\nlist:\n- a\n-\n",
            Path::new("f.yaml"),
            &Origin::default(),
        );
        assert_eq!(ok.unwrap().len(), 1);
    }

    #[test]
    fn child_rejects_parent_dirs() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        let a = Loader::new_root(&dir.path().join("a")).unwrap();
        let b = a.child("b").unwrap();
        assert!(b.child("..").unwrap_err().contains("cycle detected"));
        assert!(a.child("/abs").unwrap_err().contains("cannot be absolute"));
    }
}
