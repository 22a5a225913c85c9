//! `kfctl upgrade`: move an app to another Kubeflow release with a plan.
//!
//! 1. **Prepare** (files only): vendor the new release next to the old one, as `kfctl init`
//!    fetches and verifies it; carry kfctl.yaml over (`carry`): renamed, removed and new
//!    components from the catalogs, the user's parameters, patches, images and variants checked
//!    against the new release; pick the migrations the catalogs list between the two releases.
//! 2. **Plan** (reads the cluster): the `kfctl diff` of the new render against the cluster, the
//!    objects to replace (a catalog migration whose immutable fields differ, or a change the API
//!    server refuses as immutable), and the manual steps.
//! 3. **Execute**: record the upgrade in kfctl.yaml (history, outcome `applying`) and as an
//!    Event, replace what must be replaced, apply in one pass with prune, wait until ready, and
//!    record the outcome.
//!
//! Ctrl-C or SIGTERM (where the face listens, see [`crate::interrupt`]) stops it between steps, or
//! stops new writes of the apply, and records the upgrade as failed, saying where it stopped.
//!
//! Interrupted at any point, `kfctl upgrade --to` the same release again finishes it: before
//! kfctl.yaml names the new release nothing on the cluster changed (the vendored copy is reused or
//! replaced); after, the open history record says where the app came from, replaces are decided
//! by the live objects again, and the apply converges. A rollback is the same path back, reading
//! the old release from the app directory while `kfctl gc` has not removed it.

pub mod carry;
pub mod gc;
pub mod storage;

use std::path::PathBuf;
use std::time::Duration;

use kube::Client;
use kube::api::DeleteParams;
use serde_json::Value;

use crate::app::{App, AppError, ReleaseSource, RenderedApp};
use crate::apply::{AppDiff, ApplyError, ApplyOptions, Interruption};
use crate::config::{AppConfig, UpgradeOutcome, UpgradeRecord};
use crate::discovery::KindResolver;
use crate::health::EventRecorder;
use crate::interrupt::Interrupt;
use crate::plan::{AppTarget, ObjectRef};
use crate::progress::{Progress, ProgressSink};
use crate::registry::catalog::{self, Migration, Release};
pub use carry::{CarryNote, Setting};

/// What `kfctl upgrade` was asked.
#[derive(Debug, Clone, Default)]
pub struct UpgradeOptions {
    /// The release to go to.
    pub to: String,
    /// Where to fetch it (default: the catalog's archive).
    pub registry: Option<String>,
    /// Its expected pin (as `kfctl init --digest`).
    pub digest: Option<String>,
    /// Read remote resources through this mirror (default: the one kfctl.yaml records).
    pub mirror: Option<String>,
    /// Drop settings that no longer apply instead of stopping.
    pub force: bool,
    /// Manual steps the user says are done.
    pub confirmed: Vec<String>,
}

/// Why an upgrade stopped.
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    #[error(transparent)]
    App(#[from] AppError),
    #[error(transparent)]
    Version(#[from] catalog::UnknownVersion),
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error(transparent)]
    Lock(Box<crate::lock::LockError>),
    #[error("the app is at Kubeflow {version} already; nothing to upgrade\n  hint: `kfctl diff` shows whether the cluster matches it, `kfctl apply` makes it so")]
    AlreadyThere { version: String },
    #[error("{} of the app's settings no longer apply to Kubeflow {to}; nothing was changed:\n{}\n  hint: adjust kfctl.yaml (or the patch files) for {to}, or pass --force to drop these settings from kfctl.yaml (patch files stay on disk)", notes.len(), notes.iter().map(|n| format!("  - {}", n.line())).collect::<Vec<_>>().join("\n"))]
    SettingsNoLongerApply { to: String, notes: Vec<CarryNote> },
    #[error("{} manual step{} must be done before the upgrade; nothing was changed:\n{}\n  hint: do {}, then run the upgrade again with {}", steps.len(), if steps.len() == 1 { "" } else { "s" }, steps.iter().map(|s| format!("  - {}: {}", s.id, s.why)).collect::<Vec<_>>().join("\n"), if steps.len() == 1 { "it" } else { "them" }, steps.iter().map(|s| format!("--confirm {}", s.id)).collect::<Vec<_>>().join(" "))]
    Unconfirmed { steps: Vec<ManualAction> },
    #[error("cannot replace {object}: {reason}\n  hint: delete it by hand (`kubectl delete {kubectl}`), then run the upgrade again")]
    Replace { object: String, kubectl: String, reason: String },
    #[error("cannot move the objects of CRD {crd} to its new stored version: {reason}\n  hint: fix the cause and run the upgrade again; objects already rewritten stay as they are")]
    Storage { crd: String, reason: String },
    #[error("the upgrade to Kubeflow {to} applied, but the app is not ready: {reason}\n  hint: `kfctl status` shows what is not ready; `kfctl upgrade --to {to}` again waits once more")]
    NotReady { to: String, reason: String },
    /// Ctrl-C or SIGTERM; `at` says where the upgrade stopped, `recorded` whether kfctl.yaml
    /// records the upgrade (it does from the moment it holds the app's lock).
    #[error("interrupted by {}, {at}", signal.name())]
    Interrupted { signal: Interrupt, at: Box<Interruption>, recorded: bool },
}

