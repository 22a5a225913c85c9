//! The test environment itself: real control plane + simnode behave like a cluster.
//!
//! Run inside the testenv (see tests/support/mod.rs): `scripts/test`, or
//! `scripts/testenv exec -- cargo test -p kfctl --offline --test testenv`.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::{
    RuleWithOperations, ServiceReference, ValidatingWebhook, ValidatingWebhookConfiguration, WebhookClientConfig,
};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, ContainerPort, Endpoints, Node, PersistentVolume, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PersistentVolumeClaimVolumeSource, Pod, PodSpec, PodTemplateSpec, Service, ServicePort,
    ServiceSpec, Volume, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::ByteString;
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};
use support::webhook::{AdmissionWebhook, DENY_LABEL, Policy};
use support::{TEST_NAMESPACE_LABEL, TestNamespace, wait_for, wait_until};

/// Generous bound that only turns a hang into a readable failure.
const LIMIT: Duration = Duration::from_secs(120);

fn pod_range_contains(ip: &str) -> bool {
    ip.parse::<Ipv4Addr>().is_ok_and(|ip| {
        let [a, b, _, _] = ip.octets();
        (a, b) == (10, 244)
    })
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn container(name: &str, port: Option<i32>) -> Container {
    Container {
        name: name.into(),
        image: Some("registry.invalid/kfctl-test/app:1".into()),
        ports: port.map(|p| vec![ContainerPort { container_port: p, ..Default::default() }]),
        ..Default::default()
    }
}

fn pod(name: &str, pod_labels: &[(&str, &str)], annotations: &[(&str, &str)], port: Option<i32>) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(labels(pod_labels)),
            annotations: Some(labels(annotations)),
            ..Default::default()
        },
        spec: Some(PodSpec { containers: vec![container("app", port)], ..Default::default() }),
        ..Default::default()
    }
}

