//! The command line itself, with no cluster: shell completions and how errors are printed.
//!
//! Snapshots live in `tests/snapshots/`. When an intended change alters one, run
//! `KFCTL_UPDATE_SNAPSHOTS=1 cargo test -p kfctl --test cli` and review the diff.

use std::path::Path;
use std::process::Command;

fn kfctl(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_kfctl")).args(args).output().expect("run kfctl")
}

/// Compares `actual` with the snapshot file, or writes it when KFCTL_UPDATE_SNAPSHOTS is set.
fn assert_snapshot(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots").join(name);
    if std::env::var_os("KFCTL_UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, actual).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!("reading snapshot {}: {e}\n(create it with KFCTL_UPDATE_SNAPSHOTS=1 cargo test -p kfctl --test cli)", path.display())
    });
    assert_eq!(
        actual,
        expected,
        "output differs from {}; if the change is intended, run KFCTL_UPDATE_SNAPSHOTS=1 cargo test -p kfctl --test cli",
        path.display()
    );
}

#[test]
fn completion_scripts_are_generated_for_bash_zsh_and_fish() {
    for shell in ["bash", "zsh", "fish"] {
        let out = kfctl(&["completion", shell]);
        assert!(out.status.success(), "kfctl completion {shell}: {}", String::from_utf8_lossy(&out.stderr));
        let script = String::from_utf8(out.stdout).expect("utf-8 script");
        for sub in ["deploy", "status", "open", "images", "completion"] {
            assert!(script.contains(sub), "the {shell} script does not complete the subcommand {sub}");
        }
    }
}

#[test]
fn bash_completion_script_parses_with_bash_n() {
    let out = kfctl(&["completion", "bash"]);
    assert!(out.status.success());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kfctl.bash");
    std::fs::write(&path, &out.stdout).unwrap();
    let check = Command::new("bash").arg("-n").arg(&path).output().expect("run bash -n");
    assert!(check.status.success(), "bash -n rejects the completion script: {}", String::from_utf8_lossy(&check.stderr));
    // Sourcing it registers the completion function for kfctl.
    let source = Command::new("bash")
        .arg("-c")
        .arg(format!("source {} && complete -p kfctl", path.display()))
        .output()
        .expect("run bash");
    assert!(source.status.success(), "sourcing the script: {}", String::from_utf8_lossy(&source.stderr));
    assert!(String::from_utf8_lossy(&source.stdout).contains("kfctl"));
}

#[test]
fn unknown_shell_is_refused() {
    let out = kfctl(&["completion", "powershell-core"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bash"), "the error lists the shells");
}

/// Regression: a missing kubeconfig printed the same cause three times (the error's own message
/// and two `caused by` lines with the same text). The full stderr is pinned.
#[test]
fn missing_kubeconfig_prints_each_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing-kubeconfig");
    let out = Command::new(env!("CARGO_BIN_EXE_kfctl"))
        .args(["open", "--dry-run"])
        .env("KUBECONFIG", &missing)
        .env_remove("HOME")
        .output()
        .expect("run kfctl");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap().replace(&dir.path().display().to_string(), "$TMP");
    assert_snapshot("missing-kubeconfig.stderr", &stderr);
}
