//! `kfctl status`.

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct StatusArgs {}

pub fn run(_args: StatusArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("kfctl status is under construction in this branch")
}
