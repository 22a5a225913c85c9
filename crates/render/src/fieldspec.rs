//! kustomize's fieldSpec: which objects (group/version/kind) and which field path a transformer
//! touches, and the walker that finds (and optionally creates) those fields in an object.
//!
//! Paths are `/`-separated field names (`spec/template/metadata/labels`); `\/` escapes a slash
//! inside a name (`metadata/annotations/example.com\/key`). A sequence met on the way is entered
//! element by element with the rest of the path, so `spec/containers/image` reaches every
//! container's image. A trailing `[]` on a name (`spec/containers[]/image`) says the field is a
//! sequence: it is never created, and a `null` there reads as an empty sequence.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One kustomize fieldSpec (`group`, `version`, `kind`, `path`, `create`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FieldSpec {
    /// API group the object must have; empty matches any.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub group: String,
    /// API version the object must have; empty matches any.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
    /// Kind the object must have; empty matches any.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    /// The field path, `/`-separated.
    #[serde(default)]
    pub path: String,
    /// Create missing fields on the way (kustomize's `create`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub create: bool,
}

/// A group/version/kind triple as kustomize's `resid.Gvk`, used for selection.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Gvk {
    /// API group, "" for core (or "any" when used as a selector).
    pub group: String,
    /// API version ("" = any when used as a selector).
    pub version: String,
    /// Kind ("" = any when used as a selector).
    pub kind: String,
}

impl Gvk {
    /// Splits an `apiVersion` the way kustomize does: `apps/v1` -> (apps, v1); `v1`/`v2...` ->
    /// core group; any other slash-less value is a group with no version.
    pub fn from_api_version(api_version: &str, kind: &str) -> Gvk {
        let (group, version) = split_api_version(api_version);
        Gvk { group: group.to_string(), version: version.to_string(), kind: kind.to_string() }
    }

    /// The object's Gvk (from `apiVersion` and `kind`).
    pub fn of(object: &Map<String, Value>) -> Gvk {
        let api_version = object.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        let kind = object.get("kind").and_then(Value::as_str).unwrap_or("");
        Gvk::from_api_version(api_version, kind)
    }

    /// kustomize's `Gvk.IsSelected(selector)`: every non-empty field of `selector` must match.
    pub fn is_selected_by(&self, selector: &Gvk) -> bool {
        (selector.group.is_empty() || selector.group == self.group)
            && (selector.version.is_empty() || selector.version == self.version)
            && (selector.kind.is_empty() || selector.kind == self.kind)
    }

    /// `apiVersion` as written in objects (`group/version`, or `version` for core).
    pub fn api_version(&self) -> String {
        if self.group.is_empty() { self.version.clone() } else { format!("{}/{}", self.group, self.version) }
    }

    /// Whether kustomize v5 treats objects of this apiVersion/kind as cluster-scoped.
    ///
    /// kustomize decides from its built-in OpenAPI document, keyed by the exact apiVersion and
    /// kind; anything it does not know (custom kinds, even with a cluster-scoped CRD in the same
    /// build, and versions its schema lacks) counts as namespaced.
    pub fn is_cluster_scoped(&self) -> bool {
        crate::resource::is_cluster_scoped(&self.group, &self.version, &self.kind)
    }
}

/// Splits `apiVersion` into (group, version) as kustomize's `parseGV` does.
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.split_once('/') {
        Some((group, version)) => (group, version),
        None if looks_like_core_version(api_version) => ("", api_version),
        None => (api_version, ""),
    }
}

/// `v1`, `v2`, `v1beta1`...: a slash-less apiVersion of the core group.
fn looks_like_core_version(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 2 && b[0] == b'v' && (b[1] == b'1' || b[1] == b'2')
}


/// A fieldSpec path could not be walked in an object (e.g. a scalar where a mapping was needed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at path '{path}': {message}")]
pub struct FieldPathError {
    /// The fieldSpec path being walked.
    pub path: String,
    /// What went wrong.
    pub message: String,
}

impl FieldSpec {
    /// A fieldSpec for any object at `path`.
    pub fn new(path: &str, create: bool) -> FieldSpec {
        FieldSpec { path: path.to_string(), create, ..FieldSpec::default() }
    }

    /// The selector part of this fieldSpec.
    pub fn gvk(&self) -> Gvk {
        Gvk { group: self.group.clone(), version: self.version.clone(), kind: self.kind.clone() }
    }

