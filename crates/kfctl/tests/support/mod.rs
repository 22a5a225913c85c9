//! Support for kfctl's integration tests against the real control plane of `scripts/testenv`.
//!
//! Use it with `mod support;` from a test file. The test binary must run inside the testenv
//! network namespace, where the API server (127.0.0.1:6443), the simulated pod range
//! (10.244.0.0/16, routed to loopback) and the test's own servers share one loopback:
//!
//! ```text
//! cargo build -p kfctl --tests                       # outside: the netns has no registry access
//! scripts/testenv up
//! scripts/testenv exec -- cargo test -p kfctl --offline
//! ```
//!
//! or just `scripts/test`. `exec` sets `KFCTL_TESTENV_KUBECONFIG`; without it (or with the
//! cluster down) every test that asks for the cluster fails with a message saying how to run it,
//! rather than passing silently.
//!
//! Each test gets its own namespace ([`TestNamespace`]), deleted when it is dropped, and a fresh
//! `kube::Client` (a client belongs to the tokio runtime it was made on, and every
//! `#[tokio::test]` has its own runtime).
#![allow(dead_code)] // each test file uses a different part of this module

pub mod fixture_release;
pub mod kubeflow;
pub mod mirror;
pub mod oci_registry;
pub mod registry;
pub mod sim_cluster;
pub mod webhook;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

/// Set by `scripts/testenv exec` to the admin kubeconfig of the running environment.
pub const KUBECONFIG_ENV: &str = "KFCTL_TESTENV_KUBECONFIG";
/// Label put on every test namespace (value: the namespace name), for webhook selectors.
pub const TEST_NAMESPACE_LABEL: &str = "kfctl.dev/test-namespace";
/// simnode's fault ConfigMap (see crates/simnode/src/fault.rs).
const FAULTS_NAMESPACE: &str = "kube-system";
const FAULTS_NAME: &str = "simnode-faults";
/// simnode's image-pull opt-in ConfigMap (see crates/simnode/src/pull.rs).
const PULLS_NAME: &str = "simnode-image-pulls";

const HOW_TO_RUN: &str = "hint: these tests need the real control plane of scripts/testenv; run them \
with `scripts/test`, or `scripts/testenv up` then `scripts/testenv exec -- cargo test -p kfctl --offline`";

/// The environment every test shares: found and checked once per test binary.
#[derive(Clone, Debug)]
pub struct TestEnv {
    /// Admin kubeconfig of the testenv cluster.
    pub kubeconfig: PathBuf,
}

fn ensure_crypto_provider() {
    // One provider for the whole process (ring), installed before the first TLS connection.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The running testenv. Panics, with the command to use, when tests are not run inside it or the
/// API server does not answer.
pub async fn env() -> TestEnv {
    static CHECKED: OnceLock<Result<TestEnv, String>> = OnceLock::new();
    ensure_crypto_provider();
    if let Some(result) = CHECKED.get() {
        return result.clone().unwrap_or_else(|e| panic!("{e}"));
    }
    let result = check_env().await;
    let result = CHECKED.get_or_init(|| result).clone();
    result.unwrap_or_else(|e| panic!("{e}"))
}

async fn check_env() -> Result<TestEnv, String> {
    let kubeconfig = std::env::var_os(KUBECONFIG_ENV)
        .map(PathBuf::from)
        .ok_or_else(|| format!("error: {KUBECONFIG_ENV} is not set: not running inside scripts/testenv\n  {HOW_TO_RUN}"))?;
    let env = TestEnv { kubeconfig };
    let client = env.client().await.map_err(|e| format!("error: {e}\n  {HOW_TO_RUN}"))?;
    let nodes = Api::<Node>::all(client).list(&Default::default()).await.map_err(|e| {
        format!(
            "error: testenv API server ({}) does not answer: {e}\n  hint: scripts/testenv status; {HOW_TO_RUN}",
            env.kubeconfig.display()
        )
    })?;
    let ready = nodes.items.iter().filter(|n| node_is_ready(n)).count();
    if ready == 0 {
        return Err("error: the testenv has no Ready node (is simnode running?)\n  hint: scripts/testenv status; logs in /var/lib/kfctl-testenv/logs".into());
    }
    Ok(env)
}

/// Whether the node's Ready condition is True.
pub fn node_is_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

impl TestEnv {
    /// A new client for the current tokio runtime.
    pub async fn client(&self) -> Result<Client, String> {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig)
            .map_err(|e| format!("reading testenv kubeconfig {}: {e}", self.kubeconfig.display()))?;
        let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .map_err(|e| format!("loading testenv kubeconfig {}: {e}", self.kubeconfig.display()))?;
        Client::try_from(config).map_err(|e| format!("creating a client for the testenv: {e}"))
    }
}

