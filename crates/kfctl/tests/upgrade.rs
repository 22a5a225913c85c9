//! `kfctl upgrade` between two small fixture releases on the real API server of scripts/testenv:
//! one test per kind of migration (an immutable field replaced, a component removed, one renamed,
//! a blocking manual step), and a rollback with `kfctl gc`.
//!
//! The fixture releases are real release archives (tar.gz with a top-level directory, verified by
//! their tree digest) with catalogs that kfctl reads from `$KFCTL_CATALOGS`, the directory a fork
//! of Kubeflow uses for its own releases. Each test makes its own pair, named after its namespace,
//! so tests run in parallel. Run inside the testenv:
//! `scripts/testenv exec -- cargo test -p kfctl --test upgrade`.

mod support;

use std::path::PathBuf;
use std::process::Output;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, PostParams};
use serde_json::json;
use kube::api::{Api, DeleteParams};
use support::TestNamespace;
use support::fixture_release::FixtureReleases;

/// Two releases of a fixture "Kubeflow": `old` and `new`, their archives and catalogs.
struct Fixture {
    ns: TestNamespace,
    /// The app directory (created by `kfctl init` inside the releases' directory).
    app: PathBuf,
    releases: FixtureReleases,
    old: String,
    new: String,
}

impl Fixture {
    /// Both releases of a fixture for this test, and the app initialised at the old one.
    async fn new(test: &str) -> Fixture {
        let ns = TestNamespace::new(test).await;
        let releases = FixtureReleases::build(&ns.name);
        let app = releases.work.path().join("app");
        let fixture = Fixture { old: releases.old.clone(), new: releases.new.clone(), ns, app, releases };
        fixture.run_ok(&["init"], &[fixture.app.to_str().unwrap(), "--registry", fixture.archive("old").to_str().unwrap(), "--version", &fixture.old, "--name", &fixture.ns.name]);
        fixture
    }

    fn archive(&self, which: &str) -> PathBuf {
        self.releases.archive(which)
    }

    /// kfctl with the fixture catalogs; `args` then, for commands on the app, the app directory
    /// and its Application's namespace.
    fn run(&self, command: &[&str], args: &[&str]) -> Output {
        let mut cmd = self.ns.kfctl();
        cmd.env("KFCTL_CATALOGS", self.releases.catalogs()).args(command).args(args);
        match command[0] {
            "init" => {}
            "component" => {
                cmd.arg("--app").arg(&self.app);
            }
            "gc" => {
                cmd.arg(&self.app);
            }
            _ => {
                cmd.arg(&self.app).args(["--app-namespace", &self.ns.name]);
            }
        }
        cmd.output().expect("run kfctl")
    }

    fn run_ok(&self, command: &[&str], args: &[&str]) -> String {
        let out = self.run(command, args);
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "kfctl {command:?} {args:?} failed:\n{text}");
        text
    }

    fn run_err(&self, command: &[&str], args: &[&str]) -> String {
        let out = self.run(command, args);
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(!out.status.success(), "kfctl {command:?} {args:?} should have failed:\n{text}");
        text
    }

    fn upgrade(&self, extra: &[&str]) -> Output {
        let new_archive = self.archive("new");
        let mut args = vec!["--to", &self.new, "--registry", new_archive.to_str().unwrap(), "--timeout", "3m"];
        args.extend_from_slice(extra);
        self.run(&["upgrade"], &args)
    }

    fn kfctl_yaml(&self) -> String {
        std::fs::read_to_string(self.app.join("kfctl.yaml")).unwrap()
    }

    async fn config_map(&self, name: &str) -> Option<ConfigMap> {
        self.ns.api::<ConfigMap>().get_opt(name).await.unwrap()
    }

    fn cluster_api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::ClusterResourceScope> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::all(self.ns.client.clone())
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // Cluster-scoped objects outlive the namespace: delete them by name.
        let client = self.ns.client.clone();
        let n = self.ns.name.clone();
        let cleanup = async move {
            for role in ["view", "edit"] {
                let _ = Api::<ClusterRole>::all(client.clone()).delete(&format!("{n}-{role}"), &DeleteParams::default()).await;
            }
            let _ = Api::<ClusterRoleBinding>::all(client.clone()).delete(&format!("{n}-binding"), &DeleteParams::default()).await;
            let _ = Api::<CustomResourceDefinition>::all(client.clone()).delete(&format!("gadgets.{n}.kfctl.test"), &DeleteParams::default()).await;
        };
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            tokio::task::block_in_place(|| handle.block_on(cleanup));
        }
    }
}

