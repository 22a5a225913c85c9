//! Every image an app runs, where each is named, and rewriting them (`kfctl images`, the app's
//! `images.overrides`, and `kfctl mirror` on top of both).
//!
//! Three sources, over the rendered objects (pure functions, no cluster):
//! - pod templates: every `containers`, `initContainers` and `ephemeralContainers` list of
//!   objects with an `image`, wherever it sits (Deployments, Jobs, CronJobs, and the pod templates
//!   of custom resources: ClusterServingRuntime, ClusterTrainingRuntime, ...);
//! - the release catalog's `images:` rules ([`ImageRule`]): an image as an env value, an
//!   `--flag=IMAGE` argument, a value in a YAML/JSON document held by a ConfigMap key, or one put
//!   together from a hub, a repository and a tag;
//! - a scan of every other string for image-shaped tokens (a registry host, a path, a tag or
//!   digest: [`ImageRef::is_qualified`]); what only the scan finds is marked so, for a rule to be
//!   written.
//!
//! [`rewrite`] puts an override's target in every place [`find`] found, editing strings in place
//! (a document held in a ConfigMap keeps its formatting and comments).

mod path;
pub mod reference;
mod rules;

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::Value;

pub use path::FieldPath;
pub use reference::ImageRef;
pub use rules::{Compose, ComposeRewrite, DocumentFormat, ImageRule, Paths, RuleError};

/// The rule name of images in pod templates.
pub const POD_TEMPLATE: &str = "pod-template";
/// The rule name of images only the generic scan found.
pub const SCAN: &str = "scan";

/// One image and every place that names it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImageUse {
    /// The image exactly as the render names it.
    pub image: String,
    /// Its parts, when it parses as a reference.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<ImageRef>,
    pub locations: Vec<Location>,
}

impl ImageUse {
    /// Found only by the generic scan: no pod template or rule names it.
    pub fn scan_only(&self) -> bool {
        self.locations.iter().all(|l| l.rule == SCAN)
    }
}

/// One place an image is named.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Location {
    pub api_version: String,
    pub kind: String,
    /// Empty for a cluster-scoped object.
    pub namespace: String,
    pub name: String,
    /// The field (`spec.template.spec.containers[name=manager].image`); inside a document held
    /// by a string, the string's field, `#`, and the path inside the document.
    pub field: String,
    /// `pod-template`, the catalog rule's id, or `scan`.
    pub rule: String,
    /// The object's index in the slice given to [`find`].
    #[serde(skip)]
    pub object: usize,
    #[serde(skip)]
    edit: Edit,
}

/// How to put another image in a [`Location`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum Edit {
    /// The string at `pointer` is the image.
    Whole { pointer: String },
    /// The image is a token inside the string at `pointer` (`--flag=IMAGE`, a document, prose).
    Token { pointer: String },
    /// Put together from parts (a repository and a tag, maybe a hub): what changes is said by
    /// the rule's `rewrite`. `text` when the parts are keys in a document held by the string at
    /// `pointer`; otherwise the parts are pointers.
    Composed {
        pointer: String,
        text: bool,
        repository: Part,
        tag: Option<Part>,
        rewrite: ComposeRewrite,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Part {
    /// A JSON pointer, or in a document the key whose value it is.
    at: String,
    value: String,
}

/// Where an override sends an image: `new_name` (or the old name), then `@digest`, or
/// `:new_tag`, or the old tag and digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub new_name: Option<String>,
    pub new_tag: Option<String>,
    pub digest: Option<String>,
}

impl Target {
    /// The reference `image` becomes.
    pub fn apply_to(&self, image: &str) -> String {
        let parsed = ImageRef::parse(image);
        let old_name = parsed
            .as_ref()
            .map_or_else(|| image.to_owned(), ImageRef::name);
        let name = self.new_name.clone().unwrap_or(old_name);
        match (&self.new_tag, &self.digest) {
            (None, None) => {
                let mut out = name;
                if let Some(r) = &parsed {
                    if let Some(tag) = &r.tag {
                        out.push_str(&format!(":{tag}"));
                    }
                    if let Some(digest) = &r.digest {
                        out.push_str(&format!("@{digest}"));
                    }
                }
                out
            }
            (Some(tag), None) => format!("{name}:{tag}"),
            (None, Some(digest)) => format!("{name}@{digest}"),
            (Some(tag), Some(digest)) => format!("{name}:{tag}@{digest}"),
        }
    }
}

