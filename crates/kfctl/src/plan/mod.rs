//! Ordering rendered objects into phases, webhook gates, labels, the prune set.
//!
//! `plan` is pure: it computes what to apply and in which order from the rendered objects and
//! what is known about their kinds; `apply` executes it and `health` decides readiness.

mod kinds;
mod labels;
pub mod selector;
pub mod webhooks;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::app::ComponentObject;
pub use kinds::{CrdKind, KindInfo, KindTable, guess_plural, is_builtin_group};
pub use labels::{APP_LABEL, COMPONENT_LABEL, FIELD_MANAGER, MANAGED_BY_LABEL, PART_OF_LABEL, add_labels, add_shared_labels, is_kfctl_owned};
use webhooks::{AdmissionTarget, Webhook};

/// Why the rendered objects cannot be planned.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("object #{index} of component {component:?} has no {field}\n  hint: every rendered object needs apiVersion, kind and metadata.name; check the component's kustomization")]
    MissingField { component: String, index: usize, field: &'static str },
    #[error("{object} is rendered twice, by components {first:?} and {second:?}\n  hint: remove it from one of them (or disable one component)")]
    Duplicate { object: String, first: String, second: String },
}

/// Where a namespaced object that names no namespace goes, as with kubectl and a context that
/// names none. Fixed rather than taken from the kubeconfig, so a plan does not depend on it.
pub const DEFAULT_OBJECT_NAMESPACE: &str = "default";

/// CRDs (by name) that every kfctl app on a cluster shares: the sig-apps Application CRD. One
/// app must not claim them (labels, inventory, prune, delete); `delete --purge` removes them only
/// with the last Application.
pub const SHARED_CRDS: &[&str] = &["applications.app.k8s.io"];

/// Where an app's Application, inventory and Events live unless told otherwise.
pub const DEFAULT_APP_NAMESPACE: &str = "kubeflow";

/// Which kfctl app on the cluster an operation acts on: its name (the value of [`APP_LABEL`] and
/// the Application's name) and the namespace holding its Application, inventory and Events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppTarget {
    pub name: String,
    pub namespace: String,
}

impl AppTarget {
    /// Kubeflow's own: Application `kubeflow` in namespace `kubeflow`.
    pub fn kubeflow() -> AppTarget {
        AppTarget { name: "kubeflow".into(), namespace: "kubeflow".into() }
    }

    /// An app directory's target: named after the app, Application in namespace `kubeflow`.
    pub fn for_app(app: &crate::app::App) -> AppTarget {
        AppTarget { name: app.config.name.clone(), namespace: DEFAULT_APP_NAMESPACE.into() }
    }
}

/// The identity of a Kubernetes object as kfctl tracks it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ObjectRef {
    /// API group, "" for core.
    pub group: String,
    pub version: String,
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectRef {
    /// `apiVersion` as written in manifests (`v1`, `apps/v1`).
    pub fn api_version(&self) -> String {
        if self.group.is_empty() { self.version.clone() } else { format!("{}/{}", self.group, self.version) }
    }

    /// Whether every kfctl app on the cluster shares this object (see [`SHARED_CRDS`]).
    pub fn is_shared(&self) -> bool {
        self.group == "apiextensions.k8s.io" && self.kind == "CustomResourceDefinition" && SHARED_CRDS.contains(&self.name.as_str())
    }

    /// Identity without the version: the same object is reachable through every served version.
    pub fn identity(&self) -> (String, String, Option<String>, String) {
        (self.group.clone(), self.kind.clone(), self.namespace.clone(), self.name.clone())
    }

    pub(crate) fn from_object(object: &Value) -> Result<ObjectRef, &'static str> {
        let api_version = object.get("apiVersion").and_then(Value::as_str).ok_or("apiVersion")?;
        let kind = object.get("kind").and_then(Value::as_str).ok_or("kind")?;
        let name = object.pointer("/metadata/name").and_then(Value::as_str).ok_or("metadata.name")?;
        let (group, version) = match api_version.split_once('/') {
            Some((g, v)) => (g.to_owned(), v.to_owned()),
            None => (String::new(), api_version.to_owned()),
        };
        let namespace = object.pointer("/metadata/namespace").and_then(Value::as_str).filter(|ns| !ns.is_empty());
        Ok(ObjectRef { group, version, kind: kind.to_owned(), namespace: namespace.map(str::to_owned), name: name.to_owned() })
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.group.is_empty() { self.kind.clone() } else { format!("{}.{}", self.kind, self.group) };
        match &self.namespace {
            Some(ns) => write!(f, "{kind} {ns}/{}", self.name),
            None => write!(f, "{kind} {}", self.name),
        }
    }
}