/// The interruption received, as an error that stops the upgrade before `step`.
fn stop_if_interrupted(step: &'static str) -> Result<(), UpgradeError> {
    match crate::interrupt::requested() {
        Some(signal) => Err(UpgradeError::Interrupted { signal, at: Box::new(Interruption::Before(step)), recorded: true }),
        None => Ok(()),
    }
}

/// A prepared upgrade: the new kfctl.yaml (in memory until executed) and what changed on the way.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The app as it is now.
    pub old: App,
    /// The app at the new release.
    pub new: App,
    pub from: String,
    pub to: String,
    /// A run that finishes an upgrade kfctl.yaml already records.
    pub resuming: bool,
    pub notes: Vec<CarryNote>,
    pub migrations: Vec<&'static Migration>,
    /// Whether the migrations are crossed backwards (a rollback: manual steps show their
    /// `rollback` text).
    pub rollback: bool,
    /// Manual steps confirmed, by this run's `--confirm` or an earlier one's.
    pub confirmed: Vec<String>,
    /// Paths this run vendored (removed again if the upgrade is abandoned before it is recorded).
    pub vendored: Vec<PathBuf>,
}

/// An object kfctl deletes so the upgrade can create it again.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReplaceAction {
    /// `Kind.group namespace/name`.
    pub object: String,
    /// The catalog migration's id, or none for a change the API server refused as immutable.
    pub migration: Option<String>,
    pub why: String,
    #[serde(skip)]
    target: ObjectRef,
}

/// A step the user takes.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ManualAction {
    pub id: String,
    pub why: String,
    pub instructions: String,
    pub blocking: bool,
    pub confirmed: bool,
}

/// Everything the user is shown before saying yes.
#[derive(Debug, Clone, serde::Serialize)]
pub struct UpgradePlan {
    pub app: String,
    pub from: String,
    pub to: String,
    pub resuming: bool,
    pub components: Vec<CarryNote>,
    pub replace: Vec<ReplaceAction>,
    /// CRDs whose objects kfctl moves to a new stored version first.
    pub storage: Vec<storage::StorageMigration>,
    pub manual: Vec<ManualAction>,
    pub diff: AppDiff,
}

/// `kubectl delete`'s arguments for `r`.
fn kubectl_args(r: &ObjectRef) -> String {
    let kind = r.kind.to_lowercase();
    let group = if r.group.is_empty() { String::new() } else { format!(".{}", r.group) };
    match &r.namespace {
        Some(ns) => format!("{kind}{group} {} -n {ns}", r.name),
        None => format!("{kind}{group} {}", r.name),
    }
}

fn now() -> String {
    jiff::Timestamp::now().to_string()
}

/// The open (unfinished) upgrade kfctl.yaml records, if any.
pub fn open_upgrade(config: &AppConfig) -> Option<&UpgradeRecord> {
    config.history.last().filter(|r| r.is_open())
}

