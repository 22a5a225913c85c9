//! Fetching, verifying and safely unpacking registry archives; the component catalog.
//!
//! A registry is a release archive of kubeflow/manifests (a `.tar.gz` with one top-level
//! directory such as `manifests-1.4.1/`). [`fetch`] copies it from a local path, `file://` or
//! `https://` URL into a staging file while computing its sha256, [`verify`] compares the digest,
//! and [`unpack`] extracts it into a fresh directory, refusing anything that could write outside it.
//! Everything here is blocking; async callers wrap it in `spawn_blocking`.

pub mod catalog;
pub mod digest;
mod fetch;
pub mod remote;
mod unpack;

use std::path::PathBuf;

pub use fetch::{FetchedArchive, fetch, fetch_remote};
pub use unpack::{UnpackLimits, UnpackReport, unpack};

/// What can go wrong getting a registry into the app directory.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("cannot read registry archive {path}: {error}")]
    ReadLocal { path: PathBuf, error: std::io::Error },
    #[error("registry URL {url:?} is not supported; use https://, file:// or a local path")]
    UnsupportedScheme { url: String },
    #[error("cannot download {url}: {message}")]
    Download { url: String, message: String },
    #[error("downloading {url}: the server answered {status}")]
    HttpStatus { url: String, status: u16 },
    #[error(
        "checksum mismatch for registry {source_name}: expected sha256 {expected}, got {actual}; nothing was written\n  hint: check --sha256 (or registry.sha256 in kfctl.yaml) and that the archive is the release you meant"
    )]
    ChecksumMismatch { source_name: String, expected: String, actual: String },
    #[error(
        "content mismatch for registry {source_name}: {what} should have {expected}, the archive's tree has {actual}; nothing was written\n  hint: check --digest (or registry.digest in kfctl.yaml) and that the archive is the release you meant"
    )]
    ContentMismatch { source_name: String, what: String, expected: String, actual: String },
    #[error("--sha256 {given:?} is not a sha256 digest (64 hex characters)")]
    BadDigest { given: String },
    #[error("--digest: {message}")]
    InvalidPin { message: String },
    #[error("registry archive {archive} is not a valid .tar.gz: {message}")]
    Corrupt { archive: String, message: String },
    #[error("registry archive {archive} is unsafe: entry {entry:?} {reason}; nothing was written")]
    Unsafe { archive: String, entry: String, reason: String },
    #[error("registry archive {archive} exceeds the unpack limit: {reason}; nothing was written")]
    TooLarge { archive: String, reason: String },
    #[error("cannot write {path}: {error}")]
    Write { path: PathBuf, error: std::io::Error },
    #[error("{path} already exists\n  hint: remove it first, or pass --force to replace it")]
    TargetExists { path: PathBuf },
}

/// Check that `actual` (lowercase hex) is the digest the user expected; `expected` may be in any case.
pub fn verify(source_name: &str, expected: &str, actual: &str) -> Result<(), RegistryError> {
    let expected = normalize_sha256(expected)?;
    if expected != actual {
        return Err(RegistryError::ChecksumMismatch {
            source_name: source_name.to_string(),
            expected,
            actual: actual.to_string(),
        });
    }
    Ok(())
}

/// Lowercase a user-given sha256, refusing anything that is not 64 hex digits.
pub fn normalize_sha256(given: &str) -> Result<String, RegistryError> {
    let trimmed = given.trim();
    let hex = trimmed.strip_prefix("sha256:").unwrap_or(trimmed);
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(RegistryError::BadDigest { given: given.to_string() });
    }
    Ok(hex.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_names_expected_and_actual() {
        let a = "a".repeat(64);
        let b = "B".repeat(64);
        let err = verify("x.tar.gz", &b, &a).unwrap_err().to_string();
        assert!(err.contains(&format!("expected sha256 {}", "b".repeat(64))), "{err}");
        assert!(err.contains(&format!("got {a}")), "{err}");
        verify("x", &format!("sha256:{}", "A".repeat(64)), &a).unwrap();
        assert!(matches!(verify("x", "abc", &a), Err(RegistryError::BadDigest { .. })));
    }
}
