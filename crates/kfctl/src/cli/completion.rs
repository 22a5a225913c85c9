//! `kfctl completion bash|zsh|fish`: the shell completion script for kfctl, on stdout.

use std::process::ExitCode;

use clap::CommandFactory as _;
use clap_complete::Shell;

#[derive(Debug, clap::Args)]
#[command(after_help = "Install, for example:\n  \
    bash: kfctl completion bash > ~/.local/share/bash-completion/completions/kfctl\n  \
    zsh:  kfctl completion zsh > \"${fpath[1]}/_kfctl\"\n  \
    fish: kfctl completion fish > ~/.config/fish/completions/kfctl.fish")]
pub struct CompletionArgs {
    /// The shell to complete in.
    #[arg(value_enum)]
    pub shell: CompletionShell,
}

/// The shells kfctl writes completions for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

impl From<CompletionShell> for Shell {
    fn from(shell: CompletionShell) -> Shell {
        match shell {
            CompletionShell::Bash => Shell::Bash,
            CompletionShell::Zsh => Shell::Zsh,
            CompletionShell::Fish => Shell::Fish,
        }
    }
}

/// The completion script for `shell`.
pub fn script(shell: CompletionShell) -> Vec<u8> {
    let mut out = Vec::new();
    clap_complete::generate(Shell::from(shell), &mut super::Cli::command(), "kfctl", &mut out);
    out
}

pub fn run(args: CompletionArgs) -> anyhow::Result<ExitCode> {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(&script(args.shell))?;
    stdout.flush()?;
    Ok(ExitCode::SUCCESS)
}