/// Step 1: vendor the new release and carry kfctl.yaml over. Blocking (files, renders). Writes
/// nothing but the vendored copy, which it removes again when it stops here.
pub fn prepare(app: &App, opts: &UpgradeOptions, sink: &dyn ProgressSink) -> Result<Prepared, UpgradeError> {
    let to = catalog::release(&opts.to)?;
    let from = app.release()?;
    let open = open_upgrade(&app.config).filter(|r| same_version(&r.to, &to.version));
    if same_version(&app.config.version, &to.version) {
        let Some(record) = open else { return Err(UpgradeError::AlreadyThere { version: to.version.clone() }) };
        let origin = catalog::release(&record.from)?;
        let mut confirmed = record.confirmed.clone();
        confirmed.extend(opts.confirmed.iter().cloned());
        confirmed.sort();
        confirmed.dedup();
        sink.report(Progress::Message { text: format!("finishing the upgrade from Kubeflow {} to {} that kfctl.yaml records", origin.version, to.version) });
        return Ok(Prepared {
            old: app.clone(),
            new: app.clone(),
            from: origin.version.clone(),
            to: to.version.clone(),
            resuming: true,
            notes: Vec::new(),
            migrations: migrations_between(origin, to, &app.config),
            rollback: origin.released > to.released,
            confirmed,
            vendored: Vec::new(),
        });
    }

    // Going back to a release the app came from: its vendored copy, if `kfctl gc` left it.
    let reuse = app.config.history.iter().rev().filter(|r| same_version(&r.from, &to.version)).find_map(|r| r.from_registry.clone());
    let source = ReleaseSource {
        registry: opts.registry.clone().unwrap_or_else(|| to.default_url.clone()),
        digest: opts.digest.clone(),
        mirror: opts.mirror.clone().or_else(|| app.config.registry.mirror.clone()),
        version: Some(to.version.clone()),
    };
    let vendored = app.vendor_release(&source, reuse.as_ref().filter(|_| opts.registry.is_none()), sink)?;
    let abandon = |err: UpgradeError| {
        remove_vendored(&vendored.created);
        err
    };
    let (mut config, mut notes) = carry::carry(&app.config, from, to, vendored.registry.clone(), opts.force);
    let new = App { dir: app.dir.clone(), config: config.clone() };
    let rendered_notes = check_customisations(&new).map_err(|e| abandon(e.into()))?;
    if opts.force {
        drop_no_longer_applying(&mut config, &rendered_notes);
    }
    notes.extend(rendered_notes);
    let blocking: Vec<CarryNote> = notes.iter().filter(|n| n.blocks()).cloned().collect();
    if !blocking.is_empty() && !opts.force {
        return Err(abandon(UpgradeError::SettingsNoLongerApply { to: to.version.clone(), notes: blocking }));
    }
    if let Err(problems) = config.validate() {
        let notes = problems.into_iter().map(|why| CarryNote::NoLongerApplies { component: "kfctl.yaml".into(), settings: vec![Setting::Validation], why }).collect();
        return Err(abandon(UpgradeError::SettingsNoLongerApply { to: to.version.clone(), notes }));
    }
    let mut confirmed = opts.confirmed.clone();
    confirmed.sort();
    confirmed.dedup();
    Ok(Prepared {
        old: app.clone(),
        new: App { dir: app.dir.clone(), config },
        from: from.version.clone(),
        to: to.version.clone(),
        resuming: false,
        notes,
        migrations: migrations_between(from, to, &app.config),
        rollback: from.released > to.released,
        confirmed,
        vendored: vendored.created,
    })
}

fn same_version(a: &str, b: &str) -> bool {
    a.trim_start_matches('v') == b.trim_start_matches('v')
}

/// The catalogs' migrations an upgrade from `from` to `to` crosses, in order; for a rollback,
/// those of the releases it leaves, newest first (replace steps are decided by the live objects;
/// manual steps show only when they say what to do on the way back).
fn migrations_between(from: &'static Release, to: &'static Release, before: &AppConfig) -> Vec<&'static Migration> {
    let enabled = |name: &str| before.component(name).is_some_and(|c| c.enabled);
    let path = carry::path(from, to);
    let forward = from.released <= to.released;
    let mut out = Vec::new();
    for pair in path.windows(2) {
        let (newer, older) = if forward { (pair[1], pair[0]) } else { (pair[0], pair[1]) };
        for m in &newer.upgrade.migrations {
            let origin = if forward { from.version.as_str() } else { older.version.as_str() };
            let applies = if forward {
                m.applies(origin, &enabled)
            } else {
                // Back: the step applies if it would apply going up from where we land, and the
                // app has the component now (under its newer name or the same one).
                m.applies(&to.version, &|_| true) && (m.replace.is_some() || m.manual.as_ref().is_some_and(|s| s.rollback.is_some()))
            };
            if applies {
                out.push(m);
            }
        }
    }
    out
}

