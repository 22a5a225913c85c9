//! End-to-end tests of `kfctl serve` against the real control plane of `scripts/testenv`:
//! deployments through the HTTP API (two at once), and the whole wizard in real headless
//! Chromium driven over WebDriver, with screenshots of each step in target/e2e-artifacts/.
//!
//! They deploy a small fixture registry (built here as a .tar.gz with every v1.4.1 catalog path,
//! each a tiny kustomization: namespaces, ConfigMaps, a few Deployments that simnode runs, and
//! dex's ConfigMap so the login is really set), not the full Kubeflow release, which would take
//! far longer on the test cluster than a browser test should.
//!
//! Run inside the testenv, with the browser installed:
//! `scripts/install-browser && scripts/testenv up && scripts/testenv exec -- cargo test -p kfctl --offline --test web_e2e`

mod support;
mod webdriver;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kfctl::registry::catalog;
use rand::RngCore;
use reqwest::header;
use serde_json::{Value, json};
use webdriver::Browser;

/// Set by `scripts/testenv exec` to the admin kubeconfig of the running environment.
const KUBECONFIG_ENV: &str = "KFCTL_TESTENV_KUBECONFIG";
/// A bound that only turns a hang into a readable failure (not a speed assertion).
const LIMIT: Duration = Duration::from_secs(240);
const PASSWORD: &str = "e2e-Correct-Horse-42";

fn testenv_kubeconfig() -> PathBuf {
    let path = std::env::var_os(KUBECONFIG_ENV).map(PathBuf::from).unwrap_or_else(|| {
        panic!(
            "error: {KUBECONFIG_ENV} is not set: not running inside scripts/testenv\n  hint: scripts/testenv up, then \
             scripts/testenv exec -- cargo test -p kfctl --offline --test web_e2e"
        )
    });
    assert!(path.is_file(), "{} does not exist; is the testenv up? (scripts/testenv status)", path.display());
    path
}


fn unique_name(prefix: &str) -> String {
    let mut bytes = [0u8; 3];
    rand::rng().fill_bytes(&mut bytes);
    format!("{prefix}-{}", hex::encode(bytes))
}

/// A running `kfctl serve` deploying from the fixture registry, killed on drop.
struct Server {
    child: Child,
    base: String,
    token: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start(state_dir: &Path, registry: &Path) -> Server {
        Server::start_with(state_dir, Some(registry), None)
    }

    /// `kfctl serve`, with the operator's archive if any, and extra release catalogs if any.
    fn start_with(state_dir: &Path, registry: Option<&Path>, catalogs: Option<&Path>) -> Server {
        Server::spawn(Server::command(state_dir, registry, catalogs))
    }

    /// The `kfctl serve` command [`Server::start_with`] runs, to adjust before [`Server::spawn`].
    fn command(state_dir: &Path, registry: Option<&Path>, catalogs: Option<&Path>) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_kfctl"));
        command.args(["serve", "--listen", "127.0.0.1:0", "--state-dir"]).arg(state_dir);
        if let Some(registry) = registry {
            command.arg("--registry").arg(registry);
        }
        if let Some(catalogs) = catalogs {
            command.env("KFCTL_CATALOGS", catalogs);
        }
        command.stdout(Stdio::piped()).stderr(Stdio::inherit());
        command
    }

    fn spawn(mut command: Command) -> Server {
        let mut child = command.spawn().expect("start kfctl serve");
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let url = stdout.lines().map(Result::unwrap).find(|l| l.starts_with("http://")).expect("kfctl serve printed its URL");
        let (base, token) = url.split_once("/?token=").unwrap();
        Server { child, base: base.into(), token: token.into() }
    }

    fn client(&self) -> reqwest::Client {
        let _ = rustls::crypto::ring::default_provider().install_default();
        reqwest::Client::builder().no_proxy().build().unwrap()
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.client().get(format!("{}{path}", self.base)).bearer_auth(&self.token).send().await.unwrap()
    }

    async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        let session: Value = serde_json::from_slice(&self.get("/api/session").await.bytes().await.unwrap()).unwrap();
        self.client()
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .header("x-kfctl-csrf", session["csrf_token"].as_str().unwrap())
            .header(header::CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap()
    }
}

async fn json_of(response: reqwest::Response) -> Value {
    let status = response.status();
    let bytes = response.bytes().await.unwrap();
    serde_json::from_slice(&bytes).unwrap_or_else(|_| panic!("{status}: {}", String::from_utf8_lossy(&bytes)))
}

/// Follows a job's SSE stream to its `finished` event; returns every progress event.
async fn follow(server: &Server, id: &str) -> Vec<Value> {
    let mut response = server.get(&format!("/api/jobs/{id}/events")).await;
    assert_eq!(response.status(), 200);
    let deadline = Instant::now() + LIMIT;
    let mut buffer = String::new();
    let mut events = Vec::new();
    loop {
        let Ok(chunk) = tokio::time::timeout_at(deadline.into(), response.chunk()).await else {
            let tail: Vec<&Value> = events.iter().rev().take(40).collect();
            panic!("job {id} did not finish within {LIMIT:?}; its last events, newest first:\n{tail:#?}");
        };
        let chunk = chunk.unwrap();
        let Some(chunk) = chunk else { break };
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            if let Some(data) = block.lines().find_map(|l| l.strip_prefix("data: ").or_else(|| l.strip_prefix("data:"))) {
                let event: Value = serde_json::from_str(data).unwrap();
                events.push(event["progress"].clone());
            }
        }
    }
    events
}

