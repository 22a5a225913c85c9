//! Writing a plan's pending objects as one pool instead of phase after phase: every object goes
//! as soon as what it needs is there, and at most `concurrency` writes are in flight.
//!
//! What an object waits for:
//! - a custom resource: its CRD Established (when this plan installs the CRD);
//! - a webhook configuration: the Service its webhooks call having a ready endpoint;
//! - an object a webhook intercepts (phase `intercepted`): those Services too, then every
//!   webhook configuration of the plan written and loaded by the API server.
//!
//! Everything else starts at once, in plan order (the objects that open gates, CRDs and webhook
//! servers, come first). Namespaces are written before the pool by the caller, so every
//! namespaced object has a home. The phases remain what is reported: each starts with its first
//! write and finishes with its last.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ObjectMeta, PartialObjectMeta};
use kube::runtime::wait::{Condition, conditions};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::Value;
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;

use super::{ApplyOptions, Identity, Outcome, UnreadyWebhook, WEBHOOK_INFORMER_MARGIN, WEBHOOK_REGISTRATION_SETTLE, apply_one};
use crate::discovery::KindResolver;
use crate::health::{self, EventRecorder};
use crate::plan::{PhaseName, Plan, PlannedObject};
use crate::progress::{Progress, ProgressSink};

/// What became of one object.
#[derive(Debug)]
pub(super) enum Written {
    Applied(Outcome, ObjectMeta),
    Failed(String),
    /// Not applied: a webhook that intercepts it has no ready server (the webhook's name).
    HeldBack(String),
}

/// What a pool wrote, in sum.
pub(super) struct PoolResult {
    /// Objects that did not apply.
    pub failed: usize,
    /// Webhooks whose server never got ready (what they intercept is held back).
    pub unready_webhooks: Vec<UnreadyWebhook>,
}

/// What a write needs from the cluster and the caller.
pub(super) struct Writer<'a> {
    pub client: &'a Client,
    pub resolver: &'a KindResolver,
    pub plan: &'a Plan,
    /// The objects to write, with the resourceVersion they had before (None: new).
    pub pending: &'a HashMap<Identity, Option<String>>,
    pub opts: &'a ApplyOptions,
    pub sink: &'a dyn ProgressSink,
    pub events: &'a EventRecorder<'a>,
    /// Set when the client gave up on the API server: why (the writes after it fail at once).
    pub unavailable: &'a std::sync::OnceLock<String>,
}

/// Per phase: how many of its objects this pool writes, and how far it got.
#[derive(Default)]
struct Tally {
    todo: usize,
    total: usize,
    finished: usize,
    failed: usize,
    held: usize,
    changed: usize,
    started: bool,
}

