//! A deployment as a background job: the same pipeline as `kfctl deploy` ([`crate::deploy`]),
//! reporting into the job's log.
//!
//! Each job works in its own directory (`STATE/jobs/ID/app`) on its own tokio task, so two
//! deployments never share files or state. Credentials the job needs (an uploaded kubeconfig) go
//! to `STATE/jobs/ID/private/` with mode 0600, outside the app directory that the download packs;
//! the user's password lives only in memory and, hashed, in the rendered Dex config.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use serde::Serialize;

use super::jobs::{AccessLink, Job, JobError, JobKind};
use super::worker;
use super::wizard::{CheckedDeployment, KubeconfigSource, PlatformForm};
use super::{Release, ServerState};
use crate::app::{App, InitOptions};
use crate::config::{AppConfig, RegistryConfig};
use crate::deploy::{self, AppSource, DeployOptions, Step};
use crate::platform::{self, PlatformSpec, ProvisionOptions, shell::Shell};
use crate::progress::{Progress, ProgressSink, Silent};
use crate::registry::catalog::{self, ParameterKind};
use crate::registry::digest::Pin;

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

/// How long a deployment may wait for every component to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// The local port the suggested `kfctl open` port-forward listens on (8080 is `kfctl serve`'s).
const OPEN_PORT: u16 = 8081;

/// The platform spec the wizard's platform step describes. `kubeconfig` is where the job's
/// kubeconfig lives on the server (for `existing`).
pub fn platform_spec(form: &PlatformForm, kubeconfig: Option<PathBuf>) -> PlatformSpec {
    let mut spec = PlatformSpec::new(form.kind());
    match form {
        PlatformForm::Existing { context, .. } => {
            spec.kubeconfig = kubeconfig;
            spec.context = context.clone();
        }
        PlatformForm::Kind { cluster_name } | PlatformForm::K3d { cluster_name } => spec.cluster_name = Some(cluster_name.clone()),
        PlatformForm::Minikube { profile } => spec.cluster_name = Some(profile.clone()),
        PlatformForm::Microk8s {} => {}
        PlatformForm::Gke { project, region, cluster_name, machine_type, nodes } => {
            spec.project = Some(project.clone());
            spec.region = Some(region.clone());
            spec.cluster_name = Some(cluster_name.clone());
            spec.node_size = Some(machine_type.clone());
            spec.node_count = Some(*nodes);
        }
        PlatformForm::Eks { region, cluster_name, instance_type, nodes } => {
            spec.region = Some(region.clone());
            spec.cluster_name = Some(cluster_name.clone());
            spec.node_size = Some(instance_type.clone());
            spec.node_count = Some(*nodes);
        }
        PlatformForm::Aks { subscription, resource_group, location, cluster_name, vm_size, nodes } => {
            spec.account = Some(subscription.clone());
            spec.resource_group = Some(resource_group.clone());
            spec.region = Some(location.clone());
            spec.cluster_name = Some(cluster_name.clone());
            spec.node_size = Some(vm_size.clone());
            spec.node_count = Some(*nodes);
        }
    }
    spec
}

/// Enables exactly the chosen components (with what they need) and sets the default user's login:
/// the email, and the password only as a bcrypt hash. Blocking (bcrypt is slow on purpose).
fn apply_choices(config: &mut AppConfig, checked: &CheckedDeployment) -> Result<(), DeployError> {
    for component in &mut config.components {
        component.enabled = checked.components.contains(&component.name);
    }
    let user = &checked.form.user;
    let hash = bcrypt::hash(&user.password, 12).map_err(|e| DeployError::Pipeline(format!("cannot hash the password: {e}")))?;
    let release = config.release().map_err(|e| DeployError::Pipeline(e.to_string()))?;
    for spec in &release.components {
        let Some(component) = config.components.iter_mut().find(|c| c.name == spec.name) else { continue };
        for parameter in &spec.parameters {
            let value = match parameter.kind {
                ParameterKind::Email => user.email.clone(),
                ParameterKind::BcryptHash => hash.clone(),
                ParameterKind::DnsLabel => continue,
            };
            component.parameters.insert(parameter.name.to_string(), value);
        }
    }
    Ok(())
}

