//! Server-side apply of a plan, phase by phase: bounded parallelism, retries with backoff for
//! errors that pass, a preflight for RBAC, the inventory, pruning and deletion.

pub mod changes;
pub mod diff;
pub mod normalize;
pub mod protocol;
pub(crate) mod delete;
mod retry;
mod schedule;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt, stream};
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, ObjectMeta, Patch, PatchParams};
use serde_json::Value;

use crate::app::{ComponentObject, RenderedApp};
use crate::discovery::KindResolver;
use crate::health::{self, EventRecorder};
use crate::inventory::{self, InventoryError, applied};
use crate::plan::{
    APP_LABEL, AppTarget, FIELD_MANAGER, InventoryEntry, KindTable, PhaseName, Plan, PlanError, PlannedObject,
};
use crate::progress::{Progress, ProgressSink, StageTimes};
pub use changes::{AppDiff, FieldChange, ObjectDiff, diff_app, diff_prefetched, diff_rendered};
pub use delete::{DeleteReport, delete_target};
pub(crate) use delete::api_for;

/// An object's identity: (group, kind, namespace, name).
type Identity = (String, String, Option<String>, String);

/// How long kfctl lets the API server take to start calling a webhook configuration it just
/// wrote, before applying what that webhook intercepts, when its own watch of the configurations
/// gives no sign. No API tells when the server has it; the informer usually needs milliseconds,
/// this leaves room for a busy server.
const WEBHOOK_REGISTRATION_SETTLE: Duration = Duration::from_secs(2);

/// How long after kfctl's watch showed a written webhook configuration the API server's own
/// informer (fed by the same watch cache at the same moment) is given to have it too.
const WEBHOOK_INFORMER_MARGIN: Duration = Duration::from_millis(300);

/// How an apply runs.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// Delete objects recorded in the inventory that are no longer rendered.
    pub prune: bool,
    /// Objects applied at once within a phase.
    pub concurrency: usize,
    /// How long a gate (CRDs Established, webhook endpoints ready) may take before kfctl goes on
    /// and lets per-object retries deal with what still fails.
    pub gate_timeout: Duration,
    /// The Kubernetes versions the app's release supports, for the API preflight's messages
    /// (None: an app kfctl has no catalog range for).
    pub release: Option<ReleaseRange>,
}

/// The Kubernetes versions a Kubeflow release supports (from its catalog).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseRange {
    /// The Kubeflow release, e.g. `26.03`.
    pub release: String,
    pub support: &'static crate::platform::releases::KubernetesSupport,
}

impl ReleaseRange {
    /// The range of a release kfctl has a catalog for.
    pub fn of(version: &str) -> Option<ReleaseRange> {
        crate::platform::releases::support(version).map(|support| ReleaseRange { release: version.to_string(), support })
    }
}

/// An API the plan uses that the cluster does not serve, with the objects that use it.
#[derive(Debug, Clone)]
pub struct MissingApi {
    /// `autoscaling/v2 HorizontalPodAutoscaler`
    pub api: String,
    /// `namespace/name` (or `name`) of each object that uses it.
    pub objects: Vec<String>,
}

/// An object held back because a webhook that intercepts it has no ready server.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HeldBack {
    pub component: String,
    pub object: String,
    /// The webhook it waited for.
    pub webhook: String,
}

/// A webhook whose Service got no ready endpoint within the gate timeout.
#[derive(Debug, Clone, serde::Serialize)]
pub struct UnreadyWebhook {
    pub webhook: String,
    /// The configuration registering it (`ValidatingWebhookConfiguration.admissionregistration.k8s.io name`).
    pub configuration: String,
    /// `namespace/name` of the Service it calls.
    pub service: String,
    pub why: String,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions { prune: true, concurrency: 16, gate_timeout: Duration::from_secs(300), release: None }
    }
}

/// What happened to one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Created,
    Configured,
    Unchanged,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Created => "created",
            Outcome::Configured => "configured",
            Outcome::Unchanged => "unchanged",
        }
    }
}

/// An object that did not apply, with the API server's reason.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FailedObject {
    pub component: String,
    pub object: String,
    pub reason: String,
}

/// The result of one apply.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ApplyReport {
    pub created: usize,
    pub configured: usize,
    pub unchanged: usize,
    pub failed: Vec<FailedObject>,
    /// Phases not started because an earlier phase failed, with their object counts.
    pub not_attempted: Vec<(String, usize)>,
    /// Webhooks whose server never got ready, and the objects held back for them (never applied,
    /// so nothing they intercept went in unchecked).
    pub unready_webhooks: Vec<UnreadyWebhook>,
    pub held_back: Vec<HeldBack>,
    pub pruned: Vec<String>,
    /// Objects that left the config but were kept (CRDs, PVCs, objects no longer kfctl's).
    pub kept: Vec<String>,
    /// Whether the apply wrote anything at all (objects, prune, inventory).
    pub wrote: bool,
}

impl ApplyReport {
    /// One line for a person.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{} created, {} configured, {} unchanged, {} failed, {} pruned",
            self.created,
            self.configured,
            self.unchanged,
            self.failed.len(),
            self.pruned.len()
        );
        if !self.held_back.is_empty() {
            s.push_str(&format!(", {} held back", self.held_back.len()));
        }
        if !self.not_attempted.is_empty() {
            let n: usize = self.not_attempted.iter().map(|(_, n)| n).sum();
            s.push_str(&format!(", {n} not attempted"));
        }
        s
    }
}

