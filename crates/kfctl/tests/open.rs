//! `kfctl open` end to end: the real binary finds the gateway Service and its Running pod, and
//! port-forwards local connections through the real API server, which hands each one to the
//! kubelet endpoint simnode serves for the pod's node (see crates/simnode/src/kubelet.rs), which
//! connects to the pod's IP. There this test serves real HTTP, answering with a token of its own
//! and the request's path. kfctl is only told the API server (its kubeconfig), so an answer that
//! carries the token came through the API server's port-forward. The test also stops the
//! backend (kfctl warns with the kubelet's reason and keeps serving) and replaces the gateway pod
//! (kfctl follows it to the new pod).
//!
//! Run inside the testenv: `scripts/testenv exec -- cargo test -p kfctl --test open`. The test
//! owns the cluster's `istio-system` namespace while it runs (kfctl open looks only there), so
//! this binary holds one test.

mod support;

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{DeleteParams, ListParams, PostParams};
use serde_json::json;
use support::{TestNamespace, wait_for, wait_until};

/// Generous bound that only turns a hang into a readable failure.
const LIMIT: Duration = Duration::from_secs(120);
const GATEWAY_NAMESPACE: &str = "istio-system";
const GATEWAY: &str = "istio-ingressgateway";
/// The gateway container's HTTP port, which the Service's port 80 (named http2) targets by name.
const CONTAINER_PORT: u16 = 8080;

/// An HTTP server on the gateway pod's IP answering `<token> <path> host=<Host header>`.
struct Backend {
    token: String,
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Backend {
    async fn serve(addr: SocketAddr, token: &str) -> Backend {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .unwrap_or_else(|e| panic!("binding the gateway backend to pod address {addr}: {e}"));
        let connections = Arc::new(AtomicUsize::new(0));
        let (counter, token_for_task) = (connections.clone(), token.to_owned());
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { continue };
                counter.fetch_add(1, Ordering::SeqCst);
                let token = token_for_task.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let host = req.headers().get("host").and_then(|h| h.to_str().ok()).unwrap_or_default();
                        let body = format!("{token} {} host={host}", req.uri().path());
                        async move { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body)))) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), service).await;
                });
            }
        });
        Backend { token: token.to_owned(), connections, task }
    }

    /// Stops listening: from now on connections to the address are refused.
    async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// A running `kfctl open`, its output collected as it comes; killed when dropped.
struct RunningOpen {
    child: Child,
    stdout: support::Collected,
    stderr: support::Collected,
}

impl RunningOpen {
    fn start(ns: &TestNamespace, args: &[&str]) -> RunningOpen {
        let mut child = ns
            .kfctl()
            .arg("open")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting kfctl open");
        let stdout = support::Collected::of(child.stdout.take().expect("stdout piped"));
        let stderr = support::Collected::of(child.stderr.take().expect("stderr piped"));
        RunningOpen { child, stdout, stderr }
    }

    fn stdout(&self) -> String {
        self.stdout.text()
    }

    fn stderr(&self) -> String {
        self.stderr.text()
    }

    /// The URL kfctl printed once it listens.
    async fn url(&mut self) -> String {
        wait_for("kfctl open to print its URL", LIMIT, || {
            if let Some(status) = self.child.try_wait().expect("kfctl status") {
                panic!("kfctl open exited ({status}) before printing a URL:\n{}{}", self.stdout(), self.stderr());
            }
            let url = self.stdout().lines().next().map(str::to_owned);
            async move { url }
        })
        .await
    }

    fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().expect("kfctl status") {
            panic!("kfctl open exited ({status}):\n{}{}", self.stdout(), self.stderr());
        }
    }
}

impl Drop for RunningOpen {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port on 127.0.0.1 that was free a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("probe port").local_addr().expect("addr").port()
}

/// A client that opens a fresh connection (so a fresh port-forward) per request.
fn fresh_connections() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().pool_max_idle_per_host(0).build().expect("http client")
}

