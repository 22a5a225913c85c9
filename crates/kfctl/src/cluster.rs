//! Connecting to a cluster: kubeconfig, context, one rustls crypto provider, and waiting out a
//! server that stops answering mid-run ([`outage`]).

pub mod outage;

use std::path::{Path, PathBuf};
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::client::ClientBuilder;
use kube::{Client, Config};

/// Why kfctl could not talk to a cluster. Every message names what failed and what to do next.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot read kubeconfig {path}: {source}\n  hint: pass --kubeconfig or set KUBECONFIG to a readable file")]
    KubeconfigRead { path: PathBuf, source: kube::config::KubeconfigError },
    #[error("no kubeconfig found ({source})\n  hint: set KUBECONFIG or create ~/.kube/config (for example with your cloud's CLI)")]
    KubeconfigMissing { source: kube::config::KubeconfigError },
    #[error("kubeconfig context {context:?} is not usable: {source}\n  hint: `kubectl config get-contexts` lists the contexts; pass one with --context")]
    Context { context: String, source: kube::config::KubeconfigError },
    #[error("cannot build a client for {server} (context {context:?}): {source}")]
    Client { server: String, context: String, source: kube::Error },
    #[error("cluster at {server} (context {context:?}) is unreachable: {reason}\n  hint: check that the cluster is running and that `kubectl --context {context} get ns` works; choose another context with --context")]
    Unreachable { server: String, context: String, reason: String },
}

/// How long to wait for the API server to answer the first request before calling it unreachable.
const REACH_TIMEOUT: Duration = Duration::from_secs(15);

/// A client built from a kubeconfig and context, not yet checked against its server.
pub struct Configured {
    pub client: Client,
    /// The API server URL, for messages.
    pub server: String,
    /// The context used (the kubeconfig's current one when none was asked for).
    pub context: String,
}

/// A kube client for `context` (or the current one) from `kubeconfig` (or KUBECONFIG /
/// ~/.kube/config), checked by asking the server for its version.
pub async fn connect(kubeconfig: Option<&Path>, context: Option<&str>) -> Result<Client, ClusterError> {
    let Configured { client, server, context: context_name } = configure(kubeconfig, context).await?;
    let unreachable = |reason: String| ClusterError::Unreachable {
        server: server.clone(),
        context: context_name.clone(),
        reason,
    };
    match tokio::time::timeout(REACH_TIMEOUT, client.apiserver_version()).await {
        Err(_) => Err(unreachable(format!("no answer within {}s", REACH_TIMEOUT.as_secs()))),
        Ok(Err(err)) => Err(unreachable(error_chain(&err))),
        Ok(Ok(_)) => Ok(client),
    }
}

/// Like [`connect`], without contacting the server: for callers that wait for a new cluster to
/// answer or report reachability in their own words.
pub async fn configure(kubeconfig: Option<&Path>, context: Option<&str>) -> Result<Configured, ClusterError> {
    crate::tls::install_crypto_provider();
    let kc = match kubeconfig {
        Some(path) => Kubeconfig::read_from(path)
            .map_err(|source| ClusterError::KubeconfigRead { path: path.to_path_buf(), source })?,
        None => Kubeconfig::read().map_err(|source| ClusterError::KubeconfigMissing { source })?,
    };
    let context_name = context
        .map(str::to_owned)
        .or_else(|| kc.current_context.clone())
        .unwrap_or_default();
    let options = KubeConfigOptions { context: context.map(str::to_owned), ..Default::default() };
    let mut config = Config::from_custom_kubeconfig(kc, &options)
        .await
        .map_err(|source| ClusterError::Context { context: context_name.clone(), source })?;
    config.connect_timeout = Some(REACH_TIMEOUT);
    // kube's own retry (429, 503, 504) would wait without a word; the outage layer retries those
    // and every other transient failure in one place, and says what it waits for.
    config.default_retry = false;
    let server = config.cluster_url.to_string();
    let client = ClientBuilder::try_from(config)
        .map_err(|source| ClusterError::Client { server: server.clone(), context: context_name.clone(), source })?
        .with_layer(&outage::OutageLayer::new(server.clone()))
        .build();
    Ok(Configured { client, server, context: context_name })
}

/// An error and its sources on one line ("a: b: c"), for messages where the chain matters
/// (a refused connection hides three levels down in hyper).
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
