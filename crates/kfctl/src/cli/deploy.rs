//! `kfctl deploy [DIR] --platform P [--registry R] [--yes] [--dry-run]`: from nothing to a ready
//! Kubeflow, in one linear flow:
//!
//! 1. the app directory (`kfctl init` if DIR holds no kfctl.yaml),
//! 2. the cluster (platform::provision_in: local tool or Terraform; nothing for `existing`),
//! 3. the choices written to kfctl.yaml (platform, then auto-configuration of `cluster:`),
//! 4. Kubeflow (render, apply_app, wait_ready),
//! 5. how to connect (`kfctl open`).
//!
//! Steps 1-4 are [`crate::deploy::deploy`], the pipeline the web app's jobs run too; this file
//! turns flags into its options and words its steps for a terminal. `--dry-run` prints the same
//! flow as a shell script and changes nothing.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use super::OutputFormat;
use super::common::runtime;
use crate::app::{App, InitOptions};
use crate::config;
use crate::apply::Interruption;
use crate::deploy::{AppSource, DeployError, DeployOptions, Step, deploy};
use crate::platform::shell::{Shell, quote};
use crate::platform::{self, GpuPool, PlatformKind, PlatformSpec, ProvisionOptions};
use crate::progress::Printer;
use crate::registry::catalog;

#[derive(Debug, clap::Args)]
// `--version` here is the Kubeflow version, not kfctl's (which `kfctl --version` prints).
#[command(disable_version_flag = true)]
pub struct DeployArgs {
    /// The app directory; created with `kfctl init` when it holds no kfctl.yaml.
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// The release, for `kfctl init` (used only when DIR holds no app yet).
    #[command(flatten)]
    pub release: super::init::ReleaseFlags,
    #[command(flatten)]
    pub platform: PlatformFlags,
    /// Do not ask before `terraform apply`.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Print every command and file as a shell script instead of running anything.
    #[arg(long)]
    pub dry_run: bool,
    /// Create the cluster and record it in kfctl.yaml, but do not install Kubeflow yet.
    #[arg(long)]
    pub cluster_only: bool,
    /// How long a new cluster's API server may take to answer.
    #[arg(long, default_value = "300s", value_parser = super::common::parse_duration)]
    pub cluster_timeout: Duration,
    /// How long Kubeflow may take to become ready.
    #[arg(long, default_value = "1200s", value_parser = super::common::parse_duration)]
    pub timeout: Duration,
    #[arg(long, value_enum, default_value_t)]
    pub output: OutputFormat,
}

/// Platform choices on the command line; each overrides kfctl.yaml's `platform:` and is saved.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct PlatformFlags {
    /// existing, kind, minikube, microk8s, k3d, gke, eks or aks (default: kfctl.yaml's, else existing).
    #[arg(long = "platform")]
    pub kind: Option<PlatformKind>,
    /// Kubeconfig for `existing`.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context for `existing`.
    #[arg(long)]
    pub context: Option<String>,
    /// Name of the cluster to create.
    #[arg(long)]
    pub cluster_name: Option<String>,
    /// Kubernetes version of the cluster to create (must suit the release).
    #[arg(long)]
    pub kubernetes_version: Option<String>,
    /// Number of worker nodes.
    #[arg(long)]
    pub nodes: Option<u32>,
    /// Machine type / VM size (minikube: "CPUS,MEMORY").
    #[arg(long)]
    pub node_size: Option<String>,
    /// Cloud region.
    #[arg(long)]
    pub region: Option<String>,
    /// GKE zone.
    #[arg(long)]
    pub zone: Option<String>,
    /// GCP project ID.
    #[arg(long)]
    pub project: Option<String>,
    /// AWS profile (eks) or Azure subscription ID (aks).
    #[arg(long)]
    pub account: Option<String>,
    /// Azure resource group.
    #[arg(long)]
    pub resource_group: Option<String>,
    /// Add a GPU node pool with this many nodes (clouds).
    #[arg(long)]
    pub gpu_nodes: Option<u32>,
    /// Machine type / VM size of the GPU nodes.
    #[arg(long)]
    pub gpu_node_size: Option<String>,
    /// GKE accelerator type (e.g. nvidia-tesla-t4).
    #[arg(long)]
    pub gpu_type: Option<String>,
}

