//! Readiness per kind, the Application status, Events.
//!
//! `apply` sends; `health` watches and decides. Status is computed from the app's inventory and
//! one label-selected list per kind; waiting re-evaluates it when a watch reports a change.

pub mod access;
pub mod application;
mod events;
pub mod gates;
pub mod readiness;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::Client;
use kube::api::{Api, DynamicObject, ListParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::Value;

use crate::discovery::KindResolver;
use crate::inventory;
use crate::plan::{APP_LABEL, AppTarget, InventoryEntry, ObjectRef, selector};
use crate::progress::{Progress, ProgressSink, StageTimes};
pub use events::EventRecorder;
pub use readiness::{Readiness, readiness};

/// Why status could not be determined.
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    #[error(transparent)]
    Inventory(#[from] inventory::InventoryError),
    #[error("app {app:?} has nothing applied in namespace {namespace} (no kfctl inventory there)\n  hint: run `kfctl apply` first")]
    NotApplied { app: String, namespace: String },
    #[error("API request failed: {reason}")]
    Api { reason: String },
    #[error("not ready after {}s:\n{}\n  hint: `kfctl status` shows every component; `kubectl get events -n {namespace}` shows what happened", timeout.as_secs(), status.not_ready_lines().join("\n"))]
    Timeout { timeout: Duration, namespace: String, status: Box<AppStatus> },
}

/// One object's readiness.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ObjectStatus {
    pub reference: ObjectRef,
    pub readiness: Readiness,
}

/// One component's readiness: ready when all its objects are.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ComponentStatus {
    pub name: String,
    pub ready: bool,
    pub objects: Vec<ObjectStatus>,
}

impl ComponentStatus {
    /// The first object that is not ready, with why.
    pub fn first_problem(&self) -> Option<String> {
        self.objects.iter().find(|o| !o.readiness.is_ready()).map(|o| {
            format!("{} {}", o.reference, o.readiness.reason().unwrap_or_default())
        })
    }

    pub fn ready_count(&self) -> usize {
        self.objects.iter().filter(|o| o.readiness.is_ready()).count()
    }
}

/// The whole app's readiness.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AppStatus {
    pub app: String,
    pub namespace: String,
    pub ready: bool,
    pub components: Vec<ComponentStatus>,
    /// The user's journey after the deploy (the notebook server `kfctl notebook` made): shown,
    /// never counted for Ready.
    pub journey: Vec<JourneyEntry>,
}

/// The label on what `kfctl notebook` creates for an app (value: the app's name). Not kfctl's app
/// label: the notebook server is the user's, so apply never prunes it and delete leaves it.
pub const JOURNEY_LABEL: &str = "kfctl.kubeflow.org/journey";

/// One step of the user's journey found on the cluster: a Notebook labelled [`JOURNEY_LABEL`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct JourneyEntry {
    pub namespace: String,
    pub name: String,
    pub ready: bool,
}

/// The Notebooks of `app`'s journey, cluster-wide; none when the Notebook kind is not served.
async fn journey_of(client: &Client, app: &str) -> Vec<JourneyEntry> {
    use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams};
    let notebooks = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("kubeflow.org", "v1", "Notebook"), "notebooks");
    let api: kube::Api<DynamicObject> = kube::Api::all_with(client.clone(), &notebooks);
    let Ok(list) = api.list(&ListParams::default().labels(&format!("{JOURNEY_LABEL}={app}"))).await else { return Vec::new() };
    list.items
        .into_iter()
        .map(|nb| JourneyEntry {
            namespace: nb.metadata.namespace.clone().unwrap_or_default(),
            name: nb.metadata.name.clone().unwrap_or_default(),
            ready: nb.data.pointer("/status/readyReplicas").and_then(serde_json::Value::as_i64).unwrap_or(0) >= 1,
        })
        .collect()
}

impl AppStatus {
    pub fn objects_total(&self) -> usize {
        self.components.iter().map(|c| c.objects.len()).sum()
    }

    pub fn objects_ready(&self) -> usize {
        self.components.iter().map(ComponentStatus::ready_count).sum()
    }

