//! `kfctl mirror`: copy images to a private registry (`--to REGISTRY[/PREFIX]`) or into an OCI
//! layout directory (`--to-layout DIR`, carried into an air gap), or from such a directory into a
//! registry (`--from-layout DIR --to ...`). An image `HOST/REPO:TAG` lands at
//! `REGISTRY/PREFIX/HOST/REPO:TAG`; each copied image's digest is printed on stdout.

use std::collections::BTreeMap;
use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;

use anyhow::Context as _;

use crate::oci::{Copier, CopyEvent, CopyOptions, CopyProgress, ImageLocation, Layout, Reference};

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    kfctl mirror --to registry.example:5000/kubeflow --image gcr.io/ml-pipeline/frontend:2.5.0\n  \
    kfctl mirror --to-layout ./images --image docker.io/kubeflownotebookswg/jupyter:v1.9.0\n  \
    kfctl mirror --from-layout ./images --to registry.example:5000/kubeflow --ca-file ca.pem")]
pub struct MirrorArgs {
    /// The registry to copy to, with an optional repository prefix (registry.example:5000/kubeflow).
    #[arg(long, value_name = "REGISTRY[/PREFIX]", required_unless_present = "to_layout")]
    pub to: Option<String>,
    /// Write the images into this OCI image-layout directory instead of a registry.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["to", "from_layout"])]
    pub to_layout: Option<PathBuf>,
    /// Read the images from this OCI image-layout directory (every image in it, or those named
    /// with --image) instead of their registries.
    #[arg(long, value_name = "DIR")]
    pub from_layout: Option<PathBuf>,
    /// An image to copy (repeatable), e.g. gcr.io/ml-pipeline/frontend:2.5.0.
    #[arg(long = "image", value_name = "REF", required_unless_present = "from_layout")]
    pub images: Vec<String>,
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
    // The images to copy: --image for now; the app's own images join this list.
    let mut images: Vec<Reference> = args.images.iter().map(|text| Reference::parse(text)).collect::<Result<_, _>>()?;
    if let Some(dir) = &args.from_layout {
        let in_layout = Layout::open(dir)?.images()?;
        if images.is_empty() {
            images = in_layout;
        } else if let Some(missing) = images.iter().find(|i| !in_layout.contains(i)) {
            anyhow::bail!(
                "{missing} is not in the OCI layout {}\n  hint: it has: {}",
                dir.display(),
                in_layout.iter().map(|r| r.to_string()).collect::<Vec<_>>().join(", ")
            );
        }
    }
    let target = args.to.as_deref().map(parse_target).transpose()?;
    let options = CopyOptions {
        platform: args.platform.clone(),
        ca_file: args.ca_file.clone(),
        insecure: args.insecure,
        docker_config: args.docker_config.clone(),
        source_overrides: args.sources.iter().cloned().collect::<BTreeMap<_, _>>(),
        concurrency: 0,
    };
    let copier = Copier::new(options)?;
    let printer = CopyPrinter::new(std::io::stderr().is_terminal());
    super::common::runtime()?.block_on(async {
        for image in &images {
            let source = match &args.from_layout {
                Some(dir) => ImageLocation::Layout { dir: dir.clone(), reference: image.clone() },
                None => ImageLocation::Registry(image.clone()),
            };
            let destination = match (&target, &args.to_layout) {
                (Some((registry, prefix)), _) => ImageLocation::Registry(image.mirrored_to(registry, prefix)),
                (None, Some(dir)) => ImageLocation::Layout { dir: dir.clone(), reference: image.clone() },
                (None, None) => unreachable!("clap requires --to or --to-layout"),
            };
            printer.start(&source, &destination);
            let report = copier.copy(&source, &destination, &printer).await.with_context(|| format!("cannot copy {source} to {destination}"))?;
            printer.finish();
            let at = match &destination {
                ImageLocation::Registry(r) => r.to_string(),
                ImageLocation::Layout { dir, reference } => {
                    format!("{}:{reference}", dir.display())
                }
            };
            println!("{at}@{}", report.digest);
        }
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
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
