//! A simulated volume provisioner, so PersistentVolumeClaims bind (Kubeflow's databases and
//! notebooks need them; a pod with an unbound claim never schedules).
//!
//! simnode owns the default StorageClass `simnode`. For every Pending claim of that class it
//! creates a PersistentVolume pre-bound to the claim (hostPath, never mounted: nothing runs), and
//! the real PV controller completes the binding. When a claim is deleted and its volume becomes
//! Released, simnode deletes the volume, as a provisioner with reclaimPolicy Delete does.

use std::collections::BTreeMap;

use anyhow::Context as _;
use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{
    HostPathVolumeSource, ObjectReference, PersistentVolume, PersistentVolumeClaim, PersistentVolumeSpec,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, PostParams};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Api, ResourceExt as _};

use crate::log;

/// The StorageClass simnode provisions for (marked default).
pub const STORAGE_CLASS: &str = "simnode";
/// Provisioner name in the StorageClass and on the volumes it made.
pub const PROVISIONER: &str = "simnode.kfctl.dev/simulated";
const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";

/// Creates the default StorageClass `simnode` if it does not exist.
pub async fn ensure_storage_class(client: &kube::Client) -> anyhow::Result<()> {
    let api: Api<StorageClass> = Api::all(client.clone());
    let class = StorageClass {
        metadata: ObjectMeta {
            name: Some(STORAGE_CLASS.into()),
            annotations: Some(BTreeMap::from([(
                "storageclass.kubernetes.io/is-default-class".to_string(),
                "true".to_string(),
            )])),
            ..Default::default()
        },
        provisioner: PROVISIONER.into(),
        reclaim_policy: Some("Delete".into()),
        volume_binding_mode: Some("Immediate".into()),
        ..Default::default()
    };
    match api.create(&PostParams::default(), &class).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e).context("creating StorageClass simnode"),
    }
}

fn volume_for(claim: &PersistentVolumeClaim) -> Option<PersistentVolume> {
    let spec = claim.spec.as_ref()?;
    let size = spec.resources.as_ref()?.requests.as_ref()?.get("storage")?.clone();
    let uid = claim.uid()?;
    let name = format!("pvc-{uid}");
    Some(PersistentVolume {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            annotations: Some(BTreeMap::from([(PROVISIONED_BY.to_string(), PROVISIONER.to_string())])),
            ..Default::default()
        },
        spec: Some(PersistentVolumeSpec {
            capacity: Some(BTreeMap::from([("storage".to_string(), Quantity(size.0))])),
            access_modes: spec.access_modes.clone().or_else(|| Some(vec!["ReadWriteOnce".into()])),
            volume_mode: spec.volume_mode.clone(),
            storage_class_name: Some(STORAGE_CLASS.into()),
            persistent_volume_reclaim_policy: Some("Delete".into()),
            claim_ref: Some(ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("PersistentVolumeClaim".into()),
                namespace: claim.namespace(),
                name: Some(claim.name_any()),
                uid: Some(uid),
                ..Default::default()
            }),
            host_path: Some(HostPathVolumeSource {
                path: format!("/var/lib/simnode/volumes/{name}"),
                type_: Some("DirectoryOrCreate".into()),
            }),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// Provisions volumes for Pending claims of class `simnode`, forever.
pub async fn provision_claims(client: kube::Client) -> anyhow::Result<()> {
    let claims: Api<PersistentVolumeClaim> = Api::all(client.clone());
    let volumes: Api<PersistentVolume> = Api::all(client);
    let mut stream = watcher(claims, watcher::Config::default()).default_backoff().applied_objects().boxed();
    // An error (the API server restarting) is logged; the watcher backs off and watches again.
    while let Some(claim) = stream.next().await {
        let claim = match claim {
            Ok(claim) => claim,
            Err(e) => {
                log!("watching PersistentVolumeClaims: {e}; retrying");
                continue;
            }
        };
        let spec = claim.spec.as_ref();
        let pending = claim.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Pending");
        let ours = spec.and_then(|s| s.storage_class_name.as_deref()) == Some(STORAGE_CLASS);
        let unbound = spec.and_then(|s| s.volume_name.as_deref()).is_none();
        if !(pending && ours && unbound) || claim.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let Some(volume) = volume_for(&claim) else {
            log!("claim {}/{}: no storage request; not provisioning", claim.namespace().unwrap_or_default(), claim.name_any());
            continue;
        };
        match volumes.create(&PostParams::default(), &volume).await {
            Ok(v) => log!(
                "claim {}/{}: provisioned volume {}",
                claim.namespace().unwrap_or_default(),
                claim.name_any(),
                v.name_any()
            ),
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => log!("claim {}/{}: creating its volume: {e}", claim.namespace().unwrap_or_default(), claim.name_any()),
        }
    }
    anyhow::bail!("the PersistentVolumeClaim watch ended")
}

/// Deletes Released volumes simnode provisioned (reclaimPolicy Delete), forever.
pub async fn reclaim_volumes(client: kube::Client) -> anyhow::Result<()> {
    let volumes: Api<PersistentVolume> = Api::all(client);
    let mut stream =
        watcher(volumes.clone(), watcher::Config::default()).default_backoff().applied_objects().boxed();
    while let Some(volume) = stream.next().await {
        let volume = match volume {
            Ok(volume) => volume,
            Err(e) => {
                log!("watching PersistentVolumes: {e}; retrying");
                continue;
            }
        };
        let released = volume.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Released");
        let ours = volume.annotations().get(PROVISIONED_BY).map(String::as_str) == Some(PROVISIONER);
        if released && ours && volume.metadata.deletion_timestamp.is_none() {
            match volumes.delete(&volume.name_any(), &DeleteParams::default()).await {
                Ok(_) => log!("volume {}: released, deleted", volume.name_any()),
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => log!("volume {}: deleting: {e}", volume.name_any()),
            }
        }
    }
    anyhow::bail!("the PersistentVolume watch ended")
}
