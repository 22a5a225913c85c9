//! `kfctl diff` against the real API server of scripts/testenv: the real binary, a small app of
//! its own components, and after each diff a check that it wrote nothing.
//!
//! Run inside the testenv: `scripts/testenv exec -- cargo test -p kfctl --offline --test diff`.
//! Each test uses its own namespace, app name and CRD group, so tests run in parallel.

mod support;

use std::process::Output;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, PostParams};
use serde_json::{Value, json};

const IMAGE: &str = "registry.invalid/kfctl-diff";

/// One test's app: namespace `ns` (also the app's name, its Application's and inventory's
/// namespace), a second namespace `ns-extra` and a CRD group of its own; all deleted when dropped.
struct Fixture {
    ns: String,
    app: support::AppDir,
    client: kube::Client,
    env: support::TestEnv,
}

impl Fixture {
    async fn new(test: &str) -> Fixture {
        let env = support::env().await;
        let client = env.client().await.unwrap_or_else(|e| panic!("{e}"));
        let ns = format!("kd-{test}-{}", std::process::id());
        let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap();
        Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &namespace).await.expect("create test namespace");
        let app = support::AppDir::new(&ns);
        Fixture { ns, app, client, env }
    }

    fn group(&self) -> String {
        format!("{}.kfctl.test", self.ns)
    }

    fn extra_namespace(&self) -> String {
        format!("{}-extra", self.ns)
    }

    /// Component `web`: a Deployment, its Service, a ConfigMap and a Secret.
    fn web(&self, selector: &str, secret: &str) {
        let ns = &self.ns;
        self.app.component("web", &[
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": ns},
                "spec": {"replicas": 1, "selector": {"matchLabels": {"app": selector}},
                    "template": {"metadata": {"labels": {"app": selector}},
                        "spec": {"containers": [{"name": "main", "image": format!("{IMAGE}:1"), "ports": [{"containerPort": 8080}]}]}}}}),
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": ns},
                "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}}),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "web-config", "namespace": ns},
                "data": {"greeting": "hello"}}),
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "web-secret", "namespace": ns},
                "type": "Opaque", "stringData": {"password": secret}}),
        ]);
    }

    /// Component `extra`: a namespace of its own, a ConfigMap, a PVC and a CRD.
    fn extra(&self) {
        self.app.component("extra", &self.extra_objects());
    }

    fn extra_objects(&self) -> Vec<Value> {
        let ns = &self.ns;
        vec![
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": self.extra_namespace()}}),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "extra-1", "namespace": ns}, "data": {"k": "v"}}),
            json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "extra-data", "namespace": ns},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}),
            json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                "metadata": {"name": format!("gadgets.{}", self.group())},
                "spec": {"group": self.group(), "scope": "Namespaced",
                    "names": {"kind": "Gadget", "plural": "gadgets", "singular": "gadget", "listKind": "GadgetList"},
                    "versions": [{"name": "v1", "served": true, "storage": true,
                        "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}}),
        ]
    }

    /// Component `gadgets`: a CRD of this test's group and one custom resource of its kind.
    fn gadgets(&self) {
        let mut crd = self.extra_objects().pop().unwrap();
        crd["metadata"]["name"] = json!(format!("gadgets.{}", self.group()));
        self.app.component("gadgets", &[
            crd,
            json!({"apiVersion": format!("{}/v1", self.group()), "kind": "Gadget", "metadata": {"name": "g1", "namespace": self.ns},
                "spec": {"size": 3}}),
        ]);
    }

    /// kfctl.yaml with these components; `web` with an image tag override and, given a greeting,
    /// a patch of its ConfigMap.
    fn config(&self, components: &[&str], tag: &str, greeting: Option<&str>) {
        let mut text = format!(
            "apiVersion: kfctl.dev/v1alpha1\nkind: KfctlApp\nname: {}\nversion: v1.4.1\nregistry:\n  url: fixture\n  sha256: \"{}\"\n  path: registry/v1.4.1\ncomponents:\n",
            self.ns,
            "0".repeat(64)
        );
        for c in components {
            text.push_str(&format!("- name: {c}\n  path: {c}\n"));
            if *c == "web" {
                text.push_str(&format!("  images:\n  - name: {IMAGE}\n    newTag: \"{tag}\"\n"));
                if let Some(greeting) = greeting {
                    let patch = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "web-config", "namespace": self.ns},
                        "data": {"greeting": greeting}});
                    std::fs::write(self.app.path().join("greeting.yaml"), serde_json::to_string(&patch).unwrap()).unwrap();
                    text.push_str("  patches:\n  - path: greeting.yaml\n");
                }
            }
        }
        std::fs::write(self.app.path().join("kfctl.yaml"), text).unwrap();
    }

    fn kfctl(&self, args: &[&str]) -> Output {
        let mut cmd = support::kfctl_command(&self.env.kubeconfig);
        cmd.args(args).arg(self.app.path()).args(["--app-namespace", &self.ns]);
        cmd.output().expect("run kfctl")
    }

    fn kfctl_ok(&self, args: &[&str]) -> String {
        let out = self.kfctl(args);
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "kfctl {args:?} failed:\n{text}");
        text
    }

    /// Apply, then wait until the Deployment is ready (its controller stops writing its status).
    fn apply_and_settle(&self) {
        self.kfctl_ok(&["apply"]);
        self.kfctl_ok(&["wait", "--timeout", "120s"]);
    }

    /// `kfctl diff` in text, then as JSON: both with exit code `code`. Returns stdout of each.
    fn diff(&self, code: i32) -> (String, Value) {
        let out = self.kfctl(&["diff"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "kfctl diff exited {:?}:\n{text}{stderr}", out.status.code());
        let out = self.kfctl(&["diff", "--output", "json"]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(code), "kfctl diff --output json exited {:?}:\n{stdout}{}", out.status.code(), String::from_utf8_lossy(&out.stderr));
        let json: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("diff --output json is not one JSON object ({e}):\n{stdout}"));
        (text, json)
    }

    fn dynamic(&self, group: &str, version: &str, kind: &str, plural: &str, namespaced: bool) -> Api<DynamicObject> {
        let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
        if namespaced { Api::namespaced_with(self.client.clone(), &self.ns, &ar) } else { Api::all_with(self.client.clone(), &ar) }
    }

    /// resourceVersion of every object kfctl labelled for this app, and of the inventory.
    async fn resource_versions(&self) -> Vec<(String, String)> {
        let lp = ListParams::default().labels(&format!("kfctl.kubeflow.org/app={}", self.ns));
        let mut out = Vec::new();
        let kinds = [
            ("", "v1", "ConfigMap", "configmaps", true),
            ("", "v1", "Secret", "secrets", true),
            ("", "v1", "Service", "services", true),
            ("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", true),
            ("apps", "v1", "Deployment", "deployments", true),
            ("app.k8s.io", "v1beta1", "Application", "applications", true),
            ("", "v1", "Namespace", "namespaces", false),
            ("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions", false),
        ];
        for (g, v, k, p, namespaced) in kinds {
            for o in self.dynamic(g, v, k, p, namespaced).list(&lp).await.unwrap().items {
                out.push((format!("{k}/{}", o.metadata.name.unwrap()), o.metadata.resource_version.unwrap()));
            }
        }
        let inventory = self.dynamic("", "v1", "ConfigMap", "configmaps", true).get(&format!("kfctl-inventory-{}", self.ns)).await.unwrap();
        out.push(("inventory".into(), inventory.metadata.resource_version.unwrap()));
        out.sort();
        out
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let (ns, extra, group, env) = (self.ns.clone(), self.extra_namespace(), self.group(), self.env.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let Ok(client) = env.client().await else { return };
                let namespaces = Api::<Namespace>::all(client.clone());
                let _ = namespaces.delete(&ns, &DeleteParams::background()).await;
                let _ = namespaces.delete(&extra, &DeleteParams::background()).await;
                let crds = ApiResource::from_gvk_with_plural(
                    &GroupVersionKind::gvk("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
                    "customresourcedefinitions",
                );
                let _ = Api::<DynamicObject>::all_with(client, &crds).delete(&format!("gadgets.{group}"), &DeleteParams::background()).await;
            });
        })
        .join()
        .unwrap();
    }
}

