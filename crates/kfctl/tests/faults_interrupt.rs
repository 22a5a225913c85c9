//! Ctrl-C and SIGTERM to a running `kfctl apply`, `kfctl delete` and `kfctl deploy` (the real
//! binary, real signals): no new writes, the inventory records what the run may have created or
//! not deleted, the exit code is 130 or 143, and the next run finishes the job. A second Ctrl-C
//! exits at once, even with a request hanging on a stopped API server.
//!
//! Run inside the testenv: `scripts/testenv exec -- cargo test -p kfctl --offline --test faults_interrupt`.

mod support;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::ListParams;
use serde_json::{Value, json};
use support::{AppDir, TestNamespace};

const OBJECTS: usize = 120;

/// Tests take this shared; the one that stops the API server for a moment takes it alone.
static API_SERVER: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

async fn interrupted_apply_exits_with_the_signals_code_and_the_next_apply_finishes(signal: &str, code: i32) {
    let _shared = API_SERVER.read().await;
    let ns = TestNamespace::new(&format!("sig{}", signal.to_lowercase())).await;
    let app = AppDir::new(&ns.name);
    let objects: Vec<Value> = (0..OBJECTS)
        .map(|i| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("cm-{i:03}"), "namespace": ns.name}, "data": {"i": i.to_string()}}))
        .collect();
    app.component("many", &objects);
    app.config(&["many"]);
    let apply = |extra: &[&str]| {
        let mut cmd = ns.kfctl();
        cmd.arg("apply").arg(app.path()).args(["--app-namespace", &ns.name]).args(extra);
        cmd
    };
    // One write at a time, so that most are still to start when the signal comes.
    let mut child = apply(&["--output", "json", "--concurrency", "1"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let stderr = support::Collected::of(child.stderr.take().unwrap());
    let mut created = 0;
    let mut signalled = false;
    for line in BufReader::new(child.stdout.take().unwrap()).lines().map_while(Result::ok) {
        if line.contains("\"object_applied\"") && line.contains("\"created\"") {
            created += 1;
            if created == 5 && !signalled {
                let sent = Command::new("kill").args([&format!("-{signal}"), &child.id().to_string()]).status().unwrap();
                assert!(sent.success());
                signalled = true;
            }
        }
    }
    let status = child.wait().unwrap();
    let said = stderr.all();
    assert!(signalled, "the apply ended before 5 writes:\n{said}");
    assert_eq!(status.code(), Some(code), "exit status {status:?}:\n{said}");
    let name = if signal == "INT" { "SIGINT (Ctrl-C)" } else { "SIGTERM" };
    assert!(said.contains(&format!("interrupted by {name}:")), "{said}");
    assert!(said.contains("not started (") && said.contains(&format!("hint: run `kfctl apply {}` to finish", app.path().display())), "{said}");

    // It stopped: not every object was written; the inventory lists every one (written before
    // the first object, so that whatever was made is found and can be removed).
    let cms = ns.api::<ConfigMap>();
    let selector = format!("kfctl.kubeflow.org/app={}", ns.name);
    let made: BTreeSet<String> =
        cms.list(&ListParams::default().labels(&selector)).await.unwrap().items.into_iter().filter_map(|c| c.metadata.name).collect();
    assert!(made.len() < OBJECTS, "all {OBJECTS} objects were written after the signal:\n{said}");
    let inventory = cms.get(&format!("kfctl-inventory-{}", ns.name)).await.unwrap();
    let entries: Vec<Value> = serde_json::from_str(&inventory.data.unwrap()["objects.json"]).unwrap();
    let recorded: BTreeSet<String> = entries.iter().filter(|e| e["kind"] == "ConfigMap").map(|e| e["name"].as_str().unwrap().to_owned()).collect();
    assert!(made.is_subset(&recorded), "objects made but not recorded: {:?}", made.difference(&recorded).collect::<Vec<_>>());

    eprintln!("kfctl said, interrupted by {name}:\n{said}");

    // The next apply finishes.
    let out = apply(&[]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let made = cms.list(&ListParams::default().labels(&selector)).await.unwrap().items.len();
    assert_eq!(made, OBJECTS);
}

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_stops_new_writes_exits_130_and_the_next_apply_finishes() {
    interrupted_apply_exits_with_the_signals_code_and_the_next_apply_finishes("INT", 130).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_new_writes_exits_143_and_the_next_apply_finishes() {
    interrupted_apply_exits_with_the_signals_code_and_the_next_apply_finishes("TERM", 143).await;
}

/// Sends `signal` (`INT`, `TERM`, `STOP`, `CONT`) to process `pid`.
fn send(signal: &str, pid: u32) {
    let sent = Command::new("kill").args([&format!("-{signal}"), &pid.to_string()]).status().unwrap();
    assert!(sent.success(), "kill -{signal} {pid}");
}

/// Waits (bounded) until `child` exits.
fn wait_exit(child: &mut std::process::Child, limit: std::time::Duration) -> Option<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    None
}

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_stops_a_delete_waiting_for_a_group_and_the_next_delete_finishes() {
    let _shared = API_SERVER.read().await;
    let ns = TestNamespace::new("sigdelete").await;
    let app = AppDir::new(&ns.name);
    // The ConfigMaps are deleted first and hold a finalizer, so the delete waits for them; the
    // ClusterRole (an earlier phase) is deleted after they are gone.
    let role = format!("{}-reader", ns.name);
    ns.delete_on_drop::<k8s_openapi::api::rbac::v1::ClusterRole>(&role);
    let mut objects: Vec<Value> = (0..3)
        .map(|i| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("held-{i}"), "namespace": ns.name, "finalizers": ["kfctl.test/hold"]}}))
        .collect();
    objects.push(support::fixture_release::cluster_role(&role, &["get"]));
    app.component("held", &objects);
    app.config(&["held"]);
    let kfctl = |command: &str| {
        let mut cmd = ns.kfctl();
        cmd.arg(command).arg(app.path()).args(["--app-namespace", &ns.name]);
        cmd
    };
    let out = kfctl("apply").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let mut child = kfctl("delete").stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let stderr = support::Collected::of(child.stderr.take().unwrap());
    let cms = ns.api::<ConfigMap>();
    support::wait_until("the held ConfigMaps to be terminating", std::time::Duration::from_secs(60), || async {
        cms.get_opt("held-0").await.unwrap().is_some_and(|c| c.metadata.deletion_timestamp.is_some())
    })
    .await;
    assert!(child.try_wait().unwrap().is_none(), "the delete did not wait for the terminating ConfigMaps:\n{}", stderr.all());
    send("INT", child.id());
    let status = wait_exit(&mut child, std::time::Duration::from_secs(30)).expect("the delete stops after Ctrl-C");
    let said = stderr.all();
    eprintln!("kfctl delete said, interrupted:\n{said}");
    assert_eq!(status.code(), Some(130), "{said}");
    // The first group: the Application (custom resources go first) and the three ConfigMaps.
    assert!(said.contains("interrupted by SIGINT (Ctrl-C): 4 object(s) deleted, 1 not deleted (1 not started"), "{said}");
    assert!(said.contains("not started (") && said.contains(&role), "the ClusterRole was not started and is named:\n{said}");
    assert!(said.contains(&format!("hint: run `kfctl delete {}` again to finish", app.path().display())), "{said}");

    // Nothing after the signal: the ClusterRole is still there, and the inventory lists it.
    let roles = kube::Api::<k8s_openapi::api::rbac::v1::ClusterRole>::all(ns.client.clone());
    assert!(roles.get_opt(&role).await.unwrap().is_some(), "the ClusterRole was deleted after the signal");
    let inventory = cms.get(&format!("kfctl-inventory-{}", ns.name)).await.unwrap();
    let entries: Vec<Value> = serde_json::from_str(&inventory.data.unwrap()["objects.json"]).unwrap();
    assert!(entries.iter().any(|e| e["kind"] == "ClusterRole" && e["name"] == role.as_str()), "{entries:?}");

    // Released, the ConfigMaps go; the next delete removes the rest.
    for i in 0..3 {
        let patch = json!({"metadata": {"finalizers": null}});
        cms.patch(&format!("held-{i}"), &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch)).await.unwrap();
    }
    let out = kfctl("delete").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(roles.get_opt(&role).await.unwrap().is_none());
    let selector = format!("kfctl.kubeflow.org/app={}", ns.name);
    assert!(cms.list(&ListParams::default().labels(&selector)).await.unwrap().items.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_a_deploy_waiting_for_readiness_exits_143_and_the_next_deploy_finishes() {
    let _shared = API_SERVER.read().await;
    let ns = TestNamespace::new("sigdeploy").await;
    let app = AppDir::new(&ns.name);
    let web = support::fixture_release::deployment(&ns.name, "web", json!({"app": "web"}), "nginx:1.25");
    app.component("web", &[web]);
    app.config(&["web"]);
    // Its pod never gets ready until the rule is cleared: the deploy waits.
    ns.fail_pods("web", "NotReady").await;
    let deploy = || {
        let mut cmd = ns.kfctl();
        cmd.arg("deploy").arg(app.path()).args(["--platform", "existing", "--timeout", "5m"]);
        cmd
    };
    let mut child = deploy().args(["--output", "json"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let stderr = support::Collected::of(child.stderr.take().unwrap());
    let mut signalled = false;
    for line in BufReader::new(child.stdout.take().unwrap()).lines().map_while(Result::ok) {
        if !signalled && line.contains("\"component_status\"") {
            send("TERM", child.id());
            signalled = true;
        }
    }
    let status = wait_exit(&mut child, std::time::Duration::from_secs(30)).expect("the deploy stops after SIGTERM");
    let said = stderr.all();
    eprintln!("kfctl deploy said, interrupted:\n{said}");
    assert!(signalled, "the deploy never reported readiness:\n{said}");
    assert_eq!(status.code(), Some(143), "{said}");
    assert!(said.contains("interrupted by SIGTERM while waiting until every component is ready; everything was applied"), "{said}");
    assert!(said.contains(&format!("hint: `kfctl wait {}` goes on waiting", app.path().display())), "{said}");

    ns.clear_pod_failures().await;
    let out = deploy().output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.contains("Kubeflow is ready"), "{text}");
    let out = ns.kfctl().arg("delete").arg(app.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// The testenv's kube-apiserver process (see scripts/testenv: STATE/run/NAME.pid).
fn api_server_pid() -> u32 {
    let name = std::env::var("KFCTL_TESTENV_NAME").expect("running inside scripts/testenv exec");
    let state = std::env::var("KFCTL_TESTENV_STATE").unwrap_or_else(|_| format!("/var/lib/{name}"));
    let path = format!("{state}/run/kube-apiserver.pid");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}")).trim().parse().unwrap()
}

/// Resumes the stopped API server however the test ends.
struct Stopped(u32);

impl Drop for Stopped {
    fn drop(&mut self) {
        send("CONT", self.0);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_ctrl_c_exits_at_once_while_a_request_hangs() {
    let _alone = API_SERVER.write().await;
    let ns = TestNamespace::new("sigtwice").await;
    let app = AppDir::new(&ns.name);
    let objects: Vec<Value> = (0..40)
        .map(|i| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("cm-{i:03}"), "namespace": ns.name}}))
        .collect();
    app.component("many", &objects);
    app.config(&["many"]);
    // Exited at once, it leaves its lock to expire: a short Lease keeps the next apply's wait short.
    let apply = || {
        let mut cmd = ns.kfctl();
        cmd.arg("apply").arg(app.path()).args(["--app-namespace", &ns.name]).env(kfctl::lock::LEASE_SECONDS_ENV, "3");
        cmd
    };
    let mut child = apply().args(["--output", "json", "--concurrency", "1"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let stderr = support::Collected::of(child.stderr.take().unwrap());
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines().map_while(Result::ok);
    assert!(lines.any(|l| l.contains("\"object_applied\"")), "the apply wrote nothing:\n{}", stderr.all());
    // The API server stops answering: the write in flight hangs. The first Ctrl-C waits for it;
    // the second does not.
    let paused = Stopped(api_server_pid());
    send("STOP", paused.0);
    send("INT", child.id());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !stderr.seen("press Ctrl-C again") && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(700));
    assert!(child.try_wait().unwrap().is_none(), "the apply ended at the first Ctrl-C with its request hanging");
    send("INT", child.id());
    let status = wait_exit(&mut child, std::time::Duration::from_secs(3));
    drop(paused);
    let status = status.expect("a second Ctrl-C exits at once");
    drop(lines);
    let said = stderr.all();
    eprintln!("kfctl apply said, after two Ctrl-C:\n{said}");
    assert_eq!(status.code(), Some(130), "{said}");
    assert!(said.contains("SIGINT (Ctrl-C): stopping now; requests in flight may or may not have reached the cluster"), "{said}");
    assert!(said.contains(&format!("hint: run `kfctl apply {}` again", app.path().display())), "{said}");

    // The next apply takes the lock over once it expires, and finishes.
    let out = apply().output().unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("took over the lock"), "{text}");
    let selector = format!("kfctl.kubeflow.org/app={}", ns.name);
    assert_eq!(ns.api::<ConfigMap>().list(&ListParams::default().labels(&selector)).await.unwrap().items.len(), 40);
}

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_stops_a_deploy_waiting_for_the_apps_lock_and_nothing_is_written() {
    use k8s_openapi::api::coordination::v1::Lease;
    let _shared = API_SERVER.read().await;
    let ns = TestNamespace::new("siglock").await;
    let app = AppDir::new(&ns.name);
    app.component("cms", &[support::fixture_release::config_map(&ns.name, "one", json!({"a": "1"}))]);
    app.config(&["cms"]);
    // Another writer holds the app's lock (a live Lease in the app namespace, renewed now).
    let leases = kube::Api::<Lease>::namespaced(ns.client.clone(), "kubeflow");
    let name = format!("kfctl-lock-{}", ns.name);
    let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(jiff::Timestamp::now());
    let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": name, "namespace": "kubeflow", "annotations": {"kfctl.kubeflow.org/purpose": "a test holding the lock"}},
        "spec": {"holderIdentity": "someone-else", "leaseDurationSeconds": 300, "acquireTime": now, "renewTime": now}});
    let lease: Lease = serde_json::from_value(lease).unwrap();
    let namespaces = kube::Api::<k8s_openapi::api::core::v1::Namespace>::all(ns.client.clone());
    if namespaces.get_opt("kubeflow").await.unwrap().is_none() {
        let _ = namespaces.create(&Default::default(), &serde_json::from_value(json!({"metadata": {"name": "kubeflow"}})).unwrap()).await;
    }
    leases.create(&Default::default(), &lease).await.unwrap();

    let mut child = ns.kfctl().arg("deploy").arg(app.path()).args(["--platform", "existing"]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let stderr = support::Collected::of(child.stderr.take().unwrap());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !stderr.seen("waiting for the lock of app") {
        assert!(std::time::Instant::now() < deadline && child.try_wait().unwrap().is_none(), "the deploy never waited for the lock:\n{}", stderr.all());
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    send("INT", child.id());
    let status = wait_exit(&mut child, std::time::Duration::from_secs(10)).expect("the first Ctrl-C stops the wait for the lock");
    let said = stderr.all();
    let _ = leases.delete(&name, &Default::default()).await;
    assert_eq!(status.code(), Some(130), "{said}");
    assert!(said.contains("interrupted by SIGINT (Ctrl-C) before applying (it was waiting for the app's lock); nothing of it was started"), "{said}");
    let selector = format!("kfctl.kubeflow.org/app={}", ns.name);
    assert!(ns.api::<ConfigMap>().list(&ListParams::default().labels(&selector)).await.unwrap().items.is_empty(), "nothing was written");
}
