//! Upgrading a deployed app from the web app: the same plan as `kfctl upgrade`, shown as a
//! confirmation page, then a job of its own.
//!
//! The upgrade job works on a copy of the deployment's app directory (`STATE/jobs/NEW/app`), so
//! each job keeps the app as it left it: the old job's download is the app before the upgrade,
//! the new job's the app after. Credentials stay where the deployment stored them (its kubeconfig
//! path in kfctl.yaml is the old job's private file).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ServerState;
use super::jobs::{Job, JobKind, JobState};
use crate::apply::{ApplyOptions, ReleaseRange};
use crate::app::App;
use crate::plan::AppTarget;
use crate::progress::{Progress, ProgressSink, Silent};
use crate::upgrade::{self, ManualAction, Prepared, UpgradeOptions, UpgradePlan};

/// How long an upgrade job waits for readiness.
const READY_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// What the page sends: the release to go to and the manual steps the user ticked as done.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpgradeRequest {
    pub to: String,
    #[serde(default)]
    pub confirm: Vec<String>,
}

/// The confirmation page's content.
#[derive(Debug, Clone, Serialize)]
pub struct PlanView {
    pub from: String,
    pub to: String,
    /// The plan as `kfctl upgrade` prints it.
    pub text: String,
    pub manual: Vec<ManualAction>,
    /// One line: what the diff counts.
    pub summary: String,
}

/// Why the plan or the upgrade could not be made: the message for the page.
#[derive(Debug, thiserror::Error)]
pub enum UpgradeWebError {
    #[error("the deployment has not succeeded ({0:?}); only a deployed app can be upgraded")]
    NotDeployed(JobState),
    #[error("{0}")]
    Upgrade(String),
}

fn fail(err: impl std::fmt::Display) -> UpgradeWebError {
    UpgradeWebError::Upgrade(err.to_string())
}

/// Prepare and plan in `dir` (blocking parts on blocking threads), reading the cluster kfctl.yaml
/// records. The caller decides whether the vendored release stays.
async fn prepare_and_plan(dir: &Path, request: &UpgradeRequest, sink: &(dyn ProgressSink + Sync)) -> Result<(Prepared, UpgradePlan, crate::app::RenderedApp, kube::Client), UpgradeWebError> {
    let dir = dir.to_path_buf();
    let opts = UpgradeOptions { to: request.to.clone(), confirmed: request.confirm.clone(), ..UpgradeOptions::default() };
    let prepared = tokio::task::block_in_place(|| {
        let app = App::open(&dir).map_err(fail)?;
        upgrade::prepare(&app, &opts, sink).map_err(fail)
    })?;
    let access = prepared.new.config.platform.access(&prepared.new.dir);
    let client = match crate::cluster::connect(access.kubeconfig.as_deref(), access.context.as_deref()).await {
        Ok(client) => client,
        Err(e) => return Err(undo(&prepared, fail(e))),
    };
    let rendered = match tokio::task::block_in_place(|| prepared.new.render()) {
        Ok(rendered) => rendered,
        Err(e) => return Err(undo(&prepared, fail(e))),
    };
    let target = AppTarget::for_app(&prepared.new);
    let apply = ApplyOptions { release: ReleaseRange::of(&prepared.to), ..ApplyOptions::default() };
    match upgrade::plan(&client, &target, &prepared, &rendered, &apply).await {
        Ok(plan) => Ok((prepared, plan, rendered, client)),
        Err(e) => Err(undo(&prepared, fail(e))),
    }
}

fn undo(prepared: &Prepared, err: UpgradeWebError) -> UpgradeWebError {
    prepared.abandon();
    err
}

