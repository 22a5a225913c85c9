//! Image pulls, for the pods a test opts in (every other pod starts as if its images were there,
//! because the whole CI shares one simnode).
//!
//! Opt in with the ConfigMap `kube-system/simnode-image-pulls`: every data value is a JSON rule
//! `{"namespace": "team-a", "registries": {"127.0.0.1:5000": {"caPEM": "-----BEGIN...", "insecure": false}}}`
//! (keys are free names). For pods of that namespace simnode resolves each image (containers
//! and initContainers) by a manifest HEAD, as a kubelet's pull would start: over https trusting
//! the system roots plus `caPEM`, or plain http for `insecure` registries, with the credentials of
//! the pod's `imagePullSecrets` (kubernetes.io/dockerconfigjson), else the node's own
//! (`"nodeCredentials": {"username", "password"}` in the registry's rule). Until every image resolves the
//! containers wait with reason ErrImagePull (first failure) then ImagePullBackOff, and the pod is
//! re-checked with a backoff; once they resolve the pod starts as usual and is never checked again.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use base64::Engine as _;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::Api;
use tokio::sync::watch;

use crate::log;

/// Name of the opt-in ConfigMap (in kube-system).
pub const CONFIG_MAP_NAME: &str = "simnode-image-pulls";

const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Rule {
    namespace: String,
    #[serde(default)]
    registries: BTreeMap<String, RegistryRule>,
}

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RegistryRule {
    #[serde(default, rename = "caPEM")]
    ca_pem: Option<String>,
    #[serde(default)]
    insecure: bool,
    /// The node's own credentials for this registry (as a kubelet's config.json gives them to
    /// every pod), used when the pod's imagePullSecrets have none: `{"username", "password"}`.
    #[serde(default)]
    node_credentials: Option<NodeCredentials>,
}

#[derive(serde::Deserialize)]
struct NodeCredentials {
    username: String,
    password: String,
}

/// How one registry is reached.
struct Registry {
    scheme: &'static str,
    client: reqwest::Client,
    node_credentials: Option<(String, String)>,
}

/// Registries by host, for one opted-in namespace.
#[derive(Default)]
pub struct PullPolicy {
    registries: BTreeMap<String, Registry>,
    default_client: Option<reqwest::Client>,
}

/// The opted-in namespaces, shared between the ConfigMap watcher and the pod loop.
#[derive(Clone)]
pub struct PullBook {
    policies: Arc<RwLock<BTreeMap<String, Arc<PullPolicy>>>>,
    changed_tx: watch::Sender<u64>,
}

impl Default for PullBook {
    fn default() -> Self {
        PullBook {
            policies: Arc::default(),
            changed_tx: watch::channel(0).0,
        }
    }
}

impl PullBook {
    /// The policy for pods of `namespace`, if it opted in.
    pub fn policy_for(&self, namespace: &str) -> Option<Arc<PullPolicy>> {
        self.policies
            .read()
            .expect("pull policies lock")
            .get(namespace)
            .cloned()
    }

    /// A receiver that sees a new value whenever the rules change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed_tx.subscribe()
    }

    /// Replace the rules with those of the ConfigMap (None: deleted). Bad rules are logged and
    /// skipped so one does not disable the others.
    pub fn set_from(&self, cm: Option<&ConfigMap>) {
        let mut policies = BTreeMap::new();
        for (key, value) in cm.and_then(|cm| cm.data.as_ref()).into_iter().flatten() {
            match policy_of(value) {
                Ok((namespace, policy)) => {
                    policies.insert(namespace, Arc::new(policy));
                }
                Err(e) => log!("kube-system/{CONFIG_MAP_NAME} key {key:?}: {e}"),
            }
        }
        log!(
            "image pulls checked in namespaces: {:?}",
            policies.keys().collect::<Vec<_>>()
        );
        *self.policies.write().expect("pull policies lock") = policies;
        self.changed_tx.send_modify(|n| *n += 1);
    }
}

fn policy_of(text: &str) -> anyhow::Result<(String, PullPolicy)> {
    let rule: Rule = serde_json::from_str(text)?;
    let build = |ca: Option<&str>| -> anyhow::Result<reqwest::Client> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10));
        if let Some(pem) = ca {
            builder =
                builder.tls_certs_merge(reqwest::Certificate::from_pem_bundle(pem.as_bytes())?);
        }
        Ok(builder.build()?)
    };
    let mut registries = BTreeMap::new();
    for (host, r) in rule.registries {
        let client = build(r.ca_pem.as_deref())?;
        registries.insert(
            host,
            Registry {
                scheme: if r.insecure { "http" } else { "https" },
                client,
                node_credentials: r.node_credentials.map(|c| (c.username, c.password)),
            },
        );
    }
    Ok((
        rule.namespace,
        PullPolicy {
            registries,
            default_client: Some(build(None)?),
        },
    ))
}

