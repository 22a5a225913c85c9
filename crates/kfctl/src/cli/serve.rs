//! `kfctl serve`: the click-to-deploy web app. Ctrl-C or SIGTERM stops it: no new connections,
//! running jobs stop writing and are marked interrupted (resumable after a restart), exit 130/143.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::web::{BoundServer, Release, ServeOptions};

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on. Loopback by default: the server holds cluster credentials.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Allow a non-loopback --listen address (anyone who can reach it and has the token can deploy).
    #[arg(long)]
    pub allow_remote: bool,
    /// Where jobs, their logs and app directories are kept (default: $XDG_STATE_HOME/kfctl/serve,
    /// else ~/.local/state/kfctl/serve).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Registry archive (URL or local .tar.gz) to deploy the default release (or the release
    /// whose upstream URL it is) from, instead of the upstream archive (a mirror, or a test
    /// fixture). Chosen here, never by the browser.
    #[arg(long, value_name = "URL|PATH")]
    pub registry: Option<String>,
    /// Expected sha256 of --registry (a local archive without it is hashed at start).
    #[arg(long, value_name = "HEX", requires = "registry")]
    pub registry_sha256: Option<String>,
}

/// How long running jobs get, after Ctrl-C or SIGTERM, to stop their writes and end on their own.
const JOB_STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

fn default_state_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("kfctl/serve"));
    }
    let home = std::env::var_os("HOME").filter(|d| !d.is_empty()).context("neither XDG_STATE_HOME nor HOME is set\n  hint: pass --state-dir DIR")?;
    Ok(PathBuf::from(home).join(".local/state/kfctl/serve"))
}

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let state_dir = match args.state_dir {
        Some(dir) => dir,
        None => default_state_dir()?,
    };
    std::fs::create_dir_all(&state_dir).with_context(|| format!("cannot create the state directory {}", state_dir.display()))?;
    let registry = args.registry.as_deref().map(|source| (source, args.registry_sha256.as_deref()));
    let releases = Release::from_catalog(registry)?;
    let options = ServeOptions { listen: args.listen, allow_remote: args.allow_remote, state_dir, releases };
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let code = runtime.block_on(async {
        let server = BoundServer::bind(&options).await?;
        if !server.local_addr.ip().is_loopback() {
            eprintln!(
                "warning: listening on {}, which is not loopback: anyone who can reach this address and has the token \
                 can deploy with the credentials this server holds. Use a TLS-terminating proxy or an SSH tunnel.",
                server.local_addr
            );
        }
        eprintln!("kfctl serve: state in {}", options.state_dir.display());
        // The URL goes to stdout alone on its line, so scripts (and tests) can read it.
        println!("Open this URL in your browser (it carries the access token):");
        println!("{}", server.url());
        crate::interrupt::install("start `kfctl serve` again: jobs that were running are shown interrupted, each with a Resume button".into())
            .context("cannot listen for Ctrl-C")?;
        let (signal, running) = server.run_until_interrupted(JOB_STOP_GRACE).await?;
        eprintln!(
            "kfctl serve: stopped by {}; {running} running job(s) marked interrupted\n  hint: start `kfctl serve --state-dir {}` again and resume them from their pages",
            signal.name(),
            options.state_dir.display()
        );
        Ok::<_, anyhow::Error>(signal.exit_code())
    });
    // Job threads still stopping are not waited for: what they did is recorded.
    runtime.shutdown_background();
    Ok(ExitCode::from(code?))
}
