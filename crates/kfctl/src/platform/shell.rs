//! Running the platform's tools, or printing what would run.
//!
//! Every command and every file a platform step performs goes through [`Shell`]. In a real run it
//! executes them and streams their output as progress; with `--dry-run` it writes them, in order,
//! as a POSIX shell script a person can read and run by hand. It also keeps the ledger of what was
//! created so far ([`Created`]), so a failure can say what exists and how to remove it.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};

use crate::progress::{Progress, ProgressSink};

use super::PlatformError;

/// One external command: program, arguments, extra environment, and where its stdout goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCommand {
    pub program: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Write stdout to this file (`> file` in the script) instead of showing it.
    pub stdout_to: Option<PathBuf>,
    /// Show stdout to the user line by line (a plan, a table); otherwise only stderr is shown.
    pub show_stdout: bool,
}

impl ToolCommand {
    /// `program args...`.
    pub fn new<I, S>(program: &str, args: I) -> ToolCommand
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ToolCommand {
            program: program.to_owned(),
            args: args.into_iter().map(Into::into).collect(),
            env: Vec::new(),
            stdout_to: None,
            show_stdout: false,
        }
    }

    /// Set an environment variable for this command only.
    pub fn env(mut self, key: &str, value: impl Into<String>) -> ToolCommand {
        self.env.push((key.to_owned(), value.into()));
        self
    }

    /// Send stdout to `path`.
    pub fn stdout_to(mut self, path: &Path) -> ToolCommand {
        self.stdout_to = Some(path.to_path_buf());
        self
    }

    /// Show stdout to the user (never for output that holds credentials).
    pub fn show_stdout(mut self) -> ToolCommand {
        self.show_stdout = true;
        self
    }

    /// The command as one shell line: `KEY='v' program 'arg' > 'file'`.
    pub fn script_line(&self) -> String {
        let mut line = String::new();
        for (key, value) in &self.env {
            let _ = write!(line, "{key}={} ", quote(value));
        }
        line.push_str(&quote(&self.program));
        for arg in &self.args {
            line.push(' ');
            line.push_str(&quote(arg));
        }
        if let Some(path) = &self.stdout_to {
            let _ = write!(line, " > {}", quote(&path.to_string_lossy()));
        }
        line
    }
}

/// Quote for a POSIX shell only where needed, so the script stays readable.
pub fn quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=,@%+".contains(c));
    if plain { word.to_owned() } else { format!("'{}'", word.replace('\'', r"'\''")) }
}

/// Something a platform step created, and the command that removes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    pub what: String,
    pub cleanup: String,
}

/// Runs commands and writes files, or records them as a script (`--dry-run`).
pub struct Shell<'a> {
    sink: &'a dyn ProgressSink,
    script: Option<String>,
    created: Vec<Created>,
    /// Directories the script already creates (one `mkdir -p` each keeps it short).
    script_dirs: Vec<PathBuf>,
}