/// Every image `objects` name: pod templates, `rules`, then the generic scan, sorted by image;
/// locations in object order.
pub fn find<'a>(
    objects: impl IntoIterator<Item = &'a Value>,
    rules: &[ImageRule],
) -> Vec<ImageUse> {
    let mut by_image: BTreeMap<String, Vec<Location>> = BTreeMap::new();
    for (i, object) in objects.into_iter().enumerate() {
        for (image, location) in find_in(i, object, rules) {
            by_image.entry(image).or_default().push(location);
        }
    }
    by_image
        .into_iter()
        .map(|(image, locations)| ImageUse {
            reference: ImageRef::parse(&image),
            image,
            locations,
        })
        .collect()
}

/// The images of one object, as (image, location), in the order found.
fn find_in(index: usize, object: &Value, rules: &[ImageRule]) -> Vec<(String, Location)> {
    let meta = |field: String, rule: &str, edit: Edit| Location {
        api_version: str_at(object, "/apiVersion"),
        kind: str_at(object, "/kind"),
        namespace: str_at(object, "/metadata/namespace"),
        name: str_at(object, "/metadata/name"),
        field,
        rule: rule.to_owned(),
        object: index,
        edit,
    };
    let mut found = Vec::new();
    // Strings a pod template or rule explains, whole (pointer) or as a token (pointer, image):
    // the scan leaves those alone.
    let mut explained: BTreeSet<(String, Option<String>)> = BTreeSet::new();
    pod_templates(object, &mut Vec::new(), &mut |pointer, field, image| {
        explained.insert((pointer.clone(), None));
        found.push((image.to_owned(), meta(field, POD_TEMPLATE, Edit::Whole { pointer })));
    });
    let kind = str_at(object, "/kind");
    let name = str_at(object, "/metadata/name");
    let namespace = str_at(object, "/metadata/namespace");
    for rule in rules.iter().filter(|r| r.matches(&kind, &name, &namespace)) {
        for hit in rule.read(object) {
            match &hit.edit {
                Edit::Whole { pointer } => explained.insert((pointer.clone(), None)),
                Edit::Token { pointer } | Edit::Composed { pointer, .. } => {
                    explained.insert((pointer.clone(), Some(hit.image.clone())))
                }
            };
            found.push((hit.image, meta(hit.field, &rule.id, hit.edit)));
        }
    }
    let mut scanned = Vec::new();
    strings(object, &mut Vec::new(), &mut |segs, tokens| {
        let pointer = pointer_of(segs);
        if explained.contains(&(pointer.clone(), None)) {
            return;
        }
        for token in tokens {
            if !explained.contains(&(pointer.clone(), Some(token.to_owned()))) {
                scanned.push((token.to_owned(), meta(field_of(segs, false), SCAN, Edit::Token { pointer: pointer.clone() })));
            }
        }
    });
    scanned.dedup();
    found.extend(scanned);
    found.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1);
    found
}

/// What [`rewrite`] changed: per image, the new reference and how many places took it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rewritten {
    pub images: BTreeMap<String, (String, usize)>,
}

/// Put each override's target in every place `objects` name its image (`overrides` by the image
/// exactly as the render names it). Images without an override are left as they are.
pub fn rewrite<'a>(
    objects: impl IntoIterator<Item = &'a mut Value>,
    rules: &[ImageRule],
    overrides: &BTreeMap<String, Target>,
) -> Rewritten {
    let mut done = Rewritten::default();
    if overrides.is_empty() {
        return done;
    }
    for (i, object) in objects.into_iter().enumerate() {
        let found = find_in(i, object, rules);
        for (image, location) in found {
            let Some(target) = overrides.get(&image) else {
                continue;
            };
            let new = target.apply_to(&image);
            if apply_edit(object, &location.edit, &image, &new, target) {
                let entry = done.images.entry(image).or_insert_with(|| (new.clone(), 0));
                entry.1 += 1;
            }
        }
    }
    done
}

