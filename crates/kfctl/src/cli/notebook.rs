//! `kfctl notebook [DIR]`: the default user's first notebook server, ready with the codelabs,
//! opened in JupyterLab through the gateway. `--delete` removes it.

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;

use super::AppArgs;
use super::common::{ClusterArgs, connect, open_target, parse_duration, runtime};
use super::open::{GATEWAY_NAMESPACE, listen, resolve_gateway, serve_gateway};
use crate::notebook;
use crate::progress::{Printer, Progress, ProgressSink};

#[derive(Debug, clap::Args)]
pub struct NotebookArgs {
    #[command(flatten)]
    pub app: AppArgs,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// The notebook server's name.
    #[arg(long, default_value = "codelabs")]
    pub name: String,
    /// Give the server one GPU (the first vendor of the web app's list that a node offers).
    #[arg(long)]
    pub gpu: bool,
    /// Download the codelabs from this repository archive (.tar.gz or .zip) instead of using the
    /// ones shipped in kfctl.
    #[arg(long, value_name = "URL")]
    pub codelabs: Option<String>,
    /// Remove the notebook server, its workspace volume and its codelabs (asks first).
    #[arg(long)]
    pub delete: bool,
    /// Do not ask before --delete.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// How long to wait for the profile namespace, then for the server to be ready.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Local port to forward the gateway on (127.0.0.1).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Print the URL without opening a browser.
    #[arg(long)]
    pub no_browser: bool,
    /// Stop once the server is ready: no port-forward (use `kfctl open` later).
    #[arg(long)]
    pub no_forward: bool,
}

pub fn run(args: NotebookArgs) -> anyhow::Result<ExitCode> {
    let (app, target) = open_target(&args.app.dir, &args.cluster)?;
    let (profile, _) = notebook::profile_of(&app.config);
    let printer = Printer::new(args.app.output == super::OutputFormat::Json);
    let say = |text: String| printer.report(Progress::Message { text });
    runtime()?.block_on(async {
        let client = connect(&args.app, &args.cluster, &app).await?;
        let name = args.name.as_str();
        if args.delete {
            if !args.yes && !confirm(&format!("Delete notebook server {profile}/{name} and its workspace volume (your edits in it are lost)?"))? {
                say("nothing deleted".into());
                return Ok(ExitCode::from(1));
            }
            let deleted = notebook::delete(&client, &profile, name).await?;
            if deleted.is_empty() {
                say(format!("no notebook server {profile}/{name}: nothing to delete"));
            }
            for what in deleted {
                say(format!("deleted {what}"));
            }
            return Ok(ExitCode::SUCCESS);
        }
        let request = notebook::Request {
            name: name.to_owned(),
            gpu: args.gpu,
            codelabs_url: args.codelabs.clone(),
            timeout: args.timeout,
        };
        let path = notebook::open_codelabs(&client, &app.config, &request, &printer).await?;
        // The Application lists the server now (outside Ready); an app not applied yet has none.
        let _ = crate::health::refresh(&client, &target, &crate::progress::Silent).await;
        let hint = notebook::sign_in_hint(&app.config);
        if args.no_forward {
            println!("{path}");
            println!("open it with `kfctl open` (the gateway at http://localhost:{}), then go to {path}; {hint}", args.port);
            return Ok(ExitCode::SUCCESS);
        }
        let gateway = resolve_gateway(&client).await?;
        let listener = listen(args.port).await?;
        let local: SocketAddr = listener.local_addr().context("the local address")?;
        let url = format!("http://localhost:{}{path}", local.port());
        println!("{url}");
        println!("{hint}");
        println!("(forwarding to pod {GATEWAY_NAMESPACE}/{}; Ctrl-C to stop)", gateway.pod);
        std::io::stdout().flush().ok();
        if !args.no_browser && std::io::stdout().is_terminal() {
            open_browser(&url);
        }
        serve_gateway(client, listener, gateway).await
    })
}

/// Asks on the terminal; refuses when there is none to ask on.
fn confirm(question: &str) -> anyhow::Result<bool> {
    anyhow::ensure!(
        std::io::stdin().is_terminal(),
        "{question} cannot ask: standard input is not a terminal\n  hint: pass --yes to delete without asking"
    );
    eprint!("{question} [y/N] ");
    std::io::stderr().flush().ok();
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer).context("reading the answer")?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

/// Opens `url` in the desktop's browser; a failure only means the user opens it by hand.
fn open_browser(url: &str) {
    let program = if cfg!(target_os = "macos") { "open" } else { "xdg-open" };
    let opened = std::process::Command::new(program)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    if opened.is_err() {
        eprintln!("note: could not start {program}; open the URL above in a browser");
    }
}
