//! kfctl apply / status / wait / delete against the real API server of scripts/testenv.
//!
//! Run inside the testenv: `scripts/testenv exec -- cargo test -p kfctl --test cluster_apply`
//! (`exec` sets KFCTL_TESTENV_KUBECONFIG). Each test uses its own namespace, app name and CRD
//! group, so tests run in parallel and clean up after themselves.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Event, Namespace};
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde_json::{Value, json};

const KUBECONFIG_ENV: &str = "KFCTL_TESTENV_KUBECONFIG";

fn kubeconfig() -> PathBuf {
    std::env::var_os(KUBECONFIG_ENV).map(PathBuf::from).unwrap_or_else(|| {
        panic!("{KUBECONFIG_ENV} is not set\n  hint: run inside the testenv: scripts/testenv exec -- cargo test -p kfctl --test cluster_apply")
    })
}

async fn client() -> Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let kc = Kubeconfig::read_from(kubeconfig()).expect("read testenv kubeconfig");
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await.expect("kubeconfig");
    Client::try_from(config).expect("client")
}

/// A namespace (and app name) of one test, deleted when dropped.
struct Fixture {
    ns: String,
    /// The app directory; the app is named after the namespace.
    app: support::AppDir,
    client: Client,
}

impl Fixture {
    async fn new(test: &str) -> Fixture {
        let client = client().await;
        let ns = format!("kc-{test}-{}", std::process::id());
        let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap();
        Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &namespace).await.expect("create test namespace");
        let app = support::AppDir::new(&ns);
        Fixture { ns, app, client }
    }

    /// CRD group unique to this test.
    fn group(&self) -> String {
        format!("{}.kfctl.test", self.ns)
    }

    /// Write component `name` (a kustomize directory with one file of `objects`).
    fn component(&self, name: &str, objects: &[Value]) {
        self.app.component(name, objects);
    }

    /// kfctl.yaml naming these components (user components, in this order).
    fn config(&self, components: &[&str]) {
        self.app.config(components);
    }

    fn kfctl(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kfctl"));
        cmd.env("KUBECONFIG", kubeconfig());
        cmd.args(args).arg(self.app.path()).args(["--app-namespace", &self.ns]);
        cmd.output().expect("run kfctl")
    }

    fn kfctl_ok(&self, args: &[&str]) -> String {
        let out = self.kfctl(args);
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "kfctl {args:?} failed:\n{text}");
        text
    }

    fn widget_crd(&self) -> Value {
        json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": format!("widgets.{}", self.group())},
            "spec": {"group": self.group(), "scope": "Namespaced",
                "names": {"kind": "Widget", "plural": "widgets", "singular": "widget", "listKind": "WidgetList"},
                "versions": [{"name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}})
    }

    fn widget(&self, name: &str) -> Value {
        json!({"apiVersion": format!("{}/v1", self.group()), "kind": "Widget", "metadata": {"name": name, "namespace": self.ns},
               "spec": {"size": 3}})
    }

    fn deployment(&self, name: &str, pod_annotations: Value) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": self.ns},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                "template": {"metadata": {"labels": {"app": name}, "annotations": pod_annotations},
                    "spec": {"containers": [{"name": "main", "image": "registry.invalid/kfctl-test:1", "ports": [{"containerPort": 8080}]}]}}}})
    }

    fn service(&self, name: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": self.ns},
               "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": 8080}]}})
    }

    fn config_map(&self, name: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": self.ns}, "data": {"k": "v"}})
    }

    fn dynamic(&self, group: &str, version: &str, kind: &str, plural: &str) -> Api<DynamicObject> {
        let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
        Api::namespaced_with(self.client.clone(), &self.ns, &ar)
    }

    /// resourceVersion of every object kfctl labelled for this app, by kind/name.
    async fn resource_versions(&self) -> Vec<(String, String)> {
        let selector = format!("kfctl.kubeflow.org/app={}", self.ns);
        let lp = ListParams::default().labels(&selector);
        let mut out = Vec::new();
        for (g, v, k, p) in [("", "v1", "ConfigMap", "configmaps"), ("", "v1", "Service", "services"),
                             ("apps", "v1", "Deployment", "deployments"), ("app.k8s.io", "v1beta1", "Application", "applications")] {
            for o in self.dynamic(g, v, k, p).list(&lp).await.unwrap().items {
                out.push((format!("{k}/{}", o.metadata.name.unwrap()), o.metadata.resource_version.unwrap()));
            }
        }
        for o in self.dynamic(&self.group(), "v1", "Widget", "widgets").list(&lp).await.unwrap().items {
            out.push((format!("Widget/{}", o.metadata.name.unwrap()), o.metadata.resource_version.unwrap()));
        }
        out.sort();
        out
    }

    /// The app's inventory ConfigMap(s), as text.
    async fn inventory_text(&self) -> String {
        let cms: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.ns);
        let items = cms.list(&ListParams::default()).await.unwrap().items;
        let inventories: Vec<String> = items
            .into_iter()
            .filter(|c| c.metadata.name.as_deref().is_some_and(|n| n.starts_with("kfctl-inventory-")))
            .map(|c| serde_json::to_string(&c.data).unwrap())
            .collect();
        assert!(!inventories.is_empty(), "no kfctl inventory in {}", self.ns);
        inventories.join("\n")
    }

    async fn events(&self) -> Vec<(String, String)> {
        let events: Api<Event> = Api::namespaced(self.client.clone(), &self.ns);
        events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| e.involved_object.kind.as_deref() == Some("Application"))
            .map(|e| (e.reason.unwrap_or_default(), e.message.unwrap_or_default()))
            .collect()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let ns = self.ns.clone();
        let group = self.group();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let client = client().await;
                let _ = Api::<Namespace>::all(client.clone()).delete(&ns, &DeleteParams::background()).await;
                let crds = ApiResource::from_gvk_with_plural(
                    &GroupVersionKind::gvk("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
                    "customresourcedefinitions",
                );
                let _ = Api::<DynamicObject>::all_with(client, &crds).delete(&format!("widgets.{group}"), &DeleteParams::background()).await;
            });
        })
        .join()
        .unwrap();
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn ordered_apply_is_idempotent_prunes_and_deletes_only_its_own() {
    let fx = Fixture::new("lifecycle").await;
    fx.component("widgets", &[fx.widget("w1"), fx.widget_crd()]);
    fx.component("web", &[fx.service("web"), fx.deployment("web", json!({}))]);
    fx.component("extra", &[fx.config_map("extra-1"), fx.config_map("extra-2")]);
    fx.config(&["widgets", "web", "extra"]);
    // An object kfctl does not own, in the same namespace: never touched.
    let cms: Api<ConfigMap> = Api::namespaced(fx.client.clone(), &fx.ns);
    cms.create(&PostParams::default(), &serde_json::from_value(fx.config_map("not-kfctls")).unwrap()).await.unwrap();

    // 1. One pass: the Widget (a CR of a CRD in the same apply) applies after its CRD is Established.
    let out = fx.kfctl_ok(&["apply"]);
    assert!(out.contains("phase crds"), "{out}");
    assert!(out.contains("0 failed"), "{out}");
    let crd_line = out.find("phase crds").unwrap();
    let widget_line = out.find(&format!("Widget {}/w1", fx.ns)).expect("widget applied");
    assert!(crd_line < widget_line, "the CR was applied before the CRD phase:\n{out}");
    let widget = fx.dynamic(&fx.group(), "v1", "Widget", "widgets").get("w1").await.unwrap();
    assert_eq!(widget.data["spec"]["size"], 3);
    assert_eq!(widget.metadata.labels.as_ref().unwrap()["kfctl.kubeflow.org/component"], "widgets");
    // Ports got their protocol (1.20 rejects SSA without it) and the Service applied.
    let svc = fx.dynamic("", "v1", "Service", "services").get("web").await.unwrap();
    assert_eq!(svc.data["spec"]["ports"][0]["protocol"], "TCP");

    // 2. Ready: the Application says so, kubectl shows it, Events tell the steps.
    fx.kfctl_ok(&["wait", "--timeout", "120s"]);
    let app = fx.dynamic("app.k8s.io", "v1beta1", "Application", "applications").get(&fx.ns).await.unwrap();
    let ready = app.data["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Ready").unwrap().clone();
    assert_eq!(ready["status"], "True", "{app:?}");
    let components_ready = app.data["status"]["componentsReady"].as_str().unwrap().to_owned();
    let (x, y) = components_ready.split_once('/').unwrap();
    assert_eq!(x, y, "componentsReady {components_ready}");
    let kubectl = Command::new("kubectl")
        .env("KUBECONFIG", kubeconfig())
        .args(["get", "application", &fx.ns, "-n", &fx.ns])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&kubectl.stdout);
    assert!(table.contains("READY") && table.contains("True") && table.contains(&components_ready), "{table}");
    let reasons: Vec<String> = fx.events().await.into_iter().map(|(r, _)| r).collect();
    for want in ["PhaseStarted", "PhaseApplied", "ComponentApplied", "Applied", "ApplicationReady"] {
        assert!(reasons.iter().any(|r| r == want), "no {want} event in {reasons:?}");
    }

    // 3. A second apply with nothing changed writes nothing.
    let before = fx.resource_versions().await;
    assert_eq!(before.len(), 6, "{before:?}");
    let out = fx.kfctl_ok(&["apply"]);
    assert!(out.contains("nothing to change"), "{out}");
    assert_eq!(fx.resource_versions().await, before, "a no-op apply changed resourceVersions");

    // 4. Removing a component prunes exactly its objects.
    fx.config(&["widgets", "web"]);
    let out = fx.kfctl_ok(&["apply"]);
    assert!(out.contains("2 pruned"), "{out}");
    assert!(cms.get_opt("extra-1").await.unwrap().is_none());
    assert!(cms.get_opt("extra-2").await.unwrap().is_none());
    // (The Application itself changes: its componentKinds no longer list ConfigMap.)
    let after: Vec<(String, String)> = fx.resource_versions().await.into_iter().filter(|(k, _)| !k.starts_with("Application/")).collect();
    let expected: Vec<(String, String)> =
        before.into_iter().filter(|(k, _)| !k.starts_with("ConfigMap/extra-") && !k.starts_with("Application/")).collect();
    assert_eq!(after, expected, "prune touched objects of other components");

    // 5. delete leaves none of kfctl's objects (CRDs kept without --purge) and not the foreign one.
    let out = fx.kfctl_ok(&["delete"]);
    assert!(out.contains("kept"), "{out}");
    assert!(fx.resource_versions().await.iter().all(|(k, _)| k.starts_with("Widget/")) , "left behind: {:?}", fx.resource_versions().await);
    assert!(cms.get_opt("not-kfctls").await.unwrap().is_some(), "delete removed an object kfctl does not own");
    assert!(fx.dynamic(&fx.group(), "v1", "Widget", "widgets").get_opt("w1").await.unwrap().is_none(), "the Widget survived delete");
}

