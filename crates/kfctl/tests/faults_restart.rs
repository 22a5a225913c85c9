//! The API server restarted, etcd restarted, packets to the API server dropped, all in the middle
//! of `kfctl apply` (the real binary against the testenv's real control plane): kfctl says what
//! it waits for, waits, and finishes in the same run; an outage longer than `--timeout` stops it
//! with a message saying what was applied, and the next apply converges.
//!
//! Every fault here stops the one API server all tests share, so the scenarios run one after
//! another in ONE test, and each ends with the server healthy again. cargo runs test binaries
//! one at a time, so no other test binary sees these outages.
//!
//! Run inside the testenv: `scripts/testenv exec -- cargo test -p kfctl --offline --test faults_restart`.

mod support;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::ListParams;
use serde_json::{Value, json};
use support::{AppDir, TestNamespace};

/// ConfigMaps in the app: enough that a fault sent after [`FAULT_AT`] writes lands mid-run.
const OBJECTS: usize = 60;
const FAULT_AT: usize = 20;

/// A fault, started through `scripts/testenv` while kfctl is stopped after its Nth write.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// The API server stopped, kept down this many seconds, started again.
    ApiServer(u32),
    /// etcd stopped, kept down this many seconds, started again.
    Etcd(u32),
    /// Packets to the API server's port dropped for this many seconds.
    NetLoss(u32),
}

impl Fault {
    fn script_args(self) -> Vec<String> {
        match self {
            Fault::ApiServer(s) => vec!["restart".into(), "apiserver".into(), s.to_string()],
            Fault::Etcd(s) => vec!["restart".into(), "etcd".into(), s.to_string()],
            Fault::NetLoss(s) => vec!["netloss".into(), s.to_string()],
        }
    }

    /// Whether the fault is in effect (kfctl is let go only then, so it meets the outage).
    fn in_effect(self) -> bool {
        match self {
            Fault::ApiServer(_) => !port_answers(6443, Duration::from_millis(300)),
            Fault::Etcd(_) => !port_answers(2379, Duration::from_millis(300)),
            // A dropped SYN: the connection does not complete in time.
            Fault::NetLoss(_) => !port_answers(6443, Duration::from_millis(500)),
        }
    }
}

fn port_answers(port: u16, limit: Duration) -> bool {
    TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), limit).is_ok()
}

/// Start `scripts/testenv ARGS` for the instance this test runs in (`exec` passes its name).
fn testenv(args: &[String]) -> Child {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/testenv");
    Command::new(script).args(args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("run scripts/testenv")
}

/// What one faulted apply did.
struct Run {
    code: Option<i32>,
    stderr: String,
    took: Duration,
}

/// `kfctl apply` of `app`, stopped (SIGSTOP) after `FAULT_AT` writes while `fault` starts, let go
/// once the fault is in effect. Returns when both kfctl and the fault's script have ended.
fn apply_through(ns: &TestNamespace, app: &AppDir, fault: Fault, extra: &[&str]) -> Run {
    let started = Instant::now();
    let mut cmd = ns.kfctl();
    cmd.arg("apply").arg(app.path()).args(["--app-namespace", &ns.name, "--output", "json", "--concurrency", "1"]).args(extra);
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn kfctl");
    let stderr = support::Collected::of(child.stderr.take().unwrap());
    let mut written = 0;
    let mut script = None;
    for line in BufReader::new(child.stdout.take().unwrap()).lines().map_while(Result::ok) {
        let Ok(v) = serde_json::from_str::<Value>(&line) else { continue };
        if v["type"] != "object_applied" {
            continue;
        }
        written += 1;
        if written == FAULT_AT && script.is_none() {
            let pid = child.id().to_string();
            signal("STOP", &pid);
            let mut s = testenv(&fault.script_args());
            let deadline = Instant::now() + Duration::from_secs(60);
            while !fault.in_effect() {
                if let Some(status) = s.try_wait().unwrap() {
                    signal("CONT", &pid);
                    panic!("scripts/testenv {:?} ended ({status}) before its fault was seen", fault.script_args());
                }
                assert!(Instant::now() < deadline, "{fault:?} never took effect");
                std::thread::sleep(Duration::from_millis(50));
            }
            signal("CONT", &pid);
            script = Some(s);
        }
    }
    let status = child.wait().unwrap();
    let stderr = stderr.all();
    let mut script = script.unwrap_or_else(|| panic!("the apply ended after {written} writes, before the fault at {FAULT_AT}:\n{stderr}"));
    let ended = script.wait().unwrap();
    let mut said = String::new();
    script.stderr.take().unwrap().read_to_string(&mut said).unwrap();
    assert!(ended.success(), "scripts/testenv {:?} failed:\n{said}", fault.script_args());
    Run { code: status.code(), stderr, took: started.elapsed() }
}

fn signal(name: &str, pid: &str) {
    let sent = Command::new("kill").args([&format!("-{name}"), pid]).status().unwrap();
    assert!(sent.success(), "kill -{name} {pid}");
}

/// An app of `OBJECTS` ConfigMaps in the test namespace.
fn app_of_config_maps(ns: &TestNamespace) -> AppDir {
    let app = AppDir::new(&ns.name);
    let objects: Vec<Value> = (0..OBJECTS)
        .map(|i| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("cm-{i:03}"), "namespace": ns.name}, "data": {"i": i.to_string()}}))
        .collect();
    app.component("many", &objects);
    app.config(&["many"]);
    app
}