/// A namespace of one test, deleted (with everything in it) when dropped.
pub struct TestNamespace {
    /// Namespace name, unique per test run: `kt-<test>-<pid>-<n>`.
    pub name: String,
    /// Client for the testenv (made on the test's runtime).
    pub client: Client,
    /// The shared environment.
    pub env: TestEnv,
    /// (simnode ConfigMap, key) this namespace set, removed on drop.
    fault_keys: std::sync::Mutex<Vec<(&'static str, String)>>,
    cluster_objects: std::sync::Mutex<Vec<(ApiResource, String)>>,
}

impl TestNamespace {
    /// Creates a namespace for the test `test` and waits until pods can be created in it (the
    /// service-account controller has made its `default` ServiceAccount and the tokens
    /// controller its token).
    pub async fn new(test: &str) -> TestNamespace {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let env = env().await;
        let client = env.client().await.unwrap_or_else(|e| panic!("{e}"));
        let slug: String = test
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' })
            .take(30)
            .collect();
        let name = format!("kt-{}-{}-{}", slug.trim_matches('-'), std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed));
        Self::create(env, client, name).await
    }

    /// The namespace `name` itself, for a test of something that looks in a fixed namespace
    /// (`kfctl open` and istio-system). The test owns it until dropped: a leftover of an
    /// interrupted test run (it carries [`TEST_NAMESPACE_LABEL`]) is deleted first; a namespace
    /// that is someone else's makes the test fail rather than touch it.
    pub async fn fixed(name: &str) -> TestNamespace {
        let env = env().await;
        let client = env.client().await.unwrap_or_else(|e| panic!("{e}"));
        let api = Api::<Namespace>::all(client.clone());
        wait_until(&format!("namespace {name} to be free for this test"), Duration::from_secs(300), || async {
            let Some(ns) = api.get_opt(name).await.unwrap_or_else(|e| panic!("reading namespace {name}: {e}")) else {
                return true;
            };
            let labels = ns.metadata.labels.unwrap_or_default();
            if labels.get(TEST_NAMESPACE_LABEL).map(String::as_str) != Some(name) && ns.metadata.deletion_timestamp.is_none() {
                panic!("namespace {name} exists and is not a test's\n  hint: this test needs {name} for itself; delete it from the testenv");
            }
            let _ = api.delete(name, &DeleteParams::background()).await;
            false
        })
        .await;
        Self::create(env, client, name.to_owned()).await
    }

