//! The whole of Kubeflow (the base set of v1.4.1, v1.10.2 and 26.03, each from the real upstream
//! archive; 26.03's remote bases through a mirror server that is stopped once `kfctl init` has
//! vendored them) through the real `kfctl` binary against the real API server of
//! scripts/testenv: one apply with zero errors, ready, Application status and Events, a no-op
//! second apply, pruning one component, and `delete --purge`.
//!
//! The simulated nodes run no webhook or conversion server, and the API server is 1.20, so each
//! app carries the TEST-ONLY overlay of its release in tests/fixtures/sim-cluster/<version>/ (see
//! its README), added as per-component patches in kfctl.yaml, the way a user customises a
//! component. Without it, 26.03 is refused by kfctl's API preflight (tested here too).
//!
//! Run inside the testenv: `scripts/testenv exec -- cargo test -p kfctl --test kubeflow_deploy`.
//! The releases deploy into the cluster's real `kubeflow` namespaces (the Application
//! `kubeflow/kubeflow` lives there), so they take turns; each removes everything it applied, also
//! when it fails.

mod support;

use support::kubeflow::{APP, APP_LABEL, APP_NAMESPACE, INVENTORY, Kfctl, inventory, kinds_of, labelled, namespaces, summary, tail, wait_namespaces_gone};

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Event};
use kfctl::config::AppConfig;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams};
use serde_json::Value;

/// A leaf of the base set of every release: nothing depends on it.
const REMOVED_COMPONENT: &str = "tensorboard";

