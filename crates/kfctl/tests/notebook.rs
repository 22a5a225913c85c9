//! `kfctl notebook` end to end against the real API server of the testenv.
//!
//! What the notebook needs, and only that, is installed: the Notebook and PodDefault CRDs of the
//! v1.10.2 release archive (applied directly: a full base set takes minutes and none of it runs
//! on simulated nodes), a namespace standing for the profile, and the gateway Service and pod in
//! istio-system. The testenv's default StorageClass (`simnode`, which simnode provisions) holds
//! the workspace volume.
//!
//! The notebook controller does not run here (its image cannot run on simulated nodes), so the
//! test plays its part: it makes the StatefulSet (owned by the Notebook, with the Notebook's pod
//! template) and the Service, and sets the Notebook's ready status as the controller would once
//! the pod is ready. The profile controller is played the same way: the test makes the profile
//! namespace (or, in the timeout test, does not). simnode runs the pods; its kubelet endpoint
//! carries the port-forward to an HTTP server this test serves on the gateway pod's IP, as in
//! tests/open.rs.
//!
//! Run inside the testenv: `scripts/testenv exec -- cargo test -p kfctl --offline --test notebook`.
//! The forwarding test owns istio-system while it runs (kfctl looks only there).

mod support;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Service, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use support::{TestNamespace, release_archive, wait_for, wait_until};

/// Generous bound that only turns a hang into a readable failure.
const LIMIT: Duration = Duration::from_secs(120);
const RELEASE: &str = "v1.10.2";
const GATEWAY_NAMESPACE: &str = "istio-system";
const GATEWAY: &str = "istio-ingressgateway";
const CONTAINER_PORT: u16 = 8080;
const CRD_FILES: [&str; 2] = [
    "applications/jupyter/notebook-controller/upstream/crd/bases/kubeflow.org_notebooks.yaml",
    "applications/admission-webhook/upstream/base/crd.yaml",
];
const USER: &str = "learner@example.org";

fn notebook_api(client: &Client, ns: &str) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("kubeflow.org", "v1", "Notebook"), "notebooks");
    Api::namespaced_with(client.clone(), ns, &ar)
}

fn pod_default_api(client: &Client, ns: &str) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("kubeflow.org", "v1alpha1", "PodDefault"), "poddefaults");
    Api::namespaced_with(client.clone(), ns, &ar)
}

/// Applies the release's Notebook and PodDefault CRDs (server-side, so every test of this binary
/// may do it) and waits until they are established. They stay: they are the release's own.
async fn install_crds(client: &Client) {
    let archive = release_archive(RELEASE);
    let file = std::fs::File::open(&archive).expect("release archive");
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut texts = BTreeMap::new();
    for entry in tar.entries().expect("archive entries") {
        let mut entry = entry.expect("archive entry");
        let path = entry.path().expect("entry path").to_string_lossy().into_owned();
        if let Some(file) = CRD_FILES.iter().find(|f| path.ends_with(*f)) {
            let mut text = String::new();
            entry.read_to_string(&mut text).expect("CRD file");
            texts.insert(*file, text);
        }
    }
    let crds = Api::<CustomResourceDefinition>::all(client.clone());
    for file in CRD_FILES {
        let text = texts.get(file).unwrap_or_else(|| panic!("{file} is not in {}", archive.display()));
        let crd: CustomResourceDefinition = serde_saphyr::from_str(text).unwrap_or_else(|e| panic!("{file}: {e}"));
        let name = crd.metadata.name.clone().expect("CRD name");
        crds.patch(&name, &PatchParams::apply("kfctl-test").force(), &Patch::Apply(&crd))
            .await
            .unwrap_or_else(|e| panic!("applying CRD {name}: {e}"));
        wait_until(&format!("CRD {name} to be established"), LIMIT, || async {
            crds.get(&name).await.ok().and_then(|c| c.status).and_then(|s| s.conditions).is_some_and(|cs| {
                cs.iter().any(|c| c.type_ == "Established" && c.status == "True")
            })
        })
        .await;
    }
}

