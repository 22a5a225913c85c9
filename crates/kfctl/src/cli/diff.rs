//! `kfctl diff`: render the app and show what `kfctl apply` would change, without changing
//! anything. Exit codes as `kubectl diff`: 0 no change, 1 changes, 2 an error.

use std::process::ExitCode;

use super::AppArgs;
use super::common::{ClusterArgs, connect, open_target, render, runtime};
use crate::apply::{AppDiff, ApplyOptions, ReleaseRange, diff_prefetched, prefetch};

#[derive(Debug, clap::Args)]
pub struct DiffArgs {
    #[command(flatten)]
    pub app: AppArgs,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// The exit code of a diff that could not be computed (`kubectl diff` uses 2 and above).
pub const ERROR_EXIT: u8 = 2;

/// `--output json`: one object, the diff with whether anything changes and the summary.
#[derive(serde::Serialize)]
struct JsonDiff<'a> {
    changes: bool,
    summary: String,
    #[serde(flatten)]
    diff: &'a AppDiff,
}

pub fn run(args: DiffArgs) -> anyhow::Result<ExitCode> {
    let (app, target) = open_target(&args.app.dir, &args.cluster)?;
    let opts = ApplyOptions { release: ReleaseRange::of(&app.config.version), ..ApplyOptions::default() };
    let diff = runtime()?.block_on(async {
        let mut times = crate::progress::StageTimes::from_env();
        let client = connect(&args.app, &args.cluster, &app).await?;
        times.mark("connect", "");
        // The inventory, discovery and metadata lists of the recorded kinds while the app renders.
        let (rendered, warm) = tokio::join!(render(app), prefetch(&client, &target));
        let rendered = rendered?;
        times.mark("render (and reads meanwhile)", "");
        anyhow::Ok(diff_prefetched(&client, &target, &rendered, &opts, warm).await?)
    })?;
    if args.app.output == super::OutputFormat::Json {
        let json = JsonDiff { changes: !diff.is_empty(), summary: diff.summary(), diff: &diff };
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        print!("{}", diff.text());
    }
    Ok(if diff.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
