//! `kfctl build` against the reference: live `kubectl kustomize` on the fixture trees in
//! crates/render/tests/fixtures (one tree per kustomize feature kfctl supports), compared by
//! scripts/parity as parsed YAML. Plus the error messages for bad input.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

fn fixtures() -> PathBuf {
    repo().join("crates/render/tests/fixtures")
}

fn kfctl_build(dir: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_kfctl")).arg("build").arg(dir).output().expect("run kfctl")
}

/// Runs scripts/parity on `tree` (with `extra` arguments) against live `kubectl kustomize`;
/// asserts every directory matches and at least `min_dirs` were compared.
fn assert_parity(tree: &Path, extra: &[&str], min_dirs: usize) {
    let cache = tempfile::tempdir().unwrap();
    let out = Command::new(repo().join("scripts/parity"))
        .arg(tree)
        .arg("--kfctl")
        .arg(env!("CARGO_BIN_EXE_kfctl"))
        .args(extra)
        .env("KFCTL_CACHE_DIR", cache.path())
        .output()
        .expect("run scripts/parity (needs python3 and kubectl)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let summary = stdout.lines().find(|l| l.starts_with("parity: ")).unwrap_or_else(|| panic!("no summary:\n{stdout}\n{stderr}"));
    let counts = summary["parity: ".len()..].split_whitespace().next().unwrap();
    let (ok, total) = counts.split_once('/').unwrap();
    assert!(total.parse::<usize>().unwrap() >= min_dirs, "directories went missing: {summary}");
    assert_eq!(ok, total, "kfctl build differs from kubectl kustomize:\n{stdout}\n{stderr}");
    assert!(out.status.success());
}

fn shared() -> PathBuf {
    repo().ancestors().map(|d| d.join("shared/registries")).find(|d| d.is_dir()).expect("shared/registries beside the repository")
}

#[test]
fn fixtures_match_kubectl_kustomize() {
    assert_parity(&fixtures(), &[], 20);
}

/// Every kustomization directory of 26.03, its remote bases through the mirror (kfctl with
/// `--mirror`, kubectl on a copy whose URLs point at the mirror's unpacked copies).
#[test]
fn kubeflow_26_03_matches_kubectl_kustomize_with_remote_bases_from_the_mirror() {
    let mirror = shared().join("mirror");
    assert_parity(&shared().join("kubeflow-manifests-26.03.tar.gz"), &["--mirror", mirror.to_str().unwrap(), "--quiet"], 230);
}

#[test]
fn kubeflow_v1_10_2_matches_kubectl_kustomize() {
    let mirror = shared().join("mirror");
    assert_parity(&shared().join("kubeflow-manifests-v1.10.2.tar.gz"), &["--mirror", mirror.to_str().unwrap(), "--quiet"], 226);
}

#[test]
fn invalid_yaml_names_file_and_line() {
    let out = kfctl_build(&fixtures().join("errors/invalid-yaml"));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.yaml:6:"), "{err}");
}

#[test]
fn missing_resource_names_path_and_kustomization() {
    let out = kfctl_build(&fixtures().join("errors/missing-resource"));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("does-not-exist.yaml"), "{err}");
    assert!(err.contains("errors/missing-resource/kustomization.yaml"), "{err}");
}

#[test]
fn cycle_is_reported() {
    let out = kfctl_build(&fixtures().join("errors/cycle/a"));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cycle detected"), "{err}");
}

#[test]
fn unknown_field_is_kustomize_error() {
    let out = kfctl_build(&fixtures().join("errors/unknown-field"));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("invalid Kustomization: json: unknown field \"foo\""), "{err}");
}

#[test]
fn remote_resource_without_network_names_the_url_and_the_way_out() {
    // Not compared with kubectl: it would fetch from the network. A mirror nothing listens on
    // stands in for a machine without network access (tests/remote.rs covers the rest).
    let dir = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("kustomization.yaml"),
        "resources:\n- https://github.com/kubeflow/manifests//common/cert-manager?ref=v1.4.1\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kfctl"))
        .arg("build")
        .arg(dir.path())
        .args(["--mirror", "http://127.0.0.1:1"])
        .env("KFCTL_CACHE_DIR", cache.path())
        .output()
        .expect("run kfctl");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("https://github.com/kubeflow/manifests//common/cert-manager?ref=v1.4.1"), "{err}");
    assert!(err.contains("cannot fetch https://github.com/kubeflow/manifests/archive/v1.4.1.tar.gz"), "{err}");
    assert!(err.contains(&dir.path().join("kustomization.yaml").display().to_string()), "{err}");
}

#[test]
fn output_file_and_deprecation_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let out_file = dir.path().join("out.yaml");
    let out = Command::new(env!("CARGO_BIN_EXE_kfctl"))
        .arg("build")
        .arg(fixtures().join("resources/overlay"))
        .arg("-o")
        .arg(&out_file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("# Warning: 'bases' is deprecated. Please use 'resources' instead."), "{err}");
    let text = std::fs::read_to_string(&out_file).unwrap();
    assert!(text.starts_with("apiVersion: v1\nkind: Namespace\n"), "{text}");
}

#[test]
fn origins_shown_only_when_asked() {
    let plain = kfctl_build(&fixtures().join("resources/overlay"));
    assert!(!String::from_utf8_lossy(&plain.stdout).contains("config.kubernetes.io/origin"));
    let out = Command::new(env!("CARGO_BIN_EXE_kfctl"))
        .args(["build", "--origins", "annotations"])
        .arg(fixtures().join("resources/overlay"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("config.kubernetes.io/origin: |"), "{text}");
    assert!(text.contains("resources/overlay/extra/job.yaml"), "{text}");
    let out = Command::new(env!("CARGO_BIN_EXE_kfctl"))
        .args(["build", "--origins", "comments"])
        .arg(fixtures().join("resources/overlay"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("# Source: ") && text.contains("resources/base/deployment.yaml"), "{text}");
}

#[test]
fn non_builtin_plugin_is_refused_naming_file_and_kind() {
    // kubectl kustomize fails here too (fixture parity checks that); the message must say which
    // config and kind, and what to do.
    let out = kfctl_build(&fixtures().join("plugins/not-builtin"));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("plugins/not-builtin/plugin.yaml"), "{err}");
    assert!(err.contains("ChartInflator"), "{err}");
    assert!(err.contains("apiVersion 'example.com/v1' is not a builtin plugin"), "{err}");
    assert!(err.contains("hint:"), "{err}");
}

#[test]
fn plugin_of_the_wrong_role_and_modifying_validator_are_errors() {
    let out = kfctl_build(&fixtures().join("plugins/wrong-role"));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("plugin LabelTransformer is not a generator"), "{err}");
    let out = kfctl_build(&fixtures().join("plugins/validators-modify"));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("validator shouldn't modify the resource map"), "{err}");
}

#[test]
fn helm_charts_are_refused_with_a_hint() {
    // Not compared with kubectl: without --enable-helm it refuses too, and with it it would run helm.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("kustomization.yaml"),
        "helmCharts:\n- name: minecraft\n  repo: https://itzg.github.io/minecraft-server-charts\n  version: 3.1.3\n",
    )
    .unwrap();
    let out = kfctl_build(dir.path());
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("'helmCharts'"), "{err}");
    assert!(err.contains("--enable-helm"), "{err}");
    assert!(err.contains("hint: render the chart with `helm template`"), "{err}");
}
