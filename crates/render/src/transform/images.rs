//! `images:`: rewrite container image references by name (kustomize's ImageTagTransformer and
//! api/filters/imagetag). Every `image` under any `containers`/`initContainers` list is checked,
//! plus the config's image fieldSpecs; CustomResourceDefinitions are never touched.

use regex::Regex;
use serde_json::{Map, Value};

use super::{Result, TransformError};
use crate::builtin_config::TransformerConfig;
use crate::fieldspec::FieldSpec;
use crate::resource::Resource;

/// One `images:` entry.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImageRewrite {
    /// The image name to match (without tag or digest).
    pub name: String,
    /// Replacement name, if any.
    pub new_name: Option<String>,
    /// Replacement tag, if any (drops an existing digest).
    pub new_tag: Option<String>,
    /// Replacement digest, if any (drops an existing tag unless `new_tag` is also given).
    pub digest: Option<String>,
    /// Appended to the existing tag when neither `new_tag` nor `digest` is given.
    pub tag_suffix: Option<String>,
}

/// Applies every `images:` entry in order.
pub fn apply_images(res: &mut [Resource], images: &[ImageRewrite], cfg: &TransformerConfig) -> Result<()> {
    for image in images {
        let matcher = ImageMatcher::new(image)?;
        for r in res.iter_mut() {
            if r.kind() == "CustomResourceDefinition" {
                continue;
            }
            let id = r.id().to_string();
            let fail = |message: String| TransformError::Unresolved {
                transformer: "images",
                message: format!("object '{id}': {message}"),
            };
            update_containers_anywhere(&mut r.object, &matcher).map_err(fail)?;
            rewrite_fieldspecs(&mut r.object, &matcher, &cfg.images).map_err(|source| TransformError::FieldPath {
                transformer: "images",
                resource: id.clone(),
                source,
            })?;
        }
    }
    Ok(())
}

struct ImageMatcher<'a> {
    rewrite: &'a ImageRewrite,
    pattern: Regex,
}

impl<'a> ImageMatcher<'a> {
    fn new(rewrite: &'a ImageRewrite) -> Result<Self> {
        // kustomize builds this regex from the name unescaped, so a name is itself a pattern.
        let pattern = Regex::new(&format!("^(?:{})(@sha256)?(:[a-zA-Z0-9_.{{}}-]*)?$", rewrite.name)).map_err(|e| {
            TransformError::InvalidSpec {
                field: "images".to_string(),
                message: format!("image name '{}' is not a valid pattern: {e}", rewrite.name),
            }
        })?;
        Ok(ImageMatcher { rewrite, pattern })
    }

    /// The rewritten reference, or None when `image` is not this entry's image.
    fn rewrite(&self, image: &str) -> Option<String> {
        if !self.pattern.is_match(image) {
            return None;
        }
        let (mut name, mut tag, mut digest) = split_image(image);
        let r = self.rewrite;
        if let Some(new_name) = r.new_name.as_deref().filter(|s| !s.is_empty()) {
            name = new_name.to_string();
        }
        let new_tag = r.new_tag.as_deref().filter(|s| !s.is_empty());
        let new_digest = r.digest.as_deref().filter(|s| !s.is_empty());
        match (new_tag, new_digest) {
            (Some(t), Some(d)) => {
                tag = t.to_string();
                digest = d.to_string();
            }
            (Some(t), None) => {
                tag = t.to_string();
                digest.clear();
            }
            (None, Some(d)) => {
                tag.clear();
                digest = d.to_string();
            }
            (None, None) => {
                // Measured with kubectl kustomize: a suffix only applies without newTag/digest,
                // and drops the digest.
                if let Some(suffix) = r.tag_suffix.as_deref().filter(|s| !s.is_empty()) {
                    tag.push_str(suffix);
                    digest.clear();
                }
            }
        }
        let mut out = name;
        if !tag.is_empty() {
            out.push(':');
            out.push_str(&tag);
        }
        if !digest.is_empty() {
            out.push('@');
            out.push_str(&digest);
        }
        Some(out)
    }