/// Where a run that applies (`kfctl deploy`, `kfctl upgrade`) stopped on Ctrl-C or SIGTERM.
#[derive(Debug)]
pub enum Interruption {
    /// Before this step (`creating or reaching the cluster`, `applying`): it did not start.
    Before(&'static str),
    /// While applying: what the apply did (its report lists what was not started).
    Applying(Result<ApplyReport, ApplyError>),
    /// Everything was applied; while waiting until every component is ready.
    Waiting,
}

impl std::fmt::Display for Interruption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Interruption::Before(step) => write!(f, "before {step}"),
            Interruption::Applying(Ok(report)) => write!(f, "after the last write: {}", report.summary()),
            Interruption::Applying(Err(_)) => f.write_str("while applying"),
            Interruption::Waiting => f.write_str("while waiting until every component is ready; everything was applied"),
        }
    }
}

/// Why an apply (or delete) stopped.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("API discovery failed: {reason}\n  hint: check that the cluster is reachable (`kubectl get --raw /api`)")]
    Discovery { reason: String },
    #[error(transparent)]
    Inventory(#[from] InventoryError),
    #[error("not allowed to apply; nothing was changed:\n{}\n  hint: ask a cluster admin for these permissions (kfctl needs to create and patch every kind it installs), or use a context with more rights (--context)", denials.iter().map(|d| format!("  - {d}")).collect::<Vec<_>>().join("\n"))]
    Forbidden { denials: Vec<String> },
    #[error("{}", failed_text(report))]
    Failed { report: Box<ApplyReport> },
    #[error("cannot reach the API server: {reason}")]
    Api { reason: String },
    #[error("{}", unavailable_text(reason, report))]
    Unavailable { reason: String, report: Box<ApplyReport> },
    #[error("{}", missing_apis_text(missing, server, release.as_ref()))]
    ApisNotServed { missing: Vec<MissingApi>, server: String, release: Option<ReleaseRange> },
}

/// The message of [`ApplyError::ApisNotServed`].
fn missing_apis_text(missing: &[MissingApi], server: &str, release: Option<&ReleaseRange>) -> String {
    let mut text = format!(
        "the cluster does not serve {} API{} that the app uses; nothing was applied:",
        missing.len(),
        if missing.len() == 1 { "" } else { "s" }
    );
    for m in missing {
        let shown: Vec<&str> = m.objects.iter().take(4).map(String::as_str).collect();
        let more = m.objects.len().saturating_sub(shown.len());
        let more = if more > 0 { format!(" and {more} more") } else { String::new() };
        text.push_str(&format!("\n  - {} ({} object{}: {}{more})", m.api, m.objects.len(), if m.objects.len() == 1 { "" } else { "s" }, shown.join(", ")));
    }
    match release {
        Some(r) => text.push_str(&format!(
            "\n  the server is Kubernetes {server}; Kubeflow {} supports Kubernetes {}\n  hint: use a cluster in that range (`kfctl deploy --platform kind` creates one), or an older Kubeflow release (`kfctl init --version`)",
            r.release,
            r.support.range()
        )),
        None => text.push_str(&format!(
            "\n  the server is Kubernetes {server}\n  hint: use a newer cluster, or install the CRDs that define these kinds first"
        )),
    }
    text
}

/// The message of [`ApplyError::Failed`]: unready webhooks with what they held back, then objects
/// the API server refused, then the phases not attempted, then what to do.
fn failed_text(report: &ApplyReport) -> String {
    let mut parts = Vec::new();
    for w in &report.unready_webhooks {
        let held: Vec<String> = report
            .held_back
            .iter()
            .filter(|h| h.webhook == w.webhook)
            .map(|h| format!("  - {} [{}]", h.object, h.component))
            .collect();
        parts.push(format!(
            "webhook {} ({}) is not serving: Service {} has {}; not applied, so nothing it intercepts goes in unchecked ({} object(s)):\n{}",
            w.webhook,
            w.configuration,
            w.service,
            w.why,
            held.len(),
            held.join("\n")
        ));
    }
    if !report.failed.is_empty() {
        let lines: Vec<String> =
            report.failed.iter().map(|f| format!("  - {} [{}]: {}", f.object, f.component, f.reason)).collect();
        parts.push(format!("{} object(s) did not apply:\n{}", report.failed.len(), lines.join("\n")));
    }
    let mut text = parts.join("\n");
    text.push_str(&format!("\n  ({}){}", report.summary(), not_attempted_text(report)));
    if let Some(w) = report.unready_webhooks.first() {
        let namespace = w.service.split_once('/').map_or("", |(ns, _)| ns);
        let rest = if report.failed.is_empty() && report.not_attempted.is_empty() { ", everything else was" } else { "" };
        text.push_str(&format!(
            "\n  hint: check the webhook server's pods and Endpoints (`kubectl get pods,endpoints -n {namespace}`), then run `kfctl apply` again; the objects above were not applied{rest}"
        ));
    } else {
        text.push_str("\n  hint: fix the cause and run `kfctl apply` again; objects already applied stay as they are");
    }
    text
}

/// The message of [`ApplyError::Unavailable`]: why kfctl stopped, what it applied before, how to
/// finish.
fn unavailable_text(reason: &str, report: &ApplyReport) -> String {
    let applied = report.created + report.configured + report.unchanged;
    let (not_applied, other): (Vec<&FailedObject>, Vec<&FailedObject>) = report.failed.iter().partition(|f| f.reason == reason);
    let not_attempted: usize = report.not_attempted.iter().map(|(_, n)| n).sum();
    let mut text = format!(
        "{reason}\n  stopped: {applied} object(s) applied before kfctl stopped waiting ({} created, {} configured, {} unchanged), {} not applied",
        report.created,
        report.configured,
        report.unchanged,
        not_applied.len() + not_attempted + report.held_back.len()
    );
    for f in other {
        text.push_str(&format!("\n  - {} [{}]: {}", f.object, f.component, f.reason));
    }
    text.push_str("\n  hint: run `kfctl apply` again once the API server answers (`kubectl get --raw /readyz`); it resumes where this run stopped, and finds every object this run wrote by the app's label");
    text
}

