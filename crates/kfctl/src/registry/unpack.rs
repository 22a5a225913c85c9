//! Safe extraction of a `.tar.gz` registry archive.
//!
//! The archive is extracted into a hidden temporary directory next to the target and renamed
//! into place only when every entry has been checked and written, so a failed or interrupted
//! run never leaves a half-written registry. Refused: absolute paths, `..` components, device
//! files and FIFOs, links that leave the directory (or climb out through another link), and
//! archives over the size/entry limits. Regular files get mode 0644 or 0755, never setuid.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

use flate2::read::GzDecoder;
use sha2::{Digest, Sha256};
use tar::{Archive, EntryType};

use super::RegistryError;

/// Bounds on what one archive may unpack to (a defence against decompression bombs).
#[derive(Debug, Clone, Copy)]
pub struct UnpackLimits {
    /// Total bytes of regular files.
    pub max_total_bytes: u64,
    /// Bytes of any single file.
    pub max_file_bytes: u64,
    /// Number of entries of any type.
    pub max_entries: usize,
}

impl Default for UnpackLimits {
    /// Generous for kubeflow/manifests (v1.4.1: 8k entries, ~40 MB unpacked).
    fn default() -> Self {
        UnpackLimits { max_total_bytes: 1 << 30, max_file_bytes: 128 << 20, max_entries: 100_000 }
    }
}

/// What [`unpack`] wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnpackReport {
    pub files: usize,
    pub dirs: usize,
    pub links: usize,
    pub bytes: u64,
    /// The single top-level directory that was stripped, such as `manifests-1.4.1`.
    pub stripped_prefix: Option<String>,
    /// With [`UnpackOptions::hash`]: every regular file's sha256 (hex) and every link's target,
    /// by its path in the archive, whether it was written or skipped.
    pub entries: BTreeMap<PathBuf, EntryContent>,
}

/// What one archive entry holds, as [`UnpackOptions::hash`] records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryContent {
    /// A regular file's sha256, in hex.
    File(String),
    /// A symbolic link's target.
    Symlink(PathBuf),
    /// A hard link's target.
    HardLink(PathBuf),
}

/// How [`unpack_with`] treats an archive beyond the limits.
#[derive(Clone, Copy, Default)]
pub struct UnpackOptions<'a> {
    pub limits: UnpackLimits,
    /// Only entries for which this answers true are written (by their path in the archive);
    /// the others are still read through and checked (and hashed). All are written when None.
    pub keep: Option<&'a dyn Fn(&Path) -> bool>,
    /// Record every entry's content in [`UnpackReport::entries`].
    pub hash: bool,
}

/// A link entry, checked and created once every regular file is in place.
struct PendingLink {
    /// Path in the archive.
    entry: PathBuf,
    target: PathBuf,
    hard: bool,
}

/// Unpack the `.tar.gz` at `archive` into `target`, which must not exist yet. If every entry
/// lives under one top-level directory, that directory becomes `target` (its name is stripped).
/// `archive_name` is used in messages. On error nothing is left at `target` or next to it.
pub fn unpack(archive: &Path, archive_name: &str, target: &Path, limits: &UnpackLimits) -> Result<UnpackReport, RegistryError> {
    unpack_with(archive, archive_name, target, &UnpackOptions { limits: *limits, ..Default::default() })
}

