//! `replacements:`: copy a field of one object into fields of others (kustomize's
//! ReplacementTransformer and api/filters/replacement).
//!
//! The source is exactly one object (selected by any of its ids in this build) and a dotted
//! field path (default `metadata.name`), optionally one `delimiter`-separated part of it. Each
//! target selects objects by id (exact, namespace "" = "default") and label/annotation
//! selectors, minus `reject`s, and writes into `fieldPaths` that may use `[name=value]`, indexes
//! and `*`; `options.create` creates what is missing. A scalar target keeps its type.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::{Result, TransformError, effective_namespace};
use crate::fieldspec::{PathStep, lookup, parse_dotted_path, scalar_string};
use crate::patch::target::LabelSelector;
use crate::resource::{ResId, Resource};

/// Parsed `replacements:` entry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Replacement {
    /// Where the value comes from.
    pub source: Source,
    /// Where it goes.
    #[serde(default)]
    pub targets: Vec<Target>,
}

/// A replacement's source.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
pub struct Source {
    /// Group of the source object.
    #[serde(default)]
    pub group: String,
    /// Version of the source object.
    #[serde(default)]
    pub version: String,
    /// Kind of the source object.
    #[serde(default)]
    pub kind: String,
    /// Name of the source object.
    #[serde(default)]
    pub name: String,
    /// Namespace of the source object.
    #[serde(default)]
    pub namespace: String,
    /// Dotted path of the field to copy (default `metadata.name`).
    #[serde(default, rename = "fieldpath")]
    pub field_path: String,
    /// Delimiter/index refinement.
    #[serde(default)]
    pub options: Option<FieldOptions>,
}

/// `options` of a source or target.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldOptions {
    /// Split the value on this string.
    #[serde(default)]
    pub delimiter: String,
    /// Which part (source), or which part to replace (target; <0 prepends, past the end appends).
    #[serde(default)]
    pub index: i64,
    /// Create missing target fields.
    #[serde(default)]
    pub create: bool,
}

/// A replacement's target.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
pub struct Target {
    /// Which objects (required).
    #[serde(default)]
    pub select: Option<Selector>,
    /// Objects to leave out.
    #[serde(default)]
    pub reject: Vec<Selector>,
    /// Dotted paths to write (default `metadata.name`).
    #[serde(default, rename = "fieldpaths")]
    pub field_paths: Vec<String>,
    /// Delimiter/index/create.
    #[serde(default)]
    pub options: Option<FieldOptions>,
}

/// Object selector of a target or reject.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
pub struct Selector {
    /// Group.
    #[serde(default)]
    pub group: String,
    /// Version.
    #[serde(default)]
    pub version: String,
    /// Kind.
    #[serde(default)]
    pub kind: String,
    /// Name (exact).
    #[serde(default)]
    pub name: String,
    /// Namespace (exact; "" and "default" are the same).
    #[serde(default)]
    pub namespace: String,
    /// Kubernetes label selector.
    #[serde(default, rename = "labelselector")]
    pub label_selector: String,
    /// Kubernetes label selector over annotations.
    #[serde(default, rename = "annotationselector")]
    pub annotation_selector: String,
}

impl Replacement {
    /// Parses one inline replacement (entries with `path:` are read by the loader first).
    pub fn from_value(value: &Value, index: usize) -> Result<Replacement> {
        serde_json::from_value(super::lowercase_keys(value)).map_err(|e| TransformError::InvalidSpec {
            field: format!("replacements[{index}]"),
            message: format!("{e}\n  hint: a replacement has `source` and `targets`"),
        })
    }
}

/// Applies each replacement in order.
pub fn apply_replacements(res: &mut [Resource], replacements: &[Value]) -> Result<()> {
    for (index, value) in replacements.iter().enumerate() {
        let replacement = Replacement::from_value(value, index)?;
        apply_replacement(res, &replacement, index)?;
    }
    Ok(())
}

fn unresolved(message: String) -> TransformError {
    TransformError::Unresolved { transformer: "replacements", message }
}

/// Applies one parsed replacement.
pub fn apply_replacement(res: &mut [Resource], replacement: &Replacement, index: usize) -> Result<()> {
    let value = source_value(res, &replacement.source)?;
    for target in &replacement.targets {
        let Some(select) = &target.select else {
            return Err(TransformError::InvalidSpec {
                field: format!("replacements[{index}].targets"),
                message: "target must specify resources to select".to_string(),
            });
        };
        let default_paths = ["metadata.name".to_string()];
        let paths: &[String] = if target.field_paths.is_empty() { &default_paths } else { &target.field_paths };
        for r in res.iter_mut() {
            if !selected(r, select, &target.reject)? {
                continue;
            }
            for path in paths {
                write_target(r, path, &value, target.options.as_ref())?;
            }
        }
    }
    Ok(())
}