impl PlatformFlags {
    /// `base` (from kfctl.yaml) with the flags given on the command line laid over it. Choosing
    /// another platform kind starts from an empty spec: the old one's sizes would not fit.
    pub fn over(&self, base: &PlatformSpec) -> PlatformSpec {
        let mut spec = match self.kind {
            Some(kind) if kind != base.kind => PlatformSpec::new(kind),
            _ => base.clone(),
        };
        let set = |field: &mut Option<String>, value: &Option<String>| {
            if value.is_some() {
                field.clone_from(value);
            }
        };
        if self.kubeconfig.is_some() {
            spec.kubeconfig.clone_from(&self.kubeconfig);
        }
        set(&mut spec.context, &self.context);
        set(&mut spec.cluster_name, &self.cluster_name);
        set(&mut spec.kubernetes_version, &self.kubernetes_version);
        set(&mut spec.node_size, &self.node_size);
        set(&mut spec.region, &self.region);
        set(&mut spec.zone, &self.zone);
        set(&mut spec.project, &self.project);
        set(&mut spec.account, &self.account);
        set(&mut spec.resource_group, &self.resource_group);
        if self.nodes.is_some() {
            spec.node_count = self.nodes;
        }
        match self.gpu_nodes {
            Some(0) => spec.gpu = None,
            Some(count) => {
                let gpu = spec.gpu.get_or_insert(GpuPool {
                    node_count: count,
                    node_size: None,
                    accelerator: None,
                    gpus_per_node: 1,
                });
                gpu.node_count = count;
            }
            None => {}
        }
        if let Some(gpu) = &mut spec.gpu {
            set(&mut gpu.node_size, &self.gpu_node_size);
            set(&mut gpu.accelerator, &self.gpu_type);
        }
        spec
    }
}

pub fn run(args: DeployArgs) -> anyhow::Result<ExitCode> {
    if args.dry_run {
        print!("{}", dry_run_script(&args)?);
        return Ok(ExitCode::SUCCESS);
    }
    let sink = Printer::new(args.output == OutputFormat::Json);
    let source = if args.dir.join(config::FILE_NAME).exists() { AppSource::Open(args.dir.clone()) } else { AppSource::Init(init_options(&args)?) };
    let flags = args.platform.clone();
    let opts = DeployOptions {
        app: source,
        configure: Some(Box::new(move |config| {
            config.platform = flags.over(&config.platform);
            Ok(())
        })),
        provision: ProvisionOptions { assume_yes: args.yes, reach_timeout: args.cluster_timeout },
        cluster_only: args.cluster_only,
        ready_timeout: args.timeout,
        words: Box::new(words),
        purpose: "kfctl deploy".into(),
    };
    let again = format!("run `kfctl deploy {}` again with the same flags: it goes on from what this run did", args.dir.display());
    let deployed = runtime()?.block_on(async {
        crate::interrupt::install(again).context("cannot listen for Ctrl-C")?;
        anyhow::Ok(deploy(opts, &sink).await)
    })?;
    let deployed = match deployed {
        Err(DeployError::Interrupted { signal, dir, at }) => {
            eprintln!("{}", interrupted_text(signal, &dir, &at));
            return Ok(ExitCode::from(signal.exit_code()));
        }
        deployed => deployed?,
    };
    if !args.cluster_only {
        println!("Kubeflow is ready. Connect with:\n  {}", open_command(&deployed.app));
    }
    Ok(ExitCode::SUCCESS)
}

/// What an interrupted deploy did and did not do, and how to go on.
fn interrupted_text(signal: crate::interrupt::Interrupt, dir: &std::path::Path, at: &Interruption) -> String {
    let dir = dir.display();
    match at {
        Interruption::Before(step) => format!(
            "interrupted by {} before {step}; nothing of it was started\n  hint: run `kfctl deploy {dir}` again with the same flags to go on",
            signal.name()
        ),
        Interruption::Applying(applied) => super::common::interrupted_text(
            signal,
            applied,
            &format!("run `kfctl deploy {dir}` again (or `kfctl apply {dir}`, then `kfctl wait {dir}`) to finish: objects already applied stay, the rest is applied"),
        ),
        Interruption::Waiting => format!(
            "interrupted by {} while waiting until every component is ready; everything was applied\n  hint: `kfctl wait {dir}` goes on waiting; `kfctl status {dir}` shows where each component stands",
            signal.name()
        ),
    }
}

/// What `kfctl deploy` says at each step, besides the progress of each stage.
fn words(step: &Step<'_>) -> Option<String> {
    match step {
        Step::Creating { dir, .. } => Some(format!("Create the app directory {}", dir.display())),
        Step::Detected { config } => Some(format!("Wrote the detected choices to {} (cluster:); review them there", config.display())),
        Step::ClusterReady { app } => Some(format!("Cluster ready; install Kubeflow with `kfctl apply {}`", app.dir.display())),
        Step::AppReady { .. } | Step::Rendered { .. } | Step::Applied => None,
    }
}

/// `kfctl open dashboard` with the kubeconfig and context the app records.
fn open_command(app: &App) -> String {
    open_line(&app.config.platform.access(&app.dir))
}

fn open_line(access: &platform::ClusterAccess) -> String {
    let mut line = String::from("kfctl open dashboard");
    if let Some(path) = &access.kubeconfig {
        line.push_str(&format!(" --kubeconfig {}", quote(&path.to_string_lossy())));
    }
    if let Some(context) = &access.context {
        line.push_str(&format!(" --context {}", quote(context)));
    }
    line
}

