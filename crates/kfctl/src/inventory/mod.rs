//! The inventory: which objects kfctl applied for an app, kept in a ConfigMap next to the
//! Application so that `apply` can prune and `delete` can remove exactly what kfctl created,
//! and `health` knows which objects to report on. It belongs to none of them: `apply` writes it,
//! `health` reads it.

pub mod applied;
pub mod labelled;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};
use kube::Client;
use serde_json::json;

use crate::plan::{AppTarget, FIELD_MANAGER, InventoryEntry, MANAGED_BY_LABEL};
use applied::AppliedState;

/// Why the inventory could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("cannot read inventory ConfigMap {namespace}/{name}: {source}")]
    Read { namespace: String, name: String, source: kube::Error },
    #[error("inventory ConfigMap {namespace}/{name} is not kfctl's format ({source})\n  hint: if it was edited by hand, restore it or delete it (kfctl then forgets what to prune)")]
    Corrupt { namespace: String, name: String, source: serde_json::Error },
    #[error("cannot write inventory ConfigMap {namespace}/{name}: {source}")]
    Write { namespace: String, name: String, source: kube::Error },
    #[error("cannot look for the objects labelled {label}={app}: {source}\n  hint: check that the cluster is reachable (`kubectl get --raw /api`)")]
    Scan { label: &'static str, app: String, source: kube::Error },
}

/// The ConfigMap's data key holding the JSON list of entries.
const OBJECTS_KEY: &str = "objects.json";

/// The ConfigMap's data key holding the [`AppliedState`] (JSON), written by its own field manager
/// ([`APPLIED_FIELD_MANAGER`]) so that writing the entries never drops it, nor it the entries.
const APPLIED_KEY: &str = "applied.json";

/// The field manager of [`APPLIED_KEY`].
const APPLIED_FIELD_MANAGER: &str = "kfctl-applied";

/// The inventory ConfigMap's name for an app.
pub fn inventory_name(target: &AppTarget) -> String {
    format!("kfctl-inventory-{}", target.name)
}

/// The recorded entries; an absent inventory (first apply) is empty.
pub async fn read(client: &Client, target: &AppTarget) -> Result<Vec<InventoryEntry>, InventoryError> {
    entries_of(target, get(client, target).await?.as_ref())
}

/// The inventory ConfigMap, if there is one.
async fn get(client: &Client, target: &AppTarget) -> Result<Option<ConfigMap>, InventoryError> {
    let name = inventory_name(target);
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &target.namespace);
    api.get_opt(&name).await.map_err(|source| InventoryError::Read { namespace: target.namespace.clone(), name, source })
}

fn entries_of(target: &AppTarget, cm: Option<&ConfigMap>) -> Result<Vec<InventoryEntry>, InventoryError> {
    let Some(text) = cm.and_then(|cm| cm.data.as_ref()).and_then(|d| d.get(OBJECTS_KEY)) else { return Ok(Vec::new()) };
    serde_json::from_str(text).map_err(|source| InventoryError::Corrupt {
        namespace: target.namespace.clone(),
        name: inventory_name(target),
        source,
    })
}

/// Record `entries` (sorted, deduplicated by the caller) unless they are what is stored already.
/// Returns whether it wrote.
pub async fn write(
    client: &Client,
    target: &AppTarget,
    previous: &[InventoryEntry],
    entries: &[InventoryEntry],
) -> Result<bool, InventoryError> {
    if previous == entries {
        return Ok(false);
    }
    let name = inventory_name(target);
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &target.namespace);
    let text = serde_json::to_string_pretty(entries).expect("inventory entries serialize");
    let cm = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": target.namespace,
            // Not labelled with the app label: the inventory is kfctl's bookkeeping, not a
            // component of the Application.
            "labels": {MANAGED_BY_LABEL: "kfctl"},
        },
        "data": {"app": target.name, OBJECTS_KEY: text},
    });
    api.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&cm))
        .await
        .map_err(|source| InventoryError::Write { namespace: target.namespace.clone(), name: name.clone(), source })?;
    Ok(true)
}

