//! Registry credentials from the docker config file, and the distribution API's auth challenge
//! (`WWW-Authenticate: Basic ...` or `Bearer realm=...,service=...,scope=...`).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;

use super::OciError;

/// A user name and password for one registry. `Debug` does not show the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials").field("username", &self.username).field("password", &"<redacted>").finish()
    }
}

/// The `auths` of a docker config file (`config.json`), by registry host.
#[derive(Debug, Clone, Default)]
pub struct DockerConfig {
    /// The file read, named in errors ("the registry refused the credentials for HOST in FILE").
    pub path: Option<PathBuf>,
    auths: BTreeMap<String, Credentials>,
    /// Hosts with a credential helper (`credHelpers`) or every host (`credsStore`): kfctl does not
    /// run helpers, and says so when such a host asks for credentials.
    helpers: BTreeMap<String, String>,
    store: Option<String>,
}

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ConfigFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default)]
    cred_helpers: BTreeMap<String, String>,
    #[serde(default)]
    creds_store: Option<String>,
}

#[derive(serde::Deserialize, Default)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

impl DockerConfig {
    /// `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`; empty when neither exists.
    pub fn default_path() -> Option<PathBuf> {
        match std::env::var_os("DOCKER_CONFIG") {
            Some(dir) => Some(PathBuf::from(dir).join("config.json")),
            None => std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".docker/config.json")),
        }
    }

    /// Read `path` (an explicit `--docker-config` must exist), or the default file if it exists.
    pub fn load(path: Option<&Path>) -> Result<DockerConfig, OciError> {
        match path {
            Some(path) => Self::read(path),
            None => match Self::default_path() {
                Some(path) if path.exists() => Self::read(&path),
                _ => Ok(DockerConfig::default()),
            },
        }
    }

    fn read(path: &Path) -> Result<DockerConfig, OciError> {
        let bad = |reason: String| OciError::DockerConfig { path: path.to_path_buf(), reason };
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        let file: ConfigFile = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        let mut auths = BTreeMap::new();
        for (key, entry) in file.auths {
            let host = normalize_host(&key);
            let credentials = match (entry.auth.filter(|a| !a.is_empty()), entry.username, entry.password) {
                (Some(auth), _, _) => {
                    let decoded = base64::engine::general_purpose::STANDARD
                        .decode(auth.trim())
                        .ok()
                        .and_then(|bytes| String::from_utf8(bytes).ok())
                        .ok_or_else(|| bad(format!("auths.{key}.auth is not base64 of USER:PASSWORD")))?;
                    let (username, password) = decoded.split_once(':').ok_or_else(|| bad(format!("auths.{key}.auth is not base64 of USER:PASSWORD")))?;
                    Credentials { username: username.to_string(), password: password.to_string() }
                }
                (None, Some(username), Some(password)) => Credentials { username, password },
                _ => continue, // an entry a credential helper fills in; see `helpers`
            };
            auths.insert(host, credentials);
        }
        let helpers = file.cred_helpers.into_iter().map(|(host, helper)| (normalize_host(&host), helper)).collect();
        Ok(DockerConfig { path: Some(path.to_path_buf()), auths, helpers, store: file.creds_store })
    }

    /// A config holding one entry (for library callers and tests that have the password at hand).
    pub fn with_credentials(host: &str, credentials: Credentials) -> DockerConfig {
        DockerConfig { auths: BTreeMap::from([(normalize_host(host), credentials)]), ..DockerConfig::default() }
    }

    /// Credentials for `host`, if the file has them.
    pub fn credentials(&self, host: &str) -> Option<&Credentials> {
        self.auths.get(&normalize_host(host))
    }

    /// The credential helper configured for `host`, which kfctl does not run.
    pub fn helper(&self, host: &str) -> Option<&str> {
        self.helpers.get(&normalize_host(host)).or(self.store.as_ref()).map(String::as_str)
    }

    /// The file, for messages.
    pub fn describe(&self) -> String {
        self.path.as_ref().map_or_else(|| "the docker config (none found)".to_string(), |p| p.display().to_string())
    }
}

/// `https://index.docker.io/v1/` and `docker.io` are one host; a key may be a URL.
fn normalize_host(key: &str) -> String {
    let host = key.trim_start_matches("https://").trim_start_matches("http://");
    let host = host.split('/').next().unwrap_or(host);
    match host {
        "index.docker.io" | "registry-1.docker.io" | "docker.io" => "docker.io".to_string(),
        other => other.to_string(),
    }
}

/// What a registry's 401 asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer { realm: String, service: Option<String>, scope: Option<String> },
}

impl Challenge {
    /// Parse a `WWW-Authenticate` header value.
    pub fn parse(header: &str) -> Option<Challenge> {
        let (scheme, params) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
        if scheme.eq_ignore_ascii_case("basic") {
            return Some(Challenge::Basic);
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let mut values = BTreeMap::new();
        let mut rest = params.trim();
        while !rest.is_empty() {
            let (key, after) = rest.split_once('=')?;
            let (value, after) = match after.strip_prefix('"') {
                Some(quoted) => {
                    let end = quoted.find('"')?;
                    (&quoted[..end], &quoted[end + 1..])
                }
                None => after.split_once(',').map_or((after, ""), |(v, a)| (v, a)),
            };
            values.insert(key.trim().to_ascii_lowercase(), value.to_string());
            rest = after.trim_start_matches([',', ' ']);
        }
        Some(Challenge::Bearer { realm: values.remove("realm")?, service: values.remove("service"), scope: values.remove("scope") })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_auth_and_username_password_entries_and_helpers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        let auth = base64::engine::general_purpose::STANDARD.encode("alice:s3:cret");
        std::fs::write(
            &path,
            format!(
                r#"{{"auths": {{"https://index.docker.io/v1/": {{"auth": "{auth}"}}, "registry:5000": {{"username": "bob", "password": "pw"}}, "quay.io": {{}}}},
                   "credHelpers": {{"gcr.io": "gcloud"}}}}"#
            ),
        )
        .unwrap();
        let config = DockerConfig::load(Some(&path)).unwrap();
        assert_eq!(config.credentials("docker.io").unwrap().password, "s3:cret");
        assert_eq!(config.credentials("registry:5000").unwrap().username, "bob");
        assert!(config.credentials("quay.io").is_none());
        assert_eq!(config.helper("gcr.io"), Some("gcloud"));
        assert!(!format!("{:?}", config.credentials("docker.io")).contains("s3:cret"));
    }

    #[test]
    fn a_broken_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, r#"{"auths": {"h": {"auth": "!!"}}}"#).unwrap();
        let err = DockerConfig::load(Some(&path)).unwrap_err().to_string();
        assert!(err.contains("config.json") && err.contains("auths.h.auth"), "{err}");
    }

    #[test]
    fn parses_bearer_and_basic_challenges() {
        assert_eq!(Challenge::parse(r#"Basic realm="Registry Realm""#), Some(Challenge::Basic));
        assert_eq!(
            Challenge::parse(r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull""#),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/nginx:pull".into())
            })
        );
        assert_eq!(Challenge::parse("Negotiate"), None);
    }
}
