//! `kfctl deploy --platform P` with stand-in executables for the platform tools (kind, k3d,
//! minikube, microk8s, terraform, gcloud, aws, az) on PATH. Each stand-in records its arguments
//! and answers like the real tool; the ones that hand out a kubeconfig hand out the testenv's, so
//! everything after "the cluster exists" (waiting for the API, the default StorageClass check,
//! auto-configuration, kfctl.yaml) runs against the real control plane.
//!
//! Run inside the testenv (see tests/support/mod.rs): `scripts/testenv exec -- cargo test -p kfctl
//! --offline --test platform_deploy`.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

const ARCHIVE: &str = "/work/shared/registries/kubeflow-manifests-v1.4.1.tar.gz";

/// A directory of stand-in tools and the log they append their command lines to.
struct StandIns {
    dir: tempfile::TempDir,
    log: PathBuf,
}

impl StandIns {
    fn new() -> StandIns {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("calls.log");
        std::fs::write(&log, "").unwrap();
        // A machine roomy enough for any release (KFCTL_PROC_ROOT): these tests are about the
        // platforms' commands, not the host checks (tests/platform_doctor.rs has those).
        let proc = dir.path().join("proc");
        std::fs::create_dir_all(proc.join("sys/fs/inotify")).unwrap();
        std::fs::write(proc.join("sys/fs/inotify/max_user_instances"), "8192\n").unwrap();
        std::fs::write(proc.join("sys/fs/inotify/max_user_watches"), "4194304\n").unwrap();
        std::fs::write(proc.join("meminfo"), "MemTotal: 67108864 kB\nMemAvailable: 33554432 kB\n").unwrap();
        std::fs::write(proc.join("cpuinfo"), (0..16).map(|i| format!("processor\t: {i}\n\n")).collect::<String>()).unwrap();
        StandIns { dir, log }
    }

    /// The roomy fake /proc made by [`StandIns::new`].
    fn proc_root(&self) -> PathBuf {
        self.dir.path().join("proc")
    }

    /// Write `name` as a shell script that logs `name args...` and then runs `body`.
    fn tool(&self, name: &str, body: &str) -> &StandIns {
        let path = self.dir.path().join(name);
        let script = format!(
            "#!/bin/sh\nprintf '%s\\n' \"{name} $*\" >> '{}'\n{body}\n",
            self.log.display()
        );
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        self
    }

    /// PATH for kfctl: the stand-ins, then the system (for sh, cp, kubectl), nothing else.
    fn path(&self) -> String {
        format!("{}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", self.dir.path().display())
    }

    /// The recorded command lines, with the app directory written as $APP.
    fn calls(&self, app: &Path) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap()
            .lines()
            .map(|line| line.replace(&app.display().to_string(), "$APP"))
            .collect()
    }

    /// All stand-ins, answering like the real tools. `$KFCTL_STANDIN_KUBECONFIG` is the
    /// kubeconfig of the "created" cluster.
    fn all(&self) -> &StandIns {
        self.tool(
            "kind",
            r#"case "$1 $2" in
  "create cluster") echo "Creating cluster ..." >&2 ;;
  "get kubeconfig") cat "$KFCTL_STANDIN_KUBECONFIG" ;;
  "delete cluster") echo "Deleting cluster ..." >&2 ;;
  *) echo "stand-in kind: unexpected arguments: $*" >&2; exit 2 ;;
esac"#,
        )
        .tool(
            "k3d",
            r#"case "$1 $2" in
  "cluster create"|"cluster delete") echo "INFO[0000] ok" >&2 ;;
  "kubeconfig write") cp "$KFCTL_STANDIN_KUBECONFIG" "$5"; echo "$5" ;;
  *) echo "stand-in k3d: unexpected arguments: $*" >&2; exit 2 ;;
