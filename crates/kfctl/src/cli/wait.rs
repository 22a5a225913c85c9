//! `kfctl wait`: block until every component is ready (exit 0) or the timeout passes.

use std::process::ExitCode;
use std::time::Duration;

use super::AppArgs;
use super::common::{ClusterArgs, connect, open_target, parse_duration, runtime};
use crate::health::wait_target;
use crate::progress::Printer;

#[derive(Debug, clap::Args)]
pub struct WaitArgs {
    #[command(flatten)]
    pub app: AppArgs,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// How long to wait: seconds, or with a unit (90s, 15m, 1h).
    #[arg(long, default_value = "15m", value_parser = parse_duration)]
    pub timeout: Duration,
}

pub fn run(args: WaitArgs) -> anyhow::Result<ExitCode> {
    let (app, target) = open_target(&args.app.dir, &args.cluster)?;
    let printer = Printer::new(args.app.output == super::OutputFormat::Json);
    runtime()?.block_on(async {
        let client = connect(&args.app, &args.cluster, &app).await?;
        let status = wait_target(&client, &target, args.timeout, &printer).await?;
        eprintln!("ready: {}/{} components of {} ready", status.objects_ready(), status.objects_total(), status.app);
        Ok(ExitCode::SUCCESS)
    })
}
