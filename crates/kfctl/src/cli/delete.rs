//! `kfctl delete`: remove what kfctl created, in reverse order; CRDs and PVCs only with --purge.

use std::process::ExitCode;

use super::AppArgs;
use super::common::{ClusterArgs, connect, open_target, parse_duration, runtime};
use anyhow::Context;

use crate::apply::{DeleteReport, delete_target};
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
    /// Then remove the cluster `kfctl deploy` created for this app (kind/k3d/minikube delete,
    /// `terraform destroy`). Kubeflow's objects go first, so cloud load balancers are released.
    #[arg(long)]
    pub platform: bool,
    /// With --platform: do not ask before `terraform destroy`.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Fail at once when another kfctl run (or a web-app job) holds the app's lock, instead of
    /// waiting for it.
    #[arg(long)]
    pub no_wait: bool,
    /// How long to wait for an API server that stops answering mid-run (a restart, a network
    /// outage) before stopping; re-running `kfctl delete` then finishes.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub timeout: std::time::Duration,
}

pub fn run(args: DeleteArgs) -> anyhow::Result<ExitCode> {
    let (app, target) = open_target(&args.app.dir, &args.cluster)?;
    let json = args.app.output == super::OutputFormat::Json;
    let printer = Printer::new(json);
    if args.platform && app.config.platform.kind == crate::platform::PlatformKind::Existing {
        // Say so before deleting anything: the user asked for something kfctl cannot do.
        return Err(crate::platform::PlatformError::NothingToTearDown(app.config.platform.kind).into());
    }
    crate::cluster::outage::set_timeout(args.timeout);
    let ok = runtime()?.block_on(async {
        let objects = delete_objects(&args, &app, &target, json, &printer).await;
        let objects_ok = match objects {
            Ok(code) if crate::interrupt::requested().is_some() => return Ok(Err(code)),
            Ok(code) => code == ExitCode::SUCCESS,
            // A cluster that is already gone (or broken) must not keep its cloud resources alive.
            Err(err) if args.platform => {
                eprintln!("warning: could not delete Kubeflow's objects first: {err:#}\n  removing the cluster anyway");
                true
            }
            Err(err) => return Err(err),
        };
        if args.platform {
            let opts = crate::platform::ProvisionOptions { assume_yes: args.yes, ..Default::default() };
            crate::platform::teardown(&app.dir, &app.config.platform, &opts, &printer).await?;
            eprintln!("removed the {} cluster of {}", app.config.platform.kind, app.dir.display());
        }
        anyhow::Ok(Ok(objects_ok))
    })?;
    Ok(match ok {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        // Interrupted: its exit code, and the cluster (with --platform) stays.
        Err(code) => code,
    })
}

/// What an interrupted delete did and did not do, and how to finish it.
fn interrupted_text(signal: crate::interrupt::Interrupt, report: &DeleteReport, command: &str) -> String {
    let (not_started, failed): (Vec<&String>, Vec<&String>) = report.failed.iter().partition(|f| f.ends_with(crate::interrupt::NOT_STARTED));
    let mut text = format!(
        "interrupted by {}: {} object(s) deleted, {} not deleted ({} not started, {} failed, {} kept)",
        signal.name(),
        report.deleted.len(),
        not_started.len() + failed.len() + report.kept.len(),
        not_started.len(),
        failed.len(),
        report.kept.len()
    );
    if !not_started.is_empty() {
        text.push_str(&format!("\n  not started ({}):", not_started.len()));
        for f in not_started.iter().take(10) {
            let object = f.strip_suffix(crate::interrupt::NOT_STARTED).unwrap_or(f).trim_end_matches([' ', ':']);
            text.push_str(&format!("\n  - {object}"));
        }
        if not_started.len() > 10 {
            text.push_str(&format!("\n  - and {} more", not_started.len() - 10));
        }
    }
    for f in &failed {
        text.push_str(&format!("\n  failed: {f}"));
    }
    text.push_str("\n  the inventory lists every object not deleted; deletions already sent go on without kfctl");
    text.push_str(&format!("\n  hint: run `{command}` again to finish"));
    text
}

async fn delete_objects(
    args: &DeleteArgs,
    app: &crate::app::App,
    target: &crate::plan::AppTarget,
    json: bool,
    printer: &Printer,
) -> anyhow::Result<ExitCode> {
    let client = connect(&args.app, &args.cluster, app).await?;
    let purpose = if args.purge { "kfctl delete --purge" } else { "kfctl delete" };
    let lock = crate::lock::acquire(&client, target, purpose, !args.no_wait, printer).await?;
    let again = format!("run `{purpose} {}` again: it finds what is left by its label", args.app.dir.display());
    crate::interrupt::install(again).context("cannot listen for Ctrl-C")?;
    let deleted = delete_target(&client, target, args.purge, printer).await;
    lock.release().await;
    let report = deleted?;
    if let Some(signal) = crate::interrupt::requested() {
        eprintln!("{}", interrupted_text(signal, &report, &format!("{purpose} {}", args.app.dir.display())));
        return Ok(ExitCode::from(signal.exit_code()));
    }
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
}