fn text_of(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[tokio::test(flavor = "multi_thread")]
async fn immutable_fields_are_replaced_by_the_catalog_and_by_what_the_server_refuses() {
    let fx = Fixture::new("upgrade-replace").await;
    fx.run_ok(&["apply"], &[]);
    let bindings = fx.cluster_api::<ClusterRoleBinding>();
    let old_binding = bindings.get(&format!("{}-binding", fx.ns.name)).await.unwrap();
    let old_web = fx.ns.api::<Deployment>().get("web").await.unwrap();

    let out = fx.upgrade(&["--yes"]);
    let text = text_of(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains(&format!("kfctl deletes and recreates ClusterRoleBinding.rbac.authorization.k8s.io {}-binding (auth-binding): the binding grants the edit role now", fx.ns.name)), "{text}");
    assert!(text.contains("kfctl deletes and recreates Deployment.apps ") && text.contains("web: the API server refuses the change"), "{text}");

    let new_binding = bindings.get(&format!("{}-binding", fx.ns.name)).await.unwrap();
    assert_ne!(new_binding.metadata.uid, old_binding.metadata.uid, "the binding was recreated");
    assert_eq!(new_binding.role_ref.name, format!("{}-edit", fx.ns.name));
    let new_web = fx.ns.api::<Deployment>().get("web").await.unwrap();
    assert_ne!(new_web.metadata.uid, old_web.metadata.uid, "the Deployment was recreated");
    assert_eq!(new_web.spec.unwrap().selector.match_labels.unwrap().get("tier").map(String::as_str), Some("front"));
    // The old role is pruned: only the old release had it.
    assert!(fx.cluster_api::<ClusterRole>().get_opt(&format!("{}-view", fx.ns.name)).await.unwrap().is_none());
    // Nothing left to do.
    let diff = fx.run(&["diff"], &[]);
    assert_eq!(diff.status.code(), Some(0), "{}", text_of(&diff));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_removed_component_is_pruned_and_its_settings_stop_the_upgrade_unless_forced() {
    let fx = Fixture::new("upgrade-removed").await;
    let patch = fx.app.join("legacy-patch.yaml");
    std::fs::write(&patch, format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: legacy\n  namespace: {}\ndata:\n  mine: \"1\"\n", fx.ns.name)).unwrap();
    let config = fx.kfctl_yaml().replace("- name: legacy\n", "- name: legacy\n  patches:\n  - path: legacy-patch.yaml\n");
    std::fs::write(fx.app.join("kfctl.yaml"), config).unwrap();
    fx.run_ok(&["apply"], &[]);
    assert_eq!(fx.config_map("legacy").await.unwrap().data.unwrap()["mine"], "1");

    // The user's patch on the removed component no longer applies: stop, change nothing.
    let before = fx.kfctl_yaml();
    let out = fx.upgrade(&["--yes"]);
    let text = text_of(&out);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("legacy: patch legacy-patch.yaml no longer applies"), "{text}");
    assert!(text.contains("--force"), "{text}");
    assert_eq!(fx.kfctl_yaml(), before, "kfctl.yaml is untouched");
    assert!(!fx.app.join(format!("registry/{}", fx.new)).exists(), "the new release was vendored and removed again");

    let text = fx.run_ok(&["upgrade"], &["--to", &fx.new, "--registry", fx.archive("new").to_str().unwrap(), "--yes", "--force"]);
    assert!(text.contains(&format!("legacy: removed in {}: nothing uses it any more; its objects are pruned", fx.new)), "{text}");
    assert!(fx.config_map("legacy").await.is_none(), "legacy's ConfigMap is pruned");
    assert!(fx.config_map("extra").await.is_some(), "the new base component is applied");
    let yaml = fx.kfctl_yaml();
    assert!(!yaml.contains("name: legacy") && yaml.contains("name: extra"), "{yaml}");
    assert!(patch.is_file(), "the patch file stays");
}

