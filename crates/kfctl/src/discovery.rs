//! Resolving kinds to API resources through the legacy per-group discovery endpoints
//! (`/api/v1`, `/apis/GROUP/VERSION`), fetched in parallel and cached for the whole run.
//!
//! kube's `Discovery::run` walks every group one after another; kfctl only needs the
//! group-versions its objects use, so it asks for exactly those, concurrently.
//!
//! Its own module because both `apply` (where to send each object) and `health` (where to list
//! them) resolve kinds.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use futures::{StreamExt, stream};
use kube::Client;
use kube::api::{ApiResource, GroupVersionKind};

use crate::plan::{CrdKind, KindInfo, KindTable};

/// How many discovery requests run at once.
const DISCOVERY_CONCURRENCY: usize = 16;

/// A resolved kind: how to address it, and whether it is namespaced.
#[derive(Debug, Clone)]
pub struct ResolvedKind {
    pub resource: ApiResource,
    pub namespaced: bool,
}

/// Discovery results per group-version (`apps/v1`), refreshed on demand.
pub struct KindResolver {
    client: Client,
    by_group_version: Mutex<HashMap<String, HashMap<String, ResolvedKind>>>,
    /// Kinds defined by the CRDs being applied, per group-version: used where discovery has
    /// not seen them (yet).
    from_crds: Mutex<HashMap<String, HashMap<String, ResolvedKind>>>,
}

impl KindResolver {
    pub fn new(client: Client) -> KindResolver {
        KindResolver { client, by_group_version: Mutex::new(HashMap::new()), from_crds: Mutex::new(HashMap::new()) }
    }

    /// Fetch (again) the resources of these group-versions. A group-version the server does not
    /// serve (yet: its CRD is applied later) resolves to nothing rather than failing.
    pub async fn refresh(&self, group_versions: impl IntoIterator<Item = String>) -> Result<(), kube::Error> {
        let wanted: BTreeSet<String> = group_versions.into_iter().collect();
        let results: Vec<(String, Result<HashMap<String, ResolvedKind>, kube::Error>)> =
            stream::iter(wanted)
                .map(|gv| async move {
                    let found = self.fetch(&gv).await;
                    (gv, found)
                })
                .buffer_unordered(DISCOVERY_CONCURRENCY)
                .collect()
                .await;
        let mut cache = self.by_group_version.lock().expect("discovery cache lock");
        for (gv, found) in results {
            cache.insert(gv, found?);
        }
        Ok(())
    }

    async fn fetch(&self, group_version: &str) -> Result<HashMap<String, ResolvedKind>, kube::Error> {
        let list = if group_version.contains('/') {
            self.client.list_api_group_resources(group_version).await
        } else {
            self.client.list_core_api_resources(group_version).await
        };
        let list = match list {
            Ok(list) => list,
            Err(kube::Error::Api(status)) if status.code == 404 => return Ok(HashMap::new()),
            Err(err) => return Err(err),
        };
        let (group, version) = group_version.split_once('/').unwrap_or(("", group_version));
        Ok(list
            .resources
            .into_iter()
            .filter(|r| !r.name.contains('/'))
            .map(|r| {
                let gvk = GroupVersionKind::gvk(group, version, &r.kind);
                let resolved = ResolvedKind {
                    resource: ApiResource::from_gvk_with_plural(&gvk, &r.name),
                    namespaced: r.namespaced,
                };
                (r.kind, resolved)
            })
            .collect())
    }

    /// Know the kinds that CRDs among `objects` define, at each version they serve, for where
    /// discovery has not seen them (their CRD is not installed yet). The API server serves a
    /// custom resource as soon as its CRD is Established, while its discovery document follows
    /// a moment later: resolving from the CRD being applied spares that wait and its retries.
    pub fn add_crds<'a>(&self, objects: impl Iterator<Item = &'a serde_json::Value>) {
        let mut cache = self.from_crds.lock().expect("discovery cache lock");
        for crd in objects.filter_map(CrdKind::of) {
            for version in &crd.served_versions {
                let gvk = GroupVersionKind::gvk(crd.group, version, crd.kind);
                let resolved = ResolvedKind {
                    resource: ApiResource::from_gvk_with_plural(&gvk, &crd.info.plural),
                    namespaced: crd.info.namespaced,
                };
                cache.entry(format!("{}/{version}", crd.group)).or_default().entry(crd.kind.to_owned()).or_insert(resolved);
            }
        }
    }

    /// The resource for `kind` in `group_version`, if discovery has seen it.
    pub fn resolve(&self, group_version: &str, kind: &str) -> Option<ResolvedKind> {
        let lookup = |cache: &Mutex<HashMap<String, HashMap<String, ResolvedKind>>>| {
            cache.lock().expect("discovery cache lock").get(group_version).and_then(|kinds| kinds.get(kind)).cloned()
        };
        lookup(&self.by_group_version).or_else(|| lookup(&self.from_crds))
    }

    /// Built-in knowledge overlaid with everything discovered so far.
    pub fn kind_table(&self) -> KindTable {
        let mut table = KindTable::builtin();
        // Discovery last: what the server says wins.
        for cache in [&self.from_crds, &self.by_group_version] {
            for kinds in cache.lock().expect("discovery cache lock").values() {
                for (kind, resolved) in kinds {
                    let info = KindInfo { plural: resolved.resource.plural.clone(), namespaced: resolved.namespaced };
                    table.insert(&resolved.resource.group, kind, info);
                }
            }
        }
        table
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A client for a server that is never contacted: these tests do no I/O.
    fn offline_client() -> Client {
        let config = kube::Config::new("https://kfctl-unreachable.invalid".parse().unwrap());
        Client::try_from(config).unwrap()
    }

    #[tokio::test]
    async fn kinds_of_crds_being_applied_resolve_at_their_served_versions() {
        let resolver = KindResolver::new(offline_client());
        let crds = [
            json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                   "spec": {"group": "example.org", "scope": "Namespaced", "names": {"kind": "Widget", "plural": "widgets"},
                            "versions": [{"name": "v1", "served": true}, {"name": "v1alpha1", "served": false}]}}),
            json!({"apiVersion": "apiextensions.k8s.io/v1beta1", "kind": "CustomResourceDefinition",
                   "spec": {"group": "example.org", "scope": "Cluster", "version": "v2",
                            "names": {"kind": "Gadget", "plural": "gadgets"}}}),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "spec": {"group": "example.org"}}),
        ];
        resolver.add_crds(crds.iter());

        let widget = resolver.resolve("example.org/v1", "Widget").expect("served version");
        assert_eq!((widget.resource.plural.as_str(), widget.namespaced), ("widgets", true));
        assert!(resolver.resolve("example.org/v1alpha1", "Widget").is_none(), "a version not served resolved");
        let gadget = resolver.resolve("example.org/v2", "Gadget").expect("v1beta1 `version`");
        assert_eq!((gadget.resource.api_version.as_str(), gadget.namespaced), ("example.org/v2", false));
        assert!(resolver.resolve("example.org/v1", "Gadget").is_none());
        assert_eq!(resolver.kind_table().lookup("example.org", "Gadget").map(|k| k.namespaced), Some(false));
    }
}