/// Render each enabled catalog component of the carried config that has patches or image
/// overrides, once as it is and once without each of them: a patch or override that changes
/// nothing (its target is gone in the new release) no longer applies; a component that no
/// longer renders with the user's settings names them.
fn check_customisations(new: &App) -> Result<Vec<CarryNote>, AppError> {
    let mut notes = Vec::new();
    for c in new.config.components.iter().filter(|c| c.enabled && c.path.is_none()) {
        if c.patches.is_empty() && c.images.is_empty() {
            continue;
        }
        let full = match new.render_component(c) {
            Ok(objects) => objects,
            Err(AppError::Render { message, .. }) => {
                let mut settings: Vec<Setting> = c.patches.iter().map(|p| Setting::Patch(p.path.clone())).collect();
                settings.extend(c.images.iter().map(|i| Setting::ImageOverride(i.name.clone())));
                notes.push(CarryNote::NoLongerApplies {
                    component: c.name.clone(),
                    settings,
                    why: format!("the component no longer renders with them: {message}"),
                });
                continue;
            }
            Err(e) => return Err(e),
        };
        for i in 0..c.patches.len() {
            let mut without = c.clone();
            let patch = without.patches.remove(i);
            if new.render_component(&without).is_ok_and(|objects| objects == full) {
                let target = patch.target.as_ref().map(|t| format!(" (target {})", serde_json::to_string(t).unwrap_or_default())).unwrap_or_default();
                notes.push(CarryNote::NoLongerApplies {
                    component: c.name.clone(),
                    settings: vec![Setting::Patch(patch.path.clone())],
                    why: format!("it changes nothing in Kubeflow {}{target}: what it patches is gone", new.config.version),
                });
            }
        }
        for i in 0..c.images.len() {
            let mut without = c.clone();
            let image = without.images.remove(i);
            if new.render_component(&without).is_ok_and(|objects| objects == full) {
                notes.push(CarryNote::NoLongerApplies {
                    component: c.name.clone(),
                    settings: vec![Setting::ImageOverride(image.name.clone())],
                    why: format!("no object of {} in Kubeflow {} uses the image {}", c.name, new.config.version, image.name),
                });
            }
        }
    }
    Ok(notes)
}

/// With `--force`: remove the patches and image overrides the render found inert, or that the
/// component no longer renders with.
fn drop_no_longer_applying(config: &mut AppConfig, notes: &[CarryNote]) {
    for note in notes {
        let CarryNote::NoLongerApplies { component, settings, .. } = note else { continue };
        let Some(c) = config.component_mut(component) else { continue };
        for setting in settings {
            match setting {
                Setting::Patch(path) => c.patches.retain(|p| p.path != *path),
                Setting::ImageOverride(image) => c.images.retain(|i| i.name != *image),
                // Carrying kfctl.yaml over dropped these already.
                Setting::Parameter(_) | Setting::Variant(_) | Setting::Validation => {}
            }
        }
    }
}