impl Writer<'_> {
    /// Write `objects` (all pending, in plan order); `done` hears of each as it finishes.
    pub async fn write(&self, objects: Vec<&PlannedObject>, done: &mut dyn FnMut(&PlannedObject, Written)) -> PoolResult {
        let mut failed = 0;
        let phases: HashMap<Identity, PhaseName> =
            self.plan.phases.iter().flat_map(|p| p.objects.iter().map(|o| (o.reference.identity(), p.name))).collect();
        let tallies: Mutex<BTreeMap<PhaseName, Tally>> = Mutex::new(BTreeMap::new());
        {
            let mut t = tallies.lock().expect("tally lock");
            for phase in &self.plan.phases {
                t.entry(phase.name).or_default().total = phase.objects.len();
            }
            for o in &objects {
                t.entry(phases[&o.reference.identity()]).or_default().todo += 1;
            }
        }
        let crds = CrdGate::start(self.client, self.plan, &objects);
        let webhooks = WebhookGate::start(self, &objects);
        let permits = Semaphore::new(self.opts.concurrency.max(1));

        // Start order: what opens the slowest gate first, then plan order. The slowest gate is a
        // webhook server's pod getting ready: the service accounts those pods run as go first
        // (before 1.21 a pod cannot be created until its service account has a token, and the
        // token controller works through new accounts in the order they come), then the servers,
        // then CRDs, then the other service accounts. Each object keeps its place in line for a
        // permit once what it waits for is there.
        let server_accounts = webhook_server_accounts(self.plan);
        let mut objects = objects;
        objects.sort_by_key(|o| {
            let r = &o.reference;
            let account = r.group.is_empty() && r.kind == "ServiceAccount";
            match phases[&r.identity()] {
                _ if account && server_accounts.contains(&(r.namespace.clone().unwrap_or_default(), r.name.clone())) => 0,
                PhaseName::WebhookServers => 1,
                PhaseName::Crds => 2,
                _ if account => 3,
                _ => 4,
            }
        });
        let mut running: FuturesUnordered<_> = objects
            .iter()
            .map(|&o| {
                let (crds, webhooks, permits, tallies) = (&crds, &webhooks, &permits, &tallies);
                let phase = phases[&o.reference.identity()];
                async move {
                    // Waiting for gates and a permit stops when kfctl is interrupted; a write
                    // already sent is not: it finishes and is recorded.
                    let ready = async {
                        if let Err(why) = crds.ready_for(o, self.opts.gate_timeout).await {
                            return Err(Written::Failed(why));
                        }
                        webhooks.ready_for(o, phase).await?;
                        Ok(permits.acquire().await.expect("semaphore open"))
                    };
                    let _permit = tokio::select! {
                        ready = ready => match ready {
                            Ok(permit) => permit,
                            Err(written) => return (o, written),
                        },
                        _ = crate::interrupt::received() => return (o, Written::Failed(crate::interrupt::NOT_STARTED.into())),
                    };
                    if crate::interrupt::requested().is_some() {
                        return (o, Written::Failed(crate::interrupt::NOT_STARTED.into()));
                    }
                    self.phase_started(tallies, phase);
                    let before = self.pending.get(&o.reference.identity()).cloned().flatten();
                    match apply_one(self.client, self.resolver, o, before, self.unavailable).await {
                        Ok((outcome, meta)) => (o, Written::Applied(outcome, meta)),
                        Err(reason) => (o, Written::Failed(reason)),
                    }
                }
            })
            .collect();

        while let Some((o, written)) = running.next().await {
            let ok = matches!(written, Written::Applied(..));
            failed += usize::from(matches!(written, Written::Failed(_)));
            if is_crd(o) {
                crds.written(&o.reference.name, ok);
            }
            if is_webhook_configuration(o) {
                webhooks.configuration_done(o, &written);
            }
            let phase = phases[&o.reference.identity()];
            let finished = {
                let mut t = tallies.lock().expect("tally lock");
                let tally = t.entry(phase).or_default();
                tally.finished += 1;
                match &written {
                    Written::Applied(outcome, _) => tally.changed += usize::from(*outcome != Outcome::Unchanged),
                    Written::Failed(_) => tally.failed += 1,
                    Written::HeldBack(_) => tally.held += 1,
                }
                (tally.finished == tally.todo).then(|| (tally.total, tally.failed, tally.held, tally.changed, tally.started))
            };
            done(o, written);
            if let Some((total, failed, held, changed, started)) = finished {
                if !started {
                    // Everything of it was held back or never got to its write.
                    self.sink.report(Progress::PhaseStarted { phase: phase.to_string(), objects: total });
                }
                self.sink.report(Progress::PhaseFinished { phase: phase.to_string(), applied: total - failed - held, changed, failed });
                if failed == 0 {
                    self.events.record(false, "PhaseApplied", &format!("phase {phase}: {} objects applied", total - held));
                }
            }
        }
        PoolResult { failed, unready_webhooks: webhooks.unready() }
    }

    fn phase_started(&self, tallies: &Mutex<BTreeMap<PhaseName, Tally>>, phase: PhaseName) {
        let (total, todo) = {
            let mut t = tallies.lock().expect("tally lock");
            let tally = t.entry(phase).or_default();
            if std::mem::replace(&mut tally.started, true) {
                return;
            }
            (tally.total, tally.todo)
        };
        self.sink.report(Progress::PhaseStarted { phase: phase.to_string(), objects: total });
        self.events.record(false, "PhaseStarted", &format!("phase {phase}: applying {todo} of {total} objects"));
    }
}

/// (namespace, name) of the service accounts the pods of the plan's webhook servers run as.
fn webhook_server_accounts(plan: &Plan) -> HashSet<(String, String)> {
    plan.phases
        .iter()
        .filter(|p| p.name == PhaseName::WebhookServers)
        .flat_map(|p| &p.objects)
        .filter_map(|o| {
            let pod = o.object.pointer("/spec/template/spec")?;
            let account = pod.get("serviceAccountName").or_else(|| pod.get("serviceAccount")).and_then(Value::as_str).unwrap_or("default");
            Some((o.reference.namespace.clone().unwrap_or_default(), account.to_owned()))
        })
        .collect()
}

fn is_webhook_configuration(o: &PlannedObject) -> bool {
    o.reference.group == "admissionregistration.k8s.io"
        && matches!(o.reference.kind.as_str(), "ValidatingWebhookConfiguration" | "MutatingWebhookConfiguration")
}

