//! Remote resources of kustomizations (kustomize's URL bases), as the renderer's
//! [`RemoteSource`]s:
//!
//! - [`RemoteFetcher`] downloads: a repository at a ref as the code host's archive of that ref
//!   (`https://HOST/OWNER/REPO/archive/REF.tar.gz`: no git, no API, no token), unpacked with the
//!   registry's hostile-archive rules; a file as it is. Everything lands in a cache keyed by URL,
//!   so a second build reads the disk. `--mirror BASE` reads `https://HOST/PATH` as
//!   `BASE/HOST/PATH` (an `http(s)://` URL or a local directory laid out so).
//! - [`VendoredRemotes`] serves what `kfctl init` vendored into an app directory, checked against
//!   the pins in kfctl.yaml, and never touches the network.
//!
//! Both are called from the renderer's threads; each entry is fetched or verified once per process.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use kfctl_render::{RemoteSource, RepoSpec};

use super::digest::{self, Pin};
use super::{UnpackLimits, fetch};

/// Where to cache remote content: `$KFCTL_CACHE_DIR`, else `$XDG_CACHE_HOME/kfctl`, else
/// `~/.cache/kfctl`, each with `remote/` below it.
pub fn default_cache_dir() -> PathBuf {
    let base = std::env::var_os("KFCTL_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("kfctl")))
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/kfctl")))
        .unwrap_or_else(|| std::env::temp_dir().join("kfctl-cache"));
    base.join("remote")
}

/// One remote fetched during a build: what to vendor and pin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// A repository at a ref, unpacked at `dir`.
    Repo { spec: RepoSpec, dir: PathBuf },
    /// A file, copied to `path`.
    File { url: String, path: PathBuf },
}

/// Downloads remote resources into a cache (through a mirror when one is set).
#[derive(Debug)]
pub struct RemoteFetcher {
    mirror: Option<String>,
    cache: PathBuf,
    /// Results by fetch URL, errors included, so one build never asks twice.
    done: Mutex<HashMap<String, Result<PathBuf, String>>>,
    fetched: Mutex<Vec<Fetched>>,
}

impl RemoteFetcher {
    /// A fetcher caching in `cache`, reading through `mirror` (see the module doc) when given.
    pub fn new(mirror: Option<&str>, cache: PathBuf) -> RemoteFetcher {
        RemoteFetcher {
            mirror: mirror.map(|m| m.trim_end_matches('/').to_string()),
            cache,
            done: Mutex::new(HashMap::new()),
            fetched: Mutex::new(Vec::new()),
        }
    }

