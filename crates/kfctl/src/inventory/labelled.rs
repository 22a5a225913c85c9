//! kfctl's app label is the source of truth for what an app owns; the inventory ConfigMap is a
//! record of it that can fall behind: kfctl killed between creating an object and recording it,
//! a plain `delete` that deleted the app namespace (and the inventory with it) but kept CRDs and
//! PVCs elsewhere. [`find`] lists every served kind that supports `list`, label-selected and
//! metadata only, so purge, prune and status find what the app owns whatever came before.

use std::collections::{BTreeMap, BTreeSet};

use futures::{StreamExt, stream};
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams};

use crate::plan::{APP_LABEL, COMPONENT_LABEL, InventoryEntry, ObjectRef, PhaseName};

/// Requests (discovery, then lists) in flight at once.
const CONCURRENCY: usize = 16;

/// What a label scan found.
#[derive(Debug, Default)]
pub struct Labelled {
    /// Every object carrying the app's label that kfctl applied (not objects a controller made
    /// from one of them and copied the labels to), sorted.
    pub entries: Vec<InventoryEntry>,
    /// Kinds (or whole API groups) that could not be listed, each with why: what they hold is
    /// not known.
    pub skipped: Vec<String>,
}

impl Labelled {
    /// One line for a person about the kinds that could not be listed, if any.
    pub fn skipped_note(&self) -> Option<String> {
        if self.skipped.is_empty() {
            return None;
        }
        let shown: Vec<&str> = self.skipped.iter().take(6).map(String::as_str).collect();
        let more = self.skipped.len() - shown.len();
        let more = if more > 0 { format!(" and {more} more") } else { String::new() };
        Some(format!(
            "note: could not look for the app's objects in {} kind(s): {}{more}; objects of these kinds that the inventory does not list are not found",
            self.skipped.len(),
            shown.join("; ")
        ))
    }
}

/// A labelled object: its reference, its component label, and whether a controller made it.
type Found = (ObjectRef, Option<String>, bool);

/// A kind to list: its resource at one version (the group's preferred one where it serves it).
struct ListableKind {
    resource: ApiResource,
}