/// An app of release v1.10.2 whose user-namespace names `profile` and whose dex user is not
/// upstream's default. Its catalog components stay disabled (no registry content is needed:
/// kfctl notebook reads only their parameters); one component of its own, a ConfigMap in
/// `profile`, gives `kfctl apply` and `kfctl status` an app to work on.
fn app_dir(profile: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("app directory");
    std::fs::create_dir_all(dir.path().join("registry/v1.10.2")).expect("registry directory");
    let config = format!(
        "apiVersion: kfctl.dev/v1alpha1\nkind: KfctlApp\nname: nb-test\nversion: {RELEASE}\nregistry:\n  url: fixture\n  sha256: \"{}\"\n  path: registry/v1.10.2\n\
         components:\n- name: dex\n  enabled: false\n  parameters:\n    email: {USER}\n- name: user-namespace\n  enabled: false\n  parameters:\n    user: {USER}\n    profileName: {profile}\n\
         - name: marker\n  path: marker\n",
        "0".repeat(64)
    );
    std::fs::write(dir.path().join("kfctl.yaml"), config).expect("kfctl.yaml");
    let marker = dir.path().join("marker");
    std::fs::create_dir_all(&marker).unwrap();
    std::fs::write(marker.join("kustomization.yaml"), "resources:\n- marker.yaml\n").unwrap();
    let object = format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: nb-test-marker\n  namespace: {profile}\ndata:\n  app: nb-test\n");
    std::fs::write(marker.join("marker.yaml"), object).unwrap();
    dir
}

/// `kfctl status` of the app (its Application in the profile namespace).
fn kfctl_status(ns: &TestNamespace, app: &Path) -> String {
    let out = ns.kfctl().arg("status").arg(app).args(["--app-namespace", &ns.name]).output().expect("kfctl status");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "kfctl status: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

/// A running `kfctl notebook`, its output collected as it comes; killed when dropped.
struct Running {
    child: Child,
    stdout: support::Collected,
    stderr: support::Collected,
}

impl Running {
    fn start(ns: &TestNamespace, app: &Path, args: &[&str]) -> Running {
        let mut child = ns
            .kfctl()
            .arg("notebook")
            .arg(app)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting kfctl notebook");
        let stdout = support::Collected::of(child.stdout.take().expect("stdout"));
        let stderr = support::Collected::of(child.stderr.take().expect("stderr"));
        Running { child, stdout, stderr }
    }

    fn output(&self) -> String {
        format!("--- stdout\n{}--- stderr\n{}", self.stdout.text(), self.stderr.text())
    }

    fn stderr(&self) -> String {
        self.stderr.text()
    }

    /// Waits until kfctl's stderr contains `text`; fails with everything it printed.
    async fn wait_stderr(&mut self, text: &str) {
        let start = std::time::Instant::now();
        while !self.stderr().contains(text) {
            self.assert_running();
            assert!(start.elapsed() < LIMIT, "kfctl notebook did not print {text:?} within {LIMIT:?}:\n{}", self.output());
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().expect("kfctl status") {
            panic!("kfctl notebook exited ({status}):\n{}", self.output());
        }
    }

    /// The URL kfctl printed once it forwards.
    async fn url(&mut self) -> String {
        wait_for("kfctl notebook to print its URL", LIMIT, || {
            self.assert_running();
            let url = self.stdout.text().lines().find(|l| l.starts_with("http://")).map(str::to_owned);
            async move { url }
        })
        .await
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("probe port").local_addr().expect("addr").port()
}

/// An HTTP server on the gateway pod's IP answering `<token> <path>`.
async fn serve_backend(addr: SocketAddr, token: String) -> tokio::task::JoinHandle<()> {
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap_or_else(|e| panic!("binding {addr}: {e}"));
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { continue };
            let token = token.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let body = format!("{token} {}", req.uri().path());
                    async move { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body)))) }
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), service).await;
            });
        }
    })
}

