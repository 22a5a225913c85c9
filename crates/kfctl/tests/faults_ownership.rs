//! kfctl owns exactly what carries its app label, whatever came before: every order of `apply`,
//! `delete`, `delete --purge` and a `kill -9` in the middle of an apply ends as desired.
//!
//! Run inside the testenv: `scripts/testenv exec -- cargo test -p kfctl --offline --test faults_ownership`.

mod support;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, PostParams};
use kube::Client;
use serde_json::{Value, json};

/// One step of a sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Apply,
    Delete,
    Purge,
    /// `kfctl apply`, killed with SIGKILL once it has written this many objects.
    Kill(usize),
}

/// An object by `Kind namespace/name`, as the checks compare them.
type Key = String;

/// ConfigMaps that only make the app's apply take long enough to be killed mid-run.
const FILLERS: usize = 16;

struct Fixture {
    /// Test prefix: the app is named after it.
    ns: String,
    app: support::AppDir,
    client: Client,
    kubeconfig: std::path::PathBuf,
}

impl Fixture {
    fn app_ns(&self) -> String {
        format!("{}-app", self.ns)
    }
    fn data_ns(&self) -> String {
        format!("{}-data", self.ns)
    }
    /// Made by the test, with an object of its own in it; kfctl's app also applies it.
    fn shared_ns(&self) -> String {
        format!("{}-shared", self.ns)
    }
    fn group(&self) -> String {
        format!("{}.kfctl.test", self.ns)
    }

