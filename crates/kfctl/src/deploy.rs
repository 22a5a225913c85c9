//! From an app directory (or nothing) to a ready Kubeflow, the pipeline both faces run
//! (`kfctl deploy` and the web app's deployment jobs):
//!
//! 1. the app directory: opened, or created (`kfctl init`), then the face's choices applied;
//! 2. the cluster: `platform::provision_in` (a local tool or Terraform; nothing for `existing`);
//! 3. the choices recorded in kfctl.yaml: the platform as provisioned, then the cluster's
//!    settings (`cluster:`) detected where kfctl.yaml has none yet;
//! 4. Kubeflow: render, apply in gated phases, wait until every component is ready.
//!
//! Ctrl-C or SIGTERM (where the face listens, see [`crate::interrupt`]) stops it between stages,
//! stops the apply from starting new writes, and stops the wait: [`DeployError::Interrupted`]
//! says where.
//!
//! Progress goes to one [`ProgressSink`]; the few points a person is told about in words
//! ([`Step`]) are worded by the face ([`DeployOptions::words`]), since a terminal and a job log
//! say them differently. Errors say which stage failed ([`DeployError`]), so each face can word
//! those too; their `Display` is the CLI's.

use std::path::{Path, PathBuf};
use std::time::Duration;

use kube::Client;

use crate::app::{App, AppError, InitOptions};
use crate::apply::{self, ApplyError, ApplyOptions, Interruption};
use crate::interrupt::Interrupt;
use crate::config::{self, AppConfig};
use crate::health::{self, AppStatus, HealthError};
use crate::platform::shell::{Created, Shell, quote};
use crate::platform::{self, ClusterAccess, ClusterSettings, PlatformError, ProvisionOptions, detect};
use crate::progress::{Progress, ProgressSink};

/// Where the app directory comes from.
#[derive(Debug, Clone)]
pub enum AppSource {
    /// An app directory that exists (holds kfctl.yaml).
    Open(PathBuf),
    /// A new one, created with `kfctl init`.
    Init(InitOptions),
}

impl AppSource {
    fn dir(&self) -> &Path {
        match self {
            AppSource::Open(dir) => dir,
            AppSource::Init(opts) => &opts.dir,
        }
    }
}

/// A face's changes to the app's config before anything else happens (the CLI's platform flags,
/// the web wizard's components and login). Runs on a blocking thread; the error is the message.
pub type Configure = Box<dyn FnOnce(&mut AppConfig) -> Result<(), String> + Send>;