/// Every object is there, and the inventory records exactly the objects that carry the label.
async fn assert_converged(ns: &TestNamespace, what: &str) {
    let cms = ns.api::<ConfigMap>();
    let selector = format!("kfctl.kubeflow.org/app={}", ns.name);
    let labelled: BTreeSet<String> =
        cms.list(&ListParams::default().labels(&selector)).await.unwrap().items.into_iter().filter_map(|c| c.metadata.name).collect();
    let wanted: BTreeSet<String> = (0..OBJECTS).map(|i| format!("cm-{i:03}")).collect();
    assert_eq!(labelled, wanted, "{what}: the labelled ConfigMaps are not the app's");
    let inventory = cms.get(&format!("kfctl-inventory-{}", ns.name)).await.unwrap();
    let entries: Vec<Value> = serde_json::from_str(&inventory.data.unwrap()["objects.json"]).unwrap();
    let recorded: BTreeSet<String> =
        entries.iter().filter(|e| e["kind"] == "ConfigMap").map(|e| e["name"].as_str().unwrap().to_owned()).collect();
    assert_eq!(recorded, labelled, "{what}: the inventory is not the labelled objects");
}

/// One fault the apply must wait out in the same run.
async fn waits_out(fault: Fault, label: &str) {
    let ns = TestNamespace::new(label).await;
    let app = app_of_config_maps(&ns);
    let run = apply_through(&ns, &app, fault, &["--timeout", "3m"]);
    eprintln!("{fault:?}: exit {:?} after {:.1}s; kfctl said:\n{}", run.code, run.took.as_secs_f64(), run.stderr);
    assert_eq!(run.code, Some(0), "{fault:?}: the apply did not finish in the same run:\n{}", run.stderr);
    assert!(run.stderr.contains("waiting for the API server at https://"), "{fault:?}: no waiting line:\n{}", run.stderr);
    assert!(run.stderr.contains("answers again, after"), "{fault:?}: no line saying the server is back:\n{}", run.stderr);
    assert_converged(&ns, &format!("{fault:?}")).await;
}

/// An outage longer than `--timeout` stops the apply with what it applied; the next apply converges.
async fn stops_after_timeout_then_resumes() {
    let ns = TestNamespace::new("outage-timeout").await;
    let app = app_of_config_maps(&ns);
    let run = apply_through(&ns, &app, Fault::ApiServer(9), &["--timeout", "4s"]);
    eprintln!("outage longer than --timeout: exit {:?} after {:.1}s; kfctl said:\n{}", run.code, run.took.as_secs_f64(), run.stderr);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(run.stderr.contains("waiting for the API server at https://"), "{}", run.stderr);
    assert!(run.stderr.contains("has not answered for") && run.stderr.contains("(--timeout 4s)"), "{}", run.stderr);
    // It says how far it got: at least the writes before the fault, not all of them.
    let applied: usize = run
        .stderr
        .split_once("stopped: ")
        .and_then(|(_, rest)| rest.split_once(" object(s) applied before kfctl stopped waiting"))
        .and_then(|(n, _)| n.parse().ok())
        .unwrap_or_else(|| panic!("no count of what was applied:\n{}", run.stderr));
    assert!((FAULT_AT..OBJECTS).contains(&applied), "{applied} applied:\n{}", run.stderr);
    assert!(run.stderr.contains(" not applied"), "{}", run.stderr);
    assert!(run.stderr.contains("hint: run `kfctl apply` again once the API server answers"), "{}", run.stderr);

    let out = ns.kfctl().arg("apply").arg(app.path()).args(["--app-namespace", &ns.name]).output().unwrap();
    assert!(out.status.success(), "the next apply failed:\n{}", String::from_utf8_lossy(&out.stderr));
    assert_converged(&ns, "the apply after the outage").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_waits_out_api_server_and_etcd_restarts_and_network_loss() {
    waits_out(Fault::ApiServer(3), "restart-apiserver").await;
    // The API server holds requests while etcd is gone: kfctl says so after 5 s without answer.
    waits_out(Fault::Etcd(10), "restart-etcd").await;
    waits_out(Fault::NetLoss(5), "netloss").await;
    stops_after_timeout_then_resumes().await;
}
