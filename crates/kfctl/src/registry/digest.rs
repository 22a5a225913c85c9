//! Pins by content: the digest of an unpacked tree, so two archives of the same tree (compressed
//! differently, by another tool, with other timestamps) pin the same, and one changed byte does not.
//!
//! `tree-sha256` is the sha256 of one record per entry below the root, in bytewise order of the
//! entry's path (`/`-separated, relative to the root, the root itself not included):
//!
//! ```text
//! d <path>\0                            a directory
//! f <sha256 of the contents> <path>\0   a regular file
//! x <sha256 of the contents> <path>\0   a regular file with any executable bit
//! l <sha256 of the target> <path>\0     a symbolic link (its target, not followed)
//! ```
//!
//! Owners, timestamps and other mode bits do not count: archives do not carry them faithfully.
//! A plain file (a remote resource fetched as a file) is pinned by `sha256` of its bytes.

use std::fmt;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

/// A content pin, as written in kfctl.yaml and the catalogs: `ALGORITHM:HEX`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Pin {
    /// `tree-sha256:HEX`: an unpacked tree ([`tree_digest`]).
    Tree(String),
    /// `sha256:HEX`: the bytes of one file (a remote file; or, in apps written before content
    /// pins, the registry archive's bytes).
    Bytes(String),
}

/// The prefix of a tree pin.
pub const TREE_SHA256: &str = "tree-sha256";

impl Pin {
    /// Parse `tree-sha256:HEX` or `sha256:HEX` (a bare 64-digit HEX is `sha256`, as `--sha256`
    /// always took it). The error says what was expected.
    pub fn parse(text: &str) -> Result<Pin, String> {
        let text = text.trim();
        let (kind, hex) = match text.split_once(':') {
            Some((kind, hex)) => (kind, hex),
            None => ("sha256", text),
        };
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("{text:?} is not a digest: expected {TREE_SHA256}:HEX or sha256:HEX with 64 hex digits"));
        }
        let hex = hex.to_ascii_lowercase();
        match kind {
            TREE_SHA256 => Ok(Pin::Tree(hex)),
            "sha256" => Ok(Pin::Bytes(hex)),
            other => Err(format!("{text:?}: unknown digest algorithm {other:?} (kfctl pins with {TREE_SHA256} or sha256)")),
        }
    }

    /// The hex digits alone.
    pub fn hex(&self) -> &str {
        match self {
            Pin::Tree(hex) | Pin::Bytes(hex) => hex,
        }
    }
}

impl fmt::Display for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pin::Tree(hex) => write!(f, "{TREE_SHA256}:{hex}"),
            Pin::Bytes(hex) => write!(f, "sha256:{hex}"),
        }
    }
}

/// The `tree-sha256` pin of everything below `root`. Blocking.
pub fn tree_digest(root: &Path) -> std::io::Result<Pin> {
    let mut entries = Vec::new();
    walk(root, PathBuf::new(), &mut entries)?;
    entries.sort_by(|a, b| a.0.as_os_str().as_bytes().cmp(b.0.as_os_str().as_bytes()));
    let mut tree = Sha256::new();
    for (rel, kind) in entries {
        let full = root.join(&rel);
        let (tag, content) = match kind {
            EntryKind::Dir => ("d", None),
            EntryKind::File { executable } => (if executable { "x" } else { "f" }, Some(file_sha256(&full)?)),
            EntryKind::Link => ("l", Some(hex::encode(Sha256::digest(std::fs::read_link(&full)?.as_os_str().as_bytes())))),
        };
        tree.update(tag.as_bytes());
        tree.update(b" ");
        if let Some(content) = content {
            tree.update(content.as_bytes());
            tree.update(b" ");
        }
        tree.update(rel.as_os_str().as_bytes());
        tree.update(b"\0");
    }
    Ok(Pin::Tree(hex::encode(tree.finalize())))
}

/// The `sha256` pin of one file's bytes. Blocking.
pub fn file_digest(path: &Path) -> std::io::Result<Pin> {
    Ok(Pin::Bytes(file_sha256(path)?))
}

/// The pin of `path` of the same algorithm as `expected` (a tree for `tree-sha256`, the bytes of
/// a file for `sha256`).
pub fn digest_like(expected: &Pin, path: &Path) -> std::io::Result<Pin> {
    match expected {
        Pin::Tree(_) => tree_digest(path),
        Pin::Bytes(_) => file_digest(path),
    }
}

enum EntryKind {
    Dir,
    File { executable: bool },
    Link,
}

fn walk(root: &Path, rel: PathBuf, out: &mut Vec<(PathBuf, EntryKind)>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(root.join(&rel))? {
        let entry = entry?;
        let meta = entry.metadata()?; // of the entry itself: a symlink is not followed
        let child = rel.join(entry.file_name());
        if meta.file_type().is_symlink() {
            out.push((child, EntryKind::Link));
        } else if meta.is_dir() {
            out.push((child.clone(), EntryKind::Dir));
            walk(root, child, out)?;
        } else if meta.is_file() {
            out.push((child, EntryKind::File { executable: meta.permissions().mode() & 0o111 != 0 }));
        } else {
            return Err(std::io::Error::other(format!("{}: not a file, directory or link", root.join(child).display())));
        }
    }
    Ok(())
}

fn file_sha256(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 128 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::create_dir_all(dir.path().join("empty")).unwrap();
        std::fs::write(dir.path().join("a/b/f.yaml"), "kind: X\n").unwrap();
        std::fs::write(dir.path().join("run.sh"), "#!/bin/sh\n").unwrap();
        std::os::unix::fs::symlink("a/b/f.yaml", dir.path().join("link")).unwrap();
        dir
    }

    #[test]
    fn every_kind_of_change_changes_the_digest() {
        let dir = tree();
        let base = tree_digest(dir.path()).unwrap();
        assert_eq!(base, tree_digest(tree().path()).unwrap(), "same tree elsewhere, same digest");
        let changes: [(&str, &dyn Fn(&Path)); 5] = [
            ("one byte", &|p| std::fs::write(p.join("a/b/f.yaml"), "kind: Y\n").unwrap()),
            ("executable bit", &|p| std::fs::set_permissions(p.join("run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap()),
            ("link target", &|p| {
                std::fs::remove_file(p.join("link")).unwrap();
                std::os::unix::fs::symlink("run.sh", p.join("link")).unwrap();
            }),
            ("empty directory", &|p| std::fs::remove_dir(p.join("empty")).unwrap()),
            ("rename", &|p| std::fs::rename(p.join("run.sh"), p.join("run2.sh")).unwrap()),
        ];
        for (what, change) in changes {
            let dir = tree();
            change(dir.path());
            assert_ne!(tree_digest(dir.path()).unwrap(), base, "{what}");
        }
        // Timestamps and other mode bits do not count.
        std::fs::set_permissions(dir.path().join("a/b/f.yaml"), std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(tree_digest(dir.path()).unwrap(), base);
    }

    #[test]
    fn pins_parse_and_print() {
        let hex = "Ab".repeat(32);
        assert_eq!(Pin::parse(&format!("tree-sha256:{hex}")).unwrap().to_string(), format!("tree-sha256:{}", hex.to_lowercase()));
        assert_eq!(Pin::parse(&hex).unwrap(), Pin::Bytes(hex.to_lowercase()));
        assert!(Pin::parse("md5:abc").unwrap_err().contains("not a digest"));
        assert!(Pin::parse(&format!("md5:{hex}")).unwrap_err().contains("unknown digest algorithm"));
    }
}
