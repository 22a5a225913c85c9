//! Image rules: where a release names images outside pod templates, as data (the `images:`
//! section of a release catalog).
//!
//! ```yaml
//! - id: kfp-driver                     # named in `kfctl images` output
//!   kind: Deployment                   # the object: kind, and name / namespace if needed
//!   name: ml-pipeline
//!   field: spec.template.spec.containers[*].env[name=V2_DRIVER_IMAGE].value
//! - id: argo-executor
//!   kind: Deployment
//!   name: workflow-controller
//!   field: spec.template.spec.containers[*].args
//!   flag: --executor-image              # `--executor-image=IMAGE` or `--executor-image IMAGE`
//! - id: katib-collectors
//!   kind: ConfigMap
//!   name: katib-config
//!   field: data[katib-config.yaml]
//!   document: yaml                      # the string is a YAML (or json) document ...
//!   path: runtime.metricsCollectors[*].image   # ... and this is where in it
//! - id: istio-proxy
//!   kind: ConfigMap
//!   name: istio-sidecar-injector
//!   field: data[values]
//!   document: json
//!   path: global
//!   compose: {hub: hub, repository: proxy.image, tag: tag, rewrite: whole}
//! ```

use serde::Deserialize;
use serde_json::Value;

use super::path::FieldPath;
use super::{Edit, ImageRef, Part};

/// One place a release names images, outside pod templates.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageRule {
    /// A short name, shown as the `rule` of each location it finds.
    pub id: String,
    /// The object's kind.
    pub kind: String,
    /// The object's name (any, when absent).
    #[serde(default)]
    pub name: Option<String>,
    /// The object's namespace (any, when absent).
    #[serde(default)]
    pub namespace: Option<String>,
    /// Where in the object (see `images/path.rs`).
    pub field: String,
    /// The field's string is a document in this format; `path` says where in it.
    #[serde(default)]
    pub document: Option<DocumentFormat>,
    /// Inside the document: one path, or a list.
    #[serde(default)]
    pub path: Option<Paths>,
    /// The document is an object with pod templates (a Job, a PyTorchJob): every container
    /// image in it.
    #[serde(default)]
    pub containers: bool,
    /// The field is a list of arguments (or one argument): the image follows this flag, as
    /// `--flag=IMAGE` or as the next argument.
    #[serde(default)]
    pub flag: Option<String>,
    /// The field is a map holding the image's parts.
    #[serde(default)]
    pub compose: Option<Compose>,
}

/// One path or several.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Paths {
    One(String),
    Many(Vec<String>),
}

impl Paths {
    pub fn all(&self) -> Vec<&str> {
        match self {
            Paths::One(path) => vec![path.as_str()],
            Paths::Many(paths) => paths.iter().map(String::as_str).collect(),
        }
    }
}

/// The format of a document held by a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DocumentFormat {
    Yaml,
    Json,
}

/// An image written as parts: `[HUB/]REPOSITORY[:TAG]`, each a path inside the map.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Compose {
    #[serde(default)]
    pub hub: Option<String>,
    pub repository: String,
    #[serde(default)]
    pub tag: Option<String>,
    /// What an override changes.
    #[serde(default)]
    pub rewrite: ComposeRewrite,
}

/// How an overridden composed image is written back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ComposeRewrite {
    /// The repository's place takes the whole new reference (its reader takes a reference
    /// with a `/` as it is: istio's `proxy.image`).
    #[default]
    Whole,
    /// The repository's place takes the new name, the tag's place the new tag; a digest cannot
    /// be written (KServe's explainers: `image` + `defaultImageVersion`).
    Split,
}

/// A rule that cannot be used, for the catalog's error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct RuleError {
    /// `field`, `path`, `compose.repository`, ...
    pub field: String,
    pub message: String,
}

/// An image a rule read, where, and how to change it.
pub(super) struct Hit {
    pub image: String,
    pub field: String,
    pub edit: Edit,
}