fn not_attempted_text(report: &ApplyReport) -> String {
    if report.not_attempted.is_empty() {
        return String::new();
    }
    let phases: Vec<String> = report.not_attempted.iter().map(|(p, n)| format!("{p} ({n})")).collect();
    format!("\n  not attempted, because an earlier phase failed: {}", phases.join(", "))
}

/// The plan kfctl applies for `target`: the rendered objects plus the Application CRD and
/// Application, labelled, with port protocols defaulted. Without a cluster, pass
/// [`KindTable::builtin`] (custom kinds are then placed by whether they carry a namespace).
pub fn plan_for(target: &AppTarget, rendered: &RenderedApp, kinds: &KindTable) -> Result<Plan, PlanError> {
    let mut objects = rendered.objects.clone();
    objects.extend(health::application::objects(target, &rendered.objects));
    prepare_plan(target, &objects, kinds)
}

fn prepare_plan(target: &AppTarget, objects: &[ComponentObject], kinds: &KindTable) -> Result<Plan, PlanError> {
    let mut plan = Plan::build(&target.name, objects, kinds)?;
    for phase in &mut plan.phases {
        for o in &mut phase.objects {
            protocol::default_port_protocols(&mut o.object);
            normalize::server_equivalent(&mut o.object);
        }
    }
    Ok(plan)
}

/// Apply an app's rendered objects to the cluster as one ordered, gated pass (see [`Plan`]).
pub async fn apply_rendered(
    client: &Client,
    target: &AppTarget,
    rendered: &RenderedApp,
    opts: &ApplyOptions,
    sink: &dyn ProgressSink,
) -> Result<ApplyReport, ApplyError> {
    let mut times = StageTimes::from_env();
    let Assessment { resolver, plan, previous, desired, records, live: _, pending, prune } =
        assess(client, target, rendered, opts, sink, &mut times, None, true).await?;

    let mut report = ApplyReport::default();
    if pending.is_empty() && prune.is_empty() && previous == desired {
        for phase in &plan.phases {
            sink.report(Progress::PhaseStarted { phase: phase.name.to_string(), objects: phase.objects.len() });
            for o in &phase.objects {
                report_applied(sink, o, Outcome::Unchanged);
            }
            sink.report(Progress::PhaseFinished { phase: phase.name.to_string(), applied: phase.objects.len(), changed: 0, failed: 0 });
        }
        report.unchanged = plan.len();
        sink.report(Progress::Finished { ok: true, summary: format!("nothing to change: {}", report.summary()) });
        return Ok(report);
    }

    preflight(client, &resolver, &plan, &pending).await?;

    let events = EventRecorder::new(client.clone(), target.clone(), sink);
    let written = write_plan(client, &resolver, target, &plan, &pending, opts, sink, &events, records, previous, desired, prune, report).await;
    events.flush().await;
    times.mark("write", "");
    written
}

/// What the next apply has to do, found without writing anything: `apply_rendered` acts on it,
/// `diff_rendered` shows it, so the two never disagree about what is pending.
struct Assessment {
    resolver: KindResolver,
    plan: Plan,
    /// The inventory's entries (namespaces placed by scope) and the plan's.
    previous: Vec<InventoryEntry>,
    desired: Vec<InventoryEntry>,
    records: Records,
    /// Full live copies of the objects that were read (those no record proves unchanged).
    live: HashMap<Identity, Value>,
    /// Objects that need a write, with their live resourceVersion (None: not read, or absent).
    pending: HashMap<Identity, Option<String>>,
    /// Inventory entries that left the config (empty without `opts.prune`).
    prune: Vec<InventoryEntry>,
}

