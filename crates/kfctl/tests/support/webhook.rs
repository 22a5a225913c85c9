//! A real TLS admission webhook server, served by the test process on a simulated pod's IP.
//!
//! Inside the testenv network namespace the pod range is routed to loopback, so a server bound to
//! a pod's IP is what the API server reaches through the Service in front of that pod (once the
//! endpoints controller lists the pod as ready). Make an [`AdmissionWebhook`] for the Service's
//! DNS name, put [`AdmissionWebhook::ca_bundle`] in the webhook configuration, and call
//! [`AdmissionWebhook::serve`] whenever the test wants the server up: before or after the
//! configuration (or a `kfctl apply` that carries it) reaches the cluster.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt as _, Full};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio_rustls::TlsAcceptor;

/// The label [`Policy::DenyLabelled`] denies by default in the testenv tests.
pub const DENY_LABEL: &str = "kfctl-test/deny";

/// How the webhook answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Policy {
    /// Admit everything.
    AdmitAll,
    /// Deny objects carrying this label (any value), admit the rest.
    DenyLabelled(String),
    /// Deny everything.
    DenyAll,
}

/// One AdmissionReview request the server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedReview {
    /// `CREATE`, `UPDATE`, ...
    pub operation: String,
    /// The object's kind (`ConfigMap`).
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub dry_run: bool,
    /// Whether the server admitted it.
    pub allowed: bool,
}

/// A validating admission webhook: TLS for one Service DNS name, a [`Policy`], and a record of
/// every review it answered.
#[derive(Clone)]
pub struct AdmissionWebhook {
    ca_pem: String,
    tls: Arc<rustls::ServerConfig>,
    policy: Arc<Mutex<Policy>>,
    received: Arc<Mutex<Vec<ReceivedReview>>>,
}

impl AdmissionWebhook {
    /// A webhook for Service `service` in `namespace` (certificate for `service.namespace.svc`,
    /// signed by a fresh CA), answering with `policy`. Nothing is served until [`Self::serve`].
    pub fn new(service: &str, namespace: &str, policy: Policy) -> AdmissionWebhook {
        let (ca_pem, tls) = tls_for(&format!("{service}.{namespace}.svc"));
        AdmissionWebhook {
            ca_pem,
            tls,
            policy: Arc::new(Mutex::new(policy)),
            received: Arc::default(),
        }
    }

    /// The CA certificate (PEM) for the configuration's `clientConfig.caBundle`.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// `clientConfig.caBundle` as written in YAML/JSON manifests (base64 of the PEM).
    pub fn ca_bundle_base64(&self) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(self.ca_pem.as_bytes())
    }

    /// Change how later requests are answered.
    pub fn set_policy(&self, policy: Policy) {
        *self.policy.lock().expect("policy lock") = policy;
    }

    /// Every review answered so far, in order.
    pub fn received(&self) -> Vec<ReceivedReview> {
        self.received.lock().expect("received lock").clone()
    }

    /// Binds `addr` (a pod IP and the Service's target port) and serves HTTPS there until the
    /// test's runtime ends. Panics when the address cannot be bound.
    pub async fn serve(&self, addr: SocketAddr) {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .unwrap_or_else(|e| panic!("binding the webhook server to pod address {addr}: {e}"));
        let acceptor = TlsAcceptor::from(self.tls.clone());
        let webhook = self.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { continue };
                let acceptor = acceptor.clone();
                let webhook = webhook.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    let service = service_fn(move |req: Request<Incoming>| {
                        let webhook = webhook.clone();
                        async move {
                            let body = req.into_body().collect().await?.to_bytes();
                            let request: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                            let answer = serde_json::to_vec(&webhook.review(&request)).expect("json");
                            Ok::<_, hyper::Error>(
                                Response::builder()
                                    .header("content-type", "application/json")
                                    .body(Full::new(Bytes::from(answer)))
                                    .expect("response"),
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), service).await;
                });
            }
        });
    }

    /// The AdmissionReview answer under the current policy; records the request.
    fn review(&self, review: &serde_json::Value) -> serde_json::Value {
        let req = &review["request"];
        let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
        let object = if req["object"].is_object() { &req["object"] } else { &req["oldObject"] };
        let name = if req["name"].is_string() { text(&req["name"]) } else { text(&object["metadata"]["name"]) };
        let denial = match &*self.policy.lock().expect("policy lock") {
            Policy::AdmitAll => None,
            Policy::DenyLabelled(label) => object["metadata"]["labels"][label.as_str()]
                .is_string()
                .then(|| format!("kfctl test webhook denies {name}: it carries the {label} label")),
            Policy::DenyAll => Some(format!("kfctl test webhook denies {name}: it denies everything")),
        };
        self.received.lock().expect("received lock").push(ReceivedReview {
            operation: text(&req["operation"]),
            kind: text(&req["kind"]["kind"]),
            namespace: text(&req["namespace"]),
            name,
            dry_run: req["dryRun"].as_bool().unwrap_or(false),
            allowed: denial.is_none(),
        });
        let mut response = serde_json::json!({ "uid": req["uid"], "allowed": denial.is_none() });
        if let Some(message) = denial {
            response["status"] = serde_json::json!({ "code": 403, "message": message });
        }
        serde_json::json!({ "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response })
    }
}

/// A fresh CA (PEM) and a server configuration whose certificate it signed for `dns_name`.
fn tls_for(dns_name: &str) -> (String, Arc<rustls::ServerConfig>) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
    super::ensure_crypto_provider();
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
    ca_params.distinguished_name.push(DnType::CommonName, "kfctl test webhook CA");
    let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().expect("server key");
    let mut params = CertificateParams::new(vec![dns_name.to_string()]).expect("server params");
    params.distinguished_name.push(DnType::CommonName, dns_name);
    let cert = params.signed_by(&key, &issuer).expect("server certificate");
    let chain = vec![cert.der().clone()];
    let key_der = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let server = rustls::ServerConfig::builder().with_no_client_auth().with_single_cert(chain, key_der).expect("server TLS");
    (ca_cert.pem(), Arc::new(server))
}