/// Every entry of a .tar.gz, as (path, bytes).
fn unpack(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
    archive
        .entries()
        .unwrap()
        .map(|entry| {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().to_string_lossy().into_owned();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            (path, data)
        })
        .collect()
}

/// The credentials that must never leave the server: the kubeconfig's keys/tokens, the password,
/// the access token.
fn forbidden_strings(kubeconfig: &Path, token: &str) -> Vec<String> {
    let text = std::fs::read_to_string(kubeconfig).unwrap();
    let checked = kfctl::web::wizard::parse_kubeconfig(text, None).unwrap();
    let mut secrets = checked.secret_values();
    assert!(!secrets.is_empty(), "the testenv kubeconfig carries credentials to look for");
    secrets.extend([PASSWORD.to_string(), token.to_string(), "client-key-data".into(), "PRIVATE KEY-----".into()]);
    secrets
}

fn assert_no_credentials(files: &[(String, Vec<u8>)], forbidden: &[String]) {
    for (path, data) in files {
        let text = String::from_utf8_lossy(data);
        for secret in forbidden {
            assert!(!text.contains(secret.as_str()), "{path} in the download carries a credential");
        }
        assert!(!path.contains("kubeconfig") && !path.contains("private/"), "{path} must not be in the download");
    }
}

/// The dex ConfigMap on the cluster holds a bcrypt hash of the password chosen in the wizard.
async fn assert_login_set(client: &kube::Client, ns: &str, email: &str) {
    let dex = kube::Api::<ConfigMap>::namespaced(client.clone(), ns).get("dex").await.unwrap();
    let config: Value = serde_saphyr::from_str(&dex.data.unwrap()["config.yaml"]).unwrap();
    let user = &config["staticPasswords"][0];
    assert_eq!(user["email"], email);
    let hash = user["hash"].as_str().unwrap();
    assert!(bcrypt::verify(PASSWORD, hash).unwrap(), "dex's hash is the chosen password's");
    assert!(!bcrypt::verify("12341234", hash).unwrap(), "the upstream default password no longer logs in");
}

async fn cleanup(client: &kube::Client, app_dir: &Path) {
    if let Ok(app) = kfctl::app::App::open(app_dir) {
        let _ = kfctl::apply::delete_app(client, &app, false, &kfctl::progress::Silent).await;
    }
}

fn job_app_dir(state: &Path, id: &str) -> PathBuf {
    state.join("jobs").join(id).join("app")
}

fn form(name: &str, kubeconfig: &Path) -> Value {
    json!({
        "name": name,
        "version": "v1.4.1",
        "platform": { "kind": "existing", "kubeconfig": { "source": "server_path", "path": kubeconfig }, "context": null },
        "components": catalog::release("v1.4.1").unwrap().components.iter().filter(|c| c.base).map(|c| c.name.as_str()).collect::<Vec<_>>(),
        "user": { "email": format!("{name}@example.com"), "password": PASSWORD },
    })
}

/// Tests that deploy to the shared test cluster take turns: every kfctl app labels the shared
/// Application CRD as its own, so two apps becoming ready at the same moment would each see the
/// CRD as the other's.
static CLUSTER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A kubeconfig whose cluster is a closed loopback port: a deployment to it fails, with a reason.
const UNREACHABLE_KUBECONFIG: &str = "apiVersion: v1
kind: Config
clusters:
- name: nowhere
  cluster: {server: 'https://127.0.0.1:9'}
users:
- name: nobody
  user: {token: 'unreachable-cluster-token-value'}
contexts:
- name: nowhere
  context: {cluster: nowhere, user: nobody}
current-context: nowhere
";

