//! `kill -9` of `kfctl apply` and `kfctl delete --purge` of the whole v1.4.1 base set (the real
//! archive, with the sim-cluster overlay) at points spread over its object count: after every
//! kill the next run finishes, nothing kfctl created is left unrecorded (the inventory equals the
//! objects that carry the app's label), and delete removes everything.
//!
//! In CI (the default) the kills form one chain: each killed apply resumes where the last one
//! stopped, killed again further on, then one apply finishes and is checked; then the same for
//! delete. `scripts/fault-sweep` sets `KFCTL_FAULT_SWEEP=N`: N apply kill points, each from an
//! empty cluster, each followed by the full check (finishing apply, inventory == labels, delete
//! clean), and prints a table.
//!
//! Run inside the testenv: `scripts/testenv exec -- cargo test -p kfctl --offline --test faults_kill`.
//! It uses the cluster's real `kubeflow` namespaces, like kubeflow_deploy (cargo runs test
//! binaries one at a time).

mod support;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Instant;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Client;
use kube::api::{Api, ApiResource, GroupVersionKind};
use serde_json::Value;
use support::kubeflow::{APP, APP_LABEL, APP_NAMESPACE, INVENTORY, Kfctl, labelled, summary, tail, wait_namespaces_gone, wait_terminating_namespaces_gone};

/// Apply and delete kill points of the CI chain.
const CHAIN_APPLY_KILLS: usize = 4;
const CHAIN_DELETE_KILLS: usize = 2;

/// The base set, initialised and cleared, with what the checks need.
struct BaseSet {
    kfctl: Kfctl,
    client: Client,
    /// (group, version, kind) of every object the app renders.
    gvks: BTreeSet<(String, String, String)>,
    /// How many rendered objects carry the app's label (the inventory's size after an apply).
    owned: usize,
    namespaces: Vec<String>,
    _work: tempfile::TempDir,
}

async fn base_set() -> BaseSet {
    let env = support::env().await;
    let client = env.client().await.expect("client");
    let work = tempfile::tempdir().expect("tempdir");
    let kfctl = Kfctl { kubeconfig: env.kubeconfig.clone(), app: work.path().join(APP) };
    let app = kfctl.app().to_owned();
    let archive = support::release_archive("v1.4.1");
    let cache = tempfile::tempdir().expect("cache");
    let out = support::kfctl_command(&env.kubeconfig)
        .args(["init", &app, "--version", "v1.4.1", "--registry", archive.to_str().unwrap()])
        .env("KFCTL_CACHE_DIR", cache.path())
        .output()
        .expect("run kfctl init");
    assert!(out.status.success(), "kfctl init failed:\n{}", String::from_utf8_lossy(&out.stderr));
    support::sim_cluster::add(&kfctl.app, "v1.4.1");
    let rendered: Value = serde_json::from_str(&kfctl.ok(&["apply", &app, "--dry-run"])).expect("--dry-run prints a v1 List");
    let items: Vec<&Value> = rendered["items"].as_array().expect("items").iter().filter(|o| o["metadata"]["labels"][APP_LABEL] == APP).collect();
    let gvks = items
        .iter()
        .map(|o| {
            let api_version = o["apiVersion"].as_str().unwrap();
            let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
            (group.to_owned(), version.to_owned(), o["kind"].as_str().unwrap().to_owned())
        })
        .collect();
    let namespaces = items.iter().filter(|o| o["kind"] == "Namespace").map(|o| o["metadata"]["name"].as_str().unwrap().to_owned()).collect();
    let base = BaseSet { kfctl, client, gvks, owned: items.len(), namespaces, _work: work };
    // Leftovers of an interrupted earlier run would make the first apply a re-run. A `kubeflow`
    // namespace another test made (it holds apps' locks) is not this app's: it stays, and the
    // first apply adopts it.
    base.kfctl.ok(&["delete", &app, "--purge"]);
    wait_terminating_namespaces_gone(&base.client, &base.namespaces).await;
    base
}

/// What one kill point found.
struct Point {
    /// Objects the killed run had written (apply: created; delete: deleted) when it was killed.
    written: usize,
    /// Whether the kill landed while kfctl was still running.
    killed: bool,
    /// Labelled objects the inventory did not list right after the kill (a later run records
    /// them from the label scan).
    unrecorded_at_kill: usize,
}

impl BaseSet {
    fn app(&self) -> String {
        self.kfctl.app().to_owned()
    }