    fn write_app(&self) {
        let (app, data, shared, group) = (self.app_ns(), self.data_ns(), self.shared_ns(), self.group());
        let namespace = |name: &str| json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
        let config_map = |ns: &str, name: &str| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns}, "data": {"k": "v"}});
        self.app.component("namespaces", &[namespace(&app), namespace(&data), namespace(&shared)]);
        self.app.component("widgets", &[
            json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                "metadata": {"name": format!("widgets.{group}")},
                "spec": {"group": group, "scope": "Namespaced",
                    "names": {"kind": "Widget", "plural": "widgets", "singular": "widget", "listKind": "WidgetList"},
                    "versions": [{"name": "v1", "served": true, "storage": true,
                        "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}}),
            json!({"apiVersion": format!("{group}/v1"), "kind": "Widget", "metadata": {"name": "w1", "namespace": app}, "spec": {"size": 3}}),
        ]);
        self.app.component("data", &[
            json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "claim", "namespace": data},
                   "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}),
            config_map(&data, "data-settings"),
        ]);
        self.app.component("web", &[
            config_map(&app, "web-settings"),
            config_map(&shared, "web-shared-settings"),
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": app},
                   "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}}),
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": app},
                "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                    "template": {"metadata": {"labels": {"app": "web"}},
                        "spec": {"containers": [{"name": "main", "image": "registry.invalid/kfctl-test:1"}]}}}}),
        ]);
        // Writes enough after the kill points (at most 5) that the run is still going when the
        // signal reaches it.
        let fillers: Vec<Value> = (0..FILLERS).map(|i| config_map(&app, &format!("filler-{i}"))).collect();
        self.app.component("fillers", &fillers);
        self.app.config(&["namespaces", "widgets", "data", "web", "fillers"]);
    }

    fn kfctl(&self, args: &[&str]) -> Command {
        let mut cmd = support::kfctl_command(&self.kubeconfig);
        cmd.args(args).arg(self.app.path()).args(["--app-namespace", &self.app_ns()]);
        // A killed apply leaves its lock: the next step takes it over once it expires.
        cmd.env("KFCTL_LOCK_LEASE_SECONDS", "3");
        cmd
    }

    fn run(&self, args: &[&str]) -> String {
        let out = self.kfctl(args).output().expect("run kfctl");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "kfctl {args:?} failed:\n{text}");
        text
    }

    /// `kfctl apply --output json`, killed with SIGKILL after `writes` objects were created or
    /// configured. Returns how many it had written, and whether it was still running.
    fn apply_killed(&self, writes: usize) -> (usize, bool) {
        // One write at a time: with the default 16 the few writes of this small app finish in one
        // burst, and a kill sent on the Nth line often found the run already over (CI saw it).
        let mut child = self
            .kfctl(&["apply", "--output", "json", "--concurrency", "1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn kfctl");
        let stdout = child.stdout.take().unwrap();
        let mut written = 0;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let Ok(v) = serde_json::from_str::<Value>(&line) else { continue };
            if v["type"] == "object_applied" && (v["outcome"] == "created" || v["outcome"] == "configured") {
                written += 1;
                if written >= writes {
                    let _ = child.kill();
                    break;
                }
            }
        }
        let status = child.wait().expect("wait for kfctl");
        // Ended by the signal, or it finished on its own before the kill reached it (an exit
        // code). Not `try_wait` right after the kill: a process the signal already ended looks
        // like one that had finished (CI counted two of four mid-run kills as finished that way).
        (written, status.code().is_none())
    }

    fn dynamic(&self, group: &str, version: &str, kind: &str, plural: &str) -> Api<DynamicObject> {
        let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
        Api::all_with(self.client.clone(), &ar)
    }

    /// Every object of the kinds the app uses that carries its label (and is not being deleted),
    /// as `Kind namespace/name`: listed by the test itself, not by kfctl's scan.
    async fn labelled(&self) -> BTreeSet<Key> {
        let lp = ListParams::default().labels(&format!("kfctl.kubeflow.org/app={}", self.ns));
        let group = self.group();
        let mut kinds = vec![
            ("", "v1", "Namespace", "namespaces"),
            ("", "v1", "ConfigMap", "configmaps"),
            ("", "v1", "Service", "services"),
            ("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims"),
            ("apps", "v1", "Deployment", "deployments"),
            ("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions"),
            ("app.k8s.io", "v1beta1", "Application", "applications"),
        ];
        kinds.push((group.as_str(), "v1", "Widget", "widgets"));
        let mut out = BTreeSet::new();
        for (g, v, k, p) in kinds {
            let items = match self.dynamic(g, v, k, p).list(&lp).await {
                Ok(list) => list.items,
                // The kind is not served (its CRD is gone): none are left.
                Err(kube::Error::Api(s)) if s.code == 404 => Vec::new(),
                Err(e) => panic!("list {k}: {e}"),
            };
            for o in items.into_iter().filter(|o| o.metadata.deletion_timestamp.is_none()) {
                out.insert(key(k, o.metadata.namespace.as_deref(), &o.metadata.name.unwrap_or_default()));
            }
        }
        out
    }

    /// Everything a full apply leaves.
    fn desired(&self) -> BTreeSet<Key> {
        let (app, data, shared) = (self.app_ns(), self.data_ns(), self.shared_ns());
        [
            key("Namespace", None, &app),
            key("Namespace", None, &data),
            key("Namespace", None, &shared),
            key("CustomResourceDefinition", None, &format!("widgets.{}", self.group())),
            key("Widget", Some(&app), "w1"),
            key("PersistentVolumeClaim", Some(&data), "claim"),
            key("ConfigMap", Some(&data), "data-settings"),
            key("ConfigMap", Some(&app), "web-settings"),
            key("ConfigMap", Some(&shared), "web-shared-settings"),
            key("Service", Some(&app), "web"),
            key("Deployment", Some(&app), "web"),
            key("Application", Some(&app), &self.ns),
        ]
        .into_iter()
        .chain((0..FILLERS).map(|i| key("ConfigMap", Some(&app), &format!("filler-{i}"))))
        .collect()
    }

    /// What a plain delete keeps: the CRD, the claim and its namespace, and the namespace that
    /// holds the test's own object.
    fn kept_by_delete(&self) -> BTreeSet<Key> {
        [
            key("Namespace", None, &self.data_ns()),
            key("Namespace", None, &self.shared_ns()),
            key("CustomResourceDefinition", None, &format!("widgets.{}", self.group())),
            key("PersistentVolumeClaim", Some(&self.data_ns()), "claim"),
        ]
        .into_iter()
        .collect()
    }

    /// The inventory's entries as `Kind namespace/name` (empty when there is none).
    async fn inventory(&self) -> Option<BTreeSet<Key>> {
        let cms: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.app_ns());
        let cm = cms.get_opt(&format!("kfctl-inventory-{}", self.ns)).await.ok().flatten()?;
        let text = cm.data.as_ref()?.get("objects.json")?.clone();
        let entries: Vec<Value> = serde_json::from_str(&text).expect("inventory JSON");
        Some(
            entries
                .iter()
                .map(|e| key(e["kind"].as_str().unwrap(), e["namespace"].as_str(), e["name"].as_str().unwrap()))
                .collect(),
        )
    }

    /// The test's own object, which kfctl must never touch.
    async fn foreign_object_is_there(&self) -> bool {
        let cms: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.shared_ns());
        cms.get_opt("not-kfctls").await.unwrap().is_some()
    }

    /// Run `step` and check the state it must end in.
    async fn step(&self, step: Step, trace: &str) -> String {
        let before = self.labelled().await;
        match step {
            Step::Apply => {
                self.run(&["apply"]);
                assert_eq!(self.labelled().await, self.desired(), "{trace}: after apply, the labelled objects are not the desired ones");
                assert_eq!(
                    self.inventory().await.unwrap_or_default(),
                    self.labelled().await,
                    "{trace}: after apply, the inventory is not the labelled objects"
                );
            }
            Step::Delete => {
                self.run(&["delete"]);
                // What was there (a killed apply makes part of it) less all but what delete keeps.
                let mut kept: BTreeSet<Key> = before.intersection(&self.kept_by_delete()).cloned().collect();
                // The data namespace is kept for its claim: without one (a kill before it), it goes.
                if !kept.contains(&key("PersistentVolumeClaim", Some(&self.data_ns()), "claim")) {
                    kept.remove(&key("Namespace", None, &self.data_ns()));
                }
                let left = self.settled().await;
                assert_eq!(left, kept, "{trace}: after delete, of {before:?}");
            }
            Step::Purge => {
                self.run(&["delete", "--purge"]);
                let left = self.settled().await;
                assert!(left.is_empty(), "{trace}: delete --purge left objects of the app: {left:?}");
                // Nor the app namespace (the lock, which lives there, recreates it for the run).
                let namespaces: Api<Namespace> = Api::all(self.client.clone());
                support::wait_until("the app namespace to go after purge", Duration::from_secs(60), || async {
                    namespaces.get_opt(&self.app_ns()).await.unwrap().is_none()
                })
                .await;
            }
            Step::Kill(writes) => {
                let (written, killed) = self.apply_killed(writes);
                assert!(self.foreign_object_is_there().await, "{trace}: the test's own object is gone");
                // Status reports on everything the app owns, recorded or not (but the Application,
                // which is the result).
                let mut labelled = self.labelled().await;
                labelled.retain(|k| !k.starts_with("Application "));
                if !labelled.is_empty() {
                    let out = self.kfctl(&["status", "--output", "json"]).output().unwrap();
                    let status: Value = serde_json::from_slice(&out.stdout)
                        .unwrap_or_else(|e| panic!("{trace}: kfctl status: {e}\n{}", String::from_utf8_lossy(&out.stderr)));
                    let reported: BTreeSet<Key> = status["components"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .flat_map(|c| c["objects"].as_array().unwrap())
                        .map(|o| &o["reference"])
                        .map(|r| key(r["kind"].as_str().unwrap(), r["namespace"].as_str(), r["name"].as_str().unwrap()))
                        .collect();
                    let missing: Vec<&Key> = labelled.difference(&reported).collect();
                    assert!(missing.is_empty(), "{trace}: kfctl status after the kill does not report {missing:?}");
                }
                return format!("kill after {written} writes ({})", if killed { "killed mid-run" } else { "had finished" });
            }
        }
        assert!(self.foreign_object_is_there().await, "{trace}: the test's own object is gone");
        format!("{step:?} ok")
    }

    /// The labelled objects once nothing is terminating any more.
    async fn settled(&self) -> BTreeSet<Key> {
        support::wait_until("the app's namespaces to finish terminating", Duration::from_secs(120), || async { self.terminating().await == 0 })
            .await;
        self.labelled().await
    }

    /// Namespaces of the app still terminating.
    async fn terminating(&self) -> usize {
        let api: Api<Namespace> = Api::all(self.client.clone());
        let mut n = 0;
        for ns in [self.app_ns(), self.data_ns(), self.shared_ns()] {
            if api.get_opt(&ns).await.unwrap().is_some_and(|n| n.metadata.deletion_timestamp.is_some()) {
                n += 1;
            }
        }
        n
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let names = [self.app_ns(), self.data_ns(), self.shared_ns()];
        let crd = format!("widgets.{}", self.group());
        let kubeconfig = self.kubeconfig.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let client = support::TestEnv { kubeconfig }.client().await.unwrap();
                for ns in names {
                    let _ = Api::<Namespace>::all(client.clone()).delete(&ns, &DeleteParams::background()).await;
                }
                let crds = ApiResource::from_gvk_with_plural(
                    &GroupVersionKind::gvk("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
                    "customresourcedefinitions",
                );
                let _ = Api::<DynamicObject>::all_with(client, &crds).delete(&crd, &DeleteParams::background()).await;
            });
        })
        .join()
        .unwrap();
    }
}