/// Step 2: what the upgrade will do on the cluster. Reads only.
pub async fn plan(client: &Client, target: &AppTarget, prepared: &Prepared, rendered: &RenderedApp, opts: &ApplyOptions) -> Result<UpgradePlan, UpgradeError> {
    let diff = crate::apply::diff_rendered(client, target, rendered, opts).await?;
    let resolver = KindResolver::new(client.clone());
    let mut replace: Vec<ReplaceAction> = Vec::new();
    let mut manual = Vec::new();
    for m in &prepared.migrations {
        if let Some(step) = &m.replace {
            let Some(desired) = find_rendered(rendered, &step.kind, &step.name, step.namespace.as_deref()) else { continue };
            let Ok(target) = ObjectRef::from_object(desired) else { continue };
            let Some(live) = read_live(client, &resolver, &target).await? else { continue };
            if step.fields.iter().any(|f| desired.get(f) != live.get(f)) {
                replace.push(ReplaceAction { object: target.to_string(), migration: Some(m.id.clone()), why: m.why.clone(), target });
            }
        }
        if let Some(step) = &m.manual {
            let instructions = if prepared.rollback { step.rollback.clone().unwrap_or_default() } else { step.instructions.clone() };
            manual.push(ManualAction {
                id: m.id.clone(),
                why: m.why.clone(),
                instructions,
                blocking: step.blocking && !prepared.rollback,
                confirmed: prepared.confirmed.contains(&m.id),
            });
        }
    }
    // Changes the API server refuses to make in place, which no catalog foresaw: an immutable
    // field, or an update it finds invalid though a fresh object is not (removing a probe leaves
    // its defaulted fields behind). Workloads, Services and bindings are recreated; an object
    // that holds data or other objects never is: the user decides.
    // (A CRD refused for its stored versions is the storage migration's.)
    let storage = storage::find(client, rendered).await.map_err(|e| UpgradeError::Apply(ApplyError::Api { reason: crate::cluster::error_chain(&e) }))?;
    let migrated: Vec<String> = storage.iter().map(|m| format!("CustomResourceDefinition.apiextensions.k8s.io {}", m.crd)).collect();
    let refused = diff.replace.iter().chain(diff.change.iter().filter(|d| d.reason.as_deref().is_some_and(refused_as_invalid)));
    for d in refused {
        if replace.iter().any(|r| r.object == d.object) || migrated.contains(&d.object) {
            continue;
        }
        let Some(target) = rendered.objects.iter().filter_map(|o| ObjectRef::from_object(&o.object).ok()).find(|r| r.to_string() == d.object) else { continue };
        let reason = d.reason.as_deref().unwrap_or("a field is immutable");
        if RECREATED_KINDS.contains(&target.kind.as_str()) {
            let why = format!("the API server refuses the change in place: {reason}");
            replace.push(ReplaceAction { object: d.object.clone(), migration: None, why, target });
        } else {
            manual.push(ManualAction {
                id: format!("replace-{}-{}", target.kind.to_lowercase(), target.name),
                why: format!("the API server refuses to change {} in place ({reason}), and kfctl does not delete a {} for you", d.object, target.kind),
                instructions: format!("Keep what it holds (back it up), delete it (`kubectl delete {}`), and confirm: the upgrade creates it anew.", kubectl_args(&target)),
                blocking: true,
                confirmed: prepared.confirmed.iter().any(|c| *c == format!("replace-{}-{}", target.kind.to_lowercase(), target.name)),
            });
        }
    }
    Ok(UpgradePlan {
        app: prepared.new.config.name.clone(),
        from: prepared.from.clone(),
        to: prepared.to.clone(),
        resuming: prepared.resuming,
        components: prepared.notes.clone(),
        replace,
        storage,
        manual,
        diff,
    })
}

/// Kinds an upgrade deletes and creates again when the API server refuses to change them in
/// place: nothing of the user's lives in them (pods are recreated by their controllers anyway).
const RECREATED_KINDS: &[&str] = &["Deployment", "StatefulSet", "DaemonSet", "Job", "Service", "RoleBinding", "ClusterRoleBinding", "PodDisruptionBudget"];

/// A dry-run refusal of an update as invalid (the API server's 422 says "KIND NAME is invalid: ..."),
/// as `kfctl diff` reports it.
fn refused_as_invalid(reason: &str) -> bool {
    reason.contains(" is invalid: ")
}

fn find_rendered<'a>(rendered: &'a RenderedApp, kind: &str, name: &str, namespace: Option<&str>) -> Option<&'a Value> {
    rendered.objects.iter().map(|o| &o.object).find(|o| {
        o.get("kind").and_then(Value::as_str) == Some(kind)
            && o.pointer("/metadata/name").and_then(Value::as_str) == Some(name)
            && namespace.is_none_or(|ns| o.pointer("/metadata/namespace").and_then(Value::as_str) == Some(ns))
    })
}

async fn read_live(client: &Client, resolver: &KindResolver, target: &ObjectRef) -> Result<Option<Value>, UpgradeError> {
    let api_err = |e: kube::Error| UpgradeError::Apply(ApplyError::Api { reason: crate::cluster::error_chain(&e) });
    resolver.refresh([target.api_version()]).await.map_err(api_err)?;
    let Some(resolved) = resolver.resolve(&target.api_version(), &target.kind) else { return Ok(None) };
    let api = crate::apply::api_for(client, &resolved, target.namespace.as_deref());
    match api.get_opt(&target.name).await {
        Ok(found) => Ok(found.map(|o| serde_json::to_value(o).unwrap_or_default())),
        Err(e) => Err(api_err(e)),
    }
}

