//! The clouds: write Terraform, init, plan, ask, apply, then fetch credentials with the cloud's
//! own CLI into kfctl's kubeconfig. Teardown is `terraform destroy` on the same directory.

use std::path::Path;

use super::shell::{Shell, ToolCommand, quote};
use super::terraform::{self, PLAN_FILE, TERRAFORM_DIR};
use super::{PlatformError, PlatformKind, PlatformSpec, ProvisionOptions};

const TERRAFORM_INSTALL: &str =
    "install Terraform 1.3 or newer: https://developer.hashicorp.com/terraform/install";

/// The cloud's CLI and how to install it.
fn cloud_cli(kind: PlatformKind) -> (&'static str, &'static str) {
    match kind {
        PlatformKind::Gke => ("gcloud", "install the Google Cloud CLI: https://cloud.google.com/sdk/docs/install, then `gcloud auth login` and `gcloud auth application-default login`"),
        PlatformKind::Eks => ("aws", "install the AWS CLI v2: https://docs.aws.amazon.com/cli/latest/userguide/getting-started-install.html, then `aws configure`"),
        PlatformKind::Aks => ("az", "install the Azure CLI: https://learn.microsoft.com/cli/azure/install-azure-cli, then `az login`"),
        other => unreachable!("{other} is not a cloud"),
    }
}

fn require(shell: &mut Shell<'_>, program: &str, install: &str) -> Result<(), PlatformError> {
    if shell.has_tool(program, install) {
        Ok(())
    } else {
        Err(PlatformError::ToolMissing { tool: program.to_owned(), install: install.to_owned() })
    }
}

/// `terraform -chdir=DIR ARGS...`.
fn terraform(dir: &Path, args: &[&str]) -> ToolCommand {
    let mut all = vec![format!("-chdir={}", dir.display())];
    all.extend(args.iter().map(|a| (*a).to_owned()));
    ToolCommand::new("terraform", all)
}

/// Create the cloud cluster of a resolved `spec` and write its kubeconfig to `kubeconfig`.
pub async fn create(
    shell: &mut Shell<'_>,
    dir: &Path,
    spec: &PlatformSpec,
    opts: &ProvisionOptions,
    kubeconfig: &Path,
) -> Result<(), PlatformError> {
    let (cli, cli_install) = cloud_cli(spec.kind);
    require(shell, "terraform", TERRAFORM_INSTALL)?;
    require(shell, cli, cli_install)?;

    let tf_dir = dir.join(TERRAFORM_DIR);
    shell.step(&format!("Write the Terraform for {} into {}", spec.kind, tf_dir.display()));
    let app_name = dir.file_name().map_or("kubeflow".into(), |n| n.to_string_lossy().into_owned());
    for file in terraform::generate(&app_name, spec) {
        shell.write_file(&tf_dir.join(file.name), &file.contents)?;
    }

    shell.step("Download the providers and plan");
    shell.run(&terraform(&tf_dir, &["init", "-input=false", "-no-color"]).show_stdout()).await?;
    let plan_out = format!("-out={PLAN_FILE}");
    shell.run(&terraform(&tf_dir, &["plan", "-input=false", "-no-color", &plan_out]).show_stdout()).await?;

    if !shell.confirm(&format!("Apply this plan and create the {} cluster?", spec.kind), opts.assume_yes)? {
        return Err(PlatformError::Declined);
    }
    shell.step("Create the cloud resources");
    shell.created(
        format!("{} resources managed by Terraform in {}", spec.kind, tf_dir.display()),
        format!("terraform -chdir={} destroy", quote(&tf_dir.to_string_lossy())),
    );
    shell.run(&terraform(&tf_dir, &["apply", "-input=false", "-no-color", PLAN_FILE]).show_stdout()).await?;

    shell.step(&format!("Fetch credentials with {cli} into {}", kubeconfig.display()));
    if let Some(parent) = kubeconfig.parent() {
        shell.make_dir(parent)?;
    }
    shell.run(&credentials(spec, kubeconfig)).await?;
    Ok(())
}

/// The cloud CLI command that writes the cluster's credentials into `kubeconfig` (and only there).
pub fn credentials(spec: &PlatformSpec, kubeconfig: &Path) -> ToolCommand {
    let name = spec.cluster_name.as_deref().unwrap_or("kubeflow");
    let path = kubeconfig.to_string_lossy().into_owned();
    match spec.kind {
        PlatformKind::Gke => {
            let mut args = vec!["container", "clusters", "get-credentials", name];
            if let Some(zone) = spec.zone.as_deref() {
                args.extend(["--zone", zone]);
            }
            if let Some(project) = spec.project.as_deref() {
                args.extend(["--project", project]);
            }
            ToolCommand::new("gcloud", args).env("KUBECONFIG", path)
        }
        PlatformKind::Eks => {
            let mut args = vec!["eks", "update-kubeconfig", "--name", name, "--kubeconfig", &path];
            if let Some(region) = spec.region.as_deref() {
                args.extend(["--region", region]);
            }
            if let Some(profile) = spec.account.as_deref() {
                args.extend(["--profile", profile]);
            }
            ToolCommand::new("aws", args)
        }
        PlatformKind::Aks => {
            let group = spec.resource_group.as_deref().unwrap_or("kubeflow");
            let mut args = vec!["aks", "get-credentials", "--resource-group", group, "--name", name, "--file", &path];
            if let Some(subscription) = spec.account.as_deref() {
                args.extend(["--subscription", subscription]);
            }
            args.push("--overwrite-existing");
            ToolCommand::new("az", args)
        }
        other => unreachable!("{other} is not a cloud"),
    }
}

/// `terraform destroy` of the app's Terraform directory, after asking (unless `assume_yes`).
pub async fn destroy(shell: &mut Shell<'_>, dir: &Path, opts: &ProvisionOptions) -> Result<(), PlatformError> {
    require(shell, "terraform", TERRAFORM_INSTALL)?;
    let tf_dir = dir.join(TERRAFORM_DIR);
    if !shell.confirm(
        &format!("Destroy every cloud resource Terraform manages in {}?", tf_dir.display()),
        opts.assume_yes,
    )? {
        return Err(PlatformError::Declined);
    }
    shell.step("Destroy the cloud resources");
    shell
        .run(&terraform(&tf_dir, &["destroy", "-input=false", "-no-color", "-auto-approve"]).show_stdout())
        .await?;
    Ok(())
}