/// [`unpack`], writing only the entries `options.keep` selects and, with `options.hash`,
/// recording what every entry holds (to check an archive against its own manifest).
pub fn unpack_with(archive: &Path, archive_name: &str, target: &Path, options: &UnpackOptions<'_>) -> Result<UnpackReport, RegistryError> {
    if fs::symlink_metadata(target).is_ok() {
        return Err(RegistryError::TargetExists { path: target.to_path_buf() });
    }
    let parent = target.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    fs::create_dir_all(parent).map_err(|source| RegistryError::Write { path: parent.to_path_buf(), error: source })?;
    let staging = tempfile::Builder::new()
        .prefix(".kfctl-unpack-")
        .tempdir_in(parent)
        .map_err(|source| RegistryError::Write { path: parent.to_path_buf(), error: source })?;

    let (mut report, links) = extract(archive, archive_name, staging.path(), options)?;

    // Strip a single top-level directory, as GitHub release archives have.
    let top: Vec<_> = fs::read_dir(staging.path())
        .and_then(|entries| entries.collect::<Result<Vec<_>, _>>())
        .map_err(|source| RegistryError::Write { path: staging.path().to_path_buf(), error: source })?;
    let root = match top.as_slice() {
        [only] if only.file_type().map(|t| t.is_dir()).unwrap_or(false) => {
            report.stripped_prefix = Some(only.file_name().to_string_lossy().into_owned());
            only.path()
        }
        _ => staging.path().to_path_buf(),
    };
    let strip = usize::from(report.stripped_prefix.is_some());
    create_links(&root, archive_name, strip, &links, &mut report)?;

    fs::rename(&root, target).map_err(|source| RegistryError::Write { path: target.to_path_buf(), error: source })?;
    // `staging` (now empty, or already moved) is removed on drop.
    if root == staging.path() {
        let _ = staging.keep();
    }
    Ok(report)
}

/// Pass over the archive writing directories and regular files; links are returned for later.
fn extract(
    archive: &Path,
    archive_name: &str,
    root: &Path,
    options: &UnpackOptions<'_>,
) -> Result<(UnpackReport, Vec<PendingLink>), RegistryError> {
    let limits = &options.limits;
    let corrupt = |e: io::Error| RegistryError::Corrupt { archive: archive_name.to_string(), message: e.to_string() };
    let unsafe_entry = |entry: &Path, reason: &str| RegistryError::Unsafe {
        archive: archive_name.to_string(),
        entry: entry.display().to_string(),
        reason: reason.to_string(),
    };
    let file = File::open(archive).map_err(|source| RegistryError::ReadLocal { path: archive.to_path_buf(), error: source })?;
    let mut tar = Archive::new(GzDecoder::new(io::BufReader::new(file)));
    let mut report = UnpackReport::default();
    let mut links = Vec::new();
    let mut entries_seen = 0usize;
    for entry in tar.entries().map_err(corrupt)? {
        let mut entry = entry.map_err(corrupt)?;
        let kind = entry.header().entry_type();
        if matches!(kind, EntryType::XGlobalHeader | EntryType::XHeader) {
            continue; // pax metadata (GitHub puts the commit id there); not a file
        }
        entries_seen += 1;
        if entries_seen > limits.max_entries {
            return Err(RegistryError::TooLarge {
                archive: archive_name.to_string(),
                reason: format!("more than {} entries", limits.max_entries),
            });
        }
        let raw_path = entry.path().map_err(corrupt)?.into_owned();
        let rel = checked_relative(&raw_path).map_err(|reason| unsafe_entry(&raw_path, reason))?;
        if rel.as_os_str().is_empty() {
            continue; // "./" itself
        }
        let dest = root.join(&rel);
        let write_err = |source| RegistryError::Write { path: dest.clone(), error: source };
        let kept = options.keep.is_none_or(|keep| keep(&rel));
        match kind {
            EntryType::Directory if !kept => {}
            EntryType::Directory => {
                fs::create_dir_all(&dest).map_err(write_err)?;
                report.dirs += 1;
            }
            EntryType::Regular | EntryType::Continuous => {
                let size = entry.header().size().map_err(corrupt)?;
                if size > limits.max_file_bytes {
                    return Err(RegistryError::TooLarge {
                        archive: archive_name.to_string(),
                        reason: format!("{} is {size} bytes, over the {} byte limit per file", raw_path.display(), limits.max_file_bytes),
                    });
                }
                if report.bytes + size > limits.max_total_bytes {
                    return Err(RegistryError::TooLarge {
                        archive: archive_name.to_string(),
                        reason: format!("more than {} bytes in total", limits.max_total_bytes),
                    });
                }
                let mut out: Box<dyn Write> = if kept {
                    if let Some(dir) = dest.parent() {
                        fs::create_dir_all(dir).map_err(|source| RegistryError::Write { path: dir.to_path_buf(), error: source })?;
                    }
                    let executable = entry.header().mode().map(|m| m & 0o111 != 0).unwrap_or(false);
                    let mode = if executable { 0o755 } else { 0o644 };
                    Box::new(OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(&dest).map_err(write_err)?)
                } else {
                    Box::new(io::sink())
                };
                let mut hasher = options.hash.then(Sha256::new);
                // Copy at most the declared size (+1 to notice a lying header), writing and hashing
                // as it streams. Write errors (a full disk) are told from a damaged archive.
                let mut limited = (&mut entry).take(size + 1);
                let mut buf = vec![0u8; 64 * 1024];
                let mut copied = 0u64;
                loop {
                    let n = limited.read(&mut buf).map_err(corrupt)?;
                    if n == 0 {
                        break;
                    }
                    out.write_all(&buf[..n]).map_err(write_err)?;
                    if let Some(hasher) = hasher.as_mut() {
                        hasher.update(&buf[..n]);
                    }
                    copied += n as u64;
                }
                if copied != size {
                    return Err(corrupt(io::Error::other(format!("{} is shorter or longer than its header says", raw_path.display()))));
                }
                out.flush().map_err(write_err)?;
                if let Some(hasher) = hasher {
                    report.entries.insert(rel.clone(), EntryContent::File(hex::encode(hasher.finalize())));
                }
                if !kept {
                    continue;
                }
                report.files += 1;
                report.bytes += size;
            }
            EntryType::Symlink | EntryType::Link => {
                let target = entry
                    .link_name()
                    .map_err(corrupt)?
                    .ok_or_else(|| unsafe_entry(&raw_path, "is a link without a target"))?
                    .into_owned();
                if options.hash {
                    let content = if kind == EntryType::Symlink { EntryContent::Symlink(target.clone()) } else { EntryContent::HardLink(target.clone()) };
                    report.entries.insert(rel.clone(), content);
                }
                if !kept {
                    continue;
                }
                links.push(PendingLink { entry: rel, target, hard: kind == EntryType::Link });
            }
            EntryType::Char | EntryType::Block => return Err(unsafe_entry(&raw_path, "is a device file")),
            EntryType::Fifo => return Err(unsafe_entry(&raw_path, "is a FIFO")),
            other => return Err(unsafe_entry(&raw_path, &format!("has an unsupported entry type {other:?}"))),
        }
    }
    Ok((report, links))
}

