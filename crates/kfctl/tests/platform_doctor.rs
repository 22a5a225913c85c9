//! `kfctl doctor` and auto-configuration against the real control plane of scripts/testenv:
//! a default StorageClass or none, GPU nodes or none, LoadBalancer Services with and without
//! addresses, a cluster too small for what the app requests, a user without cluster-scoped rights.
//!
//! Run inside the testenv: `scripts/testenv exec -- cargo test -p kfctl --offline --test
//! platform_doctor`.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    LoadBalancerIngress, LoadBalancerStatus, Node, NodeCondition, NodeSpec, NodeStatus, Secret, Service, ServiceAccount,
    ServicePort, ServiceSpec, ServiceStatus, Taint,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use support::TestNamespace;

const ARCHIVE: &str = "/work/shared/registries/kubeflow-manifests-v1.4.1.tar.gz";

/// An app made by the real `kfctl init` from the real archive, on platform `existing`.
fn new_app(holder: &Path) -> PathBuf {
    let app = holder.join("app");
    let out = Command::new(env!("CARGO_BIN_EXE_kfctl"))
        .args(["init", app.to_str().unwrap(), "--registry", ARCHIVE])
        .output()
        .unwrap();
    assert!(out.status.success(), "kfctl init: {}", String::from_utf8_lossy(&out.stderr));
    app
}

fn doctor(kubeconfig: &Path, args: &[&str]) -> (Output, Vec<Value>) {
    let out = support::kfctl_command(kubeconfig).arg("doctor").args(args).args(["--output", "json"]).output().unwrap();
    let findings = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (out, findings)
}

fn finding<'a>(findings: &'a [Value], check: &str) -> &'a Value {
    findings.iter().find(|f| f["check"] == check).unwrap_or_else(|| panic!("no {check} finding in {findings:#?}"))
}

fn kfctl_yaml(app: &Path) -> Value {
    serde_saphyr::from_str(&std::fs::read_to_string(app.join("kfctl.yaml")).unwrap()).unwrap()
}