impl ImageRule {
    /// Check the paths parse and the reading options go together.
    pub fn check(&self) -> Result<(), RuleError> {
        let err = |field: &str, message: String| RuleError {
            field: field.into(),
            message,
        };
        if self.id.is_empty() {
            return Err(err("id", "must not be empty".into()));
        }
        FieldPath::parse(&self.field).map_err(|m| err("field", m))?;
        match (&self.document, &self.path) {
            (Some(_), None) if !self.containers => {
                return Err(err(
                    "path",
                    "a document rule needs a path inside the document, or containers: true".into(),
                ));
            }
            (Some(_), None) => {}
            (None, _) if self.containers => {
                return Err(err(
                    "containers",
                    "reads a document: say its format (document: yaml or json)".into(),
                ));
            }
            (None, Some(_)) => {
                return Err(err(
                    "document",
                    "path is inside a document: say its format (yaml or json)".into(),
                ));
            }
            (Some(_), Some(paths)) => {
                for path in paths.all() {
                    FieldPath::parse(path).map_err(|m| err("path", m))?;
                }
            }
            (None, None) => {}
        }
        if self.flag.is_some() && (self.compose.is_some() || self.document.is_some()) {
            return Err(err(
                "flag",
                "a flag rule reads arguments: no document or compose with it".into(),
            ));
        }
        if let Some(flag) = &self.flag
            && !flag.starts_with('-')
        {
            return Err(err(
                "flag",
                format!("{flag:?} is not a flag (starts with -)"),
            ));
        }
        if let Some(compose) = &self.compose {
            for (name, path) in [
                ("compose.hub", &compose.hub),
                ("compose.repository", &Some(compose.repository.clone())),
                ("compose.tag", &compose.tag),
            ] {
                if let Some(path) = path {
                    FieldPath::parse(path).map_err(|m| err(name, m))?;
                }
            }
            if compose.rewrite == ComposeRewrite::Split && compose.tag.is_none() {
                return Err(err(
                    "compose.rewrite",
                    "split writes a tag: give compose.tag".into(),
                ));
            }
        }
        Ok(())
    }

    /// Whether the rule is about this object.
    pub fn matches(&self, kind: &str, name: &str, namespace: &str) -> bool {
        self.kind == kind
            && self.name.as_deref().is_none_or(|n| n == name)
            && self.namespace.as_deref().is_none_or(|n| n == namespace)
    }

    /// The images the rule reads in `object` (nothing where a path reaches nothing).
    pub(super) fn read(&self, object: &Value) -> Vec<Hit> {
        let Ok(field_path) = FieldPath::parse(&self.field) else {
            return Vec::new();
        };
        let mut hits = Vec::new();
        for reached in field_path.reach(object, "", "") {
            if self.document.is_none() {
                self.read_value(
                    reached.value,
                    &reached.field,
                    &reached.pointer,
                    false,
                    &mut hits,
                );
                continue;
            }
            let Some(text) = reached.value.as_str() else {
                continue;
            };
            // JSON is YAML: one parser for both (the format is for people and checks).
            let Ok(document) =
                kfctl_render::yaml::parse_document(text, std::path::Path::new(&self.id))
            else {
                continue;
            };
            if self.containers {
                super::pod_templates(
                    &document,
                    &mut Vec::new(),
                    &mut |_, field, image| {
                        let edit = Edit::Token {
                            pointer: reached.pointer.clone(),
                        };
                        hits.push(Hit {
                            image: image.to_owned(),
                            field: format!("{}#{field}", reached.field),
                            edit,
                        });
                    },
                );
            }
            for inner_path in self
                .path
                .iter()
                .flat_map(Paths::all)
                .filter_map(|p| FieldPath::parse(p).ok())
            {
                for at in inner_path.reach(&document, "", "") {
                    let field = format!("{}#{}", reached.field, at.field);
                    self.read_value(at.value, &field, &reached.pointer, true, &mut hits);
                }
            }
        }
        hits
    }