impl UpgradePlan {
    /// Manual steps that stop the upgrade until confirmed.
    pub fn unconfirmed(&self) -> Vec<ManualAction> {
        self.manual.iter().filter(|m| m.blocking && !m.confirmed).cloned().collect()
    }

    /// The plan as a person reads it. `full_diff`: every field change, not one line per component.
    pub fn text(&self, full_diff: bool) -> String {
        let mut out = String::new();
        let verb = if self.resuming { "Finishing the upgrade" } else { "Upgrade" };
        out.push_str(&format!("{verb} of app {}: Kubeflow {} -> {}\n", self.app, self.from, self.to));
        if !self.components.is_empty() {
            out.push_str("\nComponents:\n");
            for note in &self.components {
                out.push_str(&format!("  {}\n", note.line()));
            }
        }
        out.push_str("\nMigrations:\n");
        if self.replace.is_empty() && self.manual.is_empty() && self.storage.is_empty() {
            out.push_str("  none\n");
        }
        for m in &self.storage {
            out.push_str(&format!("  {}\n", m.line()));
        }
        for r in &self.replace {
            let id = r.migration.as_deref().map(|id| format!(" ({id})")).unwrap_or_default();
            out.push_str(&format!("  kfctl deletes and recreates {}{id}: {}\n", r.object, r.why));
        }
        for m in &self.manual {
            let state = match (m.blocking, m.confirmed) {
                (_, true) => "done (confirmed)",
                (true, false) => "you, BEFORE the upgrade (blocking)",
                (false, false) => "you",
            };
            out.push_str(&format!("  [{state}] {}: {}\n", m.id, m.why));
            for line in m.instructions.lines() {
                out.push_str(&format!("      {line}\n"));
            }
            if m.blocking && !m.confirmed {
                out.push_str(&format!("      when done: --confirm {}\n", m.id));
            }
        }
        out.push_str("\nChanges on the cluster (`kfctl diff`):\n");
        if full_diff {
            for line in self.diff.text().lines() {
                out.push_str(&format!("  {line}\n"));
            }
        } else {
            out.push_str(&diff_by_component(&self.diff));
        }
        out.push_str(&format!("  {}\n", self.diff.summary()));
        out.push_str("  Kept as they are: CRDs and their custom resources, PVCs, and namespaces holding objects kfctl does not own.\n");
        out
    }
}

/// One line per component: how many objects are created, changed, replaced and pruned, naming
/// those replaced and pruned (the ones that go away).
fn diff_by_component(diff: &AppDiff) -> String {
    use std::collections::BTreeMap;
    #[derive(Default)]
    struct Counts {
        create: usize,
        change: usize,
        gone: Vec<String>,
        keep: usize,
    }
    let mut by: BTreeMap<&str, Counts> = BTreeMap::new();
    for d in &diff.create {
        by.entry(&d.component).or_default().create += 1;
    }
    for d in &diff.change {
        by.entry(&d.component).or_default().change += 1;
    }
    for d in &diff.replace {
        by.entry(&d.component).or_default().gone.push(format!("replace {}", d.object));
    }
    for d in &diff.prune {
        by.entry(&d.component).or_default().gone.push(format!("prune {}", d.object));
    }
    for d in &diff.keep {
        by.entry(&d.component).or_default().keep += 1;
    }
    let mut out = String::new();
    for (component, c) in by {
        let mut parts = Vec::new();
        if c.create > 0 {
            parts.push(format!("{} to create", c.create));
        }
        if c.change > 0 {
            parts.push(format!("{} to change", c.change));
        }
        if !c.gone.is_empty() {
            parts.push(format!("{} to replace or prune", c.gone.len()));
        }
        if c.keep > 0 {
            parts.push(format!("{} kept", c.keep));
        }
        out.push_str(&format!("  {component}: {}\n", parts.join(", ")));
        const SHOWN: usize = 8;
        for line in c.gone.iter().take(SHOWN) {
            out.push_str(&format!("      {line}\n"));
        }
        if c.gone.len() > SHOWN {
            out.push_str(&format!("      ... and {} more (`--diff` lists every one)\n", c.gone.len() - SHOWN));
        }
    }
    out
}

