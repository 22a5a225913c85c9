//! Where a job's work runs: a thread and async runtime of its own, one job per app at a time, and
//! its end written once.
//!
//! Each job gets a thread with its own runtime: the apply and health futures are not `Send`
//! (their stream pipelines hit rustc's higher-ranked closure limitation), and a job of its own
//! cannot starve the server or another job. Jobs of the same app (by name) take turns in the
//! order they were started: a queued job says so in its log and starts when the one before it
//! ends, so twenty clicks on Deploy do not make twenty writers poll the app's Lease (which still
//! keeps a CLI run and this server apart, see [`crate::lock`]).
//!
//! Resuming an interrupted job ([`resume`]) runs its kind's work again in the same job.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use super::ServerState;
use super::jobs::{AccessLink, Job, JobError, JobKind, JobState};
use crate::progress::{Progress, ProgressSink};

/// What a job's work ends with: its summary and access links, or why it failed.
pub type Outcome = Result<(String, Vec<AccessLink>), String>;

/// One queue per app name: jobs of that app run one at a time, first started first.
#[derive(Default)]
pub struct AppTurns {
    turns: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl AppTurns {
    fn of(&self, app: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.turns.lock().expect("app turns lock").entry(app.to_string()).or_default().clone()
    }
}

/// Runs `work` for `job` on a thread of its own, after the app's earlier jobs, and ends the job
/// with its outcome. A job whose work fails because the server is being stopped (Ctrl-C,
/// SIGTERM) ends `interrupted`, so it can be resumed.
pub fn spawn<F, Fut>(state: &ServerState, job: Arc<Job>, work: F)
where
    F: FnOnce(Arc<Job>) -> Fut + Send + 'static,
    Fut: Future<Output = Outcome>,
{
    let record = job.record();
    let turn = state.turns.of(&record.name);
    let thread_job = job.clone();
    let spawned = std::thread::Builder::new().name(format!("kfctl-job-{}", &job.id.as_str()[..8])).spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build();
        let (outcome, turn) = match runtime {
            Ok(runtime) => runtime.block_on(async {
                // FIFO: tokio's mutex wakes waiters in the order they queued.
                let turn = match turn.clone().try_lock_owned() {
                    Ok(held) => held,
                    Err(_) => {
                        thread_job.report(Progress::Message {
                            text: format!("Queued: another job of app {} is running on this server; this one starts when it ends", record.name),
                        });
                        turn.lock_owned().await
                    }
                };
                // The server is stopping: a job whose turn came now does not start.
                if let Some(signal) = crate::interrupt::requested() {
                    return (Err(format!("the server was stopped ({}) before the job's turn came", signal.name())), Some(turn));
                }
                // The API server's outages are told in the job's log, not on the server's stderr.
                let log = thread_job.clone();
                let report: crate::cluster::outage::Report = Arc::new(move |text| log.report(Progress::Message { text }));
                (crate::cluster::outage::reporting_to(report, work(thread_job.clone())).await, Some(turn))
            }),
            Err(err) => (Err(format!("cannot start the job's async runtime: {err}")), None),
        };
        // The next job of the app starts once this one has ended, outcome written.
        end(&thread_job, outcome);
        drop(turn);
    });
    if let Err(err) = spawned {
        end(&job, Err(format!("cannot start the job's thread: {err}")));
    }
}

fn end(job: &Job, outcome: Outcome) {
    let ended = match outcome {
        Ok((summary, access)) => job.end(JobState::Succeeded, summary, access),
        Err(reason) => match crate::interrupt::requested() {
            Some(signal) => job.interrupt(&format!("the server was stopped ({}) while it ran: {reason}", signal.name())),
            None => job.end(JobState::Failed, reason, Vec::new()),
        },
    };
    if let Err(err) = ended {
        eprintln!("kfctl serve: job {}: {err}", job.id);
    }
}

/// Why a job cannot be resumed.
#[derive(Debug, thiserror::Error)]
pub enum ResumeError {
    #[error("job {id} is {state:?}, not interrupted; only an interrupted job can be resumed")]
    NotInterrupted { id: String, state: JobState },
    #[error("the server stopped before job {0} had written its app directory, so nothing of it reached the cluster")]
    NoAppDir(String),
    #[error(transparent)]
    Jobs(#[from] JobError),
}

/// Resume an interrupted job: the same job, `running` again, runs its kind's work on the app
/// directory the interruption left (a deployment: open it and deploy; an upgrade: finish the
/// upgrade kfctl.yaml records). What the interrupted run applied stays; apply finds it by its
/// label and the app's inventory, and the app's lock of a killed server expires on its own.
pub fn resume(state: &Arc<ServerState>, job: Arc<Job>) -> Result<(), ResumeError> {
    let record = job.record();
    let not_interrupted = || ResumeError::NotInterrupted { id: record.id.to_string(), state: record.state };
    if record.state != JobState::Interrupted {
        return Err(not_interrupted());
    }
    if !job.app_dir().join(crate::config::FILE_NAME).is_file() {
        return Err(ResumeError::NoAppDir(record.id.to_string()));
    }
    let what = match record.kind {
        JobKind::Deploy => format!("Resuming the deployment of {} (Kubeflow {}) from its app directory", record.name, record.version),
        JobKind::Upgrade => format!("Resuming the upgrade of {} to Kubeflow {}", record.name, record.version),
    };
    if !job.resume(what)? {
        return Err(not_interrupted());
    }
    match record.kind {
        JobKind::Deploy => spawn(state, job, |job| async move { super::deploy::resume(&job).await }),
        JobKind::Upgrade => spawn(state, job, move |job| async move { super::upgrade::resume(&job, &record.version).await }),
    }
    Ok(())
}
