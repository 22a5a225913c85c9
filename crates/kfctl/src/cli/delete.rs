//! `kfctl delete`: remove what kfctl created, in reverse order; CRDs and PVCs only with --purge.

use std::process::ExitCode;

use super::AppArgs;
use super::apply::{ClusterArgs, connect, open_target, runtime};
use crate::apply::delete_target;
use crate::progress::Printer;

#[derive(Debug, clap::Args)]
pub struct DeleteArgs {
    #[command(flatten)]
    pub app: AppArgs,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Also delete CRDs (and with them every custom resource of their kinds) and PVCs (data).
    #[arg(long)]
    pub purge: bool,
}

pub fn run(args: DeleteArgs) -> anyhow::Result<ExitCode> {
    let (_app, target) = open_target(&args.app.dir, &args.cluster)?;
    let json = args.app.output == super::OutputFormat::Json;
    let printer = Printer::new(json);
    runtime()?.block_on(async {
        let client = connect(&args.app, &args.cluster).await?;
        let report = delete_target(&client, &target, args.purge, &printer).await?;
        if json {
            println!("{}", serde_json::to_string(&report)?);
        } else {
            eprintln!("deleted {} objects, kept {}, failed {}", report.deleted.len(), report.kept.len(), report.failed.len());
            for k in &report.kept {
                eprintln!("  kept {k}");
            }
            for f in &report.failed {
                eprintln!("  FAILED {f}");
            }
        }
        Ok(if report.failed.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
    })
}
