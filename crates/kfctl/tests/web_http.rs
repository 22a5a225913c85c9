//! HTTP-level tests of `kfctl serve`: the real binary on a loopback port, every endpoint, and
//! the refusals (no token, wrong token, cross-site requests, invalid input, path traversal).

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use kfctl::progress::Progress;
use kfctl::web::jobs::{JobKind, JobState, JobStore};
use reqwest::StatusCode;
use reqwest::header::{self, HeaderMap};

/// A running `kfctl serve`, killed on drop.
struct Server {
    child: Child,
    base: String,
    token: String,
    _state: Option<tempfile::TempDir>,
    state_dir: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start() -> Server {
        let state = tempfile::tempdir().unwrap();
        let dir = state.path().to_path_buf();
        let mut server = Server::start_in(&dir, &[]);
        server._state = Some(state);
        server
    }

    fn start_in(state_dir: &Path, extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kfctl"))
            .args(["serve", "--listen", "127.0.0.1:0", "--state-dir"])
            .arg(state_dir)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start kfctl serve");
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut url = None;
        for line in stdout.lines() {
            let line = line.unwrap();
            if line.starts_with("http://") {
                url = Some(line);
                break;
            }
        }
        let url = url.unwrap_or_else(|| {
            let mut err = String::new();
            child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
            panic!("kfctl serve printed no URL; stderr:\n{err}")
        });
        let (base, token) = url.split_once("/?token=").expect("URL carries ?token=");
        Server { child, base: base.to_string(), token: token.to_string(), _state: None, state_dir: state_dir.to_path_buf() }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }
}

fn client() -> reqwest::Client {
    // One crypto provider (ring) for the process, as kfctl itself installs it.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

async fn json(response: reqwest::Response) -> serde_json::Value {
    let bytes = response.bytes().await.unwrap();
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes)))
}

/// Authorized GET.
async fn get(server: &Server, path: &str) -> reqwest::Response {
    client().get(server.url(path)).bearer_auth(&server.token).send().await.unwrap()
}

async fn csrf(server: &Server) -> String {
    let session = json(get(server, "/api/session").await).await;
    session["csrf_token"].as_str().unwrap().to_string()
}

/// Authorized POST of JSON, as the page sends it (same-origin, with the CSRF header).
async fn post(server: &Server, path: &str, body: &serde_json::Value) -> reqwest::Response {
    let csrf = csrf(server).await;
    client()
        .post(server.url(path))
        .bearer_auth(&server.token)
        .header("x-kfctl-csrf", csrf)
        .header(header::ORIGIN, &server.base)
        .header("sec-fetch-site", "same-origin")
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

fn assert_security_headers(headers: &HeaderMap) {
    let csp = headers.get(header::CONTENT_SECURITY_POLICY).expect("CSP header").to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "{csp}");
    assert_eq!(headers.get(header::X_CONTENT_TYPE_OPTIONS).unwrap(), "nosniff");
    assert_eq!(headers.get(header::X_FRAME_OPTIONS).unwrap(), "DENY");
    assert_eq!(headers.get(header::REFERRER_POLICY).unwrap(), "no-referrer");
}

const ENDPOINTS_GET: &[&str] = &["/", "/assets/app.js", "/api/session", "/api/catalog", "/api/jobs"];

