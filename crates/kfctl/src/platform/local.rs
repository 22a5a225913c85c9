//! Local clusters: kind, k3d, minikube, microk8s. Each drives the tool's own CLI, in the order a
//! person would type it, and ends with the cluster's kubeconfig in `platform/kubeconfig`.

use std::path::Path;

use super::releases::KubernetesSupport;
use super::shell::{Shell, ToolCommand, quote};
use super::{PlatformError, PlatformKind, PlatformSpec};

/// How to install each local tool, for the "not installed" message: for kind a release that runs
/// the node image of the app's Kubeflow release, for MicroK8s its supported channel (both from
/// the release's catalog, when known).
pub fn install_hint(kind: PlatformKind, support: Option<&KubernetesSupport>) -> String {
    match kind {
        PlatformKind::Kind => {
            let version = support.map_or("v0.30.0", |s| s.kind_version.as_str());
            format!(
                "install kind (it needs Docker): https://kind.sigs.k8s.io/docs/user/quick-start/#installation, for example `go install sigs.k8s.io/kind@{version}`"
            )
        }
        PlatformKind::K3d => {
            "install k3d (it needs Docker): https://k3d.io/#installation, for example `curl -s https://raw.githubusercontent.com/k3d-io/k3d/main/install.sh | bash`".to_owned()
        }
        PlatformKind::Minikube => "install minikube: https://minikube.sigs.k8s.io/docs/start/".to_owned(),
        PlatformKind::Microk8s => match support {
            Some(s) => format!("install MicroK8s: `sudo snap install microk8s --classic --channel={}`", s.microk8s_channel),
            None => "install MicroK8s: `sudo snap install microk8s --classic`".to_owned(),
        },
        _ => String::new(),
    }
}

fn require(shell: &mut Shell<'_>, program: &str, kind: PlatformKind, support: Option<&KubernetesSupport>) -> Result<(), PlatformError> {
    let hint = install_hint(kind, support);
    if shell.has_tool(program, &hint) {
        Ok(())
    } else {
        Err(PlatformError::ToolMissing { tool: program.to_owned(), install: hint })
    }
}

/// Before creating a cluster on this machine: its inotify limits, memory and CPUs against the
/// release's needs. Too low an inotify limit stops here, with the commands that fix it (Pods
/// would fail later with "too many open files"); too little memory or CPU is a warning. A dry
/// run only reports.
fn check_host(shell: &mut Shell<'_>, support: &KubernetesSupport) -> Result<(), PlatformError> {
    let Ok(release) = crate::registry::catalog::release(&support.release) else { return Ok(()) };
    let findings = super::host::check_host(&super::host::proc_root(), release);
    let stops = !shell.is_dry_run();
    for finding in &findings {
        // What stops a real run is said once, by the error itself.
        let said_by_the_error = stops && finding.severity == super::doctor::Severity::Error;
        if finding.severity != super::doctor::Severity::Ok && !said_by_the_error {
            let hint = finding.hint.as_deref().map(|h| format!("\n  hint: {h}")).unwrap_or_default();
            shell.step(&format!("{}: {}{hint}", finding.severity, finding.message));
        }
    }
    match findings.into_iter().find(|f| f.severity == super::doctor::Severity::Error) {
        Some(finding) if stops => Err(PlatformError::HostLimits {
            message: finding.message,
            hint: finding.hint.unwrap_or_default(),
        }),
        _ => Ok(()),
    }
}