    async fn create(env: TestEnv, client: Client, name: String) -> TestNamespace {
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some(BTreeMap::from([(TEST_NAMESPACE_LABEL.to_string(), name.clone())])),
                ..Default::default()
            },
            ..Default::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .unwrap_or_else(|e| panic!("creating test namespace {name}: {e}"));
        let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), &name);
        // On 1.20 the ServiceAccount admission plugin also rejects pods until the tokens
        // controller has added the account's token Secret.
        wait_until(&format!("ServiceAccount {name}/default with its token"), Duration::from_secs(120), || async {
            sas.get_opt("default").await.ok().flatten().is_some_and(|sa| sa.secrets.is_some_and(|s| !s.is_empty()))
        })
        .await;
        TestNamespace { name, client, env, fault_keys: Default::default(), cluster_objects: Default::default() }
    }

    /// A typed API for objects in this namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }

    /// The real kfctl binary with KUBECONFIG pointing at the testenv. Add args and run it.
    pub fn kfctl(&self) -> Command {
        kfctl_command(&self.env.kubeconfig)
    }

    /// Makes simnode keep pods of this namespace whose name starts with `pod_name_prefix` failing
    /// with `reason` (`CrashLoopBackOff`, `ImagePullBackOff`, `NotReady`) until
    /// [`Self::clear_pod_failures`] or the namespace is dropped.
    pub async fn fail_pods(&self, pod_name_prefix: &str, reason: &str) {
        let key = format!("{}.{}", self.name, if pod_name_prefix.is_empty() { "all" } else { pod_name_prefix });
        let rule = format!("{reason} {}/{pod_name_prefix}", self.name);
        set_fault_rule(&self.client, FAULTS_NAME, &key, Some(&rule)).await;
        self.fault_keys.lock().expect("fault keys").push((FAULTS_NAME, key));
    }

    /// Makes simnode start pods of this namespace only once their images resolve in their
    /// registries: `registries` maps a registry host to `{"caPEM": ..., "insecure": ...}`.
    /// Undone when the namespace is dropped.
    pub async fn check_image_pulls(&self, registries: serde_json::Value) {
        let rule = serde_json::json!({ "namespace": self.name, "registries": registries }).to_string();
        set_fault_rule(&self.client, PULLS_NAME, &self.name, Some(&rule)).await;
        self.fault_keys.lock().expect("fault keys").push((PULLS_NAME, self.name.clone()));
    }

    /// Deletes the cluster-scoped object `name` of kind `K` (e.g. a webhook configuration the test
    /// registered) when this namespace is dropped, pass or fail.
    pub fn delete_on_drop<K>(&self, name: &str)
    where
        K: kube::Resource<DynamicType = ()>,
    {
        self.cluster_objects.lock().expect("cluster objects").push((ApiResource::erase::<K>(&()), name.to_string()));
    }

    /// Removes the failure rule [`Self::fail_pods`] set for `pod_name_prefix`; the others stay.
    pub async fn clear_pod_failure(&self, pod_name_prefix: &str) {
        let key = format!("{}.{}", self.name, if pod_name_prefix.is_empty() { "all" } else { pod_name_prefix });
        set_fault_rule(&self.client, FAULTS_NAME, &key, None).await;
        self.fault_keys.lock().expect("fault keys").retain(|k| *k != (FAULTS_NAME, key.clone()));
    }

    /// Removes the failure rules this namespace set.
    pub async fn clear_pod_failures(&self) {
        // Only the fault rules: an image-pull opt-in stays until the namespace is dropped.
        let faults: Vec<_> = {
            let mut keys = self.fault_keys.lock().expect("fault keys");
            let (faults, others) = std::mem::take(&mut *keys).into_iter().partition(|(cm, _)| *cm == FAULTS_NAME);
            *keys = others;
            faults
        };
        for (cm, key) in faults {
            set_fault_rule(&self.client, cm, &key, None).await;
        }
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        // Drop cannot await, and the test's runtime may be shutting down: clean up on a thread of
        // our own with its own runtime and client.
        let name = self.name.clone();
        let env = self.env.clone();
        let keys = std::mem::take(&mut *self.fault_keys.lock().expect("fault keys"));
        let cluster_objects = std::mem::take(&mut *self.cluster_objects.lock().expect("cluster objects"));
        let cleanup = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async move {
                let Ok(client) = env.client().await else { return };
                for (cm, key) in keys {
                    set_fault_rule(&client, cm, &key, None).await;
                }
                for (resource, name) in cluster_objects {
                    let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
                    let _ = api.delete(&name, &DeleteParams::default()).await;
                }
                let _ = Api::<Namespace>::all(client).delete(&name, &DeleteParams::background()).await;
            });
        });
        let _ = cleanup.join();
    }
}

