//! The TEST-ONLY sim-cluster overlays (tests/fixtures/sim-cluster/<version>/, see its README):
//! added to an app as per-component patches in kfctl.yaml, the way a user customises a component.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use kfctl::config::{AppConfig, PatchConfig};

/// Where the overlay's files go inside the app directory.
pub const DIR: &str = "sim-cluster";

/// The TEST-ONLY overlay of `version` for the simulated cluster.
pub fn overlay(version: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sim-cluster").join(version)
}

/// Copies the overlay of `version` into the app (`sim-cluster/<version>/`) and lists each of its
/// patches under its component in kfctl.yaml (`patches.yaml` there says which, with kustomize
/// targets). Returns the components patched.
pub fn add(app: &Path, version: &str) -> Vec<String> {
    let overlay = overlay(version);
    let target = app.join(DIR).join(version);
    std::fs::create_dir_all(&target).unwrap();
    for file in std::fs::read_dir(&overlay).unwrap().map(|f| f.unwrap().path()) {
        if file.extension().is_some_and(|e| e == "yaml") {
            std::fs::copy(&file, target.join(file.file_name().unwrap())).unwrap();
        }
    }
    let index = std::fs::read_to_string(overlay.join("patches.yaml")).unwrap();
    let index: indexmap::IndexMap<String, Vec<PatchConfig>> = serde_saphyr::from_str(&index).expect("patches.yaml");
    let config_path = app.join("kfctl.yaml");
    let mut config = AppConfig::load(&config_path).expect("kfctl.yaml");
    let mut patched = Vec::new();
    for (component, patches) in index {
        let c = config.component_mut(&component).unwrap_or_else(|| panic!("the overlay patches {component}, which the release lacks"));
        if !c.enabled {
            continue; // an optional component this app does not enable
        }
        for mut patch in patches {
            assert!(overlay.join(&patch.path).is_file(), "{version}/patches.yaml names {}, which is not there", patch.path.display());
            patch.path = Path::new(DIR).join(version).join(&patch.path);
            c.patches.push(patch);
        }
        patched.push(component);
    }
    config.save(&config_path).expect("save kfctl.yaml");
    patched
}

/// Takes every overlay patch out of kfctl.yaml again (the files stay). Returns how many.
pub fn remove(app: &Path) -> usize {
    let config_path = app.join("kfctl.yaml");
    let mut config = AppConfig::load(&config_path).expect("kfctl.yaml");
    let mut removed = 0;
    for c in &mut config.components {
        let before = c.patches.len();
        c.patches.retain(|p| !p.path.starts_with(DIR));
        removed += before - c.patches.len();
    }
    config.save(&config_path).expect("save kfctl.yaml");
    removed
}
