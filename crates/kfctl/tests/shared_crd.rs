//! `kfctl delete --purge` and the Application CRD that every app on a cluster shares: kept while
//! any other Application exists, removed with the last one.
//!
//! This test deletes the cluster-wide Application CRD when it is the last user, so it lives in a
//! test binary of its own (cargo runs test binaries one after another): tests of other binaries
//! are never in the middle of an apply when it does. Run inside the testenv:
//! `scripts/testenv exec -- cargo test -p kfctl --test shared_crd`.

mod support;

use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::{ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, PostParams};
use serde_json::json;
use support::{AppDir, TestNamespace, wait_until};

const CRD: &str = "applications.app.k8s.io";
/// Generous bound that only turns a hang into a readable failure.
const LIMIT: Duration = Duration::from_secs(180);

fn applications() -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("app.k8s.io", "v1beta1", "Application"), "applications")
}

fn kfctl(ns: &TestNamespace, app: &AppDir, args: &[&str]) -> (bool, String) {
    let out = ns.kfctl().args(args).arg(app.path()).args(["--app-namespace", &ns.name]).output().expect("running kfctl");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[tokio::test(flavor = "multi_thread")]
async fn purge_keeps_the_application_crd_while_another_application_exists_and_removes_it_with_the_last() {
    let ns = TestNamespace::new("shared-crd").await;
    let app = AppDir::new(&ns.name);
    app.component("settings", &[json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "settings", "namespace": ns.name}, "data": {"k": "v"}})]);
    app.config(&["settings"]);
    let (ok, out) = kfctl(&ns, &app, &["apply"]);
    assert!(ok, "{out}");

    // 1. An Application kfctl did not make (another tool's, using the same CRD) keeps it.
    let all_apps: Api<DynamicObject> = Api::all_with(ns.client.clone(), &applications());
    let ns_apps: Api<DynamicObject> = Api::namespaced_with(ns.client.clone(), &ns.name, &applications());
    let foreign: DynamicObject = serde_json::from_value(json!({"apiVersion": "app.k8s.io/v1beta1", "kind": "Application",
        "metadata": {"name": "someone-else", "namespace": ns.name}, "spec": {"selector": {"matchLabels": {"app": "x"}}}}))
    .unwrap();
    ns_apps.create(&PostParams::default(), &foreign).await.unwrap();
    let (ok, out) = kfctl(&ns, &app, &["delete", "--purge"]);
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!("{CRD}: kept: shared, still used by")) && out.contains(&format!("{}/someone-else", ns.name)),
        "{out}"
    );
    let crds: Api<CustomResourceDefinition> = Api::all(ns.client.clone());
    assert!(crds.get_opt(CRD).await.unwrap().is_some_and(|c| c.metadata.deletion_timestamp.is_none()));
    assert!(ns_apps.get_opt(&ns.name).await.unwrap().is_none(), "the purged app's own Application survived");
    ns_apps.delete("someone-else", &DeleteParams::default()).await.unwrap();

    // 2. With no other Application left (tests of other binaries have cleaned up theirs), the
    // last purge removes the CRD and says so.
    let (ok, out) = kfctl(&ns, &app, &["apply"]);
    assert!(ok, "{out}");
    let mine = (ns.name.clone(), ns.name.clone());
    wait_until("no Application but this test's on the cluster", LIMIT, || async {
        let list = all_apps.list(&ListParams::default()).await.unwrap();
        list.items.iter().all(|a| (a.metadata.namespace.clone().unwrap_or_default(), a.metadata.name.clone().unwrap_or_default()) == mine)
    })
    .await;
    let (ok, out) = kfctl(&ns, &app, &["delete", "--purge"]);
    assert!(ok, "{out}");
    assert!(out.contains(&format!("deleted CustomResourceDefinition.apiextensions.k8s.io {CRD} (shared; no other Application is left)")), "{out}");
    wait_until("the Application CRD gone", LIMIT, || async { crds.get_opt(CRD).await.unwrap().is_none() }).await;

    // 3. The next apply installs it again.
    let (ok, out) = kfctl(&ns, &app, &["apply"]);
    assert!(ok, "{out}");
    assert!(crds.get_opt(CRD).await.unwrap().is_some());
}