fn apply_edit(object: &mut Value, edit: &Edit, old: &str, new: &str, target: &Target) -> bool {
    match edit {
        Edit::Whole { pointer } => match object.pointer_mut(pointer) {
            Some(slot @ Value::String(_)) => {
                *slot = Value::String(new.to_owned());
                true
            }
            _ => false,
        },
        Edit::Token { pointer } => {
            edit_string(object, pointer, |text| replace_token(text, old, new))
        }
        Edit::Composed {
            pointer,
            text,
            repository,
            tag,
            rewrite,
        } => {
            let new_ref = ImageRef::parse(new);
            // What each part becomes: the whole reference in the repository's place, or the
            // name there and the tag in the tag's place (a digest has no place: the tag stays).
            let mut edits = Vec::new();
            match rewrite {
                ComposeRewrite::Whole => edits.push((repository, new.to_owned())),
                ComposeRewrite::Split => {
                    edits.push((
                        repository,
                        target
                            .new_name
                            .clone()
                            .unwrap_or_else(|| repository.value.clone()),
                    ));
                    if let (Some(tag), Some(new_tag)) = (
                        tag,
                        target
                            .new_tag
                            .clone()
                            .or_else(|| new_ref.as_ref().and_then(|r| r.tag.clone())),
                    ) {
                        edits.push((tag, new_tag));
                    }
                }
            }
            if *text {
                edit_string(object, pointer, |doc| {
                    let mut doc = doc.to_owned();
                    for (part, value) in &edits {
                        doc = replace_keyed(&doc, &part.at, &part.value, value);
                    }
                    doc
                })
            } else {
                let mut changed = false;
                for (part, value) in edits {
                    if let Some(slot @ Value::String(_)) = object.pointer_mut(&part.at) {
                        *slot = Value::String(value);
                        changed = true;
                    }
                }
                changed
            }
        }
    }
}

fn edit_string(object: &mut Value, pointer: &str, edit: impl FnOnce(&str) -> String) -> bool {
    match object.pointer_mut(pointer) {
        Some(Value::String(text)) => {
            let new = edit(text);
            let changed = new != *text;
            *text = new;
            changed
        }
        _ => false,
    }
}

/// Characters an image reference may hold; anything else ends a token.
fn is_image_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '/' | ':' | '@')
}

/// The image-shaped tokens of `text`: runs of reference characters (trailing `.`/`:` dropped)
/// that parse as a reference naming a registry and a version. `https://gcr.io/x:1` is one token
/// that does not parse, so URLs do not count.
pub fn image_tokens(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    if !text.contains('/') {
        return out;
    }
    for token in text.split(|c: char| !is_image_char(c)) {
        let token = token.trim_end_matches(['.', ':']);
        if token.len() >= 5
            && token.contains('/')
            && ImageRef::parse(token).is_some_and(|r| r.is_qualified())
        {
            out.push(token);
        }
    }
    out
}

/// `text` with every standalone occurrence of `old` (not part of a longer token) replaced.
fn replace_token(text: &str, old: &str, new: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(old) {
        let before = rest[..i].chars().next_back();
        let after = rest[i + old.len()..].chars().next();
        let standalone = !before.is_some_and(is_image_char) && !after.is_some_and(is_image_char);
        out.push_str(&rest[..i]);
        out.push_str(if standalone { new } else { old });
        rest = &rest[i + old.len()..];
    }
    out.push_str(rest);
    out
}

