//! Upgrading a running Kubeflow v1.10.2 (the base set, from the real archive) to 26.03 (its real
//! archive, remote bases through a mirror server) with the real `kfctl` against the real API
//! server of scripts/testenv, with the user's data on the cluster, killed at three points on the
//! way (SIGKILL) and run again each time.
//!
//! TEST-ONLY: each release needs its sim-cluster overlay on this 1.20 cluster without webhook
//! servers (tests/fixtures/sim-cluster/<version>/). The overlays are per-release patches, so the
//! test takes the v1.10.2 one out of kfctl.yaml before `kfctl upgrade --prepare` and puts the
//! 26.03 one in after, where a user would adjust their own patches. Everything else is the user
//! path.
//!
//! Run inside the testenv: `scripts/testenv exec -- cargo test -p kfctl --test kubeflow_upgrade`.
//! It deploys into the cluster's real `kubeflow` namespaces (test binaries run one at a time) and
//! removes everything it applied, also when it fails.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;
use std::process::Stdio;

use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim, Secret};
use kube::Client;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, PostParams};
use serde_json::{Value, json};
use support::kubeflow::{APP, APP_NAMESPACE, Kfctl, inventory, kinds_of, labelled, tail, wait_namespaces_gone};

/// The user's profile namespace (what upstream's user-namespace component names).
const PROFILE: &str = "kubeflow-user-example-com";
/// The manual step 26.03's catalog lists from v1.10.2 (pipelines' MinIO is SeaweedFS now).
const MINIO_STEP: &str = "minio-to-seaweedfs";

fn resource(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

/// The user's data, made the way a user (and, for the namespace, the profile controller, which
/// does not run on simulated nodes) makes it.
async fn create_user_data(client: &Client) -> BTreeMap<String, Value> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    if namespaces.get_opt(PROFILE).await.unwrap().is_none() {
        // As the profile controller makes it: owned by the Profile's user.
        let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": PROFILE,
            "labels": {"app.kubernetes.io/part-of": "kubeflow-profile"}, "annotations": {"owner": "user@example.com"}}}))
        .unwrap();
        namespaces.create(&PostParams::default(), &ns).await.unwrap();
    }
    let pp = PostParams::default();
    let notebooks = Api::<DynamicObject>::namespaced_with(client.clone(), PROFILE, &resource("kubeflow.org", "v1", "Notebook", "notebooks"));
    let notebook: DynamicObject = serde_json::from_value(json!({"apiVersion": "kubeflow.org/v1", "kind": "Notebook",
        "metadata": {"name": "my-notebook", "namespace": PROFILE},
        "spec": {"template": {"spec": {"containers": [{"name": "my-notebook", "image": "kubeflownotebookswg/jupyter-scipy:v1.10.0"}]}}}}))
    .unwrap();
    notebooks.create(&pp, &notebook).await.unwrap();
    let poddefaults = Api::<DynamicObject>::namespaced_with(client.clone(), PROFILE, &resource("kubeflow.org", "v1alpha1", "PodDefault", "poddefaults"));
    let poddefault: DynamicObject = serde_json::from_value(json!({"apiVersion": "kubeflow.org/v1alpha1", "kind": "PodDefault",
        "metadata": {"name": "my-defaults", "namespace": PROFILE},
        "spec": {"desc": "my environment", "selector": {"matchLabels": {"my-defaults": "true"}}, "env": [{"name": "TEAM", "value": "ml"}]}}))
    .unwrap();
    poddefaults.create(&pp, &poddefault).await.unwrap();
    let pvc: PersistentVolumeClaim = serde_json::from_value(json!({"metadata": {"name": "my-workspace", "namespace": PROFILE},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "5Gi"}}}}))
    .unwrap();
    let claims = Api::<PersistentVolumeClaim>::namespaced(client.clone(), PROFILE);
    claims.create(&pp, &pvc).await.unwrap();
    // Bound by the provisioner (it writes spec.volumeName): the claim as the user has it.
    support::wait_until("my-workspace to be bound", std::time::Duration::from_secs(120), || async {
        claims.get("my-workspace").await.unwrap().spec.and_then(|s| s.volume_name).is_some()
    })
    .await;
    let secret: Secret = serde_json::from_value(json!({"metadata": {"name": "my-token", "namespace": PROFILE}, "stringData": {"token": "s3cr3t"}})).unwrap();
    Api::<Secret>::namespaced(client.clone(), PROFILE).create(&pp, &secret).await.unwrap();
    user_data(client).await
}

/// The user's objects by name: uid and content (spec, or data for the Secret).
async fn user_data(client: &Client) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    let kinds = [
        resource("kubeflow.org", "v1", "Notebook", "notebooks"),
        resource("kubeflow.org", "v1alpha1", "PodDefault", "poddefaults"),
        resource("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims"),
        resource("", "v1", "Secret", "secrets"),
    ];
    for ar in &kinds {
        let api = Api::<DynamicObject>::namespaced_with(client.clone(), PROFILE, ar);
        for o in api.list(&ListParams::default()).await.unwrap().items {
            let name = o.metadata.name.clone().unwrap_or_default();
            if ar.kind == "Secret" && !name.starts_with("my-") {
                continue; // service account tokens
            }
            let content = o.data.get("spec").or_else(|| o.data.get("data")).cloned().unwrap_or_default();
            out.insert(format!("{} {name}", ar.kind), json!({"uid": o.metadata.uid, "content": content}));
        }
    }
    out
}