esac"#,
        )
        .tool(
            "minikube",
            r#"case "$1" in
  start) cp "$KFCTL_STANDIN_KUBECONFIG" "$KUBECONFIG"; echo "Done! kubectl is now configured" ;;
  update-context) echo "context is already configured" ;;
  delete) echo "Deleted profile" ;;
  *) echo "stand-in minikube: unexpected arguments: $*" >&2; exit 2 ;;
esac"#,
        )
        .tool(
            "microk8s",
            r#"case "$1" in
  status) echo "microk8s is running" ;;
  enable|disable) echo "Enabled/disabled $2 $3" ;;
  config) cat "$KFCTL_STANDIN_KUBECONFIG" ;;
  *) echo "stand-in microk8s: unexpected arguments: $*" >&2; exit 2 ;;
esac"#,
        )
        .tool(
            "terraform",
            r#"dir="${1#-chdir=}"
case "$2" in
  init) echo "Terraform has been successfully initialized!" ;;
  plan) [ -f "$dir/main.tf" ] || { echo "Error: No configuration files" >&2; exit 1; }
        touch "$dir/kfctl.tfplan"; echo "Plan: 12 to add, 0 to change, 0 to destroy." ;;
  apply) [ -f "$dir/$5" ] || { echo "Error: no saved plan $5" >&2; exit 1; }
        if [ -n "${KFCTL_STANDIN_FAIL_APPLY:-}" ]; then
          echo "Error: creating cluster: googleapi: Error 403: Insufficient regional quota" >&2; exit 1
        fi
        echo "Apply complete! Resources: 12 added, 0 changed, 0 destroyed." ;;
  destroy) echo "Destroy complete! Resources: 12 destroyed." ;;
  *) echo "stand-in terraform: unexpected arguments: $*" >&2; exit 2 ;;
esac"#,
        )
        .tool(
            "gcloud",
            r#"[ "$1 $2 $3" = "container clusters get-credentials" ] || { echo "stand-in gcloud: unexpected $*" >&2; exit 2; }
cp "$KFCTL_STANDIN_KUBECONFIG" "$KUBECONFIG"; echo "kubeconfig entry generated" >&2"#,
        )
        .tool(
            "aws",
            r#"[ "$1 $2" = "eks update-kubeconfig" ] || { echo "stand-in aws: unexpected $*" >&2; exit 2; }
while [ $# -gt 0 ]; do [ "$1" = "--kubeconfig" ] && cp "$KFCTL_STANDIN_KUBECONFIG" "$2"; shift; done"#,
        )
        .tool(
            "az",
            r#"[ "$1 $2" = "aks get-credentials" ] || { echo "stand-in az: unexpected $*" >&2; exit 2; }
while [ $# -gt 0 ]; do [ "$1" = "--file" ] && cp "$KFCTL_STANDIN_KUBECONFIG" "$2"; shift; done"#,
        )
    }
}

/// One app directory made by the real `kfctl init` from the real v1.4.1 archive, copied for each
/// test (init unpacks a large archive; doing it once keeps the suite quick).
fn app_template() -> &'static Path {
    static TEMPLATE: OnceLock<PathBuf> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("kfctl-platform-template-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let out = Command::new(env!("CARGO_BIN_EXE_kfctl"))
            .args(["init", dir.to_str().unwrap(), "--registry", ARCHIVE])
            .output()
            .unwrap();
        assert!(out.status.success(), "kfctl init failed: {}", String::from_utf8_lossy(&out.stderr));
        dir
    })
}

/// A fresh copy of the template app in its own temporary directory.
fn new_app() -> (tempfile::TempDir, PathBuf) {
    let holder = tempfile::tempdir().unwrap();
    let app = holder.path().join("app");
    let status = Command::new("cp").arg("-r").arg(app_template()).arg(&app).status().unwrap();
    assert!(status.success());
    (holder, app)
}