/// The first half of an apply: discovery, the inventory and the API preflight at once, the plan,
/// the records, the live reads (metadata lists where records can prove objects unchanged, full
/// reads of the rest), then which objects are pending and what is pruned. `record`: write the
/// inventory when the label scan found objects it missed (apply does, diff does not).
#[allow(clippy::too_many_arguments)]
async fn assess(
    client: &Client,
    target: &AppTarget,
    rendered: &RenderedApp,
    opts: &ApplyOptions,
    sink: &dyn ProgressSink,
    times: &mut StageTimes,
    warm: Option<Prefetched>,
    record: bool,
) -> Result<Assessment, ApplyError> {
    let (resolver, warm_group_versions, warm_inventory, warm_version, warm_metadata) = match warm {
        Some(w) => (w.resolver, w.group_versions, Some(w.inventory), Some(w.version), w.metadata),
        None => (KindResolver::new(client.clone()), BTreeSet::new(), None, None, MetadataLists::new()),
    };
    let mut objects = rendered.objects.clone();
    objects.extend(health::application::objects(target, &rendered.objects));
    let group_versions: BTreeSet<String> = objects
        .iter()
        .filter_map(|o| o.object.get("apiVersion").and_then(Value::as_str).map(str::to_owned))
        .filter(|gv| !warm_group_versions.contains(gv))
        .collect();
    // Discovery, the inventory and the server's version at once: none needs the others.
    let (discovered, inventory, version) = tokio::join!(
        resolver.refresh(group_versions),
        async {
            match warm_inventory {
                Some(inventory) => inventory,
                None => inventory::read_reconciled(client, target, record).await,
            }
        },
        async {
            match warm_version {
                Some(version) => version,
                None => client.apiserver_version().await,
            }
        },
    );
    discovered.map_err(|e| ApplyError::Discovery { reason: crate::cluster::error_chain(&e) })?;
    // Everything the app owns, by its label too (an interrupted run may not have recorded it).
    let owned = inventory?;
    owned.report(sink);
    let (mut previous, recorded) = (owned.entries, owned.applied);
    resolver.add_crds(objects.iter().map(|o| &o.object));
    check_apis_served(&resolver, &objects, version.ok(), opts.release.as_ref(), sink)?;
    let plan = prepare_plan(target, &objects, &resolver.kind_table())?;
    times.mark("discovery+inventory+plan", "");

    crate::plan::set_entry_namespaces_by_scope(&mut previous, &resolver.kind_table());
    let desired = plan.inventory();
    let hashes: HashMap<Identity, String> =
        plan.phases.iter().flat_map(|p| &p.objects).map(|o| (o.reference.identity(), applied::desired_hash(&o.object))).collect();
    // Records of this app's objects only: shared objects are not one app's (and are always read).
    let planned_keys: HashSet<String> =
        plan.phases.iter().flat_map(|p| &p.objects).filter(|o| !o.reference.is_shared()).map(applied::record_key).collect();
    let mut state = recorded.clone();
    state.retain(|key, _| planned_keys.contains(key));
    times.mark("records", &format!("{} records", recorded.len()));
    // With records, only metadata is listed: objects whose record proves them unchanged are not
    // read in full (see `applied`). Without (first apply, older inventory), every object is.
    let (live, certain) = if recorded.is_empty() {
        let live = fetch_live(client, &resolver, &plan, None).await?;
        times.mark("full lists", &format!("{} objects", live.len()));
        (live, HashSet::new())
    } else {
        let metas = fetch_metadata(client, &resolver, &plan, warm_metadata).await?;
        times.mark("metadata lists", &format!("{} objects", metas.len()));
        let tracked = applied::generation_tracked_kinds(&plan);
        let mut certain = HashSet::new();
        let mut suspects = HashSet::new();
        for o in plan.phases.iter().flat_map(|p| &p.objects).filter(|o| !o.reference.is_shared()) {
            let identity = o.reference.identity();
            let Some(meta) = metas.get(&identity) else { continue };
            let generation_tracked = tracked.contains(&(o.reference.group.clone(), o.reference.kind.clone()));
            if applied::unchanged_for_certain(recorded.get(&applied::record_key(o)), &hashes[&identity], &o.object, meta, generation_tracked) {
                certain.insert(identity);
            } else {
                suspects.insert(identity);
            }
        }
        let live = fetch_live(client, &resolver, &plan, Some(&suspects)).await?;
        times.mark("full reads", &format!("{} unchanged by record, {} read in full", certain.len(), live.len()));
        (live, certain)
    };

    // Which objects need a write at all.
    let mut pending: HashMap<Identity, Option<String>> = HashMap::new();
    for o in plan.phases.iter().flat_map(|p| &p.objects) {
        let identity = o.reference.identity();
        if certain.contains(&identity) {
            continue;
        }
        let live_obj = live.get(&identity);
        if let Some(l) = live_obj.filter(|l| diff::is_unchanged(&o.object, l)) {
            // A new fact: at this version the object is what kfctl would apply.
            let meta: Option<ObjectMeta> = l.get("metadata").and_then(|m| serde_json::from_value(m.clone()).ok());
            if let Some(record) = meta.and_then(|m| applied::record_of(hashes[&identity].clone(), &m)) {
                state.insert(applied::record_key(o), record);
            }
            continue;
        }
        let rv = live_obj.and_then(|l| l.pointer("/metadata/resourceVersion")).and_then(Value::as_str).map(str::to_owned);
        pending.insert(o.reference.identity(), rv);
    }
    let prune = if opts.prune { crate::plan::prune_set(&previous, &desired) } else { Vec::new() };
    Ok(Assessment { resolver, plan, previous, desired, records: Records { state, recorded, planned_keys, hashes }, live, pending, prune })
}

/// What an apply knows of its objects' records: the state it writes back, what it read, and the
/// keys and desired hashes of the planned objects.
struct Records {
    state: applied::AppliedState,
    recorded: applied::AppliedState,
    planned_keys: HashSet<String>,
    hashes: HashMap<Identity, String>,
}

