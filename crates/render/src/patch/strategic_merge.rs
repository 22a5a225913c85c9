//! Strategic merge patch, as kustomize v5.5 applies it.
//!
//! kustomize does not use the apiserver's strategic merge; it uses kyaml's `merge2` walker with
//! `ListIncreaseDirection: Prepend`. This module reproduces that walker over JSON values:
//!
//! - maps merge recursively; a `null` in the patch deletes the key; keys new to the resource are
//!   appended in sorted order;
//! - `$patch: delete` removes the map (the whole resource at the top), `$patch: replace` replaces it
//!   with the patch, `$patch: merge` is the default; any other value is an error;
//! - lists whose schema says `x-kubernetes-patch-strategy: merge` (see [`super::merge_keys`]) are
//!   merged element by element, patch elements first, then the resource's remaining elements; other
//!   lists are replaced by the patch's list;
//! - `$setElementOrder/...`, `$retainKeys` and `$deleteFromPrimitiveList/...` are not directives
//!   for kustomize's merge: they are copied into the output like any other field, and so are they
//!   here (kubectl kustomize v5.5 prints them).
//!
//! The list algorithm keeps kyaml's quirks that show in its output, checked against
//! `kubectl kustomize`: `$patch: replace` on a list element leaves the element unchanged, and a
//! container port in the patch without `protocol` does not merge with a port that has one.

use serde_json::{Map, Value};

use super::merge_keys::{self, FieldSchema, TypeRef};
use crate::resource::{NodePath, PathSegment};

/// Why a strategic merge failed, with the field path where it happened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (at field `{path}`)")]
pub struct MergeError {
    /// Dotted path of the field being merged, e.g. `spec.template.spec.containers`.
    pub path: String,
    /// What went wrong.
    pub message: String,
}

/// Strategic-merge `patch` into `resource`. Returns None when the patch deletes the whole resource
/// (`$patch: delete` at the top, or a merge that leaves nothing).
pub fn merge_resource(
    resource: &Map<String, Value>,
    patch: &Map<String, Value>,
) -> Result<Option<Map<String, Value>>, MergeError> {
    merge_resource_owned(resource.clone(), patch.clone())
}

/// [`merge_resource`] consuming its inputs (no copies of the object are made).
pub fn merge_resource_owned(
    resource: Map<String, Value>,
    patch: Map<String, Value>,
) -> Result<Option<Map<String, Value>>, MergeError> {
    let mut walker = Walker { path: Vec::new() };
    let merged = walker.walk(Some(Value::Object(resource)), Some(Value::Object(patch)), NodeSchema::Unknown)?;
    Ok(match merged.value {
        Some(Value::Object(map)) if !map.is_empty() => Some(map),
        _ => None,
    })
}

/// Drop the resource's bare keys (`key:` with no value, see [`Resource::bare_keys`]) that the
/// merge walker will visit: kyaml keeps a resource's null the patch does not mention only when
/// it was written out (`null`, `~`), and clears one with no text. The walker visits every mapping
/// from the top through maps and merge lists; it does not enter other lists, so bare keys under
/// those stay. Removing a null the walker would see first is the same as its clearing it.
///
/// [`Resource::bare_keys`]: crate::resource::Resource::bare_keys
pub fn drop_bare_keys(resource: &mut Map<String, Value>, bare_keys: &[NodePath]) {
    let schema = NodeSchema::Unknown.refined_by(resource);
    for path in bare_keys {
        if let Some((PathSegment::Field(last), parents)) = path.split_last() {
            drop_bare_key(resource, schema, parents, last);
        }
    }
}

/// [`drop_bare_keys`] for one key, `parents` below `map` (whose schema is `schema`).
fn drop_bare_key(map: &mut Map<String, Value>, schema: NodeSchema, parents: &[PathSegment], last: &str) {
    let [PathSegment::Field(key), rest @ ..] = parents else {
        if parents.is_empty() && map.get(last).is_some_and(Value::is_null) {
            map.shift_remove(last);
        }
        return;
    };
    let field = schema.field(key);
    match (map.get_mut(key), rest) {
        (Some(Value::Object(child)), _) => {
            let schema = field.refined_by(child);
            drop_bare_key(child, schema, rest, last);
        }
        (Some(Value::Array(items)), [PathSegment::Item(i), rest @ ..]) if matches!(field, NodeSchema::MergeList(_)) => {
            if let Some(Value::Object(child)) = items.get_mut(*i) {
                let schema = field.element().refined_by(child);
                drop_bare_key(child, schema, rest, last);
            }
        }
        _ => {}
    }
}