#[tokio::test]
async fn refuses_requests_without_the_token_or_with_a_wrong_one() {
    let server = Server::start();
    assert!(server.token.len() >= 43, "token of 32+ random bytes: {}", server.token);
    for path in ENDPOINTS_GET {
        let none = client().get(server.url(path)).send().await.unwrap();
        assert_eq!(none.status(), StatusCode::UNAUTHORIZED, "{path} without a token");
        assert_security_headers(none.headers());
        let body = json(none).await;
        assert_eq!(body["error"], "missing access token");

        let wrong = format!("{}x", &server.token[..server.token.len() - 1]);
        for request in [
            client().get(server.url(path)).bearer_auth(&wrong),
            client().get(server.url(path)).header(header::COOKIE, format!("kfctl_token={wrong}")),
            client().get(format!("{}?token={wrong}", server.url(path))),
        ] {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{path} with a wrong token");
            assert_eq!(json(response).await["error"], "wrong access token");
        }
    }
    let post = client().post(server.url("/api/jobs")).body("{}").send().await.unwrap();
    assert_eq!(post.status(), StatusCode::UNAUTHORIZED);
    let download = client().get(server.url("/api/jobs/0123456789abcdef0123456789abcdef/download")).send().await.unwrap();
    assert_eq!(download.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn token_in_the_url_becomes_an_http_only_strict_cookie() {
    let server = Server::start();
    let response = client().get(format!("{}/?token={}", server.base, server.token)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers().get(header::LOCATION).unwrap(), "/", "the token leaves the address bar");
    let cookie = response.headers().get(header::SET_COOKIE).unwrap().to_str().unwrap().to_string();
    assert!(cookie.starts_with(&format!("kfctl_token={};", server.token)), "{cookie}");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");

    let page = client().get(server.url("/")).header(header::COOKIE, format!("kfctl_token={}", server.token)).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert_security_headers(page.headers());
    assert!(page.headers().get(header::CONTENT_TYPE).unwrap().to_str().unwrap().starts_with("text/html"));
    let html = page.text().await.unwrap();
    assert!(html.contains("<script src=\"/assets/app.js\" defer></script>"));
    // CSP forbids inline code: the page must not need any.
    assert_eq!(html.matches("<script").count(), 1, "only the external script");
    assert!(!html.contains(" style=") && !html.contains("<style") && !html.contains(" onclick="));

    // Other query parameters survive the redirect.
    let response = client().get(format!("{}/?token={}&x=1", server.base, server.token)).send().await.unwrap();
    assert_eq!(response.headers().get(header::LOCATION).unwrap(), "/?x=1");
}

#[tokio::test]
async fn serves_the_embedded_assets_and_nothing_else() {
    let server = Server::start();
    for (path, content_type) in [("/assets/app.js", "text/javascript"), ("/assets/app.css", "text/css"), ("/assets/favicon.svg", "image/svg+xml")] {
        let response = get(&server, path).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert!(response.headers().get(header::CONTENT_TYPE).unwrap().to_str().unwrap().starts_with(content_type));
        assert!(!response.bytes().await.unwrap().is_empty());
    }
    for path in ["/assets/../Cargo.toml", "/assets/..%2F..%2FCargo.toml", "/assets/%2e%2e%2fmod.rs", "/assets/mod.rs", "/etc/passwd", "/api/nope"] {
        let response = get(&server, path).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
        let body = response.text().await.unwrap();
        assert!(!body.contains("[package]") && !body.contains("root:"), "{path} leaked a file: {body}");
    }
}

#[tokio::test]
async fn refuses_foreign_host_headers_on_loopback() {
    let server = Server::start();
    let rebinding = client().get(server.url("/api/session")).bearer_auth(&server.token).header(header::HOST, "attacker.example:8080").send().await.unwrap();
    assert_eq!(rebinding.status(), StatusCode::MISDIRECTED_REQUEST);
    let localhost = client().get(server.url("/api/session")).bearer_auth(&server.token).header(header::HOST, "localhost:1").send().await.unwrap();
    assert_eq!(localhost.status(), StatusCode::OK);
}

fn valid_form(kubeconfig_path: &str) -> serde_json::Value {
    serde_json::json!({
        "name": "kubeflow",
        "version": "v1.4.1",
        "platform": { "kind": "existing", "kubeconfig": { "source": "server_path", "path": kubeconfig_path }, "context": null },
        "components": ["istio"],
        "user": { "email": "user@example.com", "password": "a-long-new-password" }
    })
}

#[tokio::test]
async fn refuses_cross_site_and_unprotected_state_changes() {
    let server = Server::start();
    let csrf = csrf(&server).await;
    let body = valid_form("/nonexistent").to_string();
    let base = || {
        client()
            .post(server.url("/api/jobs"))
            .bearer_auth(&server.token)
            .header(header::CONTENT_TYPE, "application/json")
            .body(body.clone())
    };
    let cases = [
        ("no CSRF header", base(), "missing CSRF header x-kfctl-csrf"),
        ("wrong CSRF header", base().header("x-kfctl-csrf", "nope"), "wrong CSRF token"),
        (
            "cross-site Origin",
            base().header("x-kfctl-csrf", &csrf).header(header::ORIGIN, "http://attacker.example"),
            "cross-site request refused (Origin does not match Host)",
        ),
        (
            "cross-site fetch metadata",
            base().header("x-kfctl-csrf", &csrf).header("sec-fetch-site", "cross-site"),
            "cross-site request refused (Sec-Fetch-Site)",
        ),
        ("same-site but other origin", base().header("x-kfctl-csrf", &csrf).header("sec-fetch-site", "same-site"), "cross-site request refused (Sec-Fetch-Site)"),
    ];
    for (what, request, error) in cases {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{what}");
        assert_eq!(json(response).await["error"], error, "{what}");
    }
    // A cookie-authenticated cross-site form post (what CSRF looks like) is refused too.
    let form_post = client()
        .post(server.url("/api/jobs"))
        .header(header::COOKIE, format!("kfctl_token={}", server.token))
        .header(header::ORIGIN, "http://attacker.example")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body("name=x")
        .send()
        .await
        .unwrap();
    assert_eq!(form_post.status(), StatusCode::FORBIDDEN);
    for method in [reqwest::Method::PUT, reqwest::Method::DELETE, reqwest::Method::PATCH] {
        let response = client().request(method.clone(), server.url("/api/jobs")).bearer_auth(&server.token).header("x-kfctl-csrf", &csrf).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED, "{method}");
    }
    // Nothing of the above created a job.
    assert_eq!(json(get(&server, "/api/jobs").await).await["jobs"], serde_json::json!([]));
}

fn field_errors(body: &serde_json::Value) -> Vec<String> {
    body["fields"].as_array().map(|f| f.iter().map(|e| e["field"].as_str().unwrap().to_string()).collect()).unwrap_or_default()
}

#[tokio::test]
async fn refuses_invalid_input_field_by_field() {
    let server = Server::start();
    let kubeconfig = server.state_dir.join("not-a-kubeconfig");
    std::fs::write(&kubeconfig, "hello").unwrap();
    let mut form = valid_form(kubeconfig.to_str().unwrap());
    form["name"] = "Kube_Flow".into();
    form["version"] = "v0.0.0".into();
    form["user"]["email"] = "not-an-email".into();
    form["user"]["password"] = "12341234".into();
    form["components"] = serde_json::json!(["../../etc"]);
    let response = post(&server, "/api/jobs", &form).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = json(response).await;
    let fields = field_errors(&body);
    for field in ["name", "version", "user.email", "user.password", "platform.kubeconfig", "components"] {
        assert!(fields.contains(&field.to_string()), "{field} not refused: {body}");
    }
    let password = body["fields"].as_array().unwrap().iter().find(|f| f["field"] == "user.password").unwrap();
    assert!(password["message"].as_str().unwrap().contains("upstream default"));

    // Paths that try to leave the file system's plain paths, and files that are not kubeconfigs.
    for path in ["relative/kubeconfig", "/tmp/../etc/passwd", "/etc/passwd", "/etc/shadow", "/proc/self/environ", "/"] {
        let response = post(&server, "/api/kubeconfig/contexts", &serde_json::json!({ "kubeconfig": { "source": "server_path", "path": path } })).await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY, "{path}");
        let body = json(response).await;
        let message = body["fields"][0]["message"].as_str().unwrap();
        assert!(!message.contains("root:"), "{path}: content leaked: {message}");
    }

    // Cloud fields.
    let mut gke = valid_form("/x");
    gke["platform"] = serde_json::json!({ "kind": "gke", "project": "1bad", "region": "US CENTRAL", "cluster_name": "-x", "machine_type": "e2 standard", "nodes": 0 });
    let body = json(post(&server, "/api/preview", &gke).await).await;
    let fields = field_errors(&body);
    for field in ["platform.project", "platform.region", "platform.cluster_name", "platform.machine_type", "platform.nodes"] {
        assert!(fields.contains(&field.to_string()), "{field} not refused: {body}");
    }

    // Malformed bodies and unknown fields are refused before any check runs.
    let mut extra = valid_form("/x");
    extra["registry"] = "/etc".into();
    for body in [extra, serde_json::json!("just a string"), serde_json::json!({ "name": "x" })] {
        let response = post(&server, "/api/jobs", &body).await;
        assert!(response.status().is_client_error(), "{body}");
        assert!(json(response).await["error"].is_string());
    }
    // Too large a body.
    let big = serde_json::json!({ "kubeconfig": { "source": "upload", "content": "x".repeat(600 * 1024) } });
    assert_eq!(post(&server, "/api/kubeconfig/contexts", &big).await.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(json(get(&server, "/api/jobs").await).await["jobs"], serde_json::json!([]));
}

const KUBECONFIG: &str = "apiVersion: v1
kind: Config
clusters:
- name: test
  cluster: {server: 'https://127.0.0.1:6443'}
users:
- name: admin
  user: {token: 'kubeconfig-secret-token-value'}
contexts:
- name: admin@test
  context: {cluster: test, user: admin}
- name: other
  context: {cluster: test, user: admin}
current-context: admin@test
";

#[tokio::test]
async fn lists_kubeconfig_contexts_from_an_upload_or_a_server_path() {
    let server = Server::start();
    let body = json(post(&server, "/api/kubeconfig/contexts", &serde_json::json!({ "kubeconfig": { "source": "upload", "content": KUBECONFIG } })).await).await;
    assert_eq!(body, serde_json::json!({ "contexts": ["admin@test", "other"], "current_context": "admin@test" }));
    let path = server.state_dir.join("kubeconfig.yaml");
    std::fs::write(&path, KUBECONFIG).unwrap();
    let body = json(post(&server, "/api/kubeconfig/contexts", &serde_json::json!({ "kubeconfig": { "source": "server_path", "path": path } })).await).await;
    assert_eq!(body["contexts"], serde_json::json!(["admin@test", "other"]));
    let response = post(&server, "/api/kubeconfig/contexts", &serde_json::json!({ "kubeconfig": { "source": "upload", "content": "kind: Pod" } })).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
}

/// Jobs written into a state directory before the server starts, as a previous server left them.
fn seed_jobs(state_dir: &Path) -> (String, String) {
    let store = JobStore::open(state_dir).unwrap();
    let finished = store.create(JobKind::Deploy, "finished", "existing", "v1.4.1").unwrap();
    finished.append(Progress::Message { text: "starting".into() }).unwrap();
    finished.append(Progress::PhaseStarted { phase: "crds".into(), objects: 2 }).unwrap();
    finished.append(Progress::ComponentStatus { component: "istio".into(), ready: true, reason: None }).unwrap();
    finished.end(JobState::Succeeded, "ready".into(), Vec::new()).unwrap();
    let app = finished.app_dir();
    std::fs::create_dir_all(app.join("manifests/istio")).unwrap();
    std::fs::write(app.join("kfctl.yaml"), "name: finished\n").unwrap();
    std::fs::write(app.join("manifests/istio/kustomization.yaml"), "resources: []\n").unwrap();
    std::fs::write(app.join("kubeconfig"), KUBECONFIG).unwrap();
    std::fs::write(app.join("leak.txt"), "token kubeconfig-secret-token-value\n").unwrap();
    std::fs::write(finished.private_dir().join("kubeconfig"), KUBECONFIG).unwrap();

    let running = store.create(JobKind::Deploy, "cut-off", "kind", "v1.4.1").unwrap();
    running.append(Progress::Message { text: "applying".into() }).unwrap();
    (finished.id.to_string(), running.id.to_string())
}

/// Reads an SSE body to its end and returns the (id, data) of each event.
async fn sse_events(response: reqwest::Response) -> Vec<(u64, serde_json::Value)> {
    let text = response.text().await.unwrap();
    let mut events = Vec::new();
    for block in text.split("\n\n") {
        let mut id = None;
        let mut data = None;
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("id: ").or_else(|| line.strip_prefix("id:")) {
                id = v.trim().parse().ok();
            } else if let Some(v) = line.strip_prefix("data: ").or_else(|| line.strip_prefix("data:")) {
                data = Some(serde_json::from_str(v).unwrap());
            }
        }
        if let (Some(id), Some(data)) = (id, data) {
            events.push((id, data));
        }
    }
    events
}

