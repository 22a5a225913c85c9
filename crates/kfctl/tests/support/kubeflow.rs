//! Running the whole of Kubeflow in the testenv: the real kfctl against the cluster's real
//! `kubeflow` namespaces, and what the tests read back (the inventory, the labelled objects).

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kfctl::plan::InventoryEntry;
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams};

pub const APP: &str = "kubeflow";
pub const APP_NAMESPACE: &str = "kubeflow";
pub const APP_LABEL: &str = "kfctl.kubeflow.org/app";
pub const COMPONENT_LABEL: &str = "kfctl.kubeflow.org/component";
pub const INVENTORY: &str = "kfctl-inventory-kubeflow";

/// Runs the real kfctl against the testenv.
pub struct Kfctl {
    pub kubeconfig: PathBuf,
    pub app: PathBuf,
}

impl Kfctl {
    /// `kfctl ARGS...` (the app directory is added by the caller where the command takes it):
    /// (succeeded, stdout + stderr).
    pub fn run(&self, args: &[&str]) -> (bool, String) {
        let out = super::kfctl_command(&self.kubeconfig).args(args).output().expect("run kfctl");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.success(), text)
    }

    #[track_caller]
    pub fn ok(&self, args: &[&str]) -> String {
        let (ok, text) = self.run(args);
        assert!(ok, "kfctl {args:?} failed:\n{}", tail(&text, 60));
        text
    }

    pub fn app(&self) -> &str {
        self.app.to_str().expect("utf-8 path")
    }
}

/// Whatever happens, leave no Kubeflow behind for the test binaries that run after this one.
impl Drop for Kfctl {
    fn drop(&mut self) {
        if self.app.join("kfctl.yaml").is_file() {
            let app = self.app().to_owned();
            let _ = self.run(&["delete", &app, "--purge"]);
        }
    }
}

pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// `done: N created, ...` of an apply: the numbers by word.
pub fn summary(output: &str) -> BTreeMap<String, usize> {
    let line = output.lines().rev().find(|l| l.starts_with("done:")).unwrap_or_else(|| panic!("no summary line in:\n{}", tail(output, 30)));
    let mut words = BTreeMap::new();
    for part in line.trim_start_matches("done:").trim_start_matches(" nothing to change:").split(',') {
        let mut it = part.split_whitespace();
        if let (Some(n), Some(word)) = (it.next(), it.next())
            && let Ok(n) = n.parse()
        {
            words.insert(word.to_owned(), n);
        }
    }
    words
}

pub async fn inventory(client: &Client) -> Vec<InventoryEntry> {
    let cm = Api::<ConfigMap>::namespaced(client.clone(), APP_NAMESPACE).get(INVENTORY).await.expect("kfctl's inventory ConfigMap");
    serde_json::from_str(&cm.data.expect("inventory data")["objects.json"]).expect("inventory entries")
}

/// One live object kfctl labelled as the app's.
#[derive(Debug, Clone, PartialEq)]
pub struct Live {
    pub resource_version: String,
    pub component: String,
    /// An aggregated ClusterRole: its rules (and so its resourceVersion) belong to a controller.
    pub aggregated: bool,
    /// kfctl's own server-side-apply entry in managedFields (fields and time), as JSON: it
    /// changes exactly when kfctl writes the object.
    pub kfctl_entry: String,
    /// Whether anyone but kfctl (a controller writing status) has written the object.
    pub other_writers: bool,
}

/// The API resources of the kinds the app applied, resolved once (while their CRDs exist).
pub async fn kinds_of(client: &Client, entries: &[InventoryEntry]) -> Vec<ApiResource> {
    let gvks: BTreeSet<(String, String, String)> =
        entries.iter().map(|e| (e.reference.group.clone(), e.reference.version.clone(), e.reference.kind.clone())).collect();
    let mut out = Vec::new();
    for (g, v, k) in gvks {
        let (ar, _) = kube::discovery::pinned_kind(client, &GroupVersionKind::gvk(&g, &v, &k))
            .await
            .unwrap_or_else(|e| panic!("discovery of {g}/{v} {k}: {e}"));
        out.push(ar);
    }
    out
}

/// Every object of `kinds` carrying the app label, by `Kind.group ns/name`.
pub async fn labelled(client: &Client, kinds: &[ApiResource]) -> BTreeMap<String, Live> {
    let lp = ListParams::default().labels(&format!("{APP_LABEL}={APP}"));
    let mut out = BTreeMap::new();
    for ar in kinds {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), ar);
        let items = match api.list(&lp).await {
            Ok(list) => list.items,
            // The kind went away with its CRD (delete --purge): none of its objects are left.
            Err(kube::Error::Api(s)) if s.code == 404 => continue,
            Err(e) => panic!("listing {}: {e}", ar.plural),
        };
        for o in items {
            let m = &o.metadata;
            let key = format!("{}.{} {}/{}", ar.kind, ar.group, m.namespace.clone().unwrap_or_default(), m.name.clone().unwrap_or_default());
            let component = m.labels.as_ref().and_then(|l| l.get(COMPONENT_LABEL)).cloned().unwrap_or_default();
            let aggregated = ar.kind == "ClusterRole" && o.data.get("aggregationRule").is_some_and(|r| !r.is_null());
            let entries = m.managed_fields.clone().unwrap_or_default();
            let kfctl_entry = entries.iter().find(|e| e.manager.as_deref() == Some("kfctl") && e.operation.as_deref() == Some("Apply"));
            let kfctl_entry = serde_json::to_string(&kfctl_entry).unwrap_or_default();
            let other_writers = entries.iter().any(|e| !e.manager.as_deref().is_some_and(|m| m.starts_with("kfctl")));
            let resource_version = m.resource_version.clone().unwrap_or_default();
            out.insert(key, Live { resource_version, component, aggregated, kfctl_entry, other_writers });
        }
    }
    out
}

/// The Kubeflow namespaces kfctl creates, from the rendered set.
pub fn namespaces(entries: &[InventoryEntry]) -> Vec<String> {
    entries.iter().filter(|e| e.reference.group.is_empty() && e.reference.kind == "Namespace").map(|e| e.reference.name.clone()).collect()
}

/// Before a first apply: wait for those of `names` that are being deleted (an earlier run's
/// leftovers) to be gone. One that exists and is not being deleted belongs to someone else (the
/// app namespace `kubeflow` holds other tests' locks) and stays; the apply adopts it.
pub async fn wait_terminating_namespaces_gone(client: &Client, names: &[String]) {
    let api: Api<Namespace> = Api::all(client.clone());
    for name in names {
        super::wait_until(&format!("namespace {name} to be gone or not terminating"), Duration::from_secs(300), || async {
            match api.get_opt(name).await {
                Ok(None) => true,
                Ok(Some(ns)) => ns.metadata.deletion_timestamp.is_none(),
                Err(_) => false,
            }
        })
        .await;
    }
}

pub async fn wait_namespaces_gone(client: &Client, names: &[String]) {
    let api: Api<Namespace> = Api::all(client.clone());
    for name in names {
        super::wait_until(&format!("namespace {name} to be gone"), Duration::from_secs(300), || async {
            matches!(api.get_opt(name).await, Ok(None))
        })
        .await;
    }
}

