//! The kubelet's port-forward endpoint, so `pods/portforward` through the real API server reaches
//! a simulated pod.
//!
//! For `pods/portforward` the API server dials the kubelet of the pod's node
//! (`https://<InternalIP>:10250/portForward/<ns>/<pod>?port=P[,P...]`, authenticating with its
//! `--kubelet-client-certificate`) and, being an upgrade-aware proxy, passes the client's
//! WebSocket upgrade through unchanged: the WebSocket handshake and every frame are between the
//! client (kube-rs, kfctl) and this server. We speak what the 1.20 kubelet speaks on WebSocket:
//! subprotocol `v4.channel.k8s.io` (or none), per requested port a data channel `2i` and an error
//! channel `2i+1`, each opened by a frame carrying the port as 2 bytes little-endian, then binary
//! frames prefixed by their channel byte. Each port's stream is a TCP connection to
//! `<podIP>:<port>` (inside the testenv netns a test can listen there). A failed connection is
//! reported on the error channel with the kubelet's wording; when every port's stream has ended
//! the WebSocket is closed, as the kubelet does.
//!
//! Not simulated: SPDY (kubectl's transport; non-WebSocket requests get 400), the base64 text
//! subprotocol, and the kubelet's authorization of the caller (any client certificate the
//! cluster CA signed is accepted; the API server's is one).

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade, rejection::WebSocketUpgradeRejection};
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::{SinkExt as _, StreamExt as _};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::log;
use crate::node::Fleet;

/// The port every simulated node's kubelet endpoint listens on (and advertises in
/// `status.daemonEndpoints.kubeletEndpoint`).
pub const KUBELET_PORT: u16 = 10250;
/// The binary channel subprotocol the kubelet prefers; a request naming no subprotocol gets the
/// same framing.
const V4_BINARY_PROTOCOL: &str = "v4.channel.k8s.io";
/// How long a stream may take to connect to the pod before it is reported as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Once one direction of a stream ended, how long the other may take to finish (the kubelet's
/// CRI runtimes wait one second, then close).
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// One node's kubelet endpoint: which node it is and how to look pods up.
struct Kubelet {
    node: String,
    client: kube::Client,
}

/// Serves the kubelet endpoint of every node of `fleet` on `<InternalIP>:10250` until an accept
/// loop fails. Client certificates must be signed by one of `client_ca` (DER, the cluster CA).
pub async fn serve(client: kube::Client, fleet: Arc<Fleet>, client_ca: Vec<Vec<u8>>) -> anyhow::Result<()> {
    let ips: Vec<Ipv4Addr> = fleet.nodes.iter().map(|n| n.internal_ip).collect();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls_config(&ips, &client_ca)?));
    let mut servers = tokio::task::JoinSet::new();
    for node in &fleet.nodes {
        let addr = SocketAddr::from((node.internal_ip, KUBELET_PORT));
        let listener = TcpListener::bind(addr).await.with_context(|| {
            format!(
                "binding the kubelet endpoint of node {} on {addr}\n  hint: simnode runs inside the testenv \
                 network namespace, where the node range is routed to loopback (scripts/testenv up)",
                node.name
            )
        })?;
        let kubelet = Arc::new(Kubelet { node: node.name.clone(), client: client.clone() });
        let app = Router::new()
            .route("/portForward/{namespace}/{pod}", get(port_forward))
            .route("/portForward/{namespace}/{pod}/{uid}", get(port_forward))
            .with_state(kubelet);
        servers.spawn(accept_loop(listener, acceptor.clone(), app));
    }
    log!("kubelet endpoints listening on port {KUBELET_PORT} of {} node IPs", ips.len());
    match servers.join_next().await {
        Some(result) => result.context("kubelet endpoint task")?,
        None => Ok(()),
    }
}

