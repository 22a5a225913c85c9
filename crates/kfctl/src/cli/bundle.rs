//! `kfctl bundle [DIR] -o FILE [--images]`: the app directory (release, remote resources, pins,
//! patches) and optionally every image it runs (an OCI image layout) in one verified file to carry
//! into an air gap, where `kfctl init --bundle FILE` and `kfctl mirror --from-bundle FILE` read it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use crate::app::App;
use crate::bundle;
use crate::oci::{ImageLocation, NoProgress, Reference};

#[derive(Debug, clap::Args)]
pub struct BundleArgs {
    /// The app directory (holding kfctl.yaml).
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// The bundle file to write (a .tar.gz); `FILE.sha256` is written beside it.
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
    /// Also carry every image the app runs (as released), read from their registries (or
    /// through --source mirrors).
    #[arg(long)]
    pub images: bool,
    #[command(flatten)]
    pub copy: super::mirror::CopyFlags,
}

pub fn run(args: BundleArgs) -> anyhow::Result<ExitCode> {
    let app = App::open(&args.dir).with_context(|| format!("cannot bundle the app in {}", args.dir.display()))?;
    if !args.images {
        let written = bundle::write(&app, None, &args.output)?;
        print_written(&app, &written, 0);
        return Ok(ExitCode::SUCCESS);
    }
    // The images go into an OCI layout next to the bundle (on the disk that must hold it), which
    // is removed again once the bundle is written.
    let names = super::mirror::app_images(&app)?;
    let parent = args.output.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let scratch = tempfile::Builder::new()
        .prefix(".kfctl-bundle-layout-")
        .tempdir_in(parent)
        .with_context(|| format!("cannot make a scratch directory in {}", parent.display()))?;
    let layout = scratch.path().join("images");
    let copier = args.copy.copier()?;
    let started = std::time::Instant::now();
    super::common::runtime()?.block_on(async {
        for (i, name) in names.iter().enumerate() {
            let reference = Reference::parse(name)?;
            eprintln!("[{}/{}] {name}", i + 1, names.len());
            let to = ImageLocation::Layout { dir: layout.clone(), reference: reference.clone() };
            copier.copy(&ImageLocation::Registry(reference), &to, &NoProgress).await.with_context(|| {
                format!("cannot read {name} for the bundle\n  hint: is its registry reachable from here? --source HOST=URL reads it through a mirror")
            })?;
        }
        anyhow::Ok(())
    })?;
    eprintln!("read {} images in {:.1}s", names.len(), started.elapsed().as_secs_f64());
    let written = bundle::write(&app, Some((&layout, &names)), &args.output)?;
    print_written(&app, &written, names.len());
    Ok(ExitCode::SUCCESS)
}

/// The lines `kfctl bundle` ends with.
pub(super) fn print_written(app: &App, written: &bundle::Written, images: usize) {
    println!(
        "wrote {} ({} files, {:.1} MB of content, {:.1} MB on disk; Kubeflow {}{})",
        written.path.display(),
        written.files,
        written.content_bytes as f64 / 1e6,
        written.bundle_bytes as f64 / 1e6,
        app.config.version,
        if images > 0 {
            format!(", {images} images")
        } else {
            String::new()
        },
    );
    println!(
        "sha256 {}  (also in {})",
        written.sha256,
        bundle::sidecar_path(&written.path).display()
    );
    println!(
        "next: carry both files over, then `kfctl init DIR --bundle {}`",
        written.path.display()
    );
}
