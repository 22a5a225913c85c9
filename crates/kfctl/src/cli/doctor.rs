//! `kfctl doctor [DIR] [--context C] [--kubeconfig K] [--save]`: check the cluster before
//! anything is changed. Exits 1 when any finding is an error.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use super::OutputFormat;
use crate::app::App;
use crate::config;
use crate::platform::doctor::{self, Finding, Severity};
use crate::platform::{ClusterAccess, PlatformKind, detect, host};
use crate::registry::catalog;

#[derive(Debug, clap::Args)]
// `--version` here is the Kubeflow version, not kfctl's (which `kfctl --version` prints).
#[command(disable_version_flag = true)]
pub struct DoctorArgs {
    /// The app directory; without a kfctl.yaml there, the capacity check is skipped.
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Kubeconfig context (default: the app's platform.context, else the current one).
    #[arg(long)]
    pub context: Option<String>,
    /// Kubeconfig file (default: the app's platform.kubeconfig, else KUBECONFIG / ~/.kube/config).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeflow version to check against when DIR holds no app.
    #[arg(long)]
    pub version: Option<String>,
    /// Where the cluster runs when DIR holds no app (default: the app's platform.kind, else
    /// existing). On kind, k3d, minikube and microk8s doctor also checks this machine: inotify
    /// limits, free memory and CPUs against the release's needs (read from `$KFCTL_PROC_ROOT`,
    /// default /proc).
    #[arg(long)]
    pub platform: Option<PlatformKind>,
    /// Also detect storage, GPUs and load balancers and write them into kfctl.yaml (cluster:).
    #[arg(long)]
    pub save: bool,
    #[arg(long, value_enum, default_value_t)]
    pub output: OutputFormat,
}

pub fn run(args: DoctorArgs) -> anyhow::Result<ExitCode> {
    let app = if args.dir.join(config::FILE_NAME).exists() {
        Some(App::open(&args.dir).with_context(|| format!("cannot open the app in {}", args.dir.display()))?)
    } else {
        None
    };
    if args.save && app.is_none() {
        anyhow::bail!(
            "--save needs an app directory: {} holds no kfctl.yaml\n  hint: create one with `kfctl init {}`",
            args.dir.display(),
            args.dir.display()
        );
    }
    let mut access = app.as_ref().map(|app| app.config.platform.access(&app.dir)).unwrap_or_default();
    if args.kubeconfig.is_some() {
        access.kubeconfig = args.kubeconfig.clone();
    }
    if args.context.is_some() {
        access.context = args.context.clone();
    }
    let release = match (&app, &args.version) {
        (Some(app), _) => app.config.version.clone(),
        (None, Some(version)) => version.clone(),
        (None, None) => catalog::DEFAULT_VERSION.to_owned(),
    };

    // A local cluster runs on this machine: check it first, it needs no cluster.
    let platform = args.platform.or(app.as_ref().map(|app| app.config.platform.kind)).unwrap_or_default();
    let host_findings = match catalog::release(&release) {
        Ok(release) if platform.is_local() => host::check_host(&host::proc_root(), release),
        _ => Vec::new(),
    };

    // Rendering is blocking and can take a few seconds: do it before starting the runtime.
    let mut render_finding = None;
    let objects = match &app {
        Some(app) => match app.render() {
            Ok(rendered) => Some(rendered.objects.into_iter().map(|o| o.object).collect::<Vec<_>>()),
            Err(err) => {
                render_finding = Some(Finding {
                    check: "capacity",
                    severity: Severity::Warning,
                    message: format!("cannot render the app to sum its requests: {err}"),
                    hint: Some("fix the app (see `kfctl build`), then run doctor again".into()),
                });
                None
            }
        },
        None => None,
    };

    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let (mut findings, settings) = runtime.block_on(async {
        let findings = doctor::run_checks(&access, &release, objects.as_deref()).await;
        let settings = if args.save && findings.iter().all(|f| f.check != "reach" || f.severity != Severity::Error) {
            Some(detect_settings(&access).await)
        } else {
            None
        };
        (findings, settings)
    });
    if let Some(finding) = render_finding {
        findings.retain(|f| f.check != "capacity");
        findings.push(finding);
    }
    findings.splice(0..0, host_findings);
    print_findings(&findings, args.output);

    if let (Some(mut app), Some(settings)) = (app, settings) {
        app.config.cluster = settings.context("auto-configuration failed")?;
        app.save().with_context(|| format!("cannot write {}", app.dir.join(config::FILE_NAME).display()))?;
        if args.output == OutputFormat::Text {
            println!("wrote the detected choices to {} (cluster:)", app.dir.join(config::FILE_NAME).display());
        }
    }
    let errors = findings.iter().filter(|f| f.severity == Severity::Error).count();
    Ok(if errors > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

async fn detect_settings(access: &ClusterAccess) -> anyhow::Result<crate::platform::ClusterSettings> {
    let (client, _) = detect::client_for(access).await?;
    Ok(detect::detect(&client, &crate::progress::Silent).await?)
}

/// One line per finding (`severity  check  message`), its hint indented below; or JSON lines.
fn print_findings(findings: &[Finding], output: OutputFormat) {
    for finding in findings {
        match output {
            OutputFormat::Json => {
                println!("{}", serde_json::to_string(finding).expect("a finding serializes"));
            }
            OutputFormat::Text => {
                println!("{:<8} {:<13} {}", finding.severity.to_string(), finding.check, finding.message);
                if let Some(hint) = &finding.hint {
                    println!("{:<22} hint: {hint}", "");
                }
            }
        }
    }
    if output == OutputFormat::Text {
        let count = |s| findings.iter().filter(|f| f.severity == s).count();
        println!(
            "{} checks: {} ok, {} warnings, {} errors",
            findings.len(),
            count(Severity::Ok),
            count(Severity::Warning),
            count(Severity::Error)
        );
    }
}