#[tokio::test]
async fn jobs_survive_a_restart_and_their_progress_replays_from_last_event_id() {
    let state = tempfile::tempdir().unwrap();
    let (finished, cut_off) = seed_jobs(state.path());
    let server = Server::start_in(state.path(), &[]);

    let jobs = json(get(&server, "/api/jobs").await).await;
    let states: Vec<(String, String)> = jobs["jobs"].as_array().unwrap().iter().map(|j| (j["name"].as_str().unwrap().into(), j["state"].as_str().unwrap().into())).collect();
    assert!(states.contains(&("finished".into(), "succeeded".into())), "{states:?}");
    assert!(states.contains(&("cut-off".into(), "interrupted".into())), "a job running when the server died is interrupted: {states:?}");

    let record = json(get(&server, &format!("/api/jobs/{cut_off}")).await).await;
    assert_eq!(record["state"], "interrupted");
    let events = sse_events(get(&server, &format!("/api/jobs/{cut_off}/events")).await).await;
    let last = &events.last().unwrap().1["progress"];
    assert_eq!(last["type"], "finished");
    assert_eq!(last["ok"], false);

    let response = get(&server, &format!("/api/jobs/{finished}/events")).await;
    assert_eq!(response.headers().get(header::CONTENT_TYPE).unwrap(), "text/event-stream");
    let all = sse_events(response).await;
    assert_eq!(all.iter().map(|e| e.0).collect::<Vec<_>>(), vec![1, 2, 3, 4]);
    assert_eq!(all[2].1["progress"], serde_json::json!({ "type": "component_status", "component": "istio", "ready": true, "reason": null }));

    let resumed = client().get(server.url(&format!("/api/jobs/{finished}/events"))).bearer_auth(&server.token).header("last-event-id", "2").send().await.unwrap();
    assert_eq!(sse_events(resumed).await.iter().map(|e| e.0).collect::<Vec<_>>(), vec![3, 4]);
    let after = sse_events(get(&server, &format!("/api/jobs/{finished}/events?after=3")).await).await;
    assert_eq!(after.iter().map(|e| e.0).collect::<Vec<_>>(), vec![4]);
    // A client that saw the last event gets an empty stream that ends (not one left open).
    let path = format!("/api/jobs/{finished}/events?after=4");
    let seen_all = tokio::time::timeout(std::time::Duration::from_secs(10), async { sse_events(get(&server, &path).await).await }).await;
    assert_eq!(seen_all.expect("the stream after the last event ends").len(), 0);
}