/// A face's words for a [`Step`]; `None` says nothing.
pub type Words = Box<dyn Fn(&Step<'_>) -> Option<String> + Send + Sync>;

/// The points of a deployment a person is told about, in order.
#[derive(Debug)]
pub enum Step<'a> {
    /// About to create the app directory `dir` from `registry`.
    Creating { dir: &'a Path, registry: &'a str },
    /// The app directory is ready (created or opened), with the face's choices.
    AppReady { app: &'a App },
    /// The cluster's settings were detected and written to `config` (kfctl.yaml).
    Detected { config: &'a Path },
    /// The cluster exists and is recorded; with `cluster_only` the deployment stops here.
    ClusterReady { app: &'a App },
    /// The app rendered to `objects` objects; next they are applied.
    Rendered { objects: usize },
    /// Everything applied; next the wait until every component is ready.
    Applied,
}

/// How a deployment runs.
pub struct DeployOptions {
    pub app: AppSource,
    pub configure: Option<Configure>,
    pub provision: ProvisionOptions,
    /// Stop once the cluster exists and kfctl.yaml records it.
    pub cluster_only: bool,
    /// How long Kubeflow may take to become ready.
    pub ready_timeout: Duration,
    pub words: Words,
    /// Who writes, for the app's lock (see [`crate::lock`]): `kfctl deploy`, `web-app job ID`.
    pub purpose: String,
}

/// A finished deployment.
pub struct Deployed {
    pub app: App,
    pub client: Client,
    /// How to reach the cluster (the kubeconfig and context kfctl.yaml records).
    pub access: ClusterAccess,
    /// What provisioning created (a local cluster, cloud resources); empty for `existing`.
    pub created: Vec<Created>,
    /// The readiness reached; `None` with `cluster_only`.
    pub status: Option<AppStatus>,
}

/// Why a deployment stopped, by stage.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("cannot open the app in {}", dir.display())]
    Open { dir: PathBuf, source: AppError },
    #[error("kfctl init {} failed; nothing was written", dir.display())]
    Init { dir: PathBuf, source: AppError },
    #[error("{0}")]
    Configure(String),
    /// The cluster could not be created or reached; the error lists what exists already.
    #[error(transparent)]
    Provision(PlatformError),
    #[error("cannot write {}", path.display())]
    Save { path: PathBuf, source: AppError },
    #[error(transparent)]
    Connect(PlatformError),
    #[error("auto-configuration failed")]
    Detect { source: PlatformError },
    /// Ctrl-C or SIGTERM stopped the deployment; `at` says where, `dir` is the app directory to
    /// resume from.
    #[error("interrupted by {}, {at}", signal.name())]
    Interrupted { signal: Interrupt, dir: PathBuf, at: Interruption },
    /// Installing Kubeflow failed after the cluster exists; it stays, and the message says so.
    #[error("{}", leftover_note(created, dir))]
    Install { dir: PathBuf, created: Vec<Created>, source: InstallError },
}

/// The interruption received, as an error that stops the deployment at `at`.
fn stop_if_interrupted(dir: &Path, at: impl FnOnce() -> Interruption) -> Result<(), DeployError> {
    match crate::interrupt::requested() {
        Some(signal) => Err(DeployError::Interrupted { signal, dir: dir.to_path_buf(), at: at() }),
        None => Ok(()),
    }
}

/// Why installing Kubeflow on the cluster failed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("rendering stopped")]
    RenderStopped(#[source] tokio::task::JoinError),
    #[error("cannot render the app in {}", dir.display())]
    Render { dir: PathBuf, source: AppError },
    #[error(transparent)]
    Apply(ApplyError),
    #[error(transparent)]
    Wait(HealthError),
    #[error(transparent)]
    Lock(crate::lock::LockError),
    /// Ctrl-C or SIGTERM (see [`DeployError::Interrupted`]).
    #[error("interrupted by {name}, {at}", name = .0.name(), at = .1)]
    Interrupted(Interrupt, Interruption),
}

/// Run the whole deployment (see the module's documentation), reporting into `sink`.
pub async fn deploy(opts: DeployOptions, sink: &dyn ProgressSink) -> Result<Deployed, DeployError> {
    let say = |step: Step<'_>| {
        if let Some(text) = (opts.words)(&step) {
            sink.report(Progress::Message { text });
        }
    };

    // 1. The app directory.
    if let AppSource::Init(init) = &opts.app {
        say(Step::Creating { dir: &init.dir, registry: &init.registry });
    }
    let (source, configure) = (opts.app, opts.configure);
    let mut app = tokio::task::spawn_blocking(move || app_directory(source, configure)).await.expect("app directory task panicked")?;
    say(Step::AppReady { app: &app });
    // The variants follow the platform the deploy targets (the face's choices included).
    for text in app.variant_lines().map_err(|source| DeployError::Open { dir: app.dir.clone(), source })? {
        sink.report(Progress::Message { text });
    }

    // 2. The cluster: non-Kubernetes resources first.
    stop_if_interrupted(&app.dir, || Interruption::Before("creating or reaching the cluster"))?;
    let mut shell = Shell::real(sink);
    let provisioned = platform::provision_in(&mut shell, &app.dir, &app.config.platform, &app.config.version, &opts.provision)
        .await
        .map_err(DeployError::Provision)?;
    let created = shell.ledger().to_vec();

    // 3. The choices, in kfctl.yaml, so a later `kfctl apply` needs no flags.
    app.config.platform = provisioned.spec.clone();
    save(&app)?;
    let (client, _) = detect::client_for(&provisioned.access).await.map_err(DeployError::Connect)?;
    if app.config.cluster == ClusterSettings::default() {
        app.config.cluster = detect::detect(&client, sink).await.map_err(|source| DeployError::Detect { source })?;
        save(&app)?;
        say(Step::Detected { config: &app.dir.join(config::FILE_NAME) });
    }
    if opts.cluster_only {
        say(Step::ClusterReady { app: &app });
        return Ok(Deployed { app, client, access: provisioned.access, created, status: None });
    }

    // 4. Kubeflow: the Kubernetes resources.
    stop_if_interrupted(&app.dir, || Interruption::Before("rendering and applying"))?;
    match install(&client, &app, opts.ready_timeout, &opts.purpose, &say, sink).await {
        Ok(status) => Ok(Deployed { app, client, access: provisioned.access, created, status: Some(status) }),
        Err(InstallError::Interrupted(signal, at)) => Err(DeployError::Interrupted { signal, dir: app.dir.clone(), at }),
        Err(source) => Err(DeployError::Install { dir: app.dir.clone(), created, source }),
    }
}

/// Open or create the app directory and apply the face's choices. A new directory is saved with
/// them at once (where they changed it); an existing one keeps its kfctl.yaml until the cluster
/// exists. Blocking.
fn app_directory(source: AppSource, configure: Option<Configure>) -> Result<App, DeployError> {
    let dir = source.dir().to_path_buf();
    let created = matches!(source, AppSource::Init(_));
    let mut app = match source {
        AppSource::Open(dir) => App::open(&dir).map_err(|source| DeployError::Open { dir, source })?,
        AppSource::Init(init) => App::init(&init).map_err(|source| DeployError::Init { dir, source })?,
    };
    if let Some(configure) = configure {
        let before = app.config.clone();
        configure(&mut app.config).map_err(DeployError::Configure)?;
        if created && app.config != before {
            save(&app)?;
        }
    }
    Ok(app)
}

fn save(app: &App) -> Result<(), DeployError> {
    app.save().map_err(|source| DeployError::Save { path: app.dir.join(config::FILE_NAME), source })
}

/// Render, apply in order, wait until ready.
async fn install(
    client: &Client,
    app: &App,
    timeout: Duration,
    purpose: &str,
    say: &dyn Fn(Step<'_>),
    sink: &dyn ProgressSink,
) -> Result<AppStatus, InstallError> {
    let render_app = app.clone();
    let rendered = tokio::task::spawn_blocking(move || render_app.render())
        .await
        .map_err(InstallError::RenderStopped)?
        .map_err(|source| InstallError::Render { dir: app.dir.clone(), source })?;
    say(Step::Rendered { objects: rendered.objects.len() });
    if let Some(signal) = crate::interrupt::requested() {
        return Err(InstallError::Interrupted(signal, Interruption::Before("applying")));
    }
    // One writer per app: held while writing, not while waiting for readiness.
    let lock = match crate::lock::acquire(client, &crate::plan::AppTarget::for_app(app), purpose, true, sink).await {
        Ok(lock) => lock,
        Err(crate::lock::LockError::Interrupted { .. }) => {
            let signal = crate::interrupt::requested().expect("the lock stops waiting only when a signal was received");
            return Err(InstallError::Interrupted(signal, Interruption::Before("applying (it was waiting for the app's lock)")));
        }
        Err(e) => return Err(InstallError::Lock(e)),
    };
    let applied = apply::apply_app(client, app, &rendered, &ApplyOptions::default(), sink).await;
    lock.release().await;
    if let Some(signal) = crate::interrupt::requested() {
        return Err(InstallError::Interrupted(signal, Interruption::Applying(applied)));
    }
    applied.map_err(InstallError::Apply)?;
    say(Step::Applied);
    tokio::select! {
        ready = health::wait_ready(client, app, timeout, sink) => ready.map_err(InstallError::Wait),
        () = crate::interrupt::received() => {
            let signal = crate::interrupt::requested().expect("received means requested");
            Err(InstallError::Interrupted(signal, Interruption::Waiting))
        }
    }
}

/// After the cluster exists, a failed install leaves it there on purpose: say so.
fn leftover_note(created: &[Created], dir: &Path) -> String {
    let dir = quote(&dir.to_string_lossy());
    if created.is_empty() {
        return format!("installing Kubeflow failed\n  hint: fix the cause, then `kfctl apply {dir}`");
    }
    let what: Vec<&str> = created.iter().map(|c| c.what.as_str()).collect();
    format!(
        "installing Kubeflow failed; the cluster stays ({})\n  hint: fix the cause, then `kfctl apply {dir}` (no need to create the cluster again), or remove it with `kfctl delete {dir} --platform`",
        what.join(", ")
    )
}
