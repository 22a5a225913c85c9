//! The Terraform kfctl writes for the clouds, into `APPDIR/platform/terraform/`.
//!
//! main.tf, variables.tf, outputs.tf and versions.tf are fixed, readable files kept next to this
//! module (one directory per cloud, each passes `terraform fmt -check`); what differs between apps
//! is only terraform.tfvars, generated here from the [`PlatformSpec`]. A person can read the whole
//! configuration in the app directory, change a value in terraform.tfvars, and plan again.

use super::{PlatformKind, PlatformSpec};

/// Where the Terraform lives, relative to the app directory.
pub const TERRAFORM_DIR: &str = "platform/terraform";

/// The plan file `terraform plan -out` writes and `terraform apply` reads.
pub const PLAN_FILE: &str = "kfctl.tfplan";

/// One file of the generated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TerraformFile {
    pub name: &'static str,
    pub contents: String,
}

fn fixed(kind: PlatformKind) -> [(&'static str, &'static str); 4] {
    match kind {
        PlatformKind::Gke => [
            ("versions.tf", include_str!("gke/versions.tf")),
            ("variables.tf", include_str!("gke/variables.tf")),
            ("main.tf", include_str!("gke/main.tf")),
            ("outputs.tf", include_str!("gke/outputs.tf")),
        ],
        PlatformKind::Eks => [
            ("versions.tf", include_str!("eks/versions.tf")),
            ("variables.tf", include_str!("eks/variables.tf")),
            ("main.tf", include_str!("eks/main.tf")),
            ("outputs.tf", include_str!("eks/outputs.tf")),
        ],
        PlatformKind::Aks => [
            ("versions.tf", include_str!("aks/versions.tf")),
            ("variables.tf", include_str!("aks/variables.tf")),
            ("main.tf", include_str!("aks/main.tf")),
            ("outputs.tf", include_str!("aks/outputs.tf")),
        ],
        other => unreachable!("{other} has no Terraform"),
    }
}

/// The Terraform configuration for a resolved cloud `spec` of app `app_name`, in the order kfctl
/// writes it. Panics if `spec` is not a cloud platform (callers match on the kind first).
pub fn generate(app_name: &str, spec: &PlatformSpec) -> Vec<TerraformFile> {
    let mut files: Vec<TerraformFile> = fixed(spec.kind)
        .into_iter()
        .map(|(name, contents)| TerraformFile { name, contents: contents.to_owned() })
        .collect();
    files.push(TerraformFile { name: "terraform.tfvars", contents: tfvars(app_name, spec) });
    files
}

/// A Terraform value: a quoted string, a number, or null.
enum Value {
    Str(String),
    Num(u32),
}

/// terraform.tfvars: the values kfctl chose, aligned like `terraform fmt` aligns them.
pub fn tfvars(app_name: &str, spec: &PlatformSpec) -> String {
    let text = |v: &Option<String>| v.clone().map(Value::Str);
    let num = |v: Option<u32>| v.map(Value::Num);
    let gpu = spec.gpu.as_ref();
    let gpu_count = Some(Value::Num(gpu.map_or(0, |g| g.node_count)));
    let gpu_size = gpu.and_then(|g| g.node_size.clone()).map(Value::Str);
    let mut values: Vec<(&str, Option<Value>)> = match spec.kind {
        PlatformKind::Gke => vec![
            ("project", text(&spec.project)),
            ("region", text(&spec.region)),
            ("zone", text(&spec.zone)),
            ("cluster_name", text(&spec.cluster_name)),
            ("kubernetes_version", text(&spec.kubernetes_version)),
            ("node_count", num(spec.node_count)),
            ("machine_type", text(&spec.node_size)),
            ("gpu_node_count", gpu_count),
            ("gpu_machine_type", gpu_size),
            ("gpu_type", gpu.and_then(|g| g.accelerator.clone()).map(Value::Str)),
            ("gpus_per_node", gpu.map(|g| Value::Num(g.gpus_per_node))),
        ],
        PlatformKind::Eks => vec![
            ("aws_profile", text(&spec.account)),
            ("region", text(&spec.region)),
            ("cluster_name", text(&spec.cluster_name)),
            ("kubernetes_version", text(&spec.kubernetes_version)),
            ("node_count", num(spec.node_count)),
            ("instance_type", text(&spec.node_size)),
            ("gpu_node_count", gpu_count),
            ("gpu_instance_type", gpu_size),
        ],
        PlatformKind::Aks => vec![
            ("subscription_id", text(&spec.account)),
            ("resource_group", text(&spec.resource_group)),
            ("region", text(&spec.region)),
            ("cluster_name", text(&spec.cluster_name)),
            ("kubernetes_version", text(&spec.kubernetes_version)),
            ("node_count", num(spec.node_count)),
            ("vm_size", text(&spec.node_size)),
            ("gpu_node_count", gpu_count),
            ("gpu_vm_size", gpu_size),
        ],
        other => unreachable!("{other} has no Terraform"),
    };
    // Unset values keep the default in variables.tf; leaving them out keeps this file honest.
    values.retain(|(_, value)| value.is_some());
    let width = values.iter().map(|(key, _)| key.len()).max().unwrap_or(0);
    let mut out = format!(
        "# Values kfctl chose for app {app_name:?} on {} (from kfctl.yaml, platform:).\n\
         # Change them here or in kfctl.yaml; `kfctl deploy` plans again and shows the difference.\n\n",
        spec.kind
    );
    for (key, value) in values {
        let rendered = match value.expect("unset values were removed") {
            Value::Str(s) => serde_json::to_string(&s).expect("a string serializes"),
            Value::Num(n) => n.to_string(),
        };
        out.push_str(&format!("{key:width$} = {rendered}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::{GpuPool, PlatformKind, PlatformSpec, releases};

    fn spec(kind: PlatformKind) -> PlatformSpec {
        let mut spec = PlatformSpec::new(kind);
        spec.project = Some("my-project".into());
        spec.resolved(releases::support("v1.4.1").unwrap()).unwrap()
    }

    #[test]
    fn tfvars_are_aligned_and_carry_the_resolved_choices() {
        let mut gke = spec(PlatformKind::Gke);
        let text = tfvars("kf", &gke);
        assert!(text.contains("project            = \"my-project\"\n"), "{text}");
        assert!(text.contains("gpu_node_count     = 0\n"), "{text}");
        assert!(!text.contains("gpu_type"), "no GPU pool asked for: {text}");
        gke.gpu = Some(GpuPool { node_count: 1, node_size: None, accelerator: None, gpus_per_node: 2 });
        let gke = gke.resolved(releases::support("v1.4.1").unwrap()).unwrap();
        let text = tfvars("kf", &gke);
        assert!(text.contains("gpu_type           = \"nvidia-tesla-t4\"\n"), "{text}");
        assert!(text.contains("gpus_per_node      = 2\n"), "{text}");
    }

    #[test]
    fn every_cloud_gets_the_four_fixed_files_and_its_tfvars() {
        for kind in [PlatformKind::Gke, PlatformKind::Eks, PlatformKind::Aks] {
            let names: Vec<&str> = generate("kf", &spec(kind)).iter().map(|f| f.name).collect();
            assert_eq!(names, ["versions.tf", "variables.tf", "main.tf", "outputs.tf", "terraform.tfvars"]);
        }
    }
}