/// The plan for upgrading the app of `job` to `request.to`, changing nothing (what this
/// vendored for it is removed again). Planning reads the cluster with the apply machinery, whose
/// futures stay on one thread: it runs on a runtime of its own, as jobs do.
pub async fn plan(job: &Arc<Job>, request: &UpgradeRequest) -> Result<PlanView, UpgradeWebError> {
    let record = job.record();
    if record.state != JobState::Succeeded {
        return Err(UpgradeWebError::NotDeployed(record.state));
    }
    let dir = job.app_dir();
    let request = request.clone();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("kfctl-upgrade-plan".into())
        .spawn(move || {
            let result = match job_runtime() {
                Ok(runtime) => runtime.block_on(async {
                    let (prepared, plan, _, _) = prepare_and_plan(&dir, &request, &Silent).await?;
                    prepared.abandon();
                    Ok(PlanView { from: plan.from.clone(), to: plan.to.clone(), text: plan.text(false), manual: plan.manual.clone(), summary: plan.diff.summary() })
                }),
                Err(err) => Err(fail(format!("cannot start an async runtime: {err}"))),
            };
            let _ = tx.send(result);
        })
        .map_err(fail)?;
    rx.await.map_err(|_| fail("planning stopped unexpectedly; see the server's output"))?
}

/// A runtime for one job (or plan): two workers, so blocking steps can run in place.
fn job_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()
}

/// Start an upgrade job: a copy of `job`'s app directory, upgraded to `request.to` in a job of its
/// own (its log streams like a deployment's).
pub fn start(state: Arc<ServerState>, job: &Arc<Job>, request: UpgradeRequest) -> Result<Arc<Job>, UpgradeWebError> {
    let record = job.record();
    if record.state != JobState::Succeeded {
        return Err(UpgradeWebError::NotDeployed(record.state));
    }
    let upgrade_job = state.jobs.create(JobKind::Upgrade, &record.name, &record.platform, &request.to).map_err(fail)?;
    copy_dir(&job.app_dir(), &upgrade_job.app_dir()).map_err(fail)?;
    let from = record.version.clone();
    super::worker::spawn(&state, upgrade_job.clone(), move |job| async move {
        let summary = run(&job, &from, &request).await.map_err(|e| e.to_string())?;
        Ok((summary, Vec::new()))
    });
    Ok(upgrade_job)
}

/// A resumed upgrade job: the upgrade to `to` again in its app directory, which finishes the
/// upgrade kfctl.yaml records when the interrupted run had begun it (see `upgrade::prepare`).
/// Manual steps confirmed then are in that record; an upgrade cut off before it was recorded
/// starts afresh and stops for its manual steps, saying which.
pub async fn resume(job: &Arc<Job>, to: &str) -> super::worker::Outcome {
    let app = App::open(&job.app_dir()).map_err(|e| e.to_string())?;
    let request = UpgradeRequest { to: to.to_string(), confirm: Vec::new() };
    let from = upgrade::open_upgrade(&app.config).map_or(app.config.version.clone(), |open| open.from.clone());
    let summary = run(job, &from, &request).await.map_err(|e| e.to_string())?;
    Ok((summary, Vec::new()))
}

async fn run(job: &Arc<Job>, from: &str, request: &UpgradeRequest) -> Result<String, UpgradeWebError> {
    job.report(Progress::Message { text: format!("Upgrading from Kubeflow {from} to {}", request.to) });
    let (prepared, plan, rendered, client) = prepare_and_plan(&job.app_dir(), request, job.as_ref()).await?;
    for line in plan.text(false).lines() {
        job.report(Progress::Message { text: line.to_string() });
    }
    let target = AppTarget::for_app(&prepared.new);
    let apply = ApplyOptions { release: ReleaseRange::of(&prepared.to), ..ApplyOptions::default() };
    let done = upgrade::execute(&client, &target, &prepared, &plan, &rendered, &apply, READY_TIMEOUT, true, job.as_ref()).await.map_err(fail)?;
    Ok(format!("Upgraded to Kubeflow {}: {}; {}", done.to, done.apply.summary(), done.ready))
}

/// Copy the directory `from` to `to` (files, directories and symbolic links as they are).
fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(entry.path())?, &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}
