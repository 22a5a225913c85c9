//! `kfctl component list | add NAME | remove NAME`.

use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum ComponentCommand {
    /// List the components of the release and which are enabled.
    List,
}

pub fn run(_cmd: ComponentCommand) -> anyhow::Result<ExitCode> {
    anyhow::bail!("kfctl component is under construction in this branch")
}