/// The registry entry kfctl.yaml gets for `release` before the archive is fetched.
fn registry_config(release: &Release) -> RegistryConfig {
    // The preview shows what init will write: the content pin, known from the catalog (an
    // operator's own archive shows its sha256 until the job has unpacked it).
    let (digest, sha256) = match release.digest.as_deref().map(Pin::parse) {
        Some(Ok(pin @ Pin::Tree(_))) => (Some(pin.to_string()), None),
        Some(Ok(Pin::Bytes(hex))) => (None, Some(hex)),
        _ => (None, None),
    };
    RegistryConfig { url: release.registry.clone(), digest, sha256, path: Path::new("registry").join(&release.version), mirror: None, remotes: Vec::new() }
}

/// Builds the review page's content for a checked form, without touching any cluster: the
/// kfctl.yaml the job will write and, for clouds, the platform's dry run (Terraform files and
/// the commands it would run).
pub async fn preview(_state: &ServerState, release: &Release, checked: &CheckedDeployment) -> Result<Preview, DeployError> {
    let release = release.clone();
    let checked_for_config = checked.clone();
    let kubeconfig = checked.kubeconfig.as_ref().and_then(|k| k.path.clone());
    let spec = platform_spec(&checked.form.platform, kubeconfig);
    let config_spec = spec.clone();
    let kfctl_yaml = tokio::task::spawn_blocking(move || {
        let catalog = catalog::release(&release.version).map_err(|e| DeployError::Pipeline(e.to_string()))?;
        let mut config = AppConfig::new(&checked_for_config.form.name, catalog, registry_config(&release), config_spec);
        apply_choices(&mut config, &checked_for_config)?;
        config.to_commented_yaml().map_err(|e| DeployError::Pipeline(e.to_string()))
    })
    .await
    .expect("preview task panicked")?;

    let terraform = if checked.form.platform.is_cloud() { Some(terraform_summary(&checked.form.name, &checked.form.version, &spec).await?) } else { None };
    Ok(Preview { kfctl_yaml, components: checked.components.clone(), terraform })
}

/// The platform engineer's dry run for a cloud platform, condensed: the values in
/// terraform.tfvars, then every step and command, with the fixed .tf files' bodies folded.
async fn terraform_summary(name: &str, version: &str, spec: &PlatformSpec) -> Result<String, DeployError> {
    let support = platform::release_support(version).map_err(|e| DeployError::Pipeline(e.to_string()))?;
    let resolved = spec.resolved(support).map_err(|e| DeployError::Pipeline(e.to_string()))?;
    let dir = Path::new("/APPDIR").join(name);
    let mut shell = Shell::dry_run(&Silent, &format!("kfctl deploy {name}: the {} platform (dry run)", spec.kind));
    let options = ProvisionOptions { assume_yes: true, ..ProvisionOptions::default() };
    platform::provision_in(&mut shell, &dir, &resolved, version, &options).await.map_err(|e| DeployError::Pipeline(e.to_string()))?;
    let script = shell.into_script().unwrap_or_default();

    let mut summary = String::from("# terraform.tfvars\n");
    summary.push_str(&platform::terraform::tfvars(name, &resolved));
    summary.push_str("\n# What kfctl will do (APPDIR is the job's app directory)\n");
    let mut fence: Option<(String, usize)> = None;
    for line in script.lines() {
        if let Some((end, count)) = &mut fence {
            if line == end.as_str() {
                summary.push_str(&format!("  ({count} lines)\n"));
                fence = None;
            } else {
                *count += 1;
            }
            continue;
        }
        summary.push_str(line);
        summary.push('\n');
        if let Some((_, rest)) = line.split_once("<<'") {
            fence = Some((rest.trim_end_matches('\'').to_string(), 0));
        }
    }
    Ok(summary)
}