    /// `kfctl ARGS APP --output json`, killed with SIGKILL once it has reported `stop_at` objects
    /// that `counts` counts.
    fn killed(&self, args: &[&str], stop_at: usize, counts: fn(&Value) -> bool) -> (usize, bool) {
        let mut child = support::kfctl_command(&self.kfctl.kubeconfig)
            .args(args)
            .arg(self.app())
            .args(["--output", "json"])
            // The killed run's lock expires quickly, so the next run takes it over.
            .env("KFCTL_LOCK_LEASE_SECONDS", "3")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn kfctl");
        let mut seen = 0;
        let mut killed = false;
        for line in BufReader::new(child.stdout.take().unwrap()).lines().map_while(Result::ok) {
            let Ok(v) = serde_json::from_str::<Value>(&line) else { continue };
            if counts(&v) {
                seen += 1;
                if seen >= stop_at {
                    killed = child.kill().is_ok();
                    break;
                }
            }
        }
        let status = child.wait().expect("wait for kfctl");
        (seen, killed && status.code().is_none())
    }

    /// The kinds the app renders that the server serves now (a kind whose CRD is not there has
    /// no objects).
    async fn served(&self) -> Vec<ApiResource> {
        let mut out = Vec::new();
        for (g, v, k) in &self.gvks {
            if let Ok((ar, _)) = kube::discovery::pinned_kind(&self.client, &GroupVersionKind::gvk(g, v, k)).await {
                out.push(ar);
            }
        }
        out
    }

    /// Every object carrying the app's label, as `Kind.group namespace/name`.
    async fn labelled(&self) -> BTreeSet<String> {
        labelled(&self.client, &self.served().await).await.into_keys().collect()
    }

    /// The inventory's entries in the same form (empty without an inventory).
    async fn recorded(&self) -> BTreeSet<String> {
        let cms: Api<ConfigMap> = Api::namespaced(self.client.clone(), APP_NAMESPACE);
        let Ok(Some(cm)) = cms.get_opt(INVENTORY).await else { return BTreeSet::new() };
        let entries: Vec<kfctl::plan::InventoryEntry> = serde_json::from_str(&cm.data.unwrap_or_default()["objects.json"]).expect("inventory entries");
        entries
            .iter()
            .map(|e| {
                let r = &e.reference;
                format!("{}.{} {}/{}", r.kind, r.group, r.namespace.clone().unwrap_or_default(), r.name)
            })
            .collect()
    }

    /// `kfctl apply` killed once `target` objects of the app exist in all (it creates the rest).
    async fn apply_killed_at(&self, target: usize) -> Point {
        let before = self.labelled().await.len();
        let (written, killed) = if target > before {
            self.killed(&["apply"], target - before, |v| v["type"] == "object_applied" && v["outcome"] == "created")
        } else {
            (0, false)
        };
        let (labelled, recorded) = (self.labelled().await, self.recorded().await);
        Point { written, killed, unrecorded_at_kill: labelled.difference(&recorded).count() }
    }

    /// `kfctl delete --purge` killed after it deleted `stop_at` objects.
    async fn delete_killed_at(&self, stop_at: usize) -> Point {
        let (written, killed) = self.killed(&["delete", "--purge"], stop_at, |v| {
            v["type"] == "message" && v["text"].as_str().is_some_and(|t| t.starts_with("deleted "))
        });
        let (labelled, recorded) = (self.labelled().await, self.recorded().await);
        Point { written, killed, unrecorded_at_kill: labelled.difference(&recorded).count() }
    }

    /// A full apply: it succeeds, every rendered object is there, and the inventory is exactly
    /// the labelled objects. Returns (converged, orphans, inventory == labels).
    async fn apply_converges(&self, trace: &str) -> (bool, usize, bool) {
        let app = self.app();
        let (ok, out) = self.kfctl.run(&["apply", &app]);
        let failed = if ok { summary(&out).get("failed").copied().unwrap_or(0) } else { usize::MAX };
        let (labelled, recorded) = (self.labelled().await, self.recorded().await);
        let orphans = labelled.difference(&recorded).count();
        let equal = labelled == recorded;
        let converged = ok && failed == 0 && labelled.len() == self.owned;
        assert!(converged, "{trace}: the apply after the kill did not converge ({} of {} objects):\n{}", labelled.len(), self.owned, tail(&out, 40));
        assert!(
            equal,
            "{trace}: inventory != labelled objects; unrecorded: {:?}; recorded but absent: {:?}",
            labelled.difference(&recorded).collect::<Vec<_>>(),
            recorded.difference(&labelled).collect::<Vec<_>>()
        );
        (converged, orphans, equal)
    }

