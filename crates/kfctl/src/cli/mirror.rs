//! `kfctl mirror [DIR]`: copy every image the app runs (or those named with `--image`) to a
//! private registry (`--to REGISTRY[/PREFIX]`) or into an OCI layout directory (`--to-layout DIR`),
//! from their registries, an OCI layout (`--from-layout`) or a bundle (`--from-bundle`). An image
//! `HOST/REPO:TAG` lands at `REGISTRY/PREFIX/HOST/REPO:TAG`; each copied image's digest is printed
//! on stdout, and for an app kfctl.yaml records an override by digest for each, so the render
//! names the mirror wherever it named the image.

use std::collections::BTreeMap;
use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;

use anyhow::Context as _;

use crate::app::App;
use crate::bundle;
use crate::config::AppImageOverride;
use crate::oci::{Copier, CopyEvent, CopyOptions, CopyProgress, ImageLocation, Layout, Reference};

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    kfctl mirror ./kubeflow --to registry.example:5000/kubeflow --ca-file ca.pem\n  \
    kfctl mirror ./kubeflow --from-bundle kubeflow.tar.gz --to registry.example:5000/kubeflow\n  \
    kfctl mirror --to registry.example:5000/kubeflow --image gcr.io/ml-pipeline/frontend:2.5.0\n  \
    kfctl mirror --to-layout ./images --image docker.io/kubeflownotebookswg/jupyter:v1.9.0")]
pub struct MirrorArgs {
    /// The app directory whose images are copied (every image its render names, as released);
    /// mirroring to a registry records an override by digest for each in its kfctl.yaml.
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// The registry to copy to, with an optional repository prefix (registry.example:5000/kubeflow).
    #[arg(long, value_name = "REGISTRY[/PREFIX]", required_unless_present = "to_layout")]
    pub to: Option<String>,
    /// Write the images into this OCI image-layout directory instead of a registry.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["to", "from_layout", "from_bundle"])]
    pub to_layout: Option<PathBuf>,
    /// Read the images from this OCI image-layout directory (every image in it, or those named
    /// with --image) instead of their registries.
    #[arg(long, value_name = "DIR", conflicts_with = "from_bundle")]
    pub from_layout: Option<PathBuf>,
    /// Read the app's images from a bundle that `kfctl bundle --images` wrote (no network but the
    /// target registry); DIR is the app `kfctl init --bundle` made from it.
    #[arg(long, value_name = "FILE", conflicts_with = "images")]
    pub from_bundle: Option<PathBuf>,
    /// An image to copy (repeatable), e.g. gcr.io/ml-pipeline/frontend:2.5.0, instead of the app's.
    #[arg(long = "image", value_name = "REF")]
    pub images: Vec<String>,
    #[command(flatten)]
    pub copy: CopyFlags,
}

/// How images are read and written: shared by `kfctl mirror` and `kfctl bundle --images`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct CopyFlags {
    /// Copy only this platform of multi-platform images (linux/amd64); default: every platform.
    #[arg(long, value_name = "OS/ARCH")]
    pub platform: Option<String>,
    /// PEM file with the CA certificates of the registries (in addition to the system's).
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Allow plain HTTP (registries without TLS, http:// sources).
    #[arg(long)]
    pub insecure: bool,
    /// Read images of HOST from URL instead (repeatable): gcr.io=https://mirror.example/gcr.io.
    #[arg(long = "source", value_name = "HOST=URL", value_parser = parse_source)]
    pub sources: Vec<(String, String)>,
    /// Docker config file with registry credentials (default: $DOCKER_CONFIG/config.json, then
    /// ~/.docker/config.json).
    #[arg(long, value_name = "FILE")]
    pub docker_config: Option<PathBuf>,
}

impl CopyFlags {
    pub(super) fn copier(&self) -> anyhow::Result<Copier> {
        Ok(Copier::new(CopyOptions {
            platform: self.platform.clone(),
            ca_file: self.ca_file.clone(),
            insecure: self.insecure,
            docker_config: self.docker_config.clone(),
            source_overrides: self.sources.iter().cloned().collect::<BTreeMap<_, _>>(),
            concurrency: 0,
        })?)
    }
}

fn parse_source(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((host, url)) if !host.is_empty() && !url.is_empty() => Ok((host.to_string(), url.to_string())),
        _ => Err(format!("{text:?} is not HOST=URL (example: gcr.io=https://mirror.example/gcr.io)")),
    }
}

/// `registry:5000/kubeflow` -> (`registry:5000`, `kubeflow`).
fn parse_target(text: &str) -> anyhow::Result<(String, String)> {
    let text = text.trim_end_matches('/');
    let (host, prefix) = text.split_once('/').unwrap_or((text, ""));
    // The prefix must make valid repository paths: check it the way a reference is checked.
    Reference::parse(&format!("{host}/{}x", if prefix.is_empty() { String::new() } else { format!("{prefix}/") }))
        .ok()
        .filter(|r| r.host == host && !host.contains("://"))
        .with_context(|| {
            format!("--to {text:?} is not REGISTRY[/PREFIX]\n  hint: write the registry host (with its port) and an optional lowercase path, e.g. registry.example:5000/kubeflow")
        })?;
    Ok((host.to_string(), prefix.to_string()))
}

