//! Image references as docker and Kubernetes read them: `[HOST[:PORT]/]REPO[:TAG][@DIGEST]`.

use std::fmt;

/// The registry of references without a host.
pub const DOCKER_HUB: &str = "docker.io";

/// A parsed image reference. `Display` writes the full form (`docker.io/library/nginx:latest`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    /// Registry host, with the port when one was given (`registry:5000`).
    pub host: String,
    /// Repository path on that registry (`ml-pipeline/frontend`, `library/nginx`).
    pub repository: String,
    /// The tag; `latest` when neither a tag nor a digest was given.
    pub tag: Option<String>,
    /// `sha256:<64 hex>` when the reference pins a digest.
    pub digest: Option<String>,
}

/// A reference that is not `[HOST[:PORT]/]REPO[:TAG][@DIGEST]`.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{reference:?} is not an image reference: {reason}\n  hint: write it as HOST/REPOSITORY:TAG or HOST/REPOSITORY@sha256:DIGEST")]
pub struct ReferenceError {
    pub reference: String,
    pub reason: String,
}

impl Reference {
    /// Parse a reference the way docker does: a first path part with a `.` or `:` or equal to
    /// `localhost` is the host, otherwise the host is docker.io (and a one-part name gets
    /// `library/`); no tag and no digest means `:latest`.
    pub fn parse(text: &str) -> Result<Reference, ReferenceError> {
        let err = |reason: &str| ReferenceError { reference: text.to_string(), reason: reason.to_string() };
        if text.is_empty() {
            return Err(err("it is empty"));
        }
        let (name, digest) = match text.split_once('@') {
            Some((name, digest)) => (name, Some(digest)),
            None => (text, None),
        };
        if let Some(digest) = digest {
            let hex = digest.strip_prefix("sha256:").ok_or_else(|| err("only sha256 digests are supported"))?;
            if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
                return Err(err("the digest is not sha256: followed by 64 lowercase hex digits"));
            }
        }
        // A tag is after the last ':' that comes after the last '/' (a ':' before it is a port).
        let last_slash = name.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name[last_slash..].rfind(':') {
            Some(i) => (&name[..last_slash + i], Some(&name[last_slash + i + 1..])),
            None => (name, None),
        };
        if let Some(tag) = tag
            && (tag.is_empty() || tag.len() > 128 || tag.starts_with(['.', '-']) || !tag.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b)))
        {
            return Err(err("the tag may hold only letters, digits, '_', '.' and '-' (at most 128)"));
        }
        let (host, repository) = match name.split_once('/') {
            Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => (first.to_string(), rest.to_string()),
            _ if !name.contains('/') => (DOCKER_HUB.to_string(), format!("library/{name}")),
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        let host = if host == "index.docker.io" { DOCKER_HUB.to_string() } else { host };
        let repository = if host == DOCKER_HUB && !repository.contains('/') { format!("library/{repository}") } else { repository };
        if repository.is_empty()
            || repository.split('/').any(|part| {
                part.is_empty()
                    || !part.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
                    || !part.as_bytes()[0].is_ascii_alphanumeric()
            })
        {
            return Err(err("the repository may hold only lowercase letters, digits and . _ - between slashes"));
        }
        let tag = match (tag, digest) {
            (None, None) => Some("latest".to_string()),
            (tag, _) => tag.map(str::to_string),
        };
        Ok(Reference { host, repository, tag, digest: digest.map(str::to_string) })
    }

    /// What a registry's `/v2/<repo>/manifests/<this>` takes: the digest when pinned, else the tag.
    pub fn manifest_reference(&self) -> &str {
        self.digest.as_deref().or(self.tag.as_deref()).unwrap_or("latest")
    }

    /// `host/repository` without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.host, self.repository)
    }

    /// The same image under another registry and repository, keeping tag and digest.
    pub fn moved(&self, host: &str, repository: &str) -> Reference {
        Reference { host: host.to_string(), repository: repository.to_string(), tag: self.tag.clone(), digest: self.digest.clone() }
    }

    /// Where `kfctl mirror` puts this image below `registry/prefix`: the source host and repository
    /// become the path (`gcr.io/a/b:1` -> `registry:5000/kubeflow/gcr.io/a/b:1`), so images of
    /// different registries never collide.
    pub fn mirrored_to(&self, registry: &str, prefix: &str) -> Reference {
        let prefix = prefix.trim_matches('/');
        let repository = if prefix.is_empty() { format!("{}/{}", self.host, self.repository) } else { format!("{prefix}/{}/{}", self.host, self.repository) };
        self.moved(registry, &repository)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.host, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Reference, ReferenceError> {
        Reference::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn parses_hosts_ports_tags_digests_and_docker_hub_defaults() {
        type Case<'a> = (&'a str, &'a str, &'a str, Option<&'a str>, Option<&'a str>); // text, host, repository, tag, digest
        let cases: &[Case] = &[
            ("nginx", DOCKER_HUB, "library/nginx", Some("latest"), None),
            ("nginx:1.25", DOCKER_HUB, "library/nginx", Some("1.25"), None),
            ("kubeflow/notebook:v1", DOCKER_HUB, "kubeflow/notebook", Some("v1"), None),
            ("docker.io/nginx", DOCKER_HUB, "library/nginx", Some("latest"), None),
            ("index.docker.io/library/nginx:1", DOCKER_HUB, "library/nginx", Some("1"), None),
            ("gcr.io/ml-pipeline/frontend:2.5.0", "gcr.io", "ml-pipeline/frontend", Some("2.5.0"), None),
            ("registry:5000/kubeflow/gcr.io/a/b:1", "registry:5000", "kubeflow/gcr.io/a/b", Some("1"), None),
            ("localhost/app", "localhost", "app", Some("latest"), None),
            ("127.0.0.1:5001/app", "127.0.0.1:5001", "app", Some("latest"), None),
        ];
        for (text, host, repo, tag, digest) in cases {
            let r = Reference::parse(text).unwrap();
            assert_eq!((r.host.as_str(), r.repository.as_str(), r.tag.as_deref(), r.digest.as_deref()), (*host, *repo, *tag, *digest), "{text}");
        }
        let pinned = Reference::parse(&format!("quay.io/a/b@{DIGEST}")).unwrap();
        assert_eq!((pinned.tag.as_deref(), pinned.digest.as_deref(), pinned.manifest_reference()), (None, Some(DIGEST), DIGEST));
        let both = Reference::parse(&format!("quay.io/a/b:v2@{DIGEST}")).unwrap();
        assert_eq!((both.tag.as_deref(), both.manifest_reference()), (Some("v2"), DIGEST));
        assert_eq!(both.to_string(), format!("quay.io/a/b:v2@{DIGEST}"));
    }

    #[test]
    fn refuses_malformed_references_with_the_reason() {
        for (text, reason) in [
            ("", "empty"),
            ("gcr.io/A/b:1", "lowercase"),
            ("gcr.io/a//b", "lowercase"),
            ("gcr.io/a/b:", "tag"),
            ("gcr.io/a/b:bad/tag", "lowercase"),
            ("gcr.io/a/b@sha256:abc", "64"),
            ("gcr.io/a/b@md5:0123", "sha256"),
        ] {
            let err = Reference::parse(text).unwrap_err();
            assert!(err.to_string().contains(reason), "{text}: {err}");
        }
    }

    #[test]
    fn mirrored_to_keeps_the_source_host_in_the_path() {
        let r = Reference::parse("gcr.io/a/b:1").unwrap();
        assert_eq!(r.mirrored_to("registry:5000", "/kubeflow/").to_string(), "registry:5000/kubeflow/gcr.io/a/b:1");
        assert_eq!(r.mirrored_to("registry:5000", "").to_string(), "registry:5000/gcr.io/a/b:1");
    }
}