impl<'a> Shell<'a> {
    /// A shell that really runs commands.
    pub fn real(sink: &'a dyn ProgressSink) -> Shell<'a> {
        Shell { sink, script: None, created: Vec::new(), script_dirs: Vec::new() }
    }

    /// A shell that only writes the script; [`Shell::into_script`] returns it.
    pub fn dry_run(sink: &'a dyn ProgressSink, title: &str) -> Shell<'a> {
        let mut script = String::from("#!/bin/sh\n");
        for line in title.lines() {
            let _ = writeln!(script, "# {line}");
        }
        script.push_str("set -eu\n");
        Shell { sink, script: Some(script), created: Vec::new(), script_dirs: Vec::new() }
    }

    /// Is this a dry run?
    pub fn is_dry_run(&self) -> bool {
        self.script.is_some()
    }

    /// The script recorded by a dry run (None for a real shell).
    pub fn into_script(self) -> Option<String> {
        self.script
    }

    /// A step heading: a comment in the script, a message in a real run.
    pub fn step(&mut self, text: &str) {
        match &mut self.script {
            Some(script) => {
                script.push('\n');
                for line in text.lines() {
                    let _ = writeln!(script, "# {line}");
                }
            }
            None => self.sink.report(Progress::Message { text: text.to_owned() }),
        }
    }

    /// A line of shell that only makes sense in the script (a wait loop, a check).
    pub fn script_only(&mut self, line: &str) {
        if let Some(script) = &mut self.script {
            script.push_str(line);
            script.push('\n');
        }
    }

    /// Record that something now exists (or may partly exist) and how to remove it.
    pub fn created(&mut self, what: impl Into<String>, cleanup: impl Into<String>) {
        let created = Created { what: what.into(), cleanup: cleanup.into() };
        if !self.created.contains(&created) {
            self.created.push(created);
        }
    }

    /// What exists so far.
    pub fn ledger(&self) -> &[Created] {
        &self.created
    }

    /// Is `program` on PATH? A dry run writes a check into the script and assumes yes.
    pub fn has_tool(&mut self, program: &str, install_hint: &str) -> bool {
        match &mut self.script {
            Some(script) => {
                let _ = writeln!(
                    script,
                    "command -v {program} >/dev/null || {{ echo {} >&2; exit 1; }}",
                    quote(&format!("{program} is not installed; {install_hint}"))
                );
                true
            }
            None => find_on_path(program).is_some(),
        }
    }

    /// Create a directory (and its parents). In a dry run: `mkdir -p`, once per directory.
    pub fn make_dir(&mut self, dir: &Path) -> Result<(), PlatformError> {
        if let Some(script) = &mut self.script {
            if !self.script_dirs.iter().any(|known| known == dir) {
                let _ = writeln!(script, "mkdir -p {}", quote(&dir.to_string_lossy()));
                self.script_dirs.push(dir.to_path_buf());
            }
            return Ok(());
        }
        std::fs::create_dir_all(dir).map_err(|source| PlatformError::Io { path: dir.to_path_buf(), source })
    }

    /// Write a file (creating its directory). In a dry run: a heredoc in the script.
    pub fn write_file(&mut self, path: &Path, contents: &str) -> Result<(), PlatformError> {
        if self.script.is_some() {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                self.make_dir(dir)?;
            }
            let script = self.script.as_mut().expect("a dry run has a script");
            let mut fence = String::from("EOF");
            while contents.lines().any(|line| line == fence) {
                fence.push('_');
            }
            let _ = writeln!(script, "cat > {} <<'{fence}'", quote(&path.to_string_lossy()));
            script.push_str(contents);
            if !contents.ends_with('\n') {
                script.push('\n');
            }
            let _ = writeln!(script, "{fence}");
            return Ok(());
        }
        let io = |source| PlatformError::Io { path: path.to_path_buf(), source };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        std::fs::write(path, contents).map_err(io)
    }

    /// Run a command and return its stdout (empty in a dry run). Stderr lines, and stdout lines
    /// when asked, are reported as progress while the command runs.
    pub async fn run(&mut self, command: &ToolCommand) -> Result<String, PlatformError> {
        if let Some(script) = &mut self.script {
            script.push_str(&command.script_line());
            script.push('\n');
            if let Some(path) = &command.stdout_to {
                let _ = writeln!(script, "chmod 600 {}", quote(&path.to_string_lossy()));
            }
            return Ok(String::new());
        }
        self.sink.report(Progress::Message { text: format!("$ {}", command.script_line()) });
        let mut child = tokio::process::Command::new(&command.program)
            .args(&command.args)
            .envs(command.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| PlatformError::Spawn { command: command.script_line(), source })?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let sink = self.sink;
        let program = command.program.clone();
        let show_stdout = command.show_stdout;
        let read_stdout = async {
            let mut lines = BufReader::new(stdout).lines();
            let mut text = String::new();
            while let Ok(Some(line)) = lines.next_line().await {
                if show_stdout {
                    sink.report(Progress::Message { text: line.clone() });
                }
                text.push_str(&line);
                text.push('\n');
            }
            text
        };
        let read_stderr = async {
            let mut lines = BufReader::new(stderr).lines();
            let mut tail: Vec<String> = Vec::new();
            while let Ok(Some(line)) = lines.next_line().await {
                sink.report(Progress::Message { text: format!("{program}: {line}") });
                tail.push(line);
                if tail.len() > 20 {
                    tail.remove(0);
                }
            }
            tail
        };
        let (out, err_tail) = tokio::join!(read_stdout, read_stderr);
        let status = child
            .wait()
            .await
            .map_err(|source| PlatformError::Spawn { command: command.script_line(), source })?;
        if !status.success() {
            return Err(PlatformError::CommandFailed {
                command: command.script_line(),
                status: status.to_string(),
                stderr: err_tail.join("\n"),
            });
        }
        if let Some(path) = &command.stdout_to {
            // Captured output is a kubeconfig or similar: credentials, owner-only.
            self.write_file(path, &out)?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .map_err(|source| PlatformError::Io { path: path.clone(), source })?;
        }
        Ok(out)
    }

    /// Ask the user a yes/no question on the terminal. A dry run never asks.
    pub fn confirm(&mut self, question: &str, assume_yes: bool) -> Result<bool, PlatformError> {
        if assume_yes {
            return Ok(true);
        }
        if let Some(script) = &mut self.script {
            // The script asks the person running it, as kfctl would.
            let _ = writeln!(
                script,
                "printf '%s [y/N] ' {} >&2; read -r answer; [ \"$answer\" = y ] || [ \"$answer\" = yes ] || exit 1",
                quote(question)
            );
            return Ok(true);
        }
        use std::io::{BufRead, IsTerminal, Write};
        if !std::io::stdin().is_terminal() {
            return Err(PlatformError::NeedsConfirmation { question: question.to_owned() });
        }
        eprint!("{question} [y/N] ");
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut answer)
            .map_err(|source| PlatformError::Io { path: PathBuf::from("<stdin>"), source })?;
        Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
    }
}

