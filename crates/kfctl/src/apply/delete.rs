//! Deleting what kfctl applied: prune (objects that left the config) and `kfctl delete`.
//!
//! Only objects that carry the app's label are deleted: those the inventory lists, and (for
//! `kfctl delete`) those it no longer lists, found by the label (see `inventory::labelled`).
//! CRDs (deleting one deletes every custom resource of its kind) and PersistentVolumeClaims (user
//! data) are kept unless purging; a Namespace holding objects kfctl does not own, or a claim kept
//! that way, is kept too (deleting it would delete them).
//! The Application CRD that all apps share is in no app's inventory: `delete --purge` removes it
//! only when no other Application is left on the cluster.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::{StreamExt, stream};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::Client;

use super::ApplyError;
use crate::discovery::{KindResolver, ResolvedKind};
use crate::inventory;
use crate::plan::{APP_LABEL, AppTarget, COMPONENT_LABEL, InventoryEntry, MANAGED_BY_LABEL, PhaseName, SHARED_CRDS, is_builtin_group, is_kfctl_owned, sort_for_deletion};
use crate::progress::{Progress, ProgressSink};

/// How long kfctl waits for one group of deletions to finish before going on.
const DELETE_WAIT: Duration = Duration::from_secs(120);

/// Why an object in the inventory was not deleted.
#[derive(Debug, Clone, PartialEq)]
pub enum KeepReason {
    /// CRDs and PVCs stay unless purging.
    KeptWithoutPurge,
    /// A Namespace that still holds objects kfctl does not own (one of them named).
    HoldsForeignObjects(String),
    /// A Namespace that holds a PersistentVolumeClaim kept without --purge (one of them named).
    HoldsKeptClaims(String),
    /// Someone removed kfctl's label: it is not kfctl's any more.
    NotOwned,
    /// Already gone.
    Gone,
}

impl KeepReason {
    /// Whether the entry stays in the inventory (kfctl still owns it).
    pub fn keeps_inventory(&self) -> bool {
        matches!(self, KeepReason::KeptWithoutPurge | KeepReason::HoldsForeignObjects(_) | KeepReason::HoldsKeptClaims(_))
    }
}

impl std::fmt::Display for KeepReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeepReason::KeptWithoutPurge => f.write_str("kept: CRDs and PVCs are removed only with --purge"),
            KeepReason::HoldsForeignObjects(o) => write!(f, "kept: it holds {o}, which kfctl does not own"),
            KeepReason::HoldsKeptClaims(o) => write!(f, "kept: it holds {o}, kept without --purge (deleting the namespace would delete it)"),
            KeepReason::NotOwned => f.write_str("left alone: it no longer carries kfctl's label"),
            KeepReason::Gone => f.write_str("already gone"),
        }
    }
}

/// What a deletion pass did.
#[derive(Debug, Default)]
pub struct DeleteOutcome {
    pub deleted: Vec<InventoryEntry>,
    pub kept: Vec<(InventoryEntry, KeepReason)>,
    pub failed: Vec<(InventoryEntry, String)>,
}

/// The result of `kfctl delete`.
#[derive(Debug, Default, serde::Serialize)]
pub struct DeleteReport {
    pub deleted: Vec<String>,
    pub kept: Vec<String>,
    pub failed: Vec<String>,
}

