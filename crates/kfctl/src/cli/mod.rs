//! Command-line interface: one file per subcommand. `main.rs` only calls [`main`].

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

mod apply;
mod build;
mod common;
mod component;
mod delete;
mod deploy;
mod diff;
mod doctor;
mod init;
mod open;
mod serve;
mod status;
mod upgrade;
mod wait;

/// Kubeflow in one command.
#[derive(Debug, Parser)]
#[command(name = "kfctl", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create an app directory: kfctl.yaml plus the vendored component registry.
    Init(init::InitArgs),
    /// Render a kustomize directory, like `kubectl kustomize DIR`.
    Build(build::BuildArgs),
    /// List, add or remove components of an app.
    #[command(subcommand)]
    Component(component::ComponentCommand),
    /// Apply the app to its cluster in ordered phases, pruning what left the config.
    Apply(apply::ApplyArgs),
    /// Show what `kfctl apply` would change, without changing anything.
    Diff(diff::DiffArgs),
    /// Show per-component readiness.
    Status(status::StatusArgs),
    /// Wait until every component is ready.
    Wait(wait::WaitArgs),
    /// Create what the platform needs, install Kubeflow and wait until it is ready.
    Deploy(deploy::DeployArgs),
    /// Remove what kfctl created.
    Delete(delete::DeleteArgs),
    /// Reach the Kubeflow dashboard or JupyterLab through a port-forward.
    Open(open::OpenArgs),
    /// Check the cluster before changing anything.
    Doctor(doctor::DoctorArgs),
    /// Serve the click-to-deploy web app.
    Serve(serve::ServeArgs),
    /// Move the app to another Kubeflow release: show the plan, then apply it.
    Upgrade(upgrade::UpgradeArgs),
    /// Remove vendored releases the app no longer uses (kept by `upgrade` for a rollback).
    Gc(upgrade::GcArgs),
}

/// How results are printed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Progress on a terminal, plain lines otherwise.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Arguments shared by commands that act on an app directory and its cluster.
#[derive(Debug, Clone, Args)]
pub struct AppArgs {
    /// The app directory (holding kfctl.yaml).
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Kubeconfig context to use instead of the current one.
    #[arg(long, global = false)]
    pub context: Option<String>,
    #[arg(long, value_enum, default_value_t)]
    pub output: OutputFormat,
}

/// Parse arguments, run the command, map errors to exit codes.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // `kfctl diff` exits 1 for "there are changes", so its errors need a code of their own.
    let failure = match cli.command {
        Command::Diff(_) => ExitCode::from(diff::ERROR_EXIT),
        _ => ExitCode::FAILURE,
    };
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            report_error(&err);
            failure
        }
    }
}

/// `error: ...` followed by its causes, then `hint: ...` lines where the error carries one.
pub fn report_error(err: &anyhow::Error) {
    eprintln!("error: {err}");
    for cause in err.chain().skip(1) {
        eprintln!("  caused by: {cause}");
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Init(args) => init::run(args),
        Command::Build(args) => build::run(args),
        Command::Component(cmd) => component::run(cmd),
        Command::Apply(args) => apply::run(args),
        Command::Diff(args) => diff::run(args),
        Command::Status(args) => status::run(args),
        Command::Wait(args) => wait::run(args),
        Command::Deploy(args) => deploy::run(args),
        Command::Delete(args) => delete::run(args),
        Command::Open(args) => open::run(args),
        Command::Doctor(args) => doctor::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Upgrade(args) => upgrade::run(args),
        Command::Gc(args) => upgrade::run_gc(args),
    }
}
