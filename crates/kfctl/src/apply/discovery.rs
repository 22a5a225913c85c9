//! Resolving kinds to API resources through the legacy per-group discovery endpoints
//! (`/api/v1`, `/apis/GROUP/VERSION`), fetched in parallel and cached for the whole run.
//!
//! kube's `Discovery::run` walks every group one after another; kfctl only needs the
//! group-versions its objects use, so it asks for exactly those, concurrently.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use futures::{StreamExt, stream};
use kube::Client;
use kube::api::{ApiResource, GroupVersionKind};

use crate::plan::{KindInfo, KindTable};

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
}

impl KindResolver {
    pub fn new(client: Client) -> KindResolver {
        KindResolver { client, by_group_version: Mutex::new(HashMap::new()) }
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

    /// The resource for `kind` in `group_version`, if discovery has seen it.
    pub fn resolve(&self, group_version: &str, kind: &str) -> Option<ResolvedKind> {
        let cache = self.by_group_version.lock().expect("discovery cache lock");
        cache.get(group_version).and_then(|kinds| kinds.get(kind)).cloned()
    }

    /// Built-in knowledge overlaid with everything discovered so far.
    pub fn kind_table(&self) -> KindTable {
        let mut table = KindTable::builtin();
        let cache = self.by_group_version.lock().expect("discovery cache lock");
        for kinds in cache.values() {
            for (kind, resolved) in kinds {
                let info = KindInfo { plural: resolved.resource.plural.clone(), namespaced: resolved.namespaced };
                table.insert(&resolved.resource.group, kind, info);
            }
        }
        table
    }
}
