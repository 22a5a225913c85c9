//! `kfctl wait`: block until every component is ready (exit 0) or the timeout passes.

use std::process::ExitCode;
use std::time::Duration;

use super::AppArgs;
use super::apply::{ClusterArgs, connect, open_target, runtime};
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