    /// Whether this fieldSpec applies to an object of the given group/version/kind.
    pub fn selects(&self, gvk: &Gvk) -> bool {
        gvk.is_selected_by(&Gvk {
            group: self.group.clone(),
            version: self.version.clone(),
            kind: self.kind.clone(),
        })
    }

    /// The path split into field names (`\/` kept as a literal slash).
    pub fn segments(&self) -> Vec<String> {
        split_path(&self.path)
    }

    /// Calls `visit` on every node this fieldSpec reaches in `object`, if the fieldSpec selects
    /// the object's group/version/kind.
    ///
    /// `leaf` is the node to create at the end of the path when the fieldSpec says `create`
    /// (`None`: never create, as kustomize does for filters without a create kind). Missing
    /// intermediate fields are created as mappings. `visit` returns an error message that is
    /// reported with the path.
    pub fn apply(
        &self,
        object: &mut Map<String, Value>,
        leaf: Option<&Value>,
        visit: &mut dyn FnMut(&mut Value) -> Result<(), String>,
    ) -> Result<(), FieldPathError> {
        if !self.selects(&Gvk::of(object)) {
            return Ok(());
        }
        self.apply_unchecked(object, leaf, visit)
    }

    /// As [`FieldSpec::apply`], without checking group/version/kind.
    pub fn apply_unchecked(
        &self,
        object: &mut Map<String, Value>,
        leaf: Option<&Value>,
        visit: &mut dyn FnMut(&mut Value) -> Result<(), String>,
    ) -> Result<(), FieldPathError> {
        let segments = self.segments();
        let leaf = if self.create { leaf } else { None };
        walk_map(object, &segments, leaf, visit)
            .map_err(|message| FieldPathError { path: self.path.clone(), message })
    }

    /// Whether the path leads to an existing field in `object` (no creation, no visit).
    pub fn reaches(&self, object: &Map<String, Value>) -> bool {
        fn has(node: &Value, path: &[String]) -> bool {
            let Some((first, rest)) = path.split_first() else { return true };
            match node {
                Value::Object(map) => {
                    let name = first.strip_suffix("[]").unwrap_or(first);
                    map.get(name).is_some_and(|child| has(child, rest))
                }
                Value::Array(items) => items.iter().any(|item| has(item, path)),
                _ => false,
            }
        }
        let segments = self.segments();
        let Some((first, rest)) = segments.split_first() else { return true };
        let name = first.strip_suffix("[]").unwrap_or(first);
        object.get(name).is_some_and(|child| has(child, rest))
    }
}

/// Splits a fieldSpec path on `/`, keeping `\/` as a slash inside a field name.
pub fn split_path(path: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for part in path.split('/') {
        match out.last_mut() {
            Some(last) if last.ends_with('\\') => {
                last.pop();
                last.push('/');
                last.push_str(part);
            }
            _ => out.push(part.to_string()),
        }
    }
    out
}

fn walk(
    node: &mut Value,
    path: &[String],
    leaf: Option<&Value>,
    visit: &mut dyn FnMut(&mut Value) -> Result<(), String>,
) -> Result<(), String> {
    if path.is_empty() {
        return visit(node);
    }
    match node {
        Value::Null => Ok(()),
        Value::Array(items) => {
            // A sequence is entered element by element; the path has no part for it.
            for item in items {
                walk(item, path, leaf, visit)?;
            }
            Ok(())
        }
        Value::Object(map) => walk_map(map, path, leaf, visit),
        _ => Err("expected sequence or mapping node".to_string()),
    }
}

fn walk_map(
    map: &mut Map<String, Value>,
    path: &[String],
    leaf: Option<&Value>,
    visit: &mut dyn FnMut(&mut Value) -> Result<(), String>,
) -> Result<(), String> {
    let Some((first, rest)) = path.split_first() else {
        // An empty path names the object itself; fieldSpecs never do this in practice.
        let mut whole = Value::Object(std::mem::take(map));
        let result = visit(&mut whole);
        if let Value::Object(m) = whole {
            *map = m;
        }
        return result;
    };
    let (name, is_seq) = match first.strip_suffix("[]") {
        Some(name) => (name, true),
        None => (first.as_str(), false),
    };
    let creation: Option<Value> = match leaf {
        Some(leaf) if !is_seq => Some(if rest.is_empty() { leaf.clone() } else { Value::Object(Map::new()) }),
        _ => None,
    };
    if !map.contains_key(name) {
        match &creation {
            Some(new) => {
                map.insert(name.to_string(), new.clone());
            }
            None => return Ok(()),
        }
    }
    let child = map.get_mut(name).expect("field present or just created");
    if child.is_null() {
        if is_seq {
            *child = Value::Array(Vec::new());
        } else if let Some(new) = creation {
            *child = new;
        }
    }
    walk(child, rest, leaf, visit)
}