/// Creates the job, stores its credentials privately, and starts the deployment on its own
/// thread (after the app's earlier jobs, see [`super::worker`]).
pub fn start(state: Arc<ServerState>, release: Release, checked: CheckedDeployment) -> Result<Arc<Job>, DeployError> {
    let form = &checked.form;
    let job = state.jobs.create(JobKind::Deploy, &form.name, form.platform.kind_name(), &form.version)?;
    let kubeconfig = match &form.platform {
        PlatformForm::Existing { kubeconfig: source, .. } => Some(store_kubeconfig_source(&job.private_dir(), source)?),
        _ => None,
    };
    let mut secrets = vec![form.user.password.clone()];
    if let Some(checked_kubeconfig) = &checked.kubeconfig {
        secrets.extend(checked_kubeconfig.secret_values());
    }
    state.job_secrets.lock().expect("job secrets lock").insert(job.id.clone(), secrets);
    worker::spawn(&state, job.clone(), move |job| async move {
        let access = run(&job, &release, &checked, kubeconfig).await.map_err(|e| e.to_string())?;
        Ok((format!("Kubeflow {} is ready", checked.form.version), access))
    });
    Ok(job)
}

fn step(job: &Job, text: impl Into<String>) {
    job.report(Progress::Message { text: text.into() });
}

/// What a deployment job says at each step, in the wizard's words.
fn words(enabled: Option<usize>) -> deploy::Words {
    Box::new(move |step| match step {
        Step::Creating { registry, .. } => Some(format!("Fetching and verifying the registry {registry}")),
        Step::AppReady { app } => {
            let enabled = enabled.unwrap_or_else(|| app.config.components.iter().filter(|c| c.enabled).count());
            Some(format!("App directory ready: {enabled} components enabled"))
        }
        Step::Rendered { objects } => Some(format!("Rendered {objects} objects")),
        Step::Applied => Some("Applied; waiting until every component is ready".into()),
        Step::Detected { .. } | Step::ClusterReady { .. } => None,
    })
}

/// The deployment itself: [`crate::deploy::deploy`] (init the app directory with the wizard's
/// choices, provision the platform, detect cluster settings, render, apply in phases, wait until
/// ready), every step reported into the job's log in the wizard's words.
async fn run(job: &Arc<Job>, release: &Release, checked: &CheckedDeployment, kubeconfig: Option<PathBuf>) -> Result<Vec<AccessLink>, DeployError> {
    let form = &checked.form;
    step(job, format!("Deploying {} (Kubeflow {}) to the {} platform", form.name, form.version, form.platform.kind_name()));

    let init = InitOptions {
        dir: job.app_dir(),
        registry: release.registry.clone(),
        digest: release.digest.clone(),
        mirror: None,
        version: Some(release.version.clone()),
        platform: Some(platform_spec(&form.platform, kubeconfig)),
        name: Some(form.name.clone()),
        force: false,
    };
    let choices = checked.clone();
    let opts = DeployOptions {
        app: AppSource::Init(init),
        configure: Some(Box::new(move |config| apply_choices(config, &choices).map_err(|e| e.to_string()))),
        provision: ProvisionOptions { assume_yes: true, ..ProvisionOptions::default() },
        cluster_only: false,
        ready_timeout: READY_TIMEOUT,
        words: words(Some(checked.components.len())),
        purpose: format!("web-app job {}", job.id.as_str()),
    };
    let deployed = deploy::deploy(opts, job.as_ref()).await.map_err(job_error)?;
    Ok(access_links(&deployed.client, &deployed.app, &deployed.access, &job.dir).await)
}

