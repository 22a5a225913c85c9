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
        let journey = journey(&client, &app).await;
        if args.app.output == super::OutputFormat::Json {
            let mut value = serde_json::to_value(&status)?;
            value["journey"] = serde_json::to_value(&journey)?;
            println!("{}", serde_json::to_string_pretty(&value)?);
        } else {
            print!("{}", table(&status));
            print!("{}", journey_lines(&journey));
        }
        Ok(if status.ready { ExitCode::SUCCESS } else { ExitCode::from(3) })
    })
}

/// A step of the user's journey after the deploy: shown by `kfctl status`, not part of Ready.
#[derive(Debug, Clone, serde::Serialize)]
pub struct JourneyStep {
    pub name: String,
    /// `ready`, `not_ready`, `absent` or `unknown`.
    pub state: String,
    pub message: String,
}

/// The default user's notebook server (`kfctl notebook`'s).
async fn journey(client: &kube::Client, app: &crate::app::App) -> Vec<JourneyStep> {
    use crate::notebook::ServerState;
    let (profile, _) = crate::notebook::profile_of(&app.config);
    let name = "codelabs";
    let (state, message) = match crate::notebook::server_state(client, &profile, name).await {
        Ok(ServerState::Ready) => ("ready", format!("{profile}/{name}: `kfctl notebook` opens JupyterLab with the codelabs")),
        Ok(ServerState::NotReady(reason)) => ("not_ready", format!("{profile}/{name}: {reason}")),
        Ok(ServerState::Absent) => ("absent", format!("{profile}/{name}: not created; `kfctl notebook` makes it and opens the codelabs")),
        Err(e) => ("unknown", e.to_string()),
    };
    vec![JourneyStep { name: "notebook server".into(), state: state.into(), message }]
}

/// The journey steps under the table, marked as not counted for Ready.
pub fn journey_lines(steps: &[JourneyStep]) -> String {
    let mut out = String::from("\nnext steps (not required for Ready):\n");
    for step in steps {
        let word = match step.state.as_str() {
            "ready" => "ready",
            "not_ready" => "not ready",
            "absent" => "none",
            _ => "unknown",
        };
        out.push_str(&format!("  {}: {word}: {}\n", step.name, step.message));
    }
    out
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
