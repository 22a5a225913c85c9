//! `kfctl upgrade [DIR] --to VERSION`: move the app to another Kubeflow release with a plan, and
//! `kfctl gc [DIR]`: remove the releases an upgrade kept for a rollback.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use super::AppArgs;
use super::common::{ClusterArgs, connect, parse_duration, runtime};
use crate::app::App;
use crate::apply::{ApplyOptions, Interruption, ReleaseRange};
use crate::config::UpgradeOutcome;
use crate::plan::AppTarget;
use crate::progress::{Printer, Progress, ProgressSink};
use crate::upgrade::{self, Prepared, UpgradeError, UpgradeOptions};

#[derive(Debug, clap::Args)]
pub struct UpgradeArgs {
    #[command(flatten)]
    pub app: AppArgs,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// The Kubeflow release to go to, e.g. 26.03; an older one is a rollback.
    #[arg(long, value_name = "VERSION")]
    pub to: String,
    /// The release archive (as `kfctl init --registry`); default: the catalog's upstream archive.
    #[arg(long)]
    pub registry: Option<String>,
    /// The release's content pin, `tree-sha256:HEX` (as `kfctl init --digest`).
    #[arg(long)]
    pub digest: Option<String>,
    /// Read remote resources through this mirror (as `kfctl init --mirror`); default: the one
    /// kfctl.yaml records.
    #[arg(long, value_name = "BASE")]
    pub mirror: Option<String>,
    /// Apply the plan without asking.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// A manual migration step is done (repeat for several): the upgrade no longer stops for it.
    #[arg(long, value_name = "ID")]
    pub confirm: Vec<String>,
    /// Drop settings that no longer apply to the new release from kfctl.yaml instead of stopping.
    #[arg(long)]
    pub force: bool,
    /// Only prepare: vendor the release and rewrite kfctl.yaml for it, without touching the
    /// cluster. Review kfctl.yaml, then run `kfctl upgrade --to VERSION` to apply.
    #[arg(long)]
    pub prepare: bool,
    /// Show every field change in the plan, not one line per component.
    #[arg(long)]
    pub diff: bool,
    /// Fail at once when another kfctl run (or a web-app job) holds the app's lock, instead of
    /// waiting for it.
    #[arg(long)]
    pub no_wait: bool,
    /// How long to wait for readiness after applying: seconds, or with a unit (90s, 15m).
    #[arg(long, default_value = "15m", value_parser = parse_duration)]
    pub timeout: Duration,
}