/// The CRDs of the plan, as custom resources wait for them: written by this pool (when it writes
/// them) and Established, seen by one watch over all CRDs.
struct CrdGate {
    /// (group, kind) served by a CRD of the plan -> the CRD's name.
    by_kind: HashMap<(String, String), String>,
    state: watch::Sender<CrdState>,
    watch: Option<tokio::task::AbortHandle>,
}

#[derive(Default)]
struct CrdState {
    /// CRDs this pool writes and has not finished writing.
    writing: HashSet<String>,
    failed: HashSet<String>,
    established: HashSet<String>,
}

impl CrdGate {
    fn start(client: &Client, plan: &Plan, objects: &[&PlannedObject]) -> CrdGate {
        let mut by_kind = HashMap::new();
        for crd in plan.phases.iter().flat_map(|p| &p.objects).filter(|o| is_crd(o)) {
            let field = |pointer: &str| crd.object.pointer(pointer).and_then(Value::as_str).map(str::to_owned);
            if let (Some(group), Some(kind)) = (field("/spec/group"), field("/spec/names/kind")) {
                by_kind.insert((group, kind), crd.reference.name.clone());
            }
        }
        let writing = objects.iter().filter(|o| is_crd(o)).map(|o| o.reference.name.clone()).collect();
        let (state, _) = watch::channel(CrdState { writing, ..CrdState::default() });
        let waited = objects.iter().any(|o| by_kind.contains_key(&(o.reference.group.clone(), o.reference.kind.clone())));
        let watch = waited.then(|| {
            let (client, state) = (client.clone(), state.clone());
            tokio::spawn(async move {
                let api: Api<CustomResourceDefinition> = Api::all(client);
                let mut changes = watcher(api, watcher::Config::default()).default_backoff().boxed();
                while let Some(change) = changes.next().await {
                    let Ok(watcher::Event::Apply(crd) | watcher::Event::InitApply(crd)) = change else { continue };
                    let Some(name) = crd.metadata.name.clone() else { continue };
                    if conditions::is_crd_established().matches_object(Some(&crd)) {
                        state.send_if_modified(|s| s.established.insert(name));
                    }
                }
            })
            .abort_handle()
        });
        CrdGate { by_kind, state, watch }
    }

    /// Wait until `o`'s CRD, if the plan has it, is written and Established. Err when the CRD
    /// did not apply. After `timeout` the object goes anyway: its own retries report what still
    /// fails.
    async fn ready_for(&self, o: &PlannedObject, timeout: Duration) -> Result<(), String> {
        let Some(crd) = self.by_kind.get(&(o.reference.group.clone(), o.reference.kind.clone())) else { return Ok(()) };
        let mut state = self.state.subscribe();
        let ready = |s: &CrdState| s.failed.contains(crd) || (!s.writing.contains(crd) && s.established.contains(crd));
        match tokio::time::timeout(timeout, state.wait_for(ready)).await {
            Ok(Ok(s)) if s.failed.contains(crd) => Err(format!("not applied: its CustomResourceDefinition {crd} did not apply")),
            _ => Ok(()),
        }
    }

    fn written(&self, crd: &str, ok: bool) {
        self.state.send_modify(|s| {
            s.writing.remove(crd);
            if !ok {
                s.failed.insert(crd.to_owned());
            }
        });
    }
}

fn is_crd(o: &PlannedObject) -> bool {
    o.reference.group == "apiextensions.k8s.io" && o.reference.kind == "CustomResourceDefinition"
}

impl Drop for CrdGate {
    fn drop(&mut self) {
        if let Some(watch) = &self.watch {
            watch.abort();
        }
    }
}

/// The plan's webhooks as what they intercept waits for them: an object waits for the webhooks
/// that intercept it, each with its server ready and its configuration written and loaded.
struct WebhookGate {
    /// Each Service of this pool's webhooks once waited for: Ok when it got a ready endpoint,
    /// Err with why not.
    servers: watch::Sender<HashMap<(String, String), Result<(), String>>>,
    /// Object (a configuration, or what a webhook intercepts) -> the Services it waits for,
    /// each with the webhook that calls it.
    needs: HashMap<Identity, Vec<((String, String), String)>>,
    /// The plan's webhooks that objects of this pool wait for.
    waiting: Vec<crate::plan::WebhookGate>,
    /// This pool's webhook configurations: written or not, and seen by the API server's cache.
    configurations: watch::Sender<ConfigurationState>,
    /// Object -> the webhook configurations of this pool that intercept it.
    intercepted_by: HashMap<Identity, Vec<Identity>>,
    /// The Endpoints watches, and the watch over webhook configurations that tells when the API
    /// server has them.
    tasks: Vec<tokio::task::AbortHandle>,
}

