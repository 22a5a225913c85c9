//! The manifest shapes a copy walks: an image index (manifest list) points at image manifests,
//! which point at a config blob and layer blobs. Only the fields a copy needs are read; the bytes
//! are pushed unchanged so digests stay what they were.

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// Media types of manifests and indexes (OCI and docker schema 2).
pub mod media_type {
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    /// The `Accept` header for manifest requests: every type a copy understands.
    pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";
}

/// A pointer to a blob or manifest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<serde_json::Map<String, serde_json::Value>>,
}

/// `os/architecture[/variant]` of one image of an index.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// Whether `wanted` (`linux/amd64`, `linux/arm64/v8`) names this platform; without a variant
    /// any variant matches.
    pub fn matches(&self, wanted: &str) -> bool {
        let mut parts = wanted.split('/');
        let (os, arch, variant) = (parts.next(), parts.next(), parts.next());
        os == Some(self.os.as_str()) && arch == Some(self.architecture.as_str()) && variant.is_none_or(|v| self.variant.as_deref() == Some(v))
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// A manifest as read: what it is and what it points at.
#[derive(Debug, Clone)]
pub enum Parsed {
    Index { manifests: Vec<Descriptor> },
    Image { config: Descriptor, layers: Vec<Descriptor> },
}

#[derive(Deserialize)]
struct Raw {
    #[serde(default, rename = "mediaType")]
    media_type: Option<String>,
    #[serde(default, rename = "schemaVersion")]
    schema_version: Option<u32>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
}

/// Parse manifest bytes; `content_type` is the registry's header (the body's `mediaType` wins).
/// Returns the media type to push it with and what it points at.
pub fn parse(bytes: &[u8], content_type: Option<&str>) -> Result<(String, Parsed), String> {
    let raw: Raw = serde_json::from_slice(bytes).map_err(|e| format!("the manifest is not JSON: {e}"))?;
    if raw.schema_version != Some(2) {
        return Err(format!(
            "manifest schema version {} is not supported (only schema 2: OCI and docker v2)",
            raw.schema_version.map_or("(none)".to_string(), |v| v.to_string())
        ));
    }
    let parsed = match (raw.manifests, raw.config, raw.layers) {
        (Some(manifests), None, _) => Parsed::Index { manifests },
        (None, Some(config), layers) => Parsed::Image { config, layers: layers.unwrap_or_default() },
        _ => {
            return Err("the manifest is neither an image index nor an image manifest".to_string());
        }
    };
    let media_type = raw.media_type.or_else(|| content_type.map(|c| c.split(';').next().unwrap_or(c).trim().to_string())).unwrap_or_else(|| {
        match parsed {
            Parsed::Index { .. } => media_type::OCI_INDEX,
            Parsed::Image { .. } => media_type::OCI_MANIFEST,
        }
        .to_string()
    });
    Ok((media_type, parsed))
}

/// `sha256:<hex>` of some bytes (manifests: small, hashed in place).
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_index_and_image_and_refuses_schema1() {
        let index = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:aa","size":1,"platform":{"os":"linux","architecture":"arm64","variant":"v8"}}]}"#;
        let (mt, parsed) = parse(index, None).unwrap();
        assert_eq!(mt, media_type::OCI_INDEX);
        let Parsed::Index { manifests } = parsed else { panic!("not an index") };
        let platform = manifests[0].platform.as_ref().unwrap();
        assert!(platform.matches("linux/arm64") && platform.matches("linux/arm64/v8") && !platform.matches("linux/amd64"));
        let image = br#"{"schemaVersion":2,"config":{"digest":"sha256:c","size":2},"layers":[]}"#;
        let (mt, parsed) = parse(image, Some("application/vnd.docker.distribution.manifest.v2+json; charset=utf-8")).unwrap();
        assert_eq!(mt, media_type::DOCKER_MANIFEST);
        assert!(matches!(parsed, Parsed::Image { .. }));
        assert!(parse(br#"{"schemaVersion":1,"fsLayers":[]}"#, None).unwrap_err().contains("schema version 1"));
    }
}