fn key(kind: &str, namespace: Option<&str>, name: &str) -> Key {
    match namespace {
        Some(ns) => format!("{kind} {ns}/{name}"),
        None => format!("{kind} {name}"),
    }
}

/// A walk through every ordered pair of steps (apply, delete, purge, kill -9 mid-apply): each
/// step starts from what the one before left. The kills land at different object counts.
#[tokio::test(flavor = "multi_thread")]
async fn every_order_of_apply_delete_purge_and_kill_ends_exactly_as_desired() {
    let env = support::env().await;
    let client = env.client().await.unwrap();
    let ns = format!("own-{}", std::process::id());
    let fx = Fixture { app: support::AppDir::new(&ns), ns, client, kubeconfig: env.kubeconfig.clone() };
    fx.write_app();
    // The shared namespace exists before kfctl, holding an object that is not kfctl's.
    let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": fx.shared_ns()}})).unwrap();
    Api::<Namespace>::all(fx.client.clone()).create(&PostParams::default(), &namespace).await.expect("create namespace");
    let foreign: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "not-kfctls", "namespace": fx.shared_ns()}, "data": {"k": "v"}})).unwrap();
    Api::<ConfigMap>::namespaced(fx.client.clone(), &fx.shared_ns()).create(&PostParams::default(), &foreign).await.unwrap();

    // An Eulerian circuit of the complete graph on {A, D, P, K} with loops: all 16 ordered pairs
    // (a kill right after a full apply finds nothing to write; the kill after it does).
    use Step::*;
    // Kill points below the writes each of those applies has to do (about 9 after a delete, 13
    // from nothing), so every kill but the one after a full apply (nothing to write) lands mid-run.
    let mut kills = [1usize, 3, 5, 2].into_iter().cycle();
    let walk: Vec<Step> = "AADDPPKKAKPAPDKDA"
        .chars()
        .map(|c| match c {
            'A' => Apply,
            'D' => Delete,
            'P' => Purge,
            _ => Kill(kills.next().unwrap()),
        })
        .collect();
    let mut trace = Vec::new();
    let mut killed_mid_run = 0;
    for step in walk {
        let label = format!("{:?}", trace.iter().map(|(s, _): &(Step, String)| *s).chain([step]).collect::<Vec<_>>());
        let said = fx.step(step, &label).await;
        if said.contains("killed mid-run") {
            killed_mid_run += 1;
        }
        eprintln!("{step:?}: {said}");
        trace.push((step, said));
    }
    assert!(killed_mid_run >= 3, "too few kills landed mid-run to test anything: {trace:?}");
    // Finally: after a kill, a purge leaves nothing; the test's own object and namespace stay.
    fx.step(Purge, "purge before the final kill").await;
    fx.step(Kill(4), "final kill").await;
    fx.step(Purge, "final purge").await;
    assert!(Api::<Namespace>::all(fx.client.clone()).get_opt(&fx.shared_ns()).await.unwrap().is_some());
}