/// Write what is pending: namespaces first, then everything else as one pool (see [`schedule`]);
/// then prune, and record the inventory and the objects' records.
#[allow(clippy::too_many_arguments)]
async fn write_plan(
    client: &Client,
    resolver: &KindResolver,
    target: &AppTarget,
    plan: &Plan,
    pending: &HashMap<Identity, Option<String>>,
    opts: &ApplyOptions,
    sink: &dyn ProgressSink,
    events: &EventRecorder<'_>,
    records: Records,
    previous: Vec<InventoryEntry>,
    desired: Vec<InventoryEntry>,
    prune: Vec<InventoryEntry>,
    mut report: ApplyReport,
) -> Result<ApplyReport, ApplyError> {
    let Records { mut state, recorded, planned_keys, hashes } = records;
    let mut components_changed: BTreeMap<String, usize> = BTreeMap::new();
    // Unchanged objects are known already; a phase with nothing to write is done at once.
    for phase in &plan.phases {
        let todo = phase.objects.iter().filter(|o| pending.contains_key(&o.reference.identity())).count();
        if todo == 0 {
            sink.report(Progress::PhaseStarted { phase: phase.name.to_string(), objects: phase.objects.len() });
        }
        for o in phase.objects.iter().filter(|o| !pending.contains_key(&o.reference.identity())) {
            report_applied(sink, o, Outcome::Unchanged);
            report.unchanged += 1;
        }
        if todo == 0 {
            sink.report(Progress::PhaseFinished { phase: phase.name.to_string(), applied: phase.objects.len(), changed: 0, failed: 0 });
        }
    }
    let mut done = |o: &PlannedObject, written: schedule::Written| match written {
        schedule::Written::Applied(outcome, meta) => {
            let identity = o.reference.identity();
            if let Some(record) = applied::record_of(hashes[&identity].clone(), &meta) {
                state.insert(applied::record_key(o), record);
            }
            match outcome {
                Outcome::Created => report.created += 1,
                Outcome::Configured => report.configured += 1,
                Outcome::Unchanged => report.unchanged += 1,
            }
            if outcome != Outcome::Unchanged {
                *components_changed.entry(o.component.clone()).or_default() += 1;
            }
            report_applied(sink, o, outcome);
        }
        schedule::Written::Failed(reason) => {
            sink.report(Progress::ObjectFailed {
                component: o.component.clone(),
                kind: o.reference.kind.clone(),
                namespace: o.reference.namespace.clone(),
                name: o.reference.name.clone(),
                reason: reason.clone(),
            });
            if reason != crate::interrupt::NOT_STARTED {
                events.record(true, "ApplyFailed", &format!("{} [{}]: {reason}", o.reference, o.component));
            }
            report.failed.push(FailedObject { component: o.component.clone(), object: o.reference.to_string(), reason });
        }
        schedule::Written::HeldBack(webhook) => {
            sink.report(Progress::Message {
                text: format!("  held back {} [{}]: webhook {webhook} is not serving", o.reference, o.component),
            });
            report.held_back.push(HeldBack { component: o.component.clone(), object: o.reference.to_string(), webhook });
        }
    };
    let unavailable = std::sync::OnceLock::new();
    let writer = schedule::Writer { client, resolver, plan, pending, opts, sink, events, unavailable: &unavailable };
    let todo = |namespaces: bool| -> Vec<&PlannedObject> {
        plan.phases
            .iter()
            .filter(|p| (p.name == PhaseName::Namespaces) == namespaces)
            .flat_map(|p| &p.objects)
            .filter(|o| pending.contains_key(&o.reference.identity()))
            .collect()
    };
    // Namespaces first: every namespaced object needs its own.
    let namespaces_failed = writer.write(todo(true), &mut done).await.failed > 0;
    // From here on the app namespace exists: record everything this apply may create, so an
    // interrupted apply can still be pruned or deleted.
    let union = union_entries(&previous, &desired);
    let mut inventory_written = previous.clone();
    if inventory::write(client, target, &inventory_written, &union).await.unwrap_or(false) {
        inventory_written = union;
    }
    let unready = if namespaces_failed { Vec::new() } else { writer.write(todo(false), &mut done).await.unready_webhooks };
    drop(done);
    report.unready_webhooks = unready;
    if let Some(reason) = unavailable.get() {
        // Nothing more reaches the server (the inventory neither): say what was applied. The next
        // apply finds what this one wrote by its label.
        sink.report(Progress::Finished { ok: false, summary: report.summary() });
        return Err(ApplyError::Unavailable { reason: reason.to_owned(), report: Box::new(report) });
    }
    if namespaces_failed {
        report.not_attempted = plan
            .phases
            .iter()
            .filter(|p| p.name != PhaseName::Namespaces)
            .map(|p| (p.name.to_string(), p.objects.iter().filter(|o| pending.contains_key(&o.reference.identity())).count()))
            .filter(|(_, n)| *n > 0)
            .collect();
    }
    for w in &report.unready_webhooks {
        let text = format!("webhook {} ({}): Service {} has {}", w.webhook, w.configuration, w.service, w.why);
        events.record(true, "WebhookNotReady", &text);
    }
    for (component, changed) in &components_changed {
        events.record(false, "ComponentApplied", &format!("component {component}: {changed} objects created or changed"));
    }
    report.wrote = true;

    if !report.failed.is_empty() || !report.held_back.is_empty() {
        // Not complete: nothing is pruned, and the inventory keeps whatever this apply may have made.
        let union = union_entries(&previous, &desired);
        inventory::write(client, target, &inventory_written, &union).await?;
        // What did apply is known for certain; a failure to record it only costs a full compare.
        state.retain(|key, _| planned_keys.contains(key));
        let _ = inventory::write_applied(client, target, &recorded, &state).await;
        events.record(true, "ApplyFailed", &report.summary());
        sink.report(Progress::Finished { ok: false, summary: report.summary() });
        return Err(ApplyError::Failed { report: Box::new(report) });
    }

    let mut kept_entries = Vec::new();
    if !prune.is_empty() {
        let outcome = delete::delete_entries(client, resolver, target, &prune, false, sink).await;
        for entry in &outcome.deleted {
            report.pruned.push(entry.reference.to_string());
        }
        for (entry, why) in &outcome.kept {
            report.kept.push(format!("{} ({why})", entry.reference));
            if why.keeps_inventory() {
                kept_entries.push(entry.clone());
            }
        }
        for (entry, reason) in &outcome.failed {
            report.failed.push(FailedObject {
                component: entry.component.clone(),
                object: entry.reference.to_string(),
                reason: format!("prune: {reason}"),
            });
            kept_entries.push(entry.clone());
        }
        if !report.pruned.is_empty() {
            events.record(false, "Pruned", &format!("pruned {} objects that left the config", report.pruned.len()));
        }
    }
    let mut final_entries = desired.clone();
    final_entries.extend(kept_entries);
    final_entries.sort();
    final_entries.dedup();
    inventory::write(client, target, &inventory_written, &final_entries).await?;
    state.retain(|key, _| planned_keys.contains(key));
    inventory::write_applied(client, target, &recorded, &state).await?;

    if !report.failed.is_empty() {
        sink.report(Progress::Finished { ok: false, summary: report.summary() });
        return Err(ApplyError::Failed { report: Box::new(report) });
    }
    events.record(false, "Applied", &format!("apply finished: {}", report.summary()));
    sink.report(Progress::Finished { ok: true, summary: report.summary() });
    Ok(report)
}