/// The inventory's entries and its recorded [`AppliedState`], from one read. The state is empty
/// when there is none yet (a first apply, or an inventory written by an older kfctl), or when it
/// cannot be parsed (then every object is compared in full, as without it).
pub async fn read_with_applied(client: &Client, target: &AppTarget) -> Result<(Vec<InventoryEntry>, AppliedState), InventoryError> {
    let cm = get(client, target).await?;
    let text = cm.as_ref().and_then(|cm| cm.data.as_ref()).and_then(|d| d.get(APPLIED_KEY));
    let applied = text.and_then(|t| serde_json::from_str(t).ok()).unwrap_or_default();
    Ok((entries_of(target, cm.as_ref())?, applied))
}

/// The inventory reconciled with the cluster: its entries plus every object that carries the
/// app's label though the inventory does not list it (see [`labelled`]), its [`AppliedState`],
/// and what the label scan could not look at. With `record`, an inventory that missed objects is
/// rewritten to list them (when the app namespace, which holds it, exists).
pub async fn read_reconciled(client: &Client, target: &AppTarget, record: bool) -> Result<Reconciled, InventoryError> {
    let (stored, found) = tokio::join!(read_with_applied(client, target), labelled::find(client, &target.name));
    let (stored, applied) = stored?;
    let found = found.map_err(|source| InventoryError::Scan { label: crate::plan::APP_LABEL, app: target.name.clone(), source })?;
    let mut by_identity: std::collections::BTreeMap<_, InventoryEntry> =
        found.entries.iter().map(|e| (e.reference.identity(), e.clone())).collect();
    // What the inventory says of an object (its component and phase, from a plan) wins.
    by_identity.extend(stored.iter().map(|e| (e.reference.identity(), e.clone())));
    let mut entries: Vec<InventoryEntry> = by_identity.into_values().collect();
    entries.sort();
    let missed = entries.len() - stored.len();
    let mut recorded = false;
    if record && missed > 0 {
        match write(client, target, &stored, &entries).await {
            Ok(_) => recorded = true,
            // No app namespace: nowhere to record it yet; the next write records it.
            Err(InventoryError::Write { source: kube::Error::Api(s), .. }) if s.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Reconciled { entries, applied, missed, recorded, skipped_note: found.skipped_note() })
}

/// See [`read_reconciled`].
#[derive(Debug)]
pub struct Reconciled {
    /// The inventory's entries plus the labelled objects it did not list, sorted.
    pub entries: Vec<InventoryEntry>,
    pub applied: AppliedState,
    /// How many labelled objects the inventory did not list.
    pub missed: usize,
    /// Whether the inventory was rewritten to list them.
    pub recorded: bool,
    /// What the label scan could not look at, for a person.
    pub skipped_note: Option<String>,
}

impl Reconciled {
    /// Tell the user what the scan found beyond the inventory and what it could not look at.
    pub fn report(&self, sink: &dyn crate::progress::ProgressSink) {
        if self.missed > 0 {
            sink.report(crate::progress::Progress::Message {
                text: format!(
                    "found {} object(s) labelled as this app's that its inventory did not list{}",
                    self.missed,
                    if self.recorded { "; recorded them" } else { "" }
                ),
            });
        }
        if let Some(note) = &self.skipped_note {
            sink.report(crate::progress::Progress::Message { text: note.clone() });
        }
    }
}

/// Record `state` unless it is what is stored already. Returns whether it wrote.
pub async fn write_applied(
    client: &Client,
    target: &AppTarget,
    previous: &AppliedState,
    state: &AppliedState,
) -> Result<bool, InventoryError> {
    if previous == state {
        return Ok(false);
    }
    let name = inventory_name(target);
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &target.namespace);
    let text = serde_json::to_string(state).expect("applied state serializes");
    let cm = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": target.namespace},
        "data": {APPLIED_KEY: text},
    });
    api.patch(&name, &PatchParams::apply(APPLIED_FIELD_MANAGER).force(), &Patch::Apply(&cm))
        .await
        .map_err(|source| InventoryError::Write { namespace: target.namespace.clone(), name: name.clone(), source })?;
    Ok(true)
}

/// Remove the inventory (after `delete`).
pub async fn remove(client: &Client, target: &AppTarget) -> Result<(), InventoryError> {
    let name = inventory_name(target);
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &target.namespace);
    match api.delete(&name, &Default::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(source) => Err(InventoryError::Write { namespace: target.namespace.clone(), name, source }),
    }
}
