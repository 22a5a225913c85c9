//! Ctrl-C and SIGTERM to a running `kfctl apply` (the real binary, real signals): no new writes,
//! the inventory records what the run may have created, the exit code is 130 or 143, and the
//! next apply finishes the job.
//!
//! Run inside the testenv: `scripts/testenv exec -- cargo test -p kfctl --offline --test faults_interrupt`.

mod support;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::ListParams;
use serde_json::{Value, json};
use support::{AppDir, TestNamespace};

const OBJECTS: usize = 120;

async fn interrupted_apply_exits_with_the_signals_code_and_the_next_apply_finishes(signal: &str, code: i32) {
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
    let mut stderr = child.stderr.take().unwrap();
    let err_reader = std::thread::spawn(move || {
        let mut text = String::new();
        stderr.read_to_string(&mut text).unwrap();
        text
    });
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
    let said = err_reader.join().unwrap();
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