/// The gateway Service and a pod behind it (as in tests/open.rs); returns the pod's IP.
async fn create_gateway(ns: &TestNamespace) -> Ipv4Addr {
    let labels = json!({"app": GATEWAY, "istio": "ingressgateway"});
    let service: Service = serde_json::from_value(json!({
        "metadata": {"name": GATEWAY},
        "spec": {"selector": labels, "ports": [{"name": "http2", "port": 80, "targetPort": "http", "protocol": "TCP"}]}
    }))
    .unwrap();
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": GATEWAY},
        "spec": {"replicas": 1, "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels},
                "spec": {"containers": [{"name": "istio-proxy", "image": "registry.invalid/kfctl-test/gateway:1",
                    "ports": [{"name": "http", "containerPort": CONTAINER_PORT}]}]}}}
    }))
    .unwrap();
    ns.api::<Service>().create(&PostParams::default(), &service).await.expect("gateway Service");
    ns.api::<Deployment>().create(&PostParams::default(), &deployment).await.expect("gateway Deployment");
    let pods = ns.api::<Pod>();
    wait_for("the gateway pod to be Running with an IP", LIMIT, || async {
        let list = pods.list(&ListParams::default().labels(&format!("app={GATEWAY}"))).await.expect("pods");
        let pod = list.items.into_iter().next()?;
        let status = pod.status?;
        (status.phase.as_deref() == Some("Running")).then_some(())?;
        status.pod_ip?.parse().ok()
    })
    .await
}

/// Plays the notebook controller: a StatefulSet owned by the Notebook running its pod template,
/// and the Service the gateway's route points at.
async fn play_notebook_controller(ns: &TestNamespace, notebook: &DynamicObject) {
    let name = notebook.metadata.name.clone().unwrap();
    let mut template = notebook.data["spec"]["template"].clone();
    template["metadata"] = json!({"labels": {"statefulset": name, "notebook-name": name}});
    let owner = json!({"apiVersion": "kubeflow.org/v1", "kind": "Notebook", "name": name,
        "uid": notebook.metadata.uid, "controller": true, "blockOwnerDeletion": true});
    let sts: StatefulSet = serde_json::from_value(json!({
        "metadata": {"name": name, "ownerReferences": [owner]},
        "spec": {"replicas": 1, "serviceName": "", "selector": {"matchLabels": {"statefulset": name}}, "template": template},
    }))
    .expect("StatefulSet");
    ns.api::<StatefulSet>().create(&PostParams::default(), &sts).await.expect("creating the notebook's StatefulSet");
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": name, "ownerReferences": [owner]},
        "spec": {"selector": {"statefulset": name}, "ports": [{"name": format!("http-{name}"), "port": 80, "targetPort": 8888}]},
    }))
    .unwrap();
    ns.api::<Service>().create(&PostParams::default(), &svc).await.expect("creating the notebook's Service");
}

