//! The app directory as a .tar.gz download that never carries credentials.
//!
//! Two filters, because one could miss: files whose *name* says they hold credentials
//! (kubeconfigs, Terraform state, private keys) are left out, and every other file's *content* is
//! scanned for the secrets this server knows (the access and CSRF tokens, the job's kubeconfig
//! credentials, the user's plaintext password) and for private-key blocks. What was left out is
//! listed in `EXCLUDED-FROM-DOWNLOAD.txt` inside the archive, so the user knows what to re-create.
//! Symbolic links are not followed (they could point anywhere on the server).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::write::GzEncoder;

/// What went wrong while packing.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write the archive: {0}")]
    Write(std::io::Error),
    #[error("the app directory {0} does not exist yet\n  hint: the deployment has not written it; wait for the job to get further")]
    Missing(PathBuf),
}

/// Name of the note listing what the download leaves out.
pub const EXCLUDED_NOTE: &str = "EXCLUDED-FROM-DOWNLOAD.txt";

/// Secret values this archive must not contain anywhere (shorter ones are ignored: too short to
/// search for without false hits, and none of our secrets are that short).
pub struct KnownSecrets(Vec<String>);

impl KnownSecrets {
    /// Secrets to scan for; values under 8 bytes are dropped.
    pub fn new(values: impl IntoIterator<Item = String>) -> KnownSecrets {
        KnownSecrets(values.into_iter().filter(|v| v.len() >= 8).collect())
    }
}

/// Whether a file's name says it holds credentials.
pub fn is_credential_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.contains("kubeconfig")
        || lower.ends_with(".tfstate")
        || lower.ends_with(".tfstate.backup")
        || lower == ".terraform"
        || lower == ".kube"
        || lower == "private"
        || lower.ends_with(".pem")
        || lower.ends_with(".key")
        || lower.starts_with("id_rsa")
        || lower.starts_with("id_ed25519")
        || lower.starts_with("credentials")
        || lower == ".env"
}

/// Why a file's content may not leave the server, if it may not.
fn credential_content(bytes: &[u8], secrets: &KnownSecrets) -> Option<&'static str> {
    let contains = |needle: &[u8]| !needle.is_empty() && bytes.windows(needle.len()).any(|w| w == needle);
    if secrets.0.iter().any(|secret| contains(secret.as_bytes())) {
        return Some("contains a secret this server holds");
    }
    if contains(b"PRIVATE KEY-----") {
        return Some("contains a private key");
    }
    if contains(b"client-key-data:") || contains(b"client-certificate-data:") {
        return Some("contains kubeconfig credentials");
    }
    None
}

/// Packs `app_dir` as `PREFIX/...` into a gzip'd tar, leaving out credentials. Blocking: call it
/// from `spawn_blocking`.
pub fn pack_app_dir(app_dir: &Path, prefix: &str, secrets: &KnownSecrets) -> Result<Vec<u8>, ArchiveError> {
    if !app_dir.is_dir() {
        return Err(ArchiveError::Missing(app_dir.to_path_buf()));
    }
    let mut builder = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::default()));
    builder.follow_symlinks(false);
    let mut excluded = Vec::new();
    add_dir(&mut builder, app_dir, Path::new(prefix), Path::new(""), secrets, &mut excluded)?;

    let mut note = String::from(
        "kfctl serve left these out of the download because they hold or may hold credentials.\n\
         Re-create them on your machine (for example, point kfctl at your own kubeconfig).\n\n",
    );
    for (path, why) in &excluded {
        note.push_str(&format!("{}: {why}\n", path.display()));
    }
    let mut header = tar::Header::new_gnu();
    header.set_size(note.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(jiff::Timestamp::now().as_second().max(0) as u64);
    header.set_cksum();
    builder.append_data(&mut header, Path::new(prefix).join(EXCLUDED_NOTE), note.as_bytes()).map_err(ArchiveError::Write)?;

    let gz = builder.into_inner().map_err(ArchiveError::Write)?;
    let mut bytes = gz.finish().map_err(ArchiveError::Write)?;
    bytes.flush().map_err(ArchiveError::Write)?;
    Ok(bytes)
}