/// What kyaml's walker knows about the node being visited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NodeSchema {
    /// No schema: a map holding `apiVersion` and `kind` gets the schema of that kind.
    Unknown,
    /// A schema that has no merge list anywhere below it.
    Opaque,
    /// An object type with merge lists somewhere below it.
    Object(TypeRef),
    /// A list with patch strategy merge.
    MergeList(FieldSchema),
}

impl NodeSchema {
    fn field(self, key: &str) -> NodeSchema {
        match self {
            NodeSchema::Unknown => NodeSchema::Unknown,
            NodeSchema::Opaque | NodeSchema::MergeList(_) => NodeSchema::Opaque,
            NodeSchema::Object(ty) => match merge_keys::field_schema(ty, key) {
                Some(FieldSchema::Object(inner)) => NodeSchema::Object(inner),
                Some(list @ FieldSchema::MergeList { .. }) => NodeSchema::MergeList(list),
                None => NodeSchema::Opaque,
            },
        }
    }

    /// The schema the walker uses at a map: an unknown one gets the schema of the kind the map
    /// names by its own `apiVersion` and `kind`, if any.
    fn refined_by(self, map: &Map<String, Value>) -> NodeSchema {
        match self {
            NodeSchema::Unknown => schema_from_type_meta_map(map).unwrap_or(NodeSchema::Unknown),
            known => known,
        }
    }

    fn element(self) -> NodeSchema {
        match self {
            NodeSchema::MergeList(list) => {
                merge_keys::element_type(list).map_or(NodeSchema::Opaque, NodeSchema::Object)
            }
            NodeSchema::Unknown => NodeSchema::Unknown,
            _ => NodeSchema::Opaque,
        }
    }
}

/// The result of walking one node: the merged value (None = remove it), and whether it is the
/// resource's own node merged in place (kyaml mutates that node, which later list steps observe).
struct Walked {
    value: Option<Value>,
    in_place: bool,
    /// A null the resource had and the patch did not mention: kept, where a null coming from the
    /// patch clears the field.
    kept_null: bool,
}

impl Walked {
    fn cleared() -> Walked {
        Walked { value: None, in_place: false, kept_null: false }
    }

    fn of(value: Option<Value>, in_place: bool) -> Walked {
        Walked { value, in_place, kept_null: false }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Directive {
    Merge,
    Replace,
    Delete,
}

const DIRECTIVE_KEY: &str = "$patch";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Map,
    Seq,
    Scalar,
}

fn kind_of(v: &Value) -> Option<Kind> {
    match v {
        Value::Null => None,
        Value::Object(_) => Some(Kind::Map),
        Value::Array(_) => Some(Kind::Seq),
        _ => Some(Kind::Scalar),
    }
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Map => "MappingNode",
        Kind::Seq => "SequenceNode",
        Kind::Scalar => "ScalarNode",
    }
}

fn is_missing_or_null(v: Option<&Value>) -> bool {
    matches!(v, None | Some(Value::Null))
}

/// The text of a scalar as YAML holds it; maps and lists have none (kyaml's `Node.Value`).
fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => "null".to_string(),
        Value::Object(_) | Value::Array(_) => String::new(),
    }
}

/// kyaml's `IsNilOrEmpty` on a field value: missing, null, `{}` or `[]`.
fn is_nil_or_empty(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::Object(m)) => m.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        _ => false,
    }
}

fn is_empty_map(v: &Value) -> bool {
    matches!(v, Value::Object(m) if m.is_empty())
}

struct Walker {
    path: Vec<String>,
}

impl Walker {
    fn error(&self, message: String) -> MergeError {
        MergeError { path: self.path.join("."), message }
    }