/// A no-op apply reads only metadata for objects whose record (desired hash + resourceVersion,
/// or generation where the kind keeps one) proves them unchanged. A hand edit by another field
/// manager leaves the desired hash as it was but moves the object: the next apply must still
/// find and correct it, for a plain object (ConfigMap data), a generation-tracked one (a custom
/// resource's spec) and metadata only (a Deployment label, which moves no generation).
#[tokio::test(flavor = "multi_thread")]
async fn hand_edits_are_corrected_by_the_next_apply_though_the_desired_objects_did_not_change() {
    use kube::api::{Patch, PatchParams};
    let fx = Fixture::new("drift").await;
    fx.component("widgets", &[fx.widget("w1"), fx.widget_crd()]);
    fx.component("web", &[fx.config_map("settings"), fx.deployment("web", json!({}))]);
    fx.config(&["widgets", "web"]);
    fx.kfctl_ok(&["apply"]);
    // Until the Deployment is ready its controller still writes its status (a new
    // resourceVersion that is not kfctl's doing).
    fx.kfctl_ok(&["wait", "--timeout", "120s"]);
    let inventory = fx.inventory_text().await;
    assert!(inventory.contains("applied.json") && inventory.contains("resourceVersion"), "no applied records: {inventory}");

    // Nothing changed: nothing written, the inventory included.
    let cms: Api<ConfigMap> = Api::namespaced(fx.client.clone(), &fx.ns);
    let inventory_rv = |cm: ConfigMap| cm.metadata.resource_version.unwrap();
    let inventory_name = format!("kfctl-inventory-{}", fx.ns);
    let before = fx.resource_versions().await;
    let inventory_before = inventory_rv(cms.get(&inventory_name).await.unwrap());
    let out = fx.kfctl_ok(&["apply"]);
    assert!(out.contains("nothing to change"), "{out}");
    assert_eq!(fx.resource_versions().await, before, "a no-op apply changed resourceVersions");
    assert_eq!(inventory_rv(cms.get(&inventory_name).await.unwrap()), inventory_before, "a no-op apply rewrote the inventory");

    // Hand edits, as `kubectl edit`/`patch` make them (another field manager, Update operations).
    let by_hand = PatchParams { field_manager: Some("kubectl-edit".into()), ..Default::default() };
    cms.patch("settings", &by_hand, &Patch::Merge(json!({"data": {"k": "edited by hand"}}))).await.unwrap();
    let widgets = fx.dynamic(&fx.group(), "v1", "Widget", "widgets");
    widgets.patch("w1", &by_hand, &Patch::Merge(json!({"spec": {"size": 7}}))).await.unwrap();
    let deployments = fx.dynamic("apps", "v1", "Deployment", "deployments");
    deployments
        .patch("web", &by_hand, &Patch::Merge(json!({"metadata": {"labels": {"kfctl.kubeflow.org/component": "by-hand"}}})))
        .await
        .unwrap();

    let out = fx.kfctl_ok(&["apply"]);
    assert!(!out.contains("nothing to change"), "the hand edits went unnoticed:\n{out}");
    assert!(out.contains("3 configured"), "{out}");
    let settings = cms.get("settings").await.unwrap();
    assert_eq!(settings.data.unwrap()["k"], "v", "the ConfigMap edit was not corrected");
    assert_eq!(widgets.get("w1").await.unwrap().data["spec"]["size"], 3, "the Widget edit was not corrected");
    let web = deployments.get("web").await.unwrap();
    assert_eq!(web.metadata.labels.unwrap()["kfctl.kubeflow.org/component"], "web", "the Deployment label edit was not corrected");

    // And once corrected, the next apply is a no-op again.
    let out = fx.kfctl_ok(&["apply"]);
    assert!(out.contains("nothing to change"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn crash_looping_pod_turns_the_application_not_ready_with_an_event_naming_it() {
    let fx = Fixture::new("crashloop").await;
    fx.component("web", &[fx.service("web"), fx.deployment("web", json!({}))]);
    fx.component("broken", &[fx.deployment("broken", json!({"simnode.kfctl.dev/fail": "CrashLoopBackOff"}))]);
    fx.config(&["web", "broken"]);
    fx.kfctl_ok(&["apply"]);
    let out = fx.kfctl(&["wait", "--timeout", "20s"]);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "wait succeeded with a crash-looping pod:\n{text}");
    assert!(text.contains("CrashLoopBackOff") && text.contains("pod broken-"), "{text}");

    let app = fx.dynamic("app.k8s.io", "v1beta1", "Application", "applications").get(&fx.ns).await.unwrap();
    let ready = app.data["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Ready").unwrap().clone();
    assert_eq!(ready["status"], "False");
    assert!(ready["message"].as_str().unwrap().contains("broken"), "{ready}");
    let events = fx.events().await;
    let failed = events.iter().find(|(r, _)| r == "ComponentFailed").unwrap_or_else(|| panic!("no ComponentFailed event: {events:?}"));
    assert!(failed.1.contains("pod broken-") && failed.1.contains("container main") && failed.1.contains("CrashLoopBackOff"), "{failed:?}");

    let status = fx.kfctl(&["status"]);
    let table = String::from_utf8_lossy(&status.stdout);
    assert_eq!(status.status.code(), Some(3), "{table}");
    assert!(table.contains("broken") && table.contains("no") && table.contains("CrashLoopBackOff"), "{table}");
    assert!(table.lines().any(|l| l.starts_with("web") && l.contains("yes")), "{table}");
}

#[tokio::test(flavor = "multi_thread")]
async fn purging_one_of_two_apps_keeps_the_shared_application_crd_and_the_other_app_healthy() {
    let first = Fixture::new("shared-a").await;
    let second = Fixture::new("shared-b").await;
    for fx in [&first, &second] {
        fx.component("web", &[fx.service("web"), fx.deployment("web", json!({}))]);
        fx.config(&["web"]);
        fx.kfctl_ok(&["apply"]);
    }
    second.kfctl_ok(&["wait", "--timeout", "120s"]);
    let crds = Api::<DynamicObject>::all_with(second.client.clone(), &ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("apiextensions.k8s.io", "v1", "CustomResourceDefinition"), "customresourcedefinitions"));

    // The CRD is kfctl's, not either app's: no app or component label, in neither inventory.
    let crd = crds.get("applications.app.k8s.io").await.unwrap();
    let labels = crd.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels.get("app.kubernetes.io/managed-by").map(String::as_str), Some("kfctl"), "{labels:?}");
    assert!(!labels.contains_key("kfctl.kubeflow.org/app") && !labels.contains_key("kfctl.kubeflow.org/component"), "{labels:?}");
    for fx in [&first, &second] {
        let inventory = fx.inventory_text().await;
        assert!(!inventory.contains("applications.app.k8s.io"), "the shared CRD is in {}'s inventory: {inventory}", fx.ns);
        // Each app's second apply writes nothing, whoever applied the CRD last.
        assert!(fx.kfctl_ok(&["apply"]).contains("nothing to change"));
    }

    // delete --purge of the first keeps the CRD, says why, and leaves the second app healthy.
    let out = first.kfctl_ok(&["delete", "--purge"]);
    assert!(
        out.contains("applications.app.k8s.io: kept: shared, still used by") && out.contains(&format!("{}/{}", second.ns, second.ns)),
        "{out}"
    );
    let crd = crds.get_opt("applications.app.k8s.io").await.unwrap();
    assert!(crd.is_some_and(|c| c.metadata.deletion_timestamp.is_none()), "the shared CRD was deleted with one app");
    let apps = first.dynamic("app.k8s.io", "v1beta1", "Application", "applications");
    assert!(apps.get_opt(&first.ns).await.unwrap().is_none(), "the purged app's Application survived");
    let other = second.dynamic("app.k8s.io", "v1beta1", "Application", "applications").get(&second.ns).await.unwrap();
    let ready = other.data["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Ready").unwrap().clone();
    assert_eq!(ready["status"], "True", "{other:?}");
    second.kfctl_ok(&["wait", "--timeout", "60s"]);
    let status = second.kfctl(&["status"]);
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stdout));
    assert!(second.kfctl_ok(&["apply"]).contains("nothing to change"));
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_cluster_and_forbidden_rbac_each_give_one_clear_message() {
    let fx = Fixture::new("errors").await;
    fx.component("web", &[fx.config_map("c")]);
    fx.config(&["web"]);

    // Unreachable: a kubeconfig pointing at a closed loopback port.
    let bad = fx.app.path().join("unreachable.kubeconfig");
    std::fs::write(&bad, "apiVersion: v1\nkind: Config\nclusters:\n- name: gone\n  cluster:\n    server: https://127.0.0.1:1\ncontexts:\n- name: gone\n  context:\n    cluster: gone\n    user: u\ncurrent-context: gone\nusers:\n- name: u\n  user:\n    token: t\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kfctl"))
        .args(["apply", path_str(fx.app.path()), "--kubeconfig", path_str(&bad)])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("https://127.0.0.1:1") && err.contains("\"gone\"") && err.contains("unreachable") && err.contains("hint:"), "{err}");
    assert_eq!(err.lines().filter(|l| l.starts_with("error:")).count(), 1, "{err}");

    // Forbidden: a ServiceAccount allowed to read but not write.
    let token = restricted_token(&fx).await;
    let server = Kubeconfig::read_from(kubeconfig()).unwrap().clusters[0].cluster.clone().unwrap();
    let restricted = fx.app.path().join("restricted.kubeconfig");
    let ca = server.certificate_authority_data.clone().map(|d| format!("    certificate-authority-data: {d}\n")).unwrap_or_default();
    let ca_file = server.certificate_authority.clone().map(|f| format!("    certificate-authority: {f}\n")).unwrap_or_default();
    std::fs::write(&restricted, format!("apiVersion: v1\nkind: Config\nclusters:\n- name: t\n  cluster:\n    server: {}\n{ca}{ca_file}contexts:\n- name: t\n  context:\n    cluster: t\n    user: ro\ncurrent-context: t\nusers:\n- name: ro\n  user:\n    token: {token}\n", server.server.unwrap())).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kfctl"))
        .args(["apply", path_str(fx.app.path()), "--kubeconfig", path_str(&restricted), "--app-namespace", &fx.ns])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("nothing was changed") && err.contains("forbidden") && err.contains(&format!("system:serviceaccount:{}:reader", fx.ns)), "{err}");
    assert!(err.contains("configmaps") && err.contains("hint:"), "{err}");
    let cms: Api<ConfigMap> = Api::namespaced(fx.client.clone(), &fx.ns);
    assert!(cms.get_opt("c").await.unwrap().is_none(), "a forbidden apply still wrote");
}

