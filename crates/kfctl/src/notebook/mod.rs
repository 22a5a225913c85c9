//! The default user's first notebook server, ready with the codelabs (`kfctl notebook` and the
//! web app's "Open JupyterLab with codelabs").
//!
//! kfctl creates what the Jupyter web app would for a form left at its defaults (the release's
//! spawner config, in the catalog as [`NotebookDefaults`]): a Notebook, its workspace PVC, and
//! the `access-ml-pipeline` PodDefault that gives the server a Kubeflow Pipelines token. The
//! codelabs reach the workspace through an init container that copies them once from a ConfigMap
//! (or downloads a repository archive). The notebook controller turns the Notebook into a
//! StatefulSet and Service; this module waits for it and says why it is not ready.

pub mod codelabs;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Event, Namespace, Node, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::progress::{Progress, ProgressSink};
use crate::registry::catalog::NotebookDefaults;

pub use codelabs::Codelab;

/// The upstream default profile (namespace) of the `user-namespace` component.
pub const DEFAULT_PROFILE: &str = "kubeflow-user-example-com";
/// The upstream default user (dex's static user, the profile's owner).
pub const DEFAULT_USER: &str = "user@example.com";
/// The PodDefault upstream uses to give notebooks access to Kubeflow Pipelines, and its label.
pub const PIPELINES_PODDEFAULT: &str = "access-ml-pipeline";
/// Where the codelabs go inside the workspace.
pub const CODELABS_FOLDER: &str = "codelabs";
const NOTEBOOK_CRD: &str = "notebooks.kubeflow.org";
const FIELD_MANAGER: &str = "kfctl";

/// Why the notebook server could not be made ready. Each names the object and what to do next.
#[derive(Debug, thiserror::Error)]
pub enum NotebookError {
    #[error(
        "the profile namespace {namespace} did not appear within {secs}s\n  hint: the profile controller (component `profiles`) creates it from the Profile {namespace} (component `user-namespace`, parameter profileName); `kfctl status` shows whether both are ready, and `kubectl -n kubeflow logs deployment/profiles-deployment` why the controller did not act"
    )]
    NoProfileNamespace { namespace: String, secs: u64 },
    #[error("the Notebook CRD ({NOTEBOOK_CRD}) is not installed in the cluster\n  hint: enable the `notebooks` component (`kfctl component add notebooks`), then `kfctl apply`")]
    NoNotebookCrd,
    #[error("--gpu: no node offers a GPU (looked for {vendors} in the nodes' allocatable resources)\n  hint: install the GPU vendor's device plugin on a GPU node, or run without --gpu")]
    NoGpu { vendors: String },
    #[error("the notebook server {namespace}/{name} is not ready after {secs}s: {reason}\n  hint: {hint}")]
    NotReady { namespace: String, name: String, secs: u64, reason: String, hint: String },
    #[error("{what}: {reason}")]
    Api { what: String, reason: String },
}

fn api_error(what: impl Into<String>) -> impl FnOnce(kube::Error) -> NotebookError {
    let what = what.into();
    move |e| {
        let reason = match e {
            // The API server's own words; the rest of the Status is noise here.
            kube::Error::Api(status) => format!("{} ({})", status.message, status.reason),
            other => crate::cluster::error_chain(&other),
        };
        NotebookError::Api { what, reason }
    }
}

/// Where the codelabs come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodelabSource {
    /// The release's codelabs shipped in kfctl, through a ConfigMap.
    Shipped(Vec<Codelab>),
    /// A repository archive (`.tar.gz` or `.zip`) downloaded by the init container.
    Url(String),
}

/// Everything that decides the notebook server's objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotebookPlan {
    pub name: String,
    /// The app whose journey it is (labels the Notebook, so the app's status lists it).
    pub app: String,
    /// The profile namespace.
    pub namespace: String,
    /// The profile owner's email (the web app records the creator).
    pub creator: String,
    pub defaults: NotebookDefaults,
    /// The GPU resource to ask one of (`nvidia.com/gpu`), when a GPU was asked for.
    pub gpu: Option<String>,
    /// A workspace PVC (there is a default StorageClass); otherwise an emptyDir.
    pub workspace_pvc: bool,
    pub codelabs: CodelabSource,
}

fn labels(name: &str) -> Value {
    json!({
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/component": "notebook",
        "app.kubernetes.io/part-of": "kubeflow",
        "app.kubernetes.io/managed-by": "kfctl",
    })
}