    fn update(&self, node: &mut Value) -> std::result::Result<(), String> {
        match node {
            Value::String(image) => {
                if let Some(new) = self.rewrite(image) {
                    *image = new;
                }
                Ok(())
            }
            Value::Null => Ok(()),
            Value::Number(_) | Value::Bool(_) => {
                let text = super::scalar_text(node).unwrap_or_default();
                if let Some(new) = self.rewrite(&text) {
                    *node = Value::String(new);
                }
                Ok(())
            }
            _ => Err("an image field must be a string".to_string()),
        }
    }
}

/// Splits `[host[:port]/]path[:tag][@digest]` into (name, tag, digest) as kustomize does: a
/// colon before the first slash is a registry port, not a tag.
pub fn split_image(image: &str) -> (String, String, String) {
    let search_from = match image.find('/') {
        Some(i) if i > 0 => i,
        _ => 0,
    };
    let rest = &image[search_from..];
    let at = rest.find('@').map(|i| i + search_from);
    let colon = rest.find(':').map(|i| i + search_from);
    match (colon, at) {
        (None, None) => (image.to_string(), String::new(), String::new()),
        (c, Some(a)) if c.is_none_or(|c| a < c) => (image[..a].to_string(), String::new(), image[a + 1..].to_string()),
        (Some(c), Some(a)) => (image[..c].to_string(), image[c + 1..a].to_string(), image[a + 1..].to_string()),
        (Some(c), None) => (image[..c].to_string(), image[c + 1..].to_string(), String::new()),
        (None, Some(_)) => unreachable!("handled by the digest-only arm"),
    }
}

/// kustomize's legacy image filter: every `image` in any list under a field named `containers`
/// or `initContainers`, at any depth.
fn update_containers_anywhere(object: &mut Map<String, Value>, matcher: &ImageMatcher) -> std::result::Result<(), String> {
    fn walk(node: &mut Value, matcher: &ImageMatcher) -> std::result::Result<(), String> {
        match node {
            Value::Object(map) => {
                for (key, value) in map.iter_mut() {
                    walk(value, matcher)?;
                    if (key == "containers" || key == "initContainers")
                        && let Value::Array(items) = value {
                            for item in items.iter_mut() {
                                if let Some(image) = item.as_object_mut().and_then(|c| c.get_mut("image")) {
                                    matcher.update(image)?;
                                }
                            }
                        }
                }
                Ok(())
            }
            Value::Array(items) => items.iter_mut().try_for_each(|item| walk(item, matcher)),
            _ => Ok(()),
        }
    }
    for value in object.values_mut() {
        walk(value, matcher)?;
    }
    Ok(())
}