/// Every image of the pod (initContainers first), each once.
fn images(pod: &Pod) -> Vec<String> {
    let mut images: Vec<String> = Vec::new();
    let spec = pod.spec.iter();
    for c in spec
        .clone()
        .flat_map(|s| s.init_containers.iter().flatten())
        .chain(spec.flat_map(|s| s.containers.iter()))
    {
        if let Some(image) = &c.image
            && !images.contains(image)
        {
            images.push(image.clone());
        }
    }
    images
}

/// `host`, `repository`, `tag or digest` of an image reference, with docker's defaults.
fn split(image: &str) -> (String, String, String) {
    let (name, reference) = match image.split_once('@') {
        Some((name, digest)) => (
            name.rsplit_once(':')
                .filter(|(_, t)| !t.contains('/'))
                .map_or(name, |(n, _)| n),
            digest.to_string(),
        ),
        None => match image.rsplit_once(':').filter(|(_, t)| !t.contains('/')) {
            Some((name, tag)) => (name, tag.to_string()),
            None => (image, "latest".to_string()),
        },
    };
    match name.split_once('/') {
        Some((host, repo)) if host.contains(['.', ':']) || host == "localhost" => {
            (host.to_string(), repo.to_string(), reference)
        }
        _ if !name.contains('/') => ("docker.io".into(), format!("library/{name}"), reference),
        _ => ("docker.io".into(), name.to_string(), reference),
    }
}

/// Credentials per registry host from the pod's imagePullSecrets.
async fn pull_credentials(client: &kube::Client, pod: &Pod) -> BTreeMap<String, (String, String)> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let mut found = BTreeMap::new();
    for reference in pod
        .spec
        .iter()
        .flat_map(|s| s.image_pull_secrets.iter().flatten())
    {
        let Ok(secret) = secrets.get(&reference.name).await else {
            continue;
        }; // a kubelet ignores missing ones too
        let Some(json) = secret
            .data
            .as_ref()
            .and_then(|d| d.get(".dockerconfigjson"))
        else {
            continue;
        };
        let Ok(config) = serde_json::from_slice::<serde_json::Value>(&json.0) else {
            continue;
        };
        for (host, entry) in config["auths"].as_object().into_iter().flatten() {
            let pair = match entry["auth"].as_str() {
                Some(auth) => base64::engine::general_purpose::STANDARD
                    .decode(auth)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .and_then(|s| {
                        s.split_once(':')
                            .map(|(u, p)| (u.to_string(), p.to_string()))
                    }),
                None => entry["username"]
                    .as_str()
                    .zip(entry["password"].as_str())
                    .map(|(u, p)| (u.to_string(), p.to_string())),
            };
            if let Some(pair) = pair {
                found.insert(
                    host.trim_start_matches("https://")
                        .trim_start_matches("http://")
                        .trim_end_matches('/')
                        .to_string(),
                    pair,
                );
            }
        }
    }
    found
}

/// The first image of `pod` that does not resolve, with why; None when all do.
pub async fn first_unpullable(
    policy: &PullPolicy,
    client: &kube::Client,
    pod: &Pod,
) -> Option<(String, String)> {
    let credentials = pull_credentials(client, pod).await;
    for image in images(pod) {
        let (host, repository, reference) = split(&image);
        let (scheme, http) = match policy.registries.get(&host) {
            Some(r) => (r.scheme, &r.client),
            None => (
                "https",
                policy
                    .default_client
                    .as_ref()
                    .expect("built with the policy"),
            ),
        };
        let url = format!("{scheme}://{host}/v2/{repository}/manifests/{reference}");
        let node = policy.registries.get(&host).and_then(|r| r.node_credentials.as_ref());
        if let Err(why) = head(http, &url, credentials.get(&host).or(node)).await {
            return Some((image, why));
        }
    }
    None
}

