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
pub use unpack::{EntryContent, UnpackLimits, UnpackOptions, UnpackReport, unpack, unpack_with};

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

/// The release a local archive holds, by its single top-level directory (`manifests-1.4.1/` is
/// `v1.4.1`, `manifests-26.03/` is `26.03`), if kfctl has a catalog for it. Reads only the first
/// entry. Blocking.
pub fn archive_version(path: &std::path::Path) -> Option<String> {
    let file = std::fs::File::open(path).ok()?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut entries = archive.entries().ok()?;
    let first = entries.find_map(|e| {
        let e = e.ok()?;
        let kind = e.header().entry_type();
        (!matches!(kind, tar::EntryType::XGlobalHeader | tar::EntryType::XHeader)).then(|| e.path().ok().map(|p| p.into_owned())).flatten()
    })?;
    let top = first.components().next()?.as_os_str().to_str()?.to_string();
    let version = version_from_prefix(&top)?;
    catalog::release(&version).ok().map(|r| r.version.clone())
}

/// `manifests-1.4.1` (GitHub's archive prefix) -> `v1.4.1`; `manifests-26.03` -> `v26.03`
/// (catalog lookups ignore the leading `v`).
pub fn version_from_prefix(prefix: &str) -> Option<String> {
    let version = prefix.strip_prefix("manifests-")?;
    let version = version.strip_prefix('v').unwrap_or(version);
    version.chars().next().filter(char::is_ascii_digit)?;
    Some(format!("v{version}"))
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
