//! `kfctl wait`.

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct WaitArgs {}

pub fn run(_args: WaitArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("kfctl wait is under construction in this branch")
}