/// A self-signed serving certificate for the node IPs (the API server runs without
/// `--kubelet-certificate-authority`, so it does not verify it) and mandatory client
/// certificates signed by the cluster CA.
fn tls_config(ips: &[Ipv4Addr], client_ca: &[Vec<u8>]) -> anyhow::Result<rustls::ServerConfig> {
    let names: Vec<String> = ips.iter().map(Ipv4Addr::to_string).collect();
    let serving = rcgen::generate_simple_self_signed(names).context("generating the kubelet serving certificate")?;
    let mut roots = rustls::RootCertStore::empty();
    for der in client_ca {
        roots.add(CertificateDer::from(der.clone())).context("adding the cluster CA to the kubelet's client CAs")?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
        .build()
        .context("building the kubelet's client certificate verifier")?;
    let mut config = rustls::ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![serving.cert.der().clone()],
            PrivateKeyDer::Pkcs8(serving.signing_key.serialize_der().into()),
        )
        .context("kubelet TLS configuration")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

async fn accept_loop(listener: TcpListener, acceptor: tokio_rustls::TlsAcceptor, app: Router) -> anyhow::Result<()> {
    loop {
        let (tcp, peer) = listener.accept().await.context("accepting a kubelet connection")?;
        let (acceptor, app) = (acceptor.clone(), app.clone());
        tokio::spawn(async move {
            let tls = match acceptor.accept(tcp).await {
                Ok(tls) => tls,
                Err(e) => return log!("kubelet: TLS handshake with {peer} failed: {e}"),
            };
            let service = hyper_util::service::TowerToHyperService::new(app);
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                .with_upgrades();
            if let Err(e) = connection.await {
                log!("kubelet: connection from {peer}: {e}");
            }
        });
    }
}

/// The path of `/portForward/{namespace}/{pod}[/{uid}]`.
#[derive(Debug, serde::Deserialize)]
struct PodPath {
    namespace: String,
    pod: String,
    uid: Option<String>,
}

/// `GET /portForward/...`: the kubelet's checks in its order, then the WebSocket streams.
async fn port_forward(
    State(kubelet): State<Arc<Kubelet>>,
    Path(path): Path<PodPath>,
    RawQuery(query): RawQuery,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let Ok(upgrade) = upgrade else {
        let message = "simnode serves port-forward over WebSocket only; SPDY is not simulated";
        return (StatusCode::BAD_REQUEST, message).into_response();
    };
    let ports = match requested_ports(query.as_deref().unwrap_or_default()) {
        Ok(ports) => ports,
        Err(message) => return (StatusCode::BAD_REQUEST, message).into_response(),
    };
    let pod = match Api::<Pod>::namespaced(kubelet.client.clone(), &path.namespace).get_opt(&path.pod).await {
        Ok(pod) => pod,
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, format!("reading pod: {e}")).into_response(),
    };
    let Some(pod) = pod.filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(&kubelet.node)) else {
        return (StatusCode::NOT_FOUND, "pod does not exist").into_response();
    };
    if path.uid.is_some() && path.uid != pod.metadata.uid {
        return (StatusCode::NOT_FOUND, "pod not found").into_response();
    }
    let status = pod.status.unwrap_or_default();
    let pod_ip = status.pod_ip.as_deref().and_then(|ip| ip.parse::<Ipv4Addr>().ok());
    let (Some("Running"), Some(pod_ip)) = (status.phase.as_deref(), pod_ip) else {
        let message = format!("pod not found (\"{}_{}\")", path.pod, path.namespace);
        return (StatusCode::INTERNAL_SERVER_ERROR, message).into_response();
    };
    let upgrade = upgrade.protocols([V4_BINARY_PROTOCOL]);
    if upgrade.selected_protocol().is_none() && upgrade.requested_protocols().next().is_some() {
        let requested: Vec<_> = upgrade.requested_protocols().filter_map(|p| p.to_str().ok()).collect();
        let message = format!("requested protocol(s) are not supported: {requested:?}; supports [\"{V4_BINARY_PROTOCOL}\"]");
        return (StatusCode::FORBIDDEN, message).into_response();
    }
    let name = format!("{}/{}", path.namespace, path.pod);
    let uid = pod.metadata.uid.unwrap_or_default();
    upgrade.on_upgrade(move |socket| forward(socket, name, uid, pod_ip, ports))
}

/// The `port` query parameter(s), each a comma-separated list, as the kubelet parses them.
fn requested_ports(query: &str) -> Result<Vec<u16>, String> {
    let values: Vec<String> =
        form_urlencoded::parse(query.as_bytes()).filter(|(k, _)| k == "port").map(|(_, v)| v.into_owned()).collect();
    if values.is_empty() {
        return Err("query parameter \"port\" is required".into());
    }
    let mut ports = Vec::new();
    for value in values {
        if value.is_empty() {
            return Err("query parameter \"port\" cannot be empty".into());
        }
        for p in value.split(',') {
            match p.parse::<u16>() {
                Ok(0) => return Err(format!("port {value:?} must be > 0")),
                Ok(port) => ports.push(port),
                Err(e) => return Err(format!("unable to parse {value:?} as a port: {e}")),
            }
        }
    }
    Ok(ports)
}

/// A binary frame of channel `channel`.
fn frame(channel: u8, data: &[u8]) -> Message {
    let mut bytes = Vec::with_capacity(data.len() + 1);
    bytes.push(channel);
    bytes.extend_from_slice(data);
    Message::Binary(bytes.into())
}