/// Sets (or with `None` removes) one rule of simnode's ConfigMap `name` (faults or image pulls).
/// Makes simnode check image pulls for pods of the given namespaces (`registries` as in
/// [`TestNamespace::check_image_pulls`]), for tests that deploy into namespaces they do not own;
/// undone when dropped, pass or fail, so no later test finds its pods held back.
pub struct ImagePullRules {
    env: TestEnv,
    namespaces: Vec<String>,
}

impl ImagePullRules {
    pub async fn set(env: &TestEnv, namespaces: &[String], registries: serde_json::Value) -> ImagePullRules {
        let client = env.client().await.expect("client");
        for namespace in namespaces {
            let rule = serde_json::json!({ "namespace": namespace, "registries": registries }).to_string();
            set_fault_rule(&client, PULLS_NAME, namespace, Some(&rule)).await;
        }
        ImagePullRules { env: env.clone(), namespaces: namespaces.to_vec() }
    }
}

impl Drop for ImagePullRules {
    fn drop(&mut self) {
        // As TestNamespace's drop: a thread and runtime of our own.
        let (env, namespaces) = (self.env.clone(), std::mem::take(&mut self.namespaces));
        let cleanup = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async move {
                let Ok(client) = env.client().await else { return };
                for namespace in namespaces {
                    set_fault_rule(&client, PULLS_NAME, &namespace, None).await;
                }
            });
        });
        let _ = cleanup.join();
    }
}

async fn set_fault_rule(client: &Client, name: &str, key: &str, rule: Option<&str>) {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), FAULTS_NAMESPACE);
    let patch = serde_json::json!({ "data": { key: rule } });
    for _ in 0..5 {
        match api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) => return,
            Err(kube::Error::Api(s)) if s.code == 404 && rule.is_some() => {
                let cm = ConfigMap {
                    metadata: ObjectMeta { name: Some(name.into()), ..Default::default() },
                    data: Some(BTreeMap::from([(key.to_string(), rule.unwrap_or_default().to_string())])),
                    ..Default::default()
                };
                match api.create(&PostParams::default(), &cm).await {
                    Ok(_) => return,
                    Err(kube::Error::Api(s)) if s.code == 409 => continue, // another test won the race
                    Err(e) => panic!("creating {FAULTS_NAMESPACE}/{name}: {e}"),
                }
            }
            Err(kube::Error::Api(s)) if s.code == 404 => return, // nothing to remove
            Err(e) => panic!("updating {FAULTS_NAMESPACE}/{name} key {key}: {e}"),
        }
    }
    panic!("could not update {FAULTS_NAMESPACE}/{name} key {key} after 5 tries");
}

/// An app directory for `kfctl` in a temporary directory: user components (kustomize directories
/// of literal objects) and a kfctl.yaml naming them. No registry archive is needed.
pub struct AppDir {
    /// The app's name (kfctl.yaml `name`, the Application's name and kfctl's app label).
    pub name: String,
    pub dir: tempfile::TempDir,
}

