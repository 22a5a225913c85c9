//! `kfctl apply`: render the app and apply it in ordered, gated phases, pruning what left the config.

use std::process::ExitCode;

use anyhow::Context;

use super::AppArgs;
use super::common::{ClusterArgs, connect, interrupted_text, open_target, parse_duration, render, runtime};
use crate::apply::{ApplyOptions, ReleaseRange, apply_rendered, plan_for};
use crate::plan::KindTable;
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
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub gate_timeout: std::time::Duration,
    /// How long to wait for an API server that stops answering mid-run (a restart, a network
    /// outage) before stopping; re-running `kfctl apply` then resumes.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub timeout: std::time::Duration,
    /// Print the objects kfctl would apply (labelled, defaulted, in phase order) as one JSON
    /// `List`, without contacting the cluster.
    #[arg(long)]
    pub dry_run: bool,
    /// Fail at once when another kfctl run (or a web-app job) holds the app's lock, instead of
    /// waiting for it.
    #[arg(long)]
    pub no_wait: bool,
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
    if let Some(open) = crate::upgrade::open_upgrade(&app.config) {
        anyhow::bail!(
            "the upgrade from Kubeflow {} to {} is not finished ({}); a plain apply would skip its migrations\n  hint: run `kfctl upgrade --to {}` to finish it",
            open.from,
            open.to,
            format!("{:?}", open.outcome).to_lowercase(),
            open.to
        );
    }
    let opts = ApplyOptions { prune: !args.no_prune, concurrency: args.concurrency, gate_timeout: args.gate_timeout, release: ReleaseRange::of(&app.config.version) };
    crate::cluster::outage::set_timeout(args.timeout);
    runtime()?.block_on(async {
        let mut times = crate::progress::StageTimes::from_env();
        let client = connect(&args.app, &args.cluster, &app).await?;
        times.mark("connect", "");
        let rendered = render(app).await?;
        times.mark("render", "");
        let lock = crate::lock::acquire(&client, &target, "kfctl apply", !args.no_wait, &printer).await?;
        crate::interrupt::install(format!("run `kfctl apply {}` again: it finds what this run created by its label", args.app.dir.display()))
            .context("cannot listen for Ctrl-C")?;
        let applied = apply_rendered(&client, &target, &rendered, &opts, &printer).await;
        lock.release().await;
        if let Some(signal) = crate::interrupt::requested() {
            let resume = format!("run `kfctl apply {}` to finish: objects already applied stay, the rest is applied", args.app.dir.display());
            eprintln!("{}", interrupted_text(signal, &applied, &resume));
            return Ok(ExitCode::from(signal.exit_code()));
        }
        if applied?.wrote {
            // Show the fresh objects in the Application right away; `kfctl wait` follows them.
            crate::health::refresh(&client, &target, &printer).await?;
        }
        Ok(ExitCode::SUCCESS)
    })
}
