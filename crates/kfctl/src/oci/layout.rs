//! An OCI image-layout directory (image-spec `image-layout.md`): `oci-layout`, `index.json` whose
//! entries carry the image's full original reference in `org.opencontainers.image.ref.name`, and
//! every manifest and blob under `blobs/sha256/<hex>`. `kfctl bundle` carries images into an air
//! gap this way; the copy engine reads and writes it like a registry.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::OciError;
use super::manifest::{Descriptor, media_type};
use super::reference::Reference;

/// The annotation holding an entry's reference.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// An image-layout directory.
#[derive(Debug)]
pub struct Layout {
    root: PathBuf,
    /// Serializes read-modify-write of index.json between concurrent copies into one layout.
    index_lock: Mutex<()>,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Index {
    schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

impl Layout {
    /// Open an existing layout (it must have `oci-layout` and `index.json`).
    pub fn open(root: &Path) -> Result<Layout, OciError> {
        if !root.join("oci-layout").is_file() || !root.join("index.json").is_file() {
            return Err(OciError::Layout {
                path: root.to_path_buf(),
                reason: "not an OCI image layout (no oci-layout or index.json)\n  hint: give a directory written by `kfctl mirror --to-layout`".into(),
            });
        }
        Ok(Layout { root: root.to_path_buf(), index_lock: Mutex::new(()) })
    }

    /// Open `root` as a layout, creating it (and an empty index) when it does not exist yet.
    pub fn create(root: &Path) -> Result<Layout, OciError> {
        let blobs = root.join("blobs/sha256");
        std::fs::create_dir_all(&blobs).map_err(|error| OciError::Io { action: "create", path: blobs.clone(), error })?;
        let marker = root.join("oci-layout");
        if !marker.exists() {
            std::fs::write(&marker, br#"{"imageLayoutVersion":"1.0.0"}"#).map_err(|error| OciError::Io { action: "write", path: marker.clone(), error })?;
        }
        let layout = Layout { root: root.to_path_buf(), index_lock: Mutex::new(()) };
        if !root.join("index.json").exists() {
            layout.write_index(&Index { schema_version: 2, media_type: Some(media_type::OCI_INDEX.into()), manifests: vec![] })?;
        }
        Ok(layout)
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn read_index(&self) -> Result<Index, OciError> {
        let path = self.root.join("index.json");
        let text = std::fs::read(&path).map_err(|error| OciError::Io { action: "read", path: path.clone(), error })?;
        serde_json::from_slice(&text).map_err(|e| OciError::Layout { path, reason: format!("index.json is not an image index: {e}") })
    }

    fn write_index(&self, index: &Index) -> Result<(), OciError> {
        let path = self.root.join("index.json");
        let bytes = serde_json::to_vec_pretty(index).expect("an index serializes");
        write_atomically(&path, &bytes)
    }

    /// The references of every image in the layout, in index order.
    pub fn images(&self) -> Result<Vec<Reference>, OciError> {
        let index = self.read_index()?;
        let path = self.root.join("index.json");
        index
            .manifests
            .iter()
            .map(|d| {
                let name = d
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(REF_NAME))
                    .and_then(|v| v.as_str())
                    .ok_or_else(|| OciError::Layout { path: path.clone(), reason: format!("the entry {} has no {REF_NAME} annotation", d.digest) })?;
                Reference::parse(name).map_err(|e| OciError::Layout { path: path.clone(), reason: format!("the entry {}: {e}", d.digest) })
            })
            .collect()
    }

    /// The index entry recorded for `reference`.
    pub(crate) fn find(&self, reference: &Reference) -> Result<Option<Descriptor>, OciError> {
        let name = reference.to_string();
        Ok(self.read_index()?.manifests.into_iter().find(|d| d.annotations.as_ref().and_then(|a| a.get(REF_NAME)).and_then(|v| v.as_str()) == Some(&name)))
    }

    /// Record `descriptor` as the image `reference` (replacing an older entry of that name).
    pub(crate) fn tag(&self, reference: &Reference, mut descriptor: Descriptor) -> Result<(), OciError> {
        let _guard = self.index_lock.lock().unwrap_or_else(|p| p.into_inner());
        let name = reference.to_string();
        let mut index = self.read_index()?;
        index.manifests.retain(|d| d.annotations.as_ref().and_then(|a| a.get(REF_NAME)).and_then(|v| v.as_str()) != Some(&name));
        descriptor.annotations = Some(serde_json::Map::from_iter([(REF_NAME.to_string(), serde_json::Value::String(name))]));
        index.manifests.push(descriptor);
        self.write_index(&index)
    }

    /// Path of a blob (which may not exist).
    pub(crate) fn blob_path(&self, digest: &str) -> Result<PathBuf, OciError> {
        let hex = digest
            .strip_prefix("sha256:")
            .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| OciError::Layout { path: self.root.clone(), reason: format!("{digest:?} is not a sha256 digest") })?;
        Ok(self.root.join("blobs/sha256").join(hex))
    }

    pub(crate) fn has_blob(&self, digest: &str) -> Result<bool, OciError> {
        Ok(self.blob_path(digest)?.is_file())
    }

    /// Add a blob from bytes (manifests), written whole or not at all.
    pub(crate) fn put_bytes(&self, digest: &str, bytes: &[u8]) -> Result<(), OciError> {
        write_atomically(&self.blob_path(digest)?, bytes)
    }

    /// Add a blob by copying `file` (verified by the caller), written whole or not at all.
    pub(crate) async fn put_file(&self, digest: &str, file: &std::fs::File) -> Result<(), OciError> {
        let path = self.blob_path(digest)?;
        let partial = path.with_extension("partial");
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |error| OciError::Io { action: "write", path, error }
        };
        let mut source = file.try_clone().map_err(io(&partial))?;
        let target = partial.clone();
        tokio::task::spawn_blocking(move || {
            use std::io::Seek as _;
            source.rewind()?;
            std::io::copy(&mut source, &mut std::fs::File::create(&target)?)
        })
        .await
        .expect("copying a file does not panic")
        .map_err(io(&partial))?;
        tokio::fs::rename(&partial, &path).await.map_err(io(&path))
    }
}

/// Write to a sibling temp file, then rename: a reader never sees half a file.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), OciError> {
    let partial = path.with_extension("partial");
    std::fs::write(&partial, bytes).map_err(|error| OciError::Io { action: "write", path: partial.clone(), error })?;
    std::fs::rename(&partial, path).map_err(|error| OciError::Io { action: "write", path: path.to_path_buf(), error })
}