/// One step of a kyaml-style field path (as used by vars' `fieldref` and replacements).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathStep {
    /// A mapping field.
    Field(String),
    /// A sequence element by position.
    Index(usize),
    /// Sequence elements whose `field` equals `value` (`[name=x]`); an empty field matches the
    /// element itself (`[=x]`, for lists of scalars).
    Match {
        /// The element field compared ("" = the element).
        field: String,
        /// The wanted value.
        value: String,
    },
    /// Every element of a sequence or every value of a mapping (`*`).
    Wildcard,
}

impl PathStep {
    /// Parses one dotted-path part: `0`, `[name=x]`, `*`, or a field name.
    pub fn parse(part: &str) -> PathStep {
        if part == "*" {
            return PathStep::Wildcard;
        }
        if let Some(inner) = part.strip_prefix('[').and_then(|p| p.strip_suffix(']'))
            && let Some((field, value)) = inner.split_once('=') {
                return PathStep::Match { field: field.to_string(), value: value.to_string() };
            }
        if !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit())
            && let Ok(i) = part.parse() {
                return PathStep::Index(i);
            }
        PathStep::Field(part.to_string())
    }

    /// Whether a sequence element is selected by a `Match` step.
    pub fn matches_element(field: &str, value: &str, element: &Value) -> bool {
        let probe = if field.is_empty() { Some(element) } else { element.as_object().and_then(|m| m.get(field)) };
        probe.and_then(scalar_string).is_some_and(|v| v == value)
    }
}

