//! Two releases of a small fixture "Kubeflow" for upgrade tests: real release archives (tar.gz
//! with one top-level directory, verified by their tree digest) and catalogs that kfctl reads
//! from `$KFCTL_CATALOGS`, the directory a fork of Kubeflow uses for its own releases. Objects are
//! named after the test's namespace, so tests run in parallel.
//!
//! The old release has components web, auth-old, legacy and store (optional); the new one changes
//! web's selector (immutable), renames auth-old to auth and binds another role (an immutable
//! roleRef, replaced by a catalog migration), drops legacy, adds extra, and makes moving the
//! store's data the user's job (a blocking manual step). Web's CRD (gadgets) stores v1alpha1 in the
//! old release and no longer serves it in the new one (a stored-version migration).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

/// Both releases: their versions, archives (`old.tar.gz`, `new.tar.gz`) and catalogs.
pub struct FixtureReleases {
    pub work: tempfile::TempDir,
    pub old: String,
    pub new: String,
}

pub fn deployment(ns: &str, name: &str, selector: Value, image: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": ns},
        "spec": {"replicas": 1, "selector": {"matchLabels": selector},
            "template": {"metadata": {"labels": selector}, "spec": {"containers": [{"name": name, "image": image}]}}}})
}

pub fn config_map(ns: &str, name: &str, data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns}, "data": data})
}

pub fn cluster_role(name: &str, verbs: &[&str]) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": name},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": verbs}]})
}

pub fn binding(ns: &str, name: &str, role: &str) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": ns}]})
}

/// CRD `gadgets.<n>.kfctl.test` serving `versions` (name, storage), one schema for all.
pub fn gadget_crd(n: &str, versions: &[(&str, bool)]) -> Value {
    let versions: Vec<Value> = versions
        .iter()
        .map(|(name, storage)| json!({"name": name, "served": true, "storage": storage,
            "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}))
        .collect();
    json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": format!("gadgets.{n}.kfctl.test")},
        "spec": {"group": format!("{n}.kfctl.test"), "scope": "Namespaced",
            "names": {"kind": "Gadget", "plural": "gadgets", "singular": "gadget", "listKind": "GadgetList"}, "versions": versions}})
}

pub fn pvc(ns: &str, name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name, "namespace": ns},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
}

