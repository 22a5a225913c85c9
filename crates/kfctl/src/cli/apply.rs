//! `kfctl apply`.

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct ApplyArgs {}

pub fn run(_args: ApplyArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("kfctl apply is under construction in this branch")
}