fn deploy(stand_ins: &StandIns, app: &Path, kubeconfig: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kfctl"))
        .arg("deploy")
        .arg(app)
        .args(args)
        .env("PATH", stand_ins.path())
        .env("KFCTL_PROC_ROOT", stand_ins.proc_root())
        .env("KFCTL_STANDIN_KUBECONFIG", kubeconfig)
        // The user's own kubeconfig must not be needed (or touched) by a created cluster.
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env("HOME", app.parent().unwrap())
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!("status: {}\nstdout:\n{}\nstderr:\n{}", out.status, String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn kfctl_yaml(app: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(app.join("kfctl.yaml")).unwrap();
    serde_saphyr::from_str(&text).unwrap()
}

/// The testenv's current-context name, which the stand-ins hand out.
fn testenv_context(kubeconfig: &Path) -> String {
    let config: serde_json::Value = serde_saphyr::from_str(&std::fs::read_to_string(kubeconfig).unwrap()).unwrap();
    config["current-context"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn kind_creates_the_cluster_fetches_its_kubeconfig_and_records_the_choices() {
    let env = support::env().await;
    let stand_ins = StandIns::new();
    stand_ins.all();
    let (_holder, app) = new_app();
    let out = deploy(&stand_ins, &app, &env.kubeconfig, &["--platform", "kind", "--cluster-only"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        stand_ins.calls(&app),
        [
            "kind create cluster --config $APP/platform/kind-config.yaml --wait 5m",
            "kind get kubeconfig --name kubeflow",
        ]
    );
    let kind_config = std::fs::read_to_string(app.join("platform/kind-config.yaml")).unwrap();
    assert_eq!(kind_config.matches("image: kindest/node:v1.21.14").count(), 3, "{kind_config}");

    // The kubeconfig kfctl fetched is the testenv's, private to the user.
    let kubeconfig = app.join("platform/kubeconfig");
    assert_eq!(std::fs::read(&kubeconfig).unwrap(), std::fs::read(&env.kubeconfig).unwrap());
    assert_eq!(std::fs::metadata(&kubeconfig).unwrap().permissions().mode() & 0o777, 0o600);

    // The choices are in kfctl.yaml, so a later `kfctl apply` needs no flags.
    let config = kfctl_yaml(&app);
    let platform = &config["platform"];
    assert_eq!(platform["kind"], "kind");
    assert_eq!(platform["kubeconfig"], "platform/kubeconfig");
    assert_eq!(platform["context"], testenv_context(&env.kubeconfig).as_str());
    assert_eq!(platform["clusterName"], "kubeflow");
    assert_eq!(platform["kubernetesVersion"], "v1.21.14");
    // Auto-configuration ran against the real cluster and wrote each choice with its reason.
    for section in ["storage", "gpu", "access"] {
        assert!(config["cluster"][section]["reason"].is_string(), "cluster.{section}: {config:#}");
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("API server https://127.0.0.1:6443/ answers: Kubernetes v1.20"), "{stderr}");
}

#[tokio::test]
async fn k3d_minikube_and_microk8s_run_their_own_commands() {
    let env = support::env().await;
    let cases: [(&str, &[&str]); 3] = [
        (
            "k3d",
            &[
                "k3d cluster create kubeflow --image rancher/k3s:v1.21.14-k3s1 --agents 2 --k3s-arg --disable=traefik@server:0 --kubeconfig-update-default=false --wait",
                "k3d kubeconfig write kubeflow --output $APP/platform/kubeconfig",
            ],
        ),
        (
            "minikube",
            &[
                "minikube start --profile kubeflow --kubernetes-version v1.21.14 --cpus 6 --memory 16g --disk-size 50g",
                "minikube update-context --profile kubeflow",
            ],
        ),
        (
            "microk8s",
            &["microk8s status --wait-ready --timeout 300", "microk8s enable dns storage", "microk8s config"],
        ),
    ];
    for (platform, expected) in cases {
        let stand_ins = StandIns::new();
        stand_ins.all();
        let (_holder, app) = new_app();
        let out = deploy(&stand_ins, &app, &env.kubeconfig, &["--platform", platform, "--cluster-only"]);
        assert!(out.status.success(), "{platform}: {}", text(&out));
        assert_eq!(stand_ins.calls(&app), expected, "{platform}");
        assert_eq!(kfctl_yaml(&app)["platform"]["kind"], platform);
        assert_eq!(kfctl_yaml(&app)["platform"]["kubeconfig"], "platform/kubeconfig");
        let mode = std::fs::metadata(app.join("platform/kubeconfig")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{platform}: kubeconfig must be private");
    }
}

#[tokio::test]
async fn clouds_write_terraform_plan_apply_and_fetch_credentials() {
    let env = support::env().await;
    let cases: [(&str, &[&str], &str); 3] = [
        (
            "gke",
            &["--project", "my-project", "--gpu-nodes", "1"],
            "gcloud container clusters get-credentials kubeflow --zone us-central1-a --project my-project",
        ),
        (
            "eks",
            &["--account", "ml-team", "--region", "eu-west-1"],
            "aws eks update-kubeconfig --name kubeflow --kubeconfig $APP/platform/kubeconfig --region eu-west-1 --profile ml-team",
        ),
        (
            "aks",
            &["--resource-group", "ml"],
            "az aks get-credentials --resource-group ml --name kubeflow --file $APP/platform/kubeconfig --overwrite-existing",
        ),
    ];
    for (platform, flags, credentials) in cases {
        let stand_ins = StandIns::new();
        stand_ins.all();
        let (_holder, app) = new_app();
        let mut args = vec!["--platform", platform, "--yes", "--cluster-only"];
        args.extend_from_slice(flags);
        let out = deploy(&stand_ins, &app, &env.kubeconfig, &args);
        assert!(out.status.success(), "{platform}: {}", text(&out));
        let tf = "terraform -chdir=$APP/platform/terraform";
        assert_eq!(
            stand_ins.calls(&app),
            [
                format!("{tf} init -input=false -no-color"),
                format!("{tf} plan -input=false -no-color -out=kfctl.tfplan"),
                format!("{tf} apply -input=false -no-color kfctl.tfplan"),
                credentials.to_owned(),
            ],
            "{platform}"
        );
        for file in ["versions.tf", "variables.tf", "main.tf", "outputs.tf", "terraform.tfvars"] {
            assert!(app.join("platform/terraform").join(file).is_file(), "{platform}: {file} missing");
        }
        // The plan was shown to the user.
        assert!(String::from_utf8_lossy(&out.stderr).contains("Plan: 12 to add"), "{}", text(&out));
        let config = kfctl_yaml(&app);
        assert_eq!(config["platform"]["kind"], platform);
        assert_eq!(config["platform"]["kubernetesVersion"], "1.21");
        if platform == "gke" {
            assert_eq!(config["platform"]["project"], "my-project");
            assert_eq!(config["platform"]["gpu"]["nodeCount"], 1);
            let tfvars = std::fs::read_to_string(app.join("platform/terraform/terraform.tfvars")).unwrap();
            assert!(tfvars.contains("gpu_node_count     = 1\n"), "{tfvars}");
        }
    }
}

#[test]
fn a_failing_terraform_apply_says_what_exists_and_how_to_clean_up() {
    let stand_ins = StandIns::new();
    stand_ins.all();
    let (_holder, app) = new_app();
    let out = Command::new(env!("CARGO_BIN_EXE_kfctl"))
        .arg("deploy")
        .arg(&app)
        .args(["--platform", "gke", "--project", "p", "--yes"])
        .env("PATH", stand_ins.path())
        .env("KFCTL_PROC_ROOT", stand_ins.proc_root())
        .env("KFCTL_STANDIN_FAIL_APPLY", "1")
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let tf_dir = app.join("platform/terraform");
    assert!(stderr.contains("terraform -chdir="), "{stderr}");
    assert!(stderr.contains("Insufficient regional quota"), "{stderr}");
    assert!(stderr.contains("already created"), "{stderr}");
    assert!(
        stderr.contains(&format!("terraform -chdir={} destroy", tf_dir.display())),
        "the message must say how to clean up: {stderr}"
    );
    // It stopped there: no credentials were fetched.
    assert!(!stand_ins.calls(&app).iter().any(|c| c.starts_with("gcloud")), "{:?}", stand_ins.calls(&app));
    assert!(!app.join("platform/kubeconfig").exists());
}

#[test]
fn a_missing_tool_says_how_to_install_it_and_that_nothing_was_created() {
    let stand_ins = StandIns::new(); // no tools at all
    let (_holder, app) = new_app();
    let before = std::fs::read_to_string(app.join("kfctl.yaml")).unwrap();
    let out = deploy(&stand_ins, &app, Path::new("/nonexistent"), &["--platform", "kind"]);
    assert!(!out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("kind is not installed"), "{stderr}");
    assert!(stderr.contains("hint: install kind"), "{stderr}");
    assert!(stderr.contains("nothing was created"), "{stderr}");
    assert_eq!(std::fs::read_to_string(app.join("kfctl.yaml")).unwrap(), before, "kfctl.yaml must not change");
}

#[test]
fn a_cluster_that_never_answers_stops_with_what_was_created_and_how_to_remove_it() {
    let stand_ins = StandIns::new();
    stand_ins.all();
    let (holder, app) = new_app();
    // A kubeconfig whose server nobody listens on (a closed loopback port).
    let dead = holder.path().join("dead.kubeconfig");
    std::fs::write(
        &dead,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: dead\n  cluster:\n    server: https://127.0.0.1:1\n    insecure-skip-tls-verify: true\nusers:\n- name: dead\n  user:\n    token: not-a-secret\ncontexts:\n- name: kind-kubeflow\n  context:\n    cluster: dead\n    user: dead\ncurrent-context: kind-kubeflow\n",
    )
    .unwrap();
    let out = deploy(&stand_ins, &app, &dead, &["--platform", "kind", "--cluster-timeout", "3s"]);
    assert!(!out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("did not answer within 3s"), "{stderr}");
    assert!(stderr.contains("kind cluster \"kubeflow\""), "{stderr}");
    assert!(stderr.contains("kind delete cluster --name kubeflow"), "{stderr}");
    assert!(!stderr.contains("not-a-secret"), "credentials must never be printed: {stderr}");
}

#[test]
fn dry_run_prints_every_command_and_file_in_order_and_changes_nothing() {
    let holder = tempfile::tempdir().unwrap();
    let app = holder.path().join("new-app");
    let stand_ins = StandIns::new(); // the dry run must not call any tool
    let out = Command::new(env!("CARGO_BIN_EXE_kfctl"))
        .arg("deploy")
        .arg(&app)
        .args(["--platform", "kind", "--registry", ARCHIVE, "--dry-run"])
        .env("PATH", stand_ins.path())
        .env("KFCTL_PROC_ROOT", stand_ins.proc_root())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(!app.exists(), "a dry run must not create the app directory");
    assert!(stand_ins.calls(&app).is_empty(), "a dry run must not run tools");
    let script = String::from_utf8_lossy(&out.stdout).replace(&app.display().to_string(), "$APP");
    let commands: Vec<&str> = script.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()).collect();
    let expected_start = [
        "set -eu",
        "kfctl init $APP --registry /work/shared/registries/kubeflow-manifests-v1.4.1.tar.gz --platform kind",
        "command -v kind >/dev/null || { echo 'kind is not installed; install kind (it needs Docker): https://kind.sigs.k8s.io/docs/user/quick-start/#installation, for example `go install sigs.k8s.io/kind@v0.20.0`' >&2; exit 1; }",
        "mkdir -p $APP/platform",
        "cat > $APP/platform/kind-config.yaml <<'EOF'",
    ];
    assert_eq!(&commands[..expected_start.len()], expected_start, "{script}");
    let tail: Vec<&str> = commands.iter().copied().filter(|l| l.starts_with("kind ") || l.starts_with("kfctl ") || l.starts_with("chmod")).collect();
    assert_eq!(
        tail,
        [
            "kfctl init $APP --registry /work/shared/registries/kubeflow-manifests-v1.4.1.tar.gz --platform kind",
            "kind create cluster --config $APP/platform/kind-config.yaml --wait 5m",
            "kind get kubeconfig --name kubeflow > $APP/platform/kubeconfig",
            "chmod 600 $APP/platform/kubeconfig",
            "kfctl apply $APP",
            "kfctl wait $APP --timeout 1200s",
            "kfctl open dashboard --kubeconfig $APP/platform/kubeconfig",
        ],
        "{script}"
    );
    // It is a script a person can run: sh parses it.
    let check = Command::new("sh").arg("-n").arg("-c").arg(String::from_utf8_lossy(&out.stdout).as_ref()).output().unwrap();
    assert!(check.status.success(), "sh -n: {}", String::from_utf8_lossy(&check.stderr));
}

/// The dry-run script of a cloud deploy, run by hand with the same stand-ins, does what kfctl
/// itself does: the same tool calls in the same order and the same Terraform files.
#[tokio::test]
async fn the_gke_dry_run_script_runs_by_hand_like_kfctl_does() {
    let env = support::env().await;
    let flags = ["--platform", "gke", "--project", "my-project", "--yes", "--cluster-only"];

    let by_kfctl = StandIns::new();
    by_kfctl.all();
    let (_holder, app) = new_app();
    let out = deploy(&by_kfctl, &app, &env.kubeconfig, &flags);
    assert!(out.status.success(), "{}", text(&out));

    let by_hand = StandIns::new();
    by_hand.all();
    let (_holder2, app2) = new_app();
    let mut args = flags.to_vec();
    args.push("--dry-run");
    let script = deploy(&by_hand, &app2, &env.kubeconfig, &args);
    assert!(script.status.success(), "{}", text(&script));
    assert!(by_hand.calls(&app2).is_empty(), "--dry-run ran a tool");
    let run = Command::new("sh")
        .arg("-c")
        .arg(String::from_utf8_lossy(&script.stdout).as_ref())
        .env("PATH", by_hand.path())
        .env("KFCTL_STANDIN_KUBECONFIG", &env.kubeconfig)
        .output()
        .unwrap();
    assert!(run.status.success(), "the script failed:\n{}", text(&run));
    assert_eq!(by_hand.calls(&app2), by_kfctl.calls(&app));
    for file in ["versions.tf", "variables.tf", "main.tf", "outputs.tf", "terraform.tfvars"] {
        let path = |dir: &Path| dir.join("platform/terraform").join(file);
        assert_eq!(std::fs::read(path(&app2)).unwrap(), std::fs::read(path(&app)).unwrap(), "{file}");
    }
    assert_eq!(std::fs::read(app2.join("platform/kubeconfig")).unwrap(), std::fs::read(&env.kubeconfig).unwrap());
}

/// Record `spec` as the app's platform, as `kfctl deploy` would have, with a kubeconfig file that
/// points nowhere (the cluster is gone or broken: teardown must still work).
fn record_platform(app: &Path, spec: kfctl::platform::PlatformSpec) {
    let mut opened = kfctl::app::App::open(app).unwrap();
    opened.config.platform = spec;
    opened.config.platform.kubeconfig = Some("platform/kubeconfig".into());
    opened.save().unwrap();
    std::fs::create_dir_all(app.join("platform")).unwrap();
    std::fs::write(
        app.join("platform/kubeconfig"),
        "apiVersion: v1\nkind: Config\nclusters:\n- name: gone\n  cluster:\n    server: https://127.0.0.1:1\nusers:\n- name: gone\n  user: {}\ncontexts:\n- name: gone\n  context:\n    cluster: gone\n    user: gone\ncurrent-context: gone\n",
    )
    .unwrap();
}

fn delete(stand_ins: &StandIns, app: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kfctl"))
        .arg("delete")
        .arg(app)
        .args(args)
        .env("PATH", stand_ins.path())
        .env("KFCTL_PROC_ROOT", stand_ins.proc_root())
        .output()
        .unwrap()
}

#[test]
fn delete_platform_removes_the_local_cluster_even_when_it_no_longer_answers() {
    use kfctl::platform::{PlatformKind, PlatformSpec};
    for (kind, expected) in [
        (PlatformKind::Kind, "kind delete cluster --name kf"),
        (PlatformKind::K3d, "k3d cluster delete kf"),
        (PlatformKind::Minikube, "minikube delete --profile kf"),
    ] {
        let stand_ins = StandIns::new();
        stand_ins.all();
        let (_holder, app) = new_app();
        let mut spec = PlatformSpec::new(kind);
        spec.cluster_name = Some("kf".into());
        record_platform(&app, spec);
        let out = delete(&stand_ins, &app, &["--platform"]);
        assert!(out.status.success(), "{kind}: {}", text(&out));
        assert_eq!(stand_ins.calls(&app), [expected], "{kind}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("removing the cluster anyway"), "{}", text(&out));
        assert!(!app.join("platform/kubeconfig").exists(), "{kind}: the kubeconfig of a deleted cluster stays behind");
    }
}

#[test]
fn delete_platform_destroys_cloud_resources_only_when_confirmed() {
    use kfctl::platform::{PlatformKind, PlatformSpec};
    let stand_ins = StandIns::new();
    stand_ins.all();
    let (_holder, app) = new_app();
    let mut spec = PlatformSpec::new(PlatformKind::Eks);
    spec.region = Some("eu-west-1".into());
    record_platform(&app, spec);

    // Not a terminal and no --yes: nothing is destroyed, and the message says what to do.
    let out = delete(&stand_ins, &app, &["--platform"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("pass --yes"), "{}", text(&out));
    assert!(stand_ins.calls(&app).is_empty(), "{:?}", stand_ins.calls(&app));

    let out = delete(&stand_ins, &app, &["--platform", "--yes"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        stand_ins.calls(&app),
        ["terraform -chdir=$APP/platform/terraform destroy -input=false -no-color -auto-approve"]
    );
}

#[test]
fn delete_platform_on_an_existing_cluster_refuses_before_touching_anything() {
    let stand_ins = StandIns::new();
    stand_ins.all();
    let (_holder, app) = new_app();
    let out = delete(&stand_ins, &app, &["--platform"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("kfctl did not create this cluster"), "{}", text(&out));
    assert!(stand_ins.calls(&app).is_empty());
}

/// A machine whose inotify limits are too low for the release: stopped before any cluster is
/// created, with the commands that fix it, said once.
#[test]
fn low_inotify_limits_stop_a_local_cluster_before_it_is_created() {
    let stand_ins = StandIns::new();
    stand_ins.all();
    std::fs::write(stand_ins.proc_root().join("sys/fs/inotify/max_user_instances"), "128\n").unwrap();
    let (_holder, app) = new_app();
    let out = deploy(&stand_ins, &app, Path::new("/nonexistent/kubeconfig"), &["--platform", "kind", "--cluster-only"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(err.contains("fs.inotify.max_user_instances is 128, needs 512"), "{err}");
    assert!(err.contains("sudo sysctl -w fs.inotify.max_user_instances=512"), "{err}");
    assert_eq!(err.matches("max_user_instances is 128").count(), 1, "said once:\n{err}");
    assert!(stand_ins.calls(&app).is_empty(), "a tool ran: {:?}", stand_ins.calls(&app));
}
