//! kfctl's webhook gate against a real admission webhook behind a real Service.
//!
//! The app carries a webhook server (Deployment + Service), a ValidatingWebhookConfiguration for
//! it, ConfigMaps the webhook intercepts and objects it does not. simnode keeps the server's pod
//! running but not Ready (a `NotReady` fault rule) so its Endpoints have no ready address; this
//! test process serves the webhook on the pod's IP and then lifts the rule, so the endpoints become
//! ready through the real path (simnode marks the pod Ready, the endpoints controller lists it).
//!
//! Run inside the testenv: `scripts/testenv exec -- cargo test -p kfctl --test webhook_gate`.

mod support;

use std::io::{BufRead as _, BufReader};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use kube::Api;
use kube::api::ListParams;
use serde_json::json;
use support::webhook::{AdmissionWebhook, DENY_LABEL, Policy};
use support::{AppDir, TEST_NAMESPACE_LABEL, TestNamespace, wait_for, wait_until};

/// Generous bound that only turns a hang into a readable failure.
const LIMIT: Duration = Duration::from_secs(180);
const SERVER: &str = "webhook-server";
const SERVICE: &str = "webhook";
const PORT: u16 = 8443;
const WEBHOOK: &str = "gate.kfctl.test";
/// Objects carrying this label are intercepted (the webhook's objectSelector).
const GATED_LABEL: &str = "kfctl-test/gated";
const GATED: [&str; 2] = ["gated-1", "gated-2"];

/// The app: webhook server, its configuration, two intercepted ConfigMaps, and two objects the
/// webhook does not intercept (a ConfigMap without the label, a Secret its rules do not name).
/// `denied` names an intercepted ConfigMap that also carries [`DENY_LABEL`].
fn write_app(ns: &TestNamespace, webhook: &AdmissionWebhook, denied: Option<&str>) -> (AppDir, String) {
    let app = AppDir::new(&ns.name);
    let n = &ns.name;
    let config_name = format!("{n}-gate");
    app.component("hook-server", &webhook_server(n, SERVER, SERVICE));
    app.component("hooks", &[json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": config_name},
        "webhooks": [{
            "name": WEBHOOK,
            "admissionReviewVersions": ["v1"], "sideEffects": "None", "failurePolicy": "Fail", "timeoutSeconds": 10,
            "clientConfig": {"caBundle": webhook.ca_bundle_base64(),
                             "service": {"namespace": n, "name": SERVICE, "path": "/validate", "port": 443}},
            // Scoped to this test's namespace and labelled objects, so parallel tests are untouched.
            "namespaceSelector": {"matchLabels": {TEST_NAMESPACE_LABEL: n}},
            "objectSelector": {"matchLabels": {GATED_LABEL: "yes"}},
            "rules": [{"operations": ["CREATE", "UPDATE"], "apiGroups": [""], "apiVersions": ["v1"],
                       "resources": ["configmaps"], "scope": "Namespaced"}]
        }]
    })]);
    let config_map = |name: &str, gated: bool| {
        let mut labels = if gated { json!({GATED_LABEL: "yes"}) } else { json!({}) };
        if denied == Some(name) {
            labels[DENY_LABEL] = json!("yes");
        }
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": n, "labels": labels},
               "data": {"k": "v"}})
    };
    app.component("settings", &[
        config_map(GATED[0], true),
        config_map(GATED[1], true),
        config_map("plain", false),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "unrelated", "namespace": n},
               "stringData": {"k": "v"}}),
    ]);
    app.config(&["hook-server", "hooks", "settings"]);
    ns.delete_on_drop::<ValidatingWebhookConfiguration>(&config_name);
    (app, config_name)
}