impl AppDir {
    /// An empty app named `name`.
    pub fn new(name: &str) -> AppDir {
        let dir = tempfile::tempdir().expect("temporary app directory");
        std::fs::create_dir_all(dir.path().join("registry/v1.4.1")).expect("registry directory");
        AppDir { name: name.to_owned(), dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes component `component`: a kustomize directory with one file of `objects`.
    pub fn component(&self, component: &str, objects: &[serde_json::Value]) {
        let dir = self.dir.path().join(component);
        std::fs::create_dir_all(&dir).expect("component directory");
        let docs: Vec<String> = objects.iter().map(|o| serde_json::to_string(o).expect("json")).collect();
        std::fs::write(dir.join("objects.yaml"), docs.join("\n---\n")).expect("component objects");
        std::fs::write(dir.join("kustomization.yaml"), "resources:\n- objects.yaml\n").expect("kustomization");
    }

    /// Writes kfctl.yaml enabling exactly `components` (user components, in this order).
    pub fn config(&self, components: &[&str]) {
        let mut text = format!(
            "apiVersion: kfctl.dev/v1alpha1\nkind: KfctlApp\nname: {}\nversion: v1.4.1\nregistry:\n  url: fixture\n  sha256: \"{}\"\n  path: registry/v1.4.1\ncomponents:\n",
            self.name,
            "0".repeat(64)
        );
        for c in components {
            text.push_str(&format!("- name: {c}\n  path: {c}\n"));
        }
        std::fs::write(self.dir.path().join("kfctl.yaml"), text).expect("kfctl.yaml");
    }
}

/// The real kfctl binary, with KUBECONFIG set to `kubeconfig`.
pub fn kfctl_command(kubeconfig: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kfctl"));
    cmd.env("KUBECONFIG", kubeconfig);
    cmd
}

/// Polls `check` every 250ms until it returns true; panics naming `what` after `limit`.
///
/// The limit only turns a hang into a failure that says what never happened; tests do not
/// assert on how long things take.
pub async fn wait_until<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("gave up after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Like [`wait_until`], for checks that produce a value once ready.
pub async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("gave up after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// sha256 of upstream's kubeflow/manifests v1.4.1 archive (shared/registries/...).
pub const V1_4_1_SHA256: &str = "0b21adb849b3b27cc1b515b0033c391b37fe6b30e3407b52935b404dfe7b929d";

/// The content pin of v1.4.1's unpacked tree (its catalog's `archive.digest`).
pub const V1_4_1_TREE: &str = "tree-sha256:c6130041f6ec67a4eb0cd0ff59866d98c58d9157b6e1ad6e33f838b04fa84331";

/// The shared/ folder beside the repository (or beside the worktrees' parent): the release
/// archives and the mirror of their remote bases.
pub fn shared_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|dir| dir.join("shared"))
        .find(|path| path.join("registries").is_dir())
        .expect("shared/registries beside the repository")
}

/// The real upstream archive of `version` (`v1.4.1`, `v1.10.2`, `26.03`) in shared/registries.
pub fn release_archive(version: &str) -> PathBuf {
    let archive = shared_dir().join(format!("registries/kubeflow-manifests-{version}.tar.gz"));
    assert!(archive.is_file(), "{} is missing", archive.display());
    archive
}

/// The real upstream v1.4.1 archive: $KFCTL_TEST_REGISTRY, or shared/registries/ beside the
/// repository (or beside the worktrees' parent).
pub fn real_archive() -> PathBuf {
    if let Ok(path) = std::env::var("KFCTL_TEST_REGISTRY") {
        return PathBuf::from(path);
    }
    let wanted = Path::new("shared/registries/kubeflow-manifests-v1.4.1.tar.gz");
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|dir| dir.join(wanted))
        .find(|path| path.is_file())
        .expect("shared/registries/kubeflow-manifests-v1.4.1.tar.gz beside the repository (or set KFCTL_TEST_REGISTRY)")
}

/// `target/e2e-artifacts/`: what tests keep for people (screenshots, plans), created if needed.
pub fn artifacts_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().unwrap().join("e2e-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A child's output pipe, read line by line on a thread of its own as it comes, so the child never
/// blocks on a full pipe and the test can look at what it said so far.
pub struct Collected {
    text: std::sync::Arc<std::sync::Mutex<String>>,
    reader: std::thread::JoinHandle<()>,
}

impl Collected {
    pub fn of(pipe: impl std::io::Read + Send + 'static) -> Collected {
        use std::io::BufRead;
        let text = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = text.clone();
        let reader = std::thread::spawn(move || {
            for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut text = sink.lock().expect("collected output");
                text.push_str(&line);
                text.push('\n');
            }
        });
        Collected { text, reader }
    }

    /// What came so far.
    pub fn text(&self) -> String {
        self.text.lock().expect("collected output").clone()
    }

    /// Whether what came so far contains `what`.
    pub fn seen(&self, what: &str) -> bool {
        self.text.lock().expect("collected output").contains(what)
    }

    /// Everything, once the pipe is closed (the child exited).
    pub fn all(self) -> String {
        self.reader.join().expect("output reader");
        self.text.lock().expect("collected output").clone()
    }
}