#[tokio::test]
async fn two_deployments_at_once_through_the_api_each_keep_their_own_outcome_and_survive_a_restart() {
    let kubeconfig = testenv_kubeconfig();
    let _turn = CLUSTER.lock().await;
    let client = kfctl::cluster::connect(Some(&kubeconfig), None).await.unwrap();
    let work = tempfile::tempdir().unwrap();
    let state = work.path().join("state");
    let good = unique_name("web-api");
    let bad = unique_name("web-api-down");
    let registry = support::registry::fixture_registry(&work.path().join("fixture"), &good);
    let server = Server::start(&state, &registry);

    // Both start at once: one to the test cluster, one to a cluster that does not answer.
    let mut down = form(&bad, &kubeconfig);
    down["platform"]["kubeconfig"] = json!({ "source": "upload", "content": UNREACHABLE_KUBECONFIG });
    let up = form(&good, &kubeconfig);
    let (a, b) = tokio::join!(server.post("/api/jobs", &up), server.post("/api/jobs", &down));
    assert_eq!((a.status(), b.status()), (reqwest::StatusCode::ACCEPTED, reqwest::StatusCode::ACCEPTED));
    let ids = [json_of(a).await["id"].as_str().unwrap().to_string(), json_of(b).await["id"].as_str().unwrap().to_string()];
    let (events, down_events) = tokio::join!(follow(&server, &ids[0]), follow(&server, &ids[1]));

    let last = events.last().unwrap();
    let failures: Vec<&Value> = events.iter().filter(|e| e["type"] == "object_failed" || (e["type"] == "event" && e["warning"] == true)).collect();
    assert_eq!(last["ok"], true, "{good} failed: {}\n{failures:#?}", last["summary"]);
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    for kind in ["message", "phase_started", "phase_finished", "object_applied", "component_status"] {
        assert!(kinds.contains(&kind), "no {kind} event in {kinds:?}");
    }
    assert!(events.iter().any(|e| e["type"] == "component_status" && e["component"] == "istio" && e["ready"] == true), "istio never reported ready");
    let record = json_of(server.get(&format!("/api/jobs/{}", ids[0])).await).await;
    assert_eq!(record["state"], "succeeded");
    let links = record["access"].as_array().unwrap();
    assert!(links.iter().any(|l| l["command"].as_str().unwrap_or_default().contains("kfctl open dashboard")), "{record}");
    assert_login_set(&client, &good, &format!("{good}@example.com")).await;

    // The other failed on its own, saying why, without touching the first.
    let down_last = down_events.last().unwrap();
    assert_eq!(down_last["ok"], false);
    let reason = down_last["summary"].as_str().unwrap();
    assert!(reason.contains("127.0.0.1:9"), "the failure names the unreachable server: {reason}");
    assert_eq!(json_of(server.get(&format!("/api/jobs/{}", ids[1])).await).await["state"], "failed");
    // Each job wrote its own app directory.
    assert_eq!(kfctl::app::App::open(&job_app_dir(&state, &ids[0])).unwrap().config.name, good);
    assert_eq!(kfctl::app::App::open(&job_app_dir(&state, &ids[1])).unwrap().config.name, bad);

    // The download carries the app without credentials.
    let download = server.get(&format!("/api/jobs/{}/download", ids[0])).await;
    assert_eq!(download.status(), 200);
    let files = unpack(&download.bytes().await.unwrap());
    assert!(files.iter().any(|(p, _)| p == &format!("{good}/kfctl.yaml")));
    assert!(files.iter().any(|(p, _)| p.starts_with(&format!("{good}/registry/v1.4.1/"))));
    assert_no_credentials(&files, &forbidden_strings(&kubeconfig, &server.token));
    let kfctl_yaml = String::from_utf8_lossy(&files.iter().find(|(p, _)| p.ends_with("/kfctl.yaml")).unwrap().1).into_owned();
    assert!(kfctl_yaml.contains("passwordHash: $2b$12$"), "{kfctl_yaml}");
    let down_files = unpack(&server.get(&format!("/api/jobs/{}/download", ids[1])).await.bytes().await.unwrap());
    let mut forbidden = forbidden_strings(&kubeconfig, &server.token);
    forbidden.push("unreachable-cluster-token-value".into());
    assert_no_credentials(&down_files, &forbidden);

    // A restarted server still has both jobs, finished, with their logs.
    drop(server);
    let server = Server::start(&state, &registry);
    assert_eq!(json_of(server.get(&format!("/api/jobs/{}", ids[0])).await).await["state"], "succeeded");
    assert_eq!(json_of(server.get(&format!("/api/jobs/{}", ids[1])).await).await["state"], "failed");
    let replay = follow(&server, &ids[0]).await;
    assert_eq!(replay.len(), events.len(), "the whole log replays after a restart");

    cleanup(&client, &job_app_dir(&state, &ids[0])).await;
}

