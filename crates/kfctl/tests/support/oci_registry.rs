//! Real container registries for the image-copy tests: Debian's `docker-registry` (CNCF
//! distribution 2.8, installed by scripts/testenv) on loopback ports of the testenv netns, each
//! with its own storage and config in a temp dir, killed when dropped.
//!
//! - [`OciRegistry::source`]: plain HTTP, no auth, like an upstream registry seen through
//!   `--source gcr.io=http://127.0.0.1:PORT/gcr.io`; [`seed`] fills it with generated images.
//! - [`OciRegistry::private`]: TLS with a certificate from a fresh test CA, and basic auth
//!   (htpasswd, bcrypt), like the private registry of an air-gapped site.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use kfctl::oci::{Copier, CopyOptions, ImageLocation, NoProgress, Reference, media_type};
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};

pub const USER: &str = "mirror";
pub const PASSWORD: &str = "s3cret-pw";

/// A running registry.
pub struct OciRegistry {
    pub port: u16,
    /// Its storage root (blobs live under docker/registry/v2/blobs).
    pub storage: PathBuf,
    /// The test CA's certificate (PEM file), for TLS registries.
    pub ca_file: Option<PathBuf>,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl OciRegistry {
    /// A plain-HTTP registry without auth.
    pub fn source() -> OciRegistry {
        Self::start(false)
    }

    /// A TLS registry (certificate for 127.0.0.1 from a fresh CA, see `ca_file`) with basic auth
    /// for [`USER`] / [`PASSWORD`].
    pub fn private() -> OciRegistry {
        Self::start(true)
    }

    fn start(secure: bool) -> OciRegistry {
        let dir = tempfile::tempdir().expect("registry temp dir");
        let storage = dir.path().join("storage");
        let port = free_port();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
             http:\n  addr: 127.0.0.1:{port}\n  secret: kfctl-test\n",
            storage.display()
        );
        let mut ca_file = None;
        if secure {
            let (ca_pem, cert_pem, key_pem) = certificates();
            for (name, pem) in [("ca.pem", &ca_pem), ("cert.pem", &cert_pem), ("key.pem", &key_pem)] {
                std::fs::write(dir.path().join(name), pem).expect("write PEM");
            }
            let hash = bcrypt::hash(PASSWORD, 4).expect("bcrypt");
            std::fs::write(dir.path().join("htpasswd"), format!("{USER}:{hash}\n")).expect("htpasswd");
            config.push_str(&format!(
                "  tls:\n    certificate: {0}/cert.pem\n    key: {0}/key.pem\nauth:\n  htpasswd:\n    realm: kfctl-test\n    path: {0}/htpasswd\n",
                dir.path().display()
            ));
            ca_file = Some(dir.path().join("ca.pem"));
        }
        std::fs::write(dir.path().join("config.yml"), config).expect("registry config");
        let log = std::fs::File::create(dir.path().join("registry.log")).expect("registry log");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.path().join("config.yml"))
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("start docker-registry (scripts/testenv installs the docker-registry package)");
        let registry = OciRegistry { port, storage, ca_file, dir, child: Some(child) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                panic!("docker-registry did not listen on {port} within 10s; its log:\n{}", registry.log());
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        registry
    }

    /// `127.0.0.1:PORT`
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The registry's own log (errors only).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Blobs (layers, configs and manifests) committed to storage: counted on disk, so it shows
    /// what the registry really holds, never half an upload.
    pub fn blob_count(&self) -> usize {
        let root = self.storage.join("docker/registry/v2/blobs/sha256");
        let Ok(prefixes) = std::fs::read_dir(&root) else {
            return 0;
        };
        prefixes.flatten().flat_map(|p| std::fs::read_dir(p.path()).into_iter().flatten().flatten()).filter(|d| d.path().join("data").is_file()).count()
    }