#[tokio::test(flavor = "multi_thread")]
async fn notebook_creates_waits_forwards_reuses_and_deletes() {
    let gateway_ns = TestNamespace::fixed(GATEWAY_NAMESPACE).await;
    // The profile namespace, as the profile controller would have made it, with the
    // default-editor ServiceAccount the notebook runs as.
    let profile = TestNamespace::new("notebook-profile").await;
    let client = profile.client.clone();
    let editor: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": "default-editor"}})).unwrap();
    let accounts = profile.api::<ServiceAccount>();
    accounts.create(&PostParams::default(), &editor).await.expect("ServiceAccount default-editor");
    wait_until("ServiceAccount default-editor with its token", LIMIT, || async {
        accounts.get_opt("default-editor").await.ok().flatten().is_some_and(|sa| sa.secrets.is_some_and(|s| !s.is_empty()))
    })
    .await;
    install_crds(&client).await;
    let gateway_ip = create_gateway(&gateway_ns).await;
    let token = format!("gateway-{}", std::process::id());
    let backend = serve_backend(SocketAddr::from((gateway_ip, CONTAINER_PORT)), token.clone()).await;
    // simnode keeps the notebook's pod failing to pull its image until the test clears it.
    profile.fail_pods("codelabs-", "ImagePullBackOff").await;

    let app = app_dir(&profile.name);
    let out = profile.kfctl().arg("apply").arg(app.path()).args(["--app-namespace", &profile.name]).output().unwrap();
    assert!(out.status.success(), "kfctl apply: {}", String::from_utf8_lossy(&out.stderr));
    // The notebook server is a step of the journey that kfctl status shows, not part of Ready.
    let before = kfctl_status(&profile, app.path());
    assert!(before.contains(": Ready, 1/1 components ready"), "{before}");
    assert!(before.contains(&format!("notebook server: none: {}/codelabs: not created; `kfctl notebook` makes it", profile.name)), "{before}");
    let port = free_port();
    let mut run = Running::start(&profile, app.path(), &["--port", &port.to_string(), "--no-browser"]);

    // The objects, as the Jupyter web app would make them from the release's defaults.
    let notebooks = notebook_api(&client, &profile.name);
    let notebook = wait_for("kfctl to create the Notebook", LIMIT, || {
        run.assert_running();
        let notebooks = notebooks.clone();
        async move { notebooks.get_opt("codelabs").await.expect("reading the Notebook") }
    })
    .await;
    let spec = &notebook.data["spec"]["template"]["spec"];
    let labels = notebook.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels.get("access-ml-pipeline").map(String::as_str), Some("true"));
    let annotations = notebook.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(annotations.get("notebooks.kubeflow.org/creator").map(String::as_str), Some(USER));
    assert_eq!(spec["serviceAccountName"], "default-editor");
    let container = &spec["containers"][0];
    assert_eq!(container["name"], "codelabs");
    assert_eq!(container["image"], "ghcr.io/kubeflow/kubeflow/notebook-servers/jupyter-scipy:v1.10.0");
    assert_eq!(container["resources"], json!({"requests": {"cpu": "0.5", "memory": "1.0Gi"}, "limits": {"cpu": "0.6", "memory": "1.2Gi"}}));
    assert_eq!(container["volumeMounts"][0], json!({"name": "workspace", "mountPath": "/home/jovyan"}));
    let init = &spec["initContainers"][0];
    assert_eq!(init["command"][0], "sh", "{init}");
    assert!(init["command"][2].as_str().unwrap().contains("cp \"$CODELABS_SOURCE\"/*.ipynb"), "{init}");
    assert!(init["env"].as_array().unwrap().contains(&json!({"name": "CODELABS_SOURCE", "value": "/opt/kfctl-codelabs"})), "{init}");
    assert!(init["volumeMounts"].as_array().unwrap().contains(&json!({"name": "codelabs", "mountPath": "/opt/kfctl-codelabs", "readOnly": true})), "{init}");
    assert_eq!(
        spec["volumes"],
        json!([
            {"name": "workspace", "persistentVolumeClaim": {"claimName": "codelabs-workspace"}},
            {"name": "dshm", "emptyDir": {"medium": "Memory"}},
            {"name": "codelabs", "configMap": {"name": "codelabs-codelabs"}},
        ])
    );
    let pvc = profile.api::<PersistentVolumeClaim>().get("codelabs-workspace").await.expect("the workspace PVC");
    let pvc_spec = pvc.spec.unwrap();
    assert_eq!(pvc_spec.access_modes, Some(vec!["ReadWriteOnce".to_owned()]));
    assert_eq!(pvc_spec.resources.unwrap().requests.unwrap()["storage"].0, "5Gi");
    let configmap = profile.api::<ConfigMap>().get("codelabs-codelabs").await.expect("the codelabs ConfigMap");
    let data = configmap.data.unwrap_or_default();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("codelabs").join(RELEASE);
    let mut expected = BTreeMap::new();
    for entry in std::fs::read_dir(&shipped).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "ipynb") {
            expected.insert(path.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read_to_string(&path).unwrap());
        }
    }
    assert_eq!(expected.len(), 5);
    assert_eq!(data, expected, "the ConfigMap holds exactly the release's codelabs");
    let pod_default = pod_default_api(&client, &profile.name).get("access-ml-pipeline").await.expect("the PodDefault");
    assert_eq!(pod_default.data["spec"]["selector"], json!({"matchLabels": {"access-ml-pipeline": "true"}}));

    // Before the controller acts, kfctl says so; then the pod cannot pull its image, and kfctl
    // names that.
    run.wait_stderr("the notebook controller has not created pod codelabs-0 yet").await;
    play_notebook_controller(&profile, &notebook).await;
    run.wait_stderr("image pull of ghcr.io/kubeflow/kubeflow/notebook-servers/jupyter-scipy:v1.10.0 failed (ImagePullBackOff)").await;
    profile.clear_pod_failures().await;
    let pods = profile.api::<Pod>();
    wait_until("the notebook pod to be Running", LIMIT, || async {
        pods.get_opt("codelabs-0").await.ok().flatten().and_then(|p| p.status).and_then(|s| s.phase).as_deref() == Some("Running")
    })
    .await;
    // The controller's status once its StatefulSet is ready.
    let status = json!({"status": {"readyReplicas": 1, "conditions": [], "containerState": {"running": {}}}});
    notebooks.patch_status("codelabs", &PatchParams::default(), &Patch::Merge(&status)).await.expect("setting the Notebook's status");

    let url = run.url().await;
    let lab = format!("/notebook/{}/codelabs/lab/tree/codelabs", profile.name);
    assert_eq!(url, format!("http://localhost:{port}{lab}"));
    let stdout = run.stdout.text();
    assert!(stdout.contains(&format!("sign in as {USER} with the password you set for dex")), "{stdout}");
    assert!(!stdout.contains("12341234"), "a password was printed:\n{stdout}");
    assert!(run.stderr().contains("workspace: a 5Gi volume on the default StorageClass simnode"), "{}", run.output());
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let body = http.get(&url).send().await.expect("GET the printed URL").text().await.unwrap();
    assert_eq!(body, format!("{token} {lab}"), "the URL answers through the gateway forward");
    let after = kfctl_status(&profile, app.path());
    assert!(after.contains(&format!("notebook server: ready: {}/codelabs", profile.name)), "{after}");
    // The Application lists it too, outside componentsReady.
    let applications = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("app.k8s.io", "v1beta1", "Application"), "applications");
    let application = Api::<DynamicObject>::namespaced_with(client.clone(), &profile.name, &applications).get("nb-test").await.expect("the app's Application");
    let listed = application.data["status"]["components"].as_array().cloned().unwrap_or_default();
    let entry = listed.iter().find(|c| c["kind"] == "Notebook" && c["name"] == "codelabs").unwrap_or_else(|| panic!("no Notebook in {listed:?}"));
    assert_eq!((entry["namespace"].as_str(), entry["status"].as_str()), (Some(profile.name.as_str()), Some("Ready")), "{entry}");
    assert!(entry["message"].as_str().unwrap().contains("not required for Ready"), "{entry}");
    let counted: usize = application.data["status"]["componentsReady"].as_str().unwrap().split('/').nth(1).unwrap().parse().unwrap();
    assert_eq!(counted, listed.len() - 1, "the notebook server is not counted");
    run.assert_running();
    // The whole run, for whoever reads the test's output (`--nocapture`).
    eprintln!("kfctl notebook printed:\n{}", run.output());
    drop(run);

    // A second run reuses the server.
    let uid = notebook.metadata.uid.clone();
    let out = profile.kfctl().arg("notebook").arg(app.path()).arg("--no-forward").output().expect("second run");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stderr.contains(&format!("reusing notebook server {}/codelabs", profile.name)), "{stderr}");
    assert!(!stderr.contains("created"), "{stderr}");
    assert!(stdout.lines().next() == Some(lab.as_str()), "{stdout}");
    assert_eq!(notebooks.get("codelabs").await.unwrap().metadata.uid, uid, "the same Notebook");

    // --delete asks first; with no terminal to ask on, it refuses and says to pass --yes.
    let out = profile.kfctl().arg("notebook").arg(app.path()).arg("--delete").stdin(Stdio::null()).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("hint: pass --yes"), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(notebooks.get_opt("codelabs").await.unwrap().is_some(), "nothing is deleted without confirmation");
    let out = profile.kfctl().arg("notebook").arg(app.path()).args(["--delete", "--yes"]).output().unwrap();
    let stdout_err = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stdout_err}");
    for what in ["Notebook", "PersistentVolumeClaim", "ConfigMap"] {
        assert!(stdout_err.contains(&format!("deleted {what} {}/codelabs", profile.name)), "{stdout_err}");
    }
    let pvcs = profile.api::<PersistentVolumeClaim>();
    let configmaps = profile.api::<ConfigMap>();
    wait_until("the Notebook, its PVC and its ConfigMap to be gone", LIMIT, || async {
        notebooks.get_opt("codelabs").await.unwrap().is_none()
            && pvcs.get_opt("codelabs-workspace").await.unwrap().is_none()
            && configmaps.get_opt("codelabs-codelabs").await.unwrap().is_none()
    })
    .await;
    backend.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_profile_namespace_that_never_appears_names_the_profile_controller() {
    let owner = TestNamespace::new("notebook-noprofile").await;
    install_crds(&owner.client).await;
    let missing = format!("{}-never", owner.name);
    let app = app_dir(&missing);
    let out = owner.kfctl().arg("notebook").arg(app.path()).args(["--timeout", "3s", "--no-forward"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("error: the profile namespace {missing} did not appear within 3s")), "{stderr}");
    assert!(stderr.contains("hint: the profile controller (component `profiles`) creates it"), "{stderr}");
    // Plain lines (stderr is not a terminal): the waiting line once, not once per poll.
    let waiting = format!("waiting for profile namespace {missing}: the profile controller has not created it yet");
    assert_eq!(stderr.matches(&waiting).count(), 1, "{stderr}");

    // --output json: the same wait as JSON lines on stdout.
    let out = owner.kfctl().arg("notebook").arg(app.path()).args(["--timeout", "2s", "--no-forward", "--output", "json"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let first: serde_json::Value = serde_json::from_str(stdout.lines().find(|l| l.contains(r#""type":"waiting""#)).unwrap_or_else(|| panic!("{stdout}"))).unwrap();
    assert_eq!(first["type"], "waiting");
    assert_eq!(first["what"], format!("profile namespace {missing}"));

    // On a terminal (a pseudo-terminal from `script`), a spinner line redrawn in place.
    let command = format!(
        "{} notebook {} --timeout 3s --no-forward",
        env!("CARGO_BIN_EXE_kfctl"),
        app.path().display()
    );
    let out = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("KUBECONFIG", &owner.env.kubeconfig)
        .env("TERM", "xterm")
        .output()
        .expect("script (util-linux) gives kfctl a terminal");
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(screen.contains(&format!("waiting for profile namespace {missing}")), "{screen}");
    assert!(screen.matches(&format!("waiting for profile namespace {missing}")).count() > 1, "redrawn as it ticks: {screen:?}");
    assert!(screen.contains('\r') && screen.contains("\x1b["), "drawn in place with terminal controls: {screen:?}");
    assert!(screen.contains("error: the profile namespace"), "{screen}");
    assert!(notebook_api(&owner.client, &missing).list(&ListParams::default()).await.map(|l| l.items.is_empty()).unwrap_or(true));
}