fn ids_of(r: &Resource) -> Vec<ResId> {
    std::iter::once(r.id()).chain(r.previous_ids.iter().cloned()).collect()
}

/// kustomize's ResId.IsSelectedBy with exact name/namespace and Gvk selection.
fn id_selected(id: &ResId, group: &str, version: &str, kind: &str, name: &str, namespace: &str) -> bool {
    if !name.is_empty() && name != id.name {
        return false;
    }
    if !namespace.is_empty() {
        let selector = ResId {
            group: group.to_string(),
            version: version.to_string(),
            kind: kind.to_string(),
            name: name.to_string(),
            namespace: Some(namespace.to_string()),
        };
        if effective_namespace(&selector) != effective_namespace(id) {
            return false;
        }
    }
    (group.is_empty() || group == id.group)
        && (version.is_empty() || version == id.version)
        && (kind.is_empty() || kind == id.kind)
}

fn selector_selects_id(s: &Selector, id: &ResId) -> bool {
    id_selected(id, &s.group, &s.version, &s.kind, &s.name, &s.namespace)
}

fn selector_has_id(s: &Selector) -> bool {
    !(s.group.is_empty() && s.version.is_empty() && s.kind.is_empty() && s.name.is_empty() && s.namespace.is_empty())
}

fn selected(r: &Resource, select: &Selector, rejects: &[Selector]) -> Result<bool> {
    if !matches_label_and_annotation_selectors(r, select)? {
        return Ok(false);
    }
    for reject in rejects {
        if reject.label_selector.is_empty() && reject.annotation_selector.is_empty() {
            continue;
        }
        if matches_label_and_annotation_selectors(r, reject)? {
            return Ok(false);
        }
    }
    let ids = ids_of(r);
    let rejected = rejects
        .iter()
        .filter(|reject| selector_has_id(reject))
        .any(|reject| ids.iter().any(|id| selector_selects_id(reject, id)));
    Ok(!rejected && ids.iter().any(|id| selector_selects_id(select, id)))
}

fn string_pairs(map: Option<&Map<String, Value>>) -> Vec<(String, String)> {
    map.map(|m| m.iter().map(|(k, v)| (k.clone(), scalar_string(v).unwrap_or_default())).collect())
        .unwrap_or_default()
}

fn matches_label_and_annotation_selectors(r: &Resource, s: &Selector) -> Result<bool> {
    let check = |selector: &str, set: Vec<(String, String)>| -> Result<bool> {
        if selector.is_empty() {
            return Ok(true);
        }
        let parsed = LabelSelector::parse(selector).map_err(|e| TransformError::InvalidSpec {
            field: "replacements".to_string(),
            message: format!("invalid selector '{selector}': {e}"),
        })?;
        Ok(parsed.matches(&set))
    };
    Ok(check(&s.label_selector, string_pairs(r.labels()))? && check(&s.annotation_selector, string_pairs(r.annotations()))?)
}

fn source_value(res: &[Resource], source: &Source) -> Result<Value> {
    let mut matches = res.iter().filter(|r| {
        ids_of(r)
            .iter()
            .any(|id| id_selected(id, &source.group, &source.version, &source.kind, &source.name, &source.namespace))
    });
    let describe = || {
        let or = |s: &str, none: &str| if s.is_empty() { none.to_string() } else { s.to_string() };
        format!(
            "{}.{}.{}/{}.{}",
            or(&source.kind, "[noKind]"),
            or(&source.version, "[noVer]"),
            or(&source.group, "[noGrp]"),
            or(&source.name, "[noName]"),
            or(&source.namespace, "[noNs]")
        )
    };
    let Some(found) = matches.next() else {
        return Err(unresolved(format!("nothing selected by {}", describe())));
    };
    if matches.next().is_some() {
        return Err(unresolved(format!("multiple matches for selector {}", describe())));
    }
    let field_path = if source.field_path.is_empty() { "metadata.name" } else { source.field_path.as_str() };
    let root = Value::Object(found.object.clone());
    let value = lookup(&root, &parse_dotted_path(field_path)).filter(|v| !is_nil_or_empty(v)).ok_or_else(|| {
        unresolved(format!("fieldPath `{field_path}` is missing for replacement source {}", describe()))
    })?;
    match source.options.as_ref().filter(|o| !o.delimiter.is_empty()) {
        None => Ok(value.clone()),
        Some(options) => {
            let Some(text) = scalar_string(value) else {
                return Err(unresolved("delimiter option can only be used with scalar nodes".to_string()));
            };
            let parts: Vec<&str> = text.split(options.delimiter.as_str()).collect();
            let part = usize::try_from(options.index).ok().and_then(|i| parts.get(i)).ok_or_else(|| {
                unresolved(format!("options.index {} is out of bounds for value {text}", options.index))
            })?;
            // The part keeps the source node's type, as kustomize copies the node.
            Ok(retype(part, value).unwrap_or_else(|| Value::String(part.to_string())))
        }
    }
}

