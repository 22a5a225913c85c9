//! The click-to-deploy web app: `kfctl serve`.
//!
//! An axum server with its HTML, CSS and JavaScript embedded in the binary. The wizard's answers
//! are validated here ([`wizard`]), a deployment runs as a background task writing its own app
//! directory and progress log under the state directory ([`jobs`], [`deploy`]), the browser
//! follows it over server-sent events ([`events`]) and downloads the app directory without
//! credentials at the end ([`archive`]). Every request passes [`access::guard`]. Jobs run on
//! threads of their own, one per app at a time ([`worker`]); an interrupted one can be resumed.

pub mod access;
pub mod archive;
pub mod deploy;
pub mod events;
pub mod jobs;
mod routes;
pub mod upgrade;
pub mod wizard;
pub mod worker;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::Router;

use access::Secret;
use jobs::{JobId, JobStore};
use wizard::ComponentChoice;

/// What went wrong starting or running the server.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error(
        "refusing to listen on {0}: it is not a loopback address and this server holds cluster credentials\n  \
         hint: pass --allow-remote if you really want other machines to reach it (anyone with the token can deploy)"
    )]
    RemoteNotAllowed(SocketAddr),
    #[error("cannot listen on {addr}: {source}\n  hint: choose another port with --listen 127.0.0.1:PORT")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error(transparent)]
    Jobs(#[from] jobs::JobError),
    #[error("cannot read the registry archive {path}: {error}\n  hint: pass an existing .tar.gz to --registry")]
    RegistryRead { path: PathBuf, error: std::io::Error },
    #[error("--registry {source_name} is a remote URL without a digest\n  hint: pass --registry-sha256 HEX so every deployment verifies the archive")]
    RegistryDigest { source_name: String },
    #[error("the server stopped: {0}")]
    Serve(std::io::Error),
}

/// A Kubeflow release the wizard offers: where its registry is, and its component catalog.
#[derive(Debug, Clone)]
pub struct Release {
    pub version: String,
    /// Registry archive URL or local path, chosen by whoever started the server (never by a request).
    pub registry: String,
    /// The pin every job checks: the catalog's `tree-sha256:` content pin, or `sha256:` of the
    /// archive the operator named.
    pub digest: Option<String>,
    pub components: Vec<ComponentChoice>,
    /// The operator named this release's archive (`kfctl serve --registry`): the wizard
    /// preselects it.
    pub operator_archive: bool,
}

impl Release {
    /// The releases kfctl's catalog knows, newest first, each from its upstream archive (pinned by
    /// digest). `registry` replaces one release's archive with a URL or local path of the
    /// operator's choosing (a mirror, or a test fixture): the release whose upstream archive it
    /// is, else the default release (`catalog::DEFAULT_VERSION`). A local archive without a given
    /// digest is hashed now, so every job verifies it is still the same file. Blocking (may hash
    /// a file).
    pub fn from_catalog(registry: Option<(&str, Option<&str>)>) -> Result<Vec<Release>, WebError> {
        let mut releases: Vec<Release> = crate::registry::catalog::RELEASES
            .iter()
            .map(|r| Release {
                version: r.version.to_string(),
                registry: r.default_url.to_string(),
                digest: Some(r.default_digest.to_string()),
                components: r
                    .components
                    .iter()
                    .map(|c| ComponentChoice {
                        name: c.name.to_string(),
                        description: c.description.to_string(),
                        default: c.base,
                        requires: c.depends_on.iter().map(|d| d.to_string()).collect(),
                    })
                    .collect(),
                operator_archive: false,
            })
            .collect();
        releases.reverse();
        // Whose archive it is: by its upstream URL, else (a local copy or fixture) by its top-level
        // directory (`manifests-1.4.1/`), else the default release's.
        let replaced = registry.map(|(source, _)| {
            crate::registry::catalog::release_for_url(source)
                .map(|r| r.version.clone())
                .or_else(|| crate::registry::archive_version(std::path::Path::new(source.strip_prefix("file://").unwrap_or(source))))
                .unwrap_or_else(|| crate::registry::catalog::DEFAULT_VERSION.to_string())
        });
        let replaced = releases.iter_mut().find(|r| Some(r.version.as_str()) == replaced.as_deref());
        if let (Some((source, sha256)), Some(target)) = (registry, replaced) {
            let sha256 = match sha256 {
                Some(given) => given.to_ascii_lowercase(),
                None if source.contains("://") && !source.starts_with("file://") => {
                    return Err(WebError::RegistryDigest { source_name: source.to_string() });
                }
                None => {
                    let path = std::path::Path::new(source.strip_prefix("file://").unwrap_or(source));
                    sha256_file(path).map_err(|error| WebError::RegistryRead { path: path.to_path_buf(), error })?
                }
            };
            target.registry = source.to_string();
            target.digest = Some(format!("sha256:{sha256}"));
            target.operator_archive = true;
        }
        Ok(releases)
    }
}