/// Create the local cluster `spec` describes and write its kubeconfig to `kubeconfig`.
pub async fn create(
    shell: &mut Shell<'_>,
    dir: &Path,
    spec: &PlatformSpec,
    support: &KubernetesSupport,
    kubeconfig: &Path,
) -> Result<(), PlatformError> {
    let name = spec.cluster_name.as_deref().unwrap_or("kubeflow");
    let version = spec.kubernetes_version.as_deref().unwrap_or_default();
    let workers = spec.node_count.unwrap_or(2);
    let kubeconfig_text = kubeconfig.to_string_lossy().into_owned();
    match spec.kind {
        PlatformKind::Kind => {
            require(shell, "kind", spec.kind, Some(support))?;
            check_host(shell, support)?;
            make_parent(shell, kubeconfig)?;
            let config_path = dir.join("platform/kind-config.yaml");
            shell.step(&format!("Create kind cluster {name:?} (Kubernetes {version}, {workers} workers)"));
            shell.write_file(&config_path, &kind_config(name, &format!("kindest/node:{version}"), workers))?;
            shell.created(format!("kind cluster {name:?}"), format!("kind delete cluster --name {}", quote(name)));
            let config_arg = config_path.to_string_lossy().into_owned();
            shell
                .run(&ToolCommand::new("kind", ["create", "cluster", "--config", &config_arg, "--wait", "5m"]))
                .await?;
            shell.step("Fetch the cluster's kubeconfig");
            shell.run(&ToolCommand::new("kind", ["get", "kubeconfig", "--name", name]).stdout_to(kubeconfig)).await?;
        }
        PlatformKind::K3d => {
            require(shell, "k3d", spec.kind, Some(support))?;
            check_host(shell, support)?;
            make_parent(shell, kubeconfig)?;
            let image = format!("rancher/k3s:{version}");
            let agents = workers.to_string();
            shell.step(&format!("Create k3d cluster {name:?} (k3s {version}, {workers} agents)"));
            shell.created(format!("k3d cluster {name:?}"), format!("k3d cluster delete {}", quote(name)));
            // Traefik would take ports 80/443 that Kubeflow's istio gateway wants; kfctl keeps the
            // user's default kubeconfig untouched and writes its own below.
            shell
                .run(&ToolCommand::new(
                    "k3d",
                    [
                        "cluster",
                        "create",
                        name,
                        "--image",
                        &image,
                        "--agents",
                        &agents,
                        "--k3s-arg",
                        "--disable=traefik@server:0",
                        "--kubeconfig-update-default=false",
                        "--wait",
                    ],
                ))
                .await?;
            shell.step("Write the cluster's kubeconfig");
            shell.run(&ToolCommand::new("k3d", ["kubeconfig", "write", name, "--output", &kubeconfig_text])).await?;
            private(shell, kubeconfig)?;
        }
        PlatformKind::Minikube => {
            require(shell, "minikube", spec.kind, Some(support))?;
            check_host(shell, support)?;
            make_parent(shell, kubeconfig)?;
            let (cpus, memory) = minikube_size(spec.node_size.as_deref());
            shell.step(&format!(
                "Start minikube profile {name:?} (Kubernetes {version}, {cpus} CPUs, {memory} memory)"
            ));
            shell.created(format!("minikube profile {name:?}"), format!("minikube delete --profile {}", quote(name)));
            // KUBECONFIG points minikube at kfctl's own file, so the user's kubeconfig is untouched.
            shell
                .run(
                    &ToolCommand::new(
                        "minikube",
                        [
                            "start",
                            "--profile",
                            name,
                            "--kubernetes-version",
                            version,
                            "--cpus",
                            &cpus,
                            "--memory",
                            &memory,
                            "--disk-size",
                            "50g",
                        ],
                    )
                    .env("KUBECONFIG", kubeconfig_text.clone()),
                )
                .await?;
            shell.step("Point the kubeconfig at the cluster");
            shell
                .run(
                    &ToolCommand::new("minikube", ["update-context", "--profile", name])
                        .env("KUBECONFIG", kubeconfig_text.clone()),
                )
                .await?;
            private(shell, kubeconfig)?;
        }
        PlatformKind::Microk8s => {
            require(shell, "microk8s", spec.kind, Some(support))?;
            make_parent(shell, kubeconfig)?;
            shell.step(&format!(
                "Use the host's MicroK8s (install a supported one with `sudo snap install microk8s --classic --channel={}`)",
                support.microk8s_channel
            ));
            shell.run(&ToolCommand::new("microk8s", ["status", "--wait-ready", "--timeout", "300"])).await?;
            shell.step("Enable DNS and the hostpath storage Kubeflow's volumes need");
            shell.created(
                "MicroK8s addons dns and storage",
                "microk8s disable storage dns".to_owned(),
            );
            shell.run(&ToolCommand::new("microk8s", ["enable", "dns", "storage"])).await?;
            shell.step("Fetch the cluster's kubeconfig");
            shell.run(&ToolCommand::new("microk8s", ["config"]).stdout_to(kubeconfig)).await?;
        }
        other => unreachable!("{other} is not a local platform"),
    }
    Ok(())
}

