//! One file that carries an app into an air gap: `kfctl bundle` writes it, `kfctl init --bundle`
//! and `kfctl mirror --from-bundle` read it.
//!
//! A bundle is a `.tar.gz` whose entries all live under `kfctl-bundle/`:
//! - `app/`: the app directory as it is: kfctl.yaml, the vendored release and remote resources
//!   (each pinned in kfctl.yaml), the user's patches and components;
//! - `images/` (optional): the images the app runs, as an OCI image layout;
//! - `bundle.json`, written last: the manifest, with the sha256 of every file above (and every
//!   symlink's target).
//!
//! It is written deterministically (sorted, mtime 0, owner 0) to `FILE.partial`, renamed into place
//! when complete, with `FILE.sha256` beside it (`sha256sum -c` reads it). Content is verified on
//! both sides: before writing, the vendored release and remote resources against kfctl.yaml's pins;
//! when reading, every entry is hashed as it streams through the registry's safe unpacker and the
//! whole set must equal the manifest, then the pins are checked again. The manifest guards against
//! damage in transit; compare the `.sha256` out of band to guard against tampering.
//! Everything here is blocking.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::write::GzEncoder;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::app::{self, App, AppError};
use crate::config;
use crate::registry::{EntryContent, RegistryError, UnpackLimits, UnpackOptions, unpack_with};

/// The top-level directory of every entry.
pub const ROOT: &str = "kfctl-bundle";
/// The manifest, under [`ROOT`].
pub const MANIFEST: &str = "bundle.json";
/// The app directory, under [`ROOT`].
pub const APP: &str = "app";
/// The OCI image layout, under [`ROOT`].
pub const IMAGES: &str = "images";
const FORMAT: u32 = 1;

/// Bounds for reading a bundle: images make it far larger than a release archive.
const LIMITS: UnpackLimits = UnpackLimits {
    max_total_bytes: 1 << 40,
    max_file_bytes: 1 << 36,
    max_entries: 1_000_000,
};

/// `bundle.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// The bundle format (1).
    pub format: u32,
    /// The app's name.
    pub app: String,
    /// The Kubeflow version of the app.
    pub kubeflow_version: String,
    /// The images in `images/`, by the references the render names them with.
    #[serde(default)]
    pub images: Vec<String>,
    /// Every entry below the root but the manifest: `sha256:HEX` for a file, `symlink:TARGET`
    /// for a symlink, by its path (`app/kfctl.yaml`).
    pub files: BTreeMap<String, String>,
}

/// What [`write`] made.
#[derive(Debug, Clone)]
pub struct Written {
    pub path: PathBuf,
    /// The sha256 of the bundle file (hex), also in `<path>.sha256`.
    pub sha256: String,
    pub files: usize,
    /// Bytes of content before compression.
    pub content_bytes: u64,
    /// Bytes of the bundle file.
    pub bundle_bytes: u64,
}

/// What can go wrong making or reading a bundle.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error(transparent)]
    App(#[from] AppError),
    #[error(
        "the vendored release or remote resources in {dir} no longer match their pins in kfctl.yaml\n  hint: restore them (`git checkout`, or `kfctl init --force` to vendor the release again) before bundling"
    )]
    StaleApp { dir: PathBuf },
    #[error("cannot read {path}: {error}")]
    ReadApp { path: PathBuf, error: io::Error },
    #[error(
        "cannot write the bundle {path}: the disk is full after {:.1} MB (the app and images hold {:.1} MB before compression)\n  hint: free space there, or pass -o with a path on another disk; nothing was left behind",
        *written as f64 / 1e6,
        *content as f64 / 1e6
    )]
    DiskFull {
        path: PathBuf,
        written: u64,
        content: u64,
    },
    #[error("cannot write the bundle {path}: {error}\n  hint: nothing was left behind")]
    Write { path: PathBuf, error: io::Error },
    #[error("cannot read the bundle {bundle}: {error}")]
    Unpack {
        bundle: PathBuf,
        error: RegistryError,
    },
    #[error(
        "{bundle} is not a kfctl bundle: {reason}\n  hint: make one with `kfctl bundle DIR -o FILE`"
    )]
    NotABundle { bundle: PathBuf, reason: String },
    #[error(
        "{bundle}: {entry} does not match the bundle's manifest ({problem})\n  hint: the file was changed or damaged on the way; copy it again and compare its sha256 with {bundle}.sha256"
    )]
    Mismatch {
        bundle: PathBuf,
        entry: String,
        problem: String,
    },
    #[error(
        "{bundle} holds no images\n  hint: make the bundle with `kfctl bundle --images` to carry them"
    )]
    NoImages { bundle: PathBuf },
    #[error(
        "{dir} is not empty\n  hint: a bundle makes a whole app directory: name a new or empty one"
    )]
    NotEmpty { dir: PathBuf },
}

