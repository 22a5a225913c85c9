//! `kfctl init DIR --registry URL|PATH [--sha256 HEX] [--version V] [--platform P]`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::app::{App, InitOptions};
use crate::platform::{PlatformKind, PlatformSpec};
use crate::progress::Progress;
use crate::registry::catalog;

#[derive(Debug, clap::Args)]
// `--version` here is the Kubeflow version, not kfctl's (which `kfctl --version` prints).
#[command(disable_version_flag = true)]
pub struct InitArgs {
    /// The app directory to create.
    pub dir: PathBuf,
    #[command(flatten)]
    pub release: ReleaseFlags,
    /// Where the app runs: existing, kind, minikube, microk8s, k3d, gke, eks, aks.
    #[arg(long, default_value = "existing")]
    pub platform: PlatformKind,
    /// The app's name (labels every object kfctl applies).
    #[arg(long)]
    pub name: Option<String>,
    /// Replace an existing app's kfctl.yaml and vendored registry.
    #[arg(long)]
    pub force: bool,
}

/// Which Kubeflow release an app is made from: `kfctl init`'s flags, shared with `kfctl deploy`
/// (which runs init when the directory holds no app).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ReleaseFlags {
    /// The registry archive: an https:// or file:// URL, or a local path to a .tar.gz.
    /// Default: the upstream release archive of --version (or of v1.4.1), verified by its pinned sha256.
    #[arg(long)]
    pub registry: Option<String>,
    /// The archive's sha256 (64 hex digits). Without it, a default registry is checked against
    /// the pinned digest and any other archive's digest is recorded in kfctl.yaml.
    #[arg(long)]
    pub sha256: Option<String>,
    /// The Kubeflow version; by default taken from the registry (e.g. manifests-1.4.1/).
    #[arg(long)]
    pub version: Option<String>,
}

impl ReleaseFlags {
    /// The archive to fetch: --registry, else the upstream archive of --version (or the default
    /// release).
    pub fn registry_source(&self) -> anyhow::Result<String> {
        Ok(match &self.registry {
            Some(registry) => registry.clone(),
            None => {
                let version = self.version.as_deref().unwrap_or(catalog::DEFAULT_VERSION);
                catalog::release(version)?.default_url.to_string()
            }
        })
    }
}

pub fn run(args: InitArgs) -> anyhow::Result<ExitCode> {
    let registry = args.release.registry_source()?;
    let opts = InitOptions {
        dir: args.dir.clone(),
        registry,
        sha256: args.release.sha256,
        version: args.release.version,
        platform: Some(PlatformSpec { kind: args.platform, ..Default::default() }),
        name: args.name,
        force: args.force,
    };
    let print_step = |progress: Progress| {
        if let Progress::Message { text } = progress {
            eprintln!("{text}");
        }
    };
    let app = App::init_with_progress(&opts, &print_step).with_context(|| format!("cannot initialise an app in {}", args.dir.display()))?;
    let enabled = app.config.components.iter().filter(|c| c.enabled).count();
    println!(
        "created {} for Kubeflow {} ({} components enabled, registry sha256 {})",
        app.dir.join(crate::config::FILE_NAME).display(),
        app.config.version,
        enabled,
        app.config.registry.sha256
    );
    if opts.sha256.is_none() && catalog::release_for_url(&opts.registry).is_none() {
        println!("note: no --sha256 was given; the archive's digest above was recorded, not verified");
    }
    println!("next: review {0}/kfctl.yaml, `kfctl component list {0}`, then `kfctl apply {0}`", app.dir.display());
    Ok(ExitCode::SUCCESS)
}
