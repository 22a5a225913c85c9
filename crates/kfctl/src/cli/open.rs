//! `kfctl open [dashboard|jupyter]`: port-forward to the Kubeflow gateway (istio's
//! ingressgateway) and print the URL and the default login.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::Client;
use kube::api::{Api, ListParams, Portforwarder};

use super::common::{ClusterArgs, runtime};

/// Where `open` lands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OpenTarget {
    /// The central dashboard.
    Dashboard,
    /// The notebooks (JupyterLab) page of the central dashboard.
    Jupyter,
}

#[derive(Debug, clap::Args)]
pub struct OpenArgs {
    #[arg(value_enum, default_value = "dashboard")]
    pub target: OpenTarget,
    /// Kubeconfig context to use instead of the current one.
    #[arg(long)]
    pub context: Option<String>,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Local port to listen on (127.0.0.1).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Resolve the gateway and print the URL, without forwarding.
    #[arg(long)]
    pub dry_run: bool,
}

/// Why the gateway cannot be reached.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("the Kubeflow gateway Service {namespace}/{name} does not exist\n  hint: is Kubeflow (with istio) applied to this cluster? run `kfctl apply`, then `kfctl wait`")]
    NoGateway { namespace: String, name: String },
    #[error("the gateway Service {namespace}/{name} has no HTTP port (looked for a port named http2/http or port 80)")]
    NoHttpPort { namespace: String, name: String },
    #[error("no running pod behind the gateway Service {namespace}/{name}\n  hint: `kfctl status` shows why the istio component is not ready")]
    NoPod { namespace: String, name: String },
    #[error("API request failed: {0}")]
    Api(String),
}

pub const GATEWAY_NAMESPACE: &str = "istio-system";
pub const GATEWAY_SERVICE: &str = "istio-ingressgateway";
/// Kubeflow v1.4.1's default login (dex static user in the `dex` component).
pub const DEFAULT_LOGIN: (&str, &str) = ("user@example.com", "12341234");

/// A gateway pod and the container port that serves HTTP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayTarget {
    pub pod: String,
    pub port: u16,
}

/// Find the pod and port to forward to: the Service's HTTP port, resolved to the container port
/// (named target ports included) of a running pod the Service selects.
pub async fn resolve_gateway(client: &Client) -> Result<GatewayTarget, OpenError> {
    let (ns, name) = (GATEWAY_NAMESPACE, GATEWAY_SERVICE);
    let api_err = |e: kube::Error| OpenError::Api(crate::cluster::error_chain(&e));
    let svc = Api::<Service>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .map_err(api_err)?
        .ok_or_else(|| OpenError::NoGateway { namespace: ns.into(), name: name.into() })?;
    let spec = svc.spec.unwrap_or_default();
    let ports = spec.ports.unwrap_or_default();
    let port = ports
        .iter()
        .find(|p| matches!(p.name.as_deref(), Some("http2" | "http")))
        .or_else(|| ports.iter().find(|p| p.port == 80))
        .ok_or_else(|| OpenError::NoHttpPort { namespace: ns.into(), name: name.into() })?;
    let selector = spec.selector.unwrap_or_default();
    let label_selector: Vec<String> = selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let pods = Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(&label_selector.join(",")))
        .await
        .map_err(api_err)?;
    let no_pod = || OpenError::NoPod { namespace: ns.into(), name: name.into() };
    if selector.is_empty() {
        return Err(no_pod());
    }
    let pod = pods
        .items
        .into_iter()
        .find(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .ok_or_else(no_pod)?;
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let container_port = match &port.target_port {
        None => port.port,
        Some(IntOrString::Int(p)) => *p,
        Some(IntOrString::String(port_name)) => pod
            .spec
            .as_ref()
            .into_iter()
            .flat_map(|s| s.containers.iter())
            .flat_map(|c| c.ports.iter().flatten())
            .find(|p| p.name.as_deref() == Some(port_name))
            .map(|p| p.container_port)
            .ok_or_else(|| OpenError::NoHttpPort { namespace: ns.into(), name: name.into() })?,
    };
    Ok(GatewayTarget { pod: pod.metadata.name.unwrap_or_default(), port: u16::try_from(container_port).unwrap_or(80) })
}

/// The URL a person opens for `target` through a forward on `local`.
pub fn url(target: OpenTarget, local: SocketAddr) -> String {
    let path = match target {
        OpenTarget::Dashboard => "/",
        OpenTarget::Jupyter => "/_/jupyter/",
    };
    format!("http://localhost:{}{path}", local.port())
}

pub fn run(args: OpenArgs) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        let client = crate::cluster::connect(args.cluster.kubeconfig.as_deref(), args.context.as_deref()).await?;
        let gateway = resolve_gateway(&client).await?;
        let local: SocketAddr = ([127, 0, 0, 1], args.port).into();
        let (user, password) = DEFAULT_LOGIN;
        if args.dry_run {
            println!("{}", url(args.target, local));
            println!("gateway: pod {GATEWAY_NAMESPACE}/{} port {}", gateway.pod, gateway.port);
            println!("login: {user} / {password}");
            return Ok(ExitCode::SUCCESS);
        }
        let listener = listen(args.port).await?;
        println!("{}", url(args.target, local));
        println!("login: {user} / {password}   (forwarding to pod {GATEWAY_NAMESPACE}/{}; Ctrl-C to stop)", gateway.pod);
        serve_gateway(client, listener, gateway).await
    })
}