/// The first executable called `program` on PATH.
pub fn find_on_path(program: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(program)).find(|candidate| {
        candidate.metadata().map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::Silent;

    #[test]
    fn script_lines_quote_only_what_needs_quoting() {
        let cmd = ToolCommand::new("kind", ["create", "cluster", "--name", "kubeflow"])
            .env("KUBECONFIG", "/tmp/my app/kubeconfig")
            .stdout_to(Path::new("/tmp/out"));
        assert_eq!(cmd.script_line(), "KUBECONFIG='/tmp/my app/kubeconfig' kind create cluster --name kubeflow > /tmp/out");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote(""), "''");
    }

    #[tokio::test]
    async fn a_dry_run_records_commands_and_files_in_order_and_touches_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sub/main.tf");
        let mut shell = Shell::dry_run(&Silent, "title");
        shell.step("Create the cluster");
        shell.write_file(&file, "EOF\nbody\n").unwrap();
        let out = shell.run(&ToolCommand::new("terraform", ["init"])).await.unwrap();
        assert_eq!(out, "");
        assert!(!file.exists(), "a dry run must not write files");
        let script = shell.into_script().unwrap();
        let expected = format!(
            "#!/bin/sh\n# title\nset -eu\n\n# Create the cluster\nmkdir -p {dir}/sub\ncat > {dir}/sub/main.tf <<'EOF_'\nEOF\nbody\nEOF_\nterraform init\n",
            dir = dir.path().display()
        );
        assert_eq!(script, expected);
    }

    #[test]
    fn a_dry_run_asks_in_the_script_unless_told_yes_and_makes_each_directory_once() {
        let mut shell = Shell::dry_run(&Silent, "t");
        assert!(shell.confirm("Apply it?", true).unwrap());
        assert!(!shell.script.as_ref().unwrap().contains("read -r"));
        assert!(shell.confirm("Apply it?", false).unwrap());
        shell.write_file(Path::new("/d/a"), "a\n").unwrap();
        shell.write_file(Path::new("/d/b"), "b\n").unwrap();
        let script = shell.into_script().unwrap();
        assert!(script.contains("printf '%s [y/N] ' 'Apply it?' >&2; read -r answer;"), "{script}");
        assert_eq!(script.matches("mkdir -p /d\n").count(), 1, "{script}");
    }

    #[tokio::test]
    async fn a_failing_command_reports_its_stderr_and_status() {
        let mut shell = Shell::real(&Silent);
        let err = shell
            .run(&ToolCommand::new("sh", ["-c", "echo out; echo broken >&2; exit 3"]))
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("broken") && text.contains("exit status: 3"), "{text}");
        let out = shell.run(&ToolCommand::new("sh", ["-c", "echo hello"])).await.unwrap();
        assert_eq!(out, "hello\n");
    }
}
