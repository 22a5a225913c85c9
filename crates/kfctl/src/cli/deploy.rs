//! `kfctl deploy`.

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct DeployArgs {}

pub fn run(_args: DeployArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("kfctl deploy is under construction in this branch")
}