fn is_nil_or_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// `text` as a value of the same YAML type as `like` (kustomize copies only the text of a scalar
/// into a scalar target, keeping the target's tag). None when the text cannot have that type.
fn retype(text: &str, like: &Value) -> Option<Value> {
    match like {
        Value::String(_) => Some(Value::String(text.to_string())),
        Value::Number(_) => {
            if let Ok(i) = text.parse::<i64>() {
                Some(Value::from(i))
            } else if let Ok(u) = text.parse::<u64>() {
                Some(Value::from(u))
            } else {
                text.parse::<f64>().ok().and_then(serde_json::Number::from_f64).map(Value::Number)
            }
        }
        Value::Bool(_) => match text {
            "true" | "True" | "TRUE" => Some(Value::Bool(true)),
            "false" | "False" | "FALSE" => Some(Value::Bool(false)),
            _ => None,
        },
        _ => None,
    }
}

fn write_target(r: &mut Resource, path: &str, value: &Value, options: Option<&FieldOptions>) -> Result<()> {
    let create = options.is_some_and(|o| o.create);
    let steps = parse_dotted_path(path);
    let id = r.id().to_string();
    let mut root = Value::Object(std::mem::take(&mut r.object));
    let mut found = 0usize;
    let outcome = match_path(&mut root, &steps, create.then_some(value), &mut |node| {
        found += 1;
        set_field(node, value, options)
    });
    if let Value::Object(object) = root {
        r.object = object;
    }
    let message_for = |e: String| unresolved(format!("object '{id}', field '{path}': {e}"));
    outcome.map_err(message_for)?;
    if found == 0 {
        let message = if create {
            format!("unable to find or create field \"{path}\" in replacement target")
        } else {
            format!("unable to find field \"{path}\" in replacement target")
        };
        return Err(unresolved(format!("{message} '{id}'")));
    }
    Ok(())
}

/// Visits every node `steps` reaches (kyaml's PathMatcher); with `create` (the value to copy),
/// missing fields, `[k=v]` elements and an index equal to the length are created.
fn match_path(
    node: &mut Value,
    steps: &[PathStep],
    create: Option<&Value>,
    visit: &mut dyn FnMut(&mut Value) -> std::result::Result<(), String>,
) -> std::result::Result<(), String> {
    let Some((step, rest)) = steps.split_first() else { return visit(node) };
    match step {
        PathStep::Field(name) => {
            let Value::Object(map) = node else {
                return Ok(());
            };
            if !map.contains_key(name.as_str()) {
                let Some(leaf) = create else { return Ok(()) };
                map.insert(name.clone(), new_node(rest.first(), leaf));
            }
            let child = map.get_mut(name.as_str()).expect("present or created");
            match_path(child, rest, create, visit)
        }
        PathStep::Index(i) => {
            let Value::Array(items) = node else {
                return Err(format!("index {i} used on a field that is not a list"));
            };
            if *i == items.len()
                && let Some(leaf) = create {
                    items.push(new_node(rest.first(), leaf));
                }
            let len = items.len();
            let Some(item) = items.get_mut(*i) else {
                return Err(format!("index {i} specified but only {len} elements found"));
            };
            match_path(item, rest, create, visit)
        }
        PathStep::Match { field, value } => {
            let Value::Array(items) = node else { return Ok(()) };
            let mut any = false;
            for item in items.iter_mut() {
                if element_matches(field, value, item) {
                    any = true;
                    match_path(item, rest, create, visit)?;
                }
            }
            if !any && create.is_some() {
                let element = if field.is_empty() {
                    Value::String(value.clone())
                } else {
                    let mut m = Map::new();
                    m.insert(field.clone(), Value::String(value.clone()));
                    Value::Object(m)
                };
                items.push(element);
                let item = items.last_mut().expect("just pushed");
                match_path(item, rest, create, visit)?;
            }
            Ok(())
        }
        PathStep::Wildcard => match node {
            Value::Array(items) => {
                for item in items.iter_mut() {
                    match_path(item, rest, create, visit)?;
                }
                Ok(())
            }
            _ => Ok(()),
        },
    }
}

