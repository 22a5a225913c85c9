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
    /// Make the app from a bundle that `kfctl bundle` wrote (offline; its content is verified).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["registry", "digest", "sha256", "mirror", "version", "name", "force"])]
    pub bundle: Option<PathBuf>,
}

/// Which Kubeflow release an app is made from: `kfctl init`'s flags, shared with `kfctl deploy`
/// (which runs init when the directory holds no app).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ReleaseFlags {
    /// The registry archive: an https:// or file:// URL, or a local path to a .tar.gz.
    /// Default: the upstream release archive of --version (or of v1.4.1), verified by its pinned sha256.
    #[arg(long)]
    pub registry: Option<String>,
    /// The release's content pin, `tree-sha256:HEX` (as kfctl.yaml records it). Without it, a
    /// release kfctl has a catalog for is checked against the catalog's pin, and any other
    /// archive's digest is recorded in kfctl.yaml.
    #[arg(long, conflicts_with = "sha256")]
    pub digest: Option<String>,
    /// The archive's sha256 (64 hex digits): pins the archive's bytes rather than its content.
    #[arg(long)]
    pub sha256: Option<String>,
    /// Read remote resources the release names (`https://HOST/PATH`) as `BASE/HOST/PATH`: an
    /// http(s):// URL or a local directory laid out so. Recorded in kfctl.yaml.
    #[arg(long, value_name = "BASE")]
    pub mirror: Option<String>,
    /// The Kubeflow version; by default taken from the registry (e.g. manifests-1.4.1/).
    #[arg(long)]
    pub version: Option<String>,
}

impl ReleaseFlags {
    /// The pin to check, from --digest or --sha256.
    pub fn digest(&self) -> anyhow::Result<Option<String>> {
        Ok(match (&self.digest, &self.sha256) {
            (Some(digest), _) => Some(digest.clone()),
            (None, Some(sha256)) => Some(format!("sha256:{}", crate::registry::normalize_sha256(sha256)?)),
            (None, None) => None,
        })
    }

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
    if let Some(bundle) = &args.bundle {
        return from_bundle(bundle, &args.dir);
    }
    let registry = args.release.registry_source()?;
    let opts = InitOptions {
        dir: args.dir.clone(),
        registry,
        digest: args.release.digest()?,
        mirror: args.release.mirror.clone(),
        version: args.release.version.clone(),
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
    let remotes = app.config.registry.remotes.len();
    println!(
        "created {} for Kubeflow {} ({} components enabled, {} remote resources vendored, registry {})",
        app.dir.join(crate::config::FILE_NAME).display(),
        app.config.version,
        enabled,
        remotes,
        app.config.registry.digest.as_deref().unwrap_or("")
    );
    for line in app.variant_lines()? {
        println!("{line}");
    }
    println!("next: review {0}/kfctl.yaml, `kfctl component list {0}`, then `kfctl apply {0}`", app.dir.display());
    Ok(ExitCode::SUCCESS)
}

/// `kfctl init DIR --bundle FILE`.
fn from_bundle(bundle: &std::path::Path, dir: &std::path::Path) -> anyhow::Result<ExitCode> {
    let (app, manifest) =
        crate::bundle::init_app(bundle, dir).with_context(|| format!("cannot initialise an app in {} from {}", dir.display(), bundle.display()))?;
    let enabled = app.config.components.iter().filter(|c| c.enabled).count();
    println!(
        "created {} for Kubeflow {} from {} ({} files verified, {} components enabled)",
        app.dir.join(crate::config::FILE_NAME).display(),
        app.config.version,
        bundle.display(),
        manifest.files.len(),
        enabled,
    );
    if manifest.images.is_empty() {
        println!("next: `kfctl apply {}` (the bundle holds no images: the cluster pulls them from their registries)", app.dir.display());
    } else {
        println!(
            "next: `kfctl mirror {} --from-bundle {} --to REGISTRY` ({} images), then `kfctl apply {0}`",
            app.dir.display(),
            bundle.display(),
            manifest.images.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}