/// Delete `entries` in deletion order: reverse phases, and within a phase custom resources
/// before built-in kinds (so their controllers are still there to run finalizers). Each group
/// is waited on until gone.
pub async fn delete_entries(
    client: &Client,
    resolver: &KindResolver,
    target: &AppTarget,
    entries: &[InventoryEntry],
    purge: bool,
    sink: &dyn ProgressSink,
) -> DeleteOutcome {
    let mut entries = entries.to_vec();
    sort_for_deletion(&mut entries);
    let kept_claims = &kept_claims(&entries, purge);
    let gvs: BTreeSet<String> = entries.iter().map(|e| e.reference.api_version()).collect();
    let _ = resolver.refresh(gvs).await;
    let mut groups: BTreeMap<(std::cmp::Reverse<PhaseName>, bool), Vec<InventoryEntry>> = BTreeMap::new();
    for e in entries {
        groups.entry((std::cmp::Reverse(e.phase), is_builtin_group(&e.reference.group))).or_default().push(e);
    }
    let mut outcome = DeleteOutcome::default();
    for ((_, _), group) in groups {
        let results: Vec<(InventoryEntry, DeleteResult)> = stream::iter(group)
            .map(|e| async move {
                // Interrupted (Ctrl-C): no new deletions; the entry stays in the inventory.
                if crate::interrupt::requested().is_some() {
                    return (e, Err(Err(crate::interrupt::NOT_STARTED.to_string())));
                }
                let r = delete_one(client, resolver, target, &e, purge, kept_claims).await;
                (e, r)
            })
            .buffer_unordered(16)
            .collect()
            .await;
        let mut waits = Vec::new();
        for (e, r) in results {
            match r {
                Ok(uid) => {
                    sink.report(Progress::Message { text: format!("deleted {}", e.reference) });
                    if let Some(uid) = uid {
                        waits.push((e.clone(), uid));
                    }
                    outcome.deleted.push(e);
                }
                Err(Ok(reason)) => {
                    if reason != KeepReason::Gone {
                        sink.report(Progress::Message { text: format!("{}: {reason}", e.reference) });
                    }
                    outcome.kept.push((e, reason));
                }
                Err(Err(reason)) => {
                    if reason != crate::interrupt::NOT_STARTED {
                        sink.report(Progress::Message { text: format!("could not delete {}: {reason}", e.reference) });
                    }
                    outcome.failed.push((e, reason));
                }
            }
        }
        stream::iter(waits)
            .for_each_concurrent(16, |(e, uid)| async move {
                if let Some(resolved) = resolver.resolve(&e.reference.api_version(), &e.reference.kind) {
                    let api = api_for(client, &resolved, e.reference.namespace.as_deref());
                    let gone = tokio::time::timeout(DELETE_WAIT, await_condition(api, &e.reference.name, conditions::is_deleted(&uid)));
                    // Interrupted: stop waiting; the deletion goes on without kfctl.
                    let gone = tokio::select! {
                        gone = gone => matches!(gone, Ok(Ok(_))),
                        () = crate::interrupt::received() => false,
                    };
                    if !gone {
                        sink.report(Progress::Message { text: format!("{} is still terminating", e.reference) });
                    }
                }
            })
            .await;
    }
    outcome
}

/// Claims among `entries` kept without --purge, by namespace (one named per namespace): their
/// namespace must stay too.
pub(crate) fn kept_claims(entries: &[InventoryEntry], purge: bool) -> BTreeMap<String, String> {
    if purge {
        return BTreeMap::new();
    }
    entries
        .iter()
        .filter(|e| is_kept_without_purge(&e.reference) && e.reference.kind == "PersistentVolumeClaim")
        .filter_map(|e| e.reference.namespace.clone().map(|ns| (ns, e.reference.to_string())))
        .collect()
}

/// CRDs (deleting one deletes every custom resource of its kind) and PersistentVolumeClaims
/// (user data) stay unless purging.
fn is_kept_without_purge(r: &crate::plan::ObjectRef) -> bool {
    (r.group == "apiextensions.k8s.io" && r.kind == "CustomResourceDefinition") || (r.group.is_empty() && r.kind == "PersistentVolumeClaim")
}

/// The API of a resolved kind, namespaced where the kind is.
pub(crate) fn api_for(client: &Client, resolved: &ResolvedKind, namespace: Option<&str>) -> Api<DynamicObject> {
    match (namespace, resolved.namespaced) {
        (Some(ns), true) => Api::namespaced_with(client.clone(), ns, &resolved.resource),
        _ => Api::all_with(client.clone(), &resolved.resource),
    }
}