/// `path` as a relative path of plain components: no root, no `..`; `.` dropped.
fn checked_relative(path: &Path) -> Result<PathBuf, &'static str> {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir => return Err("contains a `..` component"),
            Component::RootDir | Component::Prefix(_) => return Err("is an absolute path"),
        }
    }
    Ok(out)
}

/// Drop the first `strip` components of an archive path (the top-level directory).
fn strip_components(path: &Path, strip: usize) -> Option<PathBuf> {
    let mut components = path.components();
    for _ in 0..strip {
        components.next()?;
    }
    Some(components.as_path().to_path_buf())
}

/// Check every link against the final root and create it. Symbolic links must be relative and
/// resolve inside the root without climbing (`..`) out of another link; hard links must name a
/// regular file of the archive, and are written as copies so nothing shares an inode with a
/// file outside.
fn create_links(root: &Path, archive_name: &str, strip: usize, links: &[PendingLink], report: &mut UnpackReport) -> Result<(), RegistryError> {
    let unsafe_entry = |entry: &Path, reason: String| RegistryError::Unsafe {
        archive: archive_name.to_string(),
        entry: entry.display().to_string(),
        reason,
    };
    let located: Vec<(PathBuf, &PendingLink)> = links
        .iter()
        .map(|link| {
            strip_components(&link.entry, strip)
                .filter(|p| !p.as_os_str().is_empty())
                .map(|p| (p, link))
                .ok_or_else(|| unsafe_entry(&link.entry, "replaces the archive's top-level directory with a link".into()))
        })
        .collect::<Result<_, _>>()?;
    let symlinks: HashSet<&Path> = located.iter().filter(|(_, l)| !l.hard).map(|(p, _)| p.as_path()).collect();

    for (at, link) in &located {
        let dest = root.join(at);
        if fs::symlink_metadata(&dest).is_ok() {
            return Err(unsafe_entry(&link.entry, "is a link that would replace another entry".into()));
        }
        if let Some(dir) = dest.parent() {
            // A link inside a directory that is itself a link would be written through it.
            for ancestor in at.ancestors().skip(1) {
                if symlinks.contains(ancestor) {
                    return Err(unsafe_entry(&link.entry, format!("lies under the link {}", ancestor.display())));
                }
            }
            fs::create_dir_all(dir).map_err(|source| RegistryError::Write { path: dir.to_path_buf(), error: source })?;
        }
        if link.hard {
            let target = checked_relative(&link.target)
                .ok()
                .and_then(|t| strip_components(&t, strip))
                .filter(|t| !t.as_os_str().is_empty())
                .ok_or_else(|| unsafe_entry(&link.entry, format!("is a hard link to {}, outside the directory", link.target.display())))?;
            let source = root.join(&target);
            let is_file = fs::symlink_metadata(&source).map(|m| m.is_file()).unwrap_or(false);
            if !is_file {
                return Err(unsafe_entry(&link.entry, format!("is a hard link to {}, which is not a regular file of the archive", link.target.display())));
            }
            fs::copy(&source, &dest).map_err(|source| RegistryError::Write { path: dest.clone(), error: source })?;
        } else {
            check_symlink_target(at, &link.target, &symlinks).map_err(|reason| unsafe_entry(&link.entry, reason))?;
            std::os::unix::fs::symlink(&link.target, &dest).map_err(|source| RegistryError::Write { path: dest.clone(), error: source })?;
        }
        report.links += 1;
    }
    Ok(())
}

