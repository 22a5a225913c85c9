//! A deployment as a background job: the same library calls as `kfctl deploy`, reporting into
//! the job's log.
//!
//! Each job works in its own directory (`STATE/jobs/ID/app`) on its own tokio task, so two
//! deployments never share files or state. Credentials the job needs (an uploaded kubeconfig) go
//! to `STATE/jobs/ID/private/` with mode 0600, outside the app directory that the download packs;
//! the user's password lives only in memory and, hashed, in the rendered Dex config.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use super::jobs::{AccessLink, Job, JobError, JobState};
use super::wizard::{CheckedDeployment, KubeconfigSource, PlatformForm};
use super::{Release, ServerState};
use crate::progress::{Progress, ProgressSink};

/// Why a preview or a deployment failed.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error(transparent)]
    Jobs(#[from] JobError),
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Pipeline(String),
}

/// What the review page shows.
#[derive(Debug, Clone, Serialize)]
pub struct Preview {
    /// The kfctl.yaml the deployment will write.
    pub kfctl_yaml: String,
    /// The components that will be enabled (the chosen ones and what they need).
    pub components: Vec<String>,
    /// For cloud platforms: the summary of the generated Terraform plan.
    pub terraform: Option<String>,
}

/// Builds the review page's content for a checked form, without touching any cluster.
pub async fn preview(_state: &ServerState, _release: &Release, _checked: &CheckedDeployment) -> Result<Preview, DeployError> {
    Err(DeployError::Pipeline(
        "the deploy pipeline (App::init, platform::provision, apply_app) is not on main yet; this branch lands it next".into(),
    ))
}

/// Creates the job, stores its credentials privately, and starts the deployment on its own task.
pub fn start(state: Arc<ServerState>, release: Release, checked: CheckedDeployment) -> Result<Arc<Job>, DeployError> {
    let form = &checked.form;
    let job = state.jobs.create(&form.name, form.platform.kind_name(), &form.version)?;
    if let PlatformForm::Existing { kubeconfig: source, .. } = &form.platform {
        store_kubeconfig_source(&job.private_dir(), source)?;
    }
    let mut secrets = vec![form.user.password.clone()];
    if let Some(kubeconfig) = &checked.kubeconfig {
        secrets.extend(kubeconfig.secret_values());
    }
    state.job_secrets.lock().expect("job secrets lock").insert(job.id.clone(), secrets);

    let task_job = job.clone();
    tokio::spawn(async move {
        let outcome = run(&task_job, &release, &checked).await;
        let (state_after, summary, access) = match outcome {
            Ok(access) => (JobState::Succeeded, format!("Kubeflow {} is ready", checked.form.version), access),
            Err(err) => (JobState::Failed, err.to_string(), Vec::new()),
        };
        task_job.report(Progress::Finished { ok: state_after == JobState::Succeeded, summary: summary.clone() });
        if let Err(err) = task_job.finish(state_after, summary, access) {
            eprintln!("kfctl serve: job {}: {err}", task_job.id);
        }
    });
    Ok(job)
}

async fn run(job: &Job, _release: &Release, checked: &CheckedDeployment) -> Result<Vec<AccessLink>, DeployError> {
    job.report(Progress::Message { text: format!("Deploying {} to {}", checked.form.name, checked.form.platform.kind_name()) });
    Err(DeployError::Pipeline(
        "the deploy pipeline (App::init, platform::provision, apply_app) is not on main yet; this branch lands it next".into(),
    ))
}

const KUBECONFIG_FILE: &str = "kubeconfig";
const KUBECONFIG_PATH_FILE: &str = "kubeconfig-path";

/// Keeps the job's kubeconfig where only this server's user can read it: an upload as a file,
/// a server path as a note of that path.
fn store_kubeconfig_source(private_dir: &Path, source: &KubeconfigSource) -> Result<(), DeployError> {
    let (path, content) = match source {
        KubeconfigSource::Upload { content } => (private_dir.join(KUBECONFIG_FILE), content.as_str()),
        KubeconfigSource::ServerPath { path } => (private_dir.join(KUBECONFIG_PATH_FILE), path.as_str()),
    };
    write_private(&path, content.as_bytes())
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), DeployError> {
    let write = |source| DeployError::Write { path: path.to_path_buf(), source };
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(write)?;
    std::io::Write::write_all(&mut file, bytes).map_err(write)
}

/// The kubeconfig file a job uses, if it has one.
pub fn job_kubeconfig(private_dir: &Path) -> Option<PathBuf> {
    let uploaded = private_dir.join(KUBECONFIG_FILE);
    if uploaded.is_file() {
        return Some(uploaded);
    }
    fs::read_to_string(private_dir.join(KUBECONFIG_PATH_FILE)).ok().map(PathBuf::from)
}

/// Secret values in the job's kubeconfig, for the download scan. Blocking.
pub fn stored_kubeconfig_secrets(private_dir: &Path) -> Vec<String> {
    let Some(path) = job_kubeconfig(private_dir) else { return Vec::new() };
    let Ok(content) = fs::read_to_string(&path) else { return Vec::new() };
    match super::wizard::parse_kubeconfig(content, Some(path)) {
        Ok(checked) => checked.secret_values(),
        Err(_) => Vec::new(),
    }
}
