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
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, ObjectMeta};
use kube::runtime::wait::{Condition, conditions};
use kube::runtime::watcher;
use serde_json::Value;
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;

use super::discovery::KindResolver;
use super::{ApplyOptions, Identity, Outcome, UnreadyWebhook, WEBHOOK_REGISTRATION_SETTLE, apply_one};
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

        // Start order: what opens the slowest gate first (webhook servers, with the service
        // accounts their pods need, then CRDs), then plan order. Each object keeps its place in
        // line for a permit once what it waits for is there.
        let mut objects = objects;
        objects.sort_by_key(|o| match phases[&o.reference.identity()] {
            _ if o.reference.group.is_empty() && o.reference.kind == "ServiceAccount" => 0,
            PhaseName::WebhookServers => 1,
            PhaseName::Crds => 2,
            _ => 3,
        });
        let mut running: FuturesUnordered<_> = objects
            .iter()
            .map(|&o| {
                let (crds, webhooks, permits, tallies) = (&crds, &webhooks, &permits, &tallies);
                let phase = phases[&o.reference.identity()];
                async move {
                    if let Err(why) = crds.ready_for(o, self.opts.gate_timeout).await {
                        return (o, Written::Failed(why));
                    }
                    if let Err(written) = webhooks.ready_for(o, phase).await {
                        return (o, written);
                    }
                    let _permit = permits.acquire().await.expect("semaphore open");
                    self.phase_started(tallies, phase);
                    let before = self.pending.get(&o.reference.identity()).cloned().flatten();
                    match apply_one(self.client, self.resolver, o, before).await {
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
                let mut changes = watcher(api, watcher::Config::default()).boxed();
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

/// The plan's webhooks as what they intercept waits for them: their servers ready, then every
/// webhook configuration written and given time to load.
struct WebhookGate {
    /// Set once the webhook servers' Services were waited for: which objects are held back
    /// (identity -> webhook) and the webhooks that never got a ready server.
    servers: watch::Sender<Option<Arc<ServerCheck>>>,
    /// Webhook configurations still to write, and when the last one was written.
    configurations: watch::Sender<ConfigurationState>,
    /// Object -> the webhook configurations that intercept it.
    intercepted_by: HashMap<Identity, Vec<Identity>>,
    check: Option<tokio::task::AbortHandle>,
}

#[derive(Default)]
struct ServerCheck {
    held: HashMap<Identity, String>,
    unready: Vec<UnreadyWebhook>,
}

#[derive(Default)]
struct ConfigurationState {
    left: usize,
    failed: HashSet<Identity>,
    last_write: Option<Instant>,
}

impl WebhookGate {
    fn start(writer: &Writer<'_>, objects: &[&PlannedObject]) -> WebhookGate {
        let pending = writer.pending;
        let plan = writer.plan;
        let mut intercepted_by: HashMap<Identity, Vec<Identity>> = HashMap::new();
        for gate in &plan.webhook_gates {
            for r in &gate.intercepted {
                intercepted_by.entry(r.identity()).or_default().push(gate.configuration.identity());
            }
        }
        let left = objects.iter().filter(|o| is_webhook_configuration(o)).count();
        let (configurations, _) = watch::channel(ConfigurationState { left, ..ConfigurationState::default() });
        let waiting: Vec<_> = plan
            .webhook_gates
            .iter()
            .filter(|g| std::iter::once(&g.configuration).chain(&g.intercepted).any(|r| pending.contains_key(&r.identity())))
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
        let (servers, _) = watch::channel(services.is_empty().then(|| Arc::new(ServerCheck::default())));
        let check = (!services.is_empty()).then(|| {
            let (client, servers, timeout) = (writer.client.clone(), servers.clone(), writer.opts.gate_timeout);
            let pending: HashSet<Identity> = pending.keys().cloned().collect();
            tokio::spawn(async move {
                let unready: HashMap<(String, String), String> =
                    health::gates::services_without_endpoints(&client, &services, timeout).await.into_iter().collect();
                let mut check = ServerCheck::default();
                for gate in &waiting {
                    let Some(why) = unready.get(&gate.service) else { continue };
                    check.unready.push(UnreadyWebhook {
                        webhook: gate.webhook.clone(),
                        configuration: gate.configuration.to_string(),
                        service: format!("{}/{}", gate.service.0, gate.service.1),
                        why: why.clone(),
                    });
                    for r in std::iter::once(&gate.configuration).chain(&gate.intercepted) {
                        if pending.contains(&r.identity()) {
                            check.held.entry(r.identity()).or_insert_with(|| gate.webhook.clone());
                        }
                    }
                }
                servers.send_replace(Some(Arc::new(check)));
            })
            .abort_handle()
        });
        WebhookGate { servers, configurations, intercepted_by, check }
    }

    /// Wait until `o` (of `phase`) may be written; Err with what became of it instead (held
    /// back, or not applied because a configuration that intercepts it did not apply).
    async fn ready_for(&self, o: &PlannedObject, phase: PhaseName) -> Result<(), Written> {
        let configuration = is_webhook_configuration(o);
        if !configuration && phase != PhaseName::Intercepted {
            return Ok(());
        }
        let identity = o.reference.identity();
        let check = self.server_check().await;
        if let Some(webhook) = check.held.get(&identity) {
            return Err(Written::HeldBack(webhook.clone()));
        }
        if configuration {
            return Ok(());
        }
        let mut state = self.configurations.subscribe();
        let last_write = {
            let s = state.wait_for(|s| s.left == 0).await.expect("the gate outlives its waiters");
            let failed: Vec<String> = self
                .intercepted_by
                .get(&identity)
                .into_iter()
                .flatten()
                .filter(|c| s.failed.contains(*c))
                .map(|(_, kind, _, name)| format!("{kind} {name}"))
                .collect();
            if !failed.is_empty() {
                return Err(Written::Failed(format!(
                    "not applied: a webhook configuration that checks it did not apply ({})",
                    failed.join(", ")
                )));
            }
            s.last_write
        };
        if let Some(at) = last_write {
            // The API server loads webhook configurations through its own informer, a moment
            // after the write returns; an object written in that moment would skip them.
            tokio::time::sleep_until(at + WEBHOOK_REGISTRATION_SETTLE).await;
        }
        Ok(())
    }

    async fn server_check(&self) -> Arc<ServerCheck> {
        let mut servers = self.servers.subscribe();
        let check = servers.wait_for(Option::is_some).await.expect("gate alive");
        check.clone().expect("checked")
    }

    fn configuration_done(&self, o: &PlannedObject, written: &Written) {
        self.configurations.send_modify(|s| {
            s.left = s.left.saturating_sub(1);
            match written {
                Written::Applied(..) => s.last_write = Some(Instant::now()),
                Written::Failed(_) => {
                    s.failed.insert(o.reference.identity());
                }
                // What it would check is held back with it.
                Written::HeldBack(_) => {}
            }
        });
    }

    fn unready(&self) -> Vec<UnreadyWebhook> {
        self.servers.borrow().as_ref().map(|c| c.unready.clone()).unwrap_or_default()
    }
}

impl Drop for WebhookGate {
    fn drop(&mut self) {
        if let Some(check) = &self.check {
            check.abort();
        }
    }
}