    /// What was fetched (or found in the cache) so far, in first-use order.
    pub fn fetched(&self) -> Vec<Fetched> {
        self.fetched.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Where `url` (`https://HOST/PATH`) is read from: itself, or `BASE/HOST/PATH`.
    pub fn source_for(&self, url: &str) -> String {
        match &self.mirror {
            Some(base) => {
                let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
                format!("{base}/{rest}")
            }
            None => url.to_string(),
        }
    }

    /// Fetch once per process: the cached result if there is one.
    fn once(&self, url: &str, get: impl FnOnce() -> Result<PathBuf, String>) -> Result<PathBuf, String> {
        if let Some(done) = self.done.lock().unwrap_or_else(|e| e.into_inner()).get(url) {
            return done.clone();
        }
        let result = get();
        self.done.lock().unwrap_or_else(|e| e.into_inner()).insert(url.to_string(), result.clone());
        result
    }

    fn download(&self, url: &str, staging: &Path) -> Result<fetch::FetchedArchive, String> {
        let source = self.source_for(url);
        fetch::fetch_remote(&source, staging).map_err(|e| {
            let via = if source == url { String::new() } else { format!(" (through the mirror: {source})") };
            let missing = "\n  hint: check that the repository, ref or file exists (on the mirror too, if one is set)";
            let (reason, hint) = match &e {
                super::RegistryError::HttpStatus { status, .. } => {
                    (format!("the server answered {status}"), if *status == 404 { missing } else { "" })
                }
                super::RegistryError::ReadLocal { error, .. } if error.kind() == std::io::ErrorKind::NotFound => {
                    ("the mirror has no such file".to_string(), missing)
                }
                super::RegistryError::ReadLocal { error, .. } => (error.to_string(), ""),
                super::RegistryError::Download { message, .. } => {
                    // reqwest repeats the URL first; the causes say why.
                    let reason = message.split_once("): ").map_or(message.as_str(), |(_, why)| why).to_string();
                    let hint = if self.mirror.is_none() {
                        "\n  hint: without network access, pass --mirror BASE (a directory or server holding HOST/PATH)"
                    } else {
                        "\n  hint: check that the mirror is up and reachable"
                    };
                    (reason, hint)
                }
                other => (other.to_string(), ""),
            };
            format!("cannot fetch {url}{via}: {reason}{hint}")
        })
    }
}

impl RemoteSource for RemoteFetcher {
    fn repository(&self, spec: &RepoSpec) -> Result<PathBuf, String> {
        let url = spec.archive_url();
        let dir = self.once(&url, || {
            let dir = self.cache.join("repos").join(repo_path(spec)?);
            if !dir.is_dir() {
                let parent = dir.parent().unwrap_or(&self.cache);
                std::fs::create_dir_all(parent).map_err(|e| format!("cannot create cache {}: {e}", parent.display()))?;
                let archive = self.download(&url, parent)?;
                let staged = tempfile::Builder::new()
                    .prefix(".kfctl-remote-")
                    .tempdir_in(parent)
                    .map_err(|e| format!("cannot write cache {}: {e}", parent.display()))?;
                let tree = staged.path().join("tree");
                super::unpack(archive.file.path(), &url, &tree, &UnpackLimits::default()).map_err(|e| e.to_string())?;
                // Another kfctl may have cached it meanwhile: theirs is the same URL's content.
                if std::fs::rename(&tree, &dir).is_err() && !dir.is_dir() {
                    return Err(format!("cannot write cache {}", dir.display()));
                }
            }
            Ok(dir)
        })?;
        // One record per repository at a ref, whichever of its directories the entry named.
        self.record(Fetched::Repo { spec: RepoSpec { path: String::new(), ..spec.clone() }, dir: dir.clone() });
        Ok(dir)
    }

    fn file(&self, url: &str) -> Result<PathBuf, String> {
        let path = self.once(url, || {
            let path = self.cache.join("files").join(cache_path(url)?);
            if !path.is_file() {
                let parent = path.parent().unwrap_or(&self.cache);
                std::fs::create_dir_all(parent).map_err(|e| format!("cannot create cache {}: {e}", parent.display()))?;
                let fetched = self.download(url, parent)?;
                fetched.file.persist(&path).map_err(|e| format!("cannot write cache {}: {e}", path.display()))?;
            }
            Ok(path)
        })?;
        self.record(Fetched::File { url: url.to_string(), path: path.clone() });
        Ok(path)
    }
}

impl RemoteFetcher {
    fn record(&self, fetched: Fetched) {
        let mut all = self.fetched.lock().unwrap_or_else(|e| e.into_inner());
        if !all.contains(&fetched) {
            all.push(fetched);
        }
    }
}

/// Where a repository at a ref lives below a cache or an app's `remote/`: `HOST/OWNER/REPO/REF`.
pub fn repo_path(spec: &RepoSpec) -> Result<PathBuf, String> {
    cache_path(&format!("{}/{}", VendoredRemote::repo_url(spec), spec.git_ref))
}

/// `https://HOST/a/b?x` -> `HOST/a/b`, refusing anything that could leave the cache.
pub fn cache_path(url: &str) -> Result<PathBuf, String> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let rest = rest.split(['?', '#']).next().unwrap_or(rest);
    let mut out = PathBuf::new();
    for segment in rest.split('/') {
        if segment.is_empty() || segment == "." || segment == ".." || segment.contains('\\') {
            return Err(format!("{url}: the URL's path has an empty, '.' or '..' segment"));
        }
        out.push(segment);
    }
    Ok(out)
}