/// The phases of an apply: what each object is for, in dependency order. Namespaces are written
/// first; the other phases run side by side, each object waiting only for what it needs (its CRD
/// Established, the webhooks that check it serving; see `apply::schedule`). `delete` goes
/// through them in reverse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PhaseName {
    /// Namespaces, so every namespaced object has a home.
    Namespaces,
    /// CustomResourceDefinitions; each custom resource waits until its own is Established.
    Crds,
    /// Cluster RBAC plus service accounts, roles and bindings, so workloads start with their identity.
    Rbac,
    /// The Services that admission webhooks call and the workloads behind them (with the
    /// ConfigMaps/Secrets those pods mount).
    WebhookServers,
    /// The Validating/MutatingWebhookConfigurations, once their servers answer: each waits for
    /// its [`WebhookGate`] (the Service it calls has ready endpoints).
    Webhooks,
    /// Objects a webhook of this set intercepts: applied once the webhook can answer, so they are
    /// defaulted and validated on the first apply exactly as on every later one.
    Intercepted,
    /// Everything else.
    Rest,
}

impl PhaseName {
    pub const ALL: [PhaseName; 7] = [
        PhaseName::Namespaces,
        PhaseName::Crds,
        PhaseName::Rbac,
        PhaseName::WebhookServers,
        PhaseName::Webhooks,
        PhaseName::Intercepted,
        PhaseName::Rest,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PhaseName::Namespaces => "namespaces",
            PhaseName::Crds => "crds",
            PhaseName::Rbac => "rbac",
            PhaseName::WebhookServers => "webhook-servers",
            PhaseName::Webhooks => "webhooks",
            PhaseName::Intercepted => "intercepted",
            PhaseName::Rest => "rest",
        }
    }
}

impl fmt::Display for PhaseName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An admission webhook of the rendered set that calls a Service, with what waits for it: its
/// configuration and the planned objects whose apply would call it are applied only once the
/// Service has a ready endpoint (before that the API server would reject them, or with
/// `failurePolicy: Ignore` admit them unchecked).
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookGate {
    /// The webhook's name, e.g. `check.example.com`.
    pub webhook: String,
    /// The Validating/MutatingWebhookConfiguration that registers it.
    pub configuration: ObjectRef,
    /// The Service it calls (namespace, name).
    pub service: (String, String),
    /// The planned objects it intercepts, in plan order.
    pub intercepted: Vec<ObjectRef>,
}

/// One object to apply: labelled, with the component it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedObject {
    pub component: String,
    pub reference: ObjectRef,
    pub object: Value,
}

/// One phase of the plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Phase {
    pub name: PhaseName,
    pub objects: Vec<PlannedObject>,
}

/// The ordered plan for one app.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub app: String,
    /// Non-empty phases only, in [`PhaseName`] order.
    pub phases: Vec<Phase>,
    /// The webhooks served by a Service, each with the objects that wait for it.
    pub webhook_gates: Vec<WebhookGate>,
}

/// One object kfctl applied, as recorded in the inventory.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct InventoryEntry {
    #[serde(flatten)]
    pub reference: ObjectRef,
    pub component: String,
    pub phase: PhaseName,
}