/// Every object of app `app` on the cluster, found by kfctl's label. Kinds that are forbidden or
/// cannot be listed (and API groups whose discovery fails, such as an aggregated API whose
/// server is down) are skipped and named in [`Labelled::skipped`]; only a cluster that cannot be
/// reached at all is an error.
pub async fn find(client: &Client, app: &str) -> Result<Labelled, kube::Error> {
    let (kinds, mut skipped) = listable_kinds(client).await?;
    let selector = format!("{APP_LABEL}={app}");
    let results: Vec<Result<Vec<Found>, String>> = stream::iter(kinds)
        .map(|k| {
            let lp = ListParams::default().labels(&selector);
            async move {
                let api: Api<DynamicObject> = Api::all_with(client.clone(), &k.resource);
                let what = kind_name(&k.resource);
                match api.list_metadata(&lp).await {
                    Ok(list) => Ok(list
                        .items
                        .into_iter()
                        .map(|item| {
                            let m = item.metadata;
                            let derived =
                                m.owner_references.as_ref().is_some_and(|owners| owners.iter().any(|o| o.controller == Some(true)));
                            let component = m.labels.as_ref().and_then(|l| l.get(COMPONENT_LABEL)).cloned();
                            let reference = ObjectRef {
                                group: k.resource.group.clone(),
                                version: k.resource.version.clone(),
                                kind: k.resource.kind.clone(),
                                namespace: m.namespace,
                                name: m.name.unwrap_or_default(),
                            };
                            (reference, component, derived)
                        })
                        .collect()),
                    Err(kube::Error::Api(s)) if s.code == 403 => Err(format!("{what}: forbidden")),
                    Err(kube::Error::Api(s)) => Err(format!("{what}: {} ({})", s.message, s.code)),
                    Err(e) => Err(format!("{what}: {}", crate::cluster::error_chain(&e))),
                }
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let mut found = Vec::new();
    for r in results {
        match r {
            Ok(objects) => found.extend(objects),
            Err(why) => skipped.push(why),
        }
    }
    skipped.sort();
    Ok(Labelled { entries: owned_entries(found), skipped })
}

/// The entries kfctl applied among labelled objects: objects a controller made (a controller
/// owner reference, such as a ReplicaSet or an EndpointSlice) and the Endpoints the endpoints
/// controller keeps for a labelled Service (it copies the Service's labels) are left out.
fn owned_entries(found: Vec<Found>) -> Vec<InventoryEntry> {
    let services: BTreeSet<(Option<String>, String)> = found
        .iter()
        .filter(|(r, _, _)| r.group.is_empty() && r.kind == "Service")
        .map(|(r, _, _)| (r.namespace.clone(), r.name.clone()))
        .collect();
    let mut entries: Vec<InventoryEntry> = found
        .into_iter()
        .filter(|(_, _, derived)| !derived)
        .filter(|(r, _, _)| !(r.group.is_empty() && r.kind == "Endpoints" && services.contains(&(r.namespace.clone(), r.name.clone()))))
        .map(|(reference, component, _)| {
            let phase = phase_of_kind(&reference.group, &reference.kind);
            InventoryEntry { reference, component: component.unwrap_or_else(|| "unknown".to_owned()), phase }
        })
        .collect();
    entries.sort();
    entries.dedup_by(|a, b| a.reference.identity() == b.reference.identity());
    entries
}

/// The phase an object found by its label is deleted in (reverse phase order): what a plan
/// would give its kind, webhook servers and intercepted objects counting as the rest.
fn phase_of_kind(group: &str, kind: &str) -> PhaseName {
    match (group, kind) {
        ("", "Namespace") => PhaseName::Namespaces,
        ("apiextensions.k8s.io", "CustomResourceDefinition") => PhaseName::Crds,
        ("rbac.authorization.k8s.io", "ClusterRole" | "ClusterRoleBinding" | "Role" | "RoleBinding") | ("", "ServiceAccount") => {
            PhaseName::Rbac
        }
        ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration" | "MutatingWebhookConfiguration") => PhaseName::Webhooks,
        _ => PhaseName::Rest,
    }
}

/// `Kind.group` (or `Kind` for the core group).
fn kind_name(resource: &ApiResource) -> String {
    if resource.group.is_empty() { resource.kind.clone() } else { format!("{}.{}", resource.kind, resource.group) }
}

/// Every kind the server serves with the `list` verb, once per (group, kind): at the group's
/// preferred version where that serves it, else the first version that does. Groups whose
/// discovery fails are skipped, and said so.
async fn listable_kinds(client: &Client) -> Result<(Vec<ListableKind>, Vec<String>), kube::Error> {
    let core = client.list_core_api_versions().await?;
    let groups = client.list_api_groups().await?;
    // (group-version, group, version, preferred rank: 0 = preferred)
    let mut wanted: Vec<(String, String, String, usize)> =
        core.versions.iter().enumerate().map(|(i, v)| (v.clone(), String::new(), v.clone(), i)).collect();
    for g in &groups.groups {
        let preferred = g.preferred_version.as_ref().map(|p| p.version.clone());
        for v in &g.versions {
            let rank = if Some(&v.version) == preferred.as_ref() { 0 } else { 1 };
            wanted.push((v.group_version.clone(), g.name.clone(), v.version.clone(), rank));
        }
    }
    let discovered: Vec<_> = stream::iter(wanted)
        .map(|(gv, group, version, rank)| async move {
            let list =
                if group.is_empty() { client.list_core_api_resources(&version).await } else { client.list_api_group_resources(&gv).await };
            (gv, group, version, rank, list)
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let mut skipped = Vec::new();
    let mut by_kind: BTreeMap<(String, String), (usize, String, ListableKind)> = BTreeMap::new();
    for (gv, group, version, rank, list) in discovered {
        let list = match list {
            Ok(list) => list,
            Err(kube::Error::Api(s)) => {
                skipped.push(format!("API group {gv}: discovery failed: {} ({})", s.message, s.code));
                continue;
            }
            Err(e) => return Err(e),
        };
        for r in list.resources {
            if r.name.contains('/') || !r.verbs.iter().any(|v| v == "list") {
                continue;
            }
            let gvk = GroupVersionKind::gvk(&group, &version, &r.kind);
            let candidate = ListableKind { resource: ApiResource::from_gvk_with_plural(&gvk, &r.name) };
            let key = (group.clone(), r.kind.clone());
            let better = by_kind.get(&key).is_none_or(|(best, best_version, _)| (rank, &version) < (*best, best_version));
            if better {
                by_kind.insert(key, (rank, version.clone(), candidate));
            }
        }
    }
    Ok((by_kind.into_values().map(|(_, _, k)| k).collect(), skipped))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(group: &str, kind: &str, ns: Option<&str>, name: &str) -> ObjectRef {
        ObjectRef { group: group.into(), version: "v1".into(), kind: kind.into(), namespace: ns.map(Into::into), name: name.into() }
    }

    #[test]
    fn objects_controllers_made_from_labelled_ones_are_not_the_apps() {
        let found = vec![
            (r("", "Service", Some("ns"), "web"), Some("web".into()), false),
            // The endpoints controller copies the Service's labels.
            (r("", "Endpoints", Some("ns"), "web"), Some("web".into()), false),
            // An Endpoints kfctl applied itself (no Service of that name).
            (r("", "Endpoints", Some("ns"), "external"), Some("ext".into()), false),
            // A ReplicaSet of a labelled Deployment: controller owner reference.
            (r("apps", "ReplicaSet", Some("ns"), "web-1234"), Some("web".into()), true),
            (r("apiextensions.k8s.io", "CustomResourceDefinition", None, "widgets.x"), None, false),
        ];
        let entries = owned_entries(found);
        let names: Vec<String> = entries.iter().map(|e| e.reference.to_string()).collect();
        assert_eq!(names, ["Endpoints ns/external", "Service ns/web", "CustomResourceDefinition.apiextensions.k8s.io widgets.x"]);
        let crd = entries.iter().find(|e| e.reference.kind == "CustomResourceDefinition").unwrap();
        assert_eq!((crd.phase, crd.component.as_str()), (PhaseName::Crds, "unknown"));
    }
}