/// Ok(uid) when deletion was requested; Err(Ok(reason)) when kept; Err(Err(text)) on failure.
type DeleteResult = Result<Option<String>, Result<KeepReason, String>>;

/// See [`DeleteResult`].
async fn delete_one(
    client: &Client,
    resolver: &KindResolver,
    target: &AppTarget,
    e: &InventoryEntry,
    purge: bool,
    kept_claims: &BTreeMap<String, String>,
) -> DeleteResult {
    let (api, uid) = deletable(client, resolver, target, e, purge, kept_claims).await?;
    match api.delete(&e.reference.name, &DeleteParams::background()).await {
        Ok(_) => Ok(uid),
        Err(kube::Error::Api(s)) if s.code == 404 => Err(Ok(KeepReason::Gone)),
        Err(err) => Err(Err(crate::cluster::error_chain(&err))),
    }
}

/// Whether deleting `e` goes ahead, found by reading only: Ok(its API and uid) when it would be
/// deleted; Err(Ok(reason)) when it is kept; Err(Err(text)) when it cannot be read. `delete_one`
/// acts on it, `kfctl diff` shows it. `kept_claims`: see [`kept_claims`].
pub(crate) async fn deletable(
    client: &Client,
    resolver: &KindResolver,
    target: &AppTarget,
    e: &InventoryEntry,
    purge: bool,
    kept_claims: &BTreeMap<String, String>,
) -> Result<(Api<DynamicObject>, Option<String>), Result<KeepReason, String>> {
    let r = &e.reference;
    if is_kept_without_purge(r) && !purge {
        return Err(Ok(KeepReason::KeptWithoutPurge));
    }
    if r.group.is_empty()
        && r.kind == "Namespace"
        && let Some(claim) = kept_claims.get(&r.name)
    {
        return Err(Ok(KeepReason::HoldsKeptClaims(claim.clone())));
    }
    let Some(resolved) = resolver.resolve(&r.api_version(), &r.kind) else {
        // The kind is gone (its CRD was deleted): so is the object.
        return Err(Ok(KeepReason::Gone));
    };
    let api = api_for(client, &resolved, r.namespace.as_deref());
    let live = match api.get_opt(&r.name).await {
        Ok(Some(live)) => live,
        Ok(None) => return Err(Ok(KeepReason::Gone)),
        Err(err) => return Err(Err(crate::cluster::error_chain(&err))),
    };
    let labels = live.metadata.labels.as_ref();
    if !is_kfctl_owned(labels, &target.name) {
        return Err(Ok(KeepReason::NotOwned));
    }
    if r.group.is_empty()
        && r.kind == "Namespace"
        && let Some(foreign) = foreign_object_in(client, &r.name, &target.name).await
    {
        return Err(Ok(KeepReason::HoldsForeignObjects(foreign)));
    }
    Ok((api, live.metadata.uid))
}

