//! [`Copier`]: copy one image (every platform of an index, or one) from a registry or layout to a
//! registry or layout. A copy first reads and verifies every manifest it will push (the plan),
//! then copies the blobs the target lacks, then pushes manifests children first, the tagged one
//! last, so a reader of the target never sees a manifest whose blobs are missing. Skipping what
//! the target has makes a re-run after an interruption copy only the rest.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use futures::TryStreamExt as _;
use sha2::{Digest as _, Sha256};

use super::OciError;
use super::auth::DockerConfig;
use super::client::{Connection, Endpoint, Repository};
use super::layout::Layout;
use super::manifest::{self, Descriptor, Parsed};
use super::reference::Reference;

/// How a [`Copier`] reaches registries.
#[derive(Debug, Clone, Default)]
pub struct CopyOptions {
    /// Copy only this platform of a multi-platform image (`linux/amd64`, `linux/arm64/v8`); the
    /// target then gets that platform's manifest under the tag. None copies every platform and
    /// the index itself.
    pub platform: Option<String>,
    /// PEM file with CA certificates trusted in addition to the system roots.
    pub ca_file: Option<PathBuf>,
    /// Allow plain HTTP: to a registry that does not speak TLS (tried after HTTPS) and to
    /// `http://` source overrides. Certificates are still verified where TLS is spoken.
    pub insecure: bool,
    /// The docker config file with credentials; None reads `$DOCKER_CONFIG/config.json` or
    /// `~/.docker/config.json` when present.
    pub docker_config: Option<PathBuf>,
    /// Read images of HOST from URL instead (`gcr.io` -> `http://127.0.0.1:5001/gcr.io`: the URL
    /// path is a repository prefix there). Applies to sources only.
    pub source_overrides: BTreeMap<String, String>,
    /// Blobs copied at once (0 means 4).
    pub concurrency: usize,
}

/// Where an image is read from or written to.
#[derive(Debug, Clone)]
pub enum ImageLocation {
    /// An image in a registry.
    Registry(Reference),
    /// An image in an OCI layout directory, recorded under its full reference.
    Layout { dir: PathBuf, reference: Reference },
}

impl From<Reference> for ImageLocation {
    fn from(reference: Reference) -> ImageLocation {
        ImageLocation::Registry(reference)
    }
}

impl std::fmt::Display for ImageLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ImageLocation::Registry(r) => write!(f, "{r}"),
            ImageLocation::Layout { dir, reference } => {
                write!(f, "{reference} in {}", dir.display())
            }
        }
    }
}

/// What one copy did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyReport {
    /// Digest of the manifest now at the target's tag (the index's, or with a platform filter the
    /// platform's manifest's).
    pub digest: String,
    /// Blobs (configs and layers) uploaded, and those the target already had.
    pub blobs_copied: usize,
    pub blobs_skipped: usize,
    /// Bytes of blobs uploaded.
    pub bytes: u64,
    /// Manifests pushed (0 when the target already had the image).
    pub manifests_pushed: usize,
}