    /// kyaml's `Walker.Walk` with `Sources = [dest, origin]`.
    fn walk(
        &mut self,
        dest: Option<Value>,
        origin: Option<Value>,
        schema: NodeSchema,
    ) -> Result<Walked, MergeError> {
        let schema = match schema {
            NodeSchema::Unknown => schema_from_type_meta(dest.as_ref())
                .or_else(|| schema_from_type_meta(origin.as_ref()))
                .unwrap_or(NodeSchema::Unknown),
            known => known,
        };
        let kind = dest.as_ref().and_then(kind_of).or_else(|| origin.as_ref().and_then(kind_of));
        if let Some(kind) = kind {
            for source in [dest.as_ref(), origin.as_ref()].into_iter().flatten() {
                if let Some(other) = kind_of(source)
                    && other != kind
                {
                    return Err(self.error(format!(
                        "wrong node kind: expected {} but got {}: node contents:\n{}",
                        kind_name(kind),
                        kind_name(other),
                        serde_json::to_string(source).unwrap_or_default()
                    )));
                }
            }
        }
        match kind {
            Some(Kind::Map) | None => self.walk_map(dest, origin, schema),
            Some(Kind::Seq) => {
                if let NodeSchema::MergeList(list) = schema {
                    self.walk_associative_list(dest, origin, schema, list)
                } else {
                    // A list without merge strategy: the patch's list (even null) wins.
                    Ok(match origin {
                        Some(o) => Walked::of(Some(o), false),
                        None => Walked::of(dest, true),
                    })
                }
            }
            Some(Kind::Scalar) => Ok(match origin {
                Some(o) => Walked::of(Some(o), false),
                None => Walked::of(dest, true),
            }),
        }
    }

    fn walk_map(
        &mut self,
        dest: Option<Value>,
        origin: Option<Value>,
        schema: NodeSchema,
    ) -> Result<Walked, MergeError> {
        let mut origin = origin;
        let (new_dest, in_place) = if is_missing_or_null(dest.as_ref()) {
            // Add: the patch's map becomes the node (then merged with itself, which strips
            // directives and nulls from it).
            let directive = determine_directive(origin.as_mut()).unwrap_or(Directive::Merge);
            if directive == Directive::Delete {
                return Ok(Walked::cleared());
            }
            if origin.is_none() && matches!(dest, Some(Value::Null)) {
                // kyaml keeps an explicit null of the resource that the patch does not mention.
                return Ok(Walked { value: Some(Value::Null), in_place: true, kept_null: true });
            }
            (origin.clone(), false)
        } else if matches!(origin, Some(Value::Null)) {
            return Ok(Walked::cleared());
        } else {
            match determine_directive(origin.as_mut()).map_err(|m| self.error(m))? {
                Directive::Delete => return Ok(Walked::cleared()),
                Directive::Replace => (origin.clone(), false),
                Directive::Merge => (dest, true),
            }
        };
        let Some(new_dest) = new_dest else { return Ok(Walked::cleared()) };
        let Value::Object(mut dest_map) = new_dest else {
            // A null node: nothing to walk, and a null field is removed by the caller.
            return Ok(Walked::of(Some(new_dest), in_place));
        };
        let mut origin_map = match origin {
            Some(Value::Object(m)) => Some(m),
            _ => None,
        };
        let mut names: Vec<String> = dest_map.keys().cloned().collect();
        if let Some(o) = &origin_map {
            names.extend(o.keys().cloned());
        }
        names.sort();
        names.dedup();
        for key in names {
            // Each field is visited once, so its values are moved out rather than copied; every
            // outcome below writes the slot back or removes it (an error abandons the whole copy).
            let d = dest_map.get_mut(&key).map(Value::take);
            let o = origin_map.as_mut().and_then(|m| m.get_mut(&key)).map(Value::take);
            self.path.push(key.clone());
            let walked = self.walk(d, o, schema.field(&key))?;
            self.path.pop();
            match walked.value {
                Some(Value::Null) if walked.kept_null => {}
                None | Some(Value::Null) => {
                    dest_map.shift_remove(&key);
                }
                Some(v) => {
                    if let Some(slot) = dest_map.get_mut(&key) {
                        *slot = v;
                    } else {
                        dest_map.insert(key, v);
                    }
                }
            }
        }
        Ok(Walked::of(Some(Value::Object(dest_map)), in_place))
    }