/// The entry for `object` in list `list` of a JSON diff.
fn entry<'a>(json: &'a Value, list: &str, object: &str) -> &'a Value {
    json[list]
        .as_array()
        .unwrap_or_else(|| panic!("no list {list} in {json:#}"))
        .iter()
        .find(|o| o["object"] == object)
        .unwrap_or_else(|| panic!("{object} is not under {list}:\n{json:#}"))
}

fn field<'a>(object: &'a Value, path: &str) -> &'a Value {
    object["fields"].as_array().into_iter().flatten().find(|f| f["path"] == path).unwrap_or_else(|| panic!("no field {path} in {object:#}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn diff_shows_nothing_after_apply_then_the_changes_of_an_edited_config_and_writes_nothing() {
    let fx = Fixture::new("changes").await;
    fx.web("web", "s3cret-value-1");
    fx.config(&["web"], "1", None);
    fx.apply_and_settle();

    let before = fx.resource_versions().await;
    let (text, json) = fx.diff(0);
    assert!(text.contains("no changes"), "{text}");
    assert_eq!(json["changes"], false, "{json:#}");
    assert!(json["unchanged"].as_u64().unwrap() >= 5, "{json:#}");

    // Change the image override and the ConfigMap (a patch), add an object: all through the
    // app directory, as a user would.
    fx.config(&["web"], "2", Some("bonjour"));
    let objects = fx.app.path().join("web/objects.yaml");
    let new = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "web-new", "namespace": fx.ns}, "data": {"a": "b"}});
    let yaml = std::fs::read_to_string(&objects).unwrap();
    std::fs::write(&objects, format!("{yaml}\n---\n{new}")).unwrap();

    let (text, json) = fx.diff(1);
    let deployment = format!("Deployment.apps {}/web", fx.ns);
    let config_map = format!("ConfigMap {}/web-config", fx.ns);
    let image_path = "spec.template.spec.containers[name=main].image";
    assert!(text.contains("component web:"), "{text}");
    assert!(text.contains(&format!("~ change {deployment}")), "{text}");
    assert!(text.contains(image_path), "{text}");
    assert!(text.contains(&format!("- \"{IMAGE}:1\"")) && text.contains(&format!("+ \"{IMAGE}:2\"")), "{text}");
    assert!(text.contains(&format!("~ change {config_map}")) && text.contains("data.greeting"), "{text}");
    assert!(text.contains("- \"hello\"") && text.contains("+ \"bonjour\""), "{text}");
    assert!(text.contains(&format!("+ create ConfigMap {}/web-new", fx.ns)), "{text}");
    assert!(text.trim_end().ends_with("unchanged"), "no summary line at the end:\n{text}");
    // The JSON says the same.
    assert_eq!(json["changes"], true);
    let d = entry(&json, "change", &deployment);
    assert_eq!(d["component"], "web");
    assert_eq!(field(d, image_path)["before"], format!("{IMAGE}:1"));
    assert_eq!(field(d, image_path)["after"], format!("{IMAGE}:2"));
    let c = entry(&json, "change", &config_map);
    assert_eq!((&field(c, "data.greeting")["before"], &field(c, "data.greeting")["after"]), (&json!("hello"), &json!("bonjour")));
    assert_eq!(entry(&json, "create", &format!("ConfigMap {}/web-new", fx.ns))["component"], "web");
    // Only what changed: the Service and the Secret are not listed, nor is anything pruned.
    assert_eq!(json["change"].as_array().unwrap().len(), 2, "{json:#}");
    assert!(json["prune"].as_array().unwrap().is_empty() && json["replace"].as_array().unwrap().is_empty(), "{json:#}");

    // Two diffs (four runs) wrote nothing: same resourceVersions, inventory included.
    assert_eq!(fx.resource_versions().await, before, "kfctl diff wrote to the cluster");

    // What the diff showed is what apply does; afterwards there is nothing left to show.
    let out = fx.kfctl_ok(&["apply"]);
    assert!(out.contains("1 created, 2 configured"), "{out}");
    let (text, _) = fx.diff(0);
    assert!(text.contains("no changes"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn diff_of_a_changed_secret_never_prints_its_values() {
    use base64::Engine as _;
    let (old, new) = ("old-Pa55word-4711", "new-Pa55word-0815-longer");
    let fx = Fixture::new("secret").await;
    fx.web("web", old);
    fx.config(&["web"], "1", None);
    fx.kfctl_ok(&["apply"]);
    let secrets: Api<Secret> = Api::namespaced(fx.client.clone(), &fx.ns);
    assert!(secrets.get("web-secret").await.unwrap().data.unwrap().contains_key("password"));

    fx.web("web", new);
    let mut outputs = Vec::new();
    for args in [&["diff"][..], &["diff", "--output", "json"][..]] {
        let out = fx.kfctl(args);
        let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.status.code(), Some(1), "kfctl {args:?}:\n{all}");
        for value in [old, new] {
            let encoded = base64::engine::general_purpose::STANDARD.encode(value);
            assert!(!all.contains(value) && !all.contains(&encoded), "kfctl {args:?} printed a Secret value:\n{all}");
        }
        outputs.push((String::from_utf8_lossy(&out.stdout).into_owned(), all));
    }
    let (text, _) = &outputs[0];
    assert!(text.contains(&format!("~ change Secret {}/web-secret", fx.ns)) && text.contains("data.password"), "{text}");
    assert!(text.contains("(redacted: 17 bytes)") && text.contains("(redacted: 24 bytes, changed)"), "{text}");
    let json: Value = serde_json::from_str(&outputs[1].0).unwrap();
    let secret = entry(&json, "change", &format!("Secret {}/web-secret", fx.ns));
    assert_eq!(field(secret, "data.password")["before"], "(redacted: 17 bytes)");
    assert_eq!(field(secret, "data.password")["after"], "(redacted: 24 bytes, changed)");
}

#[tokio::test(flavor = "multi_thread")]
async fn diff_lists_a_removed_components_objects_as_pruned_or_kept() {
    let fx = Fixture::new("prune").await;
    fx.web("web", "s3cret");
    fx.extra();
    fx.config(&["web", "extra"], "1", None);
    fx.apply_and_settle();
    let before = fx.resource_versions().await;

    fx.config(&["web"], "1", None);
    let (text, json) = fx.diff(1);
    let ns = &fx.ns;
    for object in [format!("ConfigMap {ns}/extra-1"), format!("Namespace {}", fx.extra_namespace())] {
        assert!(text.contains(&format!("- prune {object}")), "{text}");
        assert_eq!(entry(&json, "prune", &object)["component"], "extra");
    }
    for object in [format!("PersistentVolumeClaim {ns}/extra-data"), format!("CustomResourceDefinition.apiextensions.k8s.io gadgets.{}", fx.group())] {
        assert!(text.contains(&format!("= keep {object}: kept: CRDs and PVCs are removed only with --purge")), "{text}");
        let kept = entry(&json, "keep", &object);
        assert_eq!(kept["component"], "extra");
        assert!(kept["reason"].as_str().unwrap().contains("--purge"), "{kept:#}");
    }
    assert!(text.contains("component extra:"), "{text}");
    // The Application changes too (its component list); web's objects do not.
    assert!(json["change"].as_array().unwrap().iter().all(|o| o["object"].as_str().unwrap().starts_with("Application.app.k8s.io")), "{json:#}");
    assert_eq!(fx.resource_versions().await, before, "kfctl diff wrote to the cluster");

    // A namespace holding an object kfctl does not own is kept, and says which.
    let foreign: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "users-own"}, "data": {"x": "y"}})).unwrap();
    Api::<ConfigMap>::namespaced(fx.client.clone(), &fx.extra_namespace()).create(&PostParams::default(), &foreign).await.unwrap();
    let (_, json) = fx.diff(1);
    let kept = entry(&json, "keep", &format!("Namespace {}", fx.extra_namespace()));
    assert!(kept["reason"].as_str().unwrap().contains("users-own"), "{kept:#}");
}

