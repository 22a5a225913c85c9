//! Remote resources: kustomize's URL forms for a `resources`/`components` entry, and the
//! [`RemoteSource`] that turns one into local files.
//!
//! The renderer itself never touches the network: whoever builds (kfctl's CLI, an app directory)
//! passes a source that downloads into a cache, reads a mirror, or serves what an app vendored.
//!
//! Forms understood (kustomize's api/internal/git/repospec.go):
//! - `https://HOST/OWNER/REPO[.git][//]PATH?ref=REF`: a repository at a ref, and a directory in it.
//!   On github.com the first two path segments are the repository; elsewhere `//` or `.git` marks
//!   where it ends.
//! - `github.com/OWNER/REPO/PATH?ref=REF`: the same, without the scheme.
//! - `https://HOST/PATH/FILE.yaml`: a plain file (no `ref`, no `//`, no `.git`).
//! - `git::...`, `ssh://...`, `git@HOST:...`, `file://...`: refused with a hint; kfctl fetches
//!   repositories as the code host's archives over HTTPS, never with git.

use std::path::PathBuf;

/// A remote entry, parsed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Remote {
    /// A repository at a ref, and a directory inside it.
    Repo(RepoSpec),
    /// A file downloaded as it is.
    File {
        /// The URL, as written (always `http://` or `https://`).
        url: String,
    },
}

/// A repository at a ref, as a `resources` entry names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RepoSpec {
    /// `https` or `http`.
    pub scheme: String,
    /// The code host, e.g. `github.com`.
    pub host: String,
    /// The repository's path on the host, e.g. `argoproj/argo-workflows` (no `.git`).
    pub repo: String,
    /// The directory inside the repository (no leading or trailing `/`; empty for its root).
    pub path: String,
    /// The ref (tag, branch or commit); `HEAD` when the URL names none.
    pub git_ref: String,
}

impl RepoSpec {
    /// kustomize's clone spec: what makes two entries the same repository checkout.
    pub fn key(&self) -> String {
        format!("{}/{}@{}", self.host, self.repo, self.git_ref)
    }

    /// The code host's archive of the repository at the ref (GitHub's, and Gitea's, layout).
    pub fn archive_url(&self) -> String {
        format!("{}://{}/{}/archive/{}.tar.gz", self.scheme, self.host, self.repo, self.git_ref)
    }
}

impl Remote {
    /// The URL whose content this entry needs: the repository archive, or the file itself.
    pub fn fetch_url(&self) -> String {
        match self {
            Remote::Repo(spec) => spec.archive_url(),
            Remote::File { url } => url.clone(),
        }
    }
}

/// Whether a `resources` entry names something remote (a URL or a repository).
pub fn is_remote(entry: &str) -> bool {
    let lower = entry.to_ascii_lowercase();
    ["http://", "https://", "git::", "git@", "ssh://", "file://", "github.com/", "gitlab.com/", "bitbucket.org/"]
        .iter()
        .any(|p| lower.starts_with(p))
        || lower.contains("?ref=")
        || lower.contains("//?")
}

/// Parse a remote entry; the error says why the form is not supported and what to write instead.
pub fn parse(entry: &str) -> Result<Remote, String> {
    let lower = entry.to_ascii_lowercase();
    let https_hint = "write it as https://HOST/OWNER/REPO//PATH?ref=REF: kfctl fetches repositories as the code host's archive over HTTPS, without git";
    if lower.starts_with("git::") || lower.starts_with("ssh://") || lower.starts_with("git@") {
        return Err(format!("the git/ssh form is not supported\n  hint: {https_hint}"));
    }
    if lower.starts_with("file://") {
        return Err("file:// repositories are not supported\n  hint: list the directory by its local path instead".into());
    }
    let (scheme, rest) = if let Some(rest) = entry.strip_prefix("https://") {
        ("https", rest)
    } else if let Some(rest) = entry.strip_prefix("http://") {
        ("http", rest)
    } else if lower.starts_with("github.com/") || lower.starts_with("gitlab.com/") || lower.starts_with("bitbucket.org/") {
        ("https", entry)
    } else {
        return Err(format!("this form of remote resource is not supported\n  hint: {https_hint}"));
    };
    let (location, query) = rest.split_once('?').unwrap_or((rest, ""));
    let mut git_ref = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "ref" | "version" => git_ref = Some(value.to_string()),
            // kustomize's clone options: meaningless for an archive download.
            "timeout" | "submodules" => {}
            other => return Err(format!("unknown query parameter '{other}' (kustomize knows ref, version, timeout, submodules)")),
        }
    }
    let (host, path) = location.split_once('/').ok_or_else(|| "the URL names no path on its host".to_string())?;
    if host.is_empty() || host.contains('@') {
        return Err(format!("the URL's host '{host}' is not supported\n  hint: {https_hint}"));
    }
    let explicit_split = path.find("//");
    let dot_git = path.find(".git/").map(|i| (i, i + 5)).or_else(|| path.ends_with(".git").then(|| (path.len() - 4, path.len())));
    let (repo, subdir) = if let Some(i) = explicit_split {
        (path[..i].trim_end_matches(".git").to_string(), &path[i + 2..])
    } else if let Some((end, next)) = dot_git {
        (path[..end].to_string(), &path[next.min(path.len())..])
    } else if git_ref.is_some() && host.eq_ignore_ascii_case("github.com") {
        let mut parts = path.splitn(3, '/');
        let owner = parts.next().unwrap_or("");
        let name = parts.next().unwrap_or("");
        (format!("{owner}/{name}"), parts.next().unwrap_or(""))
    } else if git_ref.is_some() {
        return Err(format!(
            "cannot tell where the repository ends in this URL on {host}\n  hint: mark it with // (https://{host}/OWNER/REPO//PATH?ref=REF)"
        ));
    } else {
        if scheme == "https" && !entry.starts_with("https://") {
            return Err(format!("a file URL needs its scheme\n  hint: write https://{entry}"));
        }
        return Ok(Remote::File { url: entry.to_string() });
    };
    let segments: Vec<&str> = repo.split('/').collect();
    if segments.len() < 2 || segments.iter().any(|s| s.is_empty() || *s == "." || *s == "..") {
        return Err(format!("'{repo}' is not a repository path (OWNER/REPO)"));
    }
    let subdir = subdir.trim_matches('/');
    if subdir.split('/').any(|s| s == "..") {
        return Err("the path inside the repository may not contain '..'".into());
    }
    let git_ref = git_ref.filter(|r| !r.is_empty()).unwrap_or_else(|| "HEAD".to_string());
    if git_ref.contains("..") || git_ref.starts_with('/') || git_ref.contains(char::is_whitespace) {
        return Err(format!("'{git_ref}' is not a valid ref"));
    }
    Ok(Remote::Repo(RepoSpec {
        scheme: scheme.to_string(),
        host: host.to_ascii_lowercase(),
        repo,
        path: subdir.to_string(),
        git_ref,
    }))
}