/// One entry to write: its path under the root and where its content is.
enum Source {
    File {
        path: PathBuf,
        len: u64,
        executable: bool,
    },
    Symlink {
        target: PathBuf,
    },
}

/// Write `app` (and the OCI image layout `images`, holding `image_refs`) to the bundle `out`.
pub fn write(
    app: &App,
    images: Option<(&Path, &[String])>,
    out: &Path,
) -> Result<Written, BundleError> {
    if !app.verify_vendored(&app.config.registry) {
        return Err(BundleError::StaleApp {
            dir: app.dir.clone(),
        });
    }
    let out_abs = std::path::absolute(out).unwrap_or_else(|_| out.to_path_buf());
    let mut entries: Vec<(String, Source)> = Vec::new();
    collect(&app.dir, &app.dir, APP, &out_abs, &mut entries)?;
    if let Some((layout, _)) = images {
        collect(layout, layout, IMAGES, &out_abs, &mut entries)?;
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let expected: u64 = entries
        .iter()
        .map(|(_, s)| {
            if let Source::File { len, .. } = s {
                *len
            } else {
                0
            }
        })
        .sum();

    let partial = partial_path(out);
    let result = write_tar(app, images.map(|(_, refs)| refs), &entries, &partial);
    let (sha256, content_bytes) = match result {
        Ok(done) => done,
        Err(error) => {
            let _ = std::fs::remove_file(&partial);
            return Err(match error {
                WriteFailure::Read(e) => e,
                WriteFailure::Write { error, written }
                    if error.kind() == io::ErrorKind::StorageFull =>
                {
                    BundleError::DiskFull {
                        path: out.to_path_buf(),
                        written,
                        content: expected,
                    }
                }
                WriteFailure::Write { error, .. } => BundleError::Write {
                    path: out.to_path_buf(),
                    error,
                },
            });
        }
    };
    let write_err = |error| {
        let _ = std::fs::remove_file(&partial);
        BundleError::Write {
            path: out.to_path_buf(),
            error,
        }
    };
    std::fs::rename(&partial, out).map_err(write_err)?;
    let file_name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let sums = sidecar_path(out);
    std::fs::write(&sums, format!("{sha256}  {file_name}\n")).map_err(|error| {
        BundleError::Write {
            path: sums.clone(),
            error,
        }
    })?;
    let bundle_bytes = std::fs::metadata(out).map(|m| m.len()).unwrap_or(0);
    Ok(Written {
        path: out.to_path_buf(),
        sha256,
        files: entries.len(),
        content_bytes,
        bundle_bytes,
    })
}

fn partial_path(out: &Path) -> PathBuf {
    let mut name = out.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

/// `FILE.sha256`, next to the bundle.
pub fn sidecar_path(out: &Path) -> PathBuf {
    let mut name = out.as_os_str().to_owned();
    name.push(".sha256");
    PathBuf::from(name)
}

/// Every file and symlink below `dir`, as `prefix/relative path`, leaving out git's and kfctl's
/// own working files and the bundle being written.
fn collect(
    root: &Path,
    dir: &Path,
    prefix: &str,
    out: &Path,
    entries: &mut Vec<(String, Source)>,
) -> Result<(), BundleError> {
    let read_err = |error| BundleError::ReadApp {
        path: dir.to_path_buf(),
        error,
    };
    for entry in std::fs::read_dir(dir).map_err(read_err)? {
        let entry = entry.map_err(read_err)?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name == ".git" || name.starts_with(".kfctl-") {
            continue;
        }
        let abs = std::path::absolute(&path).unwrap_or_else(|_| path.clone());
        if abs == out || abs == partial_path(out) || abs == sidecar_path(out) {
            continue;
        }
        let rel = path.strip_prefix(root).unwrap_or(&path);
        let key = format!("{prefix}/{}", rel.to_string_lossy());
        let meta = std::fs::symlink_metadata(&path).map_err(|error| BundleError::ReadApp {
            path: path.clone(),
            error,
        })?;
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&path).map_err(|error| BundleError::ReadApp {
                path: path.clone(),
                error,
            })?;
            entries.push((key, Source::Symlink { target }));
        } else if meta.is_dir() {
            collect(root, &path, prefix, out, entries)?;
        } else if meta.is_file() {
            use std::os::unix::fs::PermissionsExt;
            entries.push((
                key,
                Source::File {
                    path,
                    len: meta.len(),
                    executable: meta.permissions().mode() & 0o111 != 0,
                },
            ));
        }
    }
    Ok(())
}