fn union_entries(a: &[InventoryEntry], b: &[InventoryEntry]) -> Vec<InventoryEntry> {
    let mut by_identity: BTreeMap<_, InventoryEntry> = BTreeMap::new();
    for e in a.iter().chain(b) {
        by_identity.insert(e.reference.identity(), e.clone());
    }
    let mut out: Vec<InventoryEntry> = by_identity.into_values().collect();
    out.sort();
    out
}

fn report_applied(sink: &dyn ProgressSink, o: &PlannedObject, outcome: Outcome) {
    sink.report(Progress::ObjectApplied {
        component: o.component.clone(),
        kind: o.reference.kind.clone(),
        namespace: o.reference.namespace.clone(),
        name: o.reference.name.clone(),
        outcome: outcome.as_str().to_owned(),
    });
}

/// The live objects of this app, one list per kind (label-selected), plus the shared objects it
/// applies (they carry no app label), keyed by identity.
///
/// With `only`, just those objects are read, one GET each (the rest are known from their records).
async fn fetch_live(
    client: &Client,
    resolver: &KindResolver,
    plan: &Plan,
    only: Option<&HashSet<Identity>>,
) -> Result<HashMap<(String, String, Option<String>, String), Value>, ApplyError> {
    // With `only`, every object wanted is read by name below: no list at all.
    let kinds = if only.is_some() { BTreeSet::new() } else { planned_kinds(plan) };
    let selector = format!("{APP_LABEL}={}", plan.app);
    let lists: Vec<Vec<Value>> = stream::iter(kinds)
        .filter_map(|(gv, kind)| async move { resolver.resolve(&gv, &kind) })
        .map(|resolved| {
            let selector = selector.clone();
            async move {
                let api: Api<DynamicObject> = Api::all_with(client.clone(), &resolved.resource);
                let list = match api.list(&ListParams::default().labels(&selector)).await {
                    Ok(list) => list,
                    // Not allowed to list cluster-wide: compare nothing, apply everything; the
                    // preflight then says precisely what this user may not do.
                    // A kind whose CRD this apply installs (404): none exist yet.
                    Err(kube::Error::Api(s)) if s.code == 403 || s.code == 404 => return Ok(Vec::new()),
                    Err(e) => return Err(e),
                };
                Ok::<_, kube::Error>(list.items.into_iter().map(|item| typed_value(item, &resolved.resource)).collect())
            }
        })
        .buffer_unordered(16)
        .try_collect()
        .await
        .map_err(|e| ApplyError::Api { reason: crate::cluster::error_chain(&e) })?;
    let one_by_one = |o: &&PlannedObject| o.reference.is_shared() || only.is_some_and(|only| only.contains(&o.reference.identity()));
    let shared: Vec<Value> = stream::iter(plan.phases.iter().flat_map(|p| &p.objects).filter(one_by_one))
        .filter_map(|o| async move { resolver.resolve(&o.reference.api_version(), &o.reference.kind).map(|r| (o, r)) })
        .map(|(o, resolved)| async move {
            let api = delete::api_for(client, &resolved, o.reference.namespace.as_deref());
            let found = match api.get_opt(&o.reference.name).await {
                Ok(found) => found,
                Err(kube::Error::Api(s)) if s.code == 403 => None,
                Err(e) => return Err(e),
            };
            Ok(found.map(|item| typed_value(item, &resolved.resource)))
        })
        .buffer_unordered(16)
        .try_filter_map(|v| async move { Ok(v) })
        .try_collect()
        .await
        .map_err(|e| ApplyError::Api { reason: crate::cluster::error_chain(&e) })?;
    // The same object comes back from every version it is served at (a CRD written as
    // apiextensions.k8s.io/v1beta1 is in the v1 list too, in v1's shape): compare each planned
    // object only with the copy read at its own apiVersion.
    let planned_versions: HashMap<(String, String, Option<String>, String), String> =
        plan.phases.iter().flat_map(|p| &p.objects).map(|o| (o.reference.identity(), o.reference.api_version())).collect();
    let mut live = HashMap::new();
    for v in lists.into_iter().flatten().chain(shared) {
        let api_version = v["apiVersion"].as_str().unwrap_or_default().to_owned();
        let group = api_version.split_once('/').map_or("", |(g, _)| g).to_owned();
        let kind = v["kind"].as_str().unwrap_or_default().to_owned();
        let ns = v.pointer("/metadata/namespace").and_then(Value::as_str).map(str::to_owned);
        let name = v.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_owned();
        let identity = (group, kind, ns, name);
        if planned_versions.get(&identity).is_some_and(|wanted| *wanted == api_version) {
            live.insert(identity, v);
        }
    }
    Ok(live)
}

/// The (apiVersion, kind) pairs the plan writes: one list request each.
fn planned_kinds(plan: &Plan) -> BTreeSet<(String, String)> {
    plan.phases.iter().flat_map(|p| &p.objects).map(|o| (o.reference.api_version(), o.reference.kind.clone())).collect()
}

/// A live object as JSON with its apiVersion and kind set: lists and GETs through a dynamic
/// `Api` leave them out of each item.
fn typed_value(item: DynamicObject, resource: &ApiResource) -> Value {
    let mut v = serde_json::to_value(item).expect("object serializes");
    v["apiVersion"] = Value::from(resource.api_version.clone());
    v["kind"] = Value::from(resource.kind.clone());
    v
}

/// Metadata-only lists by (apiVersion, kind): identity and metadata of each object listed.
type MetadataLists = HashMap<(String, String), Vec<(Identity, ObjectMeta)>>;