impl Plan {
    /// Plan `objects` (rendered, in render order) of app `app`. Objects are labelled with the app
    /// and component. `kinds` says which kinds are namespaced and their resource names; CRDs in
    /// the set are added to it.
    pub fn build(app: &str, objects: &[ComponentObject], kinds: &KindTable) -> Result<Plan, PlanError> {
        let mut kinds = kinds.clone();
        kinds.add_crds(objects.iter().map(|o| &o.object));

        let mut planned = Vec::with_capacity(objects.len());
        let mut seen: HashMap<(String, String, Option<String>, String), String> = HashMap::new();
        for (index, co) in objects.iter().enumerate() {
            let mut object = co.object.clone();
            set_namespace_by_scope(&mut object, &kinds);
            let reference = ObjectRef::from_object(&object).map_err(|field| PlanError::MissingField {
                component: co.component.clone(),
                index,
                field,
            })?;
            if let Some(first) = seen.insert(reference.identity(), co.component.clone()) {
                return Err(PlanError::Duplicate { object: reference.to_string(), first, second: co.component.clone() });
            }
            if reference.is_shared() {
                add_shared_labels(&mut object);
            } else {
                add_labels(&mut object, app, &co.component);
            }
            planned.push(PlannedObject { component: co.component.clone(), reference, object });
        }

        let webhooks: Vec<(ObjectRef, Webhook)> = planned
            .iter()
            .flat_map(|p| Webhook::from_configuration(&p.object).into_iter().map(|w| (p.reference.clone(), w)))
            .collect();
        let server_services: BTreeSet<(String, String)> = webhooks.iter().filter_map(|(_, w)| w.service.clone()).collect();
        let mut intercepted_by: Vec<Vec<ObjectRef>> = vec![Vec::new(); webhooks.len()];
        let server_objects = webhook_server_objects(&planned, &server_services);
        let namespace_labels: HashMap<String, Map<String, Value>> = planned
            .iter()
            .filter(|p| p.reference.group.is_empty() && p.reference.kind == "Namespace")
            .map(|p| (p.reference.name.clone(), labels_of(&p.object).clone()))
            .collect();

        let mut by_phase: BTreeMap<PhaseName, Vec<PlannedObject>> = BTreeMap::new();
        for (i, p) in planned.into_iter().enumerate() {
            let r = &p.reference;
            let phase = match (r.group.as_str(), r.kind.as_str()) {
                ("", "Namespace") => PhaseName::Namespaces,
                ("apiextensions.k8s.io", "CustomResourceDefinition") => PhaseName::Crds,
                ("rbac.authorization.k8s.io", "ClusterRole" | "ClusterRoleBinding" | "Role" | "RoleBinding")
                | ("", "ServiceAccount") => PhaseName::Rbac,
                ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration" | "MutatingWebhookConfiguration") => {
                    PhaseName::Webhooks
                }
                _ if server_objects.contains(&i) => PhaseName::WebhookServers,
                _ => {
                    let info = kinds.lookup(&r.group, &r.kind);
                    let namespaced = info.as_ref().map_or(r.namespace.is_some(), |k| k.namespaced);
                    let resource = info.map_or_else(|| kinds::guess_plural(&r.kind), |k| k.plural);
                    let target = AdmissionTarget {
                        group: &r.group,
                        version: &r.version,
                        resource: &resource,
                        namespaced,
                        labels: labels_of(&p.object),
                        namespace_labels: r.namespace.as_ref().and_then(|ns| namespace_labels.get(ns)),
                        is_namespace: false,
                    };
                    let mut intercepted = false;
                    for (w, (_, webhook)) in webhooks.iter().enumerate() {
                        if webhook.intercepts(&target) {
                            intercepted_by[w].push(r.clone());
                            intercepted = true;
                        }
                    }
                    if intercepted { PhaseName::Intercepted } else { PhaseName::Rest }
                }
            };
            by_phase.entry(phase).or_default().push(p);
        }