enum WriteFailure {
    Read(BundleError),
    Write { error: io::Error, written: u64 },
}

/// A writer that hashes and counts what passes through it.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that hashes what it reads.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

fn header(kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_size(size);
    header.set_mode(mode);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header
}

/// Stream the entries and then the manifest into `partial`; the bundle file's sha256 and the
/// content bytes.
fn write_tar(
    app: &App,
    image_refs: Option<&[String]>,
    entries: &[(String, Source)],
    partial: &Path,
) -> Result<(String, u64), WriteFailure> {
    let file = File::create(partial).map_err(|error| WriteFailure::Write { error, written: 0 })?;
    let counted = Hashing {
        inner: BufWriter::with_capacity(1 << 20, file),
        hasher: Sha256::new(),
        written: 0,
    };
    let mut tar = tar::Builder::new(GzEncoder::new(counted, Compression::fast()));
    let written =
        |tar: &tar::Builder<GzEncoder<Hashing<BufWriter<File>>>>| tar.get_ref().get_ref().written;
    let mut files = BTreeMap::new();
    let mut content_bytes = 0u64;
    for (key, source) in entries {
        let name = format!("{ROOT}/{key}");
        let result = match source {
            Source::File {
                path,
                len,
                executable,
            } => {
                let file = File::open(path).map_err(|error| {
                    WriteFailure::Read(BundleError::ReadApp {
                        path: path.clone(),
                        error,
                    })
                })?;
                let mut reader = HashingReader {
                    inner: file.take(*len),
                    hasher: Sha256::new(),
                };
                let mut h = header(
                    tar::EntryType::Regular,
                    *len,
                    if *executable { 0o755 } else { 0o644 },
                );
                let result = tar.append_data(&mut h, &name, &mut reader);
                files.insert(
                    key.clone(),
                    format!("sha256:{}", hex::encode(reader.hasher.finalize())),
                );
                content_bytes += len;
                result
            }
            Source::Symlink { target } => {
                let mut h = header(tar::EntryType::Symlink, 0, 0o777);
                files.insert(key.clone(), format!("symlink:{}", target.display()));
                tar.append_link(&mut h, &name, target)
            }
        };
        result.map_err(|error| WriteFailure::Write {
            written: written(&tar),
            error,
        })?;
    }
    let manifest = Manifest {
        format: FORMAT,
        app: app.config.name.clone(),
        kubeflow_version: app.config.version.clone(),
        images: image_refs.map(<[String]>::to_vec).unwrap_or_default(),
        files,
    };
    let json = serde_json::to_vec_pretty(&manifest).expect("a manifest serialises");
    let mut h = header(tar::EntryType::Regular, json.len() as u64, 0o644);
    let finish = |tar: tar::Builder<GzEncoder<Hashing<BufWriter<File>>>>| -> io::Result<Hashing<BufWriter<File>>> {
        let mut hashing = tar.into_inner()?.finish()?;
        hashing.flush()?;
        hashing.inner.get_ref().sync_all()?;
        Ok(hashing)
    };
    tar.append_data(&mut h, format!("{ROOT}/{MANIFEST}"), json.as_slice())
        .map_err(|error| WriteFailure::Write {
            written: written(&tar),
            error,
        })?;
    let total = written(&tar);
    let hashing = finish(tar).map_err(|error| WriteFailure::Write {
        error,
        written: total,
    })?;
    Ok((hex::encode(hashing.hasher.finalize()), content_bytes))
}