fn init_options(args: &DeployArgs) -> anyhow::Result<InitOptions> {
    Ok(InitOptions {
        dir: args.dir.clone(),
        registry: args.release.registry_source()?,
        digest: args.release.digest()?,
        mirror: args.release.mirror.clone(),
        version: args.release.version.clone(),
        platform: Some(args.platform.over(&PlatformSpec::default())),
        name: None,
        force: false,
    })
}

/// The whole deploy as a shell script: init, the platform's commands and files, saving the
/// choices, apply, wait, open.
pub fn dry_run_script(args: &DeployArgs) -> anyhow::Result<String> {
    let dir = &args.dir;
    let dir_q = quote(&dir.to_string_lossy());
    let existing = dir.join(config::FILE_NAME).exists();
    let (base, release) = if existing {
        let app = App::open(dir).with_context(|| format!("cannot open the app in {}", dir.display()))?;
        (app.config.platform.clone(), app.config.version.clone())
    } else {
        // As init decides: --version, else the release the registry holds, else the default.
        let from_registry = args.release.registry.as_deref().and_then(|source| {
            catalog::release_for_url(source).map(|r| r.version.clone()).or_else(|| crate::registry::archive_version(std::path::Path::new(source)))
        });
        let release = args.release.version.clone().or(from_registry).unwrap_or_else(|| catalog::DEFAULT_VERSION.to_owned());
        (PlatformSpec::default(), release)
    };
    let spec = args.platform.over(&base);
    let sink = crate::progress::Silent;
    let mut shell = Shell::dry_run(
        &sink,
        &format!(
            "What `kfctl deploy` would do for {} on platform {} (Kubeflow {release}).\nGenerated by kfctl deploy --dry-run; nothing has been changed.",
            dir.display(),
            spec.kind
        ),
    );
    if existing {
        shell.step(&format!("1. The app directory {} exists (kfctl.yaml)", dir.display()));
    } else {
        shell.step("1. Create the app directory: fetch, verify and unpack the registry, write kfctl.yaml");
        let opts = init_options(args)?;
        let mut line = format!("kfctl init {dir_q} --registry {}", quote(&opts.registry));
        if let Some(digest) = &opts.digest {
            line.push_str(&format!(" --digest {digest}"));
        }
        if let Some(mirror) = &opts.mirror {
            line.push_str(&format!(" --mirror {}", quote(mirror)));
        }
        if let Some(version) = &opts.version {
            line.push_str(&format!(" --version {}", quote(version)));
        }
        line.push_str(&format!(" --platform {}", spec.kind));
        shell.script_only(&line);
    }
    shell.step("2. The cluster");
    let opts = ProvisionOptions { assume_yes: args.yes, reach_timeout: args.cluster_timeout };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let provisioned = runtime.block_on(platform::provision_in(&mut shell, dir, &spec, &release, &opts))?;

    shell.step(&format!(
        "3. kfctl records these platform choices in {}/kfctl.yaml (platform:), then detects storage, GPUs\n   and load balancers on the cluster and records them under cluster: for review:",
        dir.display()
    ));
    let yaml = serde_saphyr::to_string(&provisioned.spec).context("cannot show the platform choices")?;
    for line in yaml.lines() {
        shell.step(&format!("  {line}"));
    }
    if args.cluster_only {
        shell.step("--cluster-only: Kubeflow is not installed; later: kfctl apply");
    } else {
        shell.step("4. Install Kubeflow in ordered phases and wait until it is ready");
        shell.script_only(&format!("kfctl apply {dir_q}"));
        shell.script_only(&format!("kfctl wait {dir_q} --timeout {}s", args.timeout.as_secs()));
        shell.step("5. Connect");
        let mut recorded = provisioned.spec.clone();
        if recorded.kubeconfig.is_none() && spec.kind != PlatformKind::Existing {
            recorded.kubeconfig = Some(PathBuf::from(platform::KUBECONFIG_FILE));
        }
        shell.script_only(&open_line(&recorded.access(dir)));
    }
    Ok(shell.into_script().expect("a dry-run shell has a script"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_saved_spec_and_a_new_kind_starts_fresh() {
        let mut saved = PlatformSpec::new(PlatformKind::Gke);
        saved.project = Some("p".into());
        saved.node_size = Some("e2-standard-8".into());
        let flags = PlatformFlags { nodes: Some(4), gpu_nodes: Some(1), gpu_type: Some("nvidia-l4".into()), ..Default::default() };
        let spec = flags.over(&saved);
        assert_eq!((spec.project.as_deref(), spec.node_count), (Some("p"), Some(4)));
        assert_eq!(spec.gpu.as_ref().map(|g| (g.node_count, g.accelerator.as_deref())), Some((1, Some("nvidia-l4"))));
        let flags = PlatformFlags { kind: Some(PlatformKind::Kind), ..Default::default() };
        assert_eq!(flags.over(&saved), PlatformSpec::new(PlatformKind::Kind));
    }
}