        let phases = by_phase.into_iter().map(|(name, objects)| Phase { name, objects }).collect();
        let webhook_gates = webhooks
            .into_iter()
            .zip(intercepted_by)
            .filter_map(|((configuration, webhook), intercepted)| {
                Some(WebhookGate { webhook: webhook.name, configuration, service: webhook.service?, intercepted })
            })
            .collect();
        Ok(Plan { app: app.to_owned(), phases, webhook_gates })
    }

    /// Every planned object with its phase, as the inventory records them; shared objects are
    /// not one app's and are left out.
    pub fn inventory(&self) -> Vec<InventoryEntry> {
        let mut entries: Vec<InventoryEntry> = self
            .phases
            .iter()
            .flat_map(|phase| {
                phase.objects.iter().filter(|o| !o.reference.is_shared()).map(move |o| InventoryEntry {
                    reference: o.reference.clone(),
                    component: o.component.clone(),
                    phase: phase.name,
                })
            })
            .collect();
        entries.sort();
        entries
    }

    /// Number of objects in all phases.
    pub fn len(&self) -> usize {
        self.phases.iter().map(|p| p.objects.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The components of the plan, in first-seen order.
    pub fn components(&self) -> Vec<String> {
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for o in self.phases.iter().flat_map(|p| &p.objects) {
            if seen.insert(o.component.clone()) {
                out.push(o.component.clone());
            }
        }
        out
    }
}

/// What to prune: entries of the previous inventory that are no longer desired, in the order to
/// delete them (reverse phase order: the rest first, namespaces last). Shared objects, which
/// inventories written by older kfctl versions still list, are never pruned.
pub fn prune_set(previous: &[InventoryEntry], desired: &[InventoryEntry]) -> Vec<InventoryEntry> {
    let wanted: BTreeSet<_> = desired.iter().map(|e| e.reference.identity()).collect();
    let mut prune: Vec<InventoryEntry> = previous
        .iter()
        .filter(|e| !wanted.contains(&e.reference.identity()) && !e.reference.is_shared())
        .cloned()
        .collect();
    sort_for_deletion(&mut prune);
    prune
}

/// Put inventory entries written by an older kfctl, which recorded the namespace as rendered, where
/// [`Plan::build`] now puts their objects (see `set_namespace_by_scope`), so that an object whose
/// recorded namespace changed is not pruned as if it had left the config.
pub fn set_entry_namespaces_by_scope(entries: &mut [InventoryEntry], kinds: &KindTable) {
    for e in entries {
        let r = &mut e.reference;
        match kinds.namespaced(&r.group, &r.kind) {
            Some(false) => r.namespace = None,
            Some(true) if r.namespace.is_none() => r.namespace = Some(DEFAULT_OBJECT_NAMESPACE.to_owned()),
            _ => {}
        }
    }
}

/// Sort inventory entries into deletion order: reverse phase order, stable by reference.
pub fn sort_for_deletion(entries: &mut [InventoryEntry]) {
    entries.sort_by(|a, b| b.phase.cmp(&a.phase).then_with(|| a.reference.cmp(&b.reference)));
}

/// Give `object` the namespace the API server will store it under: none for a cluster-scoped kind
/// (kustomize's namespace transformer puts one on cluster-scoped custom resources, such as
/// cert-manager's ClusterIssuer, and the server ignores it), [`DEFAULT_OBJECT_NAMESPACE`] for a
/// namespaced kind that names none. Without this the inventory, the no-op check and readiness
/// would look for the object where it is not.
fn set_namespace_by_scope(object: &mut Value, kinds: &KindTable) {
    let Some(api_version) = object.get("apiVersion").and_then(Value::as_str) else { return };
    let group = api_version.split_once('/').map_or("", |(g, _)| g).to_owned();
    let Some(kind) = object.get("kind").and_then(Value::as_str).map(str::to_owned) else { return };
    let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) else { return };
    let has_namespace = metadata.get("namespace").and_then(Value::as_str).is_some_and(|ns| !ns.is_empty());
    match kinds.namespaced(&group, &kind) {
        Some(false) if metadata.contains_key("namespace") => {
            metadata.remove("namespace");
        }
        Some(true) if !has_namespace => {
            metadata.insert("namespace".into(), Value::from(DEFAULT_OBJECT_NAMESPACE));
        }
        _ => {}
    }
}

