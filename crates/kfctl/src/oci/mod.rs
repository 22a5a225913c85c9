//! Copy container images between registries and OCI image-layout directories, over the OCI
//! distribution API (no docker daemon). This is the engine of `kfctl mirror` (air-gapped installs:
//! every image Kubeflow runs, copied to a private registry) and of carrying images in a directory.
//!
//! ```no_run
//! # async fn example() -> Result<(), kfctl::oci::OciError> {
//! use kfctl::oci::{Copier, CopyOptions, ImageLocation, Reference};
//! let copier = Copier::new(CopyOptions { ca_file: Some("ca.pem".into()), ..CopyOptions::default() })?;
//! let source = Reference::parse("gcr.io/ml-pipeline/frontend:2.5.0")?;
//! let target = source.mirrored_to("registry.example:5000", "kubeflow");
//! let report = copier.copy(&source.into(), &ImageLocation::Registry(target), &kfctl::oci::NoProgress).await?;
//! println!("{} ({} blobs copied)", report.digest, report.blobs_copied);
//! # Ok(()) }
//! ```
//!
//! - `reference`: parse `[HOST[:PORT]/]REPO[:TAG][@DIGEST]` (docker.io and `library/` defaults).
//! - `auth`: credentials from the docker config file; Basic and Bearer-token challenges.
//! - `client`: one repository on one registry (manifests, blobs, monolithic uploads).
//! - `layout`: the OCI image-layout directory (`oci-layout`, `index.json`, `blobs/sha256/`).
//! - `copy`: [`Copier`], which walks an image (index -> manifests -> config and layers), skips
//!   what the target has, verifies every digest it reads and pushes the rest.

mod auth;
mod client;
mod copy;
mod layout;
mod manifest;
mod reference;

pub use auth::{Credentials, DockerConfig};
pub use copy::{Copier, CopyEvent, CopyOptions, CopyProgress, CopyReport, ImageLocation, NoProgress};
pub use layout::Layout;
pub use manifest::{Platform, media_type};
pub use reference::{DOCKER_HUB, Reference, ReferenceError};

use std::path::PathBuf;

/// Everything that can stop a copy. Each message names the host, image or file, and what to do.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error("cannot read the docker config {path}: {reason}\n  hint: fix the file or pass --docker-config with another one")]
    DockerConfig { path: PathBuf, reason: String },
    #[error("cannot use the CA file {path}: {reason}\n  hint: --ca-file takes a PEM file with one or more CA certificates")]
    CaFile { path: PathBuf, reason: String },
    #[error("--source {host}={url}: {reason}\n  hint: write it as HOST=URL, e.g. gcr.io=https://mirror.example/gcr.io")]
    SourceOverride { host: String, url: String, reason: String },
    #[error(
        "the registry refused the credentials for {host} in {config}\n  hint: check the user and password (`docker login {host}`), or pass --docker-config with the right file"
    )]
    CredentialsRefused { host: String, config: String },
    #[error("{host} asks for credentials and {config} has none for it{}\n  hint: run `docker login {host}` or pass --docker-config with a file that has auths.\"{host}\"", helper.as_ref().map(|h| format!(" (it names the credential helper {h:?}, which kfctl does not run: put the user and password in auths instead)")).unwrap_or_default())]
    CredentialsMissing { host: String, config: String, helper: Option<String> },
    #[error("the TLS certificate of {host} is not trusted: {detail}\n  hint: pass --ca-file with the PEM certificate of the CA that signed it")]
    UntrustedCertificate { host: String, detail: String },
    #[error("{host} speaks plain HTTP, not HTTPS\n  hint: pass --insecure to allow plain HTTP to it (only on a network you trust)")]
    PlainHttp { host: String },
    #[error("cannot reach the registry {host}: {detail}\n  hint: check the host name and port, and that this machine can reach it (proxy, firewall)")]
    Unreachable { host: String, detail: String },
    #[error(
        "image {image} not found: the registry has no manifest for it\n  hint: check the repository and tag (or digest); with --source, check the URL of the override"
    )]
    ImageNotFound { image: String },
    #[error("{action} for {image} failed: HTTP {status} {message}")]
    Registry { image: String, action: String, status: u16, message: String },
    #[error(
        "{what} of {image} read from the source has digest {actual}, not {expected}: the source is corrupt or changed during the copy\n  hint: run the copy again; if it repeats, the source registry serves bad data"
    )]
    DigestMismatch { image: String, what: String, expected: String, actual: String },
    #[error("{image}: {reason}")]
    Manifest { image: String, reason: String },
    #[error(
        "{image} has no image for platform {platform} (it has: {available})\n  hint: pass one of those to --platform, or leave --platform out to copy all of them"
    )]
    PlatformNotFound { image: String, platform: String, available: String },
    #[error("OCI layout {path}: {reason}")]
    Layout { path: PathBuf, reason: String },
    #[error("cannot {action} {path}: {error}")]
    Io { action: &'static str, path: PathBuf, error: std::io::Error },
}