/// The metadata of this app's live objects, one metadata-only list per kind (label-selected),
/// keyed by identity; kinds in `known` were listed already. Shared objects are left out (they
/// carry no app label; they are read in full).
async fn fetch_metadata(client: &Client, resolver: &KindResolver, plan: &Plan, mut known: MetadataLists) -> Result<HashMap<Identity, ObjectMeta>, ApplyError> {
    let kinds = planned_kinds(plan);
    let todo: BTreeSet<(String, String)> = kinds.iter().filter(|k| !known.contains_key(*k)).cloned().collect();
    let listed = list_metadata(client, resolver, todo, &plan.app).await.map_err(|e| ApplyError::Api { reason: crate::cluster::error_chain(&e) })?;
    let known: Vec<Vec<(Identity, ObjectMeta)>> = kinds.iter().filter_map(|k| known.remove(k)).collect();
    Ok(listed.into_values().chain(known).flatten().collect())
}

/// One metadata-only list of app `app`'s objects (label-selected) per kind of `kinds`.
async fn list_metadata(
    client: &Client,
    resolver: &KindResolver,
    kinds: BTreeSet<(String, String)>,
    app: &str,
) -> Result<MetadataLists, kube::Error> {
    let selector = format!("{APP_LABEL}={app}");
    stream::iter(kinds)
        .filter_map(|(gv, kind)| async move { resolver.resolve(&gv, &kind).map(|resolved| ((gv, kind), resolved)) })
        .map(|(key, resolved)| {
            let selector = selector.clone();
            async move {
                let api: Api<DynamicObject> = Api::all_with(client.clone(), &resolved.resource);
                let list = match api.list_metadata(&ListParams::default().labels(&selector)).await {
                    Ok(list) => list,
                    // As in `fetch_live`: not allowed to list means everything is applied, and
                    // a kind not served yet has no objects.
                    Err(kube::Error::Api(s)) if s.code == 403 || s.code == 404 => return Ok((key, Vec::new())),
                    Err(e) => return Err(e),
                };
                let ar = resolved.resource;
                let items = list
                    .items
                    .into_iter()
                    .map(|item| {
                        let m = item.metadata;
                        let identity = (ar.group.clone(), ar.kind.clone(), m.namespace.clone(), m.name.clone().unwrap_or_default());
                        (identity, m)
                    })
                    .collect();
                Ok((key, items))
            }
        })
        .buffer_unordered(16)
        .try_collect()
        .await
}

/// The cluster reads of an apply that need only the app's inventory, not its render, so they can
/// run while the app renders (see [`prefetch`]).
pub struct Prefetched {
    resolver: KindResolver,
    /// The group-versions `resolver` has discovered.
    group_versions: BTreeSet<String>,
    inventory: Result<inventory::Reconciled, InventoryError>,
    version: Result<k8s_openapi::apimachinery::pkg::version::Info, kube::Error>,
    /// Metadata lists of the kinds the inventory records.
    metadata: MetadataLists,
}

/// Read what the assessment of `target` needs before its render exists: the inventory, the
/// server's version, discovery and metadata lists of the kinds the inventory records (with
/// records, these are the kinds of a no-change apply). A read that fails is left out here; the
/// assessment does it again and reports its error.
pub async fn prefetch(client: &Client, target: &AppTarget) -> Prefetched {
    let resolver = KindResolver::new(client.clone());
    // Read only: a diff records nothing, not even objects the inventory missed.
    let (inventory, version) = tokio::join!(inventory::read_reconciled(client, target, false), client.apiserver_version());
    let mut group_versions = BTreeSet::new();
    let mut metadata = MetadataLists::new();
    // Without records the assessment lists objects in full, not their metadata.
    if let Ok(inventory::Reconciled { entries, applied: recorded, .. }) = &inventory
        && !recorded.is_empty()
    {
        let gvs: BTreeSet<String> = entries.iter().map(|e| e.reference.api_version()).collect();
        if resolver.refresh(gvs.clone()).await.is_ok() {
            group_versions = gvs;
            let kinds = entries.iter().map(|e| (e.reference.api_version(), e.reference.kind.clone())).collect();
            metadata = list_metadata(client, &resolver, kinds, &target.name).await.unwrap_or_default();
        }
    }
    Prefetched { resolver, group_versions, inventory, version, metadata }
}

/// Apply one object with retries; the outcome compares resourceVersions before and after. Also
/// returns the applied object's metadata. When the client gives up on the API server, says why
/// in `unavailable`.
async fn apply_one(
    client: &Client,
    resolver: &KindResolver,
    o: &PlannedObject,
    before: Option<String>,
    unavailable: &std::sync::OnceLock<String>,
) -> Result<(Outcome, ObjectMeta), String> {
    let gv = o.reference.api_version();
    let mut backoff = retry::Backoff::new();
    loop {
        let attempt = async {
            let resolved = match resolver.resolve(&gv, &o.reference.kind) {
                Some(r) => r,
                None => {
                    // A kind from a CRD applied moments ago: look again before giving up.
                    resolver.refresh([gv.clone()]).await.map_err(retry::Failure::from_kube)?;
                    resolver.resolve(&gv, &o.reference.kind).ok_or_else(|| retry::Failure::Retry(format!(
                        "the server does not serve kind {} in {gv} (is its CRD installed?)",
                        o.reference.kind
                    )))?
                }
            };
            let api: Api<DynamicObject> = match (&o.reference.namespace, resolved.namespaced) {
                (Some(ns), true) => Api::namespaced_with(client.clone(), ns, &resolved.resource),
                (None, true) => Api::default_namespaced_with(client.clone(), &resolved.resource),
                (_, false) => Api::all_with(client.clone(), &resolved.resource),
            };
            let params = PatchParams::apply(FIELD_MANAGER).force();
            let applied = api
                .patch(&o.reference.name, &params, &Patch::Apply(&o.object))
                .await
                .map_err(retry::Failure::from_kube)?;
            Ok::<_, retry::Failure>(applied.metadata)
        };
        match attempt.await {
            Ok(meta) => {
                let outcome = match (&before, &meta.resource_version) {
                    (None, _) => Outcome::Created,
                    (Some(b), Some(a)) if b == a => Outcome::Unchanged,
                    _ => Outcome::Configured,
                };
                return Ok((outcome, meta));
            }
            Err(retry::Failure::Permanent(reason)) => return Err(reason),
            Err(retry::Failure::Unavailable(reason)) => return Err(unavailable.get_or_init(|| reason).clone()),
            Err(retry::Failure::Retry(reason)) => {
                if !backoff.wait().await {
                    return Err(format!("{reason} (gave up after {} attempts)", backoff.attempts()));
                }
                if reason.contains("could not find the requested resource") || reason.contains("404") {
                    let _ = resolver.refresh([gv.clone()]).await;
                }
            }
        }
    }
}