/// In a YAML/JSON document's text, the value `old` of key `key` (`key: old`, `"key": "old"`)
/// replaced by `new`, wherever it stands so.
fn replace_keyed(text: &str, key: &str, old: &str, new: &str) -> String {
    let pattern = format!(
        r#"(?m)((?:^|[\s{{,])"?{}"?\s*:\s*"?){}("?)"#,
        regex::escape(key),
        regex::escape(old)
    );
    let Ok(re) = regex::Regex::new(&pattern) else {
        return text.to_owned();
    };
    re.replace_all(text, |caps: &regex::Captures| {
        // The value must end there: a quote, or the end of a plain scalar.
        let end = caps.get(0).map_or(0, |m| m.end());
        let closed = !caps[2].is_empty()
            || text[end..]
                .chars()
                .next()
                .is_none_or(|c| c.is_whitespace() || c == ',' || c == '}');
        if closed {
            format!("{}{new}{}", &caps[1], &caps[2])
        } else {
            caps[0].to_owned()
        }
    })
    .into_owned()
}

/// One step from an object's root while walking it: paths are spelled out only where an image
/// is found (a render has millions of nodes and a few hundred images).
#[derive(Clone, Copy)]
enum Seg<'a> {
    Key(&'a str),
    Item(usize, &'a Value),
}

/// The JSON pointer of `segs`.
fn pointer_of(segs: &[Seg]) -> String {
    let mut out = String::new();
    for seg in segs {
        match seg {
            Seg::Key(key) => out.push_str(&format!("/{}", path::pointer_token(key))),
            Seg::Item(i, _) => out.push_str(&format!("/{i}")),
        }
    }
    out
}

/// The readable field of `segs`; `named`: list elements with a name as `[name=X]`.
fn field_of(segs: &[Seg], named: bool) -> String {
    let mut field = String::new();
    for seg in segs {
        field = match seg {
            Seg::Key(key) => path::join_field(&field, key),
            Seg::Item(i, item) if named => path::element_field(&field, *i, item),
            Seg::Item(i, _) => format!("{field}[{i}]"),
        };
    }
    field
}

/// Every container image in a pod template: `containers`, `initContainers` and
/// `ephemeralContainers` lists anywhere in `value`, as (pointer, field, image).
fn pod_templates<'a>(value: &'a Value, segs: &mut Vec<Seg<'a>>, found: &mut dyn FnMut(String, String, &str)) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                segs.push(Seg::Key(key));
                if matches!(key.as_str(), "containers" | "initContainers" | "ephemeralContainers")
                    && let Value::Array(items) = child
                {
                    for (i, item) in items.iter().enumerate() {
                        if let Some(image) = item.get("image").and_then(Value::as_str) {
                            segs.push(Seg::Item(i, item));
                            found(format!("{}/image", pointer_of(segs)), format!("{}.image", field_of(segs, true)), image);
                            segs.pop();
                        }
                    }
                }
                pod_templates(child, segs, found);
                segs.pop();
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                segs.push(Seg::Item(i, item));
                pod_templates(item, segs, found);
                segs.pop();
            }
        }
        _ => {}
    }
}

/// Every string in `value` that holds image-shaped tokens, with its path and the tokens.
fn strings<'a>(value: &'a Value, segs: &mut Vec<Seg<'a>>, visit: &mut dyn FnMut(&[Seg], Vec<&'a str>)) {
    match value {
        Value::String(text) => {
            let tokens = image_tokens(text);
            if !tokens.is_empty() {
                visit(segs, tokens);
            }
        }
        Value::Object(map) => {
            for (key, child) in map {
                segs.push(Seg::Key(key));
                strings(child, segs, visit);
                segs.pop();
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                segs.push(Seg::Item(i, item));
                strings(item, segs, visit);
                segs.pop();
            }
        }
        _ => {}
    }
}

fn str_at(object: &Value, pointer: &str) -> String {
    object
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// An image counted as named in a pod template, or only elsewhere (rules and scan).
pub fn in_pod_template(image: &ImageUse) -> bool {
    image.locations.iter().any(|l| l.rule == POD_TEMPLATE)
}

#[cfg(test)]
mod tests;