    /// One line per object not ready: `component: Kind ns/name: reason`.
    pub fn not_ready_lines(&self) -> Vec<String> {
        self.components
            .iter()
            .flat_map(|c| {
                c.objects.iter().filter(|o| !o.readiness.is_ready()).map(move |o| {
                    format!("  - {}: {}: {}", c.name, o.reference, o.readiness.reason().unwrap_or_default())
                })
            })
            .collect()
    }
}

/// The readiness of every object the app owns, by component: those in its inventory and those
/// that carry its label though the inventory does not list them.
pub async fn status_of(client: &Client, target: &AppTarget) -> Result<AppStatus, HealthError> {
    let owned = inventory::read_reconciled(client, target, false).await?;
    status_of_entries(client, target, owned.entries).await
}

/// The readiness of `entries` (what the app owns), by component.
async fn status_of_entries(client: &Client, target: &AppTarget, mut entries: Vec<InventoryEntry>) -> Result<AppStatus, HealthError> {
    let mut times = StageTimes::from_env();
    // The Application reports on the others; its own Ready condition is the result, not an input.
    // Shared objects (listed by inventories of older kfctl versions) carry no app label: not this app's.
    entries.retain(|e| {
        !(e.reference.group == "app.k8s.io" && e.reference.kind == application::APPLICATION_KIND && e.reference.name == target.name)
            && !e.reference.is_shared()
    });
    if entries.is_empty() {
        return Err(HealthError::NotApplied { app: target.name.clone(), namespace: target.namespace.clone() });
    }
    let resolver = KindResolver::new(client.clone());
    let gvs: BTreeSet<String> = entries.iter().map(|e| e.reference.api_version()).collect();
    resolver.refresh(gvs).await.map_err(|e| HealthError::Api { reason: crate::cluster::error_chain(&e) })?;
    times.mark("status: discovery", "");
    let live = list_live(client, &resolver, target, &entries).await?;
    times.mark("status: lists", &format!("{} objects", live.len()));
    let pods = failing_pods(client, &entries, &live).await?;
    times.mark("status: pods", "");

    let mut components: BTreeMap<String, Vec<ObjectStatus>> = BTreeMap::new();
    for e in &entries {
        let r = &e.reference;
        let readiness = match live.get(&r.identity()) {
            None => Readiness::Missing,
            Some(obj) => {
                let mut state = readiness(&r.group, &r.kind, obj);
                if !state.is_ready()
                    && let Some(why) = workload_pod_failure(r, obj, &pods)
                {
                    state = Readiness::Failed(why);
                }
                state
            }
        };
        components.entry(e.component.clone()).or_default().push(ObjectStatus { reference: r.clone(), readiness });
    }
    let components: Vec<ComponentStatus> = components
        .into_iter()
        .map(|(name, objects)| ComponentStatus { ready: objects.iter().all(|o| o.readiness.is_ready()), name, objects })
        .collect();
    Ok(AppStatus {
        app: target.name.clone(),
        namespace: target.namespace.clone(),
        ready: components.iter().all(|c| c.ready),
        components,
        journey: journey_of(client, &target.name).await,
    })
}

type Identity = (String, String, Option<String>, String);

async fn list_live(
    client: &Client,
    resolver: &KindResolver,
    target: &AppTarget,
    entries: &[InventoryEntry],
) -> Result<HashMap<Identity, Value>, HealthError> {
    let kinds: BTreeSet<(String, String)> = entries.iter().map(|e| (e.reference.api_version(), e.reference.kind.clone())).collect();
    let selector = format!("{APP_LABEL}={}", target.name);
    let lists: Vec<Vec<Value>> = stream::iter(kinds)
        .filter_map(|(gv, kind)| async move { resolver.resolve(&gv, &kind) })
        .map(|resolved| {
            let selector = selector.clone();
            async move {
                let api: Api<DynamicObject> = Api::all_with(client.clone(), &resolved.resource);
                let list = api.list(&ListParams::default().labels(&selector)).await?;
                Ok::<_, kube::Error>(
                    list.items
                        .into_iter()
                        .map(|item| {
                            let mut v = serde_json::to_value(item).expect("object serializes");
                            v["apiVersion"] = Value::from(resolved.resource.api_version.clone());
                            v["kind"] = Value::from(resolved.resource.kind.clone());
                            v
                        })
                        .collect(),
                )
            }
        })
        .buffer_unordered(16)
        .try_collect()
        .await
        .map_err(|e| HealthError::Api { reason: crate::cluster::error_chain(&e) })?;
    Ok(lists
        .into_iter()
        .flatten()
        .map(|v| {
            let group = v["apiVersion"].as_str().and_then(|a| a.split_once('/')).map_or("", |(g, _)| g).to_owned();
            let key = (
                group,
                v["kind"].as_str().unwrap_or_default().to_owned(),
                v.pointer("/metadata/namespace").and_then(Value::as_str).map(str::to_owned),
                v.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_owned(),
            );
            (key, v)
        })
        .collect())
}