    fn walk_associative_list(
        &mut self,
        dest: Option<Value>,
        origin: Option<Value>,
        schema: NodeSchema,
        list: FieldSchema,
    ) -> Result<Walked, MergeError> {
        let (new_dest, in_place) = if is_missing_or_null(dest.as_ref()) {
            (origin.clone(), false)
        } else if matches!(origin, Some(Value::Null)) {
            return Ok(Walked::cleared());
        } else {
            (dest, true)
        };
        let Some(Value::Array(dest_list)) = new_dest else {
            return Ok(Walked::of(new_dest, in_place));
        };
        let origin_list = match origin {
            Some(Value::Array(a)) => Some(a),
            _ => None,
        };
        let keys: Vec<String> = list.merge_keys().unwrap_or(&[]).iter().map(|k| k.to_string()).collect();
        let sources = ListSources { dest: dest_list, origin: origin_list };
        let merged = if keys.is_empty() {
            let values = sources.primitive_values();
            self.set_elements(values, vec![String::new()], sources, schema.element())?
        } else {
            let values = sources.element_values(&keys);
            self.set_elements(values, keys, sources, schema.element())?
        };
        Ok(Walked::of(merged.map(Value::Array), in_place))
    }

    /// kyaml's `setAssociativeSequenceElements` followed by the prepend `appendListNode`.
    fn set_elements(
        &mut self,
        mut values_list: Vec<Vec<String>>,
        keys: Vec<String>,
        mut sources: ListSources,
        element_schema: NodeSchema,
    ) -> Result<Option<Vec<Value>>, MergeError> {
        let mut items: Vec<Value> = Vec::new();
        if keys.len() > 1 {
            merge_values(&mut values_list);
        }
        let mut valid_keys = keys.clone();
        for values in &values_list {
            if values.is_empty() {
                continue;
            }
            let (vk, vv) = validate_keys(&values_list, values, &keys);
            valid_keys = vk.clone();
            let (lookup_keys, lookup_values) = validate_keys(std::slice::from_ref(&vv), &vv, &vk);
            let dest_index = element_list(&sources.dest, &lookup_keys, &lookup_values);
            let dest_elem = dest_index.map(|i| sources.dest[i].clone());
            let origin_elem = sources
                .origin
                .as_ref()
                .and_then(|o| element_list(o, &lookup_keys, &lookup_values).map(|i| o[i].clone()));
            self.path.push(format!("[{}]", describe(&vk, &vv)));
            let walked = self.walk(dest_elem, origin_elem, element_schema)?;
            self.path.pop();
            let val = match walked.value {
                Some(v) if !v.is_null() && !is_empty_map(&v) => v,
                _ => {
                    element_setter(&mut sources.dest, None, &vk, &vv);
                    continue;
                }
            };
            let mut val = val;
            for (i, key) in vk.iter().enumerate() {
                if key.is_empty() {
                    continue;
                }
                if let Value::Object(m) = &mut val
                    && !m.contains_key(key)
                    && !vv[i].is_empty()
                {
                    m.insert(key.clone(), Value::String(vv[i].clone()));
                }
            }
            if walked.in_place
                && let Some(i) = dest_index
            {
                // kyaml merged the resource's own element node; later steps see the change.
                sources.dest[i] = val.clone();
            }
            element_setter(&mut items, Some(val), &vk, &vv);
        }
        if !values_list.is_empty() {
            append_list_node(&mut items, &sources.dest, &valid_keys);
            return Ok(Some(items));
        }
        Ok(Some(sources.dest))
    }
}

/// Schema of a map that carries its own `apiVersion` and `kind` (kyaml's `GetSchema` fallback).
fn schema_from_type_meta(v: Option<&Value>) -> Option<NodeSchema> {
    let Some(Value::Object(m)) = v else { return None };
    schema_from_type_meta_map(m)
}

fn schema_from_type_meta_map(m: &Map<String, Value>) -> Option<NodeSchema> {
    let api_version = m.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind = m.get("kind").and_then(Value::as_str).unwrap_or("");
    if api_version.is_empty() || kind.is_empty() {
        return None;
    }
    merge_keys::root_type(api_version, kind).map(NodeSchema::Object)
}

