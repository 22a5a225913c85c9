//! The inventory: which objects kfctl applied for an app, kept in a ConfigMap next to the
//! Application so that `apply` can prune and `delete` can remove exactly what kfctl created,
//! and `health` knows which objects to report on. It belongs to none of them: `apply` writes it,
//! `health` reads it.

pub mod applied;

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
