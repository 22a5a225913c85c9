//! `kfctl build`.

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct BuildArgs {}

pub fn run(_args: BuildArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("kfctl build is under construction in this branch")
}
