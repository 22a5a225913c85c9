//! One writer per app: the app's Lease (see `kfctl::lock`) against a second CLI run, with and
//! without `--no-wait`, and a holder killed with SIGKILL whose lock is taken over once it expires.
//!
//! Run inside the testenv: `scripts/testenv exec -- cargo test -p kfctl --offline --test faults_lock`.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ConfigMap;
use serde_json::json;
use support::{AppDir, TEST_NAMESPACE_LABEL, TestNamespace};

/// A `kfctl` run in the background whose stderr (progress and messages) is collected.
struct Running {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Running {
    fn start(mut cmd: Command) -> Running {
        let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("start kfctl");
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Running { child, lines }
    }

    fn text(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn finished(&mut self) -> bool {
        self.child.try_wait().unwrap().is_some()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `kfctl ARGS APP --app-namespace NS` with Leases of `lease_seconds`.
fn kfctl(ns: &TestNamespace, app: &AppDir, args: &[&str], lease_seconds: u32) -> Command {
    let mut cmd = ns.kfctl();
    cmd.args(args).arg(app.path()).args(["--app-namespace", &ns.name]).env("KFCTL_LOCK_LEASE_SECONDS", lease_seconds.to_string());
    cmd
}

fn text_of(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// The app's Lease holder, if the Lease exists.
async fn holder(ns: &TestNamespace, app: &AppDir) -> Option<String> {
    let leases = ns.api::<Lease>();
    let lease = leases.get_opt(&format!("kfctl-lock-{}", app.name)).await.unwrap()?;
    lease.spec?.holder_identity
}

/// A small app; with `slow`, its apply holds the lock for the gate timeout: a webhook whose
/// Service has no endpoint, so kfctl waits for it before giving up on what it intercepts.
fn write_app(ns: &TestNamespace, slow: bool) -> AppDir {
    let app = AppDir::new(&ns.name);
    let n = &ns.name;
    app.component("settings", &[
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "plain", "namespace": n}, "data": {"k": "v"}}),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "gated", "namespace": n, "labels": {"kfctl-test/gated": "yes"}}, "data": {"k": "v"}}),
    ]);
    if !slow {
        app.config(&["settings"]);
        return app;
    }
    let config = format!("{n}-lock-gate");
    app.component("hook", &[
        // Selects no pod: its Endpoints never get a ready address.
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "hook", "namespace": n},
               "spec": {"selector": {"app": "no-such-pod"}, "ports": [{"port": 443, "targetPort": 8443}]}}),
        json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration", "metadata": {"name": config},
            "webhooks": [{"name": "lock.kfctl.test", "admissionReviewVersions": ["v1"], "sideEffects": "None", "failurePolicy": "Fail",
                "clientConfig": {"service": {"namespace": n, "name": "hook", "path": "/validate", "port": 443}},
                "namespaceSelector": {"matchLabels": {TEST_NAMESPACE_LABEL: n}},
                "objectSelector": {"matchLabels": {"kfctl-test/gated": "yes"}},
                "rules": [{"operations": ["CREATE", "UPDATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"], "scope": "Namespaced"}]}]}),
    ]);
    app.config(&["hook", "settings"]);
    ns.delete_on_drop::<ValidatingWebhookConfiguration>(&config);
    app
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_apply_waits_for_the_first_and_no_wait_fails_at_once_naming_the_holder() {
    let ns = TestNamespace::new("lock-cli").await;
    let app = write_app(&ns, true);
    // Leases of 2 s, renewed every ~0.7 s, while the first apply holds the lock for 8 s or more.
    let mut first = Running::start(kfctl(&ns, &app, &["apply", "--gate-timeout", "8s"], 2));
    let first_pid = format!("pid {}", first.pid());
    support::wait_until("the first apply to hold the lock", Duration::from_secs(60), || async {
        holder(&ns, &app).await.is_some_and(|h| h.ends_with(&first_pid))
    })
    .await;

    let refused = kfctl(&ns, &app, &["apply", "--no-wait"], 2).output().unwrap();
    let said = text_of(&refused);
    assert!(!refused.status.success(), "apply --no-wait ran while the lock was held:\n{said}");
    assert!(
        said.contains("is locked by") && said.contains(&first_pid) && said.contains("(kfctl apply)") && said.contains("hint:"),
        "apply --no-wait does not name the holder:\n{said}"
    );

    let mut second = Running::start(kfctl(&ns, &app, &["apply", "--gate-timeout", "1s"], 2));
    // While the first runs, it keeps the lock (renewed, never expired) and the second waits,
    // saying for whom.
    let mut said_waiting = false;
    while !first.finished() {
        let now = holder(&ns, &app).await;
        if !first.finished() && !now.as_deref().is_some_and(|h| h.ends_with(&first_pid)) {
            // The first apply releases the lock just before it exits: allow it that moment, and
            // only then call it a lock that left a running apply.
            tokio::time::sleep(Duration::from_secs(2)).await;
            assert!(first.finished(), "the lock left the running first apply: holder {now:?}\n{}", second.text());
        }
        said_waiting |= second.text().contains(&format!("waiting for the lock of app {}: held by", app.name)) && second.text().contains(&first_pid);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(first.text().contains("is not serving"), "the first apply did not wait for its webhook:\n{}", first.text());
    support::wait_until("the second apply to finish", Duration::from_secs(120), || {
        let done = second.finished();
        async move { done }
    })
    .await;
    let second_said = second.text();
    assert!(said_waiting, "the second apply did not say it waited for the first:\n{second_said}");
    assert!(second_said.contains(&format!("got the lock of app {}", app.name)), "{second_said}");
    assert!(!second_said.contains("took over"), "the first apply's lock expired instead of being released:\n{second_said}");
    assert_eq!(holder(&ns, &app).await, None, "the lock was not released at the end");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_lock_of_a_killed_holder_is_taken_over_once_it_expires() {
    let ns = TestNamespace::new("lock-kill").await;
    let app = write_app(&ns, false);
    // A 15 s lease: still live when `--no-wait` looks, whatever the machine's speed.
    let mut cmd = kfctl(&ns, &app, &["apply", "--output", "json"], 15);
    let mut killed = cmd.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let killed_pid = format!("pid {}", killed.id());
    // Killed once it has written an object: it holds the lock then.
    for line in BufReader::new(killed.stdout.take().unwrap()).lines().map_while(Result::ok) {
        if line.contains("\"object_applied\"") {
            killed.kill().unwrap();
            break;
        }
    }
    killed.wait().unwrap();
    assert!(holder(&ns, &app).await.is_some_and(|h| h.ends_with(&killed_pid)), "the killed apply held no lock");

    let refused = kfctl(&ns, &app, &["delete", "--no-wait"], 15).output().unwrap();
    let said = text_of(&refused);
    assert!(!refused.status.success() && said.contains(&killed_pid), "delete --no-wait ran under a live lock:\n{said}");

    let out = kfctl(&ns, &app, &["apply"], 15).output().unwrap();
    let said = text_of(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains(&format!("waiting for the lock of app {}: held by", app.name)) && said.contains(&killed_pid), "{said}");
    assert!(said.contains(&format!("took over the lock of app {}: its holder", app.name)), "{said}");
    assert_eq!(holder(&ns, &app).await, None, "the lock was not released at the end");
    let cms = ns.api::<ConfigMap>();
    for name in ["plain", "gated"] {
        assert!(cms.get_opt(name).await.unwrap().is_some(), "ConfigMap {name} missing after the apply that took over");
    }
}

/// A `kfctl serve` deploying from `registry`, killed on drop.
struct WebServer {
    child: Child,
    base: String,
    token: String,
}

impl Drop for WebServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl WebServer {
    fn start(state: &std::path::Path, registry: &std::path::Path, lease_seconds: u32) -> WebServer {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kfctl"))
            .args(["serve", "--listen", "127.0.0.1:0", "--state-dir"])
            .arg(state)
            .arg("--registry")
            .arg(registry)
            .env("KFCTL_LOCK_LEASE_SECONDS", lease_seconds.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start kfctl serve");
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let url = stdout.lines().map_while(Result::ok).find(|l| l.starts_with("http://")).expect("kfctl serve printed its URL");
        let (base, token) = url.split_once("/?token=").unwrap();
        WebServer { child, base: base.into(), token: token.into() }
    }

    /// Starts a deployment job; returns its id.
    async fn deploy(&self, form: &serde_json::Value) -> String {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let session = http.get(format!("{}/api/session", self.base)).bearer_auth(&self.token).send().await.unwrap().bytes().await.unwrap();
        let session: serde_json::Value = serde_json::from_slice(&session).unwrap();
        let response = http
            .post(format!("{}/api/jobs", self.base))
            .bearer_auth(&self.token)
            .header("x-kfctl-csrf", session["csrf_token"].as_str().unwrap())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(form.to_string())
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body: serde_json::Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
        assert_eq!(status, reqwest::StatusCode::ACCEPTED, "{body}");
        body["id"].as_str().unwrap().to_string()
    }
}

/// The messages of a job's log so far, and whether it has ended.
fn job_log(state: &std::path::Path, id: &str) -> (Vec<String>, bool) {
    let text = std::fs::read_to_string(state.join("jobs").join(id).join("events.jsonl")).unwrap_or_default();
    let mut ended = false;
    let mut lines = Vec::new();
    for line in text.lines() {
        let event: serde_json::Value = serde_json::from_str(line).unwrap();
        ended |= event["last"] == true;
        let p = &event["progress"];
        lines.push(p["text"].as_str().or(p["summary"].as_str()).map_or_else(|| p.to_string(), str::to_owned));
    }
    (lines, ended)
}

/// A web-app deployment job of an app whose lock a CLI run holds waits, naming the CLI run; the
/// CLI run killed, the job takes the lock over once it expires and deploys. Then a CLI
/// `delete --no-wait` runs at once (the job released the lock) and removes what the job made.
#[tokio::test(flavor = "multi_thread")]
async fn a_web_app_job_waits_for_a_cli_holder_and_takes_its_lock_over_once_it_dies() {
    let ns = TestNamespace::new("lock-web").await;
    let work = tempfile::tempdir().unwrap();
    let registry = support::registry::fixture_registry(&work.path().join("fixture"), &ns.name);
    // The web app's apps live in namespace kubeflow; the CLI's app has the same name and place.
    let cli_app = AppDir::new(&ns.name);
    cli_app.component("settings", &[json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "from-the-cli", "namespace": ns.name}, "data": {"k": "v"}})]);
    cli_app.config(&["settings"]);
    let mut cmd = ns.kfctl();
    cmd.args(["apply", "--output", "json"]).arg(cli_app.path()).args(["--app-namespace", "kubeflow"]).env("KFCTL_LOCK_LEASE_SECONDS", "10");
    let mut cli = cmd.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let cli_pid = format!("pid {}", cli.id());
    for line in BufReader::new(cli.stdout.take().unwrap()).lines().map_while(Result::ok) {
        if line.contains("\"object_applied\"") {
            cli.kill().unwrap();
            break;
        }
    }
    cli.wait().unwrap();

    let state = work.path().join("state");
    let server = WebServer::start(&state, &registry, 3);
    let form = json!({
        "name": ns.name,
        "version": "v1.4.1",
        "platform": {"kind": "existing", "kubeconfig": {"source": "server_path", "path": ns.env.kubeconfig}, "context": null},
        "components": kfctl::registry::catalog::release("v1.4.1").unwrap().components.iter().filter(|c| c.base).map(|c| c.name.as_str()).collect::<Vec<_>>(),
        "user": {"email": "lock@example.com", "password": "lock-Correct-Horse-42"},
    });
    let id = server.deploy(&form).await;
    let mut log = Vec::new();
    support::wait_until("the web-app job to end", Duration::from_secs(300), || {
        let (lines, ended) = job_log(&state, &id);
        log = lines;
        async move { ended }
    })
    .await;
    let text = log.join("\n");
    let waited = log.iter().any(|l| l.starts_with(&format!("waiting for the lock of app {}: held by", ns.name)) && l.contains(&cli_pid) && l.contains("(kfctl apply)"));
    assert!(waited, "the job did not say it waited for the CLI run:\n{text}");
    assert!(text.contains(&format!("took over the lock of app {}: its holder", ns.name)), "{text}");
    assert!(text.contains("Kubeflow v1.4.1 is ready"), "the job did not deploy after taking the lock:\n{text}");

    // The job released the lock: a CLI delete of its app runs at once.
    let job_app = state.join("jobs").join(&id).join("app");
    let out = ns.kfctl().args(["delete", "--purge", "--no-wait"]).arg(&job_app).output().unwrap();
    assert!(out.status.success(), "{}", text_of(&out));
    let cms = ns.api::<ConfigMap>();
    assert!(cms.get_opt("from-the-cli").await.unwrap().is_none(), "the CLI run's object outlived the job's prune and the delete");
}