/// HEAD the manifest, answering a Basic or Bearer challenge with `credentials`.
async fn head(
    http: &reqwest::Client,
    url: &str,
    credentials: Option<&(String, String)>,
) -> Result<(), String> {
    let send = |auth: Option<String>| {
        let mut request = http.head(url).header(reqwest::header::ACCEPT, ACCEPT);
        if let Some(auth) = auth {
            request = request.header(reqwest::header::AUTHORIZATION, auth);
        }
        request.send()
    };
    let chain = |e: reqwest::Error| {
        let mut text = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            text.push_str(&format!(": {s}"));
            source = s.source();
        }
        text
    };
    let mut response = send(None).await.map_err(chain)?;
    if response.status() == reqwest::StatusCode::UNAUTHORIZED {
        let challenge = response
            .headers()
            .get(reqwest::header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let basic = credentials.map(|(u, p)| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            )
        });
        let auth = if challenge.to_ascii_lowercase().starts_with("bearer") {
            let param = |name: &str| {
                challenge
                    .split(&format!("{name}=\""))
                    .nth(1)
                    .and_then(|rest| rest.split('"').next())
                    .map(str::to_string)
            };
            let realm = param("realm").ok_or("a Bearer challenge without realm")?;
            let query = form_urlencoded::Serializer::new(String::new())
                .append_pair("service", &param("service").unwrap_or_default())
                .append_pair("scope", &param("scope").unwrap_or_default())
                .finish();
            let mut request = http.get(format!("{realm}?{query}"));
            if let Some(basic) = &basic {
                request = request.header(reqwest::header::AUTHORIZATION, basic);
            }
            let body = request
                .send()
                .await
                .map_err(chain)?
                .bytes()
                .await
                .map_err(chain)?;
            let token: serde_json::Value = serde_json::from_slice(&body)
                .map_err(|e| format!("the token answer is not JSON: {e}"))?;
            token["token"]
                .as_str()
                .or(token["access_token"].as_str())
                .map(|t| format!("Bearer {t}"))
        } else {
            basic
        };
        let Some(auth) = auth else {
            return Err(
                "401 Unauthorized (no imagePullSecrets credentials for this registry)".into(),
            );
        };
        response = send(Some(auth)).await.map_err(chain)?;
    }
    match response.status() {
        s if s.is_success() => Ok(()),
        reqwest::StatusCode::NOT_FOUND => Err("manifest unknown (404)".into()),
        s => Err(format!("HTTP {s}")),
    }
}

/// Re-check interval after a failed pull: doubles with the time the pod has waited, 1s to 10s.
pub fn backoff(waited: Duration) -> Duration {
    (waited / 2).clamp(Duration::from_secs(1), Duration::from_secs(10))
}

/// Keeps `book` equal to `kube-system/simnode-image-pulls` (absent = no pod is checked).
pub async fn watch_config_map(client: kube::Client, book: PullBook) -> anyhow::Result<()> {
    crate::fault::watch_named_config_map(client, CONFIG_MAP_NAME, move |cm| book.set_from(cm)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_references_with_docker_defaults() {
        assert_eq!(
            split("nginx"),
            ("docker.io".into(), "library/nginx".into(), "latest".into())
        );
        assert_eq!(
            split("127.0.0.1:5000/kubeflow/gcr.io/a/b:1"),
            (
                "127.0.0.1:5000".into(),
                "kubeflow/gcr.io/a/b".into(),
                "1".into()
            )
        );
        assert_eq!(
            split("localhost:5000/a@sha256:ab"),
            ("localhost:5000".into(), "a".into(), "sha256:ab".into())
        );
        assert_eq!(
            split("gcr.io/a/b:1@sha256:ab"),
            ("gcr.io".into(), "a/b".into(), "sha256:ab".into())
        );
        assert_eq!(
            split("kubeflow/notebook"),
            (
                "docker.io".into(),
                "kubeflow/notebook".into(),
                "latest".into()
            )
        );
    }

    #[test]
    fn bad_rules_are_refused_and_good_ones_kept() {
        let _ = rustls::crypto::ring::default_provider().install_default(); // as main() does
        assert!(policy_of("{}").is_err());
        let (ns, policy) =
            policy_of(r#"{"namespace": "a", "registries": {"r:5000": {"insecure": true}}}"#)
                .unwrap();
        assert_eq!(
            (ns.as_str(), policy.registries["r:5000"].scheme),
            ("a", "http")
        );
        assert_eq!(backoff(Duration::ZERO), Duration::from_secs(1));
        assert_eq!(backoff(Duration::from_secs(60)), Duration::from_secs(10));
    }
}
