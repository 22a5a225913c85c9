//! `kfctl status`: per-component readiness, what is not ready and why.

use std::process::ExitCode;

use super::AppArgs;
use super::common::{ClusterArgs, connect, open_target, runtime};
use crate::health::{AppStatus, refresh};
use crate::progress::Silent;

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub app: AppArgs,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

pub fn run(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let (app, target) = open_target(&args.app.dir, &args.cluster)?;
    runtime()?.block_on(async {
        let client = connect(&args.app, &args.cluster, &app).await?;
        // Refreshing keeps the Application's status (what `kubectl get application` shows) current.
        let status = refresh(&client, &target, &Silent).await?;
        if args.app.output == super::OutputFormat::Json {
            println!("{}", serde_json::to_string_pretty(&status)?);
        } else {
            print!("{}", table(&status));
        }
        Ok(if status.ready { ExitCode::SUCCESS } else { ExitCode::from(3) })
    })
}

/// The per-component table, then one line per object that is not ready.
pub fn table(status: &AppStatus) -> String {
    let width = status.components.iter().map(|c| c.name.len()).max().unwrap_or(9).max(9);
    let mut out = format!("{:width$}  {:5}  {:>7}  {}\n", "COMPONENT", "READY", "OBJECTS", "NOT READY");
    for c in &status.components {
        let ready = if c.ready { "yes" } else { "no" };
        let objects = format!("{}/{}", c.ready_count(), c.objects.len());
        out.push_str(&format!("{:width$}  {:5}  {:>7}  {}\n", c.name, ready, objects, c.first_problem().unwrap_or_default()));
    }
    let word = if status.ready { "Ready" } else { "NotReady" };
    out.push_str(&format!(
        "\nApplication {} (namespace {}): {word}, {}/{} components ready\n",
        status.app,
        status.namespace,
        status.objects_ready(),
        status.objects_total()
    ));
    let lines = status.not_ready_lines();
    if !lines.is_empty() {
        out.push_str("not ready:\n");
        for l in lines {
            out.push_str(&l);
            out.push('\n');
        }
    }
    out
}