/// What an executed upgrade did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Upgraded {
    pub from: String,
    pub to: String,
    pub replaced: Vec<String>,
    pub apply: crate::apply::ApplyReport,
    pub ready: String,
}

/// Step 3: record, replace, apply with prune, wait, record the outcome. `plan` must have no
/// unconfirmed blocking step (checked again here).
#[allow(clippy::too_many_arguments)]
pub async fn execute(
    client: &Client,
    target: &AppTarget,
    prepared: &Prepared,
    plan: &UpgradePlan,
    rendered: &RenderedApp,
    opts: &ApplyOptions,
    timeout: Duration,
    wait_for_lock: bool,
    sink: &dyn ProgressSink,
) -> Result<Upgraded, UpgradeError> {
    let unconfirmed = plan.unconfirmed();
    if !unconfirmed.is_empty() {
        return Err(UpgradeError::Unconfirmed { steps: unconfirmed });
    }
    // One writer per app: an apply, delete or another upgrade waits (or fails with --no-wait).
    let lock = match crate::lock::acquire(client, target, &format!("kfctl upgrade to {}", prepared.to), wait_for_lock, sink).await {
        Ok(lock) => lock,
        Err(crate::lock::LockError::Interrupted { .. }) => {
            let signal = crate::interrupt::requested().expect("the lock stops waiting only when a signal was received");
            let at = Box::new(Interruption::Before("the upgrade (it was waiting for the app's lock)"));
            return Err(UpgradeError::Interrupted { signal, at, recorded: false });
        }
        Err(e) => return Err(UpgradeError::Lock(Box::new(e))),
    };
    let mut app = prepared.new.clone();
    // From here the cluster changes: kfctl.yaml names the new release and says where it came from.
    let confirmed: Vec<String> = plan.manual.iter().filter(|m| m.confirmed).map(|m| m.id.clone()).collect();
    if prepared.resuming {
        if let Some(record) = app.config.history.last_mut() {
            record.outcome = UpgradeOutcome::Applying;
            record.confirmed = confirmed;
            record.finished = None;
            record.message = None;
        }
    } else {
        prepared.record_start(&mut app.config, UpgradeOutcome::Applying, confirmed);
    }
    app.save()?;
    let events = EventRecorder::new(client.clone(), target.clone(), sink);
    events.record(false, "UpgradeStarted", &format!("upgrade from Kubeflow {} to {}", prepared.from, prepared.to));
    let result = run_upgrade(client, target, plan, rendered, opts, timeout, sink, &events).await;
    let (outcome, message) = match &result {
        Ok(_) => (UpgradeOutcome::Succeeded, None),
        Err(e) => (UpgradeOutcome::Failed, Some(e.to_string().lines().next().unwrap_or_default().to_string())),
    };
    if let Some(record) = app.config.history.last_mut() {
        record.outcome = outcome;
        record.finished = Some(now());
        record.message = message.clone();
    }
    match &message {
        None => events.record(false, "UpgradeSucceeded", &format!("upgraded from Kubeflow {} to {}", prepared.from, prepared.to)),
        Some(m) => events.record(true, "UpgradeFailed", &format!("upgrade from Kubeflow {} to {} stopped: {m}", prepared.from, prepared.to)),
    }
    events.flush().await;
    let saved = app.save();
    lock.release().await;
    saved?;
    result
}

impl Prepared {
    /// Start this upgrade's record in `config`'s history, as `outcome` (`Prepared` for
    /// `--prepare`, `Applying` when it runs). An open upgrade to another release that this one
    /// replaces (a prepared upgrade the user turned back from) is closed as failed first, so the
    /// history holds one open record at most.
    pub fn record_start(&self, config: &mut AppConfig, outcome: UpgradeOutcome, confirmed: Vec<String>) {
        if let Some(record) = config.history.last_mut().filter(|r| r.is_open()) {
            record.outcome = UpgradeOutcome::Failed;
            record.finished = Some(now());
            record.message = Some(format!("superseded by the upgrade to {}", self.to));
        }
        config.history.push(UpgradeRecord {
            from: self.from.clone(),
            to: self.to.clone(),
            started: now(),
            finished: None,
            outcome,
            confirmed,
            from_registry: Some(self.old.config.registry.clone()),
            message: None,
        });
    }

