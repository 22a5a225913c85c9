//! A Kubeflow-v1.4.1-shaped registry archive for tests that deploy through `kfctl init` or the
//! web app without the real release: every catalog path holds a small kustomization.

use std::path::{Path, PathBuf};

use kfctl::registry::catalog;

/// Writes a Kubeflow-v1.4.1-shaped registry archive whose objects live in namespace `ns`.
pub fn fixture_registry(dir: &Path, ns: &str) -> PathBuf {
    let release = catalog::release("v1.4.1").unwrap();
    let root = dir.join("src/manifests-1.4.1");
    let write = |rel: &str, text: String| {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    let kustomization = |resources: &[&str], extra: &str| {
        format!("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n{}{extra}", resources.iter().map(|r| format!("- {r}\n")).collect::<String>())
    };
    let deployment = |name: &str| {
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {{app: {name}}}\n  template:\n    metadata:\n      labels: {{app: {name}}}\n    spec:\n      containers:\n      - name: main\n        image: registry.invalid/kfctl-e2e/{name}:1\n"
        )
    };
    for component in &release.components {
        for path in &component.paths {
            let slug = path.replace(['/', '.'], "-");
            let configmap = format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {slug}\n  namespace: {ns}\ndata:\n  component: {}\n", component.name);
            match component.name.as_str() {
                "kubeflow-namespace" => {
                    write(&format!("{path}/namespaces.yaml"), format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: kubeflow\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n"));
                    write(&format!("{path}/kustomization.yaml"), kustomization(&["namespaces.yaml"], ""));
                }
                "dex" => {
                    write(
                        "common/dex/base/config-map.yaml",
                        format!(
                            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: dex\n  namespace: {ns}\ndata:\n  config.yaml: |\n    issuer: http://dex.auth.svc.cluster.local:5556/dex\n    staticPasswords:\n    - email: user@example.com\n      hash: $2y$12$4K/VkmDd1q1Orb3xAt82zu8gk7Ad6ReFR4LCP9UeYE90NLiN9Df72\n      username: user\n      userID: \"15841185641784\"\n"
                        ),
                    );
                    write("common/dex/base/kustomization.yaml", kustomization(&["config-map.yaml"], ""));
                    write(&format!("{path}/kustomization.yaml"), kustomization(&["../../base"], ""));
                }
                "user-namespace" => {
                    write(
                        &format!("{path}/kustomization.yaml"),
                        format!(
                            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: {ns}\nconfigMapGenerator:\n- name: default-install-config\n  literals:\n  - user=user@example.com\n  - profile-name=kubeflow-user-example-com\ngeneratorOptions:\n  disableNameSuffixHash: true\n"
                        ),
                    );
                }
                "istio" | "central-dashboard" | "notebooks" if path == &component.paths[0] => {
                    write(&format!("{path}/objects.yaml"), format!("{configmap}---\n{}", deployment(&format!("{}-e2e", component.name))));
                    write(&format!("{path}/kustomization.yaml"), kustomization(&["objects.yaml"], ""));
                }
                _ => {
                    write(&format!("{path}/objects.yaml"), configmap);
                    write(&format!("{path}/kustomization.yaml"), kustomization(&["objects.yaml"], ""));
                }
            }
        }
    }
    let archive = dir.join("fixture-registry.tar.gz");
    let file = std::fs::File::create(&archive).unwrap();
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(file, flate2::Compression::default()));
    tar.append_dir_all("manifests-1.4.1", &root).unwrap();
    tar.into_inner().unwrap().finish().unwrap();
    archive
}