/// Bind 127.0.0.1:`port` for [`serve_gateway`], with a hint when it is taken.
pub(super) async fn listen(port: u16) -> anyhow::Result<tokio::net::TcpListener> {
    let local: SocketAddr = ([127, 0, 0, 1], port).into();
    tokio::net::TcpListener::bind(local)
        .await
        .with_context(|| format!("cannot listen on {local}\n  hint: choose another port with --port"))
}

/// Forwards every connection on `listener` to the gateway (following its pod when it is
/// replaced), until the process is stopped.
pub(super) async fn serve_gateway(client: Client, listener: tokio::net::TcpListener, gateway: GatewayTarget) -> anyhow::Result<ExitCode> {
    let gateway = Arc::new(Gateway { client, current: Mutex::new(gateway) });
    loop {
        let (mut conn, _) = listener.accept().await.context("accepting a local connection")?;
        let gateway = gateway.clone();
        tokio::spawn(async move {
            if let Err(e) = gateway.forward(&mut conn).await {
                eprintln!("warning: forwarding a local connection failed: {e:#}");
            }
        });
    }
}

/// The gateway pod that local connections go to, followed when it is replaced.
struct Gateway {
    client: Client,
    current: Mutex<GatewayTarget>,
}

impl Gateway {
    /// Forwards one local connection over a port-forward of its own to the gateway pod, until
    /// either side closes. When the pod is gone (a rollout or restart replaced it), the gateway is
    /// resolved again and the connection goes to its new pod.
    async fn forward(&self, conn: &mut tokio::net::TcpStream) -> anyhow::Result<()> {
        let target = self.current.lock().expect("gateway lock").clone();
        let (forward, target) = match open_forward(&self.client, &target).await {
            Err(kube::Error::Api(status)) if status.code == 404 => {
                let replacement = resolve_gateway(&self.client).await?;
                if replacement != target {
                    eprintln!(
                        "note: the gateway pod {GATEWAY_NAMESPACE}/{} is gone; forwarding to pod {GATEWAY_NAMESPACE}/{} port {} now",
                        target.pod, replacement.pod, replacement.port
                    );
                    *self.current.lock().expect("gateway lock") = replacement.clone();
                }
                let forward = open_forward(&self.client, &replacement).await.map_err(|e| not_opened(&replacement, &e))?;
                (forward, replacement)
            }
            opened => (opened.map_err(|e| not_opened(&target, &e))?, target),
        };
        copy_forward(forward, &target, conn).await
    }
}

async fn open_forward(client: &Client, target: &GatewayTarget) -> Result<Portforwarder, kube::Error> {
    Api::<Pod>::namespaced(client.clone(), GATEWAY_NAMESPACE).portforward(&target.pod, &[target.port]).await
}

fn not_opened(target: &GatewayTarget, e: &kube::Error) -> anyhow::Error {
    let (pod, port) = (&target.pod, target.port);
    let reason = match e {
        kube::Error::Api(status) => status.message.clone(),
        other => crate::cluster::error_chain(other),
    };
    anyhow::anyhow!(
        "the API server did not open a port-forward to pod {GATEWAY_NAMESPACE}/{pod} port {port}: {reason}\n  hint: \
         the API server may not reach the kubelet of the pod's node; \
         `kubectl -n {GATEWAY_NAMESPACE} port-forward pod/{pod} {port}` shows the API server's answer"
    )
}

/// Copies between the local connection and an open port-forward. A failure the kubelet reports
/// on the port's error channel (e.g. nothing listens on the port) ends the connection and is
/// returned: the kubelet then just closes the stream, which alone would look like an empty answer.
async fn copy_forward(mut forward: Portforwarder, target: &GatewayTarget, conn: &mut tokio::net::TcpStream) -> anyhow::Result<()> {
    use futures::FutureExt as _;
    let (pod, port) = (&target.pod, target.port);
    let mut upstream = forward.take_stream(port).context("the port-forward has no stream for the port")?;
    let mut pod_error = forward.take_error(port).context("the port-forward has no error channel for the port")?.fuse();
    let copied = tokio::select! {
        copied = tokio::io::copy_bidirectional(conn, &mut upstream) => copied,
        Some(message) = &mut pod_error => return Err(kubelet_error(message, port)),
    };
    drop(upstream);
    let joined = forward.join().await;
    // The stream may end before the error message was looked at; the task has finished now.
    if let Some(Some(message)) = pod_error.now_or_never() {
        return Err(kubelet_error(message, port));
    }
    copied.with_context(|| format!("copying between the local connection and pod {GATEWAY_NAMESPACE}/{pod} port {port}"))?;
    joined.with_context(|| format!("the port-forward to pod {GATEWAY_NAMESPACE}/{pod} port {port} ended with an error"))?;
    Ok(())
}

fn kubelet_error(message: String, port: u16) -> anyhow::Error {
    anyhow::anyhow!("{message}\n  hint: is the gateway listening on port {port}? `kfctl status` shows the istio component")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let local: SocketAddr = ([127, 0, 0, 1], 8080).into();
        assert_eq!(url(OpenTarget::Dashboard, local), "http://localhost:8080/");
        assert_eq!(url(OpenTarget::Jupyter, local), "http://localhost:8080/_/jupyter/");
    }
}