/// A webhook server: Deployment `deployment` (pods labelled `app=<deployment>`) behind Service
/// `service` on port 443.
fn webhook_server(namespace: &str, deployment: &str, service: &str) -> Vec<serde_json::Value> {
    vec![
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": deployment, "namespace": namespace},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": deployment}},
                "template": {"metadata": {"labels": {"app": deployment}},
                    "spec": {"containers": [{"name": "server", "image": "registry.invalid/kfctl-test/webhook:1",
                        "ports": [{"containerPort": PORT}]}]}}}}),
        // No port protocol: kfctl defaults it as the API server would (1.20 SSA needs it).
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": service, "namespace": namespace},
            "spec": {"selector": {"app": deployment}, "ports": [{"port": 443, "targetPort": PORT}]}}),
    ]
}

/// A running `kfctl apply` whose stderr (its progress lines) is collected as it comes.
struct RunningKfctl {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl RunningKfctl {
    fn start(ns: &TestNamespace, app: &AppDir, extra: &[&str]) -> RunningKfctl {
        let mut child = ns
            .kfctl()
            .arg("apply")
            .arg(app.path())
            .args(["--app-namespace", &ns.name])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting kfctl apply");
        let stderr = child.stderr.take().expect("stderr piped");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().expect("lines").push(line);
            }
        });
        RunningKfctl { child, lines, reader: Some(reader) }
    }

    fn child_running(&mut self) -> bool {
        self.child.try_wait().expect("kfctl status").is_none()
    }

    fn output(&self) -> String {
        self.lines.lock().expect("lines").join("\n")
    }

    /// Waits for kfctl to exit; returns whether it succeeded and everything it printed.
    async fn finish(mut self) -> (bool, String) {
        let status = wait_for("kfctl apply to exit", LIMIT, || {
            let status = self.child.try_wait().expect("kfctl status");
            async move { status }
        })
        .await;
        self.reader.take().expect("reader").join().expect("reader thread");
        (status.success(), self.output())
    }
}