/// A remote resource vendored into an app directory, as pinned in kfctl.yaml.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VendoredRemote {
    /// For a repository: `https://HOST/OWNER/REPO`; for a file: its URL.
    pub url: String,
    /// For a repository: the ref.
    pub git_ref: Option<String>,
    /// Where it is, relative to the app directory.
    pub path: PathBuf,
    /// Its content pin.
    pub digest: Pin,
}

impl VendoredRemote {
    /// The URL a vendored repository stands for (`https://HOST/OWNER/REPO`).
    pub fn repo_url(spec: &RepoSpec) -> String {
        format!("{}://{}/{}", spec.scheme, spec.host, spec.repo)
    }
}

/// Serves an app's vendored remotes (see the module doc).
#[derive(Debug)]
pub struct VendoredRemotes {
    app_dir: PathBuf,
    pins: Vec<VendoredRemote>,
    verified: Mutex<HashMap<PathBuf, Result<(), String>>>,
}

impl VendoredRemotes {
    pub fn new(app_dir: &Path, pins: Vec<VendoredRemote>) -> VendoredRemotes {
        VendoredRemotes { app_dir: app_dir.to_path_buf(), pins, verified: Mutex::new(HashMap::new()) }
    }

    fn serve(&self, what: &str, pin: Option<&VendoredRemote>) -> Result<PathBuf, String> {
        let Some(pin) = pin else {
            return Err(format!(
                "{what} is not vendored in this app (kfctl renders an app offline)\n  hint: `kfctl init --force` vendors every remote resource of the release's components"
            ));
        };
        let path = self.app_dir.join(&pin.path);
        let mut verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        let result = verified.entry(path.clone()).or_insert_with(|| match digest::digest_like(&pin.digest, &path) {
            Ok(actual) if actual == pin.digest => Ok(()),
            Ok(actual) => Err(format!(
                "the vendored copy of {what} at {} no longer matches its pin: expected {}, found {actual}\n  hint: restore it (it belongs in git with kfctl.yaml), or re-vendor with `kfctl init --force`",
                path.display(),
                pin.digest
            )),
            Err(e) => Err(format!("the vendored copy of {what} at {} cannot be read: {e}\n  hint: restore it, or re-vendor with `kfctl init --force`", path.display())),
        });
        result.clone().map(|()| path)
    }
}

impl RemoteSource for VendoredRemotes {
    fn repository(&self, spec: &RepoSpec) -> Result<PathBuf, String> {
        let url = VendoredRemote::repo_url(spec);
        let pin = self.pins.iter().find(|p| p.url == url && p.git_ref.as_deref() == Some(spec.git_ref.as_str()));
        self.serve(&format!("repository {url} at {}", spec.git_ref), pin)
    }

    fn file(&self, url: &str) -> Result<PathBuf, String> {
        let pin = self.pins.iter().find(|p| p.url == url && p.git_ref.is_none());
        self.serve(&format!("file {url}"), pin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_paths_stay_inside_the_cache() {
        assert_eq!(
            cache_path("https://github.com/kubernetes-sigs/lws/archive/v0.7.0.tar.gz").unwrap(),
            PathBuf::from("github.com/kubernetes-sigs/lws/archive/v0.7.0.tar.gz")
        );
        for bad in ["https://h/a/../b", "https://h//a", "https://h/a/./b", "https://h/a\\..\\b"] {
            assert!(cache_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn mirror_reads_host_and_path_below_its_base() {
        let fetcher = RemoteFetcher::new(Some("http://127.0.0.1:8080/m/"), PathBuf::from("/nonexistent"));
        assert_eq!(fetcher.source_for("https://github.com/o/r/archive/v1.tar.gz"), "http://127.0.0.1:8080/m/github.com/o/r/archive/v1.tar.gz");
        let direct = RemoteFetcher::new(None, PathBuf::from("/nonexistent"));
        assert_eq!(direct.source_for("https://github.com/o/r/archive/v1.tar.gz"), "https://github.com/o/r/archive/v1.tar.gz");
    }
}