/// A scalar as the text YAML would show (strings as is).
pub fn scalar_string(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Splits a dotted field path as kustomize's SmarterPathSplitter does: dots inside `[...]` do
/// not split (`spec.containers.[name=a.b].image`), and `a[0]`/`a[k=v]` become two parts. A
/// bracketed part that held a dot but no `=` is a field name whose brackets only protected its
/// dots: kustomize drops them (`annotations.[cert-manager.io/inject-ca-from]`). One without a dot
/// (`[other]`) keeps them, as kustomize does, and so stays an invalid list selector.
pub fn split_dotted_path(path: &str) -> Vec<String> {
    let mut parts = split_at_outer_dots(path);
    for part in &mut parts {
        if part.starts_with('[') && part.contains('.') && !part.contains('=') {
            *part = part.trim_matches(['[', ']']).to_string();
        }
    }
    parts
}

fn split_at_outer_dots(path: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut depth = 0usize;
    for ch in path.chars() {
        match ch {
            '[' => {
                if depth == 0 && !current.is_empty() {
                    parts.push(std::mem::take(&mut current));
                }
                depth += 1;
                current.push(ch);
            }
            ']' => {
                depth = depth.saturating_sub(1);
                current.push(ch);
            }
            '.' if depth == 0 => {
                if !current.is_empty() {
                    parts.push(std::mem::take(&mut current));
                }
            }
            _ => current.push(ch),
        }
    }
    if !current.is_empty() {
        parts.push(current);
    }
    parts
}

/// Parses a dotted field path into steps: `a.b`, `a[0]`/`a.0`, `a.[k=v]`/`a[k=v]`, `a.*`.
pub fn parse_dotted_path(path: &str) -> Vec<PathStep> {
    split_dotted_path(path)
        .iter()
        .map(|part| match part.strip_prefix('[').and_then(|p| p.strip_suffix(']')) {
            Some(inner) if inner.contains('=') => PathStep::parse(part),
            Some(inner) if !inner.is_empty() && inner.bytes().all(|b| b.is_ascii_digit()) => PathStep::parse(inner),
            _ => PathStep::parse(part),
        })
        .collect()
}

/// Reads the node at a kyaml-style path (no wildcards), or None when any step is missing.
pub fn lookup<'v>(node: &'v Value, steps: &[PathStep]) -> Option<&'v Value> {
    let Some((step, rest)) = steps.split_first() else { return Some(node) };
    let next = match (step, node) {
        (PathStep::Field(name), Value::Object(map)) => map.get(name)?,
        (PathStep::Index(i), Value::Array(items)) => items.get(*i)?,
        (PathStep::Match { field, value }, Value::Array(items)) => {
            items.iter().find(|item| PathStep::matches_element(field, value, item))?
        }
        _ => return None,
    };
    lookup(next, rest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn set_to(value: &'static str) -> impl FnMut(&mut Value) -> Result<(), String> {
        move |node: &mut Value| {
            *node = Value::String(value.to_string());
            Ok(())
        }
    }

    #[test]
    fn walker_table() {
        struct Case {
            name: &'static str,
            spec: FieldSpec,
            leaf: Option<Value>,
            input: Value,
            expected: Value,
        }
        let fs = |kind: &str, path: &str, create: bool| FieldSpec {
            kind: kind.to_string(),
            path: path.to_string(),
            create,
            ..FieldSpec::default()
        };
        let cases = vec![
            Case {
                name: "existing leaf is set",
                spec: fs("", "metadata/namespace", false),
                leaf: Some(json!("")),
                input: json!({"kind": "ConfigMap", "metadata": {"name": "a", "namespace": "old"}}),
                expected: json!({"kind": "ConfigMap", "metadata": {"name": "a", "namespace": "X"}}),
            },
            Case {
                name: "missing leaf not created without create",
                spec: fs("", "metadata/namespace", false),
                leaf: Some(json!("")),
                input: json!({"kind": "ConfigMap", "metadata": {"name": "a"}}),
                expected: json!({"kind": "ConfigMap", "metadata": {"name": "a"}}),
            },
            Case {
                name: "missing path created with create",
                spec: fs("", "spec/template/metadata/namespace", true),
                leaf: Some(json!("")),
                input: json!({"kind": "Deployment"}),
                expected: json!({"kind": "Deployment", "spec": {"template": {"metadata": {"namespace": "X"}}}}),
            },
            Case {
                name: "create ignored when the filter has no create kind",
                spec: fs("", "spec/template/metadata/namespace", true),
                leaf: None,
                input: json!({"kind": "Deployment"}),
                expected: json!({"kind": "Deployment"}),
            },
            Case {
                name: "kind mismatch leaves object alone",
                spec: fs("Service", "metadata/name", false),
                leaf: None,
                input: json!({"kind": "ConfigMap", "metadata": {"name": "a"}}),
                expected: json!({"kind": "ConfigMap", "metadata": {"name": "a"}}),
            },
            Case {
                name: "sequences are entered implicitly",
                spec: fs("Pod", "spec/containers/env/value", false),
                leaf: None,
                input: json!({"kind": "Pod", "spec": {"containers": [
                    {"name": "a", "env": [{"name": "E", "value": "1"}, {"name": "F"}]},
                    {"name": "b"}]}}),
                expected: json!({"kind": "Pod", "spec": {"containers": [
                    {"name": "a", "env": [{"name": "E", "value": "X"}, {"name": "F"}]},
                    {"name": "b"}]}}),
            },
            Case {
                name: "[] marks a sequence that is never created",
                spec: fs("", "spec/containers[]/image", true),
                leaf: Some(json!("")),
                input: json!({"kind": "Pod", "spec": {}}),
                expected: json!({"kind": "Pod", "spec": {}}),
            },
            Case {
                name: "[] turns null into an empty sequence",
                spec: fs("", "spec/volumeClaimTemplates[]/metadata/labels", true),
                leaf: Some(json!({})),
                input: json!({"kind": "StatefulSet", "spec": {"volumeClaimTemplates": null}}),
                expected: json!({"kind": "StatefulSet", "spec": {"volumeClaimTemplates": []}}),
            },
            Case {
                name: "null intermediate is replaced when creating",
                spec: fs("", "metadata/labels/app", true),
                leaf: Some(json!("")),
                input: json!({"kind": "Pod", "metadata": null}),
                expected: json!({"kind": "Pod", "metadata": {"labels": {"app": "X"}}}),
            },
            Case {
                name: "null intermediate stops the walk without create",
                spec: fs("", "spec/template/metadata/name", false),
                leaf: None,
                input: json!({"kind": "Pod", "spec": {"template": null}}),
                expected: json!({"kind": "Pod", "spec": {"template": null}}),
            },
            Case {
                name: "escaped slash stays in the field name",
                spec: fs("Ingress", "metadata/annotations/example.com\\/secret", false),
                leaf: None,
                input: json!({"kind": "Ingress", "metadata": {"annotations": {"example.com/secret": "s"}}}),
                expected: json!({"kind": "Ingress", "metadata": {"annotations": {"example.com/secret": "X"}}}),
            },
        ];
        for case in cases {
            let mut object = obj(case.input);
            case.spec
                .apply(&mut object, case.leaf.as_ref(), &mut set_to("X"))
                .unwrap_or_else(|e| panic!("{}: {e}", case.name));
            assert_eq!(Value::Object(object), case.expected, "{}", case.name);
        }
    }

    #[test]
    fn scalar_in_the_middle_is_an_error() {
        let spec = FieldSpec::new("metadata/labels/app", false);
        let mut object = obj(json!({"kind": "Pod", "metadata": {"labels": "oops"}}));
        let err = spec.apply(&mut object, None, &mut set_to("X")).unwrap_err();
        assert_eq!(err.path, "metadata/labels/app");
        assert!(err.message.contains("expected sequence or mapping"));
    }

    #[test]
    fn gvk_parsing_and_selection() {
        assert_eq!(split_api_version("apps/v1"), ("apps", "v1"));
        assert_eq!(split_api_version("v1"), ("", "v1"));
        assert_eq!(split_api_version("v2beta1"), ("", "v2beta1"));
        assert_eq!(split_api_version("example"), ("example", ""));
        let fs = FieldSpec { group: "apps".into(), kind: "Deployment".into(), ..FieldSpec::default() };
        assert!(fs.selects(&Gvk::from_api_version("apps/v1", "Deployment")));
        assert!(!fs.selects(&Gvk::from_api_version("extensions/v1beta1", "Deployment")));
        assert!(FieldSpec::new("x", false).selects(&Gvk::from_api_version("v1", "Pod")));
    }

    #[test]
    fn cluster_scoped_table_follows_kustomize() {
        let cases = [
            ("v1", "Namespace", true),
            ("rbac.authorization.k8s.io/v1", "ClusterRole", true),
            ("rbac.authorization.k8s.io/v1alpha1", "ClusterRole", false),
            ("policy/v1beta1", "PodSecurityPolicy", true),
            ("extensions/v1beta1", "PodSecurityPolicy", false),
            ("flowcontrol.apiserver.k8s.io/v1", "FlowSchema", false),
            ("example.com/v1", "ClusterThing", false),
            ("v1", "ConfigMap", false),
        ];
        for (api_version, kind, want) in cases {
            assert_eq!(Gvk::from_api_version(api_version, kind).is_cluster_scoped(), want, "{api_version} {kind}");
        }
    }

    #[test]
    fn dotted_paths_and_lookup() {
        assert_eq!(split_dotted_path("spec.ports[0].port"), vec!["spec", "ports", "[0]", "port"]);
        assert_eq!(
            split_dotted_path("spec.containers.[name=a.b].image"),
            vec!["spec", "containers", "[name=a.b]", "image"]
        );
        assert_eq!(
            split_dotted_path("metadata.annotations.[cert-manager.io/inject-ca-from]"),
            vec!["metadata", "annotations", "cert-manager.io/inject-ca-from"]
        );
        assert_eq!(split_dotted_path("metadata.annotations.[other]"), vec!["metadata", "annotations", "[other]"]);
        let doc = serde_json::json!({"spec": {"ports": [{"name": "http", "port": 80}], "args": ["x", "y"]}});
        let at = |p: &str| lookup(&doc, &parse_dotted_path(p)).cloned();
        assert_eq!(at("spec.ports.0.port"), Some(serde_json::json!(80)));
        assert_eq!(at("spec.ports[0].port"), Some(serde_json::json!(80)));
        assert_eq!(at("spec.ports.[name=http].port"), Some(serde_json::json!(80)));
        assert_eq!(at("spec.ports[name=http].port"), Some(serde_json::json!(80)));
        assert_eq!(at("spec.args.[=y]"), Some(serde_json::json!("y")));
        assert_eq!(at("spec.nope"), None);
    }

    #[test]
    fn reaches_reports_existing_paths() {
        let object = obj(json!({"spec": {"containers": [{"name": "a"}, {"name": "b", "image": "x"}]}}));
        assert!(FieldSpec::new("spec/containers/image", false).reaches(&object));
        assert!(!FieldSpec::new("spec/initContainers/image", false).reaches(&object));
    }
}