/// Two patches on a role the new release no longer has: the component does not render with
/// them. The upgrade stops naming both; `--force` drops both from kfctl.yaml (each one, not the
/// pair as one setting) and the upgrade goes through.
#[tokio::test(flavor = "multi_thread")]
async fn patches_the_new_release_cannot_render_stop_the_upgrade_and_force_drops_each_of_them() {
    let fx = Fixture::new("upgrade-patches").await;
    let role = format!("{}-view", fx.ns.name);
    for (file, field) in [("verbs-patch.yaml", "rules:\n- apiGroups: [\"\"]\n  resources: [configmaps]\n  verbs: [get, list]\n"), ("label-patch.yaml", "")] {
        let labels = if field.is_empty() { "  labels:\n    mine: \"1\"\n" } else { "" };
        let text = format!("apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: {role}\n{labels}{field}");
        std::fs::write(fx.app.join(file), text).unwrap();
    }
    let config = fx.kfctl_yaml().replace("- name: auth-old\n", "- name: auth-old\n  patches:\n  - path: verbs-patch.yaml\n  - path: label-patch.yaml\n");
    std::fs::write(fx.app.join("kfctl.yaml"), config).unwrap();
    fx.run_ok(&["apply"], &[]);
    let applied = fx.cluster_api::<ClusterRole>().get(&role).await.unwrap();
    assert_eq!(applied.metadata.labels.unwrap().get("mine").map(String::as_str), Some("1"));

    let out = fx.upgrade(&["--yes"]);
    let text = text_of(&out);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("patch verbs-patch.yaml, patch label-patch.yaml no longer applies: the component no longer renders with them"), "{text}");

    let text = fx.run_ok(&["upgrade"], &["--to", &fx.new, "--registry", fx.archive("new").to_str().unwrap(), "--yes", "--force"]);
    assert!(text.contains(&format!("upgraded app {} from Kubeflow {} to {}", fx.ns.name, fx.old, fx.new)), "{text}");
    let yaml = fx.kfctl_yaml();
    assert!(!yaml.contains("verbs-patch.yaml") && !yaml.contains("label-patch.yaml"), "{yaml}");
    assert!(fx.app.join("verbs-patch.yaml").is_file() && fx.app.join("label-patch.yaml").is_file(), "the patch files stay");
    assert!(fx.cluster_api::<ClusterRole>().get_opt(&format!("{}-edit", fx.ns.name)).await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_renamed_component_keeps_its_parameters_and_its_objects() {
    let fx = Fixture::new("upgrade-renamed").await;
    fx.run_ok(&["component", "set"], &["auth-old", "mode=relaxed"]);
    fx.run_ok(&["apply"], &[]);
    let before = fx.config_map("auth-config").await.unwrap();
    assert_eq!(before.data.as_ref().unwrap()["mode"], "relaxed");

    let text = fx.run_ok(&["upgrade"], &["--to", &fx.new, "--registry", fx.archive("new").to_str().unwrap(), "--yes"]);
    assert!(text.contains("auth-old -> auth: auth-old is auth now"), "{text}");
    let after = fx.config_map("auth-config").await.unwrap();
    assert_eq!(after.metadata.uid, before.metadata.uid, "the same object, not recreated");
    let data = after.data.unwrap();
    assert_eq!((data["mode"].as_str(), data["version"].as_str()), ("relaxed", "2"), "the parameter carried over onto the new release's object");
    let yaml = fx.kfctl_yaml();
    assert!(yaml.contains("- name: auth\n") && yaml.contains("mode: relaxed") && !yaml.contains("auth-old"), "{yaml}");
    let labels = after.metadata.labels.unwrap();
    assert_eq!(labels.get("kfctl.kubeflow.org/component").map(String::as_str), Some("auth"), "{labels:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_blocking_manual_step_stops_the_upgrade_until_confirmed_then_a_rollback_and_gc() {
    let fx = Fixture::new("upgrade-manual").await;
    fx.run_ok(&["component", "add"], &["store"]);
    fx.run_ok(&["apply"], &[]);
    let claim = fx.ns.api::<PersistentVolumeClaim>().get("store-data").await.unwrap();

    let before = fx.kfctl_yaml();
    let out = fx.upgrade(&["--yes"]);
    let text = text_of(&out);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("[you, BEFORE the upgrade (blocking)] move-store-data: the store keeps its data in object storage now"), "{text}");
    assert!(text.contains("copy the files of PVC store-data into the bucket"), "{text}");
    assert!(text.contains("1 manual step must be done before the upgrade; nothing was changed") && text.contains("--confirm move-store-data"), "{text}");
    assert_eq!(fx.kfctl_yaml(), before);
    assert_eq!(fx.config_map("store-settings").await.unwrap().data.unwrap()["backend"], "disk", "nothing applied");

    fx.run_ok(&["upgrade"], &["--to", &fx.new, "--registry", fx.archive("new").to_str().unwrap(), "--yes", "--confirm", "move-store-data"]);
    assert_eq!(fx.config_map("store-settings").await.unwrap().data.unwrap()["backend"], "object");
    let yaml = fx.kfctl_yaml();
    assert!(yaml.contains(&format!("from: {}", fx.old)) && yaml.contains("outcome: succeeded") && yaml.contains("- move-store-data"), "{yaml}");
    let events = fx.ns.api::<k8s_openapi::api::core::v1::Event>().list(&Default::default()).await.unwrap();
    let reasons: Vec<&str> = events.items.iter().filter_map(|e| e.reason.as_deref()).collect();
    assert!(reasons.contains(&"UpgradeStarted") && reasons.contains(&"UpgradeSucceeded"), "{reasons:?}");

    // Back: the old release comes from the app directory (its archive is gone), the manual step
    // shows its rollback text and does not block, and the data's claim is the same one.
    std::fs::remove_file(fx.archive("old")).unwrap();
    let text = fx.run_ok(&["upgrade"], &["--to", &fx.old, "--yes"]);
    assert!(text.contains("still vendored") && text.contains("copy the bucket back into PVC store-data"), "{text}");
    assert_eq!(fx.config_map("store-settings").await.unwrap().data.unwrap()["backend"], "disk");
    assert!(fx.config_map("legacy").await.is_some(), "the old release's component is back");
    assert_eq!(fx.ns.api::<PersistentVolumeClaim>().get("store-data").await.unwrap().metadata.uid, claim.metadata.uid);

    // gc removes the release the app no longer uses, and the history forgets its copy.
    let text = fx.run_ok(&["gc"], &[]);
    assert!(text.contains(&format!("removed registry/{}", fx.new)), "{text}");
    assert!(!fx.app.join(format!("registry/{}", fx.new)).exists());
    assert!(fx.app.join(format!("registry/{}", fx.old)).exists());
    assert!(!fx.kfctl_yaml().contains("fromRegistry:"), "{}", fx.kfctl_yaml());
    let text = fx.run_ok(&["gc"], &[]);
    assert!(text.contains("nothing to remove"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_prepared_upgrade_blocks_plain_apply_and_finishes_after_an_interruption() {
    let fx = Fixture::new("upgrade-resume").await;
    fx.run_ok(&["apply"], &[]);
    let text = fx.run_ok(&["upgrade"], &["--to", &fx.new, "--registry", fx.archive("new").to_str().unwrap(), "--prepare"]);
    assert!(text.contains("kfctl.yaml now names"), "{text}");
    assert!(fx.kfctl_yaml().contains("outcome: prepared"), "{}", fx.kfctl_yaml());
    assert!(fx.config_map("extra").await.is_none(), "--prepare touches no cluster");
    let text = fx.run_err(&["apply"], &[]);
    assert!(text.contains("is not finished (prepared)") && text.contains(&format!("kfctl upgrade --to {}", fx.new)), "{text}");

    // Killed once the upgrade is under way (its start is recorded), then run again.
    let mut child = fx.ns.kfctl();
    child
        .env("KFCTL_CATALOGS", fx.releases.catalogs())
        .args(["upgrade", "--to", &fx.new, "--yes", "--output", "json"])
        .arg(&fx.app)
        .args(["--app-namespace", &fx.ns.name])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let mut child = child.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let killed_after = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains("UpgradeStarted") {
                let _ = child.kill();
                let _ = child.wait();
                return Some(line);
            }
        }
        let _ = child.wait();
        None
    })
    .await
    .unwrap();
    assert!(killed_after.is_some(), "the upgrade never said it started");
    assert!(fx.kfctl_yaml().contains("outcome: applying"), "{}", fx.kfctl_yaml());

    let text = fx.run_ok(&["upgrade"], &["--to", &fx.new, "--yes"]);
    assert!(text.contains("Finishing the upgrade"), "{text}");
    assert!(fx.config_map("extra").await.is_some());
    assert!(fx.kfctl_yaml().contains("outcome: succeeded"));
    let text = fx.run_err(&["upgrade"], &["--to", &fx.new, "--yes"]);
    assert!(text.contains("nothing to upgrade"), "{text}");
    fx.run_ok(&["apply"], &[]);
}

/// Ctrl-C while the upgrade waits for the app's lock changes nothing. Once it is under way, Ctrl-C
/// stops it where it is (pods kept unready, so it cannot have finished), exits 130, records it in
/// kfctl.yaml as failed with where it stopped, and frees the lock; the same command goes on.
/// Twice: at the upgrade's start (before its migrations), then at the resumed run's first write
/// (in the apply or the wait); a third run finishes.
#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_stops_the_upgrade_records_where_and_the_same_command_finishes_it() {
    let fx = Fixture::new("upgrade-sigint").await;
    fx.run_ok(&["apply"], &[]);
    fx.ns.fail_pods("", "NotReady").await;
    let new_archive = fx.archive("new");
    let finish = format!("kfctl upgrade {} --to {}", fx.app.display(), fx.new);

    // First while it waits for the app's lock, which another writer holds: it has not begun, so
    // nothing is recorded and the release it vendored goes again.
    use k8s_openapi::api::coordination::v1::Lease;
    let leases = fx.ns.api::<Lease>();
    let lease_name = format!("kfctl-lock-{}", fx.ns.name);
    let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(jiff::Timestamp::now());
    let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": lease_name, "annotations": {"kfctl.kubeflow.org/purpose": "a test holding the lock"}},
        "spec": {"holderIdentity": "someone-else", "leaseDurationSeconds": 300, "acquireTime": now, "renewTime": now}});
    leases.create(&PostParams::default(), &serde_json::from_value(lease).unwrap()).await.unwrap();
    let before = fx.kfctl_yaml();
    let mut child = fx
        .ns
        .kfctl()
        .env("KFCTL_CATALOGS", fx.releases.catalogs())
        .args(["upgrade", "--to", &fx.new, "--registry", new_archive.to_str().unwrap(), "--yes"])
        .arg(&fx.app)
        .args(["--app-namespace", &fx.ns.name])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = support::Collected::of(child.stderr.take().unwrap());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !stderr.seen("waiting for the lock of app") {
        assert!(std::time::Instant::now() < deadline && child.try_wait().unwrap().is_none(), "the upgrade never waited for the lock:\n{}", stderr.text());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let sent = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(sent.success());
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap()).await.unwrap();
    let said = stderr.all();
    leases.delete(&lease_name, &Default::default()).await.unwrap();
    assert_eq!(status.code(), Some(130), "{said}");
    assert!(said.contains("interrupted by SIGINT (Ctrl-C), before the upgrade (it was waiting for the app's lock); nothing was changed"), "{said}");
    assert_eq!(fx.kfctl_yaml(), before, "kfctl.yaml is untouched");
    assert!(!fx.app.join(format!("registry/{}", fx.new)).exists(), "the release it vendored is removed again");

    // Then once it is under way.
    for (registry, signal_at) in [(Some(new_archive.to_str().unwrap()), "UpgradeStarted"), (None, "object_applied")] {
        let mut cmd = fx.ns.kfctl();
        cmd.env("KFCTL_CATALOGS", fx.releases.catalogs()).args(["upgrade", "--to", &fx.new, "--yes", "--output", "json", "--timeout", "3m"]);
        if let Some(registry) = registry {
            cmd.args(["--registry", registry]);
        }
        cmd.arg(&fx.app).args(["--app-namespace", &fx.ns.name]).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let (stdout, stderr) = (child.stdout.take().unwrap(), support::Collected::of(child.stderr.take().unwrap()));
        let (signalled, status, said) = tokio::task::spawn_blocking(move || {
            use std::io::BufRead;
            let mut signalled = false;
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains(signal_at) && !signalled {
                    let sent = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
                    assert!(sent.success());
                    signalled = true;
                }
            }
            (signalled, child.wait().unwrap(), stderr.all())
        })
        .await
        .unwrap();
        eprintln!("kfctl said, interrupted at {signal_at}:\n{said}");
        assert!(signalled, "the upgrade never said {signal_at}:\n{said}");
        assert_eq!(status.code(), Some(130), "exit status {status:?}:\n{said}");
        assert!(said.contains("interrupted by SIGINT (Ctrl-C)") && said.contains("kfctl.yaml records the upgrade as failed"), "{said}");
        assert!(said.contains(&format!("`{finish}`")), "the hint does not name the command that goes on:\n{said}");
        let yaml = fx.kfctl_yaml();
        // (Quoted when it holds a colon: `'interrupted by SIGINT (Ctrl-C), after the last write: ...'`.)
        let message = yaml.lines().find(|l| l.trim_start().starts_with("message:")).unwrap_or_default();
        assert!(yaml.contains("outcome: failed") && message.contains("interrupted by SIGINT (Ctrl-C)"), "{yaml}");
        let text = fx.run_err(&["apply"], &[]);
        assert!(text.contains("is not finished (failed)"), "{text}");
    }

    // The lock is free (--no-wait fails on a held one), and the same command finishes the upgrade.
    fx.ns.clear_pod_failures().await;
    let text = fx.run_ok(&["upgrade"], &["--to", &fx.new, "--yes", "--no-wait", "--timeout", "3m"]);
    assert!(text.contains("Finishing the upgrade"), "{text}");
    assert!(fx.config_map("extra").await.is_some());
    let yaml = fx.kfctl_yaml();
    assert!(yaml.contains("outcome: succeeded") && !yaml.contains("outcome: failed"), "{yaml}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crd_that_stops_serving_a_stored_version_has_its_objects_moved_first() {
    let fx = Fixture::new("upgrade-storage").await;
    fx.run_ok(&["apply"], &[]);
    // The user's object, stored at v1alpha1 (the old storage version).
    let group = format!("{}.kfctl.test", fx.ns.name);
    let at = |version: &str| ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(&group, version, "Gadget"), "gadgets");
    let old_api = Api::<DynamicObject>::namespaced_with(fx.ns.client.clone(), &fx.ns.name, &at("v1alpha1"));
    let gadget: DynamicObject = serde_json::from_value(json!({"apiVersion": format!("{group}/v1alpha1"), "kind": "Gadget",
        "metadata": {"name": "mine", "namespace": fx.ns.name}, "spec": {"size": 3}}))
    .unwrap();
    let created = old_api.create(&PostParams::default(), &gadget).await.unwrap();
    let crds = fx.cluster_api::<CustomResourceDefinition>();
    let crd_name = format!("gadgets.{group}");
    let stored = |crd: CustomResourceDefinition| crd.status.and_then(|s| s.stored_versions).unwrap_or_default();
    assert_eq!(stored(crds.get(&crd_name).await.unwrap()), ["v1alpha1"]);

    let text = fx.run_ok(&["upgrade"], &["--to", &fx.new, "--registry", fx.archive("new").to_str().unwrap(), "--yes"]);
    assert!(text.contains(&format!("kfctl moves the objects of CRD {crd_name} from stored version v1alpha1 to v1")), "{text}");
    let crd = crds.get(&crd_name).await.unwrap();
    let served: Vec<String> = crd.spec.versions.iter().map(|v| v.name.clone()).collect();
    assert_eq!(served, ["v1"], "the new CRD is installed");
    assert_eq!(stored(crd), ["v1"]);
    let now = Api::<DynamicObject>::namespaced_with(fx.ns.client.clone(), &fx.ns.name, &at("v1")).get("mine").await.unwrap();
    assert_eq!(now.metadata.uid, created.metadata.uid);
    assert_eq!(now.data["spec"], json!({"size": 3}));
}