    /// `kfctl delete --purge` finishes and leaves nothing of the app.
    async fn delete_cleans(&self, trace: &str) -> bool {
        let app = self.app();
        let out = self.kfctl.ok(&["delete", &app, "--purge"]);
        wait_namespaces_gone(&self.client, &self.namespaces).await;
        let left = self.labelled().await;
        assert!(left.is_empty(), "{trace}: delete --purge left {left:?}:\n{}", tail(&out, 20));
        left.is_empty()
    }
}

/// Kill points spread evenly over (0, total): the i-th of n at total * i / (n + 1).
fn spread(total: usize, n: usize) -> Vec<usize> {
    (1..=n).map(|i| (total * i / (n + 1)).max(1)).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_of_apply_and_delete_of_the_base_set_at_any_point_converges() {
    let base = base_set().await;
    let started = Instant::now();
    match std::env::var("KFCTL_FAULT_SWEEP").ok().and_then(|n| n.parse::<usize>().ok()) {
        Some(n) => sweep(&base, n).await,
        None => chain(&base).await,
    }
    eprintln!("faults_kill: {:.0}s for {} objects", started.elapsed().as_secs_f64(), base.owned);
}

/// CI: one chain of killed applies, one finishing apply, one chain of killed deletes, one
/// finishing delete.
async fn chain(base: &BaseSet) {
    for (i, target) in spread(base.owned, CHAIN_APPLY_KILLS).into_iter().enumerate() {
        let p = base.apply_killed_at(target).await;
        eprintln!("apply kill {i}: at {target} objects, {} written by the killed run, killed mid-run: {}, unrecorded right after: {}", p.written, p.killed, p.unrecorded_at_kill);
        assert!(p.killed, "apply kill {i}: the run ended before {target} objects existed");
    }
    base.apply_converges("after the chain of killed applies").await;
    for (i, stop_at) in spread(base.owned, CHAIN_DELETE_KILLS + 1).into_iter().take(CHAIN_DELETE_KILLS).enumerate() {
        // Each resumed delete has fewer objects left: kill it after a share of what remains.
        let stop_at = (stop_at / (i + 1)).max(1);
        let p = base.delete_killed_at(stop_at).await;
        eprintln!("delete kill {i}: after {} deletes, killed mid-run: {}, unrecorded right after: {}", p.written, p.killed, p.unrecorded_at_kill);
        assert!(p.killed, "delete kill {i}: the run ended before {stop_at} deletes");
    }
    base.delete_cleans("after the chain of killed deletes").await;
}

/// scripts/fault-sweep: `n` independent apply kill points, each with the full check, and one
/// killed delete per point; prints a table.
async fn sweep(base: &BaseSet, n: usize) {
    let mut rows = vec![
        "| point | objects written before the kill | killed mid-run | unrecorded right after the kill | next apply converged | orphans after it | inventory == labels | delete killed after | next delete clean | seconds |".to_owned(),
        "|---|---|---|---|---|---|---|---|---|---|".to_owned(),
    ];
    for (i, target) in spread(base.owned, n).into_iter().enumerate() {
        let t = Instant::now();
        let trace = format!("point {i} ({target} objects)");
        let p = base.apply_killed_at(target).await;
        let (converged, orphans, equal) = base.apply_converges(&trace).await;
        // A killed delete too, after a share of the objects that varies with the point.
        let d = base.delete_killed_at(1 + target / 2).await;
        let clean = base.delete_cleans(&trace).await;
        let row = format!(
            "| {i} | {} | {} | {} | {converged} | {orphans} | {equal} | {} ({}) | {clean} | {:.0} |",
            p.written,
            p.killed,
            p.unrecorded_at_kill,
            d.written,
            if d.killed { "killed" } else { "had finished" },
            t.elapsed().as_secs_f64()
        );
        eprintln!("{row}");
        rows.push(row);
    }
    println!("{}", rows.join("\n"));
    let table = support::artifacts_dir().join("fault-sweep.md");
    std::fs::write(&table, rows.join("\n") + "\n").expect("write the table");
    eprintln!("table: {}", table.display());
}