/// A resumed deployment: the same pipeline on the app directory the interrupted run wrote (its
/// kfctl.yaml holds the wizard's choices, the password only as a hash, and the platform as
/// far as it got), so it provisions what is missing, applies what is not applied and waits.
pub async fn resume(job: &Arc<Job>) -> worker::Outcome {
    let opts = DeployOptions {
        app: AppSource::Open(job.app_dir()),
        configure: None,
        provision: ProvisionOptions { assume_yes: true, ..ProvisionOptions::default() },
        cluster_only: false,
        ready_timeout: READY_TIMEOUT,
        words: words(None),
        purpose: format!("web-app job {} (resumed)", job.id.as_str()),
    };
    let deployed = deploy::deploy(opts, job.as_ref()).await.map_err(|e| job_error(e).to_string())?;
    let access = access_links(&deployed.client, &deployed.app, &deployed.access, &job.dir).await;
    Ok((format!("Kubeflow {} is ready", deployed.app.config.version), access))
}

/// A failed deployment in the job log's words: the stage, then the reason.
fn job_error(err: deploy::DeployError) -> DeployError {
    use deploy::{DeployError as Stage, InstallError};
    let message = match err {
        Stage::Open { source, .. } | Stage::Init { source, .. } => format!("cannot create the app directory: {source}"),
        Stage::Configure(message) => message,
        Stage::Save { source, .. } => source.to_string(),
        Stage::Provision(e) => format!("the platform step failed: {e}"),
        Stage::Connect(e) => format!("cannot reach the cluster: {e}"),
        Stage::Detect { source } => format!("cannot read the cluster's settings: {source}"),
        Stage::Install { source: InstallError::Render { source, .. }, .. } => format!("cannot render: {source}"),
        Stage::Install { source: InstallError::RenderStopped(e), .. } => format!("cannot render: {e}"),
        Stage::Install { source: InstallError::Apply(e), .. } => format!("apply failed: {e}"),
        Stage::Install { source: InstallError::Wait(e), .. } => format!("not ready: {e}"),
        Stage::Install { source: InstallError::Lock(e), .. } => format!("cannot take the app's lock: {e}"),
        Stage::Interrupted { signal, at, .. } | Stage::Install { source: InstallError::Interrupted(signal, at), .. } => {
            format!("stopped by {} {at}", signal.name())
        }
    };
    DeployError::Pipeline(message)
}

/// How to reach the dashboard and JupyterLab: the gateway's load balancer address where it has
/// one, else the `kfctl open` port-forward to run (from the downloaded app directory). A
/// kubeconfig kept inside the job (an upload) is not named: the user has their own copy.
async fn access_links(client: &kube::Client, app: &App, access: &platform::ClusterAccess, job_dir: &Path) -> Vec<AccessLink> {
    let services: kube::Api<Service> = kube::Api::namespaced(client.clone(), "istio-system");
    let ingress = services.get_opt("istio-ingressgateway").await.ok().flatten().and_then(|service| {
        let ingress = service.status?.load_balancer?.ingress?.into_iter().next()?;
        ingress.hostname.or(ingress.ip)
    });
    if let Some(host) = ingress {
        return vec![
            AccessLink { label: "Kubeflow dashboard".into(), url: format!("http://{host}/"), command: None },
            AccessLink { label: "JupyterLab (notebooks)".into(), url: format!("http://{host}/_/jupyter/"), command: None },
        ];
    }
    let flags = cli_flags(access, job_dir);
    let command = |target: &str| format!("cd {} && kfctl open {target} --port {OPEN_PORT}{flags}", app.config.name);
    vec![
        AccessLink { label: "Kubeflow dashboard".into(), url: format!("http://localhost:{OPEN_PORT}/"), command: Some(command("dashboard")) },
        AccessLink { label: "JupyterLab (notebooks)".into(), url: format!("http://localhost:{OPEN_PORT}/_/jupyter/"), command: Some(command("jupyter")) },
    ]
}