/// Write a component directory: one file per object and a kustomization listing them.
fn write_component(root: &Path, dir: &str, objects: &[(&str, Value)]) {
    let dir = root.join(dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut kustomization = String::from("resources:\n");
    for (file, object) in objects {
        std::fs::write(dir.join(file), serde_json::to_string_pretty(object).unwrap()).unwrap();
        kustomization.push_str(&format!("- {file}\n"));
    }
    std::fs::write(dir.join("kustomization.yaml"), kustomization).unwrap();
}

/// The release tree, packed as upstream packs releases: one top-level directory. Returns the
/// archive and the tree's content pin.
fn pack(work: &Path, version: &str, tree: &Path) -> (PathBuf, String) {
    let digest = kfctl::registry::digest::tree_digest(tree).unwrap().to_string();
    let archive = work.join(format!("fixture-{version}.tar.gz"));
    let status = Command::new("tar")
        .args(["czf"])
        .arg(&archive)
        .arg("-C")
        .arg(tree.parent().unwrap())
        .arg(tree.file_name().unwrap())
        .status()
        .unwrap();
    assert!(status.success(), "tar failed");
    (archive, digest)
}

fn catalog(version: &str, released: &str, archive: &Path, digest: &str, components: &str, upgrade: &str) -> String {
    let url = format!("file://{}", archive.display());
    format!(
        r#"version: "{version}"
released: "{released}"
archive: {{url: "{url}", digest: "{digest}"}}
kubernetes: {{min: "1.19", cloud: "1.20", minikube: v1.20.2, kind_image: "kindest/node:v1.20.2", kind_version: v0.11.1, k3s_image: "rancher/k3s:v1.20.2-k3s1", microk8s_channel: 1.20/stable, architecture: amd64}}
footprint: {{cpu: 1, memory_gib: 1, volumes_gib: 1}}
inotify: {{max_user_instances: 128, max_user_watches: 8192}}
components:
{components}
{upgrade}"#
    )
}


impl FixtureReleases {
    /// Both releases for namespace `n` (objects live there; cluster-scoped ones are named after it).
    pub fn build(n: &str) -> FixtureReleases {
        let n = n.to_string();
        let work = tempfile::tempdir().unwrap();
        // Versions unique to this test (catalog file names follow them).
        let old = format!("v0.1-{n}");
        let new = format!("v0.2-{n}");
        let catalogs = work.path().join("catalogs");
        std::fs::create_dir_all(&catalogs).unwrap();

        // The old release: web, auth-old (renamed auth later), legacy (removed later), store (optional).
        let tree = work.path().join("src-old").join(format!("fixture-{old}"));
        write_component(&tree, "web", &[
            ("deployment.yaml", deployment(&n, "web", json!({"app": "web"}), "example.invalid/web:1")),
            ("crd.yaml", gadget_crd(&n, &[("v1alpha1", true), ("v1", false)])),
        ]);
        write_component(&tree, "auth", &[
            ("config.yaml", config_map(&n, "auth-config", json!({"mode": "strict"}))),
            ("role.yaml", cluster_role(&format!("{n}-view"), &["get"])),
            ("binding.yaml", binding(&n, &format!("{n}-binding"), &format!("{n}-view"))),
        ]);
        write_component(&tree, "legacy", &[("config.yaml", config_map(&n, "legacy", json!({"old": "yes"})))]);
        write_component(&tree, "store", &[("pvc.yaml", pvc(&n, "store-data")), ("config.yaml", config_map(&n, "store-settings", json!({"backend": "disk"})))]);
        let (old_archive, old_digest) = pack(work.path(), &old, &tree);
        let components = r#"- {name: web, description: the web server, paths: [web], base: true}
- name: auth-old
  description: the old authentication
  paths: [auth]
  base: true
  parameters:
  - {name: mode, description: the mode, kind: dns_label, target: {field: {file: auth/config.yaml, pointer: /data/mode}}}
- {name: legacy, description: something the next release drops, paths: [legacy], base: true}
- {name: store, description: a store with data, paths: [store]}"#;
        std::fs::write(catalogs.join(format!("{old}.yaml")), catalog(&old, "2001-01", &work.path().join("old.tar.gz"), &old_digest, components, "")).unwrap();

        // The new release: web's selector changed (immutable), auth-old is auth and binds another
        // role (immutable roleRef: a catalog migration), legacy is gone, extra is new, moving the
        // store's data is the user's (a blocking manual step).
        let tree = work.path().join("src-new").join(format!("fixture-{new}"));
        write_component(&tree, "web", &[
            ("deployment.yaml", deployment(&n, "web", json!({"app": "web", "tier": "front"}), "example.invalid/web:2")),
            ("crd.yaml", gadget_crd(&n, &[("v1", true)])),
        ]);
        write_component(&tree, "auth", &[
            ("config.yaml", config_map(&n, "auth-config", json!({"mode": "strict", "version": "2"}))),
            ("role.yaml", cluster_role(&format!("{n}-edit"), &["get", "update"])),
            ("binding.yaml", binding(&n, &format!("{n}-binding"), &format!("{n}-edit"))),
        ]);
        write_component(&tree, "store", &[("pvc.yaml", pvc(&n, "store-data")), ("config.yaml", config_map(&n, "store-settings", json!({"backend": "object"})))]);
        write_component(&tree, "extra", &[("config.yaml", config_map(&n, "extra", json!({"new": "yes"})))]);
        let (new_archive, new_digest) = pack(work.path(), &new, &tree);
        let components = r#"- {name: web, description: the web server, paths: [web], base: true}
- name: auth
  description: the new authentication
  paths: [auth]
  base: true
  parameters:
  - {name: mode, description: the mode, kind: dns_label, target: {field: {file: auth/config.yaml, pointer: /data/mode}}}
- {name: store, description: a store with data, paths: [store]}
- {name: extra, description: new in this release, paths: [extra], base: true}"#;
        let upgrade = format!(
            r#"upgrade:
  renamed:
  - {{from: auth-old, to: auth, why: "auth-old is auth now"}}
  removed:
  - {{name: legacy, why: "nothing uses it any more"}}
  migrations:
  - id: auth-binding
    from: ["{old}"]
    why: "the binding grants the edit role now, and a roleRef is immutable"
    replace: {{kind: ClusterRoleBinding, name: "{n}-binding", fields: [roleRef]}}
  - id: move-store-data
    when_component: store
    why: "the store keeps its data in object storage now"
    manual:
      blocking: true
      instructions: "copy the files of PVC store-data into the bucket"
      rollback: "copy the bucket back into PVC store-data"
"#
        );
        std::fs::write(catalogs.join(format!("{new}.yaml")), catalog(&new, "2001-02", &work.path().join("new.tar.gz"), &new_digest, components, &upgrade)).unwrap();
        std::fs::rename(&old_archive, work.path().join("old.tar.gz")).unwrap();
        std::fs::rename(&new_archive, work.path().join("new.tar.gz")).unwrap();

        FixtureReleases { work, old, new }
    }

    /// The directory to pass as `$KFCTL_CATALOGS`.
    pub fn catalogs(&self) -> PathBuf {
        self.work.path().join("catalogs")
    }

    /// `old` or `new`'s archive.
    pub fn archive(&self, which: &str) -> PathBuf {
        self.work.path().join(format!("{which}.tar.gz"))
    }
}