/// Delete the local cluster `spec` names (`kfctl delete --platform`).
pub async fn delete(shell: &mut Shell<'_>, spec: &PlatformSpec) -> Result<(), PlatformError> {
    let name = spec.cluster_name.as_deref().unwrap_or("kubeflow");
    match spec.kind {
        PlatformKind::Kind => {
            require(shell, "kind", spec.kind, None)?;
            shell.step(&format!("Delete kind cluster {name:?}"));
            shell.run(&ToolCommand::new("kind", ["delete", "cluster", "--name", name])).await?;
        }
        PlatformKind::K3d => {
            require(shell, "k3d", spec.kind, None)?;
            shell.step(&format!("Delete k3d cluster {name:?}"));
            shell.run(&ToolCommand::new("k3d", ["cluster", "delete", name])).await?;
        }
        PlatformKind::Minikube => {
            require(shell, "minikube", spec.kind, None)?;
            shell.step(&format!("Delete minikube profile {name:?}"));
            shell.run(&ToolCommand::new("minikube", ["delete", "--profile", name])).await?;
        }
        PlatformKind::Microk8s => {
            // MicroK8s is the host's own installation, not a cluster kfctl created: turn off only
            // the addons kfctl enabled and leave the snap (remove it with `sudo snap remove microk8s`).
            require(shell, "microk8s", spec.kind, None)?;
            shell.step("Disable the MicroK8s addons kfctl enabled (the snap itself stays)");
            shell.run(&ToolCommand::new("microk8s", ["disable", "storage", "dns"])).await?;
        }
        other => unreachable!("{other} is not a local platform"),
    }
    Ok(())
}

/// The tools write the kubeconfig themselves, into a directory that must exist.
fn make_parent(shell: &mut Shell<'_>, path: &Path) -> Result<(), PlatformError> {
    match path.parent() {
        Some(parent) => shell.make_dir(parent),
        None => Ok(()),
    }
}

/// kind's cluster config: one control plane and `workers` workers on the release's node image.
pub fn kind_config(name: &str, image: &str, workers: u32) -> String {
    let mut text = format!(
        "# kind cluster for Kubeflow, written by kfctl. kfctl runs:\n\
         #   kind create cluster --config platform/kind-config.yaml\n\
         kind: Cluster\n\
         apiVersion: kind.x-k8s.io/v1alpha4\n\
         name: {name}\n\
         nodes:\n\
         - role: control-plane\n  image: {image}\n"
    );
    for _ in 0..workers {
        text.push_str(&format!("- role: worker\n  image: {image}\n"));
    }
    text
}

/// minikube `--cpus` and `--memory` from node size "CPUS,MEMORY".
fn minikube_size(size: Option<&str>) -> (String, String) {
    let (cpus, memory) = size.unwrap_or("6,16g").split_once(',').unwrap_or(("6", "16g"));
    (cpus.trim().to_owned(), memory.trim().to_owned())
}

/// Kubeconfigs hold credentials: readable by the owner only.
fn private(shell: &mut Shell<'_>, path: &Path) -> Result<(), PlatformError> {
    if shell.is_dry_run() {
        shell.script_only(&format!("chmod 600 {}", quote(&path.to_string_lossy())));
        return Ok(());
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|source| PlatformError::Io { path: path.to_path_buf(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_config_lists_a_control_plane_and_the_workers_on_one_image() {
        let text = kind_config("kf", "kindest/node:v1.21.14", 2);
        assert!(text.contains("name: kf\n"));
        assert_eq!(text.matches("image: kindest/node:v1.21.14").count(), 3);
        assert_eq!(text.matches("- role: worker").count(), 2);
    }

    #[test]
    fn minikube_size_splits_cpus_and_memory() {
        assert_eq!(minikube_size(Some("4, 12g")), ("4".into(), "12g".into()));
        assert_eq!(minikube_size(None), ("6".into(), "16g".into()));
    }
}