fn sha256_file(path: &std::path::Path) -> std::io::Result<String> {
    use sha2::Digest;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = sha2::Sha256::new();
    std::io::copy(&mut file, &mut hasher)?;
    Ok(hex::encode(hasher.finalize()))
}

/// How `kfctl serve` was started.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub listen: SocketAddr,
    pub allow_remote: bool,
    pub state_dir: PathBuf,
    pub releases: Vec<Release>,
}

/// Everything the request handlers share.
pub struct ServerState {
    pub access_token: Secret,
    pub csrf_token: Secret,
    pub allow_remote: bool,
    pub state_dir: PathBuf,
    pub jobs: JobStore,
    pub releases: Vec<Release>,
    /// Secrets a running job holds only in memory (the user's password), for the download scan.
    pub job_secrets: Mutex<HashMap<JobId, Vec<String>>>,
    /// Jobs of one app take turns.
    pub turns: worker::AppTurns,
}

impl ServerState {
    /// Opens the state directory (recovering jobs) and makes fresh tokens.
    pub fn new(options: &ServeOptions) -> Result<ServerState, WebError> {
        Ok(ServerState {
            access_token: Secret::generate(),
            csrf_token: Secret::generate(),
            allow_remote: options.allow_remote,
            state_dir: options.state_dir.clone(),
            jobs: JobStore::open(&options.state_dir)?,
            releases: options.releases.clone(),
            job_secrets: Mutex::new(HashMap::new()),
            turns: worker::AppTurns::default(),
        })
    }

    /// The release with this version.
    pub fn release(&self, version: &str) -> Option<&Release> {
        self.releases.iter().find(|r| r.version == version)
    }
}

/// The app's routes with the access guard and security headers.
pub fn router(state: Arc<ServerState>) -> Router {
    routes::router(state)
}

/// A bound server, ready to run: the URL to print, with its token, and the listener.
pub struct BoundServer {
    pub state: Arc<ServerState>,
    pub listener: tokio::net::TcpListener,
    pub local_addr: SocketAddr,
}

impl BoundServer {
    /// Binds the listen address, refusing non-loopback addresses unless remote access is allowed.
    pub async fn bind(options: &ServeOptions) -> Result<BoundServer, WebError> {
        if !options.listen.ip().is_loopback() && !options.allow_remote {
            return Err(WebError::RemoteNotAllowed(options.listen));
        }
        let state = Arc::new(ServerState::new(options)?);
        let listener = tokio::net::TcpListener::bind(options.listen).await.map_err(|source| WebError::Bind { addr: options.listen, source })?;
        let local_addr = listener.local_addr().map_err(|source| WebError::Bind { addr: options.listen, source })?;
        Ok(BoundServer { state, listener, local_addr })
    }

    /// The URL to open, token included.
    pub fn url(&self) -> String {
        let host = match self.local_addr.ip() {
            ip if ip.is_unspecified() => "127.0.0.1".to_string(),
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        };
        format!("http://{host}:{}/?token={}", self.local_addr.port(), self.state.access_token.expose())
    }

    /// Serves until the process ends.
    pub async fn run(self) -> Result<(), WebError> {
        axum::serve(self.listener, router(self.state)).await.map_err(WebError::Serve)
    }

    /// Serves until Ctrl-C or SIGTERM ([`crate::interrupt`], installed by the caller), then
    /// stops: no new connections; running jobs stop starting writes (their apply sees the
    /// interruption) and get up to `grace` to end on their own, as `interrupted`; the ones
    /// still running then (waiting for readiness, say) are marked `interrupted` here. Returns
    /// the signal and how many jobs were interrupted.
    pub async fn run_until_interrupted(self, grace: std::time::Duration) -> Result<(crate::interrupt::Interrupt, usize), WebError> {
        let state = self.state.clone();
        tokio::select! {
            served = self.run() => {
                served?;
                return Err(WebError::Serve(std::io::Error::other("the listener stopped")));
            }
            () = crate::interrupt::received() => {}
        }
        let signal = crate::interrupt::requested().expect("received means requested");
        let running = state.jobs.running();
        let deadline = tokio::time::Instant::now() + grace;
        while tokio::time::Instant::now() < deadline && running.iter().any(|job| !job.record().state.is_final()) {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        let why = format!("the server was stopped ({})", signal.name());
        for job in &running {
            job.interrupt(&why)?;
        }
        Ok((signal, running.len()))
    }
}