#[tokio::test]
async fn the_wizard_in_headless_chromium_deploys_to_ready_and_downloads_the_app() {
    let kubeconfig = testenv_kubeconfig();
    let _turn = CLUSTER.lock().await;
    let client = kfctl::cluster::connect(Some(&kubeconfig), None).await.unwrap();
    let work = tempfile::tempdir().unwrap();
    let state = work.path().join("state");
    let name = unique_name("web-ui");
    let registry = support::registry::fixture_registry(&work.path().join("fixture"), &name);
    let server = Server::start(&state, &registry);
    let shots = support::artifacts_dir();
    let downloads = work.path().join("downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    let browser = Browser::start(&downloads).await;
    let shot = |n: &str| shots.join(format!("wizard-{n}.png"));

    // Without the token the page says what to do.
    browser.goto(&format!("{}/", server.base)).await;
    browser.wait_until("return !!document.body && document.body.innerText.includes('missing access token')", Duration::from_secs(20), "the refusal shown").await;
    browser.screenshot(&shot("0-no-token")).await;

    // With it: the cookie is set and the token leaves the address bar.
    browser.goto(&format!("{}/?token={}", server.base, server.token)).await;
    browser.wait_for("fieldset[data-step=platform]", Duration::from_secs(20)).await;
    assert!(!browser.url().await.contains("token="), "the token stays out of the address bar");
    browser.screenshot(&shot("1-platform")).await;

    // Platform: upload the testenv's kubeconfig, load its contexts.
    let upload = browser.find("#kubeconfig-file").await;
    browser.send_keys(&upload, &kubeconfig.to_string_lossy()).await;
    browser.wait_until("return document.querySelector('#kube-context').options.length > 0 && !document.querySelector('#kube-context').disabled", Duration::from_secs(20), "contexts loaded").await;
    browser.screenshot(&shot("2-platform-kubeconfig")).await;
    browser.click(&browser.find("#next").await).await;

    // Name and version.
    browser.wait_for("fieldset[data-step=version]", Duration::from_secs(10)).await;
    browser.fill("#app-name", &name).await;
    browser.screenshot(&shot("3-version")).await;
    browser.click(&browser.find("#next").await).await;

    // Components: the base set is preselected; choosing seldon pulls in nothing else here, then
    // unchecking istio removes what needs it (the note says so), and "Base set" restores it.
    browser.wait_for("fieldset[data-step=components]", Duration::from_secs(10)).await;
    let checked = browser.execute("return document.querySelectorAll('#components input:checked').length", json!([])).await;
    let base = catalog::release("v1.4.1").unwrap().components.iter().filter(|c| c.base).count();
    assert_eq!(checked, json!(base));
    browser.click(&browser.find("#component-istio").await).await;
    let note = browser.text(&browser.find("#components-note").await).await;
    assert!(note.contains("Also removed") && note.contains("istio"), "{note}");
    browser.screenshot(&shot("4-components-dependencies")).await;
    browser.click(&browser.find("#components-base").await).await;
    browser.screenshot(&shot("4-components")).await;
    browser.click(&browser.find("#next").await).await;

    // Login: the upstream default password is refused, in the page and on the server.
    browser.wait_for("fieldset[data-step=user]", Duration::from_secs(10)).await;
    let email = format!("{name}@example.com");
    browser.fill("#user-email", &email).await;
    browser.fill("#user-password", "12341234").await;
    browser.fill("#user-password2", "12341234").await;
    browser.click(&browser.find("#next").await).await;
    let error = browser.text(&browser.find("[data-error-for='user.password']").await).await;
    assert!(error.contains("upstream default"), "{error}");
    browser.screenshot(&shot("5-login-refused")).await;
    browser.fill("#user-password", PASSWORD).await;
    browser.fill("#user-password2", PASSWORD).await;
    browser.screenshot(&shot("5-login")).await;
    browser.click(&browser.find("#next").await).await;

    // Review: the generated kfctl.yaml, with only a hash of the password.
    browser.wait_for("fieldset[data-step=review]", Duration::from_secs(60)).await;
    browser.wait_until("return document.querySelector('#review-yaml').textContent.includes('passwordHash')", Duration::from_secs(60), "kfctl.yaml shown").await;
    let yaml = browser.text(&browser.find("#review-yaml").await).await;
    assert!(yaml.contains(&format!("name: {name}")) && !yaml.contains(PASSWORD), "{yaml}");
    browser.screenshot(&shot("6-review")).await;
    browser.click(&browser.find("#next").await).await;

    // Progress, live, until Ready.
    browser.wait_for("#job", Duration::from_secs(20)).await;
    browser.wait_until("return document.querySelectorAll('#job-log li').length > 3", Duration::from_secs(120), "progress shown").await;
    browser.screenshot(&shot("7-progress")).await;
    let url = browser.url().await;
    let id = url.rsplit('/').next().unwrap().to_string();
    assert_eq!(id.len(), 32, "{url}");
    // Reloading resumes the same job (the log is replayed).
    browser.goto(&url).await;
    browser.wait_until(
        "const s = document.querySelector('#job-state').textContent; return s === 'succeeded' || s === 'failed' || s === 'interrupted'",
        LIMIT,
        "deployment finished",
    )
    .await;
    browser.screenshot(&shot("8-ready")).await;
    let job_state = browser.text(&browser.find("#job-state").await).await;
    let log = browser.text(&browser.find("#job-log").await).await;
    assert_eq!(job_state, "succeeded", "log:\n{log}");
    let ready = browser.execute("return Array.from(document.querySelectorAll('#job-components td.yes')).length", json!([])).await;
    assert!(ready.as_u64().unwrap() >= base as u64, "every component shown ready: {ready}");
    let links = browser.text(&browser.find("#job-links").await).await;
    assert!(links.contains("Kubeflow dashboard") && links.contains("kfctl open dashboard") && links.contains("JupyterLab"), "{links}");
    browser.execute("document.querySelector('#job-done').scrollIntoView()", json!([])).await;
    browser.screenshot(&shot("9-done")).await;

    // Download the app directory through the page.
    browser.click(&browser.find("#job-download").await).await;
    let archive = downloads.join(format!("{name}.tar.gz"));
    let deadline = Instant::now() + Duration::from_secs(60);
    while !archive.is_file() {
        assert!(Instant::now() < deadline, "download did not arrive in {}", downloads.display());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let files = unpack(&std::fs::read(&archive).unwrap());
    assert!(files.iter().any(|(p, _)| p == &format!("{name}/kfctl.yaml")));
    assert_no_credentials(&files, &forbidden_strings(&kubeconfig, &server.token));
    std::fs::copy(&archive, shots.join("wizard-download.tar.gz")).unwrap();

    assert_login_set(&client, &name, &email).await;
    cleanup(&client, &job_app_dir(&state, &id)).await;
}

/// A deployment made through the web app, upgraded from its page: the plan shown as a
/// confirmation page, the blocking manual step ticked, then an upgrade job of its own. Two small
/// fixture releases (tests/support/fixture_release.rs) stand in for Kubeflow's.
#[tokio::test(flavor = "multi_thread")]
async fn a_deployed_app_is_upgraded_from_its_page_after_the_plan_is_confirmed() {
    use k8s_openapi::api::core::v1::Namespace;
    let kubeconfig = testenv_kubeconfig();
    let _turn = CLUSTER.lock().await;
    let client = kfctl::cluster::connect(Some(&kubeconfig), None).await.unwrap();
    let work = tempfile::tempdir().unwrap();
    let state = work.path().join("state");
    let name = unique_name("web-upgrade");
    // The fixture's objects live in a namespace named after the app; the Application in kubeflow.
    let namespaces = kube::Api::<Namespace>::all(client.clone());
    for ns in [name.as_str(), "kubeflow"] {
        let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap();
        let _ = namespaces.create(&Default::default(), &namespace).await;
    }
    let releases = support::fixture_release::FixtureReleases::build(&name);
    let server = Server::start_with(&state, None, Some(&releases.catalogs()));

    let mut deploy = form(&name, &kubeconfig);
    deploy["version"] = json!(releases.old);
    deploy["components"] = json!(["web", "auth-old", "legacy", "store"]);
    let response = server.post("/api/jobs", &deploy).await;
    assert_eq!(response.status(), reqwest::StatusCode::ACCEPTED);
    let id = json_of(response).await["id"].as_str().unwrap().to_string();
    let events = follow(&server, &id).await;
    assert_eq!(events.last().unwrap()["ok"], true, "{:#?}", events.iter().rev().take(20).collect::<Vec<_>>());

    // The plan changes nothing; an upgrade job without the blocking step confirmed stops.
    let plan = json_of(server.post(&format!("/api/jobs/{id}/upgrade/plan"), &json!({"to": releases.new})).await).await;
    let text = plan["text"].as_str().unwrap();
    assert!(text.contains("auth-old -> auth") && text.contains("kfctl deletes and recreates ClusterRoleBinding"), "{text}");
    assert_eq!(plan["manual"][0]["id"], "move-store-data");
    assert!(!job_app_dir(&state, &id).join(format!("registry/{}", releases.new)).exists(), "planning vendored nothing for good");
    let stopped = json_of(server.post(&format!("/api/jobs/{id}/upgrade"), &json!({"to": releases.new})).await).await;
    let stopped_events = follow(&server, stopped["id"].as_str().unwrap()).await;
    let last = stopped_events.last().unwrap();
    assert_eq!(last["ok"], false);
    assert!(last["summary"].as_str().unwrap().contains("move-store-data"), "{last}");
    let configs = kube::Api::<ConfigMap>::namespaced(client.clone(), &name);
    assert!(configs.get_opt("extra").await.unwrap().is_none(), "the stopped upgrade applied something");

    // In the browser: the deployment's page offers the upgrade; the plan, the box, the job.
    let downloads = work.path().join("downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    let browser = Browser::start(&downloads).await;
    let shots = support::artifacts_dir();
    browser.goto(&format!("{}/?token={}", server.base, server.token)).await;
    browser.wait_for("fieldset[data-step=platform]", Duration::from_secs(20)).await;
    browser.goto(&format!("{}/#/job/{id}", server.base)).await;
    browser.wait_until("return !document.querySelector('#job-upgrade').hidden", Duration::from_secs(30), "the upgrade offered").await;
    assert_eq!(browser.text(&browser.find("#upgrade-current").await).await, releases.old);
    browser.execute("const s = document.querySelector('#upgrade-to'); s.value = arguments[0]; s.dispatchEvent(new Event('change'))", json!([releases.new])).await;
    browser.click(&browser.find("#upgrade-plan").await).await;
    browser.wait_until("return !document.querySelector('#upgrade-review').hidden", LIMIT, "the plan shown").await;
    let shown = browser.text(&browser.find("#upgrade-text").await).await;
    assert!(shown.contains("auth-old -> auth"), "{shown}");
    browser.execute("document.querySelector('#job-upgrade').scrollIntoView()", json!([])).await;
    browser.screenshot(&shots.join("upgrade-1-plan.png")).await;
    assert_eq!(browser.execute("return document.querySelector('#upgrade-start').disabled", json!([])).await, json!(true), "blocked until the step is ticked");
    browser.click(&browser.find("#upgrade-steps input[value=move-store-data]").await).await;
    browser.click(&browser.find("#upgrade-start").await).await;
    browser.wait_until(&format!("return location.hash !== '#/job/{id}'"), Duration::from_secs(30), "the upgrade job opened").await;
    browser.wait_until("return document.querySelector('#job-state').textContent === 'succeeded' || document.querySelector('#job-state').textContent === 'failed'", LIMIT, "the upgrade finished").await;
    browser.screenshot(&shots.join("upgrade-2-done.png")).await;
    let log = browser.text(&browser.find("#job-log").await).await;
    assert_eq!(browser.text(&browser.find("#job-state").await).await, "succeeded", "{log}");
    let upgrade_id = browser.url().await.rsplit('/').next().unwrap().to_string();

    // The cluster is at the new release; each job's app directory is as that job left it.
    assert_eq!(configs.get("store-settings").await.unwrap().data.unwrap()["backend"], "object");
    assert!(configs.get_opt("extra").await.unwrap().is_some() && configs.get_opt("legacy").await.unwrap().is_none());
    // (Read without validating: this test process has no $KFCTL_CATALOGS, the server has.)
    let config_of = |job: &str| {
        let text = std::fs::read_to_string(job_app_dir(&state, job).join("kfctl.yaml")).unwrap();
        kfctl::config::AppConfig::from_yaml(&text).unwrap()
    };
    assert_eq!(config_of(&id).version, releases.old);
    let upgraded = config_of(&upgrade_id);
    assert_eq!(upgraded.version, releases.new);
    assert_eq!(upgraded.history.last().unwrap().confirmed, ["move-store-data"]);

    let delete = Command::new(env!("CARGO_BIN_EXE_kfctl"))
        .env("KFCTL_CATALOGS", releases.catalogs())
        .env("KUBECONFIG", &kubeconfig)
        .args(["delete", "--purge"])
        .arg(job_app_dir(&state, &upgrade_id))
        .output()
        .unwrap();
    assert!(delete.status.success(), "{}", String::from_utf8_lossy(&delete.stderr));
    let _ = namespaces.delete(&name, &Default::default()).await;
}

// ---- faults and load: a stopped or killed server, resumed jobs, many clients ----

/// One SSE follower's view of a job: every event (the whole `JobEvent` JSON) in arrival order,
/// how long each took from its append on the server to its arrival here, and how often the
/// server ended the stream early (a lagging client) and the follower reconnected with
/// Last-Event-ID, as a browser does.
struct Followed {
    events: Vec<Value>,
    latencies_ms: Vec<f64>,
    reconnects: usize,
}

async fn follow_to_end(client: &reqwest::Client, server: &Server, id: &str) -> Followed {
    let deadline = Instant::now() + LIMIT;
    let mut followed = Followed { events: Vec::new(), latencies_ms: Vec::new(), reconnects: 0 };
    loop {
        let mut request = client.get(format!("{}/api/jobs/{id}/events", server.base)).bearer_auth(&server.token);
        if let Some(seen) = followed.events.last() {
            request = request.header("last-event-id", seen["seq"].to_string());
        }
        let mut response = tokio::time::timeout_at(deadline.into(), request.send()).await.expect("the events request answers").unwrap();
        assert_eq!(response.status(), 200);
        let mut buffer = String::new();
        loop {
            let chunk = tokio::time::timeout_at(deadline.into(), response.chunk()).await;
            let Some(chunk) = chunk.unwrap_or_else(|_| panic!("job {id} did not end within {LIMIT:?}; {} events so far", followed.events.len())).unwrap() else { break };
            buffer.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buffer.find("\n\n") {
                let block: String = buffer.drain(..end + 2).collect();
                let Some(data) = block.lines().find_map(|l| l.strip_prefix("data: ").or_else(|| l.strip_prefix("data:"))) else { continue };
                let event: Value = serde_json::from_str(data).unwrap();
                let sent: jiff::Timestamp = event["time"].as_str().unwrap().parse().unwrap();
                followed.latencies_ms.push(jiff::Timestamp::now().duration_since(sent).as_secs_f64() * 1000.0);
                followed.events.push(event);
            }
        }
        if followed.events.last().is_some_and(|e| e["last"] == true) {
            return followed;
        }
        followed.reconnects += 1;
    }
}

/// Reads a job's events until one matches `wanted`; panics with what came if none does in time.
async fn wait_for_event(server: &Server, id: &str, wanted: impl Fn(&Value) -> bool) {
    let mut response = server.get(&format!("/api/jobs/{id}/events")).await;
    let deadline = Instant::now() + LIMIT;
    let mut buffer = String::new();
    let mut seen = Vec::new();
    loop {
        let chunk = tokio::time::timeout_at(deadline.into(), response.chunk()).await.expect("the wanted event in time").unwrap();
        let Some(chunk) = chunk else { panic!("job {id} ended without the wanted event: {seen:#?}") };
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            if let Some(data) = block.lines().find_map(|l| l.strip_prefix("data: ").or_else(|| l.strip_prefix("data:"))) {
                let event: Value = serde_json::from_str(data).unwrap();
                if wanted(&event["progress"]) {
                    return;
                }
                seen.push(event["progress"].clone());
            }
        }
    }
}

/// The process's peak resident set (VmHWM), in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM in /proc/PID/status");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Issue 15's load: many browsers on one job while many jobs of one app queue. Every client gets
/// every event of its job in order and the outcome; the jobs run one at a time and all succeed;
/// the server answers a GET while loaded. `KFCTL_WEB_LOAD_CLIENTS` and `KFCTL_WEB_LOAD_JOBS`
/// change the load (scripts/bench-web runs larger ones and prints the `web-load:` line as a
/// table).
#[tokio::test(flavor = "multi_thread")]
async fn many_clients_follow_one_job_while_queued_jobs_of_one_app_run_one_at_a_time() {
    let knob = |name: &str, default: usize| std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let (clients, jobs) = (knob("KFCTL_WEB_LOAD_CLIENTS", 200), knob("KFCTL_WEB_LOAD_JOBS", 20));
    let kubeconfig = testenv_kubeconfig();
    let _turn = CLUSTER.lock().await;
    let client = kfctl::cluster::connect(Some(&kubeconfig), None).await.unwrap();
    let work = tempfile::tempdir().unwrap();
    let state = work.path().join("state");
    let name = unique_name("web-load");
    let registry = support::registry::fixture_registry(&work.path().join("fixture"), &name);
    let server = Server::start(&state, &registry);
    let http = server.client();

    // Every job deploys the same app: they queue behind each other.
    let form = form(&name, &kubeconfig);
    let started = futures::future::join_all((0..jobs).map(|_| server.post("/api/jobs", &form))).await;
    let mut ids = Vec::new();
    for response in started {
        assert_eq!(response.status(), reqwest::StatusCode::ACCEPTED);
        ids.push(json_of(response).await["id"].as_str().unwrap().to_string());
    }
    let watched = ids[0].clone();
    let followers = futures::future::join_all(
        (0..clients).map(|_| follow_to_end(&http, &server, &watched)).chain(ids[1..].iter().map(|id| follow_to_end(&http, &server, id))),
    );
    // Meanwhile the server answers other requests.
    let probe = async {
        let mut worst = Duration::ZERO;
        let mut answered = 0;
        for _ in 0..20 {
            let asked = Instant::now();
            let response = tokio::time::timeout(Duration::from_secs(30), server.get("/api/jobs")).await.expect("GET /api/jobs answers while loaded");
            assert_eq!(response.status(), 200);
            worst = worst.max(asked.elapsed());
            answered += 1;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        (answered, worst)
    };
    let (followed, (answered, worst_get)) = tokio::join!(followers, probe);
    let peak_kib = peak_rss_kib(server.child.id());

    // The reference: each job's whole log, replayed afresh now that it has ended.
    let mut events_total = 0;
    let mut latencies: Vec<f64> = Vec::new();
    let mut reconnects = 0;
    for (i, view) in followed.iter().enumerate() {
        let id = if i < clients { &watched } else { &ids[i - clients + 1] };
        let seqs: Vec<u64> = view.events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
        assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "client {i} of job {id}: every event once, in order");
        let last = &view.events.last().unwrap()["progress"];
        assert_eq!(last["ok"], true, "job {id} failed: {}", last["summary"]);
        events_total += view.events.len();
        latencies.extend(&view.latencies_ms);
        reconnects += view.reconnects;
    }
    let reference = follow_to_end(&http, &server, &watched).await.events;
    for view in &followed[..clients] {
        assert_eq!(view.events, reference, "a client's view of job {watched} is its log");
    }
    for id in &ids {
        assert_eq!(json_of(server.get(&format!("/api/jobs/{id}")).await).await["state"], "succeeded", "job {id}");
    }

    // One at a time: each job's own work (from its first step to its outcome) starts after the
    // one before it ended; all but the first said they were queued.
    let mut spans = Vec::new();
    let mut queued = 0;
    for id in &ids {
        let log = follow_to_end(&http, &server, id).await.events;
        queued += usize::from(log.iter().any(|e| e["progress"]["text"].as_str().is_some_and(|t| t.starts_with("Queued:"))));
        let time = |e: &Value| e["time"].as_str().unwrap().parse::<jiff::Timestamp>().unwrap();
        let first = log.iter().find(|e| e["progress"]["text"].as_str().is_some_and(|t| t.starts_with("Deploying "))).expect("the job's first step");
        spans.push((time(first), time(log.last().unwrap())));
    }
    spans.sort();
    for pair in spans.windows(2) {
        assert!(pair[1].0 >= pair[0].1, "two jobs of one app overlapped: {pair:?}");
    }
    assert_eq!(queued, jobs - 1, "every job but the first waited its turn");

    latencies.sort_by(f64::total_cmp);
    let (p50, p99) = (percentile(&latencies, 0.5), percentile(&latencies, 0.99));
    println!(
        "web-load: clients={clients} jobs={jobs} events={events_total} reconnects={reconnects} peak_rss_kib={peak_kib} p50_ms={p50:.1} p99_ms={p99:.1} get_answered={answered} get_max_ms={}",
        worst_get.as_millis()
    );
    // A bound far above what it takes (see scripts/bench-web for the figures), to catch a leak
    // per client or per event, not to time anything.
    assert!(peak_kib < 1024 * 1024, "kfctl serve peaked at {peak_kib} KiB");

    cleanup(&client, &job_app_dir(&state, &ids[0])).await;
}

/// Ctrl-C or SIGTERM to `kfctl serve`: it stops accepting, the running job stops writing and is
/// recorded `interrupted`, the server exits 143; restarted, the job is resumed through the API
/// and converges.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_the_server_marks_its_running_job_interrupted_and_resume_converges() {
    let kubeconfig = testenv_kubeconfig();
    let _turn = CLUSTER.lock().await;
    let client = kfctl::cluster::connect(Some(&kubeconfig), None).await.unwrap();
    let work = tempfile::tempdir().unwrap();
    let state = work.path().join("state");
    let name = unique_name("web-term");
    let registry = support::registry::fixture_registry(&work.path().join("fixture"), &name);
    let mut command = Server::command(&state, Some(&registry), None);
    command.stderr(Stdio::piped());
    let mut server = Server::spawn(command);
    let id = json_of(server.post("/api/jobs", &form(&name, &kubeconfig)).await).await["id"].as_str().unwrap().to_string();
    wait_for_event(&server, &id, |p| p["type"] == "object_applied").await;
    Command::new("kill").args(["-TERM", &server.child.id().to_string()]).status().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "kfctl serve did not stop within 30s of SIGTERM");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut said = String::new();
    server.child.stderr.take().unwrap().read_to_string(&mut said).unwrap();
    assert_eq!(status.code(), Some(143), "{said}");
    assert!(said.contains("stopped by SIGTERM; 1 running job(s) marked interrupted"), "{said}");
    // Persisted: the record on disk says so before any restart.
    let record: Value = serde_json::from_str(&std::fs::read_to_string(state.join("jobs").join(&id).join("job.json")).unwrap()).unwrap();
    assert_eq!(record["state"], "interrupted", "{record:#}");
    assert!(record["summary"].as_str().unwrap().contains("SIGTERM"), "{record:#}");
    drop(server);

    let server = Server::start(&state, &registry);
    assert_eq!(json_of(server.get(&format!("/api/jobs/{id}")).await).await["state"], "interrupted");
    let resumed = server.post(&format!("/api/jobs/{id}/resume"), &json!({})).await;
    assert_eq!(resumed.status(), reqwest::StatusCode::ACCEPTED);
    let again = server.post(&format!("/api/jobs/{id}/resume"), &json!({})).await;
    assert_eq!(again.status(), reqwest::StatusCode::CONFLICT, "a running job is not resumed twice");
    let log = follow_to_end(&server.client(), &server, &id).await.events;
    let outcomes: Vec<&Value> = log.iter().filter(|e| e["last"] == true).map(|e| &e["progress"]).collect();
    assert_eq!(outcomes.len(), 2, "the interruption's outcome, then the resumed run's: {outcomes:#?}");
    assert_eq!(outcomes[1]["ok"], true, "{}", outcomes[1]["summary"]);
    assert_eq!(json_of(server.get(&format!("/api/jobs/{id}")).await).await["state"], "succeeded");
    assert_login_set(&client, &name, &format!("{name}@example.com")).await;
    cleanup(&client, &job_app_dir(&state, &id)).await;
}