    /// A docker config.json with `password` for this registry, written in the registry's temp dir.
    pub fn docker_config(&self, password: &str) -> PathBuf {
        let path = self.dir.path().join(format!("docker-config-{}.json", hex::encode(&Sha256::digest(password)[..4])));
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{password}"));
        std::fs::write(&path, format!(r#"{{"auths": {{"{}": {{"auth": "{auth}"}}}}}}"#, self.host())).expect("docker config");
        path
    }

    /// Stop the registry now (also done on drop).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Ask this registry for a manifest or blob (HEAD) the way a client would, with the test
    /// credentials and CA: true on 200.
    pub async fn has(&self, repository: &str, kind: &str, reference: &str) -> bool {
        super::ensure_crypto_provider();
        let scheme = if self.ca_file.is_some() { "https" } else { "http" };
        let mut client = reqwest::Client::builder();
        if let Some(ca) = &self.ca_file {
            client = client.tls_certs_merge(reqwest::Certificate::from_pem_bundle(&std::fs::read(ca).unwrap()).unwrap());
        }
        let response = client
            .build()
            .unwrap()
            .head(format!("{scheme}://{}/v2/{repository}/{kind}/{reference}", self.host()))
            .basic_auth(USER, Some(PASSWORD))
            .header("accept", media_type::ACCEPT)
            .send()
            .await
            .expect("HEAD on the test registry");
        response.status().is_success()
    }
}

impl Drop for OciRegistry {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// (CA PEM, server certificate PEM for 127.0.0.1, server key PEM).
fn certificates() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType};
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
    ca_params.distinguished_name.push(DnType::CommonName, "kfctl test registry CA");
    let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().expect("server key");
    let mut params = CertificateParams::new(vec!["localhost".to_string()]).expect("server params");
    params.subject_alt_names.push(SanType::IpAddress(std::net::IpAddr::from([127, 0, 0, 1])));
    params.distinguished_name.push(DnType::CommonName, "127.0.0.1");
    let cert = params.signed_by(&key, &issuer).expect("server certificate");
    (ca_cert.pem(), cert.pem(), key.serialize_pem())
}

/// One generated image as seeded: what a copy of it must bring along.
#[derive(Debug, Clone)]
pub struct SeededImage {
    pub reference: Reference,
    /// Digest of the tagged manifest (the index for multi-arch images).
    pub digest: String,
    /// (platform, manifest digest, blob digests) per platform manifest.
    pub platforms: Vec<(String, String, Vec<String>)>,
}

impl SeededImage {
    /// Every blob digest of every platform, without duplicates.
    pub fn blobs(&self) -> Vec<String> {
        let mut all: Vec<String> = self.platforms.iter().flat_map(|(_, _, b)| b.clone()).collect();
        all.sort();
        all.dedup();
        all
    }
}

/// Generate `references` into an OCI layout at `dir` (written here, not by the engine): each
/// image has `layers` random layers of about `layer_kib` KiB (real tar.gz) and a real config;
/// `multi_arch` images get an index over linux/amd64 and linux/arm64.
pub fn generate_layout(dir: &Path, references: &[(&str, bool)], layers: usize, layer_kib: usize) -> Vec<SeededImage> {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let put = |bytes: &[u8]| -> (String, usize) {
        let hex = hex::encode(Sha256::digest(bytes));
        std::fs::write(blobs.join(&hex), bytes).unwrap();
        (format!("sha256:{hex}"), bytes.len())
    };
    let mut entries = Vec::new();
    let mut seeded = Vec::new();
    for (text, multi_arch) in references {
        let reference = Reference::parse(text).unwrap();
        let archs: &[&str] = if *multi_arch { &["amd64", "arm64"] } else { &["amd64"] };
        let mut platforms = Vec::new();
        for arch in archs {
            let mut layer_descriptors = Vec::new();
            let mut diff_ids = Vec::new();
            for n in 0..layers {
                let mut data = vec![0u8; layer_kib * 1024 + rand::random_range(0..1024)];
                rand::rng().fill_bytes(&mut data);
                let mut tar = tar::Builder::new(Vec::new());
                let mut header = tar::Header::new_gnu();
                header.set_size(data.len() as u64);
                header.set_mode(0o644);
                header.set_cksum();
                tar.append_data(&mut header, format!("layer{n}/data.bin"), &data[..]).unwrap();
                let tar = tar.into_inner().unwrap();
                diff_ids.push(format!("sha256:{}", hex::encode(Sha256::digest(&tar))));
                let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                gz.write_all(&tar).unwrap();
                let (digest, size) = put(&gz.finish().unwrap());
                layer_descriptors.push(serde_json::json!({"mediaType": media_type::OCI_LAYER_GZIP, "digest": digest, "size": size}));
            }
            let config = serde_json::json!({
                "architecture": arch, "os": "linux", "created": "2026-12-01T00:00:00Z",
                "config": {"Cmd": ["/bin/true"], "Labels": {"image": text}},
                "rootfs": {"type": "layers", "diff_ids": diff_ids},
            });
            let (config_digest, config_size) = put(&serde_json::to_vec(&config).unwrap());
            let manifest = serde_json::json!({
                "schemaVersion": 2, "mediaType": media_type::OCI_MANIFEST,
                "config": {"mediaType": media_type::OCI_CONFIG, "digest": config_digest, "size": config_size},
                "layers": layer_descriptors,
            });
            let (digest, size) = put(&serde_json::to_vec(&manifest).unwrap());
            let mut blob_digests = vec![config_digest];
            blob_digests.extend(layer_descriptors.iter().map(|l| l["digest"].as_str().unwrap().to_string()));
            platforms.push((format!("linux/{arch}"), digest, size, blob_digests));
        }
        let (digest, size, media) = if *multi_arch {
            let index = serde_json::json!({
                "schemaVersion": 2, "mediaType": media_type::OCI_INDEX,
                "manifests": platforms.iter().map(|(platform, digest, size, _)| {
                    let (os, arch) = platform.split_once('/').unwrap();
                    serde_json::json!({"mediaType": media_type::OCI_MANIFEST, "digest": digest, "size": size, "platform": {"os": os, "architecture": arch}})
                }).collect::<Vec<_>>(),
            });
            let (digest, size) = put(&serde_json::to_vec(&index).unwrap());
            (digest, size, media_type::OCI_INDEX)
        } else {
            (platforms[0].1.clone(), platforms[0].2, media_type::OCI_MANIFEST)
        };
        entries.push(serde_json::json!({"mediaType": media, "digest": digest, "size": size, "annotations": {"org.opencontainers.image.ref.name": reference.to_string()}}));
        seeded.push(SeededImage { reference, digest, platforms: platforms.into_iter().map(|(p, d, _, b)| (p, d, b)).collect() });
    }
    let index = serde_json::json!({"schemaVersion": 2, "mediaType": media_type::OCI_INDEX, "manifests": entries});
    std::fs::write(dir.join("index.json"), serde_json::to_vec_pretty(&index).unwrap()).unwrap();
    seeded
}

/// Fill the plain-HTTP `source` registry with generated images stored under their upstream
/// names (`gcr.io/a/b:1` as repository `gcr.io/a/b`), pushed from a generated layout.
pub async fn seed(source: &OciRegistry, references: &[(&str, bool)], layers: usize, layer_kib: usize) -> Vec<SeededImage> {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().to_path_buf();
    let refs: Vec<(String, bool)> = references.iter().map(|(r, m)| (r.to_string(), *m)).collect();
    let images = tokio::task::spawn_blocking(move || {
        let refs: Vec<(&str, bool)> = refs.iter().map(|(r, m)| (r.as_str(), *m)).collect();
        generate_layout(&layout, &refs, layers, layer_kib)
    })
    .await
    .unwrap();
    let copier = Copier::new(CopyOptions { insecure: true, docker_config: Some(empty_docker_config(dir.path())), ..CopyOptions::default() }).unwrap();
    for image in &images {
        let from = ImageLocation::Layout { dir: dir.path().to_path_buf(), reference: image.reference.clone() };
        let to = ImageLocation::Registry(image.reference.mirrored_to(&source.host(), ""));
        copier.copy(&from, &to, &NoProgress).await.unwrap_or_else(|e| panic!("seed {}: {e}", image.reference));
    }
    images
}

/// A docker config without credentials (so a developer's own ~/.docker never leaks into a test).
pub fn empty_docker_config(dir: &Path) -> PathBuf {
    let path = dir.join("empty-docker-config.json");
    std::fs::write(&path, r#"{"auths": {}}"#).unwrap();
    path
}