fn labels_of(object: &Value) -> &Map<String, Value> {
    static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
    object.pointer("/metadata/labels").and_then(Value::as_object).unwrap_or_else(|| EMPTY.get_or_init(Map::new))
}

/// Indexes of the objects that make up the webhook servers: the Services the webhooks call, the
/// workloads those Services select, and the ConfigMaps/Secrets those workloads' pods mount.
fn webhook_server_objects(planned: &[PlannedObject], services: &BTreeSet<(String, String)>) -> BTreeSet<usize> {
    let mut chosen = BTreeSet::new();
    let mut selectors = Vec::new();
    for (i, p) in planned.iter().enumerate() {
        let r = &p.reference;
        if r.group.is_empty() && r.kind == "Service" {
            let key = (r.namespace.clone().unwrap_or_default(), r.name.clone());
            if services.contains(&key) {
                chosen.insert(i);
                if let Some(sel) = p.object.pointer("/spec/selector").and_then(Value::as_object) {
                    selectors.push((key.0, sel.clone()));
                }
            }
        }
    }
    let mut mounted: BTreeSet<(String, &'static str, String)> = BTreeSet::new();
    for (i, p) in planned.iter().enumerate() {
        let r = &p.reference;
        if r.group != "apps" || !matches!(r.kind.as_str(), "Deployment" | "StatefulSet" | "DaemonSet") {
            continue;
        }
        let ns = r.namespace.clone().unwrap_or_default();
        let Some(pod_labels) = p.object.pointer("/spec/template/metadata/labels").and_then(Value::as_object) else {
            continue;
        };
        if selectors.iter().any(|(svc_ns, sel)| *svc_ns == ns && selector::map_selector_matches(sel, pod_labels)) {
            chosen.insert(i);
            if let Some(pod) = p.object.pointer("/spec/template/spec") {
                for (kind, name) in pod_references(pod) {
                    mounted.insert((ns.clone(), kind, name));
                }
            }
        }
    }
    for (i, p) in planned.iter().enumerate() {
        let r = &p.reference;
        if r.group.is_empty() && (r.kind == "ConfigMap" || r.kind == "Secret") {
            let kind: &'static str = if r.kind == "ConfigMap" { "ConfigMap" } else { "Secret" };
            if mounted.contains(&(r.namespace.clone().unwrap_or_default(), kind, r.name.clone())) {
                chosen.insert(i);
            }
        }
    }
    chosen
}

/// ConfigMaps and Secrets a pod spec refers to (volumes, envFrom, env valueFrom).
fn pod_references(pod: &Value) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let name = |v: Option<&Value>| v.and_then(|n| n.as_str()).map(str::to_owned);
    for vol in pod.get("volumes").and_then(Value::as_array).into_iter().flatten() {
        if let Some(n) = name(vol.pointer("/configMap/name")) {
            out.push(("ConfigMap", n));
        }
        if let Some(n) = name(vol.pointer("/secret/secretName")) {
            out.push(("Secret", n));
        }
    }
    for list in ["containers", "initContainers"] {
        for c in pod.get(list).and_then(Value::as_array).into_iter().flatten() {
            for ef in c.get("envFrom").and_then(Value::as_array).into_iter().flatten() {
                if let Some(n) = name(ef.pointer("/configMapRef/name")) {
                    out.push(("ConfigMap", n));
                }
                if let Some(n) = name(ef.pointer("/secretRef/name")) {
                    out.push(("Secret", n));
                }
            }
            for e in c.get("env").and_then(Value::as_array).into_iter().flatten() {
                if let Some(n) = name(e.pointer("/valueFrom/configMapKeyRef/name")) {
                    out.push(("ConfigMap", n));
                }
                if let Some(n) = name(e.pointer("/valueFrom/secretKeyRef/name")) {
                    out.push(("Secret", n));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