/// `kfctl serve` killed (SIGKILL) mid-job and started again on the same state directory: the job
/// is shown interrupted, in the API and on its page, and the page's Resume button runs it again
/// to Ready (after the killed server's lock of the app expires).
#[tokio::test(flavor = "multi_thread")]
async fn a_job_cut_off_by_sigkill_is_shown_interrupted_and_resumed_from_its_page() {
    let kubeconfig = testenv_kubeconfig();
    let _turn = CLUSTER.lock().await;
    let client = kfctl::cluster::connect(Some(&kubeconfig), None).await.unwrap();
    let work = tempfile::tempdir().unwrap();
    let state = work.path().join("state");
    let name = unique_name("web-kill");
    let registry = support::registry::fixture_registry(&work.path().join("fixture"), &name);
    let serve = || {
        let mut command = Server::command(&state, Some(&registry), None);
        command.env(kfctl::lock::LEASE_SECONDS_ENV, "3");
        Server::spawn(command)
    };
    let server = serve();
    let id = json_of(server.post("/api/jobs", &form(&name, &kubeconfig)).await).await["id"].as_str().unwrap().to_string();
    wait_for_event(&server, &id, |p| p["type"] == "object_applied").await;
    drop(server); // SIGKILL

    let server = serve();
    let record = json_of(server.get(&format!("/api/jobs/{id}")).await).await;
    assert_eq!(record["state"], "interrupted", "{record:#}");
    let shots = support::artifacts_dir();
    let downloads = work.path().join("downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    let browser = Browser::start(&downloads).await;
    browser.goto(&format!("{}/?token={}#/job/{id}", server.base, server.token)).await;
    browser.wait_until("return document.querySelector('#job-state').textContent === 'interrupted'", Duration::from_secs(20), "the job shown interrupted").await;
    let resume = browser.wait_for("#resume-job", Duration::from_secs(10)).await;
    assert!(browser.is_displayed(&resume).await, "the Resume button is shown");
    browser.screenshot(&shots.join("resume-1-interrupted.png")).await;
    browser.click(&resume).await;
    browser.wait_until(
        "const s = document.querySelector('#job-state').textContent; return s === 'succeeded' || s === 'failed'",
        LIMIT,
        "the resumed job finished",
    )
    .await;
    browser.screenshot(&shots.join("resume-2-done.png")).await;
    let log = browser.text(&browser.find("#job-log").await).await;
    assert_eq!(browser.text(&browser.find("#job-state").await).await, "succeeded", "log:\n{log}");
    assert!(log.contains("Interrupted: the server stopped during the job") && log.contains("Resuming the deployment"), "{log}");
    assert!(!browser.is_displayed(&browser.find("#resume-job").await).await, "no Resume button once it succeeded");
    assert_eq!(json_of(server.get(&format!("/api/jobs/{id}")).await).await["state"], "succeeded");
    assert_login_set(&client, &name, &format!("{name}@example.com")).await;
    cleanup(&client, &job_app_dir(&state, &id)).await;
}