#[tokio::test]
async fn doctor_passes_on_the_testenv_with_the_base_set() {
    let env = support::env().await;
    let holder = tempfile::tempdir().unwrap();
    let app = new_app(holder.path());
    let (out, findings) = doctor(&env.kubeconfig, &[app.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(finding(&findings, "reach")["severity"], "ok", "{findings:#?}");
    // The testenv runs Kubernetes 1.20, inside v1.4.1's 1.19-1.21.
    assert_eq!(finding(&findings, "version")["severity"], "ok", "{findings:#?}");
    assert!(finding(&findings, "version")["message"].as_str().unwrap().contains("v1.20"), "{findings:#?}");
    // simnode's nodes (16 CPUs, 64Gi each) hold the base set's requests.
    let capacity = finding(&findings, "capacity");
    assert_eq!(capacity["severity"], "ok", "{findings:#?} {stderr}");
    assert!(capacity["message"].as_str().unwrap().contains("the enabled components request"), "{capacity}");
    assert_eq!(finding(&findings, "architecture")["severity"], "ok", "{findings:#?}");
    assert_eq!(finding(&findings, "permissions")["severity"], "ok", "{findings:#?}");
    let errors = findings.iter().filter(|f| f["severity"] == "error").count();
    assert_eq!(out.status.success(), errors == 0, "exit status follows the errors: {findings:#?}");
}

#[tokio::test]
async fn doctor_fails_when_the_cluster_is_unreachable() {
    let holder = tempfile::tempdir().unwrap();
    let dead = holder.path().join("dead.kubeconfig");
    std::fs::write(
        &dead,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: dead\n  cluster:\n    server: https://127.0.0.1:1\nusers:\n- name: dead\n  user: {}\ncontexts:\n- name: dead\n  context:\n    cluster: dead\n    user: dead\ncurrent-context: dead\n",
    )
    .unwrap();
    let (out, findings) = doctor(&dead, &[holder.path().to_str().unwrap()]);
    assert!(!out.status.success());
    let reach = finding(&findings, "reach");
    assert_eq!(reach["severity"], "error");
    assert!(reach["hint"].as_str().unwrap().contains("--context"), "{reach}");
}

/// A kubeconfig for a ServiceAccount with no RBAC at all.
async fn powerless_kubeconfig(ns: &TestNamespace, dir: &Path) -> PathBuf {
    let sas: Api<ServiceAccount> = ns.api();
    let sa = ServiceAccount { metadata: ObjectMeta { name: Some("nobody".into()), ..Default::default() }, ..Default::default() };
    sas.create(&PostParams::default(), &sa).await.unwrap();
    // Kubernetes 1.20's token controller fills a token Secret for every ServiceAccount.
    let secrets: Api<Secret> = ns.api();
    let token = support::wait_for("a token for ServiceAccount nobody", Duration::from_secs(60), || async {
        let list = secrets.list(&ListParams::default()).await.ok()?;
        list.items.into_iter().find_map(|s| {
            let annotations = s.metadata.annotations.as_ref()?;
            (annotations.get("kubernetes.io/service-account.name")? == "nobody")
                .then(|| s.data.as_ref()?.get("token").map(|t| String::from_utf8(t.0.clone()).unwrap()))
                .flatten()
        })
    })
    .await;
    let admin: Value = serde_saphyr::from_str(&std::fs::read_to_string(&ns.env.kubeconfig).unwrap()).unwrap();
    let cluster = &admin["clusters"][0]["cluster"];
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {}\n    certificate-authority-data: {}\nusers:\n- name: nobody\n  user:\n    token: {token}\ncontexts:\n- name: nobody\n  context:\n    cluster: c\n    user: nobody\ncurrent-context: nobody\n",
        cluster["server"].as_str().unwrap(),
        cluster["certificate-authority-data"].as_str().unwrap()
    );
    let path = dir.join("nobody.kubeconfig");
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test]
async fn doctor_reports_missing_cluster_scoped_permissions() {
    let ns = TestNamespace::new("doctor-permissions").await;
    let holder = tempfile::tempdir().unwrap();
    let kubeconfig = powerless_kubeconfig(&ns, holder.path()).await;
    let (out, findings) = doctor(&kubeconfig, &[holder.path().to_str().unwrap()]);
    assert!(!out.status.success(), "{findings:#?}");
    let permissions = finding(&findings, "permissions");
    assert_eq!(permissions["severity"], "error", "{findings:#?}");
    let message = permissions["message"].as_str().unwrap();
    assert!(message.contains("customresourcedefinitions.apiextensions.k8s.io") && message.contains("clusterroles"), "{message}");
    assert!(permissions["hint"].as_str().unwrap().contains("cluster-admin"));
}

#[tokio::test]
async fn a_too_small_cluster_is_an_error_naming_both_sides() {
    let env = support::env().await;
    let client = env.client().await.unwrap();
    let nodes = Api::<Node>::all(client).list(&ListParams::default()).await.unwrap().items;
    let (have, usable) = kfctl::platform::doctor::allocatable(&nodes);
    assert!(usable > 0);
    // The base set fits (see above); a set asking for one CPU more than the cluster has does not.
    let too_much = json!({"kind": "Deployment", "spec": {"replicas": 1, "template": {"spec": {"containers": [
        {"resources": {"requests": {"cpu": format!("{}", have.cpu.ceil() + 1.0), "memory": "1Gi"}}}]}}}});
    let finding = kfctl::platform::doctor::check_capacity(&nodes, &[too_much]);
    assert_eq!(finding.severity, kfctl::platform::doctor::Severity::Error, "{finding:?}");
    assert!(finding.message.contains("cluster too small") && finding.message.contains(&format!("{usable} usable nodes")), "{finding:?}");
    let fits = json!({"kind": "Deployment", "spec": {"template": {"spec": {"containers": [
        {"resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}]}}}});
    assert_eq!(kfctl::platform::doctor::check_capacity(&nodes, &[fits]).severity, kfctl::platform::doctor::Severity::Ok);
}

/// One test for every auto-configuration case, in sequence: they change cluster-wide state
/// (a default StorageClass, a GPU node) that parallel tests must not see half-way.
#[tokio::test]
async fn auto_configuration_follows_storage_gpus_and_load_balancers() {
    let ns = TestNamespace::new("autoconfig").await;
    let client = ns.client.clone();
    let holder = tempfile::tempdir().unwrap();
    let app = new_app(holder.path());
    let app_arg = app.to_str().unwrap();
    let classes: Api<StorageClass> = Api::all(client.clone());
    let nodes: Api<Node> = Api::all(client.clone());
    let simulated_gpus: u64 = kfctl::platform::detect::gpu_nodes(&nodes.list(&ListParams::default()).await.unwrap().items)
        .iter()
        .map(|(_, n)| n)
        .sum();
    let had_default = classes
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .any(kfctl::platform::detect::is_default_class);

    // 1. A default StorageClass, a GPU node, and a LoadBalancer Service that got an address.
    let class_name = format!("{}-default", ns.name);
    let class = StorageClass {
        metadata: ObjectMeta {
            name: Some(class_name.clone()),
            annotations: Some(BTreeMap::from([("storageclass.kubernetes.io/is-default-class".into(), "true".into())])),
            ..Default::default()
        },
        provisioner: "kfctl.test/no-provisioner".into(),
        ..Default::default()
    };
    classes.create(&PostParams::default(), &class).await.unwrap();
    ns.delete_on_drop::<StorageClass>(&class_name);

    // A node only for detection: unschedulable and tainted, so no test's Pods land on it.
    let gpu_node_name = format!("{}-gpu", ns.name);
    let gpu_node = Node {
        metadata: ObjectMeta { name: Some(gpu_node_name.clone()), ..Default::default() },
        spec: Some(NodeSpec {
            unschedulable: Some(true),
            taints: Some(vec![Taint { key: "kfctl.test/detection-only".into(), effect: "NoSchedule".into(), ..Default::default() }]),
            ..Default::default()
        }),
        status: Some(NodeStatus {
            allocatable: Some(BTreeMap::from([
                ("cpu".into(), Quantity("8".into())),
                ("memory".into(), Quantity("32Gi".into())),
                ("nvidia.com/gpu".into(), Quantity("2".into())),
            ])),
            conditions: Some(vec![NodeCondition { type_: "Ready".into(), status: "False".into(), ..Default::default() }]),
            ..Default::default()
        }),
    };
    nodes.create(&PostParams::default(), &gpu_node).await.unwrap();
    ns.delete_on_drop::<Node>(&gpu_node_name);
    // Node status is a subresource: make sure the allocatable GPUs are really there.
    let status = json!({"status": {"allocatable": {"cpu": "8", "memory": "32Gi", "nvidia.com/gpu": "2"}}});
    nodes.patch_status(&gpu_node_name, &PatchParams::default(), &Patch::Merge(&status)).await.unwrap();

    let services: Api<Service> = ns.api();
    let lb = Service {
        metadata: ObjectMeta { name: Some("lb".into()), ..Default::default() },
        spec: Some(ServiceSpec {
            type_: Some("LoadBalancer".into()),
            ports: Some(vec![ServicePort { port: 80, ..Default::default() }]),
            ..Default::default()
        }),
        ..Default::default()
    };
    services.create(&PostParams::default(), &lb).await.unwrap();
    let with_address = ServiceStatus {
        load_balancer: Some(LoadBalancerStatus {
            // A documentation address (RFC 5737): only written into status, never contacted.
            ingress: Some(vec![LoadBalancerIngress { ip: Some("192.0.2.10".into()), ..Default::default() }]),
        }),
        ..Default::default()
    };
    services
        .patch_status("lb", &PatchParams::default(), &Patch::Merge(&json!({"status": with_address})))
        .await
        .unwrap();

    let (out, _) = doctor(&ns.env.kubeconfig, &[app_arg, "--save"]);
    assert!(String::from_utf8_lossy(&out.stderr).is_empty() || out.status.code().is_some(), "doctor ran");
    let cluster = kfctl_yaml(&app)["cluster"].clone();
    assert_eq!(cluster["storage"]["persistentVolumes"], true, "{cluster:#}");
    if !had_default {
        assert_eq!(cluster["storage"]["storageClass"], class_name.as_str(), "{cluster:#}");
    }
    assert_eq!(cluster["gpu"]["enabled"], true, "{cluster:#}");
    assert_eq!(cluster["gpu"]["allocatable"].as_u64().unwrap_or(0), simulated_gpus + 2, "{cluster:#}");
    assert_eq!(cluster["gpu"]["resource"], "nvidia.com/gpu", "{cluster:#}");
    assert!(cluster["gpu"]["reason"].as_str().unwrap().contains(&gpu_node_name), "{cluster:#}");
    assert_eq!(cluster["access"]["gateway"], "load-balancer", "{cluster:#}");
    assert!(cluster["access"]["reason"].as_str().unwrap().contains(&format!("{}/lb", ns.name)), "{cluster:#}");
    // The choices are visible in the file a person reviews.
    let text = std::fs::read_to_string(app.join("kfctl.yaml")).unwrap();
    assert!(text.contains("persistentVolumes: true") && text.contains("gateway: load-balancer"), "{text}");

    // 2. Take them away again: no default StorageClass (unless the cluster had one before), no
    //    GPU node, a LoadBalancer Service without an address.
    classes.delete(&class_name, &DeleteParams::default()).await.unwrap();
    nodes.delete(&gpu_node_name, &DeleteParams::default()).await.unwrap();
    let no_address = json!({"status": {"loadBalancer": {"ingress": null}}});
    services.patch_status("lb", &PatchParams::default(), &Patch::Merge(&no_address)).await.unwrap();

    let (out, findings) = doctor(&ns.env.kubeconfig, &[app_arg, "--save"]);
    let cluster = kfctl_yaml(&app)["cluster"].clone();
    if !had_default {
        assert_eq!(cluster["storage"]["persistentVolumes"], false, "{cluster:#}");
        assert!(cluster["storage"]["reason"].as_str().unwrap().contains("no default StorageClass"), "{cluster:#}");
        // doctor says the same, as a warning with what to do.
        let storage = finding(&findings, "storage");
        assert_eq!(storage["severity"], "warning", "{findings:#?}");
        assert!(storage["hint"].as_str().unwrap().contains("is-default-class"), "{storage}");
    }
    assert_eq!(cluster["gpu"]["enabled"], simulated_gpus > 0, "{cluster:#}");
    assert_eq!(cluster["gpu"]["allocatable"].as_u64().unwrap_or(0), simulated_gpus, "{cluster:#}");
    assert_eq!(cluster["access"]["gateway"], "port-forward", "{cluster:#}");
    assert!(cluster["access"]["reason"].as_str().unwrap().contains("has no address"), "{cluster:#}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"check\":\"storage\""));
}

/// A fake /proc (KFCTL_PROC_ROOT) with the given inotify limits, 32 GiB available and 8 CPUs.
fn fake_proc(dir: &Path, instances: u64, watches: u64) -> PathBuf {
    let root = dir.join("proc");
    std::fs::create_dir_all(root.join("sys/fs/inotify")).unwrap();
    std::fs::write(root.join("sys/fs/inotify/max_user_instances"), format!("{instances}\n")).unwrap();
    std::fs::write(root.join("sys/fs/inotify/max_user_watches"), format!("{watches}\n")).unwrap();
    std::fs::write(root.join("meminfo"), "MemTotal: 67108864 kB\nMemAvailable: 33554432 kB\n").unwrap();
    let cpuinfo: String = (0..8).map(|i| format!("processor\t: {i}\n\n")).collect();
    std::fs::write(root.join("cpuinfo"), cpuinfo).unwrap();
    root
}

/// Needs no cluster: the host checks of a local platform run before the cluster is reached.
#[test]
fn doctor_checks_the_host_s_inotify_limits_for_a_local_cluster() {
    let holder = tempfile::tempdir().unwrap();
    let doctor_on = |proc_root: &Path, platform: &str| -> Vec<Value> {
        let out = Command::new(env!("CARGO_BIN_EXE_kfctl"))
            .args(["doctor", holder.path().to_str().unwrap(), "--version", "26.03", "--platform", platform, "--output", "json"])
            .env("KFCTL_PROC_ROOT", proc_root)
            .env("KUBECONFIG", holder.path().join("no-kubeconfig"))
            .output()
            .unwrap();
        assert!(!out.status.success(), "no cluster is reachable");
        String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.starts_with('{')).map(|l| serde_json::from_str(l).unwrap()).collect()
    };

    let low = fake_proc(&holder.path().join("low"), 128, 8192);
    let findings = doctor_on(&low, "kind");
    let inotify = finding(&findings, "inotify");
    assert_eq!(inotify["severity"], "error", "{findings:#?}");
    assert_eq!(
        inotify["hint"],
        "run `sudo sysctl -w fs.inotify.max_user_instances=2280 && sudo sysctl -w fs.inotify.max_user_watches=1255360`; to keep it after a reboot: `printf 'fs.inotify.max_user_instances = 2280\\nfs.inotify.max_user_watches = 1255360\\n' | sudo tee /etc/sysctl.d/99-kubeflow.conf`"
    );

    let enough = fake_proc(&holder.path().join("enough"), 2280, 1255360);
    let findings = doctor_on(&enough, "k3d");
    for check in ["inotify", "host-memory", "host-cpu"] {
        assert_eq!(finding(&findings, check)["severity"], "ok", "{findings:#?}");
    }
    // A cluster elsewhere does not run on this machine: no host checks.
    let findings = doctor_on(&low, "existing");
    assert!(findings.iter().all(|f| f["check"] != "inotify"), "{findings:#?}");
}