/// Where the renderer gets remote content from. Implementations cache and may fetch; the
/// renderer calls them from several threads and may ask for the same entry more than once.
pub trait RemoteSource: Sync {
    /// The local, unpacked root of the repository at the ref.
    fn repository(&self, spec: &RepoSpec) -> Result<PathBuf, String>;
    /// A local copy of the file at `url`.
    fn file(&self, url: &str) -> Result<PathBuf, String>;
}

/// The source for builds that must stay offline and have nothing vendored: every remote entry is
/// refused.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoRemotes;

impl RemoteSource for NoRemotes {
    fn repository(&self, spec: &RepoSpec) -> Result<PathBuf, String> {
        Err(format!("remote repository {} is not available offline\n  hint: vendor it into the tree and list the local path instead", spec.key()))
    }
    fn file(&self, url: &str) -> Result<PathBuf, String> {
        Err(format!("remote file {url} is not available offline\n  hint: vendor it into the tree and list the local path instead"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(entry: &str) -> RepoSpec {
        match parse(entry) {
            Ok(Remote::Repo(spec)) => spec,
            other => panic!("{entry}: {other:?}"),
        }
    }

    #[test]
    fn repository_forms() {
        let cases = [
            // entry, host, repo, path, ref
            ("https://github.com/argoproj/argo-workflows/manifests/base/crds/minimal?ref=v3.7.3", "github.com", "argoproj/argo-workflows", "manifests/base/crds/minimal", "v3.7.3"),
            ("https://github.com/kubernetes-sigs/lws//config/default?ref=v0.7.0", "github.com", "kubernetes-sigs/lws", "config/default", "v0.7.0"),
            ("github.com/kubeflow/manifests/example?ref=v1.4.1", "github.com", "kubeflow/manifests", "example", "v1.4.1"),
            ("https://gitlab.com/group/sub/repo.git/deploy?version=abc123", "gitlab.com", "group/sub/repo", "deploy", "abc123"),
            ("https://example.org/org/repo.git//x/y?ref=main&timeout=2m", "example.org", "org/repo", "x/y", "main"),
            ("https://example.org/org/repo//", "example.org", "org/repo", "", "HEAD"),
            ("https://github.com/org/repo?ref=v1", "github.com", "org/repo", "", "v1"),
        ];
        for (entry, host, name, path, git_ref) in cases {
            let spec = repo(entry);
            assert_eq!((spec.host.as_str(), spec.repo.as_str(), spec.path.as_str(), spec.git_ref.as_str()), (host, name, path, git_ref), "{entry}");
        }
        assert_eq!(
            repo("https://github.com/kubernetes-sigs/lws//config/default?ref=v0.7.0").archive_url(),
            "https://github.com/kubernetes-sigs/lws/archive/v0.7.0.tar.gz"
        );
    }

    #[test]
    fn file_urls() {
        let url = "https://github.com/kubernetes-sigs/jobset/releases/download/v0.10.1/manifests.yaml";
        assert_eq!(parse(url), Ok(Remote::File { url: url.into() }));
        assert!(parse("github.com/org/repo/file.yaml").unwrap_err().contains("needs its scheme"));
    }

    #[test]
    fn refused_forms_say_what_to_write() {
        for entry in [
            "git::https://github.com/org/repo//x?ref=v1",
            "ssh://git@github.com/org/repo//x?ref=v1",
            "git@github.com:org/repo.git//x?ref=v1",
        ] {
            let err = parse(entry).unwrap_err();
            assert!(err.contains("hint: write it as https://HOST/OWNER/REPO//PATH?ref=REF"), "{entry}: {err}");
        }
        assert!(parse("https://example.org/org/repo/x?ref=v1").unwrap_err().contains("mark it with //"));
        assert!(parse("https://github.com/org/repo//../x?ref=v1").unwrap_err().contains("'..'"));
        assert!(parse("https://github.com/org/repo//x?ref=../../etc").unwrap_err().contains("not a valid ref"));
        assert!(parse("https://github.com/org/repo//x?depth=1").unwrap_err().contains("unknown query parameter 'depth'"));
    }

    #[test]
    fn remote_entries_are_told_from_paths() {
        assert!(is_remote("https://github.com/kubeflow/manifests/x?ref=v1"));
        assert!(is_remote("github.com/kubeflow/manifests//x?ref=v1"));
        assert!(!is_remote("../base"));
        assert!(!is_remote("github.com.yaml"));
    }
}