/// Read (and remove) the `$patch` directive of a patch map.
fn determine_directive(patch: Option<&mut Value>) -> Result<Directive, String> {
    let Some(patch) = patch else { return Ok(Directive::Merge) };
    let Value::Object(map) = patch else {
        if patch.is_array() {
            return Ok(Directive::Merge);
        }
        return Err(format!("no implemented strategic merge patch strategy for '{}'", scalar_text(patch)));
    };
    let Some(value) = map.get(DIRECTIVE_KEY) else { return Ok(Directive::Merge) };
    let directive = match scalar_text(value).as_str() {
        "delete" => Directive::Delete,
        "replace" => Directive::Replace,
        "merge" => Directive::Merge,
        other => return Err(format!("unknown patch strategy '{other}'")),
    };
    map.shift_remove(DIRECTIVE_KEY);
    Ok(directive)
}

fn describe(keys: &[String], values: &[String]) -> String {
    keys.iter()
        .zip(values)
        .map(|(k, v)| if k.is_empty() { v.clone() } else { format!("{k}={v}") })
        .collect::<Vec<_>>()
        .join(",")
}

/// The two lists being merged: the resource's (dest) and the patch's (origin).
struct ListSources {
    dest: Vec<Value>,
    origin: Option<Vec<Value>>,
}

impl ListSources {
    /// The patch's lists come first (kustomize merges with ListIncreaseDirection: Prepend).
    fn in_prepend_order(&self) -> impl Iterator<Item = &Vec<Value>> {
        self.origin.iter().chain(std::iter::once(&self.dest))
    }

    /// Key values of every element of both lists, patch first, without repeats.
    fn element_values(&self, keys: &[String]) -> Vec<Vec<String>> {
        let mut out: Vec<Vec<String>> = Vec::new();
        for list in self.in_prepend_order() {
            for elem in list {
                let values: Vec<String> = keys
                    .iter()
                    .map(|k| {
                        let field = elem.as_object().and_then(|m| m.get(k));
                        if is_nil_or_empty(field) { String::new() } else { scalar_text(field.unwrap_or(&Value::Null)) }
                    })
                    .collect();
                if values.is_empty() || out.contains(&values) {
                    continue;
                }
                out.push(values);
            }
        }
        out
    }

    /// Values of a primitive merge list (e.g. finalizers), patch first, without repeats.
    fn primitive_values(&self) -> Vec<Vec<String>> {
        let mut out: Vec<Vec<String>> = Vec::new();
        for list in self.in_prepend_order() {
            for item in list {
                let text = vec![scalar_text(item)];
                if !out.contains(&text) {
                    out.push(text);
                }
            }
        }
        out
    }
}

/// kyaml `mergeValues`: key tuples that agree where both are set are the same element
/// (e.g. a port given with and without `protocol`). Iterates like the Go loop, which reads the
/// outer tuple once per outer step.
fn merge_values(values_list: &mut [Vec<String>]) {
    for i in 0..values_list.len() {
        let values1 = values_list[i].clone();
        for j in 0..values_list.len() {
            let values2 = values_list[j].clone();
            if let Some(merged) = match_values(&values1, &values2) {
                values_list[i] = merged.clone();
                values_list[j] = merged;
            }
        }
    }
}

fn match_values(values1: &[String], values2: &[String]) -> Option<Vec<String>> {
    if values1.len() != values2.len() {
        return None;
    }
    let mut common = false;
    let mut res = Vec::with_capacity(values1.len());
    for (a, b) in values1.iter().zip(values2) {
        if a == b {
            common = true;
            res.push(a.clone());
            continue;
        }
        if !a.is_empty() && !b.is_empty() {
            return None;
        }
        res.push(if a.is_empty() { b.clone() } else { a.clone() });
    }
    common.then_some(res)
}