async fn get_text(client: &reqwest::Client, url: &str) -> String {
    let response = client.get(url).send().await.unwrap_or_else(|e| panic!("GET {url}: {e:?}"));
    assert!(response.status().is_success(), "GET {url}: {}", response.status());
    response.text().await.unwrap_or_else(|e| panic!("GET {url} body: {e:?}"))
}

/// The gateway: a Service like istio's (port 80 named http2, targetPort the container port's
/// name) and a Deployment whose pod simnode runs. Returns the Running pod's name and IP.
async fn create_gateway(ns: &TestNamespace) -> (String, Ipv4Addr) {
    let labels = json!({"app": GATEWAY, "istio": "ingressgateway"});
    let service: Service = serde_json::from_value(json!({
        "metadata": {"name": GATEWAY},
        "spec": {"selector": labels, "ports": [
            {"name": "status-port", "port": 15021, "targetPort": 15021, "protocol": "TCP"},
            {"name": "http2", "port": 80, "targetPort": "http", "protocol": "TCP"}]}
    }))
    .expect("Service");
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": GATEWAY},
        "spec": {"replicas": 1, "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels},
                "spec": {"containers": [{"name": "istio-proxy", "image": "registry.invalid/kfctl-test/gateway:1",
                    "ports": [{"name": "status", "containerPort": 15021}, {"name": "http", "containerPort": CONTAINER_PORT}]}]}}}
    }))
    .expect("Deployment");
    ns.api::<Service>().create(&PostParams::default(), &service).await.expect("creating the gateway Service");
    ns.api::<Deployment>().create(&PostParams::default(), &deployment).await.expect("creating the gateway Deployment");
    gateway_pod(ns, None).await
}