#[derive(Default)]
struct ConfigurationState {
    /// Configurations of this pool not written yet.
    writing: HashSet<Identity>,
    failed: HashSet<Identity>,
    /// Written configurations: the resourceVersion written and when the write returned.
    written: HashMap<Identity, (String, Instant)>,
    /// Every version of a webhook configuration the watch has shown, and when.
    seen: HashMap<(Identity, String), Instant>,
}

impl ConfigurationState {
    /// When the watch showed configuration `c` as written (None: not yet, or not written).
    fn loaded(&self, c: &Identity) -> Option<Instant> {
        let (version, _) = self.written.get(c)?;
        self.seen.get(&(c.clone(), version.clone())).copied()
    }
}

impl WebhookGate {
    fn start(writer: &Writer<'_>, objects: &[&PlannedObject]) -> WebhookGate {
        let plan = writer.plan;
        let configurations_written: HashSet<Identity> =
            objects.iter().filter(|o| is_webhook_configuration(o)).map(|o| o.reference.identity()).collect();
        // An object waits only for the configurations this pool writes: the others are loaded.
        let mut intercepted_by: HashMap<Identity, Vec<Identity>> = HashMap::new();
        for gate in plan.webhook_gates.iter().filter(|g| configurations_written.contains(&g.configuration.identity())) {
            for r in &gate.intercepted {
                let by = intercepted_by.entry(r.identity()).or_default();
                if !by.contains(&gate.configuration.identity()) {
                    by.push(gate.configuration.identity());
                }
            }
        }
        let watched = !configurations_written.is_empty();
        let (configurations, _) =
            watch::channel(ConfigurationState { writing: configurations_written, ..ConfigurationState::default() });
        let loaded = if watched { watch_configurations(writer.client, &configurations) } else { Vec::new() };
        // The gates of this pool's objects (the namespaces' pool has none).
        let writing: HashSet<Identity> = objects.iter().map(|o| o.reference.identity()).collect();
        let waiting: Vec<_> = plan
            .webhook_gates
            .iter()
            .filter(|g| std::iter::once(&g.configuration).chain(&g.intercepted).any(|r| writing.contains(&r.identity())))
            .cloned()
            .collect();
        let services: Vec<(String, String)> =
            waiting.iter().map(|g| g.service.clone()).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
        for (ns, name) in &services {
            let names: Vec<&str> = waiting.iter().filter(|g| g.service == (ns.clone(), name.clone())).map(|g| g.webhook.as_str()).collect();
            writer.sink.report(Progress::Message {
                text: format!("waiting for Service {ns}/{name} to have ready endpoints (webhook {})", names.join(", ")),
            });
        }
        let mut needs: HashMap<Identity, Vec<((String, String), String)>> = HashMap::new();
        for gate in &waiting {
            for r in std::iter::once(&gate.configuration).chain(&gate.intercepted).filter(|r| writing.contains(&r.identity())) {
                needs.entry(r.identity()).or_default().push((gate.service.clone(), gate.webhook.clone()));
            }
        }
        // Each Service on its own: a webhook's configuration, and what only it intercepts, go as
        // soon as its own server is ready.
        let (servers, _) = watch::channel(HashMap::new());
        let mut tasks: Vec<tokio::task::AbortHandle> = services
            .into_iter()
            .map(|service| {
                let (client, servers, timeout) = (writer.client.clone(), servers.clone(), writer.opts.gate_timeout);
                tokio::spawn(async move {
                    let unready = health::gates::services_without_endpoints(&client, std::slice::from_ref(&service), timeout).await;
                    let result = unready.into_iter().next().map_or(Ok(()), |(_, why)| Err(why));
                    servers.send_modify(|m| {
                        m.insert(service, result);
                    });
                })
                .abort_handle()
            })
            .collect();
        tasks.extend(loaded);
        WebhookGate { servers, needs, waiting, configurations, intercepted_by, tasks }
    }

