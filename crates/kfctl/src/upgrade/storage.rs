//! CRD stored versions: a new release may stop serving a version that objects on the cluster are
//! still stored in (`status.storedVersions`). The API server then refuses the new CRD. kfctl
//! migrates first, as Kubernetes documents it ("Upgrade existing objects to a new stored
//! version"): make the new storage version the storage version while the old ones are still
//! served, rewrite every object (each write stores it at the storage version), then record the new
//! version as the only stored one. The upgrade's apply then installs the new CRD.

use std::time::Duration;

use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::app::RenderedApp;

/// One CRD whose stored versions the new release drops.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StorageMigration {
    /// The CRD's name (`plural.group`).
    pub crd: String,
    /// Stored versions the new CRD no longer has.
    pub dropped: Vec<String>,
    /// The new storage version.
    pub to: String,
    /// The new CRD, as rendered.
    #[serde(skip)]
    desired: Value,
}

impl StorageMigration {
    /// One line for the plan.
    pub fn line(&self) -> String {
        format!(
            "kfctl moves the objects of CRD {} from stored version {} to {} (the new release no longer serves {}): it rewrites each, then records {} as the only stored version",
            self.crd,
            self.dropped.join(", "),
            self.to,
            self.dropped.join(", "),
            self.to
        )
    }
}

fn crd_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("apiextensions.k8s.io", "v1", "CustomResourceDefinition"), "customresourcedefinitions")
}

fn version_names(crd: &Value) -> Vec<String> {
    crd.pointer("/spec/versions").and_then(Value::as_array).into_iter().flatten().filter_map(|v| v["name"].as_str().map(str::to_owned)).collect()
}

fn storage_version(crd: &Value) -> Option<String> {
    crd.pointer("/spec/versions").and_then(Value::as_array)?.iter().find(|v| v["storage"] == true).and_then(|v| v["name"].as_str()).map(str::to_owned)
}

/// The rendered CRDs whose live copy has stored versions the render no longer lists. The live
/// copies are read a few at a time (a release has about a hundred CRDs).
pub async fn find(client: &Client, rendered: &RenderedApp) -> Result<Vec<StorageMigration>, kube::Error> {
    use futures::{StreamExt, TryStreamExt};
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &crd_resource());
    let crds = rendered.objects.iter().map(|o| &o.object).filter_map(|o| {
        let is_crd = o["kind"] == "CustomResourceDefinition" && o["apiVersion"] == "apiextensions.k8s.io/v1";
        Some((o, o.pointer("/metadata/name").and_then(Value::as_str).filter(|_| is_crd)?))
    });
    let live: Vec<(&Value, &str, Option<DynamicObject>)> =
        futures::stream::iter(crds).map(|(o, name)| {
            let api = &api;
            async move { Ok::<_, kube::Error>((o, name, api.get_opt(name).await?)) }
        })
        .buffered(16)
        .try_collect()
        .await?;
    let mut out = Vec::new();
    for (o, name, live) in live {
        let Some(live) = live else { continue };
        let live = serde_json::to_value(live).unwrap_or_default();
        let wanted = version_names(o);
        let stored: Vec<String> = live.pointer("/status/storedVersions").and_then(Value::as_array).into_iter().flatten().filter_map(|v| v.as_str().map(str::to_owned)).collect();
        let dropped: Vec<String> = stored.into_iter().filter(|v| !wanted.contains(v)).collect();
        if let (false, Some(to)) = (dropped.is_empty(), storage_version(o)) {
            out.push(StorageMigration { crd: name.to_string(), dropped, to, desired: o.clone() });
        }
    }
    Ok(out)
}

/// Run one migration (see the module doc). Safe to run again after an interruption.
pub async fn migrate(client: &Client, m: &StorageMigration) -> Result<usize, String> {
    let crds: Api<DynamicObject> = Api::all_with(client.clone(), &crd_resource());
    let err = |what: &str, e: kube::Error| format!("CRD {}: {what}: {}", m.crd, crate::cluster::error_chain(&e));
    let live = crds.get(&m.crd).await.map_err(|e| err("cannot read it", e))?;
    let live = serde_json::to_value(live).unwrap_or_default();
    // 1. The new storage version stores, the dropped ones are still served (with their schemas).
    let mut versions: Vec<Value> = m.desired.pointer("/spec/versions").and_then(Value::as_array).cloned().unwrap_or_default();
    if !version_names(&live).contains(&m.to) {
        return Err(format!(
            "CRD {}: the cluster does not serve {} yet, so its objects cannot be read at it; hint: apply an intermediate release that serves both, or migrate them by hand",
            m.crd, m.to
        ));
    }
    for v in live.pointer("/spec/versions").and_then(Value::as_array).into_iter().flatten() {
        if v["name"].as_str().is_some_and(|n| m.dropped.iter().any(|d| d == n)) {
            let mut kept = v.clone();
            kept["served"] = json!(true);
            kept["storage"] = json!(false);
            versions.push(kept);
        }
    }
    crds.patch(&m.crd, &PatchParams::default(), &Patch::Merge(json!({"spec": {"versions": versions}})))
        .await
        .map_err(|e| err("cannot make the new version the storage version", e))?;
    crate::health::gates::crds_established(client, std::slice::from_ref(&m.crd), Duration::from_secs(60)).await?;
    // 2. Rewrite every object: each write stores it at the storage version.
    let group = m.desired.pointer("/spec/group").and_then(Value::as_str).unwrap_or_default();
    let kind = m.desired.pointer("/spec/names/kind").and_then(Value::as_str).unwrap_or_default();
    let plural = m.desired.pointer("/spec/names/plural").and_then(Value::as_str).unwrap_or_default();
    let resource = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, &m.to, kind), plural);
    let objects: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
    let mut rewritten = 0;
    let list = objects.list(&ListParams::default()).await.map_err(|e| err("cannot list its objects", e))?;
    for o in list.items {
        let name = o.metadata.name.clone().unwrap_or_default();
        let api: Api<DynamicObject> = match &o.metadata.namespace {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
            None => Api::all_with(client.clone(), &resource),
        };
        // A conflict means someone wrote it meanwhile, which stored it at the new version too.
        match api.replace(&name, &PostParams::default(), &o).await {
            Ok(_) => rewritten += 1,
            Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => rewritten += 1,
            Err(e) => return Err(err(&format!("cannot rewrite {name}"), e)),
        }
    }
    // 3. Only the new version is stored now.
    crds.patch_status(&m.crd, &PatchParams::default(), &Patch::Merge(json!({"status": {"storedVersions": [m.to]}})))
        .await
        .map_err(|e| err("cannot record the stored version", e))?;
    Ok(rewritten)
}