/// kyaml `validateKeys`: drop the keys that no tuple sets (a secondary key absent everywhere).
fn validate_keys(values_list: &[Vec<String>], values: &[String], keys: &[String]) -> (Vec<String>, Vec<String>) {
    let mut valid: Vec<&String> = Vec::new();
    for vals in values_list {
        for (i, v) in vals.iter().enumerate() {
            if !v.is_empty()
                && let Some(k) = keys.get(i)
                && !valid.contains(&k)
            {
                valid.push(k);
            }
        }
    }
    if valid.is_empty() {
        return (keys.to_vec(), values.to_vec());
    }
    let valid_keys: Vec<String> = keys.iter().filter(|k| valid.contains(k)).cloned().collect();
    let valid_values: Vec<String> = values
        .iter()
        .enumerate()
        .filter(|(i, v)| !v.is_empty() || keys.get(*i).is_some_and(|k| valid.contains(&k)))
        .map(|(_, v)| v.clone())
        .collect();
    (valid_keys, valid_values)
}

/// kyaml `ElementList`/`MatchElementList`: index of the first element whose fields `keys[i]` have
/// text `values[i]` (for a primitive list, key "": the first item with that text).
fn element_list(list: &[Value], keys: &[String], values: &[String]) -> Option<usize> {
    let keys: Vec<&str> = if keys.is_empty() { vec![""] } else { keys.iter().map(String::as_str).collect() };
    let empty = [String::new()];
    let values: &[String] = if values.is_empty() { &empty } else { values };
    if keys[0].is_empty() {
        return list.iter().position(|item| scalar_text(item) == values[0]);
    }
    if keys.len() != values.len() {
        return None;
    }
    list.iter().position(|item| {
        let Value::Object(m) = item else { return false };
        keys.iter().zip(values).all(|(k, v)| m.get(*k).is_some_and(|f| scalar_text(f) == *v))
    })
}

/// kyaml `FieldMatcher{Name, StringValue}` on one element: an empty value only needs the field.
fn field_matches(elem: &Value, key: &str, value: &str) -> bool {
    if key.is_empty() {
        return !elem.is_object() && !elem.is_array() && scalar_text(elem) == value;
    }
    let Value::Object(m) = elem else { return false };
    match m.get(key) {
        None => false,
        Some(_) if value.is_empty() => true,
        Some(f) => scalar_text(f) == value,
    }
}

/// kyaml `ElementSetter`: replace (or delete, when `element` is None) the elements matching all
/// key values, appending `element` when none matches. Like kyaml, it drops null and `{}` elements.
fn element_setter(list: &mut Vec<Value>, element: Option<Value>, keys: &[String], values: &[String]) {
    let keys: Vec<String> = if keys.is_empty() { vec![String::new()] } else { keys.to_vec() };
    let mapping_setter = !keys[0].is_empty() && values.first().is_some_and(|v| !v.is_empty());
    let mut found_any = false;
    let mut out = Vec::with_capacity(list.len() + 1);
    for elem in list.drain(..) {
        if elem.is_null() || is_empty_map(&elem) {
            continue;
        }
        if !elem.is_object() && mapping_setter {
            out.push(elem);
            continue;
        }
        let mut found = true;
        let mut last_match = false;
        for (j, key) in keys.iter().enumerate() {
            if let Some(v) = values.get(j) {
                last_match = field_matches(&elem, key, v);
            }
            if !last_match {
                found = false;
                break;
            }
        }
        if !found {
            if !values.is_empty() {
                out.push(elem);
            }
            continue;
        }
        found_any = true;
        if let Some(e) = &element {
            out.push(e.clone());
        }
    }
    *list = out;
    match element {
        Some(e) if !e.is_null() && !found_any => list.push(e),
        _ => {}
    }
}