fn service(name: &str, selector: &[(&str, &str)], port: i32, target_port: i32) -> Service {
    Service {
        metadata: ObjectMeta { name: Some(name.into()), ..Default::default() },
        spec: Some(ServiceSpec {
            selector: Some(labels(selector)),
            ports: Some(vec![ServicePort {
                port,
                protocol: Some("TCP".into()),
                target_port: Some(IntOrString::Int(target_port)),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn container_waiting_reason(pod: &Pod) -> Option<String> {
    pod.status.as_ref()?.container_statuses.as_ref()?.first()?.state.as_ref()?.waiting.as_ref()?.reason.clone()
}

fn restart_count(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.first())
        .map_or(0, |c| c.restart_count)
}

fn pod_condition(pod: &Pod, type_: &str) -> Option<String> {
    pod.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == type_).map(|c| c.status.clone())
}

#[tokio::test]
async fn simulated_nodes_are_ready_untainted_and_heartbeating() {
    let ns = TestNamespace::new("nodes").await;
    let nodes = Api::<Node>::all(ns.client.clone())
        .list(&ListParams::default().labels("simnode.kfctl.dev/simulated=true"))
        .await
        .unwrap();
    assert!(nodes.items.len() >= 3, "expected at least 3 simulated nodes, got {}", nodes.items.len());
    let leases: Api<Lease> = Api::namespaced(ns.client.clone(), "kube-node-lease");
    for node in &nodes.items {
        let name = node.metadata.name.clone().unwrap();
        assert!(support::node_is_ready(node), "node {name} is not Ready: {:?}", node.status);
        let taints = node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
        assert!(taints.is_empty(), "node {name} has taints {taints:?}");
        let status = node.status.as_ref().unwrap();
        let capacity = status.capacity.as_ref().unwrap();
        for resource in ["cpu", "memory", "pods"] {
            assert!(capacity.contains_key(resource), "node {name} lacks {resource} capacity");
        }
        let internal_ip = status
            .addresses
            .iter()
            .flatten()
            .find(|a| a.type_ == "InternalIP")
            .map(|a| a.address.parse::<Ipv4Addr>().unwrap())
            .unwrap_or_else(|| panic!("node {name} has no InternalIP"));
        assert!(!internal_ip.is_loopback(), "node {name} InternalIP {internal_ip} is loopback");
        let lease = leases.get(&name).await.unwrap_or_else(|e| panic!("lease of node {name}: {e}"));
        let spec = lease.spec.unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some(name.as_str()));
        assert!(spec.renew_time.is_some(), "lease of {name} never renewed");
    }
}

#[tokio::test]
async fn deployment_of_three_becomes_available_with_endpoints() {
    let ns = TestNamespace::new("deployment").await;
    let app = [("app", "web")];
    let deployment = Deployment {
        metadata: ObjectMeta { name: Some("web".into()), ..Default::default() },
        spec: Some(DeploymentSpec {
            replicas: Some(3),
            selector: LabelSelector { match_labels: Some(labels(&app)), ..Default::default() },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(labels(&app)), ..Default::default() }),
                spec: Some(PodSpec { containers: vec![container("web", Some(8080))], ..Default::default() }),
            },
            ..Default::default()
        }),
        ..Default::default()
    };
    let deployments: Api<Deployment> = ns.api();
    deployments.create(&PostParams::default(), &deployment).await.unwrap();
    ns.api::<Service>().create(&PostParams::default(), &service("web", &app, 80, 8080)).await.unwrap();

    wait_until("Deployment web Available with 3 available replicas", LIMIT, || async {
        let d = deployments.get("web").await.unwrap();
        let status = d.status.unwrap_or_default();
        let available = status.conditions.iter().flatten().any(|c| c.type_ == "Available" && c.status == "True");
        available && status.available_replicas == Some(3) && status.ready_replicas == Some(3)
    })
    .await;

    let endpoints: Api<Endpoints> = ns.api();
    let ips: Vec<String> = wait_for("Endpoints web with 3 ready addresses", LIMIT, || async {
        let ep = endpoints.get_opt("web").await.unwrap()?;
        let ips: Vec<String> =
            ep.subsets.iter().flatten().flat_map(|s| s.addresses.iter().flatten()).map(|a| a.ip.clone()).collect();
        (ips.len() == 3).then_some(ips)
    })
    .await;
    let distinct: BTreeSet<&String> = ips.iter().collect();
    assert_eq!(distinct.len(), 3, "pod IPs are not unique: {ips:?}");
    for ip in &ips {
        assert!(pod_range_contains(ip), "endpoint IP {ip} is outside the simulated pod range 10.244.0.0/16");
    }
    let ep = endpoints.get("web").await.unwrap();
    let ports: Vec<i32> = ep.subsets.iter().flatten().flat_map(|s| s.ports.iter().flatten()).map(|p| p.port).collect();
    assert_eq!(ports, vec![8080], "endpoint ports should be the target port");

    // Pods are spread by the real scheduler over the simulated nodes and carry their node's IP.
    let pods = ns.api::<Pod>().list(&ListParams::default().labels("app=web")).await.unwrap();
    for p in &pods.items {
        let status = p.status.as_ref().unwrap();
        assert_eq!(status.phase.as_deref(), Some("Running"));
        assert_eq!(pod_condition(p, "Ready").as_deref(), Some("True"));
        let host_ip = status.host_ip.as_deref().unwrap();
        assert!(!host_ip.parse::<Ipv4Addr>().unwrap().is_loopback());
    }
}

#[tokio::test]
async fn pod_told_to_fail_is_crash_looping_until_released() {
    let ns = TestNamespace::new("crashloop").await;
    let pods: Api<Pod> = ns.api();
    // Run-time rule through simnode's ConfigMap...
    ns.fail_pods("crasher", "CrashLoopBackOff").await;
    pods.create(&PostParams::default(), &pod("crasher", &[("app", "crasher")], &[], None)).await.unwrap();
    // ...and the per-pod annotation.
    let annotated = pod("annotated", &[], &[("simnode.kfctl.dev/fail", "CrashLoopBackOff")], None);
    pods.create(&PostParams::default(), &annotated).await.unwrap();
    // A healthy neighbour is not affected by either.
    pods.create(&PostParams::default(), &pod("healthy", &[], &[], None)).await.unwrap();

    for name in ["crasher", "annotated"] {
        wait_until(&format!("pod {name} in CrashLoopBackOff with restarts climbing"), LIMIT, || async {
            let p = pods.get(name).await.unwrap();
            container_waiting_reason(&p).as_deref() == Some("CrashLoopBackOff") && restart_count(&p) >= 2
        })
        .await;
        let p = pods.get(name).await.unwrap();
        assert_eq!(pod_condition(&p, "Ready").as_deref(), Some("False"), "crash-looping pod {name} must not be Ready");
        let ip = p.status.as_ref().and_then(|s| s.pod_ip.clone()).unwrap_or_default();
        assert!(pod_range_contains(&ip), "pod {name} IP {ip:?} outside the pod range");
    }
    wait_until("pod healthy Ready", LIMIT, || async {
        pod_condition(&pods.get("healthy").await.unwrap(), "Ready").as_deref() == Some("True")
    })
    .await;

    // Removing the rule lets the pod recover, keeping its restart history.
    let restarts_before = restart_count(&pods.get("crasher").await.unwrap());
    ns.clear_pod_failures().await;
    wait_until("pod crasher Ready after the rule was removed", LIMIT, || async {
        pod_condition(&pods.get("crasher").await.unwrap(), "Ready").as_deref() == Some("True")
    })
    .await;
    assert!(restart_count(&pods.get("crasher").await.unwrap()) >= restarts_before);

    // Graceful deletion completes (simnode plays the kubelet's final grace-0 delete).
    pods.delete("crasher", &DeleteParams::default()).await.unwrap();
    wait_until("pod crasher gone after graceful delete", LIMIT, || async {
        pods.get_opt("crasher").await.unwrap().is_none()
    })
    .await;
}

#[tokio::test]
async fn job_pods_run_to_completion() {
    let ns = TestNamespace::new("job").await;
    let job = Job {
        metadata: ObjectMeta { name: Some("once".into()), ..Default::default() },
        spec: Some(JobSpec {
            template: PodTemplateSpec {
                metadata: None,
                spec: Some(PodSpec {
                    containers: vec![container("once", None)],
                    restart_policy: Some("Never".into()),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    };
    let jobs: Api<Job> = ns.api();
    jobs.create(&PostParams::default(), &job).await.unwrap();
    wait_until("Job once Complete", LIMIT, || async {
        let status = jobs.get("once").await.unwrap().status.unwrap_or_default();
        status.succeeded == Some(1)
            && status.conditions.iter().flatten().any(|c| c.type_ == "Complete" && c.status == "True")
    })
    .await;
}

#[tokio::test]
async fn claims_of_the_default_storage_class_bind_and_their_pods_run() {
    let ns = TestNamespace::new("volumes").await;
    let claims: Api<PersistentVolumeClaim> = ns.api();
    let claim = PersistentVolumeClaim {
        metadata: ObjectMeta { name: Some("data".into()), ..Default::default() },
        spec: Some(PersistentVolumeClaimSpec {
            // No class named: the DefaultStorageClass admission plugin picks simnode's default.
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([("storage".to_string(), Quantity("1Gi".into()))])),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    claims.create(&PostParams::default(), &claim).await.unwrap();
    let mut with_volume = pod("db", &[], &[], None);
    let spec = with_volume.spec.as_mut().unwrap();
    spec.volumes = Some(vec![Volume {
        name: "data".into(),
        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource { claim_name: "data".into(), read_only: None }),
        ..Default::default()
    }]);
    ns.api::<Pod>().create(&PostParams::default(), &with_volume).await.unwrap();

    let volume_name = wait_for("claim data Bound", LIMIT, || async {
        let c = claims.get("data").await.unwrap();
        (c.status?.phase.as_deref() == Some("Bound")).then_some(c.spec?.volume_name?)
    })
    .await;
    let volumes: Api<PersistentVolume> = Api::all(ns.client.clone());
    let volume = volumes.get(&volume_name).await.unwrap();
    assert_eq!(volume.spec.as_ref().and_then(|s| s.storage_class_name.as_deref()), Some("simnode"));
    let pods: Api<Pod> = ns.api();
    wait_until("pod db (with the claim) Running and Ready", LIMIT, || async {
        pod_condition(&pods.get("db").await.unwrap(), "Ready").as_deref() == Some("True")
    })
    .await;

    // reclaimPolicy Delete: once pod and claim are gone, so is the volume.
    pods.delete("db", &DeleteParams::default()).await.unwrap();
    claims.delete("data", &DeleteParams::default()).await.unwrap();
    wait_until("volume of claim data deleted", LIMIT, || async { volumes.get_opt(&volume_name).await.unwrap().is_none() })
        .await;
}

#[tokio::test]
async fn real_kfctl_binary_reaches_the_testenv_api_server() {
    let ns = TestNamespace::new("kfctl-binary").await;
    let empty_app_dir = tempfile::tempdir().unwrap();
    // v1.4.1: the release whose range (1.19 to 1.21) holds this 1.20 server.
    let output = ns.kfctl().arg("doctor").arg(empty_app_dir.path()).args(["--version", "v1.4.1"]).output().expect("running kfctl");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "kfctl doctor failed against the testenv: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // The server version is a fact of this environment, not of kfctl's wording.
    assert!(stdout.contains("v1.20.2"), "kfctl doctor did not report the testenv's Kubernetes v1.20.2: {stdout}");
}

#[tokio::test]
async fn admission_webhook_behind_a_service_admits_and_denies_through_the_apiserver() {
    let ns = TestNamespace::new("webhook").await;
    const PORT: u16 = 8443;
    // 1. A simulated pod gives the webhook its address; this process serves on it.
    let pods: Api<Pod> = ns.api();
    pods.create(&PostParams::default(), &pod("webhook", &[("app", "webhook")], &[], Some(PORT.into())))
        .await
        .unwrap();
    let pod_ip: Ipv4Addr = wait_for("pod webhook Ready with an IP", LIMIT, || async {
        let p = pods.get("webhook").await.unwrap();
        (pod_condition(&p, "Ready").as_deref() == Some("True")).then(|| p.status?.pod_ip?.parse().ok())?
    })
    .await;
    assert!(pod_range_contains(&pod_ip.to_string()), "webhook pod IP {pod_ip} outside the pod range");

    let service_name = "admission";
    let webhook = AdmissionWebhook::new(service_name, &ns.name, Policy::DenyLabelled(DENY_LABEL.into()));
    webhook.serve(SocketAddr::from((pod_ip, PORT))).await;

    // 2. The Service in front of it, and the webhook registration scoped to this namespace.
    ns.api::<Service>()
        .create(&PostParams::default(), &service(service_name, &[("app", "webhook")], 443, PORT.into()))
        .await
        .unwrap();
    // The API server resolves the Service through its Endpoints (aggregator routing): wait until
    // the real endpoints controller lists the webhook pod.
    let endpoints: Api<Endpoints> = ns.api();
    wait_until("Endpoints admission listing the webhook pod", LIMIT, || async {
        let Some(ep) = endpoints.get_opt(service_name).await.unwrap() else { return false };
        ep.subsets.iter().flatten().flat_map(|s| s.addresses.iter().flatten()).any(|a| a.ip == pod_ip.to_string())
    })
    .await;
    let config_name = format!("{}-deny-labelled", ns.name);
    let vwc = ValidatingWebhookConfiguration {
        metadata: ObjectMeta { name: Some(config_name.clone()), ..Default::default() },
        webhooks: Some(vec![ValidatingWebhook {
            name: "deny-labelled.kfctl.dev".into(),
            admission_review_versions: vec!["v1".into()],
            side_effects: "None".into(),
            failure_policy: Some("Fail".into()),
            timeout_seconds: Some(10),
            client_config: WebhookClientConfig {
                ca_bundle: Some(ByteString(webhook.ca_pem().as_bytes().to_vec())),
                service: Some(ServiceReference {
                    namespace: ns.name.clone(),
                    name: service_name.into(),
                    path: Some("/validate".into()),
                    port: Some(443),
                }),
                url: None,
            },
            namespace_selector: Some(LabelSelector {
                match_labels: Some(labels(&[(TEST_NAMESPACE_LABEL, &ns.name)])),
                ..Default::default()
            }),
            rules: Some(vec![RuleWithOperations {
                api_groups: Some(vec!["".into()]),
                api_versions: Some(vec!["v1".into()]),
                operations: Some(vec!["CREATE".into()]),
                resources: Some(vec!["configmaps".into()]),
                scope: Some("Namespaced".into()),
            }]),
            ..Default::default()
        }]),
    };
    let vwcs: Api<ValidatingWebhookConfiguration> = Api::all(ns.client.clone());
    vwcs.create(&PostParams::default(), &vwc).await.unwrap();
    ns.delete_on_drop::<ValidatingWebhookConfiguration>(&config_name);

    // 3. The API server picks the registration up asynchronously: wait until a labelled object is
    // denied, then assert on fresh requests.
    let cms: Api<ConfigMap> = ns.api();
    let cm = |name: &str, deny: bool| ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: deny.then(|| labels(&[(DENY_LABEL, "yes")])),
            ..Default::default()
        },
        ..Default::default()
    };
    let mut probe = 0;
    wait_until("the API server to call the webhook", LIMIT, || {
        probe += 1;
        let (cms, obj) = (cms.clone(), cm(&format!("probe-{probe}"), true));
        async move {
            match cms.create(&PostParams::default(), &obj).await {
                Err(kube::Error::Api(status)) => status.message.contains("kfctl test webhook denies"),
                _ => false,
            }
        }
    })
    .await;

    cms.create(&PostParams::default(), &cm("allowed", false))
        .await
        .expect("the webhook should admit an unlabelled ConfigMap");
    let seen = webhook.received();
    assert!(
        seen.iter().any(|r| r.name == "allowed" && r.operation == "CREATE" && r.kind == "ConfigMap" && r.allowed),
        "the admitted request did not go through the webhook: {seen:?}"
    );
    assert!(cms.get_opt("allowed").await.unwrap().is_some());

    let err = cms.create(&PostParams::default(), &cm("denied", true)).await.expect_err("the webhook should deny");
    let kube::Error::Api(status) = err else { panic!("expected an API error, got {err:?}") };
    assert!(
        status.message.contains("kfctl test webhook denies denied: it carries the kfctl-test/deny label"),
        "denial does not carry the webhook's message: {status:?}"
    );
    assert!(cms.get_opt("denied").await.unwrap().is_none(), "a denied ConfigMap must not exist");
}