/// `--kubeconfig`/`--context` for a command run from the downloaded app directory; a kubeconfig
/// kept inside the job (an upload) is not named: the user has their own copy.
fn cli_flags(access: &platform::ClusterAccess, job_dir: &Path) -> String {
    let mut flags = String::new();
    if let Some(kubeconfig) = &access.kubeconfig
        && !kubeconfig.starts_with(job_dir)
    {
        flags.push_str(&format!(" --kubeconfig {}", shell_word(&kubeconfig.to_string_lossy())));
    }
    if let Some(context) = &access.context {
        flags.push_str(&format!(" --context {}", shell_word(context)));
    }
    flags
}

/// What "Open JupyterLab with codelabs" answers: the link to the codelabs folder and how to sign in.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CodelabsLink {
    pub link: AccessLink,
    pub sign_in: String,
}

/// The last page's "Open JupyterLab with codelabs": what `kfctl notebook` does for the job's app
/// (the default user's notebook server with the codelabs, made or reused, waited for), then the
/// link through the gateway's load balancer, or the `kfctl notebook` forward to run.
pub async fn open_codelabs(job: &Job) -> Result<CodelabsLink, String> {
    let app = App::open(&job.app_dir()).map_err(|e| format!("cannot open the job's app directory: {e}"))?;
    let access = app.config.platform.access(&app.dir);
    let client = crate::cluster::connect(access.kubeconfig.as_deref(), access.context.as_deref())
        .await
        .map_err(|e| format!("cannot reach the cluster: {e}"))?;
    let request = crate::notebook::Request {
        name: "codelabs".into(),
        gpu: false,
        codelabs_url: None,
        timeout: std::time::Duration::from_secs(600),
    };
    let path = crate::notebook::open_codelabs(&client, &app.config, &request, &crate::progress::Silent)
        .await
        .map_err(|e| format!("{e:#}"))?;
    let services: kube::Api<Service> = kube::Api::namespaced(client.clone(), "istio-system");
    let ingress = services.get_opt("istio-ingressgateway").await.ok().flatten().and_then(|service| {
        let ingress = service.status?.load_balancer?.ingress?.into_iter().next()?;
        ingress.hostname.or(ingress.ip)
    });
    let label = "JupyterLab with codelabs".to_owned();
    let link = match ingress {
        Some(host) => AccessLink { label, url: format!("http://{host}{path}"), command: None },
        None => AccessLink {
            label,
            url: format!("http://localhost:{OPEN_PORT}{path}"),
            command: Some(format!(
                "cd {} && kfctl notebook --port {OPEN_PORT}{}",
                app.config.name,
                cli_flags(&access, &job.dir)
            )),
        },
    };
    Ok(CodelabsLink { link, sign_in: crate::notebook::sign_in_hint(&app.config) })
}

/// A word quoted for a POSIX shell when it needs it.
fn shell_word(word: &str) -> String {
    if !word.is_empty() && word.chars().all(|c| c.is_ascii_alphanumeric() || "-_./@:=".contains(c)) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

const KUBECONFIG_FILE: &str = "kubeconfig";
const KUBECONFIG_PATH_FILE: &str = "kubeconfig-path";

/// Keeps the job's kubeconfig where only this server's user can read it: an upload as a file,
/// a server path as a note of that path. Returns the kubeconfig's path.
fn store_kubeconfig_source(private_dir: &Path, source: &KubeconfigSource) -> Result<PathBuf, DeployError> {
    match source {
        KubeconfigSource::Upload { content } => {
            let path = private_dir.join(KUBECONFIG_FILE);
            write_private(&path, content.as_bytes())?;
            Ok(path)
        }
        KubeconfigSource::ServerPath { path } => {
            write_private(&private_dir.join(KUBECONFIG_PATH_FILE), path.as_bytes())?;
            Ok(PathBuf::from(path))
        }
    }
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

