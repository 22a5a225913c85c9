//! `kfctl bundle [DIR] -o FILE`: the app directory (release, remote resources, pins, patches) in
//! one verified file to carry into an air gap, where `kfctl init --bundle FILE` unpacks it.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::app::App;
use crate::bundle;

#[derive(Debug, clap::Args)]
pub struct BundleArgs {
    /// The app directory (holding kfctl.yaml).
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// The bundle file to write (a .tar.gz); `FILE.sha256` is written beside it.
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
}

pub fn run(args: BundleArgs) -> anyhow::Result<ExitCode> {
    let app = App::open(&args.dir)
        .with_context(|| format!("cannot bundle the app in {}", args.dir.display()))?;
    let written = bundle::write(&app, None, &args.output)?;
    print_written(&app, &written, 0);
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