fn add_dir(
    builder: &mut tar::Builder<GzEncoder<Vec<u8>>>,
    dir: &Path,
    prefix: &Path,
    relative: &Path,
    secrets: &KnownSecrets,
    excluded: &mut Vec<(PathBuf, &'static str)>,
) -> Result<(), ArchiveError> {
    let read = |source| ArchiveError::Read { path: dir.to_path_buf(), source };
    let mut entries: Vec<fs::DirEntry> = fs::read_dir(dir).map_err(read)?.collect::<Result<_, _>>().map_err(read)?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let rel = relative.join(&name);
        let kind = entry.file_type().map_err(|source| ArchiveError::Read { path: path.clone(), source })?;
        if is_credential_name(&name) {
            excluded.push((rel, "its name marks it as credentials"));
            continue;
        }
        if kind.is_symlink() {
            excluded.push((rel, "symbolic link (not followed)"));
        } else if kind.is_dir() {
            builder.append_dir(prefix.join(&rel), &path).map_err(ArchiveError::Write)?;
            add_dir(builder, &path, prefix, &rel, secrets, excluded)?;
        } else if kind.is_file() {
            let bytes = fs::read(&path).map_err(|source| ArchiveError::Read { path: path.clone(), source })?;
            if let Some(why) = credential_content(&bytes, secrets) {
                excluded.push((rel, why));
                continue;
            }
            let meta = entry.metadata().map_err(|source| ArchiveError::Read { path: path.clone(), source })?;
            let mut header = tar::Header::new_gnu();
            header.set_metadata(&meta);
            header.set_size(bytes.len() as u64);
            header.set_cksum();
            builder.append_data(&mut header, prefix.join(&rel), bytes.as_slice()).map_err(ArchiveError::Write)?;
        }
        // Sockets, fifos and devices have no place in an app directory: skipped silently.
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn unpack(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
        archive
            .entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let path = e.path().unwrap().to_string_lossy().into_owned();
                let mut data = Vec::new();
                e.read_to_end(&mut data).unwrap();
                (path, data)
            })
            .collect()
    }

    #[test]
    fn leaves_out_credentials_by_name_and_by_content() {
        let dir = tempfile::tempdir().unwrap();
        let app = dir.path();
        fs::write(app.join("kfctl.yaml"), "name: demo\n").unwrap();
        fs::create_dir_all(app.join("manifests/dex")).unwrap();
        fs::write(app.join("manifests/dex/config.yaml"), "hash: $2y$12$abc\n").unwrap();
        fs::write(app.join("kubeconfig"), "client-key-data: AAAA\n").unwrap();
        fs::write(app.join("notes.txt"), "the password is Sup3rSecretPw!\n").unwrap();
        fs::write(app.join("key.txt"), "-----BEGIN RSA PRIVATE KEY-----\n").unwrap();
        fs::create_dir_all(app.join("terraform/.terraform")).unwrap();
        fs::write(app.join("terraform/terraform.tfstate"), "{}").unwrap();
        fs::write(app.join("terraform/main.tf"), "# main\n").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink("/etc/passwd", app.join("passwd")).unwrap();

        let bytes = pack_app_dir(app, "demo", &KnownSecrets::new(["Sup3rSecretPw!".to_string()])).unwrap();
        let files = unpack(&bytes);
        let names: Vec<&str> = files.iter().map(|(p, _)| p.as_str()).collect();
        assert!(names.contains(&"demo/kfctl.yaml"));
        assert!(names.contains(&"demo/manifests/dex/config.yaml"));
        assert!(names.contains(&"demo/terraform/main.tf"));
        for gone in ["demo/kubeconfig", "demo/notes.txt", "demo/key.txt", "demo/terraform/terraform.tfstate", "demo/terraform/.terraform", "demo/passwd"] {
            assert!(!names.contains(&gone), "{gone} must not be packed: {names:?}");
        }
        let note = &files.iter().find(|(p, _)| p == "demo/EXCLUDED-FROM-DOWNLOAD.txt").unwrap().1;
        let note = String::from_utf8_lossy(note);
        assert!(note.contains("notes.txt: contains a secret this server holds"), "{note}");
        assert!(note.contains("kubeconfig: its name marks it as credentials"), "{note}");
        for (_, data) in &files {
            let text = String::from_utf8_lossy(data);
            assert!(!text.contains("Sup3rSecretPw!") && !text.contains("client-key-data") && !text.contains("PRIVATE KEY-----"));
        }
    }
}