#[tokio::test]
async fn resume_needs_the_csrf_token_and_an_interrupted_job_with_an_app_directory() {
    let state = tempfile::tempdir().unwrap();
    let (finished, cut_off) = seed_jobs(state.path());
    let server = Server::start_in(state.path(), &[]);

    // Like every state change: the access token and the CSRF header.
    let no_csrf = client().post(server.url(&format!("/api/jobs/{cut_off}/resume"))).bearer_auth(&server.token).send().await.unwrap();
    assert_eq!(no_csrf.status(), StatusCode::FORBIDDEN);
    let no_token = client().post(server.url(&format!("/api/jobs/{cut_off}/resume"))).send().await.unwrap();
    assert_eq!(no_token.status(), StatusCode::UNAUTHORIZED);

    let response = post(&server, &format!("/api/jobs/{finished}/resume"), &serde_json::json!({})).await;
    assert_eq!(response.status(), StatusCode::CONFLICT);
    let body = json(response).await;
    assert!(body["error"].as_str().unwrap().contains("only an interrupted job can be resumed"), "{body}");

    // Cut off before it wrote its app directory: nothing of it reached a cluster.
    let response = post(&server, &format!("/api/jobs/{cut_off}/resume"), &serde_json::json!({})).await;
    assert_eq!(response.status(), StatusCode::CONFLICT);
    let body = json(response).await;
    assert!(body["error"].as_str().unwrap().contains("before job") && body["hint"].as_str().unwrap().contains("new deployment"), "{body}");
    assert_eq!(json(get(&server, &format!("/api/jobs/{cut_off}")).await).await["state"], "interrupted", "a refused resume changes nothing");
    let response = post(&server, "/api/jobs/0123456789abcdef0123456789abcdef/resume", &serde_json::json!({})).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn jobs_are_addressed_by_server_ids_only() {
    let state = tempfile::tempdir().unwrap();
    let (finished, _) = seed_jobs(state.path());
    let server = Server::start_in(state.path(), &[]);
    for path in [
        "/api/jobs/..%2F..%2F..%2Fetc%2Fpasswd",
        "/api/jobs/../../etc/passwd/download",
        "/api/jobs/%2e%2e/download",
        "/api/jobs/0123456789abcdef0123456789abcdef",
        "/api/jobs/0123456789abcdef0123456789abcdef/download",
        "/api/jobs/0123456789abcdef0123456789abcdef/events",
        &format!("/api/jobs/{}/download", finished.to_uppercase()),
        &format!("/api/jobs/{finished}%2F..%2F{finished}/download"),
    ] {
        let response = get(&server, path).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
    }
}

/// "Open JupyterLab with codelabs" runs `kfctl notebook`'s steps for a deployment that succeeded
/// (tests/notebook covers those steps on a cluster); here, what the route refuses and why.
#[tokio::test]
async fn open_codelabs_needs_a_succeeded_deployment_and_says_why_it_cannot() {
    let state = tempfile::tempdir().unwrap();
    let (finished, cut_off) = seed_jobs(state.path());
    let server = Server::start_in(state.path(), &[]);
    let body = serde_json::json!({});
    let response = post(&server, "/api/jobs/0123456789abcdef0123456789abcdef/notebook", &body).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let response = post(&server, &format!("/api/jobs/{cut_off}/notebook"), &body).await;
    assert_eq!(response.status(), StatusCode::CONFLICT);
    assert_eq!(json(response).await["error"], "the deployment has not succeeded");
    // The seeded app's kfctl.yaml is not a whole config: the answer names it.
    let response = post(&server, &format!("/api/jobs/{finished}/notebook"), &body).await;
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    let answer = json(response).await;
    assert!(answer["error"].as_str().unwrap().contains("kfctl.yaml"), "{answer}");
    assert!(answer["hint"].as_str().unwrap().contains("kfctl notebook"), "{answer}");
}

#[tokio::test]
async fn download_packs_the_app_directory_without_credentials() {
    let state = tempfile::tempdir().unwrap();
    let (finished, _) = seed_jobs(state.path());
    let server = Server::start_in(state.path(), &[]);
    let response = get(&server, &format!("/api/jobs/{finished}/download")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers().get(header::CONTENT_TYPE).unwrap(), "application/gzip");
    assert_eq!(response.headers().get(header::CONTENT_DISPOSITION).unwrap(), "attachment; filename=\"finished.tar.gz\"");
    let bytes = response.bytes().await.unwrap();

    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&bytes[..]));
    let mut names = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        let text = String::from_utf8_lossy(&data);
        for secret in ["kubeconfig-secret-token-value", server.token.as_str(), "client-key-data"] {
            assert!(!text.contains(secret), "{name} carries a credential");
        }
        names.push(name);
    }
    assert!(names.contains(&"finished/kfctl.yaml".to_string()), "{names:?}");
    assert!(names.contains(&"finished/manifests/istio/kustomization.yaml".to_string()), "{names:?}");
    assert!(names.contains(&"finished/EXCLUDED-FROM-DOWNLOAD.txt".to_string()));
    assert!(!names.iter().any(|n| n.ends_with("kubeconfig") || n.ends_with("leak.txt") || n.contains("private")), "{names:?}");
}

