//! Image references as the container runtime reads them (the grammar of
//! distribution/reference): `[REGISTRY/]PATH[:TAG][@DIGEST]`.

use serde::Serialize;

/// A parsed image reference. `registry` is present only when the reference names one (a first
/// path component with a dot or a port, or `localhost`); Docker Hub short names
/// (`kserve/agent:v0.16.0`, `busybox`) have none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageRef {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registry: Option<String>,
    /// The path inside the registry (`ml-pipeline/frontend`).
    pub repository: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// `ALGORITHM:HEX`, e.g. `sha256:...`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

impl ImageRef {
    /// Parse `text` strictly: every part must match the grammar, or None.
    pub fn parse(text: &str) -> Option<ImageRef> {
        if text.is_empty() || text.len() > 512 {
            return None;
        }
        let (rest, digest) = match text.split_once('@') {
            Some((rest, digest)) => (rest, Some(digest)),
            None => (text, None),
        };
        if let Some(digest) = digest
            && !is_digest(digest)
        {
            return None;
        }
        // The tag follows the last ':' after the last '/' (a ':' before it is a registry port).
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(tag) = tag
            && !is_tag(tag)
        {
            return None;
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, path)) if first.contains(['.', ':']) || first == "localhost" => {
                (Some(first), path)
            }
            _ => (None, name),
        };
        if let Some(registry) = registry
            && !is_registry(registry)
        {
            return None;
        }
        if !repository.split('/').all(is_path_component) {
            return None;
        }
        Some(ImageRef {
            registry: registry.map(str::to_owned),
            repository: repository.to_owned(),
            tag: tag.map(str::to_owned),
            digest: digest.map(str::to_owned),
        })
    }

    /// `REGISTRY/REPOSITORY`, or the repository alone: what a mirror copies under a new name.
    pub fn name(&self) -> String {
        match &self.registry {
            Some(registry) => format!("{registry}/{}", self.repository),
            None => self.repository.clone(),
        }
    }

    /// Names a registry and a version (tag or digest): the shape the generic scan counts as an
    /// image, so that `app.kubernetes.io/name` or `docs/install` do not.
    pub fn is_qualified(&self) -> bool {
        self.registry.is_some() && (self.tag.is_some() || self.digest.is_some())
    }
}

impl std::fmt::Display for ImageRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// `sha256:` and 64 lowercase hex digits (or another algorithm with at least 32).
pub fn is_digest(text: &str) -> bool {
    let Some((algorithm, hex)) = text.split_once(':') else {
        return false;
    };
    let algorithm_ok = !algorithm.is_empty()
        && algorithm
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+.-_".contains(&b))
        && algorithm.as_bytes()[0].is_ascii_lowercase();
    let hex_ok = hex
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    match algorithm {
        "sha256" => hex.len() == 64 && hex_ok,
        "sha512" => hex.len() == 128 && hex_ok,
        _ => algorithm_ok && hex.len() >= 32 && hex_ok,
    }
}

fn is_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"_.-".contains(c))
}

fn is_registry(registry: &str) -> bool {
    let (host, port) = match registry.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (registry, None),
    };
    if let Some(port) = port
        && (port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()))
    {
        return false;
    }
    !host.is_empty()
        && host.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        })
}

/// `[a-z0-9]+` joined by `.`, `_`, `__` or runs of `-`.
fn is_path_component(component: &str) -> bool {
    let b = component.as_bytes();
    if b.is_empty() || !b[0].is_ascii_alphanumeric() || !b[b.len() - 1].is_ascii_alphanumeric() {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            i += 1;
            continue;
        }
        // A separator: `.`, `_`, `__` or `-`+, always followed by an alphanumeric.
        let run = b[i..].iter().take_while(|x| **x == c).count();
        let ok = match c {
            b'.' => run == 1,
            b'_' => run <= 2,
            b'-' => true,
            _ => false,
        };
        if !ok {
            return false;
        }
        i += run;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split_into_their_parts() {
        let r = ImageRef::parse("gcr.io/ml-pipeline/frontend:2.5.0").unwrap();
        assert_eq!(
            (
                r.registry.as_deref(),
                r.repository.as_str(),
                r.tag.as_deref(),
                r.digest
            ),
            (Some("gcr.io"), "ml-pipeline/frontend", Some("2.5.0"), None)
        );
        let hex = "a".repeat(64);
        let r =
            ImageRef::parse(&format!("registry.internal:5000/kf/queue:v1@sha256:{hex}")).unwrap();
        assert_eq!(r.registry.as_deref(), Some("registry.internal:5000"));
        assert_eq!(r.tag.as_deref(), Some("v1"));
        assert_eq!(r.digest, Some(format!("sha256:{hex}")));
        assert_eq!(
            r.to_string(),
            format!("registry.internal:5000/kf/queue:v1@sha256:{hex}")
        );
        let r = ImageRef::parse("kserve/agent:v0.16.0").unwrap();
        assert_eq!(
            (
                r.registry.as_deref(),
                r.repository.as_str(),
                r.is_qualified()
            ),
            (None, "kserve/agent", false)
        );
        assert!(ImageRef::parse("localhost/x:1").unwrap().is_qualified());
        assert!(
            !ImageRef::parse("docker.io/library/busybox")
                .unwrap()
                .is_qualified(),
            "no version"
        );
    }

    #[test]
    fn what_is_not_a_reference_is_refused() {
        for text in [
            "https://gcr.io/x:1",
            "gcr.io//x:1",
            "gcr.io/X/y:1",
            "gcr.io/x:",
            "gcr.io/x:1@sha256:abc",
            "gcr.io:port/x:1",
            "-x",
            "x..y",
            "a b",
            "",
            "gcr.io/x:-1",
        ] {
            assert_eq!(ImageRef::parse(text), None, "{text}");
        }
        assert!(is_digest(&format!("sha256:{}", "0".repeat(64))));
        assert!(!is_digest(&format!("sha256:{}", "0".repeat(63))));
        assert!(!is_digest(&format!("sha256:{}", "G".repeat(64))));
    }
}
