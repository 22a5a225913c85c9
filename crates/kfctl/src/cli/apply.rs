//! `kfctl apply`: render the app and apply it in ordered, gated phases, pruning what left the config.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use super::AppArgs;
use crate::app::App;
use crate::apply::{ApplyOptions, apply_rendered, plan_for};
use crate::plan::{AppTarget, KindTable};
use crate::progress::Printer;

#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub app: AppArgs,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Delete objects kfctl applied before that are no longer part of the app (default).
    #[arg(long, overrides_with = "no_prune")]
    pub prune: bool,
    /// Keep objects that left the config.
    #[arg(long)]
    pub no_prune: bool,
    /// Objects applied at once within a phase.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// How long to wait for a gate: CRDs Established, a webhook's Service with ready endpoints
    /// (seconds, or with a unit: 90s, 5m). A webhook still without one is reported and what it
    /// intercepts is not applied.
    #[arg(long, default_value = "5m", value_parser = super::wait::parse_duration)]
    pub gate_timeout: std::time::Duration,
    /// Print the objects kfctl would apply (labelled, defaulted, in phase order) as one JSON
    /// `List`, without contacting the cluster.
    #[arg(long)]
    pub dry_run: bool,
}

/// Where the app's cluster side lives; shared by apply, status, wait and delete.
#[derive(Debug, Clone, clap::Args)]
pub struct ClusterArgs {
    /// Kubeconfig file (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Namespace holding the app's Application, inventory and Events.
    #[arg(long, default_value = "kubeflow")]
    pub app_namespace: String,
}

/// The tokio runtime for one command.
pub(super) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")
}

/// Open the app directory (for its name) and say where its cluster side lives.
pub(super) fn open_target(dir: &Path, cluster: &ClusterArgs) -> anyhow::Result<(App, AppTarget)> {
    let app = App::open(dir).with_context(|| format!("cannot open app directory {}", dir.display()))?;
    let target = AppTarget { name: app.config.name.clone(), namespace: cluster.app_namespace.clone() };
    Ok((app, target))
}

/// Connect to the app's cluster. --kubeconfig and --context win; otherwise what kfctl.yaml records
/// under `platform:` (written by `kfctl deploy` for a cluster it created), so a later command needs
/// no flags; otherwise KUBECONFIG / ~/.kube/config and its current context.
pub(super) async fn connect(args: &AppArgs, cluster: &ClusterArgs, app: &App) -> anyhow::Result<kube::Client> {
    let recorded = app.config.platform.access(&app.dir);
    // A recorded context belongs to the recorded kubeconfig: another file means another context.
    let kubeconfig = cluster.kubeconfig.clone().or(recorded.kubeconfig);
    let context = args.context.clone().or(if cluster.kubeconfig.is_none() { recorded.context } else { None });
    Ok(crate::cluster::connect(kubeconfig.as_deref(), context.as_deref()).await?)
}

pub fn run(args: ApplyArgs) -> anyhow::Result<ExitCode> {
    let (app, target) = open_target(&args.app.dir, &args.cluster)?;
    let printer = Printer::new(args.app.output == super::OutputFormat::Json);
    if args.dry_run {
        let rendered = app.render().context("cannot render the app")?;
        let plan = plan_for(&target, &rendered, &KindTable::builtin())?;
        let items: Vec<&serde_json::Value> = plan.phases.iter().flat_map(|p| p.objects.iter().map(|o| &o.object)).collect();
        let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items});
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(ExitCode::SUCCESS);
    }
    let opts = ApplyOptions { prune: !args.no_prune, concurrency: args.concurrency, gate_timeout: args.gate_timeout };
    runtime()?.block_on(async {
        let mut times = crate::progress::StageTimes::from_env();
        let client = connect(&args.app, &args.cluster, &app).await?;
        times.mark("connect", "");
        let rendered = tokio::task::spawn_blocking(move || app.render())
            .await
            .context("rendering panicked")?
            .context("cannot render the app")?;
        times.mark("render", "");
        let report = apply_rendered(&client, &target, &rendered, &opts, &printer).await?;
        if report.wrote {
            // Show the fresh objects in the Application right away; `kfctl wait` follows them.
            crate::health::refresh(&client, &target, &printer).await?;
        }
        Ok(ExitCode::SUCCESS)
    })
}