#[test]
fn refuses_non_loopback_addresses_unless_allowed() {
    let state = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_kfctl"))
        .args(["serve", "--listen", "0.0.0.0:0", "--state-dir"])
        .arg(state.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("refusing to listen on 0.0.0.0:0") && stderr.contains("--allow-remote"), "{stderr}");

    let mut child = Command::new(env!("CARGO_BIN_EXE_kfctl"))
        .args(["serve", "--listen", "0.0.0.0:0", "--allow-remote", "--state-dir"])
        .arg(state.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(line.starts_with("warning: listening on 0.0.0.0:"), "{line}");
}

#[tokio::test]
async fn catalog_offers_the_releases_with_base_set_and_dependencies() {
    let server = Server::start();
    let catalog = json(get(&server, "/api/catalog").await).await;
    // Newest first; the default release preselected.
    let versions: Vec<&str> = catalog["versions"].as_array().unwrap().iter().map(|v| v["version"].as_str().unwrap()).collect();
    assert_eq!(versions, ["26.03", "v1.10.2", "v1.4.1"]);
    assert_eq!(catalog["default_version"], "26.03");
    let v141 = catalog["versions"].as_array().unwrap().iter().find(|v| v["version"] == "v1.4.1").expect("v1.4.1 offered");
    let components = v141["components"].as_array().unwrap();
    let dex = components.iter().find(|c| c["name"] == "dex").unwrap();
    assert_eq!(dex["default"], true);
    assert_eq!(dex["requires"], serde_json::json!(["istio"]));
    assert!(components.iter().any(|c| c["default"] == false), "optional components are offered unselected");
}

#[tokio::test]
async fn preview_shows_the_kfctl_yaml_with_only_a_hash_of_the_password() {
    let server = Server::start();
    let path = server.state_dir.join("kubeconfig.yaml");
    std::fs::write(&path, KUBECONFIG).unwrap();
    let mut form = valid_form(path.to_str().unwrap());
    form["platform"]["context"] = "other".into();
    form["components"] = serde_json::json!(["oidc-authservice"]);
    let response = post(&server, "/api/preview", &form).await;
    assert_eq!(response.status(), StatusCode::OK);
    let preview = json(response).await;
    // oidc-authservice needs istio and dex; dex needs istio.
    assert_eq!(preview["components"], serde_json::json!(["istio", "oidc-authservice", "dex"]));
    assert_eq!(preview["terraform"], serde_json::Value::Null);
    let yaml = preview["kfctl_yaml"].as_str().unwrap();
    assert!(yaml.contains("name: kubeflow"), "{yaml}");
    assert!(yaml.contains("context: other"), "{yaml}");
    assert!(yaml.contains("email: user@example.com"), "{yaml}");
    assert!(yaml.contains("passwordHash: $2b$12$"), "{yaml}");
    assert!(!yaml.contains("a-long-new-password") && !yaml.contains("kubeconfig-secret-token-value"), "{yaml}");
    let config = kfctl::config::AppConfig::from_yaml(yaml).unwrap();
    let enabled: Vec<&str> = config.components.iter().filter(|c| c.enabled).map(|c| c.name.as_str()).collect();
    assert_eq!(enabled, vec!["istio", "oidc-authservice", "dex"]);
    config.validate().unwrap();
}

#[tokio::test]
async fn preview_of_a_cloud_platform_shows_the_terraform_dry_run() {
    let server = Server::start();
    let mut form = valid_form("/unused");
    form["platform"] = serde_json::json!({ "kind": "gke", "project": "my-project-123", "region": "europe-west4", "cluster_name": "kf", "machine_type": "e2-standard-8", "nodes": 3 });
    let response = post(&server, "/api/preview", &form).await;
    let status = response.status();
    let preview = json(response).await;
    assert_eq!(status, StatusCode::OK, "{preview}");
    let terraform = preview["terraform"].as_str().unwrap();
    assert!(terraform.contains("project") && terraform.contains("\"my-project-123\""), "{terraform}");
    assert!(terraform.contains("europe-west4"), "{terraform}");
    assert!(terraform.contains("terraform") && terraform.contains("plan"), "{terraform}");
    assert!(terraform.contains("lines)"), "the fixed .tf bodies are folded: {terraform}");
    assert!(preview["kfctl_yaml"].as_str().unwrap().contains("kind: gke"));
    // Nothing was created on the server's disk by a preview.
    assert_eq!(json(get(&server, "/api/jobs").await).await["jobs"], serde_json::json!([]));
}