pub fn run(args: MirrorArgs) -> anyhow::Result<ExitCode> {
    let target = args.to.as_deref().map(parse_target).transpose()?;
    // What to copy (each image by the name the render gives it), from where, and the app whose
    // kfctl.yaml records where each went.
    let mut app = None;
    let mut from_layout = args.from_layout.clone();
    let mut _unpacked = None;
    let names: Vec<String> = if let Some(bundle) = &args.from_bundle {
        let opened = open_app(&args.dir)?;
        let scratch_parent = bundle.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let scratch = tempfile::Builder::new()
            .prefix(".kfctl-bundle-images-")
            .tempdir_in(scratch_parent)
            .with_context(|| format!("cannot unpack the bundle's images next to {}", bundle.display()))?;
        eprintln!("reading the images of {} (verifying every file)", bundle.display());
        let (layout, manifest) = bundle::unpack_images(bundle, &scratch.path().join("unpacked"))?;
        let wanted = app_images(&opened)?;
        let missing: Vec<&String> = wanted.iter().filter(|w| !manifest.images.contains(w)).collect();
        if !missing.is_empty() {
            anyhow::bail!(
                "{} does not hold {} of the images {} runs: {}\n  hint: make the bundle again with `kfctl bundle --images` from this app's kfctl.yaml",
                bundle.display(),
                missing.len(),
                opened.dir.display(),
                missing.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(", ")
            );
        }
        from_layout = Some(layout);
        _unpacked = Some(scratch);
        app = Some(opened);
        wanted
    } else if !args.images.is_empty() {
        args.images.clone()
    } else if let Some(dir) = &args.from_layout {
        Layout::open(dir)?.images()?.iter().map(|r| r.to_string()).collect()
    } else {
        let opened = open_app(&args.dir)?;
        let names = app_images(&opened)?;
        app = Some(opened);
        names
    };
    let images: Vec<(String, Reference)> = names
        .iter()
        .map(|name| Reference::parse(name).map(|r| (name.clone(), r)))
        .collect::<Result<_, _>>()?;
    if let (Some(dir), None) = (&from_layout, &args.from_bundle) {
        let in_layout = Layout::open(dir)?.images()?;
        if let Some((missing, _)) = images.iter().find(|(_, i)| !in_layout.contains(i)) {
            anyhow::bail!(
                "{missing} is not in the OCI layout {}\n  hint: it has: {}",
                dir.display(),
                in_layout.iter().map(|r| r.to_string()).collect::<Vec<_>>().join(", ")
            );
        }
    }
    let copier = args.copy.copier()?;
    let printer = CopyPrinter::new(std::io::stderr().is_terminal());
    let started = std::time::Instant::now();
    let copied = super::common::runtime()?.block_on(async {
        let mut copied = Vec::with_capacity(images.len());
        for (name, image) in &images {
            let source = match &from_layout {
                Some(dir) => ImageLocation::Layout { dir: dir.clone(), reference: image.clone() },
                None => ImageLocation::Registry(image.clone()),
            };
            let destination = match (&target, &args.to_layout) {
                (Some((registry, prefix)), _) => ImageLocation::Registry(image.mirrored_to(registry, prefix)),
                (None, Some(dir)) => ImageLocation::Layout { dir: dir.clone(), reference: image.clone() },
                (None, None) => unreachable!("clap requires --to or --to-layout"),
            };
            printer.start(&source, &destination);
            let report = copier.copy(&source, &destination, &printer).await.with_context(|| {
                let recorded = if app.is_some() && target.is_some() { "; nothing was recorded in kfctl.yaml" } else { "" };
                format!("cannot copy {source} to {destination} ({} of {} images done{recorded}; run the same command again to finish: what is there is not copied twice)", copied.len(), images.len())
            })?;
            printer.finish();
            let at = match &destination {
                ImageLocation::Registry(r) => r.to_string(),
                ImageLocation::Layout { dir, reference } => format!("{}:{reference}", dir.display()),
            };
            println!("{at}@{}", report.digest);
            copied.push((name.clone(), destination, report));
        }
        anyhow::Ok(copied)
    })?;
    let blobs_copied: usize = copied.iter().map(|(_, _, r)| r.blobs_copied).sum();
    let blobs_skipped: usize = copied.iter().map(|(_, _, r)| r.blobs_skipped).sum();
    let bytes: u64 = copied.iter().map(|(_, _, r)| r.bytes).sum();
    let to = match (&args.to, &args.to_layout) {
        (Some(to), _) => to.clone(),
        (None, Some(dir)) => dir.display().to_string(),
        (None, None) => String::new(),
    };
    eprintln!(
        "mirrored {} images to {to} in {:.1}s: {blobs_copied} blobs copied ({}), {blobs_skipped} already there",
        copied.len(),
        started.elapsed().as_secs_f64(),
        human_bytes(bytes)
    );
    if let (Some(mut app), Some(_)) = (app, &target) {
        let overrides = copied.iter().filter_map(|(name, destination, report)| match destination {
            ImageLocation::Registry(r) => Some(AppImageOverride {
                name: name.clone(),
                new_name: Some(format!("{}/{}", r.host, r.repository)),
                new_tag: None,
                digest: Some(report.digest.clone()),
            }),
            ImageLocation::Layout { .. } => None,
        });
        app.config.record_image_overrides(overrides);
        app.save()?;
        eprintln!(
            "recorded {} image overrides (by digest) in {}: every place the render names these images now names the mirror",
            copied.len(),
            app.dir.join(crate::config::FILE_NAME).display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn open_app(dir: &Path) -> anyhow::Result<App> {
    App::open(dir).with_context(|| {
        format!("cannot read the app in {}\n  hint: name the app directory, or copy images one by one with --image", dir.display())
    })
}

/// Every image the app's render names, as released (before any override), by the name the
/// render gives it.
pub(super) fn app_images(app: &App) -> anyhow::Result<Vec<String>> {
    let rendered = app.render_as_released().with_context(|| format!("cannot render the app in {}", app.dir.display()))?;
    let rules = &app.release()?.images;
    Ok(crate::images::find(rendered.objects.iter().map(|o| &o.object), rules).into_iter().map(|i| i.image).collect())
}

/// Shows a copy: on a terminal a bytes bar per image; otherwise plain lines per image and blob.
struct CopyPrinter {
    terminal: bool,
    bar: Mutex<Option<indicatif::ProgressBar>>,
}

impl CopyPrinter {
    fn new(terminal: bool) -> CopyPrinter {
        CopyPrinter { terminal, bar: Mutex::new(None) }
    }

    fn start(&self, source: &ImageLocation, destination: &ImageLocation) {
        if !self.terminal {
            eprintln!("copying {source} to {destination}");
            return;
        }
        let bar = indicatif::ProgressBar::new(0);
        bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} [{bar:30}] {bytes}/{total_bytes} {msg} ({elapsed})")
                .expect("a valid progress template")
                .progress_chars("=> "),
        );
        bar.set_message(source.to_string());
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        *self.bar.lock().expect("bar lock") = Some(bar);
    }

    fn finish(&self) {
        if let Some(bar) = self.bar.lock().expect("bar lock").take() {
            bar.finish_and_clear();
        }
    }
}

impl CopyProgress for CopyPrinter {
    fn event(&self, event: CopyEvent<'_>) {
        let bar = self.bar.lock().expect("bar lock");
        match (event, bar.as_ref()) {
            (CopyEvent::Planned { bytes, .. }, Some(bar)) => bar.set_length(bytes),
            (CopyEvent::Planned { blobs, bytes, .. }, None) => {
                eprintln!("  {blobs} blobs, {}", human_bytes(bytes))
            }
            (CopyEvent::Bytes { .. }, None) => {}
            (CopyEvent::Bytes { bytes, .. }, Some(bar)) => bar.inc(bytes),
            (CopyEvent::BlobDone { size, skipped: true, .. }, Some(bar)) => bar.inc(size),
            (CopyEvent::BlobDone { .. }, Some(_)) => {}
            (CopyEvent::BlobDone { digest, size, skipped, .. }, None) => {
                eprintln!("  {} {digest} ({})", if skipped { "present" } else { "copied " }, human_bytes(size))
            }
            (CopyEvent::Finished { image, report }, bar) => {
                let line = format!(
                    "{image}: {} blobs copied ({}), {} already there, {} manifests pushed",
                    report.blobs_copied,
                    human_bytes(report.bytes),
                    report.blobs_skipped,
                    report.manifests_pushed
                );
                match bar {
                    Some(bar) => bar.suspend(|| eprintln!("{line}")),
                    None => eprintln!("{line}"),
                }
            }
        }
    }
}

fn human_bytes(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_is_a_registry_with_an_optional_prefix() {
        assert_eq!(parse_target("registry:5000/kubeflow/").unwrap(), ("registry:5000".into(), "kubeflow".into()));
        assert_eq!(parse_target("registry.example").unwrap(), ("registry.example".into(), String::new()));
        for bad in ["https://registry:5000", "registry:5000/Kubeflow", "kubeflow"] {
            let err = parse_target(bad).unwrap_err().to_string();
            assert!(err.contains("REGISTRY[/PREFIX]"), "{bad}: {err}");
        }
        assert!(parse_source("gcr.io").unwrap_err().contains("HOST=URL"));
    }
}