/// A symlink at `at` (relative to the root) pointing to `target` stays inside the root: the
/// target is relative and, walked from the link's directory, never goes above the root, and
/// never uses `..` to leave a directory that is itself a link (where `..` is not lexical).
fn check_symlink_target(at: &Path, target: &Path, symlinks: &HashSet<&Path>) -> Result<(), String> {
    let outside = || format!("is a symlink to {}, outside the directory", target.display());
    let mut position: PathBuf = at.parent().map(Path::to_path_buf).unwrap_or_default();
    for component in target.components() {
        match component {
            Component::Normal(part) => position.push(part),
            Component::CurDir => {}
            Component::ParentDir => {
                if symlinks.contains(position.as_path()) {
                    return Err(format!("is a symlink to {} that climbs out of another link", target.display()));
                }
                if !position.pop() {
                    return Err(outside());
                }
            }
            Component::RootDir | Component::Prefix(_) => return Err(outside()),
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use flate2::Compression;
    use flate2::write::GzEncoder;

    /// One raw tar entry: path, type, content, link target. Paths and link names are written
    /// byte for byte (the tar crate's setters would refuse the hostile ones).
    pub(crate) struct Raw<'a>(pub &'a str, pub EntryType, pub &'a [u8], pub Option<&'a str>);

    pub(crate) fn tar_gz(entries: &[Raw<'_>]) -> Vec<u8> {
        let mut builder = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
        for Raw(path, kind, data, link) in entries {
            let mut header = tar::Header::new_old();
            header.set_entry_type(*kind);
            header.set_size(data.len() as u64);
            header.set_mode(if *kind == EntryType::Directory { 0o755 } else { 0o644 });
            header.set_mtime(0);
            let old = header.as_old_mut();
            old.name[..path.len()].copy_from_slice(path.as_bytes());
            if let Some(link) = link {
                old.linkname[..link.len()].copy_from_slice(link.as_bytes());
            }
            header.set_cksum();
            builder.append(&header, *data).unwrap();
        }
        builder.into_inner().unwrap().finish().unwrap()
    }

    fn dir(path: &str) -> Raw<'_> {
        Raw(path, EntryType::Directory, b"", None)
    }
    fn file<'a>(path: &'a str, data: &'a [u8]) -> Raw<'a> {
        Raw(path, EntryType::Regular, data, None)
    }
    fn symlink<'a>(path: &'a str, to: &'a str) -> Raw<'a> {
        Raw(path, EntryType::Symlink, b"", Some(to))
    }
    fn hardlink<'a>(path: &'a str, to: &'a str) -> Raw<'a> {
        Raw(path, EntryType::Link, b"", Some(to))
    }

    /// Unpack `bytes` into `<tmp>/out/registry`, returning the result and the tmp dir.
    fn try_unpack(bytes: &[u8], limits: &UnpackLimits) -> (Result<UnpackReport, RegistryError>, tempfile::TempDir) {
        let tmp = tempfile::tempdir().unwrap();
        let archive = tmp.path().join("a.tar.gz");
        fs::write(&archive, bytes).unwrap();
        fs::create_dir(tmp.path().join("out")).unwrap();
        let result = unpack(&archive, "a.tar.gz", &tmp.path().join("out/registry"), limits);
        (result, tmp)
    }

    fn assert_refused(entries: &[Raw<'_>], expected: &str) {
        let (result, tmp) = try_unpack(&tar_gz(entries), &UnpackLimits::default());
        let err = result.expect_err("hostile archive was accepted").to_string();
        assert!(err.contains(expected), "{err}");
        assert!(err.contains("nothing was written"), "{err}");
        // Nothing at the target, nothing next to it (no staging left), nothing outside.
        assert_eq!(fs::read_dir(tmp.path().join("out")).unwrap().count(), 0, "left something behind: {err}");
        assert!(!tmp.path().join("evil").exists());
    }

    #[test]
    fn unpacks_and_strips_the_top_level_directory() {
        let bytes = tar_gz(&[
            Raw("pax_global_header", EntryType::XGlobalHeader, b"52 comment=0123456789012345678901234567890123456789\n", None),
            dir("manifests-1.0/"),
            dir("manifests-1.0/apps/"),
            file("manifests-1.0/apps/kustomization.yaml", b"resources: []\n"),
            Raw("manifests-1.0/run.sh", EntryType::Regular, b"#!/bin/sh\n", None),
            symlink("manifests-1.0/apps/link.yaml", "kustomization.yaml"),
            symlink("manifests-1.0/up", "apps/../apps"),
            hardlink("manifests-1.0/copy.yaml", "manifests-1.0/apps/kustomization.yaml"),
        ]);
        let (result, tmp) = try_unpack(&bytes, &UnpackLimits::default());
        let report = result.unwrap();
        let root = tmp.path().join("out/registry");
        assert_eq!(report.stripped_prefix.as_deref(), Some("manifests-1.0"));
        assert_eq!((report.files, report.dirs, report.links), (2, 2, 3));
        assert_eq!(fs::read_to_string(root.join("apps/link.yaml")).unwrap(), "resources: []\n");
        assert_eq!(fs::read_to_string(root.join("copy.yaml")).unwrap(), "resources: []\n");
        assert!(fs::symlink_metadata(root.join("copy.yaml")).unwrap().is_file(), "hard links become copies");
        assert_eq!(fs::read_dir(tmp.path().join("out")).unwrap().count(), 1, "staging directory removed");
    }

    #[test]
    fn archive_without_a_single_top_directory_is_kept_whole() {
        let bytes = tar_gz(&[file("a.yaml", b"a"), dir("b/"), file("b/c.yaml", b"c")]);
        let (result, tmp) = try_unpack(&bytes, &UnpackLimits::default());
        assert_eq!(result.unwrap().stripped_prefix, None);
        assert_eq!(fs::read_to_string(tmp.path().join("out/registry/b/c.yaml")).unwrap(), "c");
    }

    #[test]
    fn refuses_parent_components() {
        assert_refused(&[dir("m/"), file("m/ok", b"x"), file("m/../../evil", b"x")], "contains a `..` component");
    }

    #[test]
    fn refuses_absolute_paths() {
        assert_refused(&[dir("m/"), file("/tmp/evil", b"x")], "is an absolute path");
    }

    #[test]
    fn refuses_symlinks_leaving_the_directory() {
        assert_refused(&[dir("m/"), symlink("m/evil", "../../evil")], "outside the directory");
        assert_refused(&[dir("m/"), symlink("m/etc", "/etc")], "outside the directory");
        // `m/x -> ..` is the archive's own root, which stripping `m/` puts outside.
        assert_refused(&[dir("m/"), file("m/a", b"a"), symlink("m/x", "..")], "outside the directory");
    }

    #[test]
    fn refuses_climbing_out_through_another_link() {
        // `here -> .` is harmless alone, but `here/..` is the parent of the root, not the root.
        assert_refused(&[dir("m/"), file("m/a", b"a"), symlink("m/here", "."), symlink("m/out", "here/..")], "climbs out of another link");
    }

    #[test]
    fn refuses_writing_through_a_link() {
        assert_refused(&[dir("m/"), symlink("m/d", "sub"), dir("m/sub/"), file("m/d/x", b"x")], "would replace another entry");
    }

    #[test]
    fn refuses_hard_links_leaving_the_directory() {
        assert_refused(&[dir("m/"), hardlink("m/passwd", "/etc/passwd")], "outside the directory");
        assert_refused(&[dir("m/"), hardlink("m/passwd", "m/../../etc/passwd")], "outside the directory");
        assert_refused(&[dir("m/"), hardlink("m/nothing", "m/missing")], "not a regular file of the archive");
    }

    #[test]
    fn refuses_device_files_and_fifos() {
        assert_refused(&[dir("m/"), Raw("m/null", EntryType::Char, b"", None)], "is a device file");
        assert_refused(&[dir("m/"), Raw("m/disk", EntryType::Block, b"", None)], "is a device file");
        assert_refused(&[dir("m/"), Raw("m/pipe", EntryType::Fifo, b"", None)], "is a FIFO");
    }

    #[test]
    fn enforces_limits() {
        let limits = UnpackLimits { max_total_bytes: 10, max_file_bytes: 6, max_entries: 3 };
        let cases: [(&[Raw<'_>], &str); 3] = [
            (&[dir("m/"), file("m/a", b"1234567")], "per file"),
            (&[dir("m/"), file("m/a", b"123456"), file("m/b", b"123456")], "in total"),
            (&[dir("m/"), file("m/a", b"1"), file("m/b", b"1"), file("m/c", b"1")], "more than 3 entries"),
        ];
        for (entries, expected) in cases {
            let (result, tmp) = try_unpack(&tar_gz(entries), &limits);
            let err = result.unwrap_err().to_string();
            assert!(err.contains(expected), "{err}");
            assert_eq!(fs::read_dir(tmp.path().join("out")).unwrap().count(), 0);
        }
    }

    #[test]
    fn refuses_garbage_and_existing_targets() {
        let (result, tmp) = try_unpack(b"this is not gzip", &UnpackLimits::default());
        assert!(matches!(result, Err(RegistryError::Corrupt { .. })), "{result:?}");
        assert_eq!(fs::read_dir(tmp.path().join("out")).unwrap().count(), 0);

        let archive = tmp.path().join("ok.tar.gz");
        fs::write(&archive, tar_gz(&[dir("m/"), file("m/a", b"a")])).unwrap();
        fs::create_dir(tmp.path().join("out/taken")).unwrap();
        let err = unpack(&archive, "ok", &tmp.path().join("out/taken"), &UnpackLimits::default()).unwrap_err();
        assert!(matches!(err, RegistryError::TargetExists { .. }), "{err}");
    }
}