/// An object in `namespace` that kfctl does not own and that nothing owns (controllers' children
/// and the objects Kubernetes creates in every namespace do not count). Deleting the namespace
/// would delete it, so kfctl keeps the namespace instead.
async fn foreign_object_in(client: &Client, namespace: &str, app: &str) -> Option<String> {
    use k8s_openapi::api::{apps::v1 as apps, core::v1 as core};
    let lp = ListParams::default();
    let owned_or_system = |labels: Option<&std::collections::BTreeMap<String, String>>,
                           owners: Option<&Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference>>| {
        is_kfctl_owned(labels, app) || owners.is_some_and(|o| !o.is_empty())
    };
    macro_rules! check {
        ($ty:ty, $kind:literal, $skip:expr) => {
            if let Ok(list) = Api::<$ty>::namespaced(client.clone(), namespace).list(&lp).await {
                for item in list.items {
                    let m = &item.metadata;
                    let skip: &dyn Fn(&$ty) -> bool = &$skip;
                    if !owned_or_system(m.labels.as_ref(), m.owner_references.as_ref()) && !skip(&item) {
                        return Some(format!("{} {}/{}", $kind, namespace, m.name.clone().unwrap_or_default()));
                    }
                }
            }
        };
    }
    check!(core::ConfigMap, "ConfigMap", |c: &core::ConfigMap| c.metadata.name.as_deref() == Some("kube-root-ca.crt")
        || c.metadata.name.as_deref().is_some_and(|n| n.starts_with("kfctl-inventory-")));
    check!(core::Secret, "Secret", |s: &core::Secret| s.type_.as_deref() == Some("kubernetes.io/service-account-token"));
    check!(core::ServiceAccount, "ServiceAccount", |s: &core::ServiceAccount| s.metadata.name.as_deref() == Some("default"));
    check!(core::Service, "Service", |_: &core::Service| false);
    check!(core::Pod, "Pod", |_: &core::Pod| false);
    check!(core::PersistentVolumeClaim, "PersistentVolumeClaim", |_: &core::PersistentVolumeClaim| false);
    check!(apps::Deployment, "Deployment", |_: &apps::Deployment| false);
    check!(apps::StatefulSet, "StatefulSet", |_: &apps::StatefulSet| false);
    None
}