/// The releases share the cluster's `kubeflow` namespaces: one deploys at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// One release's base set, from init to delete (see the module doc).
async fn deploy_release(version: &str, min_patched: usize) {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let env = support::env().await;
    let client = env.client().await.expect("client");
    let work = tempfile::tempdir().expect("tempdir");
    let kfctl = Kfctl { kubeconfig: env.kubeconfig.clone(), app: work.path().join(APP) };
    let app = kfctl.app().to_owned();
    let app = app.as_str();

    // 1. An app directory from the real archive (verified by the catalog's content pin), the
    //    base set. 26.03's remote bases come through a mirror server, stopped once init has
    //    vendored them: everything after renders offline.
    let archive = support::release_archive(version);
    let cache = tempfile::tempdir().expect("cache");
    let mirror = support::mirror::MirrorServer::start(&support::shared_dir().join("registries/mirror"));
    let mut init = support::kfctl_command(&env.kubeconfig);
    init.args(["init", app, "--version", version, "--registry", archive.to_str().unwrap(), "--mirror", &mirror.url()]);
    let out = init.env("KFCTL_CACHE_DIR", cache.path()).output().expect("run kfctl init");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "kfctl init failed:\n{text}");
    drop(mirror);
    drop(cache);
    let config = AppConfig::load(&kfctl.app.join("kfctl.yaml")).expect("kfctl.yaml");
    if version == "26.03" {
        let remotes: Vec<&str> = config.registry.remotes.iter().map(|r| r.url.as_str()).collect();
        // What the catalog's directories reach (lws only comes with trainer's data-cache overlay,
        // jobset v0.6.0 only with Trainer v2 overlays of the training-operator's tree).
        let wanted = ["https://github.com/argoproj/argo-workflows", "https://github.com/kubernetes-sigs/jobset/releases/download/v0.10.1/manifests.yaml"];
        assert_eq!(remotes, wanted, "{text}");
    }

    // Leftovers of an interrupted earlier run would turn the first apply into a re-run.
    kfctl.ok(&["delete", app, "--purge"]);
    let dry_run = kfctl.ok(&["apply", app, "--dry-run"]);
    let rendered: Value = serde_json::from_str(&dry_run).expect("--dry-run prints a v1 List");
    let rendered_namespaces: Vec<String> = rendered["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|o| o["kind"] == "Namespace")
        .filter_map(|o| o["metadata"]["name"].as_str().map(str::to_owned))
        .collect();
    wait_namespaces_gone(&client, &rendered_namespaces).await;

    if version != "v1.4.1" {
        // As released, today's Kubeflow needs APIs this 1.20 server lacks: the preflight refuses
        // it, naming them, and writes nothing.
        let (ok, out) = kfctl.run(&["apply", app]);
        assert!(!ok, "a plain {version} applied on Kubernetes 1.20:\n{}", tail(&out, 30));
        for api in ["autoscaling/v2 HorizontalPodAutoscaler", "policy/v1 PodDisruptionBudget", "nothing was applied", "the server is Kubernetes v1.20.2"] {
            assert!(out.contains(api), "{api}:\n{}", tail(&out, 30));
        }
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), APP_NAMESPACE);
        assert!(matches!(cms.get_opt(INVENTORY).await, Ok(None) | Err(_)), "the refused apply wrote the inventory");
    }
    let patched = support::sim_cluster::add(&kfctl.app, version);
    assert!(patched.len() >= min_patched, "overlay components: {patched:?}");

    let dry_run = kfctl.ok(&["apply", app, "--dry-run"]);
    let rendered: Value = serde_json::from_str(&dry_run).expect("--dry-run prints a v1 List");
    let items = rendered["items"].as_array().expect("items");
    let object_count = items.len();
    // The app's own objects; the rest (the Application CRD) every app on the cluster shares.
    let owned_count = items.iter().filter(|o| o["metadata"]["labels"][APP_LABEL] == APP).count();
    assert!(owned_count > 500 && owned_count <= object_count, "the base set renders {object_count} objects, {owned_count} the app's own");

    // 2. One apply, zero errors, no re-run: every object of the app created.
    let out = kfctl.ok(&["apply", app]);
    if version != "v1.4.1" {
        assert!(out.contains(&format!("warning: Kubernetes v1.20.2 is outside what Kubeflow {version} supports")), "{}", tail(&out, 40));
    }
    let done = summary(&out);
    assert_eq!(done.get("failed"), Some(&0), "{}", tail(&out, 40));
    let applied: usize = ["created", "configured", "unchanged"].iter().map(|w| done.get(*w).copied().unwrap_or(0)).sum();
    assert_eq!(applied, object_count, "not every rendered object was applied in one pass:\n{}", tail(&out, 40));
    assert!(done.get("created").copied().unwrap_or(0) >= owned_count, "{}", tail(&out, 40));
    assert!(!out.contains("not attempted") && !out.contains("held back"), "{}", tail(&out, 40));
    let entries = inventory(&client).await;
    assert_eq!(entries.len(), owned_count, "inventory vs the app's rendered objects");
    let kinds = kinds_of(&client, &entries).await;

    // 3. Ready: kfctl wait, then every Deployment and StatefulSet, and the Application.
    kfctl.ok(&["wait", app, "--timeout", "10m"]);
    let lp = ListParams::default().labels(&format!("{APP_LABEL}={APP}"));
    let deployments = Api::<Deployment>::all(client.clone()).list(&lp).await.unwrap().items;
    assert!(deployments.len() > 40, "{} Deployments", deployments.len());
    for d in &deployments {
        let name = d.metadata.name.clone().unwrap_or_default();
        let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let status = d.status.clone().unwrap_or_default();
        assert!(status.observed_generation >= d.metadata.generation, "Deployment {name}: generation not observed");
        assert!(status.available_replicas.unwrap_or(0) >= want && status.updated_replicas.unwrap_or(0) >= want, "Deployment {name} not ready: {status:?}");
    }
    let statefulsets = Api::<StatefulSet>::all(client.clone()).list(&lp).await.unwrap().items;
    assert!(!statefulsets.is_empty(), "no StatefulSets");
    for s in &statefulsets {
        let want = s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let ready = s.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0);
        assert!(ready >= want, "StatefulSet {:?} has {ready}/{want} ready", s.metadata.name);
    }
    let applications = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("app.k8s.io", "v1beta1", "Application"), "applications");
    let application = Api::<DynamicObject>::namespaced_with(client.clone(), APP_NAMESPACE, &applications).get(APP).await.unwrap();
    let status = &application.data["status"];
    let ready = status["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Ready").expect("Ready condition");
    assert_eq!(ready["status"], "True", "{ready}");
    let components_ready = status["componentsReady"].as_str().unwrap();
    // Every object of the inventory but the Application itself.
    assert_eq!(components_ready, format!("{0}/{0}", owned_count - 1));
    let table = std::process::Command::new("kubectl")
        .env("KUBECONFIG", &env.kubeconfig)
        .args(["get", "application", APP, "-n", APP_NAMESPACE])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.contains("True") && table.contains(components_ready), "{table}");

    // Events on the Application, as `kubectl get events -n kubeflow` shows them: every phase
    // started and applied, every component applied, the apply, and ready.
    let events: Vec<(String, String)> = Api::<Event>::namespaced(client.clone(), APP_NAMESPACE)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.involved_object.kind.as_deref() == Some("Application") && e.involved_object.name.as_deref() == Some(APP))
        .map(|e| (e.reason.unwrap_or_default(), e.message.unwrap_or_default()))
        .collect();
    let has = |reason: &str, prefix: &str| events.iter().any(|(r, m)| r == reason && m.starts_with(prefix));
    let phases: BTreeSet<String> = entries.iter().map(|e| e.phase.to_string()).collect();
    assert!(phases.len() >= 6, "phases: {phases:?}");
    for phase in &phases {
        assert!(has("PhaseStarted", &format!("phase {phase}:")), "no PhaseStarted for {phase}: {events:?}");
        assert!(has("PhaseApplied", &format!("phase {phase}:")), "no PhaseApplied for {phase}: {events:?}");
    }
    let components: BTreeSet<String> = entries.iter().map(|e| e.component.clone()).collect();
    for c in &components {
        assert!(has("ComponentApplied", &format!("component {c}:")), "no ComponentApplied for {c}: {events:?}");
    }
    assert!(has("Applied", "apply finished: ") && has("ApplicationReady", ""), "{events:?}");

    // 4. A second apply writes nothing.
    let before = labelled(&client, &kinds).await;
    assert_eq!(before.len(), owned_count, "labelled objects vs the app's rendered objects");
    let out = kfctl.ok(&["apply", app]);
    assert!(out.contains("nothing to change"), "{}", tail(&out, 40));
    let after = labelled(&client, &kinds).await;
    assert_eq!(after.keys().collect::<Vec<_>>(), before.keys().collect::<Vec<_>>());
    let written: Vec<&String> = before.keys().filter(|k| before[*k].kfctl_entry != after[*k].kfctl_entry).collect();
    assert!(written.is_empty(), "a no-op apply wrote: {written:?}");
    // Unchanged resourceVersions, but for objects a controller keeps writing (the HPA controller
    // updates its HorizontalPodAutoscalers' status every 15 s): those must not be kfctl's doing.
    let changed: Vec<&String> =
        before.keys().filter(|k| before[*k].resource_version != after[*k].resource_version && !after[*k].other_writers).collect();
    assert!(changed.is_empty(), "a no-op apply changed the resourceVersion of: {changed:?}");

    // 5. Removing a component prunes exactly its objects (its CRD is kept without --purge).
    let theirs: BTreeSet<String> = before.iter().filter(|(_, l)| l.component == REMOVED_COMPONENT).map(|(k, _)| k.clone()).collect();
    let crds: BTreeSet<String> = theirs.iter().filter(|k| k.starts_with("CustomResourceDefinition.")).cloned().collect();
    assert!(theirs.len() > crds.len() && !crds.is_empty(), "{theirs:?}");
    kfctl.ok(&["component", "remove", REMOVED_COMPONENT, "--app", app]);
    let out = kfctl.ok(&["apply", app]);
    let done = summary(&out);
    assert_eq!(done.get("pruned"), Some(&(theirs.len() - crds.len())), "{}", tail(&out, 40));
    assert_eq!(done.get("failed"), Some(&0));
    let after = labelled(&client, &kinds).await;
    let gone: BTreeSet<String> = before.keys().filter(|k| !after.contains_key(*k)).cloned().collect();
    let expected_gone: BTreeSet<String> = theirs.difference(&crds).cloned().collect();
    assert_eq!(gone, expected_gone, "prune removed other objects, or missed some");
    for crd in &crds {
        assert!(after.contains_key(crd), "{crd} was deleted without --purge");
    }
    // Nothing else was written by kfctl (the Application lists fewer kinds); the aggregation
    // controller re-aggregates the ClusterRoles that gathered the removed component's rules.
    let rewritten: Vec<&String> = after
        .iter()
        .filter(|(k, l)| {
            let by_kfctl = before[*k].kfctl_entry != l.kfctl_entry;
            let by_nobody_else = before[*k].resource_version != l.resource_version && !l.other_writers && !l.aggregated;
            (by_kfctl || by_nobody_else) && !k.starts_with("Application.")
        })
        .map(|(k, _)| k)
        .collect();
    assert!(rewritten.is_empty(), "pruning {REMOVED_COMPONENT} rewrote: {rewritten:?}");
    let remaining = inventory(&client).await;
    assert_eq!(remaining.len(), owned_count - expected_gone.len(), "the inventory still lists pruned objects");

    // 6. delete --purge leaves none of kfctl's objects.
    let out = kfctl.ok(&["delete", app, "--purge"]);
    assert!(out.contains("failed 0"), "{}", tail(&out, 20));
    let left = labelled(&client, &kinds).await;
    assert!(left.is_empty(), "left behind: {:?}", left.keys().collect::<Vec<_>>());
    wait_namespaces_gone(&client, &namespaces(&entries)).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), APP_NAMESPACE);
    assert!(matches!(cms.get_opt(INVENTORY).await, Ok(None) | Err(_)), "the inventory survived delete");
}

#[tokio::test(flavor = "multi_thread")]
async fn v1_4_1_base_set_applies_in_one_pass_gets_ready_prunes_one_component_and_deletes() {
    deploy_release("v1.4.1", 2).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn v1_10_2_base_set_applies_in_one_pass_gets_ready_prunes_one_component_and_deletes() {
    deploy_release("v1.10.2", 6).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kubeflow_26_03_is_refused_as_released_then_deploys_with_the_overlay_and_deletes() {
    deploy_release("26.03", 8).await;
}
