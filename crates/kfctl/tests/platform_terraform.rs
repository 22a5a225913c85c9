//! The Terraform kfctl writes for GKE, EKS and AKS: byte-for-byte against golden files, formatted
//! as `terraform fmt` wants, and every tfvars key declared in variables.tf.
//!
//! `KFCTL_UPDATE_GOLDEN=1 cargo test -p kfctl --test platform_terraform` rewrites the golden files;
//! review the diff before committing it.

use std::path::{Path, PathBuf};
use std::process::Command;

use kfctl::platform::terraform;
use kfctl::platform::{GpuPool, PlatformKind, PlatformSpec, releases};

fn golden_dir(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/terraform").join(case)
}

/// The three cases: GKE with a GPU pool, EKS with defaults and an AWS profile, AKS with a GPU pool.
fn cases() -> Vec<(&'static str, PlatformSpec)> {
    // The newest release: the Terraform shows the Kubernetes version kfctl creates today.
    let support = releases::support("26.03").expect("26.03 is known");
    let mut gke = PlatformSpec::new(PlatformKind::Gke);
    gke.project = Some("my-project".into());
    gke.region = Some("europe-west4".into());
    gke.gpu = Some(GpuPool { node_count: 1, node_size: None, accelerator: None, gpus_per_node: 1 });
    let mut eks = PlatformSpec::new(PlatformKind::Eks);
    eks.account = Some("ml-team".into());
    let mut aks = PlatformSpec::new(PlatformKind::Aks);
    aks.cluster_name = Some("kf-prod".into());
    aks.node_count = Some(3);
    aks.gpu = Some(GpuPool { node_count: 2, node_size: Some("Standard_NC4as_T4_v3".into()), accelerator: None, gpus_per_node: 1 });
    [("gke", gke), ("eks", eks), ("aks", aks)]
        .into_iter()
        .map(|(name, spec)| (name, spec.resolved(support).expect("the spec resolves")))
        .collect()
}

/// terraform with an empty CLI config, so a missing ~/.terraformrc does not print warnings.
fn terraform() -> Command {
    let config = std::env::temp_dir().join("kfctl-test-empty.tfrc");
    std::fs::write(&config, "").expect("write an empty terraform CLI config");
    let mut command = Command::new("terraform");
    command.env("TF_CLI_CONFIG_FILE", config);
    command
}

#[test]
fn generated_terraform_matches_the_golden_files() {
    let update = std::env::var_os("KFCTL_UPDATE_GOLDEN").is_some();
    for (case, spec) in cases() {
        let dir = golden_dir(case);
        let files = terraform::generate("kubeflow", &spec);
        if update {
            std::fs::create_dir_all(&dir).unwrap();
            for file in &files {
                std::fs::write(dir.join(file.name), &file.contents).unwrap();
            }
        }
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e} (KFCTL_UPDATE_GOLDEN=1 creates it)", dir.display()))
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        on_disk.sort();
        let mut generated: Vec<String> = files.iter().map(|f| f.name.to_owned()).collect();
        generated.sort();
        assert_eq!(on_disk, generated, "{case}: the golden directory holds other files");
        for file in &files {
            let golden = std::fs::read_to_string(dir.join(file.name)).unwrap();
            assert_eq!(file.contents, golden, "{case}/{} differs from the golden file", file.name);
        }
    }
}

#[test]
fn generated_terraform_is_formatted() {
    for (case, spec) in cases() {
        let dir = tempfile::tempdir().unwrap();
        for file in terraform::generate("kubeflow", &spec) {
            std::fs::write(dir.path().join(file.name), &file.contents).unwrap();
        }
        let output = terraform()
            .args(["fmt", "-check", "-diff", "-recursive"])
            .current_dir(dir.path())
            .output()
            .expect("terraform is installed");
        assert!(
            output.status.success(),
            "{case}: terraform fmt -check failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn every_tfvars_key_is_a_declared_variable_and_gpu_pools_follow_the_spec() {
    for (case, spec) in cases() {
        let files = terraform::generate("kubeflow", &spec);
        let text = |name: &str| files.iter().find(|f| f.name == name).map(|f| f.contents.clone()).unwrap();
        let variables = text("variables.tf");
        for line in text("terraform.tfvars").lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
            let key = line.split('=').next().unwrap().trim();
            assert!(variables.contains(&format!("variable \"{key}\" {{")), "{case}: {key} is not declared");
        }
        let gpu_line = text("terraform.tfvars").lines().find(|l| l.starts_with("gpu_node_count")).map(str::to_owned);
        let wanted = spec.gpu.as_ref().map_or(0, |g| g.node_count);
        assert_eq!(gpu_line.unwrap().split('=').nth(1).unwrap().trim(), wanted.to_string(), "{case}");
        // What Kubeflow needs from the cloud besides the cluster: a place for pipeline artifacts.
        let main = text("main.tf");
        assert!(
            main.contains("google_storage_bucket") || main.contains("aws_s3_bucket") || main.contains("azurerm_storage_container"),
            "{case}: no storage for pipelines"
        );
    }
}