impl Drop for RunningKfctl {
    fn drop(&mut self) {
        // A test that failed half-way does not leave kfctl running.
        if self.reader.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The IP of the webhook server's pod, once simnode started it (Running, not yet Ready).
async fn server_pod_ip(ns: &TestNamespace) -> Ipv4Addr {
    pod_ip_of(ns, SERVER).await
}

/// The IP of the pod labelled `app=<app>`, once simnode started it (Running, not yet Ready).
async fn pod_ip_of(ns: &TestNamespace, app: &str) -> Ipv4Addr {
    let pods: Api<Pod> = ns.api();
    wait_for("the webhook server's pod to have an IP", LIMIT, || async {
        let list = pods.list(&ListParams::default().labels(&format!("app={app}"))).await.unwrap();
        let status = list.items.into_iter().next()?.status?;
        (status.phase.as_deref() == Some("Running")).then_some(())?;
        status.pod_ip?.parse().ok()
    })
    .await
}

fn config_maps_present(names: &[&str], live: &[ConfigMap]) -> Vec<String> {
    live.iter()
        .filter_map(|c| c.metadata.name.clone())
        .filter(|n| names.contains(&n.as_str()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_waits_for_ready_webhook_endpoints_then_applies_what_it_intercepts_in_one_pass() {
    let ns = TestNamespace::new("gate-late").await;
    // The server's pod runs but is not Ready until the test says so.
    ns.fail_pods(SERVER, "NotReady").await;
    let webhook = AdmissionWebhook::new(SERVICE, &ns.name, Policy::AdmitAll);
    let (app, config_name) = write_app(&ns, &webhook, None);

    let kfctl = RunningKfctl::start(&ns, &app, &[]);
    let pod_ip = server_pod_ip(&ns).await;
    let waiting_line = format!("waiting for Service {}/{SERVICE} to have ready endpoints (webhook {WEBHOOK})", ns.name);
    wait_until("kfctl to wait for the webhook's Service", LIMIT, || {
        let waiting = kfctl.output().contains(&waiting_line);
        async move { waiting }
    })
    .await;

    // kfctl is at the gate: the server objects are applied, the configuration and everything the
    // webhook intercepts are not.
    assert!(ns.api::<Deployment>().get_opt(SERVER).await.unwrap().is_some());
    assert!(ns.api::<Service>().get_opt(SERVICE).await.unwrap().is_some());
    let vwcs: Api<ValidatingWebhookConfiguration> = Api::all(ns.client.clone());
    assert!(vwcs.get_opt(&config_name).await.unwrap().is_none(), "the configuration went in before its server was ready");
    let cms: Api<ConfigMap> = ns.api();
    let early = config_maps_present(&GATED, &cms.list(&ListParams::default()).await.unwrap().items);
    assert!(early.is_empty(), "intercepted objects applied before the webhook's Service had ready endpoints: {early:?}");

    // Serve on the pod's IP, then let simnode mark the pod Ready: the endpoints controller lists it.
    webhook.serve(SocketAddr::from((pod_ip, PORT))).await;
    ns.clear_pod_failures().await;

    let (ok, out) = kfctl.finish().await;
    assert!(ok, "kfctl apply failed:\n{out}");
    assert!(out.contains(", 0 failed, 0 pruned") && !out.contains("held back"), "{out}");
    // One pass: no object needed a retry that ended in failure, nothing was held back.
    for name in GATED {
        let line = format!("created ConfigMap {}/{name} [settings]", ns.name);
        let (gate, created) = (out.find(&waiting_line).unwrap(), out.find(&line).unwrap_or_else(|| panic!("{line:?} not in:\n{out}")));
        assert!(gate < created, "{name} applied before kfctl waited for the webhook:\n{out}");
        assert!(cms.get_opt(name).await.unwrap().is_some());
    }

    // The API server sent every intercepted object through the webhook: they were applied while
    // the configuration was registered and its server reachable.
    let seen = webhook.received();
    for name in GATED {
        assert!(
            seen.iter().any(|r| r.name == name && r.kind == "ConfigMap" && r.operation == "CREATE" && !r.dry_run && r.allowed),
            "the webhook never saw the create of {name}: {seen:?}"
        );
    }
    // What the rules do not match was applied without the webhook, as kfctl planned it.
    assert!(seen.iter().all(|r| GATED.contains(&r.name.as_str())), "the webhook saw objects it does not intercept: {seen:?}");
    assert!(cms.get_opt("plain").await.unwrap().is_some());
    assert!(ns.api::<Secret>().get_opt("unrelated").await.unwrap().is_some());

    // Nothing changed: a second apply writes nothing and passes the gate without waiting on it.
    let again = ns.kfctl().arg("apply").arg(app.path()).args(["--app-namespace", &ns.name]).output().unwrap();
    let text = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success() && text.contains("nothing to change"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_holds_back_what_an_unready_webhook_intercepts_and_names_it() {
    let ns = TestNamespace::new("gate-never").await;
    // The pod never becomes Ready. The server even answers on its IP: what counts is the
    // Service's ready endpoints, which the API server needs to reach it.
    ns.fail_pods(SERVER, "NotReady").await;
    let webhook = AdmissionWebhook::new(SERVICE, &ns.name, Policy::AdmitAll);
    let (app, config_name) = write_app(&ns, &webhook, None);

    let kfctl = RunningKfctl::start(&ns, &app, &["--gate-timeout", "15s"]);
    let pod_ip = server_pod_ip(&ns).await;
    webhook.serve(SocketAddr::from((pod_ip, PORT))).await;
    let (ok, out) = kfctl.finish().await;
    assert!(!ok, "kfctl apply succeeded though the webhook never became ready:\n{out}");

    // One clear message naming the webhook, its Service and every object not applied.
    let errors: Vec<&str> = out.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{out}");
    let error = &out[out.find("error:").unwrap()..];
    println!("{error}"); // shown with --nocapture: the message a user gets
    assert!(
        error.contains(&format!("webhook {WEBHOOK} (ValidatingWebhookConfiguration.admissionregistration.k8s.io {config_name}) is not serving"))
            && error.contains(&format!("Service {}/{SERVICE} has no ready endpoints after 15s", ns.name)),
        "{error}"
    );
    for object in [
        format!("ValidatingWebhookConfiguration.admissionregistration.k8s.io {config_name} [hooks]"),
        format!("ConfigMap {}/{} [settings]", ns.name, GATED[0]),
        format!("ConfigMap {}/{} [settings]", ns.name, GATED[1]),
    ] {
        assert!(error.contains(&format!("  - {object}")), "{object} not named in:\n{error}");
    }
    assert!(error.contains("3 held back") && error.contains("hint:"), "{error}");
    for not_named in ["plain", "unrelated"] {
        assert!(!error.contains(&format!("/{not_named} ")), "{not_named} named as held back:\n{error}");
    }

    // Nothing the webhook intercepts was applied, nor its configuration...
    let cms: Api<ConfigMap> = ns.api();
    let live = cms.list(&ListParams::default()).await.unwrap().items;
    assert!(config_maps_present(&GATED, &live).is_empty(), "intercepted objects were applied: {live:?}");
    let vwcs: Api<ValidatingWebhookConfiguration> = Api::all(ns.client.clone());
    assert!(vwcs.get_opt(&config_name).await.unwrap().is_none(), "the unready webhook was registered");
    assert!(webhook.received().is_empty(), "{:?}", webhook.received());
    // ...and what it does not intercept was not held back.
    assert!(cms.get_opt("plain").await.unwrap().is_some(), "{out}");
    assert!(ns.api::<Secret>().get_opt("unrelated").await.unwrap().is_some(), "{out}");
    assert!(ns.api::<Deployment>().get_opt(SERVER).await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_denial_by_the_ready_webhook_is_reported_with_its_reason_and_not_retried_away() {
    let ns = TestNamespace::new("gate-deny").await;
    ns.fail_pods(SERVER, "NotReady").await;
    let webhook = AdmissionWebhook::new(SERVICE, &ns.name, Policy::DenyLabelled(DENY_LABEL.into()));
    let (app, _) = write_app(&ns, &webhook, Some(GATED[1]));

    let kfctl = RunningKfctl::start(&ns, &app, &[]);
    let pod_ip = server_pod_ip(&ns).await;
    webhook.serve(SocketAddr::from((pod_ip, PORT))).await;
    ns.clear_pod_failures().await;
    let (ok, out) = kfctl.finish().await;
    assert!(!ok, "kfctl apply succeeded though the webhook denied {}:\n{out}", GATED[1]);

    // One error, naming the denied object and carrying the webhook's own reason.
    assert_eq!(out.lines().filter(|l| l.starts_with("error:")).count(), 1, "{out}");
    let error = &out[out.find("error:").unwrap()..];
    assert!(
        error.contains(&format!("ConfigMap {}/{} [settings]", ns.name, GATED[1]))
            && error.contains(&format!("admission webhook \"{WEBHOOK}\" denied the request"))
            && error.contains(&format!("it carries the {DENY_LABEL} label")),
        "{error}"
    );
    assert!(!error.contains("held back") && error.contains("1 failed"), "{error}");
    // A denial is final: the webhook was asked once, not until the retries ran out.
    let denials = webhook.received().into_iter().filter(|r| r.name == GATED[1] && !r.allowed).count();
    assert_eq!(denials, 1, "{:?}", webhook.received());
    // The other intercepted object went through the webhook and was applied.
    let cms: Api<ConfigMap> = ns.api();
    assert!(cms.get_opt(GATED[0]).await.unwrap().is_some());
    assert!(cms.get_opt(GATED[1]).await.unwrap().is_none());
}

/// Two webhooks, each with its own server: what only the ready one intercepts goes in as soon as
/// its server is ready (checked by it), while the other's configuration and what it intercepts are
/// held back and named.
#[tokio::test(flavor = "multi_thread")]
async fn each_webhook_gates_only_what_it_intercepts() {
    let ns = TestNamespace::new("gate-two").await;
    let n = ns.name.clone();
    ns.fail_pods("hook-a", "NotReady").await;
    ns.fail_pods("hook-b", "NotReady").await;
    let ready = AdmissionWebhook::new("hook-a", &n, Policy::AdmitAll);
    let never = AdmissionWebhook::new("hook-b", &n, Policy::AdmitAll);
    let app = AppDir::new(&n);
    // Webhook `<name>.kfctl.test` checks ConfigMaps labelled `kfctl-test/gated: <name>`.
    let configuration = |name: &str, webhook: &AdmissionWebhook| {
        ns.delete_on_drop::<ValidatingWebhookConfiguration>(&format!("{n}-{name}"));
        json!({
            "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": format!("{n}-{name}")},
            "webhooks": [{
                "name": format!("{name}.kfctl.test"),
                "admissionReviewVersions": ["v1"], "sideEffects": "None", "failurePolicy": "Fail", "timeoutSeconds": 10,
                "clientConfig": {"caBundle": webhook.ca_bundle_base64(),
                                 "service": {"namespace": n, "name": name, "path": "/validate", "port": 443}},
                "namespaceSelector": {"matchLabels": {TEST_NAMESPACE_LABEL: n}},
                "objectSelector": {"matchLabels": {GATED_LABEL: name}},
                "rules": [{"operations": ["CREATE", "UPDATE"], "apiGroups": [""], "apiVersions": ["v1"],
                           "resources": ["configmaps"], "scope": "Namespaced"}]
            }]
        })
    };
    let gated = |name: &str, by: &str| {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": n, "labels": {GATED_LABEL: by}},
               "data": {"k": "v"}})
    };
    app.component("servers", &[webhook_server(&n, "hook-a", "hook-a"), webhook_server(&n, "hook-b", "hook-b")].concat());
    app.component("hooks", &[configuration("hook-a", &ready), configuration("hook-b", &never)]);
    app.component("settings", &[gated("checked-by-a", "hook-a"), gated("checked-by-b", "hook-b")]);
    app.config(&["servers", "hooks", "settings"]);

    let mut kfctl = RunningKfctl::start(&ns, &app, &["--gate-timeout", "20s"]);
    let pod_ip = pod_ip_of(&ns, "hook-a").await;
    ready.serve(SocketAddr::from((pod_ip, PORT))).await;
    ns.clear_pod_failure("hook-a").await;
    // What webhook a checks goes in while kfctl still waits for b's server.
    let cms: Api<ConfigMap> = ns.api();
    wait_until("the object only the ready webhook checks to be applied", LIMIT, || async {
        cms.get_opt("checked-by-a").await.unwrap().is_some()
    })
    .await;
    assert!(kfctl.child_running(), "kfctl finished before the other webhook's gate timed out:\n{}", kfctl.output());
    let seen = ready.received();
    assert!(
        seen.iter().any(|r| r.name == "checked-by-a" && r.operation == "CREATE" && !r.dry_run && r.allowed),
        "the ready webhook did not check what it intercepts: {seen:?}"
    );

    let (ok, out) = kfctl.finish().await;
    assert!(!ok, "kfctl apply succeeded though webhook b never became ready:\n{out}");
    let error = &out[out.find("error:").expect("an error")..];
    assert!(error.contains(&format!("webhook hook-b.kfctl.test (ValidatingWebhookConfiguration.admissionregistration.k8s.io {n}-hook-b) is not serving")), "{error}");
    assert!(error.contains(&format!("  - ConfigMap {n}/checked-by-b [settings]")) && error.contains("2 held back"), "{error}");
    assert!(!error.contains("hook-a.kfctl.test") && !error.contains("checked-by-a"), "the ready webhook's objects named:\n{error}");
    assert!(cms.get_opt("checked-by-b").await.unwrap().is_none(), "what the unready webhook intercepts was applied");
    let vwcs: Api<ValidatingWebhookConfiguration> = Api::all(ns.client.clone());
    assert!(vwcs.get_opt(&format!("{n}-hook-a")).await.unwrap().is_some());
    assert!(vwcs.get_opt(&format!("{n}-hook-b")).await.unwrap().is_none(), "the unready webhook was registered");
    assert!(never.received().is_empty(), "{:?}", never.received());
}