/// kyaml `appendListNode(dst, src, keys)`: set every element of `src` into `dst` by its keys.
fn append_list_node(dst: &mut Vec<Value>, src: &[Value], keys: &[String]) {
    for elem in src {
        if keys.first().is_none_or(|k| k.is_empty()) {
            element_setter(dst, Some(elem.clone()), &[String::new()], &[scalar_text(elem)]);
            continue;
        }
        let mut values = Vec::new();
        for key in keys {
            match elem.as_object().and_then(|m| m.get(key)) {
                Some(v) => values.push(scalar_text(v)),
                None => dst.push(elem.clone()),
            }
        }
        if keys.len() > 1 {
            element_setter(dst, None, keys, &values);
        }
        element_setter(dst, Some(elem.clone()), keys, &values);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            other => panic!("not a map: {other}"),
        }
    }

    /// Each case: name, resource, patch, expected result (None = resource deleted). Expected
    /// outputs were produced by `kubectl kustomize` (kustomize v5.5) on the same input.
    fn cases() -> Vec<(&'static str, Value, Value, Option<Value>)> {
        let deploy = |spec: Value| json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": {"template": {"spec": spec}}});
        vec![
            (
                "maps merge, null deletes, new keys appended sorted",
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}}),
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"b": null, "z": "26", "c": "3"}}),
                Some(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1", "c": "3", "z": "26"}})),
            ),
            (
                "containers and env merge by name, patch elements first",
                deploy(json!({"containers": [
                    {"name": "a", "image": "a", "env": [{"name": "E1", "value": "1"}, {"name": "E2", "value": "2"}]},
                    {"name": "b", "image": "b"}],
                    "volumes": [{"name": "v1"}, {"name": "v2"}]})),
                deploy(json!({"containers": [
                    {"name": "c", "image": "c"},
                    {"name": "a", "image": "a2", "env": [{"name": "E3", "value": "3"}, {"name": "E1", "value": "x"}]}],
                    "volumes": [{"name": "v0"}]})),
                Some(deploy(json!({"containers": [
                    {"name": "c", "image": "c"},
                    {"name": "a", "image": "a2", "env": [{"name": "E3", "value": "3"}, {"name": "E1", "value": "x"}, {"name": "E2", "value": "2"}]},
                    {"name": "b", "image": "b"}],
                    "volumes": [{"name": "v0"}, {"name": "v1"}, {"name": "v2"}]}))),
            ),
            (
                "lists without merge key are replaced",
                deploy(json!({"containers": [{"name": "a", "args": ["x", "y"]}], "tolerations": [{"key": "k"}]})),
                deploy(json!({"containers": [{"name": "a", "args": ["z"]}], "tolerations": [{"key": "j"}]})),
                Some(deploy(json!({"containers": [{"name": "a", "args": ["z"]}], "tolerations": [{"key": "j"}]}))),
            ),
            (
                "$patch: delete removes a list element; replace on an element changes nothing",
                deploy(json!({"containers": [{"name": "a", "image": "a", "args": ["q"]}, {"name": "b", "image": "b"}]})),
                deploy(json!({"containers": [
                    {"name": "a", "$patch": "replace", "image": "a2"},
                    {"name": "b", "$patch": "delete"},
                    {"name": "z", "image": "z", "env": [{"name": "X", "value": null}, {"name": "Y", "$patch": "delete"}]}]})),
                Some(deploy(json!({"containers": [
                    {"name": "a", "image": "a", "args": ["q"]},
                    {"name": "z", "image": "z", "env": [{"name": "X"}]}]}))),
            ),
            (
                "ports merge by containerPort+protocol; a port without protocol does not match one with it",
                deploy(json!({"containers": [{"name": "a", "ports": [
                    {"containerPort": 80, "protocol": "TCP"}, {"containerPort": 81},
                    {"containerPort": 83, "protocol": "UDP", "name": "x"}]}]})),
                deploy(json!({"containers": [{"name": "a", "ports": [
                    {"containerPort": 81, "name": "p81"}, {"containerPort": 80, "name": "http"},
                    {"containerPort": 83, "protocol": "UDP", "hostPort": 9}]}]})),
                Some(deploy(json!({"containers": [{"name": "a", "ports": [
                    {"containerPort": 80, "protocol": "TCP"}, {"containerPort": 81, "name": "p81"},
                    {"containerPort": 83, "protocol": "UDP", "name": "x", "hostPort": 9}]}]}))),
            ),
            (
                "new port without protocol goes first",
                deploy(json!({"containers": [{"name": "a", "ports": [{"containerPort": 80, "protocol": "TCP"}, {"containerPort": 81}]}]})),
                deploy(json!({"containers": [{"name": "a", "ports": [{"containerPort": 82}, {"containerPort": 80, "name": "http"}]}]})),
                Some(deploy(json!({"containers": [{"name": "a", "ports": [{"containerPort": 82}, {"containerPort": 80, "protocol": "TCP"}, {"containerPort": 81}]}]}))),
            ),
            (
                "finalizers are a primitive merge list; directives kyaml ignores are kept as fields",
                json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "finalizers": ["a", "b"]},
                       "spec": {"template": {"spec": {"containers": [{"name": "a", "args": ["x", "y"]}]}}}}),
                json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "finalizers": ["c", "a"]},
                       "spec": {"template": {"spec": {"$setElementOrder/containers": [{"name": "a"}],
                        "containers": [{"name": "a", "$deleteFromPrimitiveList/args": ["y"]}]}}}}),
                Some(json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "finalizers": ["c", "a", "b"]},
                       "spec": {"template": {"spec": {"containers": [{"name": "a", "args": ["x", "y"], "$deleteFromPrimitiveList/args": ["y"]}],
                        "$setElementOrder/containers": [{"name": "a"}]}}}})),
            ),
            (
                "kinds the v1.21 schema lacks (CRDs, extensions/v1beta1) replace lists; empty maps are kept",
                json!({"apiVersion": "extensions/v1beta1", "kind": "Deployment", "metadata": {"name": "d", "finalizers": ["a"]},
                       "spec": {"template": {"spec": {"containers": [{"name": "a", "image": "a"}]}}}}),
                json!({"apiVersion": "extensions/v1beta1", "kind": "Deployment", "metadata": {"name": "d", "finalizers": ["b"], "labels": {}},
                       "spec": {"template": {"spec": {"containers": [{"name": "b", "image": "b"}]}}}}),
                Some(json!({"apiVersion": "extensions/v1beta1", "kind": "Deployment", "metadata": {"name": "d", "finalizers": ["b"], "labels": {}},
                       "spec": {"template": {"spec": {"containers": [{"name": "b", "image": "b"}]}}}})),
            ),
            (
                "nulls the patch does not mention are kept; a null from the patch clears",
                json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "creationTimestamp": null},
                       "spec": {"a": null, "b": 1, "c": {"d": null}}}),
                json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"b": null, "c": {"e": 2}}}),
                Some(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "creationTimestamp": null},
                       "spec": {"a": null, "c": {"d": null, "e": 2}}})),
            ),
            (
                "$patch: delete at the top deletes the resource",
                json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}}),
                json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "$patch": "delete"}),
                None,
            ),
            (
                "$patch: replace on a map replaces it",
                json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {"selector": {"a": "1", "b": "2"}}}),
                json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {"selector": {"$patch": "replace", "c": "3"}}}),
                Some(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {"selector": {"c": "3"}}})),
            ),
            (
                "webhooks merge by name",
                json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration", "metadata": {"name": "m"},
                       "webhooks": [{"name": "a", "sideEffects": "None"}, {"name": "b"}]}),
                json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration", "metadata": {"name": "m"},
                       "webhooks": [{"name": "b", "failurePolicy": "Ignore"}]}),
                Some(json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration", "metadata": {"name": "m"},
                       "webhooks": [{"name": "b", "failurePolicy": "Ignore"}, {"name": "a", "sideEffects": "None"}]})),
            ),
        ]
    }

    #[test]
    fn strategic_merge_matches_kustomize() {
        for (name, resource, patch, expected) in cases() {
            let got = merge_resource(&obj(resource), &obj(patch)).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(got.map(Value::Object), expected, "{name}");
        }
    }

    #[test]
    fn unknown_directive_and_kind_mismatch_are_errors() {
        let resource = obj(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1"}}));
        let bad_directive = obj(json!({"metadata": {"name": "c"}, "data": {"$patch": "frobnicate"}}));
        let err = merge_resource(&resource, &bad_directive).expect_err("unknown directive");
        assert!(err.message.contains("unknown patch strategy 'frobnicate'"), "{err}");
        assert_eq!(err.path, "data");
        let mismatch = obj(json!({"metadata": {"name": "c"}, "data": ["x"]}));
        let err = merge_resource(&resource, &mismatch).expect_err("kind mismatch");
        assert!(err.message.contains("wrong node kind"), "{err}");
    }
}