/// Runs one port-forward WebSocket: opens the channels, one stream per port, closes when all
/// streams ended or the client went away.
async fn forward(socket: WebSocket, pod: String, uid: String, pod_ip: Ipv4Addr, ports: Vec<u16>) {
    let (mut sink, mut incoming) = socket.split();
    let (to_client, mut outgoing) = mpsc::channel::<Message>(16);
    let mut to_streams = Vec::with_capacity(ports.len());
    for (i, &port) in ports.iter().enumerate() {
        let data_channel = 2 * i as u8;
        for channel in [data_channel, data_channel + 1] {
            if sink.send(frame(channel, &port.to_le_bytes())).await.is_err() {
                return;
            }
        }
        let (to_stream, from_client) = mpsc::channel::<Bytes>(16);
        to_streams.push(to_stream);
        let stream = PortStream { pod: pod.clone(), uid: uid.clone(), addr: (pod_ip, port).into(), data_channel };
        tokio::spawn(stream.run(from_client, to_client.clone()));
    }
    drop(to_client);
    // Frames for channels that do not exist or cannot be written (error channels) are dropped,
    // as the kubelet does.
    let reader = async {
        while let Some(Ok(message)) = incoming.next().await {
            match message {
                Message::Binary(bytes) if bytes.len() > 1 => {
                    let channel = usize::from(bytes[0]);
                    if channel % 2 == 0
                        && let Some(to_stream) = to_streams.get(channel / 2)
                    {
                        let _ = to_stream.send(bytes.slice(1..)).await;
                    }
                }
                Message::Close(_) => break,
                _ => {}
            }
        }
    };
    let writer = async {
        while let Some(message) = outgoing.recv().await {
            if sink.send(message).await.is_err() {
                return;
            }
        }
    };
    // Either the client closed (its streams see their input end) or every stream ended.
    tokio::select! {
        () = reader => {}
        () = writer => {}
    }
    // Like the kubelet, answer the client's close or send ours, then hang up. Until the client's
    // close arrives (or a moment passed), read on: hanging up with unread input makes the kernel
    // reset the connection, and the client would lose the frames it has not read yet (such as
    // an error message).
    let _ = sink.close().await;
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        while let Some(Ok(message)) = incoming.next().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}

/// One forwarded port of one WebSocket: a TCP connection to the pod.
struct PortStream {
    pod: String,
    uid: String,
    addr: SocketAddr,
    data_channel: u8,
}

impl PortStream {
    async fn run(self, from_client: mpsc::Receiver<Bytes>, to_client: mpsc::Sender<Message>) {
        if let Err(e) = self.copy(from_client, &to_client).await {
            let message = format!(
                "error forwarding port {} to pod {}, uid {}: {e}",
                self.addr.port(),
                self.pod,
                self.uid
            );
            log!("kubelet: {message}");
            let _ = to_client.send(frame(self.data_channel + 1, message.as_bytes())).await;
        }
    }

    /// Copies both ways until one direction ends, then gives the other [`CLOSE_GRACE`].
    async fn copy(&self, mut from_client: mpsc::Receiver<Bytes>, to_client: &mpsc::Sender<Message>) -> anyhow::Result<()> {
        let tcp = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(self.addr)).await {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(e)) => anyhow::bail!("failed to connect to {}: {e}", self.addr),
            Err(_) => anyhow::bail!("failed to connect to {}: no answer within {CONNECT_TIMEOUT:?}", self.addr),
        };
        let (mut from_pod, mut to_pod) = tcp.into_split();
        let upstream = async {
            while let Some(bytes) = from_client.recv().await {
                to_pod.write_all(&bytes).await?;
            }
            to_pod.shutdown().await
        };
        let downstream = async {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                let n = from_pod.read(&mut buf).await?;
                // The client being gone ends this direction like an EOF would.
                if n == 0 || to_client.send(frame(self.data_channel, &buf[..n])).await.is_err() {
                    return std::io::Result::Ok(());
                }
            }
        };
        tokio::pin!(upstream, downstream);
        let (first, second) = tokio::select! {
            r = &mut upstream => (r, tokio::time::timeout(CLOSE_GRACE, &mut downstream).await),
            r = &mut downstream => (r, tokio::time::timeout(CLOSE_GRACE, &mut upstream).await),
        };
        first?;
        if let Ok(second) = second {
            second?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_parsed_like_the_kubelet_does() {
        assert_eq!(requested_ports("port=80"), Ok(vec![80]));
        assert_eq!(requested_ports("port=80%2C8080&port=9090"), Ok(vec![80, 8080, 9090]));
        assert_eq!(requested_ports(""), Err("query parameter \"port\" is required".into()));
        assert_eq!(requested_ports("ports=80"), Err("query parameter \"port\" is required".into()));
        assert_eq!(requested_ports("port="), Err("query parameter \"port\" cannot be empty".into()));
        assert_eq!(requested_ports("port=0"), Err("port \"0\" must be > 0".into()));
        assert!(requested_ports("port=http").unwrap_err().starts_with("unable to parse \"http\" as a port"));
    }

    #[test]
    fn frames_carry_their_channel_first() {
        assert_eq!(frame(3, &[0x50, 0x00]), Message::Binary(vec![3, 0x50, 0x00].into()));
    }
}