fn rewrite_fieldspecs(object: &mut Map<String, Value>, matcher: &ImageMatcher, specs: &[FieldSpec]) -> std::result::Result<(), crate::fieldspec::FieldPathError> {
    for spec in specs {
        // The image filter gives no create kind: image fields are never created.
        spec.apply(object, None, &mut |node| matcher.update(node))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transform::test_support::{expected, objects, resources};

    fn image(name: &str, new_name: Option<&str>, new_tag: Option<&str>, digest: Option<&str>) -> ImageRewrite {
        ImageRewrite {
            name: name.to_string(),
            new_name: new_name.map(str::to_string),
            new_tag: new_tag.map(str::to_string),
            digest: digest.map(str::to_string),
            tag_suffix: None,
        }
    }

    #[test]
    fn split_table() {
        let cases = [
            ("nginx", ("nginx", "", "")),
            ("nginx:1.7", ("nginx", "1.7", "")),
            ("nginx@sha256:abc", ("nginx", "", "sha256:abc")),
            ("nginx:1.7@sha256:abc", ("nginx", "1.7", "sha256:abc")),
            ("localhost:5000/app", ("localhost:5000/app", "", "")),
            ("localhost:5000/app:v2", ("localhost:5000/app", "v2", "")),
            ("gcr.io/p/app@sha256:abc", ("gcr.io/p/app", "", "sha256:abc")),
        ];
        for (input, (name, tag, digest)) in cases {
            assert_eq!(split_image(input), (name.to_string(), tag.to_string(), digest.to_string()), "{input}");
        }
    }

    #[test]
    fn rewrite_table() {
        // (entry, image before, image after); None = untouched. From kustomize's imagetag tests.
        let cases = [
            (image("nginx", None, Some("1.8.0"), None), "nginx:1.7.9", Some("nginx:1.8.0")),
            (image("nginx", None, Some("1.8.0"), None), "nginx", Some("nginx:1.8.0")),
            (image("nginx", Some("my/nginx"), None, None), "nginx:1.7.9", Some("my/nginx:1.7.9")),
            (image("nginx", None, None, Some("sha256:24a0")), "nginx:1.7.9", Some("nginx@sha256:24a0")),
            (image("nginx", None, Some("v2"), Some("sha256:24a0")), "nginx@sha256:0000", Some("nginx:v2@sha256:24a0")),
            (image("nginx", None, Some("v2"), None), "nginx@sha256:0000", Some("nginx:v2")),
            (image("nginx", None, Some("v2"), None), "nginxplus:1", None),
            (image("nginx", None, Some("v2"), None), "my/nginx:1", None),
            (image("localhost:5000/app", None, Some("v3"), None), "localhost:5000/app:v1", Some("localhost:5000/app:v3")),
        ];
        for (entry, before, after) in cases {
            let matcher = ImageMatcher::new(&entry).unwrap();
            assert_eq!(matcher.rewrite(before).as_deref(), after, "{entry:?} on {before}");
        }
    }

    #[test]
    fn tag_suffix_applies_per_pass_like_kustomize() {
        // kubectl kustomize v5.5 output for these entries on a Pod: both the containers scan and
        // the Pod's image fieldSpec rewrite the image, so the suffix lands twice.
        let suffixed = |name: &str, tag: Option<&str>, suffix: &str| ImageRewrite {
            tag_suffix: Some(suffix.to_string()),
            ..image(name, None, tag, None)
        };
        let mut res = resources("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - {name: a, image: 'nginx:1.0'}\n  - {name: b, image: busybox}\n  - {name: c, image: 'redis@sha256:abc'}\n");
        let entries = [suffixed("nginx", None, "-x"), suffixed("busybox", Some("2"), "-y"), suffixed("redis", None, "-z")];
        apply_images(&mut res, &entries, &TransformerConfig::builtin()).unwrap();
        assert_eq!(
            objects(&res),
            expected("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - {name: a, image: 'nginx:1.0-x-x'}\n  - {name: b, image: 'busybox:2'}\n  - {name: c, image: 'redis:-z-z'}\n")
        );
    }

    #[test]
    fn containers_anywhere_and_configured_fields() {
        let mut cfg = TransformerConfig::builtin();
        cfg.images.push(FieldSpec { kind: "Gadget".into(), path: "spec/runner/image".into(), ..FieldSpec::default() });
        let mut res = resources(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  template:\n    spec:\n      initContainers: [{name: i, image: 'nginx:1'}]\n      containers: [{name: a, image: nginx}, {name: b, image: busybox}]\n---\napiVersion: example.com/v1\nkind: Gadget\nmetadata: {name: g}\nspec:\n  runner: {image: nginx}\n  deep: {containers: [{image: nginx}]}\n---\napiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: c}\nspec: {containers: [{image: nginx}]}\n",
        );
        apply_images(&mut res, &[image("nginx", Some("reg/nginx"), Some("2"), None)], &cfg).unwrap();
        assert_eq!(
            objects(&res),
            expected("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  template:\n    spec:\n      initContainers: [{name: i, image: 'reg/nginx:2'}]\n      containers: [{name: a, image: 'reg/nginx:2'}, {name: b, image: busybox}]\n---\napiVersion: example.com/v1\nkind: Gadget\nmetadata: {name: g}\nspec:\n  runner: {image: 'reg/nginx:2'}\n  deep: {containers: [{image: 'reg/nginx:2'}]}\n---\napiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: c}\nspec: {containers: [{image: nginx}]}\n")
        );
    }
}