/// Pods that are failing, per namespace, in namespaces that hold a workload not ready.
async fn failing_pods(
    client: &Client,
    entries: &[InventoryEntry],
    live: &HashMap<Identity, Value>,
) -> Result<HashMap<String, Vec<Value>>, HealthError> {
    let namespaces: BTreeSet<String> = entries
        .iter()
        .filter(|e| e.reference.group == "apps" || (e.reference.group == "batch" && e.reference.kind == "Job"))
        .filter(|e| live.get(&e.reference.identity()).is_some_and(|o| !readiness(&e.reference.group, &e.reference.kind, o).is_ready()))
        .filter_map(|e| e.reference.namespace.clone())
        .collect();
    let mut out = HashMap::new();
    for ns in namespaces {
        let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let pods = api.list(&ListParams::default()).await.map_err(|e| HealthError::Api { reason: crate::cluster::error_chain(&e) })?;
        let failing: Vec<Value> = pods
            .items
            .into_iter()
            .map(|p| serde_json::to_value(p).expect("pod serializes"))
            .filter(|p| readiness::pod_failure(p).is_some())
            .collect();
        out.insert(ns, failing);
    }
    Ok(out)
}

/// Why a workload is not ready, when one of its pods is failing.
fn workload_pod_failure(r: &ObjectRef, workload: &Value, pods: &HashMap<String, Vec<Value>>) -> Option<String> {
    let ns = r.namespace.as_ref()?;
    let selector_value = workload.pointer("/spec/selector")?;
    pods.get(ns)?.iter().find_map(|pod| {
        let labels = pod.pointer("/metadata/labels").and_then(Value::as_object)?;
        selector::label_selector_matches(Some(selector_value), labels).then(|| readiness::pod_failure(pod)).flatten()
    })
}

/// Compute the status and write it to the Application (if changed), recording Events for
/// components whose readiness changed since the Application's stored status.
pub async fn refresh(client: &Client, target: &AppTarget, sink: &dyn ProgressSink) -> Result<AppStatus, HealthError> {
    refresh_entries(client, target, None, sink).await
}

/// [`refresh`] of `entries` when given (what the app owns, found once), else of what the app
/// owns now.
async fn refresh_entries(
    client: &Client,
    target: &AppTarget,
    entries: Option<&[InventoryEntry]>,
    sink: &dyn ProgressSink,
) -> Result<AppStatus, HealthError> {
    let status = match entries {
        Some(entries) => status_of_entries(client, target, entries.to_vec()).await?,
        None => status_of(client, target).await?,
    };
    let previous = application::read_status(client, target).await?;
    let previously: HashMap<(String, String, Option<String>, String), (String, String)> = previous
        .as_ref()
        .and_then(|p| p.get("components"))
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .map(|c| {
                    let s = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
                    let group = s("group");
                    let group = if group == "core" { String::new() } else { group };
                    ((group, s("kind"), c.get("namespace").and_then(Value::as_str).map(str::to_owned), s("name")), (s("status"), s("message")))
                })
                .collect()
        })
        .unwrap_or_default();
    let events = EventRecorder::new(client.clone(), target.clone(), sink);
    for c in &status.components {
        let mut changed = false;
        for o in &c.objects {
            let before = previously.get(&o.reference.identity());
            let now_word = o.readiness.status_word();
            let now_msg = o.readiness.reason().unwrap_or_default();
            if before.is_none_or(|(w, m)| w != now_word || m != now_msg) {
                changed = true;
                if let Readiness::Failed(reason) = &o.readiness {
                    events.record(true, "ComponentFailed", &format!("component {}: {}: {reason}", c.name, o.reference));
                }
            }
        }
        sink.report(Progress::ComponentStatus { component: c.name.clone(), ready: c.ready, reason: c.first_problem() });
        if changed && previous.is_some() {
            let was_ready = c.objects.iter().all(|o| previously.get(&o.reference.identity()).is_some_and(|(w, _)| w == "Ready"));
            if c.ready && !was_ready {
                events.record(false, "ComponentReady", &format!("component {} is ready ({} objects)", c.name, c.objects.len()));
            } else if !c.ready && was_ready {
                events.record(true, "ComponentNotReady", &format!("component {}: {}", c.name, c.first_problem().unwrap_or_default()));
            }
        }
    }
    let mut times = StageTimes::from_env();
    let wrote = application::write_status(client, target, &status).await;
    times.mark("status: application written", "");
    if let Ok(true) = wrote {
        let word = if status.ready { "Ready" } else { "NotReady" };
        let text = format!("{}/{} components ready", status.objects_ready(), status.objects_total());
        events.record(!status.ready, &format!("Application{word}"), &text);
    }
    events.flush().await;
    wrote?;
    Ok(status)
}