/// What a copy reports while it works (for progress bars and logs).
#[derive(Debug, Clone, Copy)]
pub enum CopyEvent<'a> {
    /// The manifests are read: `blobs` blobs of `bytes` in total make up the image.
    Planned { image: &'a str, blobs: usize, bytes: u64 },
    /// `bytes` more of a blob were read.
    Bytes { image: &'a str, bytes: u64 },
    /// A blob is in the target (`skipped`: it was there already).
    BlobDone { image: &'a str, digest: &'a str, size: u64, skipped: bool },
    /// The image is copied.
    Finished { image: &'a str, report: &'a CopyReport },
}

/// Receives [`CopyEvent`]s; must be cheap (called per chunk read).
pub trait CopyProgress: Send + Sync {
    fn event(&self, event: CopyEvent<'_>);
}

impl<F: Fn(CopyEvent<'_>) + Send + Sync> CopyProgress for F {
    fn event(&self, event: CopyEvent<'_>) {
        self(event)
    }
}

/// Progress nobody watches.
pub struct NoProgress;

impl CopyProgress for NoProgress {
    fn event(&self, _event: CopyEvent<'_>) {}
}

/// Copies images. Cheap to share: one HTTP client (connections, TLS config) for every copy.
pub struct Copier {
    options: CopyOptions,
    connection: Connection,
    /// Parsed `source_overrides`: host -> (base URL, path prefix).
    overrides: BTreeMap<String, Endpoint>,
}

impl Copier {
    /// Check the options (CA file, docker config, overrides) and build the HTTP client.
    pub fn new(options: CopyOptions) -> Result<Copier, OciError> {
        crate::tls::install_crypto_provider();
        let mut builder =
            reqwest::Client::builder().connect_timeout(std::time::Duration::from_secs(20)).user_agent(concat!("kfctl/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = &options.ca_file {
            let bad = |reason: String| OciError::CaFile { path: ca.clone(), reason };
            let pem = std::fs::read(ca).map_err(|e| bad(e.to_string()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| bad(e.to_string()))?;
            if certs.is_empty() {
                return Err(bad("it holds no PEM certificate".into()));
            }
            builder = builder.tls_certs_merge(certs);
        }
        let client = builder.build().map_err(|e| OciError::Unreachable { host: "(client setup)".into(), detail: e.to_string() })?;
        let config = Arc::new(DockerConfig::load(options.docker_config.as_deref())?);
        let mut overrides = BTreeMap::new();
        for (host, url) in &options.source_overrides {
            overrides.insert(host.clone(), parse_override(host, url, options.insecure)?);
        }
        Ok(Copier { options, connection: Connection { client, config }, overrides })
    }

    async fn repository(&self, reference: &Reference, push: bool) -> Result<Repository, OciError> {
        let image = reference.to_string();
        if !push && let Some(endpoint) = self.overrides.get(&reference.host) {
            return Repository::open(&self.connection, endpoint, &reference.repository, &image, push).await;
        }
        let registry_host = if reference.host == super::DOCKER_HUB { "registry-1.docker.io" } else { reference.host.as_str() };
        let https = Endpoint { base: format!("https://{registry_host}"), path_prefix: String::new(), host: reference.host.clone() };
        match Repository::open(&self.connection, &https, &reference.repository, &image, push).await {
            Err(OciError::PlainHttp { .. }) if self.options.insecure => {
                let http = Endpoint { base: format!("http://{registry_host}"), ..https };
                Repository::open(&self.connection, &http, &reference.repository, &image, push).await
            }
            other => other,
        }
    }

    async fn store(&self, location: &ImageLocation, push: bool) -> Result<Store, OciError> {
        Ok(match location {
            ImageLocation::Registry(reference) => Store::Registry(self.repository(reference, push).await?),
            ImageLocation::Layout { dir, .. } if push => Store::Layout(Layout::create(dir)?),
            ImageLocation::Layout { dir, .. } => Store::Layout(Layout::open(dir)?),
        })
    }

    /// Copy the image at `source` to `target` (see the module doc for the order of work).
    pub async fn copy(&self, source: &ImageLocation, target: &ImageLocation, progress: &dyn CopyProgress) -> Result<CopyReport, OciError> {
        let image = source.to_string();
        let (source_ref, target_ref) = (location_reference(source), location_reference(target));
        let from = self.store(source, false).await?;
        let to = self.store(target, true).await?;

        // Plan: the top manifest, and for an index the platform manifests it points at.
        let top = from.manifest(source_ref, source_ref.manifest_reference(), &image).await?.ok_or_else(|| OciError::ImageNotFound { image: image.clone() })?;
        if let Some(pinned) = &source_ref.digest {
            verify(&image, "the manifest", pinned, &top.digest)?;
        }
        let mut children = Vec::new();
        let tagged = match (&top.parsed, &self.options.platform) {
            (Parsed::Index { manifests }, Some(wanted)) => {
                let chosen = manifests.iter().find(|d| d.platform.as_ref().is_some_and(|p| p.matches(wanted))).ok_or_else(|| OciError::PlatformNotFound {
                    image: image.clone(),
                    platform: wanted.clone(),
                    available: manifests.iter().filter_map(|d| d.platform.as_ref().map(|p| p.to_string())).collect::<Vec<_>>().join(", "),
                })?;
                from.child(source_ref, chosen, &image).await?
            }
            (Parsed::Index { manifests }, None) => {
                for descriptor in manifests {
                    children.push(from.child(source_ref, descriptor, &image).await?);
                }
                top
            }
            (Parsed::Image { .. }, _) => top,
        };
        let mut blobs = BTreeMap::new();
        for m in children.iter().chain([&tagged]) {
            if let Parsed::Image { config, layers } = &m.parsed {
                for d in [config].into_iter().chain(layers) {
                    blobs.insert(d.digest.clone(), d.size);
                }
            }
        }
        progress.event(CopyEvent::Planned { image: &image, blobs: blobs.len(), bytes: blobs.values().sum() });

        // By tag when the target has one; else by the digest of what is pushed (which, with a
        // platform filter, is not the digest the source was pinned to).
        let target_name = target_ref.tag.as_deref().unwrap_or(&tagged.digest);
        // The target has this exact image under this name already: nothing to do.

        if to.manifest_digest(target_ref, target_name).await?.as_deref() == Some(tagged.digest.as_str()) {
            let report = CopyReport { digest: tagged.digest.clone(), blobs_copied: 0, blobs_skipped: blobs.len(), bytes: 0, manifests_pushed: 0 };
            for (digest, size) in &blobs {
                progress.event(CopyEvent::BlobDone { image: &image, digest, size: *size, skipped: true });
            }
            progress.event(CopyEvent::Finished { image: &image, report: &report });
            return Ok(report);
        }

        let (copied, bytes) = (AtomicUsize::new(0), AtomicU64::new(0));
        let concurrency = if self.options.concurrency == 0 { 4 } else { self.options.concurrency };
        futures::stream::iter(blobs.iter().map(Ok))
            .try_for_each_concurrent(concurrency, |(digest, size)| {
                let (from, to, image, copied, bytes) = (&from, &to, &image, &copied, &bytes);
                async move {
                    let skipped = to.has_blob(digest).await?;
                    if !skipped {
                        copy_blob(from, to, image, digest, progress).await?;
                        copied.fetch_add(1, Ordering::Relaxed);
                        bytes.fetch_add(*size, Ordering::Relaxed);
                    }
                    progress.event(CopyEvent::BlobDone { image, digest, size: *size, skipped });
                    Ok::<_, OciError>(())
                }
            })
            .await?;

        let mut manifests_pushed = 0;
        for child in &children {
            if to.manifest_digest(target_ref, &child.digest).await?.is_none() {
                to.put_manifest(target_ref, &child.digest, child, false).await?;
                manifests_pushed += 1;
            }
        }
        to.put_manifest(target_ref, target_name, &tagged, true).await?;
        manifests_pushed += 1;
        let copied = copied.into_inner();
        let report = CopyReport {
            digest: tagged.digest.clone(),
            blobs_copied: copied,
            blobs_skipped: blobs.len() - copied,
            bytes: bytes.into_inner(),
            manifests_pushed,
        };
        progress.event(CopyEvent::Finished { image: &image, report: &report });
        Ok(report)
    }
}

fn location_reference(location: &ImageLocation) -> &Reference {
    match location {
        ImageLocation::Registry(reference) | ImageLocation::Layout { reference, .. } => reference,
    }
}

fn parse_override(host: &str, url: &str, insecure: bool) -> Result<Endpoint, OciError> {
    let bad = |reason: &str| OciError::SourceOverride { host: host.to_string(), url: url.to_string(), reason: reason.to_string() };
    let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("the URL has no scheme (http:// or https://)"))?;
    match scheme {
        "https" => {}
        "http" if insecure => {}
        "http" => {
            return Err(bad("plain http:// is refused without --insecure (pass --insecure to allow plain HTTP)"));
        }
        _ => return Err(bad("the URL scheme must be http or https")),
    }
    let (authority, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if authority.is_empty() {
        return Err(bad("the URL has no host"));
    }
    Ok(Endpoint { base: format!("{scheme}://{authority}"), path_prefix: prefix.trim_matches('/').to_string(), host: authority.to_string() })
}

fn verify(image: &str, what: &str, expected: &str, actual: &str) -> Result<(), OciError> {
    if expected != actual {
        return Err(OciError::DigestMismatch { image: image.to_string(), what: what.to_string(), expected: expected.to_string(), actual: actual.to_string() });
    }
    Ok(())
}

/// A manifest read from a source, verified.
struct Manifest {
    bytes: Vec<u8>,
    digest: String,
    media_type: String,
    parsed: Parsed,
}

/// A registry repository or a layout directory, read or written the same way.
enum Store {
    Registry(Repository),
    Layout(Layout),
}

impl Store {
    /// The manifest at `name` (tag, digest, or for a layout the reference's entry).
    async fn manifest(&self, reference: &Reference, name: &str, image: &str) -> Result<Option<Manifest>, OciError> {
        let (bytes, content_type) = match self {
            Store::Registry(repo) => match repo.manifest(name).await? {
                Some(found) => found,
                None => return Ok(None),
            },
            Store::Layout(layout) => {
                let digest = if name.starts_with("sha256:") { Some(name.to_string()) } else { layout.find(reference)?.map(|d| d.digest) };
                let Some(digest) = digest else {
                    return Ok(None);
                };
                let path = layout.blob_path(&digest)?;
                match std::fs::read(&path) {
                    Ok(bytes) => (bytes, None),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                    Err(error) => {
                        return Err(OciError::Io { action: "read", path, error });
                    }
                }
            }
        };
        let digest = manifest::sha256_digest(&bytes);
        if name.starts_with("sha256:") {
            verify(image, "the manifest", name, &digest)?;
        }
        let (media_type, parsed) =
            manifest::parse(&bytes, content_type.as_deref()).map_err(|reason| OciError::Manifest { image: image.to_string(), reason })?;
        Ok(Some(Manifest { bytes, digest, media_type, parsed }))
    }

    /// A platform manifest an index points at; it must be an image manifest.
    async fn child(&self, reference: &Reference, descriptor: &Descriptor, image: &str) -> Result<Manifest, OciError> {
        let missing = || OciError::Manifest {
            image: image.to_string(),
            reason: format!("the index points at manifest {} which the source does not have", descriptor.digest),
        };
        let child = self.manifest(reference, &descriptor.digest, image).await?.ok_or_else(missing)?;
        if !matches!(child.parsed, Parsed::Image { .. }) {
            return Err(OciError::Manifest { image: image.to_string(), reason: format!("{} is a nested index, which kfctl does not copy", descriptor.digest) });
        }
        Ok(child)
    }

    async fn manifest_digest(&self, reference: &Reference, name: &str) -> Result<Option<String>, OciError> {
        match self {
            Store::Registry(repo) => repo.manifest_digest(name).await,
            Store::Layout(layout) if name.starts_with("sha256:") => Ok(layout.has_blob(name)?.then(|| name.to_string())),
            Store::Layout(layout) => Ok(layout.find(reference)?.map(|d| d.digest)),
        }
    }

    async fn has_blob(&self, digest: &str) -> Result<bool, OciError> {
        match self {
            Store::Registry(repo) => repo.has_blob(digest).await,
            Store::Layout(layout) => layout.has_blob(digest),
        }
    }

    /// Push a manifest under `name`; `tagged` marks the image's own entry (for a layout, the
    /// index.json entry carrying the reference).
    async fn put_manifest(&self, reference: &Reference, name: &str, manifest: &Manifest, tagged: bool) -> Result<(), OciError> {
        match self {
            Store::Registry(repo) => repo.push_manifest(name, &manifest.media_type, &manifest.bytes).await,
            Store::Layout(layout) => {
                layout.put_bytes(&manifest.digest, &manifest.bytes)?;
                if tagged {
                    let descriptor = Descriptor {
                        media_type: manifest.media_type.clone(),
                        digest: manifest.digest.clone(),
                        size: manifest.bytes.len() as u64,
                        platform: None,
                        annotations: None,
                    };
                    layout.tag(reference, descriptor)?;
                }
                Ok(())
            }
        }
    }
}

async fn copy_blob(from: &Store, to: &Store, image: &str, digest: &str, progress: &dyn CopyProgress) -> Result<(), OciError> {
    // A download goes to an unnamed temp file: the system removes it even when kfctl is killed.
    let temp_err = |error| OciError::Io { action: "create a temp file in", path: std::env::temp_dir(), error };
    let file = match from {
        Store::Registry(repo) => {
            let file = tokio::task::spawn_blocking(tempfile::tempfile).await.expect("creating a temp file does not panic").map_err(temp_err)?;
            repo.blob_to_file(digest, &file, &|bytes| progress.event(CopyEvent::Bytes { image, bytes })).await?;
            file
        }
        Store::Layout(layout) => {
            let path = layout.blob_path(digest)?;
            std::fs::File::open(&path).map_err(|e| OciError::Layout { path, reason: format!("blob {digest} of {image} cannot be read: {e}") })?
        }
    };
    let reader = file.try_clone().map_err(temp_err)?;
    let (actual, size) = tokio::task::spawn_blocking(move || sha256_of(reader)).await.expect("hashing does not panic").map_err(temp_err)?;
    verify(image, &format!("blob {digest}"), digest, &actual)?;
    if let Store::Layout(_) = from {
        progress.event(CopyEvent::Bytes { image, bytes: size });
    }
    match to {
        Store::Registry(repo) => repo.push_blob(digest, &file, size).await,
        Store::Layout(layout) => layout.put_file(digest, &file).await,
    }
}

/// `sha256:<hex>` and size of a whole file, read from its start (blocking: call it off the runtime).
fn sha256_of(mut file: std::fs::File) -> std::io::Result<(String, u64)> {
    use std::io::Seek as _;
    file.rewind()?;
    let mut hasher = Sha256::new();
    let size = std::io::copy(&mut file, &mut hasher)?;
    Ok((format!("sha256:{}", hex::encode(hasher.finalize())), size))
}