/// `kfctl delete`: remove everything the app owns (its inventory and whatever else carries its
/// label), in reverse order; with `purge`, also the shared Application CRD when this app's
/// Application was the last one.
pub async fn delete_target(client: &Client, target: &AppTarget, purge: bool, sink: &dyn ProgressSink) -> Result<DeleteReport, ApplyError> {
    let owned = inventory::read_reconciled(client, target, true).await?;
    owned.report(sink);
    let entries = owned.entries;
    let resolver = KindResolver::new(client.clone());
    // Inventories written before the Application CRD was shared still list it: never one app's.
    let own: Vec<InventoryEntry> = entries.iter().filter(|e| !e.reference.is_shared()).cloned().collect();
    let outcome = delete_entries(client, &resolver, target, &own, purge, sink).await;
    let mut report = DeleteReport { deleted: outcome.deleted.iter().map(|e| e.reference.to_string()).collect(), ..Default::default() };
    if purge && crate::interrupt::requested().is_none() {
        purge_shared_crds(client, target, sink, &mut report).await;
    }
    let mut remaining: Vec<InventoryEntry> = Vec::new();
    for (e, why) in &outcome.kept {
        if purge && matches!(why, KeepReason::HoldsForeignObjects(_)) {
            // Purged, the app leaves nothing labelled as its own: the namespace stays for what
            // it holds, but is no longer kfctl's (a later apply takes it back).
            match release(client, &resolver, e).await {
                Ok(()) => {
                    let text = format!("{}: {why}; released (kfctl's labels removed)", e.reference);
                    sink.report(Progress::Message { text: text.clone() });
                    report.kept.push(text);
                }
                Err(reason) => {
                    report.failed.push(format!("{}: {why}; could not remove kfctl's labels: {reason}", e.reference));
                    remaining.push(e.clone());
                }
            }
            continue;
        }
        if why.keeps_inventory() {
            report.kept.push(format!("{}: {why}", e.reference));
            remaining.push(e.clone());
        }
    }
    for (e, why) in &outcome.failed {
        report.failed.push(format!("{}: {why}", e.reference));
        remaining.push(e.clone());
    }
    remaining.sort();
    let namespace_deleted = outcome
        .deleted
        .iter()
        .any(|e| e.reference.group.is_empty() && e.reference.kind == "Namespace" && e.reference.name == target.namespace);
    if !namespace_deleted {
        let written = if remaining.is_empty() {
            inventory::remove(client, target).await
        } else {
            inventory::write(client, target, &entries, &remaining).await.map(|_| ())
        };
        match written {
            Ok(()) => {}
            // The app namespace is gone (an earlier delete): what is left is found by its label.
            Err(inventory::InventoryError::Write { source: kube::Error::Api(s), .. }) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(report)
}

/// Remove kfctl's labels from `e` (it stays on the cluster, no longer any app's).
async fn release(client: &Client, resolver: &KindResolver, e: &InventoryEntry) -> Result<(), String> {
    let r = &e.reference;
    let resolved = resolver.resolve(&r.api_version(), &r.kind).ok_or_else(|| format!("the server does not serve {}", r.api_version()))?;
    let api = api_for(client, &resolved, r.namespace.as_deref());
    let patch = serde_json::json!({"metadata": {"labels": {APP_LABEL: null, COMPONENT_LABEL: null, MANAGED_BY_LABEL: null}}});
    api.patch(&r.name, &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch))
        .await
        .map(|_| ())
        .map_err(|e| crate::cluster::error_chain(&e))
}

/// With `delete --purge`: delete each shared CRD kfctl installed, unless an Application other than
/// `target`'s still exists (deleting the CRD would delete it too). Says which, in `report`.
async fn purge_shared_crds(client: &Client, target: &AppTarget, sink: &dyn ProgressSink, report: &mut DeleteReport) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for name in SHARED_CRDS {
        let what = format!("CustomResourceDefinition.apiextensions.k8s.io {name}");
        let crd = match crds.get_opt(name).await {
            Ok(Some(crd)) => crd,
            Ok(None) => continue,
            Err(e) => {
                report.failed.push(format!("{what}: {}", crate::cluster::error_chain(&e)));
                continue;
            }
        };
        let installed_by_kfctl =
            crd.metadata.labels.as_ref().and_then(|l| l.get(MANAGED_BY_LABEL)).map(String::as_str) == Some("kfctl");
        if !installed_by_kfctl {
            report.kept.push(format!("{what}: left alone: kfctl did not install it"));
            continue;
        }
        let others = match other_custom_resources(client, &crd, target).await {
            Ok(others) => others,
            Err(e) => {
                report.failed.push(format!("{what}: cannot tell whether another app uses it: {}", crate::cluster::error_chain(&e)));
                continue;
            }
        };
        if !others.is_empty() {
            let shown: Vec<&str> = others.iter().take(5).map(String::as_str).collect();
            let more = if others.len() > shown.len() { format!(" and {} more", others.len() - shown.len()) } else { String::new() };
            let why = format!("kept: shared, still used by {} other Application(s): {}{more}", others.len(), shown.join(", "));
            sink.report(Progress::Message { text: format!("{what}: {why}") });
            report.kept.push(format!("{what}: {why}"));
            continue;
        }
        let deleted = match crds.delete(name, &DeleteParams::background()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(e),
        };
        match deleted {
            Ok(()) => {
                sink.report(Progress::Message { text: format!("deleted {what} (shared; no other Application is left)") });
                report.deleted.push(format!("{what} (shared; no other Application was left)"));
            }
            Err(e) => report.failed.push(format!("{what}: {}", crate::cluster::error_chain(&e))),
        }
    }
}

/// `namespace/name` of every custom resource of `crd` (served version) except `target`'s Application.
async fn other_custom_resources(
    client: &Client,
    crd: &k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    target: &AppTarget,
) -> Result<Vec<String>, kube::Error> {
    let spec = &crd.spec;
    let Some(version) = spec.versions.iter().find(|v| v.served) else { return Ok(Vec::new()) };
    let gvk = kube::api::GroupVersionKind::gvk(&spec.group, &version.name, &spec.names.kind);
    let resource = kube::api::ApiResource::from_gvk_with_plural(&gvk, &spec.names.plural);
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
    let list = match api.list(&ListParams::default()).await {
        Ok(list) => list,
        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    Ok(list
        .items
        .into_iter()
        .filter(|o| o.metadata.deletion_timestamp.is_none())
        .map(|o| (o.metadata.namespace.unwrap_or_default(), o.metadata.name.unwrap_or_default()))
        .filter(|(ns, name)| !(*ns == target.namespace && *name == target.name))
        .map(|(ns, name)| format!("{ns}/{name}"))
        .collect())
}
