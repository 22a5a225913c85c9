//! Copy a registry archive into a staging file, hashing it on the way.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tempfile::NamedTempFile;

use super::RegistryError;

/// The largest archive kfctl downloads or copies (upstream releases are a few MB).
const MAX_ARCHIVE_BYTES: u64 = 512 * 1024 * 1024;

/// A registry archive copied into a staging file. The file is deleted when this is dropped,
/// so a failed init leaves nothing behind.
#[derive(Debug)]
pub struct FetchedArchive {
    /// The copy; hashing and unpacking read this, never the original, so what is verified is
    /// exactly what is unpacked.
    pub file: NamedTempFile,
    /// Lowercase hex sha256 of the bytes.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
}

/// Where a registry comes from.
enum Source<'a> {
    Local(PathBuf),
    Web(&'a str),
}

/// `allow_http`: plain `http://` too (a mirror the user named; a registry must be https).
fn parse_source(source: &str, allow_http: bool) -> Result<Source<'_>, RegistryError> {
    if let Some(rest) = source.strip_prefix("file://") {
        // file:///abs/path (empty host) or file://localhost/abs/path
        let path = rest.strip_prefix("localhost").unwrap_or(rest);
        if !path.starts_with('/') {
            return Err(RegistryError::UnsupportedScheme { url: source.to_string() });
        }
        return Ok(Source::Local(PathBuf::from(path)));
    }
    if source.starts_with("https://") || (allow_http && source.starts_with("http://")) {
        return Ok(Source::Web(source));
    }
    if source.contains("://") {
        return Err(RegistryError::UnsupportedScheme { url: source.to_string() });
    }
    Ok(Source::Local(PathBuf::from(source)))
}

/// Copy the archive named by `source` (a local path, `file://` or `https://` URL) into a new
/// temporary file inside `staging_dir`, computing its sha256. Blocking: a download runs on a
/// private single-threaded runtime, so call this from `spawn_blocking` in async code.
pub fn fetch(source: &str, staging_dir: &Path) -> Result<FetchedArchive, RegistryError> {
    fetch_from(source, staging_dir, false)
}

/// [`fetch`] for remote resources and mirrors: `http://` is allowed too, since their content is
/// pinned by digest once vendored.
pub fn fetch_remote(source: &str, staging_dir: &Path) -> Result<FetchedArchive, RegistryError> {
    fetch_from(source, staging_dir, true)
}

fn fetch_from(source: &str, staging_dir: &Path, allow_http: bool) -> Result<FetchedArchive, RegistryError> {
    let mut out = tempfile::Builder::new()
        .prefix(".kfctl-registry-")
        .suffix(".tar.gz")
        .tempfile_in(staging_dir)
        .map_err(|source| RegistryError::Write { path: staging_dir.to_path_buf(), error: source })?;
    let mut writer = HashingWriter { file: out.as_file_mut(), hasher: Sha256::new(), size: 0, path: staging_dir };
    match parse_source(source, allow_http)? {
        Source::Local(path) => {
            let read_err = |source| RegistryError::ReadLocal { path: path.clone(), error: source };
            let mut input = File::open(&path).map_err(read_err)?;
            let mut buf = vec![0u8; 256 * 1024];
            loop {
                let n = input.read(&mut buf).map_err(read_err)?;
                if n == 0 {
                    break;
                }
                writer.write_limited(&buf[..n], source)?;
            }
        }
        Source::Web(url) => download(url, &mut writer)?,
    }
    let sha256 = hex::encode(writer.hasher.finalize());
    let size = writer.size;
    out.as_file_mut().flush().map_err(|source| RegistryError::Write { path: out.path().to_path_buf(), error: source })?;
    Ok(FetchedArchive { file: out, sha256, size })
}

struct HashingWriter<'a> {
    file: &'a mut File,
    hasher: Sha256,
    size: u64,
    path: &'a Path,
}

impl HashingWriter<'_> {
    fn write_limited(&mut self, bytes: &[u8], source: &str) -> Result<(), RegistryError> {
        self.size += bytes.len() as u64;
        if self.size > MAX_ARCHIVE_BYTES {
            return Err(RegistryError::TooLarge {
                archive: source.to_string(),
                reason: format!("the archive is larger than {} MiB", MAX_ARCHIVE_BYTES >> 20),
            });
        }
        self.hasher.update(bytes);
        self.file.write_all(bytes).map_err(|source| RegistryError::Write { path: self.path.to_path_buf(), error: source })
    }
}

fn download(url: &str, writer: &mut HashingWriter<'_>) -> Result<(), RegistryError> {
    crate::tls::install_crypto_provider();
    let download_err = |e: reqwest::Error| RegistryError::Download { url: url.to_string(), message: error_chain(&e) };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| RegistryError::Download { url: url.to_string(), message: e.to_string() })?;
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(30))
            .user_agent(concat!("kfctl/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(download_err)?;
        let mut response = client.get(url).send().await.map_err(download_err)?;
        if !response.status().is_success() {
            return Err(RegistryError::HttpStatus { url: url.to_string(), status: response.status().as_u16() });
        }
        while let Some(chunk) = response.chunk().await.map_err(download_err)? {
            writer.write_limited(&chunk, url)?;
        }
        Ok(())
    })
}

/// reqwest's top-level message is often just "error sending request"; the cause says why.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut message = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        message.push_str(": ");
        message.push_str(&c.to_string());
        cause = c.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_path_and_file_url_are_copied_and_hashed() {
        let dir = tempfile::tempdir().unwrap();
        let original = dir.path().join("a.tar.gz");
        std::fs::write(&original, b"hello").unwrap();
        let staging = tempfile::tempdir().unwrap();
        for source in [original.display().to_string(), format!("file://{}", original.display())] {
            let fetched = fetch(&source, staging.path()).unwrap();
            // sha256("hello")
            assert_eq!(fetched.sha256, "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
            assert_eq!(fetched.size, 5);
            assert_eq!(std::fs::read(fetched.file.path()).unwrap(), b"hello");
        }
        // The staging copies are removed when dropped.
        assert_eq!(std::fs::read_dir(staging.path()).unwrap().count(), 0);
    }

    #[test]
    fn plain_http_and_other_schemes_are_refused() {
        let staging = tempfile::tempdir().unwrap();
        for url in ["http://example.invalid/a.tar.gz", "ftp://x/y", "file://relative/path"] {
            let err = fetch(url, staging.path()).unwrap_err();
            assert!(matches!(err, RegistryError::UnsupportedScheme { .. }), "{url}: {err}");
        }
    }

    #[test]
    fn https_failure_names_the_url_and_writes_nothing() {
        // A loopback server that answers the TLS handshake with garbage: the whole client path
        // (crypto provider, reqwest, rustls) runs and must fail cleanly.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let _ = conn.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\nnot tls");
        });
        let staging = tempfile::tempdir().unwrap();
        let url = format!("https://127.0.0.1:{port}/manifests.tar.gz");
        let err = fetch(&url, staging.path()).unwrap_err();
        server.join().unwrap();
        assert!(matches!(err, RegistryError::Download { .. }), "{err}");
        assert!(err.to_string().contains(&url), "{err}");
        assert_eq!(std::fs::read_dir(staging.path()).unwrap().count(), 0);
    }

    #[test]
    fn missing_local_file_names_the_path() {
        let staging = tempfile::tempdir().unwrap();
        let err = fetch("/nonexistent/kf.tar.gz", staging.path()).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/kf.tar.gz"), "{err}");
        assert_eq!(std::fs::read_dir(staging.path()).unwrap().count(), 0);
    }
}
