//! `kfctl gc`: remove vendored releases and remote resources the app no longer uses. An upgrade
//! keeps the release it came from for a rollback; once the user is content, this frees the space
//! (a later rollback then fetches the old release again).

use std::path::{Path, PathBuf};

use crate::app::App;
use crate::config::RegistryConfig;

/// What `kfctl gc` removed.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Collected {
    /// Paths removed, relative to the app directory.
    pub removed: Vec<PathBuf>,
    pub bytes: u64,
}

/// Why `kfctl gc` did nothing.
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error("an upgrade from Kubeflow {from} to {to} is not finished; its releases are still needed\n  hint: finish it with `kfctl upgrade --to {to}` (or go back with `kfctl upgrade --to {from}`), then run `kfctl gc`")]
    UpgradeOpen { from: String, to: String },
    #[error(transparent)]
    App(#[from] crate::app::AppError),
    #[error("cannot remove {path}: {error}")]
    Io { path: PathBuf, error: std::io::Error },
}

/// Remove every directory under `registry/` and every path under `remote/` that the current
/// registry config does not use, and forget the rollback copies in the history (which then no
/// longer exist). With `dry_run`, only say what would go.
pub fn collect(app: &mut App, dry_run: bool) -> Result<Collected, GcError> {
    if let Some(open) = super::open_upgrade(&app.config) {
        return Err(GcError::UpgradeOpen { from: open.from.clone(), to: open.to.clone() });
    }
    let used = used_paths(&app.config.registry);
    let mut unused = Vec::new();
    for top in ["registry", "remote"] {
        find_unused(&app.dir, Path::new(top), &used, &mut unused);
    }
    let mut collected = Collected::default();
    for rel in unused {
        let path = app.dir.join(&rel);
        collected.bytes += size_of(&path);
        if !dry_run {
            let removed = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
            removed.map_err(|error| GcError::Io { path: path.clone(), error })?;
        }
        collected.removed.push(rel);
    }
    if !dry_run {
        let mut changed = false;
        for record in &mut app.config.history {
            changed |= record.from_registry.take().is_some();
        }
        if changed {
            app.save()?;
        }
    }
    Ok(collected)
}

/// The paths (relative to the app directory) the registry config names.
fn used_paths(registry: &RegistryConfig) -> Vec<PathBuf> {
    let mut used = vec![registry.path.clone()];
    used.extend(registry.remotes.iter().map(|r| r.path.clone()));
    used
}

/// Below `rel`: what is neither a used path, nor inside one, nor on the way to one.
fn find_unused(dir: &Path, rel: &Path, used: &[PathBuf], out: &mut Vec<PathBuf>) {
    if std::fs::symlink_metadata(dir.join(rel)).is_err() || used.iter().any(|u| rel.starts_with(u)) {
        return;
    }
    if !used.iter().any(|u| u.starts_with(rel)) {
        out.push(rel.to_path_buf());
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir.join(rel)) else { return };
    let mut names: Vec<_> = entries.flatten().map(|e| e.file_name()).collect();
    names.sort();
    for name in names {
        find_unused(dir, &rel.join(name), used, out);
    }
}

fn size_of(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else { return 0 };
    if !meta.is_dir() {
        return meta.len();
    }
    std::fs::read_dir(path).map(|entries| entries.flatten().map(|e| size_of(&e.path())).sum()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_the_registry_does_not_name_is_unused() {
        let dir = tempfile::tempdir().unwrap();
        for path in ["registry/v1/a", "registry/v2/b", "remote/github.com/o/r/v1/x", "remote/github.com/o/r/v2/y", "remote/github.com/o/s/v1/z"] {
            std::fs::create_dir_all(dir.path().join(path)).unwrap();
        }
        let used = vec![PathBuf::from("registry/v2"), PathBuf::from("remote/github.com/o/r/v2")];
        let mut unused = Vec::new();
        for top in ["registry", "remote"] {
            find_unused(dir.path(), Path::new(top), &used, &mut unused);
        }
        let unused: Vec<String> = unused.iter().map(|p| p.display().to_string()).collect();
        assert_eq!(unused, ["registry/v1", "remote/github.com/o/r/v1", "remote/github.com/o/s"]);
    }
}