pub fn run(args: UpgradeArgs) -> anyhow::Result<ExitCode> {
    let app = App::open(&args.app.dir).with_context(|| format!("cannot open app directory {}", args.app.dir.display()))?;
    let json = args.app.output == super::OutputFormat::Json;
    let printer = Printer::new(json);
    let opts = UpgradeOptions {
        to: args.to.clone(),
        registry: args.registry.clone(),
        digest: args.digest.clone(),
        mirror: args.mirror.clone(),
        force: args.force,
        confirmed: args.confirm.clone(),
    };
    let prepared = upgrade::prepare(&app, &opts, &printer)?;
    if args.prepare {
        return prepare_only(prepared, json);
    }
    let apply = ApplyOptions { release: ReleaseRange::of(&prepared.to), ..ApplyOptions::default() };
    let target = AppTarget { name: prepared.new.config.name.clone(), namespace: args.cluster.app_namespace.clone() };
    runtime()?.block_on(async {
        let client = match connect(&args.app, &args.cluster, &prepared.new).await {
            Ok(client) => client,
            Err(e) => return Err(abandon(&prepared, e)),
        };
        let new = prepared.new.clone();
        let rendered = match tokio::task::spawn_blocking(move || new.render()).await.context("rendering panicked")? {
            Ok(rendered) => rendered,
            Err(e) => return Err(abandon(&prepared, anyhow::Error::new(e).context(format!("cannot render the app at Kubeflow {}", prepared.to)))),
        };
        let mut plan = match upgrade::plan(&client, &target, &prepared, &rendered, &apply).await {
            Ok(plan) => plan,
            Err(e) => return Err(abandon(&prepared, e.into())),
        };
        if json {
            println!("{}", serde_json::json!({ "plan": &plan }));
        } else {
            print!("{}", plan.text(args.diff));
            std::io::stdout().flush().ok();
        }
        let interactive = !args.yes && std::io::stdin().is_terminal();
        for step in plan.manual.iter_mut().filter(|m| m.blocking && !m.confirmed) {
            if interactive && ask(&format!("Have you done step {}? Type its id to confirm: ", step.id))?.trim() == step.id {
                step.confirmed = true;
            }
        }
        let unconfirmed = plan.unconfirmed();
        if !unconfirmed.is_empty() {
            return Err(abandon(&prepared, UpgradeError::Unconfirmed { steps: unconfirmed }.into()));
        }
        if !args.yes {
            if !interactive {
                return Err(abandon(&prepared, anyhow::anyhow!("the upgrade needs a yes and there is no terminal to ask; nothing was changed\n  hint: read the plan above, then run again with --yes")));
            }
            if !ask("Apply this upgrade? [y/N] ")?.trim().eq_ignore_ascii_case("y") {
                prepared.abandon();
                eprintln!("nothing was changed");
                return Ok(ExitCode::FAILURE);
            }
        }
        // From here Ctrl-C stops new writes and records the upgrade as failed (not at the
        // questions above: nothing was changed then, and the default exit is right).
        let finish = format!("kfctl upgrade {} --to {}", args.app.dir.display(), prepared.to);
        crate::interrupt::install(format!("run `{finish}` again: it finishes the upgrade kfctl.yaml records")).context("cannot listen for Ctrl-C")?;
        let done = match upgrade::execute(&client, &target, &prepared, &plan, &rendered, &apply, args.timeout, !args.no_wait, &printer).await {
            Err(UpgradeError::Interrupted { signal, at, recorded: false }) => {
                // Stopped before it began: nothing changed, and what this run vendored goes.
                prepared.abandon();
                eprintln!("interrupted by {}, {at}; nothing was changed\n  hint: run `{finish}` again", signal.name());
                return Ok(ExitCode::from(signal.exit_code()));
            }
            Err(UpgradeError::Interrupted { signal, at, recorded: true }) => {
                eprintln!("{}", interrupted_text(signal, &at, &finish));
                return Ok(ExitCode::from(signal.exit_code()));
            }
            done => done?,
        };
        printer.report(Progress::Message {
            text: format!(
                "upgraded app {} from Kubeflow {} to {}: {}; {}{}",
                prepared.new.config.name,
                done.from,
                done.to,
                done.apply.summary(),
                done.ready,
                if done.replaced.is_empty() { String::new() } else { format!("; replaced {}", done.replaced.join(", ")) }
            ),
        });
        if !plan.manual.is_empty() {
            printer.report(Progress::Message { text: format!("still yours to do, as the plan says: {}", plan.manual.iter().map(|m| m.id.as_str()).collect::<Vec<_>>().join(", ")) });
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// What an interrupted upgrade did and did not do, and how to finish it (`finish`: the command).
fn interrupted_text(signal: crate::interrupt::Interrupt, at: &Interruption, finish: &str) -> String {
    let recorded = "kfctl.yaml records the upgrade as failed, with where it stopped";
    match at {
        Interruption::Before(step) => {
            format!("interrupted by {} before {step}; {recorded}\n  hint: run `{finish}` again to go on", signal.name())
        }
        Interruption::Applying(applied) => super::common::interrupted_text(
            signal,
            applied,
            &format!("{recorded}; run `{finish}` to finish: objects already applied stay, the rest is applied"),
        ),
        Interruption::Waiting => format!(
            "interrupted by {} while waiting until every component is ready; everything was applied, and {recorded}\n  hint: `{finish}` waits once more and records it as succeeded; `kfctl status` shows where each component stands",
            signal.name()
        ),
    }
}

/// [`Prepared::abandon`], passing the error on.
fn abandon(prepared: &Prepared, err: anyhow::Error) -> anyhow::Error {
    prepared.abandon();
    err
}

fn ask(question: &str) -> anyhow::Result<String> {
    eprint!("{question}");
    std::io::stderr().flush().ok();
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer).context("cannot read the answer")?;
    Ok(answer)
}

/// `--prepare`: write kfctl.yaml for the new release with an open history record, and say what
/// comes next. The cluster is not touched.
fn prepare_only(prepared: Prepared, json: bool) -> anyhow::Result<ExitCode> {
    let mut app = prepared.new.clone();
    if !prepared.resuming {
        prepared.record_start(&mut app.config, UpgradeOutcome::Prepared, prepared.confirmed.clone());
        app.save()?;
    }
    if json {
        let migrations: Vec<&str> = prepared.migrations.iter().map(|m| m.id.as_str()).collect();
        println!("{}", serde_json::json!({ "prepared": { "from": prepared.from, "to": prepared.to, "components": prepared.notes, "migrations": migrations } }));
    } else {
        println!("Prepared the upgrade of app {} from Kubeflow {} to {} (nothing applied):", app.config.name, prepared.from, prepared.to);
        for note in &prepared.notes {
            println!("  {}", note.line());
        }
        for m in &prepared.migrations {
            println!("  migration {}: {}", m.id, m.why);
        }
        println!("kfctl.yaml now names Kubeflow {}; review it, then run `kfctl upgrade --to {}` to see the plan and apply it.", prepared.to, prepared.to);
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, clap::Args)]
pub struct GcArgs {
    /// The app directory (holding kfctl.yaml).
    #[arg(default_value = ".")]
    pub dir: std::path::PathBuf,
    #[arg(long, value_enum, default_value_t)]
    pub output: super::OutputFormat,
    /// Only say what would be removed.
    #[arg(long)]
    pub dry_run: bool,
}

pub fn run_gc(args: GcArgs) -> anyhow::Result<ExitCode> {
    let mut app = App::open(&args.dir).with_context(|| format!("cannot open app directory {}", args.dir.display()))?;
    let collected = upgrade::gc::collect(&mut app, args.dry_run)?;
    if args.output == super::OutputFormat::Json {
        println!("{}", serde_json::to_string(&collected)?);
        return Ok(ExitCode::SUCCESS);
    }
    let verb = if args.dry_run { "would remove" } else { "removed" };
    for path in &collected.removed {
        println!("{verb} {}", path.display());
    }
    let mib = collected.bytes as f64 / (1024.0 * 1024.0);
    match collected.removed.len() {
        0 => println!("nothing to remove: the app directory holds only what kfctl.yaml uses"),
        n => println!("{verb} {n} path(s), {mib:.1} MiB; a rollback to an earlier release fetches it again"),
    }
    Ok(ExitCode::SUCCESS)
}
