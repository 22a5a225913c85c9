//! What several subcommands share: where the app's cluster side lives (`ClusterArgs`), opening
//! the app and connecting to its cluster, the async runtime, durations on the command line.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

use super::AppArgs;
use crate::app::App;
use crate::plan::AppTarget;

/// Where the app's cluster side lives; shared by apply, status, wait, delete and open.
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

/// Render the app on a blocking thread: the render is CPU work, the cluster reads can go on.
pub(super) async fn render(app: App) -> anyhow::Result<crate::app::RenderedApp> {
    tokio::task::spawn_blocking(move || app.render()).await.context("rendering panicked")?.context("cannot render the app")
}

/// "90", "90s", "15m", "1h".
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = number.parse().map_err(|_| format!("{text:?} is not a duration (examples: 90s, 15m, 1h)"))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("{text:?}: unknown unit {unit:?} (use s, m or h)")),
    };
    Ok(Duration::from_secs(secs))
}

/// What an interrupted apply did and did not do, and how to finish it.
/// `resume` is the hint's text: the command that finishes the job.
pub(super) fn interrupted_text(signal: crate::interrupt::Interrupt, applied: &Result<crate::apply::ApplyReport, crate::apply::ApplyError>, resume: &str) -> String {
    let resume = format!("  hint: {resume}");
    let report = match applied {
        Ok(report) => return format!("interrupted by {}, after the last write: {}
{resume}", signal.name(), report.summary()),
        Err(crate::apply::ApplyError::Failed { report }) => report,
        Err(e) => return format!("interrupted by {}: {e}
{resume}", signal.name()),
    };
    let (not_started, failed): (Vec<_>, Vec<_>) = report.failed.iter().partition(|f| f.reason == crate::interrupt::NOT_STARTED);
    let mut text = format!(
        "interrupted by {}: {} object(s) applied ({} created, {} configured, {} unchanged), {} not applied",
        signal.name(),
        report.created + report.configured + report.unchanged,
        report.created,
        report.configured,
        report.unchanged,
        not_started.len() + failed.len() + report.held_back.len()
    );
    let shown: Vec<String> = not_started.iter().take(10).map(|f| format!("  - {} [{}]", f.object, f.component)).collect();
    if !shown.is_empty() {
        text.push_str(&format!("
  not started ({}):
{}", not_started.len(), shown.join("
")));
        if not_started.len() > shown.len() {
            text.push_str(&format!("
  - and {} more", not_started.len() - shown.len()));
        }
    }
    for f in &failed {
        text.push_str(&format!("
  failed: {} [{}]: {}", f.object, f.component, f.reason));
    }
    text.push_str("
  the inventory records every object this run may have created; nothing was pruned
");
    text.push_str(&resume);
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5d").is_err());
    }
}