    /// Read one reached value. `in_text`: it is inside the document held by the string at
    /// `pointer`, so edits are made to that string.
    fn read_value(
        &self,
        value: &Value,
        field: &str,
        pointer: &str,
        in_text: bool,
        hits: &mut Vec<Hit>,
    ) {
        if let Some(flag) = &self.flag {
            let args: Vec<(String, &str)> = match value {
                Value::Array(items) => items
                    .iter()
                    .enumerate()
                    .filter_map(|(i, v)| Some((format!("{pointer}/{i}"), v.as_str()?)))
                    .collect(),
                Value::String(arg) => vec![(pointer.to_owned(), arg.as_str())],
                _ => return,
            };
            for (i, (arg_pointer, arg)) in args.iter().enumerate() {
                let image = match arg.strip_prefix(flag.as_str()) {
                    Some(rest) if rest.starts_with('=') => {
                        Some((arg_pointer.clone(), rest[1..].to_owned(), i))
                    }
                    Some("") => args
                        .get(i + 1)
                        .map(|(p, next)| (p.clone(), (*next).to_owned(), i + 1)),
                    _ => None,
                };
                if let Some((arg_pointer, image, at)) =
                    image.filter(|(_, image, _)| ImageRef::parse(image).is_some())
                {
                    hits.push(Hit {
                        image,
                        field: format!("{field}[{at}]"),
                        edit: Edit::Token {
                            pointer: arg_pointer,
                        },
                    });
                }
            }
            return;
        }
        if let Some(compose) = &self.compose {
            let part = |path: &str| -> Option<Part> {
                let found = FieldPath::parse(path)
                    .ok()?
                    .reach(value, "", "")
                    .into_iter()
                    .next()?;
                let text = match found.value {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    _ => return None,
                };
                // In a document the part is found again by its key; outside, by its pointer.
                let at = if in_text {
                    path.rsplit('.').next().unwrap_or(path).to_owned()
                } else {
                    format!("{pointer}{}", found.pointer)
                };
                Some(Part { at, value: text })
            };
            let Some(repository) = part(&compose.repository) else {
                return;
            };
            let hub = compose.hub.as_deref().and_then(part);
            // A map without the tag this rule reads is not this rule's (a predictor without a GPU image).
            let tag = match compose.tag.as_deref() {
                Some(path) => match part(path) {
                    Some(tag) => Some(tag),
                    None => return,
                },
                None => None,
            };
            let mut image = match &hub {
                // A repository that is already a whole reference is used as it is (istio).
                Some(hub) if !repository.value.contains('/') => {
                    format!("{}/{}", hub.value, repository.value)
                }
                _ => repository.value.clone(),
            };
            if let Some(tag) = &tag
                && ImageRef::parse(&image).is_some_and(|r| r.tag.is_none() && r.digest.is_none())
            {
                image = format!("{image}:{}", tag.value);
            }
            let field = format!("{field}.{}", compose.repository);
            hits.push(Hit {
                image,
                field,
                edit: Edit::Composed {
                    pointer: pointer.to_owned(),
                    text: in_text,
                    repository,
                    tag,
                    rewrite: compose.rewrite,
                },
            });
            return;
        }
        match value {
            // What does not parse as a reference is not an image (a `$(VAR)`, an empty default).
            Value::String(image) if ImageRef::parse(image).is_some() => {
                let edit = if in_text {
                    Edit::Token {
                        pointer: pointer.to_owned(),
                    }
                } else {
                    Edit::Whole {
                        pointer: pointer.to_owned(),
                    }
                };
                hits.push(Hit {
                    image: image.clone(),
                    field: field.to_owned(),
                    edit,
                });
            }
            // A list of images (a document's `images:`): each one.
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let item_pointer = if in_text {
                        pointer.to_owned()
                    } else {
                        format!("{pointer}/{i}")
                    };
                    self.read_value(item, &format!("{field}[{i}]"), &item_pointer, in_text, hits);
                }
            }
            _ => {}
        }
    }
}