/// Runs `kfctl upgrade ... --output json` and kills it (SIGKILL) at the first progress line
/// `at` accepts: Ok(that line), or Err(the run's last lines) when it ended first.
fn kill_upgrade_when(kfctl: &Kfctl, args: &[&str], at: &mut dyn FnMut(&Value) -> bool) -> Result<String, String> {
    let mut child = support::kfctl_command(&kfctl.kubeconfig)
        .args(["upgrade", kfctl.app(), "--output", "json"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kfctl upgrade");
    let stdout = child.stdout.take().unwrap();
    let mut seen = Vec::new();
    for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
        let Ok(event) = serde_json::from_str::<Value>(&line) else { continue };
        if at(&event) {
            child.kill().unwrap();
            child.wait().unwrap();
            return Ok(line);
        }
        seen.push(line);
    }
    let out = child.wait_with_output().unwrap();
    Err(format!("{}\n{}", tail(&seen.join("\n"), 30), String::from_utf8_lossy(&out.stderr)))
}

#[tokio::test(flavor = "multi_thread")]
async fn v1_10_2_upgrades_to_26_03_with_a_plan_keeps_user_data_and_converges_after_kills() {
    let env = support::env().await;
    let client = env.client().await.expect("client");
    let work = tempfile::tempdir().expect("tempdir");
    let kfctl = Kfctl { kubeconfig: env.kubeconfig.clone(), app: work.path().join(APP) };
    let app = kfctl.app().to_owned();
    let app = app.as_str();
    let cache = tempfile::tempdir().expect("cache");
    let cache_dir = cache.path().to_str().unwrap().to_owned();

    // 1. v1.10.2's base set, deployed and ready, with the user's data.
    let archive = support::release_archive("v1.10.2");
    kfctl.ok(&["init", app, "--version", "v1.10.2", "--registry", archive.to_str().unwrap()]);
    kfctl.ok(&["delete", app, "--purge"]);
    let profile_ns: Api<Namespace> = Api::all(client.clone());
    let _ = profile_ns.delete(PROFILE, &DeleteParams::background()).await;
    wait_namespaces_gone(&client, &[PROFILE.to_string()]).await;
    support::sim_cluster::add(&kfctl.app, "v1.10.2");
    kfctl.ok(&["apply", app]);
    kfctl.ok(&["wait", app, "--timeout", "10m"]);
    let old_entries = inventory(&client).await;
    let old_kinds = kinds_of(&client, &old_entries).await;
    let before = labelled(&client, &old_kinds).await;
    let data = create_user_data(&client).await;
    assert_eq!(data.len(), 4, "{data:?}");

    // 2. Nothing to change: `kfctl diff` says so, with kubectl diff's exit code.
    let out = support::kfctl_command(&env.kubeconfig).args(["diff", app]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", tail(&String::from_utf8_lossy(&out.stdout), 40));

    // 3. Prepare 26.03 (TEST-ONLY: swap the overlays around it). The mirror serves 26.03's
    //    remote bases and is gone after.
    support::sim_cluster::remove(&kfctl.app);
    let mirror = support::mirror::MirrorServer::start(&support::shared_dir().join("registries/mirror"));
    let new_archive = support::release_archive("26.03");
    let mut prepare = support::kfctl_command(&env.kubeconfig);
    prepare.env("KFCTL_CACHE_DIR", &cache_dir).args(["upgrade", app, "--to", "26.03", "--prepare", "--registry", new_archive.to_str().unwrap(), "--mirror", &mirror.url()]);
    let out = prepare.output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{}", tail(&text, 40));
    drop(mirror);
    let artifacts = support::artifacts_dir();
    std::fs::write(artifacts.join("upgrade-prepare-v1.10.2-26.03.txt"), &text).unwrap();
    assert!(text.contains("networkpolicies -> kubeflow-namespace") && text.contains("trainer: new, in the base set: enabled"), "{text}");
    assert!(text.contains(&format!("migration {MINIO_STEP}")), "{text}");
    support::sim_cluster::add(&kfctl.app, "26.03");

    // 4. The plan, then a stop: moving MinIO's artifacts is the user's, before the upgrade.
    let (ok, text) = kfctl.run(&["upgrade", app, "--to", "26.03", "--yes"]);
    assert!(!ok, "{}", tail(&text, 40));
    // Kept for people: the README's example and the closing notes quote it.
    std::fs::write(artifacts.join("upgrade-plan-v1.10.2-26.03.txt"), &text).unwrap();
    for expected in [
        "Finishing the upgrade of app kubeflow: Kubeflow v1.10.2 -> 26.03",
        &format!("[you, BEFORE the upgrade (blocking)] {MINIO_STEP}"),
        "mc mirror old/mlpipeline ./mlpipeline-artifacts",
        "Changes on the cluster (`kfctl diff`):",
        "pipelines: ",
        "prune Deployment.apps kubeflow/minio",
        &format!("--confirm {MINIO_STEP}"),
    ] {
        assert!(text.contains(expected), "{expected:?} not in:\n{text}");
    }
    assert_eq!(labelled(&client, &old_kinds).await.len(), before.len(), "the stopped upgrade changed the cluster");

    // 5. Killed three times on the way, by what it has done: once the upgrade is recorded, in
    //    the middle of the apply, and while it waits for readiness. Each run goes on from there.
    let upgrade = ["--to", "26.03", "--yes", "--confirm", MINIO_STEP, "--timeout", "10m"];
    let started = kill_upgrade_when(&kfctl, &upgrade, &mut |e| e["reason"] == "UpgradeStarted");
    assert!(started.is_ok(), "the upgrade never started:\n{}", started.unwrap_err());
    let mut applied = 0;
    let mid = kill_upgrade_when(&kfctl, &upgrade, &mut |e| {
        if e["type"] == "object_applied" && e["outcome"] != "unchanged" {
            applied += 1;
        }
        applied == 150
    });
    assert!(mid.is_ok(), "the second run applied fewer than 150 objects:\n{}", mid.unwrap_err());
    let waiting = kill_upgrade_when(&kfctl, &upgrade, &mut |e| e["reason"] == "Applied");
    assert!(waiting.is_ok(), "the third run never finished its apply:\n{}", waiting.unwrap_err());
    let yaml = std::fs::read_to_string(kfctl.app.join("kfctl.yaml")).unwrap();
    assert!(yaml.contains("outcome: applying"), "{yaml}");
    let text = kfctl.ok(&["upgrade", app, "--to", "26.03", "--yes", "--timeout", "10m"]);
    assert!(text.contains("upgraded app kubeflow from Kubeflow v1.10.2 to 26.03"), "{}", tail(&text, 30));
    std::fs::write(artifacts.join("upgrade-finish-v1.10.2-26.03.txt"), &text).unwrap();

    // 6. 26.03's components, all ready; everything only v1.10.2 had is gone (but CRDs and
    //    PVCs); the user's data is as it was; nothing left to change.
    let new_entries = inventory(&client).await;
    let applications = resource("app.k8s.io", "v1beta1", "Application", "applications");
    let application = Api::<DynamicObject>::namespaced_with(client.clone(), APP_NAMESPACE, &applications).get(APP).await.unwrap();
    let status = &application.data["status"];
    let ready = status["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Ready").expect("Ready condition");
    assert_eq!(ready["status"], "True", "{ready}");
    let kept_old: usize = new_entries.iter().filter(|e| !e.reference.is_shared()).count();
    assert_eq!(status["componentsReady"].as_str().unwrap(), format!("{0}/{0}", kept_old - 1), "{status}");
    let components: BTreeSet<&str> = new_entries.iter().map(|e| e.component.as_str()).collect();
    assert!(components.contains("trainer") && !components.contains("networkpolicies"), "{components:?}");

    let new_kinds = kinds_of(&client, &new_entries).await;
    let now = labelled(&client, &[old_kinds.clone(), new_kinds].concat()).await;
    let desired: BTreeSet<String> = {
        let dry_run = kfctl.ok(&["apply", app, "--dry-run"]);
        let list: Value = serde_json::from_str(&dry_run).unwrap();
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| {
                let api_version = o["apiVersion"].as_str().unwrap();
                let group = api_version.split_once('/').map_or("", |(g, _)| g);
                let ns = o["metadata"]["namespace"].as_str().unwrap_or_default();
                format!("{}.{group} {ns}/{}", o["kind"].as_str().unwrap(), o["metadata"]["name"].as_str().unwrap())
            })
            .collect()
    };
    let kept_kinds = ["CustomResourceDefinition.", "PersistentVolumeClaim."];
    let left: Vec<&String> = before
        .keys()
        .filter(|k| !desired.contains(*k) && now.contains_key(*k) && !kept_kinds.iter().any(|p| k.starts_with(p)))
        .collect();
    assert!(left.is_empty(), "objects only v1.10.2 had are still there: {left:?}");
    assert!(now.keys().any(|k| k == "PersistentVolumeClaim. kubeflow/minio-pvc"), "MinIO's data volume is kept");
    assert_eq!(user_data(&client).await, data, "the user's data changed");

    let out = support::kfctl_command(&env.kubeconfig).args(["diff", app]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", tail(&String::from_utf8_lossy(&out.stdout), 40));
    let yaml = std::fs::read_to_string(kfctl.app.join("kfctl.yaml")).unwrap();
    assert!(yaml.contains("version: '26.03'") || yaml.contains("version: \"26.03\""), "{yaml}");
    assert!(yaml.contains("outcome: succeeded") && yaml.contains(&format!("- {MINIO_STEP}")), "{yaml}");

    // Leave nothing behind: the user's namespace, then the app (Kfctl's drop purges it).
    let _ = profile_ns.delete(PROFILE, &DeleteParams::background()).await;
}