/// What an upgrade meets: a component new to the app brings a CRD and objects of its kind, which
/// the server does not serve yet. They are creates, not errors.
#[tokio::test(flavor = "multi_thread")]
async fn diff_lists_a_new_crd_and_its_custom_resources_as_creates() {
    let fx = Fixture::new("newcrd").await;
    fx.web("web", "s3cret");
    fx.config(&["web"], "1", None);
    fx.kfctl_ok(&["apply"]);
    let before = fx.resource_versions().await;

    fx.gadgets();
    fx.config(&["web", "gadgets"], "1", None);
    let (text, json) = fx.diff(1);
    let crd = format!("CustomResourceDefinition.apiextensions.k8s.io gadgets.{}", fx.group());
    let gadget = format!("Gadget.{} {}/g1", fx.group(), fx.ns);
    for object in [&crd, &gadget] {
        assert!(text.contains(&format!("+ create {object}")), "{text}");
        assert_eq!(entry(&json, "create", object)["component"], "gadgets");
    }
    assert_eq!(fx.resource_versions().await, before, "kfctl diff wrote to the cluster");
}

#[tokio::test(flavor = "multi_thread")]
async fn diff_reports_a_changed_deployment_selector_as_a_replacement() {
    let fx = Fixture::new("replace").await;
    fx.web("web", "s3cret");
    fx.config(&["web"], "1", None);
    fx.apply_and_settle();
    let before = fx.resource_versions().await;

    fx.web("web-v2", "s3cret");
    let (text, json) = fx.diff(1);
    let deployment = format!("Deployment.apps {}/web", fx.ns);
    assert!(text.contains(&format!("! replace {deployment}: apply must delete and recreate it")), "{text}");
    let replaced = entry(&json, "replace", &deployment);
    assert_eq!(replaced["component"], "web");
    let reason = replaced["reason"].as_str().unwrap();
    assert!(reason.contains("spec.selector") && reason.contains("field is immutable"), "{reason}");
    assert!(json["change"].as_array().unwrap().iter().all(|o| o["object"] != deployment.as_str()), "{json:#}");
    assert_eq!(fx.resource_versions().await, before, "kfctl diff wrote to the cluster");
}

#[tokio::test(flavor = "multi_thread")]
async fn diff_of_an_unreachable_cluster_exits_2_with_the_error() {
    let fx = Fixture::new("unreachable").await;
    fx.web("web", "s3cret");
    fx.config(&["web"], "1", None);
    // A kubeconfig whose server answers nothing (nothing listens on port 1 in the testenv).
    let kubeconfig = fx.app.path().join("unreachable.kubeconfig");
    std::fs::write(&kubeconfig, "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:1\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\nusers:\n- name: u\n  user:\n    token: t\n").unwrap();
    for output in ["text", "json"] {
        let out = support::kfctl_command(&kubeconfig)
            .args(["diff", fx.app.path().to_str().unwrap(), "--output", output])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "stdout: {}\nstderr: {stderr}", String::from_utf8_lossy(&out.stdout));
        assert!(stderr.starts_with("error: "), "{stderr}");
        assert!(stderr.contains("127.0.0.1:1") || stderr.contains("reachable"), "the error does not say what failed: {stderr}");
        assert!(out.stdout.is_empty(), "{}", String::from_utf8_lossy(&out.stdout));
    }
}
