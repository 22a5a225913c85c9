//! `kfctl delete`.

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct DeleteArgs {}

pub fn run(_args: DeleteArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("kfctl delete is under construction in this branch")
}