/// A `[k=v]` step in a target path: kustomize matches the value as an (unanchored) regex.
fn element_matches(field: &str, pattern: &str, item: &Value) -> bool {
    let probe = if field.is_empty() { Some(item) } else { item.as_object().and_then(|m| m.get(field)) };
    let Some(text) = probe.and_then(scalar_string) else { return false };
    match regex::Regex::new(pattern) {
        Ok(re) => re.is_match(&text),
        Err(_) => text == pattern,
    }
}

/// The node created for a missing path part: a list before an index/selector/wildcard, a
/// mapping before a field, and the copied value's kind at the end.
fn new_node(next: Option<&PathStep>, leaf: &Value) -> Value {
    match next {
        None => match leaf {
            Value::Object(_) => Value::Object(Map::new()),
            Value::Array(_) => Value::Array(Vec::new()),
            _ => Value::Null,
        },
        Some(PathStep::Field(_)) => Value::Object(Map::new()),
        Some(_) => Value::Array(Vec::new()),
    }
}

fn set_field(target: &mut Value, value: &Value, options: Option<&FieldOptions>) -> std::result::Result<(), String> {
    let mut value = value.clone();
    if let Some(options) = options.filter(|o| !o.delimiter.is_empty()) {
        let Some(current) = scalar_string(target).or_else(|| target.is_null().then(String::new)) else {
            return Err("delimiter option can only be used with scalar nodes".to_string());
        };
        let mut parts: Vec<String> = current.split(options.delimiter.as_str()).map(str::to_string).collect();
        let new_part = scalar_string(&value).unwrap_or_default();
        match usize::try_from(options.index) {
            Err(_) => parts.insert(0, new_part),
            Ok(i) if i >= parts.len() => parts.push(new_part),
            Ok(i) => parts[i] = new_part,
        }
        value = Value::String(parts.join(&options.delimiter));
    }
    match target {
        // A created leaf or an explicit null is a node without a type: kustomize copies the
        // scalar's text into it, so it reads as that text written plain ("3" becomes 3).
        Value::Null => match scalar_string(&value) {
            Some(text) => *target = crate::yaml_events::plain_scalar_value(&text),
            None => *target = value,
        },
        Value::String(_) | Value::Number(_) | Value::Bool(_) => match scalar_string(&value) {
            Some(text) => match retype(&text, target) {
                Some(typed) => *target = typed,
                None => {
                    return Err(format!("cannot decode `{text}` as the type of the target field ({target})"));
                }
            },
            None => *target = value,
        },
        _ => *target = value,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transform::test_support::{expected, objects, resources};
    use serde_json::json;

    const INPUT: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: src}\ndata: {replicas: \"3\", image: \"reg/app:1.2\", host: a.b.c}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: dep-one}\nspec:\n  replicas: 1\n  template:\n    spec:\n      containers:\n      - {name: app, image: \"nginx:1\", args: [\"--x\", \"--y\"]}\n      - {name: side, image: busybox}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: dep-two, namespace: default}\nspec:\n  replicas: 1\n  template:\n    spec:\n      containers:\n      - {name: app, image: \"nginx:1\"}\n";

    #[test]
    fn replacements_like_kubectl() {
        // The kustomization and expected output were run through kubectl kustomize v5.5.
        let replacements = json!([
            {"source": {"kind": "ConfigMap", "name": "src", "fieldPath": "data.replicas"},
             "targets": [{"select": {"kind": "Deployment", "name": "dep-.*"}, "fieldPaths": ["spec.replicas"]},
                         {"select": {"kind": "Deployment", "name": "dep-one"}, "fieldPaths": ["spec.replicas"]}]},
            {"source": {"kind": "ConfigMap", "name": "src", "fieldPath": "data.image", "options": {"delimiter": ":", "index": 1}},
             "targets": [{"select": {"kind": "Deployment", "namespace": "default"},
                          "fieldPaths": ["spec.template.spec.containers.[name=app].image"],
                          "options": {"delimiter": ":", "index": 1}}]},
            {"source": {"kind": "ConfigMap", "name": "src", "fieldPath": "data.host"},
             "targets": [{"select": {"kind": "Deployment"}, "reject": [{"name": "dep-two"}],
                          "fieldPaths": ["spec.template.spec.containers.*.env.[name=HOST].value", "spec.template.metadata.annotations.host"],
                          "options": {"create": true}},
                         {"select": {"kind": "Deployment", "name": "dep-one"},
                          "fieldPaths": ["spec.template.spec.containers.[name=app].args.0", "spec.template.spec.containers.[name=app].args.2"],
                          "options": {"create": true}}]},
            {"source": {"kind": "Deployment", "name": "dep-two", "fieldPath": "spec.replicas"},
             "targets": [{"select": {"kind": "ConfigMap"}, "fieldPaths": ["data.replicas"]}]}
        ]);
        let mut res = resources(INPUT);
        apply_replacements(&mut res, replacements.as_array().unwrap()).unwrap();
        assert_eq!(
            objects(&res),
            expected("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: src}\ndata: {replicas: \"1\", image: \"reg/app:1.2\", host: a.b.c}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: dep-one}\nspec:\n  replicas: 3\n  template:\n    spec:\n      containers:\n      - {name: app, image: \"nginx:1.2\", args: [a.b.c, \"--y\", a.b.c], env: [{name: HOST, value: a.b.c}]}\n      - {name: side, image: busybox, env: [{name: HOST, value: a.b.c}]}\n    metadata: {annotations: {host: a.b.c}}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: dep-two, namespace: default}\nspec:\n  replicas: 1\n  template:\n    spec:\n      containers:\n      - {name: app, image: \"nginx:1.2\"}\n")
        );
    }

    #[test]
    fn bracketed_field_names_like_kubectl() {
        // Measured with kubectl kustomize v5.5: brackets around a key with dots (and no `=`) only
        // keep the dots from splitting it, in the source path and in the target path.
        let input = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: src, annotations: {x.y/z: v}}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d, annotations: {a.b/c: old}}\n";
        let cases = [
            (
                "replaces an existing key",
                json!({"fieldPaths": ["metadata.annotations.[a.b/c]"]}),
                Ok("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d, annotations: {a.b/c: v}}\n"),
            ),
            (
                "creates a missing key",
                json!({"fieldPaths": ["spec.template.metadata.annotations.[n.e/w]"], "options": {"create": true}}),
                Ok("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d, annotations: {a.b/c: old}}\nspec: {template: {metadata: {annotations: {n.e/w: v}}}}\n"),
            ),
            (
                "a missing key without create is not found",
                json!({"fieldPaths": ["metadata.annotations.[n.e/w]"]}),
                Err("unable to find field \"metadata.annotations.[n.e/w]\" in replacement target"),
            ),
        ];
        for (name, target, want) in cases {
            let mut target = target;
            target["select"] = json!({"kind": "Deployment"});
            let replacement = json!({"source": {"kind": "ConfigMap", "name": "src", "fieldPath": "metadata.annotations.[x.y/z]"}, "targets": [target]});
            let mut res = resources(input);
            let got = apply_replacements(&mut res, &[replacement]);
            match want {
                Ok(deployment) => {
                    got.unwrap_or_else(|e| panic!("{name}: {e}"));
                    assert_eq!(objects(&res[1..]), expected(deployment), "{name}");
                }
                Err(message) => assert!(got.unwrap_err().to_string().contains(message), "{name}"),
            }
        }
    }

    #[test]
    fn errors_like_kubectl() {
        let cases = [
            (
                json!({"source": {"kind": "ConfigMap", "name": "src", "fieldPath": "data.replicas"},
                       "targets": [{"select": {"kind": "Deployment", "name": "dep-one"}, "fieldPaths": ["spec.nope"]}]}),
                "unable to find field \"spec.nope\" in replacement target",
            ),
            (
                json!({"source": {"kind": "Deployment"}, "targets": [{"select": {"kind": "Deployment", "name": "dep-one"}}]}),
                "multiple matches for selector Deployment.[noVer].[noGrp]/[noName].[noNs]",
            ),
            (
                json!({"source": {"kind": "Secret"}, "targets": []}),
                "nothing selected by",
            ),
            (
                json!({"source": {"kind": "ConfigMap", "name": "src", "fieldPath": "data.host"},
                       "targets": [{"select": {"kind": "Deployment", "name": "dep-one"}, "fieldPaths": ["spec.replicas"]}]}),
                "cannot decode",
            ),
            (
                json!({"source": {"kind": "ConfigMap", "name": "src"}, "targets": [{"fieldPaths": ["metadata.name"]}]}),
                "target must specify resources to select",
            ),
        ];
        for (replacement, want) in cases {
            let mut res = resources(INPUT);
            let err = apply_replacements(&mut res, &[replacement]).unwrap_err().to_string();
            assert!(err.contains(want), "{err} does not contain {want}");
        }
    }
}