    /// Remove what this run vendored: the upgrade did not start, so nothing of it stays behind.
    pub fn abandon(&self) {
        remove_vendored(&self.vendored);
    }
}

fn remove_vendored(paths: &[PathBuf]) {
    for path in paths {
        let _ = std::fs::remove_dir_all(path).or_else(|_| std::fs::remove_file(path));
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_upgrade(
    client: &Client,
    target: &AppTarget,
    plan: &UpgradePlan,
    rendered: &RenderedApp,
    opts: &ApplyOptions,
    timeout: Duration,
    sink: &dyn ProgressSink,
    events: &EventRecorder<'_>,
) -> Result<Upgraded, UpgradeError> {
    stop_if_interrupted("moving objects to their CRDs' new stored versions")?;
    for m in &plan.storage {
        sink.report(Progress::Message { text: m.line() });
        let rewritten = storage::migrate(client, m).await.map_err(|reason| UpgradeError::Storage { crd: m.crd.clone(), reason })?;
        events.record(false, "StorageMigrated", &format!("CRD {}: {rewritten} objects rewritten at {}; stored versions: {}", m.crd, m.to, m.to));
    }
    let resolver = KindResolver::new(client.clone());
    let mut replaced = Vec::new();
    stop_if_interrupted("replacing objects")?;
    for r in &plan.replace {
        sink.report(Progress::Message { text: format!("replacing {}: {}", r.object, r.why) });
        replace_object(client, &resolver, r).await?;
        events.record(false, "Replaced", &format!("deleted {} to recreate it: {}", r.object, r.why));
        replaced.push(r.object.clone());
    }
    stop_if_interrupted("applying")?;
    let applied = crate::apply::apply_rendered(client, target, rendered, opts, sink).await;
    if let Some(signal) = crate::interrupt::requested() {
        return Err(UpgradeError::Interrupted { signal, at: Box::new(Interruption::Applying(applied)), recorded: true });
    }
    let report = applied?;
    crate::health::refresh(client, target, sink).await.map_err(|e| UpgradeError::NotReady { to: plan.to.clone(), reason: e.to_string() })?;
    let status = tokio::select! {
        ready = crate::health::wait_target(client, target, timeout, sink) => {
            ready.map_err(|e| UpgradeError::NotReady { to: plan.to.clone(), reason: e.to_string() })?
        }
        () = crate::interrupt::received() => {
            let signal = crate::interrupt::requested().expect("received means requested");
            return Err(UpgradeError::Interrupted { signal, at: Box::new(Interruption::Waiting), recorded: true });
        }
    };
    let ready = format!("{}/{} components ready", status.objects_ready(), status.objects_total());
    Ok(Upgraded { from: plan.from.clone(), to: plan.to.clone(), replaced, apply: report, ready })
}

/// Delete the object (its dependents in the background) and wait until it is gone; one already
/// gone (an earlier, interrupted run deleted it) is fine.
async fn replace_object(client: &Client, resolver: &KindResolver, r: &ReplaceAction) -> Result<(), UpgradeError> {
    let fail = |reason: String| UpgradeError::Replace { object: r.object.clone(), kubectl: kubectl_args(&r.target), reason };
    resolver.refresh([r.target.api_version()]).await.map_err(|e| fail(crate::cluster::error_chain(&e)))?;
    let Some(resolved) = resolver.resolve(&r.target.api_version(), &r.target.kind) else { return Ok(()) };
    let api = crate::apply::api_for(client, &resolved, r.target.namespace.as_deref());
    let Some(live) = api.get_opt(&r.target.name).await.map_err(|e| fail(crate::cluster::error_chain(&e)))? else { return Ok(()) };
    let uid = live.metadata.uid.clone();
    match api.delete(&r.target.name, &DeleteParams::background()).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
        Err(e) => return Err(fail(crate::cluster::error_chain(&e))),
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        match api.get_opt(&r.target.name).await.map_err(|e| fail(crate::cluster::error_chain(&e)))? {
            Some(o) if o.metadata.uid == uid => {}
            _ => return Ok(()),
        }
        if tokio::time::Instant::now() > deadline {
            return Err(fail("it is still there 2 minutes after the delete (a finalizer holds it?)".into()));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