/// The init container's script for shipped codelabs: copy once, then leave the user's copies alone.
const COPY_SCRIPT: &str = r#"set -e
dest="$WORKSPACE/codelabs"
if [ -e "$dest" ]; then echo "codelabs: $dest exists; leaving it as it is"; exit 0; fi
mkdir -p "$dest.partial"
cp "$CODELABS_SOURCE"/*.ipynb "$dest.partial/"
mv "$dest.partial" "$dest"
echo "codelabs: copied to $dest""#;

/// The init container's program for `--codelabs URL`: download once, unpack without the archive's
/// top folder, refuse paths that leave the destination.
const DOWNLOAD_SCRIPT: &str = r#"import io, os, shutil, sys, tarfile, urllib.request, zipfile
url, dest = sys.argv[1], os.path.join(os.environ["WORKSPACE"], "codelabs")
if os.path.exists(dest):
    print(f"codelabs: {dest} exists; leaving it as it is"); sys.exit(0)
data = urllib.request.urlopen(url, timeout=120).read()
partial = dest + ".partial"
shutil.rmtree(partial, ignore_errors=True)
def place(name, read):
    parts = name.split("/")[1:]
    if not parts or parts[-1] == "" or ".." in parts:
        return
    path = os.path.join(partial, *parts)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(read())
if zipfile.is_zipfile(io.BytesIO(data)):
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        for info in z.infolist():
            if not info.is_dir():
                place(info.filename, lambda info=info: z.read(info))
else:
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        for member in t.getmembers():
            if member.isfile():
                place(member.name, lambda member=member: t.extractfile(member).read())
os.makedirs(partial, exist_ok=True)
os.rename(partial, dest)
print(f"codelabs: {url} unpacked to {dest}")"#;

impl NotebookPlan {
    pub fn pvc_name(&self) -> String {
        format!("{}-workspace", self.name)
    }

    pub fn configmap_name(&self) -> String {
        format!("{}-codelabs", self.name)
    }

    /// The Notebook, as the Jupyter web app would create it from its defaults.
    pub fn notebook(&self) -> Value {
        let d = &self.defaults;
        let mut limits = json!({"cpu": d.cpu_limit, "memory": d.memory_limit});
        if let Some(gpu) = &self.gpu {
            limits[gpu.as_str()] = json!("1");
        }
        let workspace = if self.workspace_pvc {
            json!({"name": "workspace", "persistentVolumeClaim": {"claimName": self.pvc_name()}})
        } else {
            json!({"name": "workspace", "emptyDir": {}})
        };
        let mut volumes = vec![workspace, json!({"name": "dshm", "emptyDir": {"medium": "Memory"}})];
        let mut init_mounts = vec![json!({"name": "workspace", "mountPath": d.workspace_mount})];
        let init_command = match &self.codelabs {
            CodelabSource::Shipped(_) => {
                volumes.push(json!({"name": "codelabs", "configMap": {"name": self.configmap_name()}}));
                init_mounts.push(json!({"name": "codelabs", "mountPath": "/opt/kfctl-codelabs", "readOnly": true}));
                json!(["sh", "-c", COPY_SCRIPT])
            }
            CodelabSource::Url(url) => json!(["python3", "-c", DOWNLOAD_SCRIPT, url]),
        };
        let mut metadata_labels = labels(&self.name);
        metadata_labels["app"] = json!(self.name);
        metadata_labels[crate::health::JOURNEY_LABEL] = json!(self.app);
        metadata_labels[PIPELINES_PODDEFAULT] = json!("true");
        json!({
            "apiVersion": "kubeflow.org/v1",
            "kind": "Notebook",
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "labels": metadata_labels,
                "annotations": {
                    "notebooks.kubeflow.org/server-type": "jupyter",
                    "notebooks.kubeflow.org/creator": self.creator,
                },
            },
            "spec": {"template": {"spec": {
                "serviceAccountName": "default-editor",
                // Named apart from the main container, whose name is the notebook's.
                "initContainers": [{
                    "name": "copy-codelabs",
                    "image": d.image,
                    "imagePullPolicy": "IfNotPresent",
                    "command": init_command,
                    "env": [
                        {"name": "WORKSPACE", "value": d.workspace_mount},
                        {"name": "CODELABS_SOURCE", "value": "/opt/kfctl-codelabs"},
                    ],
                    "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"}},
                    "volumeMounts": init_mounts,
                }],
                "containers": [{
                    "name": self.name,
                    "image": d.image,
                    "imagePullPolicy": "IfNotPresent",
                    "resources": {"requests": {"cpu": d.cpu, "memory": d.memory}, "limits": limits},
                    "volumeMounts": [
                        {"name": "workspace", "mountPath": d.workspace_mount},
                        {"name": "dshm", "mountPath": "/dev/shm"},
                    ],
                }],
                "volumes": volumes,
            }}},
        })
    }

    /// The workspace claim (`<name>-workspace`, as the web app names it), on the default StorageClass.
    pub fn pvc(&self) -> Option<Value> {
        self.workspace_pvc.then(|| {
            json!({
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": self.pvc_name(), "namespace": self.namespace, "labels": labels(&self.name)},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": self.defaults.workspace_size}},
                },
            })
        })
    }

    /// The ConfigMap holding the shipped codelabs, one key per notebook file.
    pub fn configmap(&self) -> Option<Value> {
        let CodelabSource::Shipped(labs) = &self.codelabs else { return None };
        let data: BTreeMap<&str, &str> = labs.iter().map(|l| (l.file, l.contents)).collect();
        Some(json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": self.configmap_name(), "namespace": self.namespace, "labels": labels(&self.name)},
            "data": data,
        }))
    }

    /// Upstream's `access-ml-pipeline` PodDefault: a projected token for the pipelines API.
    pub fn pod_default(&self) -> Value {
        json!({
            "apiVersion": "kubeflow.org/v1alpha1",
            "kind": "PodDefault",
            "metadata": {"name": PIPELINES_PODDEFAULT, "namespace": self.namespace, "labels": labels(PIPELINES_PODDEFAULT)},
            "spec": {
                "desc": "Allow access to Kubeflow Pipelines",
                "selector": {"matchLabels": {PIPELINES_PODDEFAULT: "true"}},
                "env": [{"name": "KF_PIPELINES_SA_TOKEN_PATH", "value": "/var/run/secrets/kubeflow/pipelines/token"}],
                "volumes": [{"name": "volume-kf-pipeline-token", "projected": {"sources": [
                    {"serviceAccountToken": {"path": "token", "expirationSeconds": 7200, "audience": "pipelines.kubeflow.org"}}
                ]}}],
                "volumeMounts": [{"mountPath": "/var/run/secrets/kubeflow/pipelines", "name": "volume-kf-pipeline-token", "readOnly": true}],
            },
        })
    }
}

/// JupyterLab's path for the codelabs folder of notebook `name` in `namespace`, behind the gateway.
pub fn lab_path(namespace: &str, name: &str) -> String {
    format!("/notebook/{namespace}/{name}/lab/tree/{CODELABS_FOLDER}")
}

fn notebook_api(client: &Client, namespace: &str) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("kubeflow.org", "v1", "Notebook"), "notebooks");
    Api::namespaced_with(client.clone(), namespace, &ar)
}

fn pod_default_api(client: &Client, namespace: &str) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("kubeflow.org", "v1alpha1", "PodDefault"), "poddefaults");
    Api::namespaced_with(client.clone(), namespace, &ar)
}

/// Waits until `namespace` exists (the profile controller makes it from the Profile).
pub async fn wait_for_namespace(client: &Client, namespace: &str, timeout: Duration, sink: &dyn ProgressSink) -> Result<(), NotebookError> {
    let api = Api::<Namespace>::all(client.clone());
    let start = Instant::now();
    loop {
        let ns = api.get_opt(namespace).await.map_err(api_error(format!("reading namespace {namespace}")))?;
        if ns.is_some_and(|ns| ns.metadata.deletion_timestamp.is_none()) {
            return Ok(());
        }
        if start.elapsed() >= timeout {
            return Err(NotebookError::NoProfileNamespace { namespace: namespace.to_owned(), secs: timeout.as_secs() });
        }
        sink.report(Progress::Waiting {
            what: format!("profile namespace {namespace}"),
            reason: Some("the profile controller has not created it yet".into()),
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Whether the Notebook CRD is installed.
pub async fn check_notebook_crd(client: &Client) -> Result<(), NotebookError> {
    let crds = Api::<CustomResourceDefinition>::all(client.clone());
    match crds.get_opt(NOTEBOOK_CRD).await.map_err(api_error(format!("reading CustomResourceDefinition {NOTEBOOK_CRD}")))? {
        Some(_) => Ok(()),
        None => Err(NotebookError::NoNotebookCrd),
    }
}

/// The default StorageClass's name, if the cluster has one.
pub async fn default_storage_class(client: &Client) -> Result<Option<String>, NotebookError> {
    let classes = Api::<StorageClass>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map_err(api_error("listing StorageClasses"))?;
    Ok(classes.items.into_iter().find_map(|sc| {
        let annotations = sc.metadata.annotations.unwrap_or_default();
        let default = ["storageclass.kubernetes.io/is-default-class", "storageclass.beta.kubernetes.io/is-default-class"]
            .iter()
            .any(|key| annotations.get(*key).map(String::as_str) == Some("true"));
        default.then(|| sc.metadata.name.unwrap_or_default())
    }))
}

/// The first GPU resource of `vendors` that some node has allocatable.
pub async fn available_gpu(client: &Client, vendors: &[String]) -> Result<String, NotebookError> {
    let nodes = Api::<Node>::all(client.clone()).list(&ListParams::default()).await.map_err(api_error("listing nodes"))?;
    vendors
        .iter()
        .find(|vendor| {
            nodes.items.iter().any(|node| {
                let allocatable = node.status.as_ref().and_then(|s| s.allocatable.as_ref());
                allocatable.and_then(|a| a.get(vendor.as_str())).is_some_and(|q| q.0.trim() != "0")
            })
        })
        .cloned()
        .ok_or_else(|| NotebookError::NoGpu { vendors: vendors.join(", ") })
}

/// The Notebook `name` in `namespace`, if it exists.
pub async fn existing(client: &Client, namespace: &str, name: &str) -> Result<Option<DynamicObject>, NotebookError> {
    notebook_api(client, namespace).get_opt(name).await.map_err(api_error(format!("reading Notebook {namespace}/{name}")))
}

/// What [`create`] made.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Created {
    /// Objects created, as `Kind namespace/name`.
    pub objects: Vec<String>,
}

/// Creates the plan's objects: the PodDefault when the namespace has none of that name (it is
/// shared with the user's other notebooks), the codelabs ConfigMap, the PVC and the Notebook.
pub async fn create(client: &Client, plan: &NotebookPlan) -> Result<Created, NotebookError> {
    let ns = &plan.namespace;
    let mut created = Created::default();
    let pp = PostParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() };
    let pod_defaults = pod_default_api(client, ns);
    if pod_defaults.get_opt(PIPELINES_PODDEFAULT).await.map_err(api_error(format!("reading PodDefault {ns}/{PIPELINES_PODDEFAULT}")))?.is_none() {
        let object: DynamicObject = serde_json::from_value(plan.pod_default()).expect("a PodDefault is an object");
        pod_defaults.create(&pp, &object).await.map_err(api_error(format!(
            "creating PodDefault {ns}/{PIPELINES_PODDEFAULT} (is the admission-webhook component applied? it installs the PodDefault CRD)"
        )))?;
        created.objects.push(format!("PodDefault {ns}/{PIPELINES_PODDEFAULT}"));
    }
    if let Some(configmap) = plan.configmap() {
        let name = plan.configmap_name();
        let configmap: ConfigMap = serde_json::from_value(configmap).expect("a ConfigMap");
        Api::<ConfigMap>::namespaced(client.clone(), ns)
            .patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&configmap))
            .await
            .map_err(api_error(format!("applying ConfigMap {ns}/{name}")))?;
        created.objects.push(format!("ConfigMap {ns}/{name}"));
    }
    if let Some(pvc) = plan.pvc() {
        let name = plan.pvc_name();
        let pvcs = Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns);
        if pvcs.get_opt(&name).await.map_err(api_error(format!("reading PersistentVolumeClaim {ns}/{name}")))?.is_none() {
            let pvc: PersistentVolumeClaim = serde_json::from_value(pvc).expect("a PVC");
            pvcs.create(&pp, &pvc).await.map_err(api_error(format!("creating PersistentVolumeClaim {ns}/{name}")))?;
            created.objects.push(format!("PersistentVolumeClaim {ns}/{name}"));
        }
    }
    let notebook: DynamicObject = serde_json::from_value(plan.notebook()).expect("a Notebook is an object");
    notebook_api(client, ns)
        .create(&pp, &notebook)
        .await
        .map_err(api_error(format!("creating Notebook {ns}/{}", plan.name)))?;
    created.objects.push(format!("Notebook {ns}/{}", plan.name));
    Ok(created)
}

/// Whether a Notebook object reports a ready server (the notebook controller copies its
/// StatefulSet's ready replicas into the status, which the Jupyter web app reads too).
pub fn is_ready(notebook: &DynamicObject) -> bool {
    notebook.data.pointer("/status/readyReplicas").and_then(Value::as_i64).unwrap_or(0) >= 1
}

/// Why a server is not ready yet, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotReadyReason {
    pub reason: String,
    pub hint: String,
}

/// Reads the pod's and the PVC's status and events to say why notebook `name` is not ready: an
/// image pull, an unschedulable pod, a pending PVC, a failing init container.
pub async fn why_not_ready(client: &Client, namespace: &str, name: &str) -> Result<NotReadyReason, NotebookError> {
    let describe = format!("`kubectl -n {namespace} describe pod {name}-0`");
    let pod = Api::<Pod>::namespaced(client.clone(), namespace)
        .get_opt(&format!("{name}-0"))
        .await
        .map_err(api_error(format!("reading Pod {namespace}/{name}-0")))?;
    let pvc_name = format!("{name}-workspace");
    let pvc = Api::<PersistentVolumeClaim>::namespaced(client.clone(), namespace)
        .get_opt(&pvc_name)
        .await
        .map_err(api_error(format!("reading PersistentVolumeClaim {namespace}/{pvc_name}")))?;
    let pvc_pending = pvc.as_ref().is_some_and(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Pending"));
    let Some(pod) = pod else {
        // The StatefulSet may exist and fail to make its pod (a quota, a missing ServiceAccount).
        let events = Api::<Event>::namespaced(client.clone(), namespace)
            .list(&ListParams::default().fields(&format!("involvedObject.kind=StatefulSet,involvedObject.name={name}")))
            .await
            .map(|l| l.items)
            .unwrap_or_default();
        let failed = events
            .into_iter()
            .filter(|e| e.type_.as_deref() == Some("Warning"))
            .max_by_key(|e| e.last_timestamp.clone().map(|t| t.0))
            .and_then(|e| e.message);
        if let Some(message) = failed {
            return Ok(NotReadyReason {
                reason: format!("StatefulSet {namespace}/{name} cannot create its pod: {message}"),
                hint: format!("`kubectl -n {namespace} describe statefulset {name}` shows its events"),
            });
        }
        return Ok(NotReadyReason {
            reason: format!("the notebook controller has not created pod {name}-0 yet"),
            hint: "is the notebook controller running? `kfctl status` shows the `notebooks` component".into(),
        });
    };
    let status = pod.status.unwrap_or_default();
    for c in status.init_container_statuses.iter().flatten().chain(status.container_statuses.iter().flatten()) {
        let state = c.state.clone().unwrap_or_default();
        if let Some(waiting) = state.waiting {
            let reason = waiting.reason.unwrap_or_default();
            let message = waiting.message.unwrap_or_default();
            if matches!(reason.as_str(), "ErrImagePull" | "ImagePullBackOff" | "InvalidImageName" | "ErrImageNeverPull") {
                return Ok(NotReadyReason {
                    reason: format!("image pull of {} failed ({reason}): {message}", c.image),
                    hint: format!("the node cannot pull the image: check its network and registry access; {describe} shows the kubelet's events"),
                });
            }
            if reason == "CrashLoopBackOff" {
                return Ok(NotReadyReason {
                    reason: format!("container {} keeps crashing", c.name),
                    hint: format!("`kubectl -n {namespace} logs {name}-0 -c {}` shows why", c.name),
                });
            }
        }
        if let Some(t) = state.terminated.filter(|t| t.exit_code != 0) {
            return Ok(NotReadyReason {
                reason: format!("container {} exited with code {}: {}", c.name, t.exit_code, t.message.or(t.reason).unwrap_or_default()),
                hint: format!("`kubectl -n {namespace} logs {name}-0 -c {}` shows why", c.name),
            });
        }
    }
    let unscheduled = status.conditions.iter().flatten().find(|c| c.type_ == "PodScheduled" && c.status == "False");
    if let Some(cond) = unscheduled {
        if pvc_pending {
            return Ok(pending_pvc(client, namespace, &pvc_name).await);
        }
        return Ok(NotReadyReason {
            reason: format!("pod {name}-0 is unschedulable: {}", cond.message.clone().unwrap_or_default()),
            hint: "free CPU/memory on a node or add one (the server asks for the web app's defaults); --gpu needs a node with a free GPU".into(),
        });
    }
    if pvc_pending && status.phase.as_deref() == Some("Pending") {
        return Ok(pending_pvc(client, namespace, &pvc_name).await);
    }
    let phase = status.phase.unwrap_or_else(|| "Pending".into());
    Ok(NotReadyReason {
        reason: format!("pod {name}-0 is {phase}, not ready yet"),
        hint: format!("{describe} shows its events"),
    })
}

async fn pending_pvc(client: &Client, namespace: &str, pvc: &str) -> NotReadyReason {
    let events = Api::<Event>::namespaced(client.clone(), namespace)
        .list(&ListParams::default().fields(&format!("involvedObject.kind=PersistentVolumeClaim,involvedObject.name={pvc}")))
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    let latest = events.into_iter().max_by_key(|e| e.last_timestamp.clone().map(|t| t.0)).and_then(|e| e.message);
    NotReadyReason {
        reason: format!(
            "the workspace PersistentVolumeClaim {namespace}/{pvc} is Pending{}",
            latest.map(|m| format!(": {m}")).unwrap_or_default()
        ),
        hint: format!("the default StorageClass must provision volumes; `kubectl -n {namespace} describe pvc {pvc}` shows its events"),
    }
}

/// Waits until notebook `name` is ready, reporting why not while it waits; after `timeout`, the
/// last reason is the error.
pub async fn wait_ready(client: &Client, namespace: &str, name: &str, timeout: Duration, sink: &dyn ProgressSink) -> Result<(), NotebookError> {
    let start = Instant::now();
    let api = notebook_api(client, namespace);
    loop {
        let notebook = api.get_opt(name).await.map_err(api_error(format!("reading Notebook {namespace}/{name}")))?;
        match notebook {
            Some(nb) if is_ready(&nb) => return Ok(()),
            Some(_) => {}
            None => {
                return Err(NotebookError::Api {
                    what: format!("Notebook {namespace}/{name}"),
                    reason: "it was deleted while kfctl waited for it".into(),
                });
            }
        }
        let why = why_not_ready(client, namespace, name).await?;
        if start.elapsed() >= timeout {
            return Err(NotebookError::NotReady {
                namespace: namespace.into(),
                name: name.into(),
                secs: timeout.as_secs(),
                reason: why.reason,
                hint: why.hint,
            });
        }
        sink.report(Progress::Waiting { what: format!("notebook server {namespace}/{name}"), reason: Some(why.reason) });
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Deletes notebook `name`, its workspace PVC and its codelabs ConfigMap; returns what was there.
/// The PodDefault stays: the user's other notebooks use it too.
pub async fn delete(client: &Client, namespace: &str, name: &str) -> Result<Vec<String>, NotebookError> {
    let mut deleted = Vec::new();
    let dp = DeleteParams::foreground();
    let what = format!("Notebook {namespace}/{name}");
    if was_deleted(notebook_api(client, namespace).delete(name, &dp).await).map_err(api_error(format!("deleting {what}")))? {
        deleted.push(what);
    }
    let pvc = format!("{name}-workspace");
    let what = format!("PersistentVolumeClaim {namespace}/{pvc}");
    let pvcs = Api::<PersistentVolumeClaim>::namespaced(client.clone(), namespace);
    if was_deleted(pvcs.delete(&pvc, &dp).await).map_err(api_error(format!("deleting {what}")))? {
        deleted.push(what);
    }
    let configmap = format!("{name}-codelabs");
    let what = format!("ConfigMap {namespace}/{configmap}");
    let configmaps = Api::<ConfigMap>::namespaced(client.clone(), namespace);
    if was_deleted(configmaps.delete(&configmap, &dp).await).map_err(api_error(format!("deleting {what}")))? {
        deleted.push(what);
    }
    Ok(deleted)
}

/// `Ok(true)` when deleted, `Ok(false)` when it was not there.
fn was_deleted<T>(result: Result<T, kube::Error>) -> Result<bool, kube::Error> {
    match result {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(false),
        Err(e) => Err(e),
    }
}

/// What `kfctl notebook` and the web app's "Open JupyterLab with codelabs" ask for.
#[derive(Debug, Clone)]
pub struct Request {
    pub name: String,
    /// Give the server one GPU.
    pub gpu: bool,
    /// A repository archive to take the codelabs from instead of the shipped ones.
    pub codelabs_url: Option<String>,
    /// How long to wait for the profile namespace, then for the server.
    pub timeout: Duration,
}

/// The default user's profile (namespace) and email, from the `user-namespace` component's
/// parameters (upstream's defaults when not set).
pub fn profile_of(config: &crate::config::AppConfig) -> (String, String) {
    let params = config.component("user-namespace").map(|c| c.parameters.clone()).unwrap_or_default();
    let profile = params.get("profileName").cloned().unwrap_or_else(|| DEFAULT_PROFILE.into());
    let user = params.get("user").cloned().unwrap_or_else(|| DEFAULT_USER.into());
    (profile, user)
}

/// How to sign in, never printing a password that is not upstream's well-known default.
pub fn sign_in_hint(config: &crate::config::AppConfig) -> String {
    let dex = config.component("dex").map(|c| c.parameters.clone()).unwrap_or_default();
    match (dex.get("email"), dex.contains_key("passwordHash")) {
        (None, false) => format!(
            "sign in as {DEFAULT_USER} with password 12341234 (upstream's default user; set your own with `kfctl component set dex password=...`)"
        ),
        (email, _) => format!(
            "sign in as {} with the password you set for dex (kfctl keeps only its hash)",
            email.map(String::as_str).unwrap_or(DEFAULT_USER)
        ),
    }
}

/// Makes the default user's notebook server ready with the codelabs, or reuses it: waits for the
/// profile namespace, creates what the Jupyter web app would, waits until ready. Returns
/// JupyterLab's path to the codelabs behind the gateway. Both faces (CLI, web) call this.
pub async fn open_codelabs(
    client: &Client,
    config: &crate::config::AppConfig,
    request: &Request,
    sink: &dyn ProgressSink,
) -> Result<String, anyhow::Error> {
    use anyhow::Context as _;
    let say = |text: String| sink.report(Progress::Message { text });
    let release = config.release()?;
    let (profile, user) = profile_of(config);
    let name = request.name.as_str();
    let defaults = release.notebook.clone().with_context(|| {
        format!(
            "kfctl has no notebook defaults for Kubeflow {} (its catalog has no `notebook:` section)\n  hint: kfctl notebook supports {}; \
             on this release use `kfctl open jupyter` and the web app's form",
            release.version,
            codelabs::releases()
        )
    })?;
    if config.component("user-namespace").is_none_or(|c| !c.enabled) {
        say(format!("note: the user-namespace component is not enabled; waiting for a profile namespace {profile} made otherwise"));
    }
    wait_for_namespace(client, &profile, request.timeout, sink).await?;
    check_notebook_crd(client).await?;
    if existing(client, &profile, name).await?.is_some() {
        say(format!("reusing notebook server {profile}/{name} (`kfctl notebook --delete` removes it)"));
    } else {
        let storage_class = default_storage_class(client).await?;
        let gpu = match request.gpu {
            true => Some(available_gpu(client, &defaults.gpu_vendors).await?),
            false => None,
        };
        let codelabs = match &request.codelabs_url {
            Some(url) => CodelabSource::Url(url.clone()),
            None => {
                let labs = codelabs::for_release(&release.version);
                anyhow::ensure!(
                    !labs.is_empty(),
                    "kfctl ships no codelabs for Kubeflow {}\n  hint: pass --codelabs URL (a repository archive), or use a release with codelabs: {}",
                    release.version,
                    codelabs::releases()
                );
                CodelabSource::Shipped(labs)
            }
        };
        let plan = NotebookPlan {
            name: name.to_owned(),
            app: config.name.clone(),
            namespace: profile.clone(),
            creator: user,
            defaults: defaults.clone(),
            gpu,
            workspace_pvc: storage_class.is_some(),
            codelabs,
        };
        match &storage_class {
            Some(sc) => say(format!("workspace: a {} volume on the default StorageClass {sc}", defaults.workspace_size)),
            None => say("note: the cluster has no default StorageClass: the workspace is not persistent (an emptyDir), \
                         so edits are lost when the server restarts"
                .into()),
        }
        if let Some(gpu) = &plan.gpu {
            say(format!("gpu: 1 {gpu}"));
        }
        say(format!("image: {} (the Jupyter web app's default)", defaults.image));
        for what in create(client, &plan).await?.objects {
            say(format!("created {what}"));
        }
    }
    wait_ready(client, &profile, name, request.timeout, sink).await?;
    sink.report(Progress::Finished { ok: true, summary: format!("notebook server {profile}/{name} is ready") });
    Ok(lab_path(&profile, name))
}

/// The notebook server's state for `kfctl status`: a step of the user's journey, not a component
/// that Ready depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerState {
    /// No Notebook of that name (or no Notebook CRD).
    Absent,
    Ready,
    NotReady(String),
}

/// The state of notebook `name` in `namespace`.
pub async fn server_state(client: &Client, namespace: &str, name: &str) -> Result<ServerState, NotebookError> {
    let notebook = match notebook_api(client, namespace).get_opt(name).await {
        Ok(nb) => nb,
        // No Notebook CRD: the notebooks component is not applied.
        Err(kube::Error::Api(status)) if status.code == 404 => None,
        Err(e) => return Err(api_error(format!("reading Notebook {namespace}/{name}"))(e)),
    };
    Ok(match notebook {
        None => ServerState::Absent,
        Some(nb) if is_ready(&nb) => ServerState::Ready,
        Some(_) => ServerState::NotReady(why_not_ready(client, namespace, name).await?.reason),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(workspace_pvc: bool, gpu: Option<&str>, codelabs: CodelabSource) -> NotebookPlan {
        let release = crate::registry::catalog::release("26.03").unwrap();
        NotebookPlan {
            name: "codelabs".into(),
            app: "kubeflow".into(),
            namespace: "kubeflow-user-example-com".into(),
            creator: "user@example.com".into(),
            defaults: release.notebook.clone().expect("26.03 has notebook defaults"),
            gpu: gpu.map(str::to_owned),
            workspace_pvc,
            codelabs,
        }
    }

    #[test]
    fn the_notebook_is_the_web_apps_default_with_the_pipelines_label() {
        let nb = plan(true, None, CodelabSource::Shipped(codelabs::for_release("26.03"))).notebook();
        assert_eq!(nb["metadata"]["labels"]["access-ml-pipeline"], "true");
        assert_eq!(nb["metadata"]["labels"][crate::health::JOURNEY_LABEL], "kubeflow", "the app's status lists it");
        assert_eq!(nb["metadata"]["annotations"]["notebooks.kubeflow.org/server-type"], "jupyter");
        let pod = &nb["spec"]["template"]["spec"];
        assert_eq!(pod["containers"][0]["image"], "ghcr.io/kubeflow/kubeflow/notebook-servers/jupyter-scipy:v1.10.0");
        assert_eq!(pod["containers"][0]["resources"]["requests"], json!({"cpu": "0.5", "memory": "1.0Gi"}));
        assert_eq!(pod["containers"][0]["resources"]["limits"], json!({"cpu": "0.6", "memory": "1.2Gi"}));
        assert_eq!(pod["volumes"][0]["persistentVolumeClaim"]["claimName"], "codelabs-workspace");
        assert_eq!(pod["volumes"][2]["configMap"]["name"], "codelabs-codelabs");
        assert_eq!(pod["initContainers"][0]["command"][0], "sh");
    }

    #[test]
    fn no_default_storage_class_means_an_empty_dir_and_no_pvc() {
        let p = plan(false, Some("nvidia.com/gpu"), CodelabSource::Url("https://example.com/labs.tar.gz".into()));
        let nb = p.notebook();
        let pod = &nb["spec"]["template"]["spec"];
        assert_eq!(pod["volumes"][0]["emptyDir"], json!({}));
        assert_eq!(pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"], "1");
        assert_eq!(pod["initContainers"][0]["command"][3], "https://example.com/labs.tar.gz");
        assert!(p.pvc().is_none());
        assert!(p.configmap().is_none(), "a URL needs no ConfigMap");
    }

    #[test]
    fn the_configmap_holds_every_codelab() {
        let labs = codelabs::for_release("v1.10.2");
        let cm = plan(true, None, CodelabSource::Shipped(labs.clone())).configmap().unwrap();
        assert_eq!(cm["data"].as_object().unwrap().len(), labs.len());
        assert!(cm["data"]["4-distributed-training.ipynb"].as_str().unwrap().contains("PyTorchJob"));
    }

    /// Regression: the init container was named like the server's container (the notebook's
    /// name), and the API server refused the pod ("Duplicate value").
    #[test]
    fn the_init_container_is_named_apart_from_the_server() {
        let nb = plan(true, None, CodelabSource::Shipped(codelabs::for_release("26.03"))).notebook();
        let pod = &nb["spec"]["template"]["spec"];
        assert_ne!(pod["initContainers"][0]["name"], pod["containers"][0]["name"]);
    }

    /// The init container's programs, run here as the container would run them (sh, python3).
    fn run_init(program: &str, args: &[&str], workspace: &std::path::Path, source: &std::path::Path) -> String {
        let out = std::process::Command::new(program)
            .args(args)
            .env("WORKSPACE", workspace)
            .env("CODELABS_SOURCE", source)
            .output()
            .expect("run the init program");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "{text}");
        text
    }

    #[test]
    fn the_init_container_copies_the_codelabs_once() {
        let dir = tempfile::tempdir().unwrap();
        let (source, workspace) = (dir.path().join("configmap"), dir.path().join("home"));
        std::fs::create_dir_all(&source).unwrap();
        std::fs::create_dir_all(&workspace).unwrap();
        for lab in codelabs::for_release("26.03") {
            std::fs::write(source.join(lab.file), lab.contents).unwrap();
        }
        let said = run_init("sh", &["-c", COPY_SCRIPT], &workspace, &source);
        assert!(said.contains("copied"), "{said}");
        let copied = workspace.join("codelabs/2-first-pipeline.ipynb");
        assert_eq!(std::fs::read_to_string(&copied).unwrap(), codelabs::for_release("26.03")[1].contents);
        // The user's edits survive the next start.
        std::fs::write(&copied, "edited").unwrap();
        let said = run_init("sh", &["-c", COPY_SCRIPT], &workspace, &source);
        assert!(said.contains("leaving it as it is"), "{said}");
        assert_eq!(std::fs::read_to_string(&copied).unwrap(), "edited");
    }

    #[test]
    fn the_init_container_unpacks_a_repository_archive_without_its_top_folder() {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("labs.tar.gz");
        let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(std::fs::File::create(&archive).unwrap(), Default::default()));
        for (path, body) in [("labs-main/intro.ipynb", "{}"), ("labs-main/more/data.csv", "a,b"), ("labs-main/../escape.txt", "x")] {
            let mut header = tar::Header::new_gnu();
            header.set_size(body.len() as u64);
            header.set_mode(0o644);
            // set_path refuses "..": write the name bytes as an archive from elsewhere might.
            header.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
            header.set_cksum();
            tar.append(&header, body.as_bytes()).unwrap();
        }
        tar.into_inner().unwrap().finish().unwrap();
        let workspace = dir.path().join("home");
        std::fs::create_dir_all(&workspace).unwrap();
        let url = format!("file://{}", archive.display());
        let said = run_init("python3", &["-c", DOWNLOAD_SCRIPT, &url], &workspace, dir.path());
        assert!(said.contains("unpacked"), "{said}");
        assert_eq!(std::fs::read_to_string(workspace.join("codelabs/intro.ipynb")).unwrap(), "{}");
        assert_eq!(std::fs::read_to_string(workspace.join("codelabs/more/data.csv")).unwrap(), "a,b");
        assert!(!workspace.join("escape.txt").exists() && !workspace.join("codelabs/escape.txt").exists());
        let said = run_init("python3", &["-c", DOWNLOAD_SCRIPT, &url], &workspace, dir.path());
        assert!(said.contains("leaving it as it is"), "{said}");
    }

    #[test]
    fn the_lab_path_opens_the_codelabs_folder() {
        assert_eq!(lab_path("ns", "codelabs"), "/notebook/ns/codelabs/lab/tree/codelabs");
    }
}