/// Unpack the entries under `part` (`app` or `images`) of `bundle` into `target` (which must not
/// exist), checking every entry of the bundle against its manifest.
fn unpack_part(bundle: &Path, part: &str, target: &Path) -> Result<Manifest, BundleError> {
    let root = Path::new(ROOT);
    let part_dir = root.join(part);
    let manifest_path = root.join(MANIFEST);
    let keep = |p: &Path| p.starts_with(&part_dir) || p == manifest_path || p == root;
    let options = UnpackOptions {
        limits: LIMITS,
        keep: Some(&keep),
        hash: true,
    };
    let name = bundle.display().to_string();
    let report = unpack_with(bundle, &name, target, &options).map_err(|error| match error {
        RegistryError::Corrupt { message, .. } => BundleError::NotABundle {
            bundle: bundle.to_path_buf(),
            reason: format!("not a readable .tar.gz ({message})"),
        },
        error => BundleError::Unpack {
            bundle: bundle.to_path_buf(),
            error,
        },
    })?;
    let not_a_bundle = |reason: String| {
        let _ = std::fs::remove_dir_all(target);
        BundleError::NotABundle {
            bundle: bundle.to_path_buf(),
            reason,
        }
    };
    if report.stripped_prefix.as_deref() != Some(ROOT) {
        return Err(not_a_bundle(format!(
            "its entries are not all under {ROOT}/"
        )));
    }
    let text = std::fs::read(target.join(MANIFEST))
        .map_err(|_| not_a_bundle(format!("{ROOT}/{MANIFEST} is missing")))?;
    let manifest: Manifest = serde_json::from_slice(&text)
        .map_err(|e| not_a_bundle(format!("{ROOT}/{MANIFEST}: {e}")))?;
    if manifest.format != FORMAT {
        return Err(not_a_bundle(format!(
            "format {} (this kfctl reads format {FORMAT})",
            manifest.format
        )));
    }
    let mismatch = |entry: &str, problem: String| {
        let _ = std::fs::remove_dir_all(target);
        BundleError::Mismatch {
            bundle: bundle.to_path_buf(),
            entry: entry.to_string(),
            problem,
        }
    };
    let mut found: BTreeMap<String, String> = BTreeMap::new();
    for (path, content) in &report.entries {
        let Ok(rel) = path.strip_prefix(root) else {
            return Err(not_a_bundle(format!(
                "{} is not under {ROOT}/",
                path.display()
            )));
        };
        if rel == Path::new(MANIFEST) {
            continue;
        }
        let key = rel.to_string_lossy().into_owned();
        let value = match content {
            EntryContent::File(hex) => format!("sha256:{hex}"),
            EntryContent::Symlink(to) => format!("symlink:{}", to.display()),
            EntryContent::HardLink(to) => format!("hard link to {}", to.display()),
        };
        found.insert(key, value);
    }
    for (key, value) in &found {
        match manifest.files.get(key) {
            None => return Err(mismatch(key, "it is not in the manifest".into())),
            Some(expected) if expected != value => {
                return Err(mismatch(key, format!("expected {expected}, found {value}")));
            }
            Some(_) => {}
        }
    }
    if let Some(missing) = manifest.files.keys().find(|k| !found.contains_key(*k)) {
        return Err(mismatch(
            missing,
            "the manifest lists it, the bundle does not hold it".into(),
        ));
    }
    Ok(manifest)
}

/// `kfctl init --bundle`: make the app directory `dir` (new or empty) from `bundle`, verified.
pub fn init_app(bundle: &Path, dir: &Path) -> Result<(App, Manifest), BundleError> {
    if let Ok(mut entries) = std::fs::read_dir(dir)
        && entries.next().is_some()
    {
        return Err(BundleError::NotEmpty {
            dir: dir.to_path_buf(),
        });
    }
    let parent = match dir.parent() {
        Some(p) if p.as_os_str().is_empty() => PathBuf::from("."),
        Some(p) => p.to_path_buf(),
        None => PathBuf::from("/"),
    };
    if !parent.is_dir() {
        return Err(AppError::NoParent {
            dir: dir.to_path_buf(),
            parent,
        }
        .into());
    }
    let staging = app::staging_dir(&parent)?;
    let unpacked = staging.path().join("bundle");
    let manifest = unpack_part(bundle, APP, &unpacked)?;
    let staged_app = unpacked.join(APP);
    let staged = App::open(&staged_app)?;
    if !staged.verify_vendored(&staged.config.registry) {
        return Err(BundleError::Mismatch {
            bundle: bundle.to_path_buf(),
            entry: format!("{APP}/{}", staged.config.registry.path.display()),
            problem: format!(
                "the vendored release does not match its pin in {}",
                config::FILE_NAME
            ),
        });
    }
    let move_err = |error| BundleError::Write {
        path: dir.to_path_buf(),
        error,
    };
    if dir.exists() {
        for entry in std::fs::read_dir(&staged_app).map_err(move_err)? {
            let entry = entry.map_err(move_err)?;
            std::fs::rename(entry.path(), dir.join(entry.file_name())).map_err(move_err)?;
        }
    } else {
        std::fs::rename(&staged_app, dir).map_err(move_err)?;
    }
    Ok((App::open(dir)?, manifest))
}

/// `kfctl mirror --from-bundle`: unpack the bundle's OCI image layout into `target` (which must
/// not exist), verified; the layout directory and the manifest.
pub fn unpack_images(bundle: &Path, target: &Path) -> Result<(PathBuf, Manifest), BundleError> {
    let manifest = unpack_part(bundle, IMAGES, target)?;
    let layout = target.join(IMAGES);
    if manifest.images.is_empty() || !layout.is_dir() {
        let _ = std::fs::remove_dir_all(target);
        return Err(BundleError::NoImages {
            bundle: bundle.to_path_buf(),
        });
    }
    Ok((layout, manifest))
}