    /// Wait until `o` (of `phase`) may be written; Err with what became of it instead (held
    /// back, or not applied because a configuration that intercepts it did not apply).
    async fn ready_for(&self, o: &PlannedObject, phase: PhaseName) -> Result<(), Written> {
        let configuration = is_webhook_configuration(o);
        if !configuration && phase != PhaseName::Intercepted {
            return Ok(());
        }
        let identity = o.reference.identity();
        if let Some(needs) = self.needs.get(&identity) {
            let mut servers = self.servers.subscribe();
            let servers = servers.wait_for(|m| needs.iter().all(|(service, _)| m.contains_key(service))).await.expect("gate alive");
            if let Some((_, webhook)) = needs.iter().find(|(service, _)| servers[service].is_err()) {
                return Err(Written::HeldBack(webhook.clone()));
            }
        }
        if configuration {
            return Ok(());
        }
        let Some(mine) = self.intercepted_by.get(&identity) else { return Ok(()) };
        let mut state = self.configurations.subscribe();
        let last_write = {
            let s = state.wait_for(|s| mine.iter().all(|c| !s.writing.contains(c))).await.expect("the gate outlives its waiters");
            let failed: Vec<String> =
                mine.iter().filter(|c| s.failed.contains(*c)).map(|(_, kind, _, name)| format!("{kind} {name}")).collect();
            if !failed.is_empty() {
                return Err(Written::Failed(format!(
                    "not applied: a webhook configuration that checks it did not apply ({})",
                    failed.join(", ")
                )));
            }
            mine.iter().filter_map(|c| s.written.get(c).map(|(_, at)| *at)).max()
        };
        let Some(last_write) = last_write else { return Ok(()) };
        // The API server calls a webhook once its own informer has the configuration, a moment
        // after the write returns. kfctl's watch of the configurations is fed by the same watch
        // cache at the same moment: once it shows every configuration as written, a short margin
        // covers the informer. Without that sign (no watch allowed, a slow watch) the settle time
        // after the last write has to do.
        // (A configuration held back was not written: nothing to load.)
        let all_loaded = |s: &ConfigurationState| mine.iter().all(|c| !s.written.contains_key(c) || s.loaded(c).is_some());
        let loaded = tokio::time::timeout_at(last_write + WEBHOOK_REGISTRATION_SETTLE, state.wait_for(all_loaded)).await;
        if let Ok(Ok(s)) = loaded {
            let seen = mine.iter().filter_map(|c| s.loaded(c)).max().unwrap_or(last_write);
            drop(s);
            tokio::time::sleep_until(seen + WEBHOOK_INFORMER_MARGIN).await;
        }
        Ok(())
    }

    fn configuration_done(&self, o: &PlannedObject, written: &Written) {
        self.configurations.send_modify(|s| {
            s.writing.remove(&o.reference.identity());
            match written {
                Written::Applied(_, meta) => {
                    let version = meta.resource_version.clone().unwrap_or_default();
                    s.written.insert(o.reference.identity(), (version, Instant::now()));
                }
                Written::Failed(_) => {
                    s.failed.insert(o.reference.identity());
                }
                // What it would check is held back with it.
                Written::HeldBack(_) => {}
            }
        });
    }

    fn unready(&self) -> Vec<UnreadyWebhook> {
        let servers = self.servers.borrow();
        self.waiting
            .iter()
            .filter_map(|gate| {
                let Some(Err(why)) = servers.get(&gate.service) else { return None };
                Some(UnreadyWebhook {
                    webhook: gate.webhook.clone(),
                    configuration: gate.configuration.to_string(),
                    service: format!("{}/{}", gate.service.0, gate.service.1),
                    why: why.clone(),
                })
            })
            .collect()
    }
}

impl Drop for WebhookGate {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Watch Validating- and MutatingWebhookConfigurations, recording each version shown in `state`.
fn watch_configurations(client: &Client, state: &watch::Sender<ConfigurationState>) -> Vec<tokio::task::AbortHandle> {
    ["ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"]
        .into_iter()
        .map(|kind| {
            let gvk = GroupVersionKind::gvk("admissionregistration.k8s.io", "v1", kind);
            let resource = ApiResource::from_gvk_with_plural(&gvk, &format!("{}s", kind.to_lowercase()));
            let api: Api<PartialObjectMeta<DynamicObject>> = Api::all_with(client.clone(), &resource);
            let state = state.clone();
            tokio::spawn(async move {
                let mut changes = watcher(api, watcher::Config::default()).default_backoff().boxed();
                while let Some(change) = changes.next().await {
                    let Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) = change else { continue };
                    let (Some(name), Some(version)) = (o.metadata.name, o.metadata.resource_version) else { continue };
                    let identity = ("admissionregistration.k8s.io".to_owned(), kind.to_owned(), None, name);
                    state.send_modify(|s| {
                        s.seen.entry((identity, version)).or_insert_with(Instant::now);
                    });
                }
            })
            .abort_handle()
        })
        .collect()
}