/// The API preflight: every apiVersion and kind the plan uses must be served by the cluster or
/// defined by a CRD in the plan; otherwise nothing is written and the error names the objects,
/// the missing APIs, the server's version and the release's range. A server outside the range
/// that serves everything gets a warning.
fn check_apis_served(
    resolver: &KindResolver,
    objects: &[ComponentObject],
    version: Option<k8s_openapi::apimachinery::pkg::version::Info>,
    release: Option<&ReleaseRange>,
    sink: &dyn ProgressSink,
) -> Result<(), ApplyError> {
    let mut missing: std::collections::BTreeMap<String, Vec<String>> = std::collections::BTreeMap::new();
    for o in objects {
        let api_version = o.object.get("apiVersion").and_then(Value::as_str).unwrap_or_default();
        let kind = o.object.get("kind").and_then(Value::as_str).unwrap_or_default();
        if resolver.resolve(api_version, kind).is_none() {
            let meta = |k: &str| o.object.pointer(&format!("/metadata/{k}")).and_then(Value::as_str);
            let name = match meta("namespace") {
                Some(ns) => format!("{ns}/{}", meta("name").unwrap_or_default()),
                None => meta("name").unwrap_or_default().to_string(),
            };
            missing.entry(format!("{api_version} {kind}")).or_default().push(name);
        }
    }
    let server = version.as_ref().map_or_else(|| "(version unknown)".to_string(), |v| v.git_version.clone());
    if !missing.is_empty() {
        let missing = missing.into_iter().map(|(api, objects)| MissingApi { api, objects }).collect();
        return Err(ApplyError::ApisNotServed { missing, server, release: release.cloned() });
    }
    // As doctor reads it: GKE reports minor "20+", k3s "21+k3s1".
    let number = crate::platform::releases::leading_number;
    let minor = |v: &k8s_openapi::apimachinery::pkg::version::Info| number(&v.major).zip(number(&v.minor));
    if let (Some(release), Some(at)) = (release, version.as_ref().and_then(minor)) {
        if !release.support.accepts(at) {
            sink.report(Progress::Message {
                text: format!(
                    "warning: Kubernetes {server} is outside what Kubeflow {} supports ({}); the cluster serves every API the app uses, so kfctl goes on",
                    release.release,
                    release.support.range()
                ),
            });
        }
    }
    Ok(())
}

/// Check, before writing anything, that the current user may write every object that needs it.
async fn preflight(
    client: &Client,
    resolver: &KindResolver,
    plan: &Plan,
    pending: &HashMap<(String, String, Option<String>, String), Option<String>>,
) -> Result<(), ApplyError> {
    let kinds = resolver.kind_table();
    let mut checks: BTreeSet<(String, String, Option<String>, &'static str)> = BTreeSet::new();
    for o in plan.phases.iter().flat_map(|p| &p.objects) {
        let Some(before) = pending.get(&o.reference.identity()) else { continue };
        let r = &o.reference;
        let info = kinds.lookup(&r.group, &r.kind);
        let resource = info.as_ref().map_or_else(|| crate::plan::guess_plural(&r.kind), |k| k.plural.clone());
        let namespace = if info.map_or(r.namespace.is_some(), |k| k.namespaced) { r.namespace.clone() } else { None };
        checks.insert((r.group.clone(), resource.clone(), namespace.clone(), "patch"));
        if before.is_none() {
            checks.insert((r.group.clone(), resource, namespace, "create"));
        }
    }
    let denials: Vec<String> = stream::iter(checks)
        .map(|(group, resource, namespace, verb)| async move {
            match health::access::can_i(client, verb, &group, &resource, namespace.as_deref()).await {
                Ok(true) => None,
                Ok(false) => Some(health::access::describe_denial(client, verb, &group, &resource, namespace.as_deref()).await),
                // The review API itself failing is not a denial; the apply will say what fails.
                Err(_) => None,
            }
        })
        .buffer_unordered(16)
        .filter_map(|d| async move { d })
        .collect()
        .await;
    if denials.is_empty() {
        Ok(())
    } else {
        let mut denials = denials;
        denials.sort();
        Err(ApplyError::Forbidden { denials })
    }
}

/// The contract other faces (`deploy`, the web app) call: apply `app`'s rendered objects as app
/// `app.config.name` with its Application in namespace `kubeflow`.
pub async fn apply_app(
    client: &Client,
    app: &crate::app::App,
    rendered: &RenderedApp,
    opts: &ApplyOptions,
    sink: &dyn ProgressSink,
) -> Result<ApplyReport, ApplyError> {
    let mut opts = opts.clone();
    opts.release = opts.release.or_else(|| ReleaseRange::of(&app.config.version));
    apply_rendered(client, &AppTarget::for_app(app), rendered, &opts, sink).await
}

/// Delete everything kfctl applied for `app` (see [`delete_target`]).
pub async fn delete_app(client: &Client, app: &crate::app::App, purge: bool, sink: &dyn ProgressSink) -> Result<DeleteReport, ApplyError> {
    delete_target(client, &AppTarget::for_app(app), purge, sink).await
}
