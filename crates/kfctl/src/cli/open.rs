//! `kfctl open`.

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct OpenArgs {}

pub fn run(_args: OpenArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("kfctl open is under construction in this branch")
}