/// A token for ServiceAccount `reader` in the fixture namespace, bound to the `view` ClusterRole.
async fn restricted_token(fx: &Fixture) -> String {
    use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
    use k8s_openapi::api::rbac::v1::RoleBinding;
    let sa: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": "reader"}})).unwrap();
    Api::<ServiceAccount>::namespaced(fx.client.clone(), &fx.ns).create(&PostParams::default(), &sa).await.unwrap();
    let rb: RoleBinding = serde_json::from_value(json!({"metadata": {"name": "reader-view"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
        "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": fx.ns}]})).unwrap();
    Api::<RoleBinding>::namespaced(fx.client.clone(), &fx.ns).create(&PostParams::default(), &rb).await.unwrap();
    // 1.20: the token controller creates the token Secret for the ServiceAccount.
    let secrets: Api<Secret> = Api::namespaced(fx.client.clone(), &fx.ns);
    for _ in 0..240 {
        for s in secrets.list(&ListParams::default()).await.unwrap().items {
            let for_reader = s.metadata.annotations.as_ref().and_then(|a| a.get("kubernetes.io/service-account.name")).map(String::as_str) == Some("reader");
            if for_reader && let Some(token) = s.data.as_ref().and_then(|d| d.get("token")) {
                return String::from_utf8(token.0.clone()).unwrap();
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("no token Secret for ServiceAccount {}/reader", fx.ns);
}

/// The API preflight: an app using APIs this 1.20 server does not serve (Kubeflow 26.03's
/// `autoscaling/v2` HorizontalPodAutoscalers and `policy/v1` PodDisruptionBudgets) is refused
/// before anything is written, naming the objects, the APIs, the server and the release's range.
#[tokio::test(flavor = "multi_thread")]
async fn apis_the_cluster_does_not_serve_are_refused_before_anything_is_written() {
    let fx = Fixture::new("apis").await;
    let hpa = json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "web", "namespace": fx.ns},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}, "minReplicas": 1, "maxReplicas": 2}});
    let pdb = json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "web", "namespace": fx.ns},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}}});
    // A kind that a CRD of the same apply defines is fine: it is served once that CRD is in.
    fx.component("web", &[fx.config_map("before"), fx.deployment("web", json!({})), hpa, pdb, fx.widget_crd(), fx.widget("w1")]);
    fx.config(&["web"]);

    let out = fx.kfctl(&["apply"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("the cluster does not serve 2 APIs that the app uses; nothing was applied"), "{err}");
    assert!(err.contains(&format!("autoscaling/v2 HorizontalPodAutoscaler (1 object: {}/web)", fx.ns)), "{err}");
    assert!(err.contains(&format!("policy/v1 PodDisruptionBudget (1 object: {}/web)", fx.ns)), "{err}");
    assert!(err.contains("the server is Kubernetes v1.20.2; Kubeflow v1.4.1 supports Kubernetes 1.19 to 1.21"), "{err}");
    assert!(!err.contains("Widget"), "a kind defined by a CRD in the plan is not missing:\n{err}");
    // Nothing was written: no object, no inventory, no CRD.
    let deployments = fx.dynamic("apps", "v1", "Deployment", "deployments").list(&ListParams::default()).await.unwrap().items;
    assert!(deployments.is_empty(), "a Deployment was written");
    let cms: Api<ConfigMap> = Api::namespaced(fx.client.clone(), &fx.ns);
    let names: Vec<String> = cms.list(&ListParams::default()).await.unwrap().items.into_iter().filter_map(|c| c.metadata.name).collect();
    assert!(!names.iter().any(|n| n == "before" || n.starts_with("kfctl-inventory-")), "{names:?}");
    let crds = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("apiextensions.k8s.io", "v1", "CustomResourceDefinition"), "customresourcedefinitions");
    let crd = Api::<DynamicObject>::all_with(fx.client.clone(), &crds).get_opt(&format!("widgets.{}", fx.group())).await.unwrap();
    assert!(crd.is_none(), "the CRD was written");
}
