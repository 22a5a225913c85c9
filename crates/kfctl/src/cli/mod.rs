//! Command-line interface: one file per subcommand. `main.rs` only calls [`main`].

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

mod apply;
mod build;
mod bundle;
mod common;
mod completion;
mod component;
mod delete;
mod deploy;
mod diff;
mod doctor;
mod images;
mod init;
mod mirror;
mod notebook;
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
    /// Write the app directory (and optionally its images) to one verified file for an air gap.
    Bundle(bundle::BundleArgs),
    /// List, add or remove components of an app.
    #[command(subcommand)]
    Component(component::ComponentCommand),
    /// Apply the app to its cluster in ordered phases, pruning what left the config.
    Apply(apply::ApplyArgs),
    /// Show what `kfctl apply` would change, without changing anything.
    Diff(diff::DiffArgs),
    /// List every image the app runs and every place the render names it.
    Images(images::ImagesArgs),
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
    /// Open JupyterLab with the codelabs: the default user's first notebook server, made and
    /// waited for, reached through the gateway.
    Notebook(notebook::NotebookArgs),
    /// Check the cluster before changing anything.
    Doctor(doctor::DoctorArgs),
    /// Serve the click-to-deploy web app.
    Serve(serve::ServeArgs),
    /// Move the app to another Kubeflow release: show the plan, then apply it.
    Upgrade(upgrade::UpgradeArgs),
    /// Remove vendored releases the app no longer uses (kept by `upgrade` for a rollback).
    Gc(upgrade::GcArgs),
    /// Copy images to a private registry or an OCI layout directory (for air-gapped installs).
    Mirror(mirror::MirrorArgs),
    /// Print the shell completion script for bash, zsh or fish.
    Completion(completion::CompletionArgs),
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
    eprint!("{}", error_report(err.chain().map(|cause| cause.to_string())));
}

/// The text [`report_error`] prints for an error chain (outermost message first). Each cause is
/// printed once: a cause whose text an earlier line already contains is left out (an error that
/// says "cannot read X: <reason>" and then has <reason> as its source would otherwise print the
/// reason again, once per level). Hints (`\n  hint: ...` in a message) come last, each once.
pub fn error_report(chain: impl IntoIterator<Item = String>) -> String {
    let mut lines: Vec<String> = Vec::new();
    let mut hints: Vec<String> = Vec::new();
    for message in chain {
        let mut parts = message.split("\n  hint: ");
        let text = parts.next().unwrap_or_default().trim_end().to_owned();
        for hint in parts {
            let hint = hint.trim_end().to_owned();
            if !hints.contains(&hint) {
                hints.push(hint);
            }
        }
        if !text.is_empty() && !lines.iter().any(|line| line.contains(&text)) {
            lines.push(text);
        }
    }
    let mut out = String::new();
    for (i, line) in lines.iter().enumerate() {
        let prefix = if i == 0 { "error: " } else { "  caused by: " };
        out.push_str(prefix);
        out.push_str(line);
        out.push('\n');
    }
    for hint in hints {
        out.push_str("  hint: ");
        out.push_str(&hint);
        out.push('\n');
    }
    out
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Init(args) => init::run(args),
        Command::Build(args) => build::run(args),
        Command::Bundle(args) => bundle::run(args),
        Command::Component(cmd) => component::run(cmd),
        Command::Apply(args) => apply::run(args),
        Command::Diff(args) => diff::run(args),
        Command::Images(args) => images::run(args),
        Command::Status(args) => status::run(args),
        Command::Wait(args) => wait::run(args),
        Command::Deploy(args) => deploy::run(args),
        Command::Delete(args) => delete::run(args),
        Command::Open(args) => open::run(args),
        Command::Notebook(args) => notebook::run(args),
        Command::Doctor(args) => doctor::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Upgrade(args) => upgrade::run(args),
        Command::Gc(args) => upgrade::run_gc(args),
        Command::Mirror(args) => mirror::run(args),
        Command::Completion(args) => completion::run(args),
    }
}

#[cfg(test)]
mod tests {
    use super::error_report;

    fn chain(messages: &[&str]) -> String {
        error_report(messages.iter().map(|m| (*m).to_owned()))
    }

    #[test]
    fn causes_already_in_an_earlier_line_are_left_out() {
        let report = chain(&[
            "no kubeconfig found (failed to read kubeconfig: No such file)\n  hint: set KUBECONFIG",
            "failed to read kubeconfig: No such file",
            "No such file",
        ]);
        assert_eq!(report, "error: no kubeconfig found (failed to read kubeconfig: No such file)\n  hint: set KUBECONFIG\n");
    }

    #[test]
    fn new_causes_are_kept_and_hints_come_last_once() {
        let report = chain(&[
            "cannot open app directory /x\n  hint: run kfctl init",
            "cannot read /x/kfctl.yaml: not found\n  hint: run kfctl init",
            "permission denied",
        ]);
        assert_eq!(
            report,
            "error: cannot open app directory /x\n  caused by: cannot read /x/kfctl.yaml: not found\n  \
             caused by: permission denied\n  hint: run kfctl init\n"
        );
    }
}
