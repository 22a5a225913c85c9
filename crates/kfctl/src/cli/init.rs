//! `kfctl init`.

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct InitArgs {}

pub fn run(_args: InitArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("kfctl init is under construction in this branch")
}