/// The name and IP of the gateway's pod once it is the only one (not `previous`) and Running.
async fn gateway_pod(ns: &TestNamespace, previous: Option<&str>) -> (String, Ipv4Addr) {
    let pods = ns.api::<Pod>();
    wait_for("the gateway's one pod to be Running with an IP", LIMIT, || async {
        let list = pods.list(&ListParams::default().labels(&format!("app={GATEWAY}"))).await.expect("listing pods");
        let [pod] = <[Pod; 1]>::try_from(list.items).ok()?;
        (pod.metadata.name.as_deref() != previous).then_some(())?;
        let status = pod.status?;
        (status.phase.as_deref() == Some("Running")).then_some(())?;
        Some((pod.metadata.name?, status.pod_ip?.parse().ok()?))
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn open_forwards_http_through_the_api_server_to_the_gateway_pod_and_reports_a_refused_port() {
    let ns = TestNamespace::fixed(GATEWAY_NAMESPACE).await;
    let (pod, pod_ip) = create_gateway(&ns).await;
    let backend_addr = SocketAddr::from((pod_ip, CONTAINER_PORT));
    let backend = Backend::serve(backend_addr, &format!("gateway-{}", std::process::id())).await;

    // --dry-run resolves the same pod and the named target port, and forwards nothing.
    let dry_port = free_port();
    let out = ns.kfctl().args(["open", "--dry-run", "--port", &dry_port.to_string()]).output().expect("kfctl open --dry-run");
    let dry = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{dry}{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        dry.lines().collect::<Vec<_>>(),
        [
            format!("http://localhost:{dry_port}/"),
            format!("gateway: pod {GATEWAY_NAMESPACE}/{pod} port {CONTAINER_PORT}"),
            "login: user@example.com / 12341234".to_owned(),
        ]
    );

    // The dashboard: sequential requests on one kept-alive connection, then concurrent ones, each
    // on a connection (and port-forward) of its own.
    let port = free_port();
    let mut dashboard = RunningOpen::start(&ns, &["--port", &port.to_string()]);
    let url = dashboard.url().await;
    assert_eq!(url, format!("http://localhost:{port}/"));
    assert!(dashboard.stdout().contains(&format!("forwarding to pod {GATEWAY_NAMESPACE}/{pod}")), "{}", dashboard.stdout());
    let kept_alive = reqwest::Client::builder().no_proxy().build().expect("http client");
    for path in ["", "pipeline/", "static/app.js"] {
        let body = get_text(&kept_alive, &format!("{url}{path}")).await;
        assert_eq!(body, format!("{} /{path} host=localhost:{port}", backend.token));
    }
    let fresh = fresh_connections();
    let concurrent = (0..8).map(|i| {
        let (fresh, url) = (fresh.clone(), url.clone());
        tokio::spawn(async move { (i, get_text(&fresh, &format!("{url}concurrent/{i}")).await) })
    });
    for answer in futures::future::join_all(concurrent).await {
        let (i, body) = answer.expect("request task");
        assert_eq!(body, format!("{} /concurrent/{i} host=localhost:{port}", backend.token));
    }
    assert!(backend.connections.load(Ordering::SeqCst) >= 9, "the backend saw fewer connections than were forwarded");
    dashboard.assert_running();
    assert!(!dashboard.stderr().contains("warning"), "{}", dashboard.stderr());

    // Jupyter: the same gateway, the notebooks path.
    let jupyter_port = free_port();
    let mut jupyter = RunningOpen::start(&ns, &["jupyter", "--port", &jupyter_port.to_string()]);
    let jupyter_url = jupyter.url().await;
    assert_eq!(jupyter_url, format!("http://localhost:{jupyter_port}/_/jupyter/"));
    let body = get_text(&fresh, &jupyter_url).await;
    assert_eq!(body, format!("{} /_/jupyter/ host=localhost:{jupyter_port}", backend.token));
    drop(jupyter);

    // Nothing listens on the pod's port any more: the request fails at once, kfctl says why and
    // keeps serving; once the backend is back, the same kfctl forwards again.
    backend.stop().await;
    let refused = fresh.get(&url).send().await;
    assert!(refused.is_err(), "a request with no backend got an answer: {refused:?}");
    let warning = format!(
        "warning: forwarding a local connection failed: error forwarding port {CONTAINER_PORT} to pod {GATEWAY_NAMESPACE}/{pod}, uid "
    );
    // The warning is written in pieces: wait for its last line, the hint, too.
    wait_until("kfctl open to warn about the refused connection", LIMIT, || {
        let stderr = dashboard.stderr();
        let warned = stderr.contains(&warning) && stderr.contains("hint: is the gateway listening on port 8080?");
        async move { warned }
    })
    .await;
    let stderr = dashboard.stderr();
    assert!(stderr.contains(&format!("failed to connect to {backend_addr}")) && stderr.contains("Connection refused"), "{stderr}");
    assert!(stderr.contains("hint: is the gateway listening on port 8080?"), "{stderr}");
    dashboard.assert_running();

    let backend = Backend::serve(backend_addr, "gateway-again").await;
    let body = get_text(&fresh, &format!("{url}after")).await;
    assert_eq!(body, format!("{} /after host=localhost:{port}", backend.token));
    backend.stop().await;

    // The gateway pod is replaced (as by a rollout): the same kfctl finds the new pod and forwards
    // there, saying so.
    ns.api::<Pod>().delete(&pod, &DeleteParams::default()).await.expect("deleting the gateway pod");
    let (new_pod, new_ip) = gateway_pod(&ns, Some(&pod)).await;
    let backend = Backend::serve(SocketAddr::from((new_ip, CONTAINER_PORT)), "gateway-replaced").await;
    let body = get_text(&fresh, &format!("{url}replaced")).await;
    assert_eq!(body, format!("{} /replaced host=localhost:{port}", backend.token));
    let note = format!(
        "note: the gateway pod {GATEWAY_NAMESPACE}/{pod} is gone; forwarding to pod {GATEWAY_NAMESPACE}/{new_pod} port {CONTAINER_PORT} now"
    );
    assert!(dashboard.stderr().contains(&note), "{}", dashboard.stderr());
    dashboard.assert_running();
    drop(dashboard);
    backend.stop().await;
}