/// Wait until every component is ready, re-checking whenever a watched workload, pod, job or
/// claim changes (and at least every 30 s), and keep the Application status current.
pub async fn wait_target(client: &Client, target: &AppTarget, timeout: Duration, sink: &dyn ProgressSink) -> Result<AppStatus, HealthError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let label = format!("{APP_LABEL}={}", target.name);
    let owned = watcher::Config::default().labels(&label);
    // Each with backoff: a watch that keeps failing (not allowed, say) must not spin.
    let changes = stream::select_all(vec![
        watcher(Api::<Deployment>::all(client.clone()), owned.clone()).default_backoff().map(|_| ()).boxed(),
        watcher(Api::<StatefulSet>::all(client.clone()), owned.clone()).default_backoff().map(|_| ()).boxed(),
        watcher(Api::<DaemonSet>::all(client.clone()), owned.clone()).default_backoff().map(|_| ()).boxed(),
        watcher(Api::<Job>::all(client.clone()), owned.clone()).default_backoff().map(|_| ()).boxed(),
        watcher(Api::<PersistentVolumeClaim>::all(client.clone()), owned).default_backoff().map(|_| ()).boxed(),
        // Pods are not labelled by kfctl (templates are left alone): watch them all.
        watcher(Api::<Pod>::all(client.clone()), watcher::Config::default()).default_backoff().map(|_| ()).boxed(),
    ]);
    tokio::pin!(changes);
    // What the app owns is found once (a label scan of every kind), not on every change.
    let owned = inventory::read_reconciled(client, target, false).await?;
    owned.report(sink);
    loop {
        let status = refresh_entries(client, target, Some(&owned.entries), sink).await?;
        if status.ready {
            return Ok(status);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(HealthError::Timeout { timeout, namespace: target.namespace.clone(), status: Box::new(status) });
        }
        // Sleep until something changes (then let a burst of changes settle), the periodic
        // re-check, or the deadline.
        let until = deadline.min(tokio::time::Instant::now() + Duration::from_secs(30));
        if let Ok(Some(_)) = tokio::time::timeout_at(until, changes.next()).await {
            let settle = tokio::time::Instant::now() + Duration::from_millis(300);
            while let Ok(Some(_)) = tokio::time::timeout_at(settle.min(until), changes.next()).await {}
        }
    }
}

/// The contract other faces call: wait until `app` is ready (see [`wait_target`]).
pub async fn wait_ready(client: &Client, app: &crate::app::App, timeout: Duration, sink: &dyn ProgressSink) -> Result<AppStatus, HealthError> {
    wait_target(client, &AppTarget::for_app(app), timeout, sink).await
}

/// The contract other faces call: `app`'s readiness, also written to its Application.
pub async fn status(client: &Client, app: &crate::app::App) -> Result<AppStatus, HealthError> {
    refresh(client, &AppTarget::for_app(app), &crate::progress::Silent).await
}
