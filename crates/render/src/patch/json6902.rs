//! JSON patch (RFC 6902) over resources, as kustomize applies it (evanphx/json-patch semantics):
//! add/remove/replace/move/copy/test, RFC 6901 pointers with `~0`/`~1`, `-` to append, array
//! indexes to insert at (negative indexes count from the end, as evanphx allows).

use serde_json::{Map, Value};

/// One decoded operation.
#[derive(Debug, Clone, PartialEq)]
pub struct Operation {
    /// `add`, `remove`, `replace`, `move`, `copy` or `test`.
    pub op: String,
    /// Target pointer.
    pub path: String,
    /// Source pointer of `move`/`copy`.
    pub from: Option<String>,
    /// Value of `add`/`replace`/`test`; JSON null when the operation has none.
    pub value: Value,
}

/// Why a JSON patch could not be decoded or applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonPatchError {
    /// The patch text is not a list of operations.
    #[error("not a JSON 6902 patch: {0}")]
    Decode(String),
    /// Operation number `index` (0-based) failed on `path`.
    #[error("operation {index} ({op} {path}): {message}")]
    Apply { index: usize, op: String, path: String, message: String },
}

/// Decode a patch given as a list of operations (already parsed from JSON or YAML).
pub fn decode(ops: &Value) -> Result<Vec<Operation>, JsonPatchError> {
    let Value::Array(items) = ops else {
        return Err(JsonPatchError::Decode("expected a list of operations".into()));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let Value::Object(m) = item else {
                return Err(JsonPatchError::Decode(format!("operation {i} is not a map")));
            };
            let text = |k: &str| m.get(k).and_then(Value::as_str).map(str::to_string);
            Ok(Operation {
                op: text("op").unwrap_or_default(),
                path: text("path").unwrap_or_default(),
                from: text("from"),
                value: m.get("value").cloned().unwrap_or(Value::Null),
            })
        })
        .collect()
}

/// Apply the operations in order to `doc`. On error `doc` may be partly patched; callers patch a
/// copy.
pub fn apply(doc: &mut Value, ops: &[Operation]) -> Result<(), JsonPatchError> {
    for (index, op) in ops.iter().enumerate() {
        let fail = |message: String| JsonPatchError::Apply {
            index,
            op: op.op.clone(),
            path: op.path.clone(),
            message,
        };
        match op.op.as_str() {
            "add" => add(doc, &op.path, op.value.clone()).map_err(fail)?,
            "remove" => {
                remove(doc, &op.path).map_err(fail)?;
            }
            "replace" => replace(doc, &op.path, op.value.clone()).map_err(fail)?,
            "move" => {
                let from = op.from.as_deref().ok_or_else(|| fail("missing `from`".into()))?;
                let value = remove(doc, from).map_err(fail)?;
                add(doc, &op.path, value).map_err(fail)?;
            }
            "copy" => {
                let from = op.from.as_deref().ok_or_else(|| fail("missing `from`".into()))?;
                let value = get(doc, from).map_err(fail)?.clone();
                add(doc, &op.path, value).map_err(fail)?;
            }
            "test" => {
                let actual = get(doc, &op.path).map_err(fail)?;
                if !json_equal(actual, &op.value) {
                    return Err(fail(format!(
                        "testing value {} failed: found {}",
                        serde_json::to_string(&op.value).unwrap_or_default(),
                        serde_json::to_string(actual).unwrap_or_default()
                    )));
                }
            }
            other => return Err(fail(format!("unexpected kind: {other:?}"))),
        }
    }
    Ok(())
}

/// Split an RFC 6901 pointer into unescaped tokens.
fn tokens(pointer: &str) -> Result<Vec<String>, String> {
    if pointer.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = pointer.strip_prefix('/') else {
        return Err(format!("JSON pointer {pointer:?} must start with '/'"));
    };
    Ok(rest.split('/').map(|t| t.replace("~1", "/").replace("~0", "~")).collect())
}

/// The container holding the last token, and that token.
fn parent<'a>(doc: &'a mut Value, pointer: &str) -> Result<(&'a mut Value, String), String> {
    let mut toks = tokens(pointer)?;
    let Some(last) = toks.pop() else {
        return Err("the whole document cannot be the target".into());
    };
    let mut node = doc;
    for t in &toks {
        node = match node {
            Value::Object(m) => m.get_mut(t).ok_or_else(|| format!("doc is missing path: {pointer:?}"))?,
            Value::Array(a) => {
                let i = array_index(t, a.len(), false)?;
                a.get_mut(i).ok_or_else(|| format!("doc is missing path: {pointer:?}"))?
            }
            _ => return Err(format!("doc is missing path: {pointer:?}")),
        };
    }
    Ok((node, last))
}

/// An array index token; `allow_end` accepts `len` (insert at the end). Negative indexes count
/// from the end like evanphx/json-patch.
fn array_index(token: &str, len: usize, allow_end: bool) -> Result<usize, String> {
    let idx: i64 = token.parse().map_err(|_| format!("invalid array index {token:?}"))?;
    let len_i = len as i64;
    let idx = if idx < 0 { idx + len_i } else { idx };
    let max = if allow_end { len_i } else { len_i - 1 };
    if idx < 0 || idx > max {
        return Err(format!("unable to access invalid index: {token}"));
    }
    Ok(idx as usize)
}

/// The value at `pointer`. A missing last key of a map reads as null, not as an error: kustomize
/// v5.5's evanphx/json-patch (v4 semantics) gets a map key without checking that it exists, so
/// `replace`, `test` and `copy` go on with nothing there.
fn get<'a>(doc: &'a Value, pointer: &str) -> Result<&'a Value, String> {
    const NULL: &Value = &Value::Null;
    let toks = tokens(pointer)?;
    let mut node = doc;
    for (i, t) in toks.iter().enumerate() {
        node = match node {
            Value::Object(m) => match m.get(t) {
                Some(v) => v,
                None if i + 1 == toks.len() => NULL,
                None => return Err(format!("doc is missing path: {pointer:?}")),
            },
            Value::Array(a) => {
                let i = array_index(t, a.len(), false)?;
                &a[i]
            }
            _ => return Err(format!("doc is missing path: {pointer:?}")),
        };
    }
    Ok(node)
}

fn add(doc: &mut Value, pointer: &str, value: Value) -> Result<(), String> {
    if pointer.is_empty() {
        *doc = value;
        return Ok(());
    }
    let (container, last) = parent(doc, pointer)?;
    match container {
        Value::Object(m) => {
            m.insert(last, value);
            Ok(())
        }
        Value::Array(a) => {
            let i = if last == "-" { a.len() } else { array_index(&last, a.len(), true)? };
            a.insert(i, value);
            Ok(())
        }
        _ => Err(format!("add operation does not apply: doc is missing path: {pointer:?}")),
    }
}

fn remove(doc: &mut Value, pointer: &str) -> Result<Value, String> {
    let (container, last) = parent(doc, pointer)?;
    match container {
        Value::Object(m) => {
            m.shift_remove(&last).ok_or_else(|| format!("unable to remove nonexistent key: {last}"))
        }
        Value::Array(a) => {
            let i = array_index(&last, a.len(), false)?;
            Ok(a.remove(i))
        }
        _ => Err(format!("remove operation does not apply: doc is missing path: {pointer:?}")),
    }
}

fn replace(doc: &mut Value, pointer: &str, value: Value) -> Result<(), String> {
    if pointer.is_empty() {
        *doc = value;
        return Ok(());
    }
    let (container, last) = parent(doc, pointer)?;
    match container {
        // A missing key is set, as [`get`] explains; the parent must exist.
        Value::Object(m) => {
            m.insert(last, value);
            Ok(())
        }
        Value::Array(a) => {
            let i = array_index(&last, a.len(), false)?;
            a[i] = value;
            Ok(())
        }
        _ => Err(format!("replace operation does not apply: doc is missing path: {pointer}")),
    }
}

/// Equality of JSON values as evanphx's `test` sees it: numbers compare by value.
fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_equal(p, q)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| json_equal(v, w)))
        }
        _ => a == b,
    }
}

/// Apply `ops` to a resource map, returning the patched map. The result must still be a map.
///
/// kustomize runs the patch on the object's JSON form and reads the result back, so numbers come
/// out as Go's `float64` would print them: a float with an integral value becomes an integer.
pub fn apply_to_object(object: &Map<String, Value>, ops: &[Operation]) -> Result<Map<String, Value>, JsonPatchError> {
    let mut doc = Value::Object(object.clone());
    apply(&mut doc, ops)?;
    normalize_numbers(&mut doc);
    match doc {
        Value::Object(m) => Ok(m),
        other => Err(JsonPatchError::Apply {
            index: ops.len().saturating_sub(1),
            op: "result".into(),
            path: String::new(),
            message: format!("patched document is not a map: {other}"),
        }),
    }
}

/// Integral floats that fit an integer exactly become integers (the JSON round trip's effect).
fn normalize_numbers(v: &mut Value) {
    match v {
        Value::Number(n) if n.is_f64() => {
            if let Some(f) = n.as_f64()
                && f.fract() == 0.0
                && f.abs() < 9.007_199_254_740_992e15
            {
                *v = Value::from(f as i64);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(normalize_numbers),
        Value::Object(m) => m.values_mut().for_each(normalize_numbers),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// name, document, operations, expected document (or the error's start).
    fn cases() -> Vec<(&'static str, Value, Value, Result<Value, &'static str>)> {
        vec![
            ("add to map", json!({"a": 1}), json!([{"op": "add", "path": "/b", "value": 2}]), Ok(json!({"a": 1, "b": 2}))),
            ("add replaces existing key", json!({"a": 1}), json!([{"op": "add", "path": "/a", "value": 3}]), Ok(json!({"a": 3}))),
            (
                "add inserts at index and appends with -",
                json!({"l": [1, 2]}),
                json!([{"op": "add", "path": "/l/0", "value": 0}, {"op": "add", "path": "/l/-", "value": 3}, {"op": "add", "path": "/l/4", "value": 4}]),
                Ok(json!({"l": [0, 1, 2, 3, 4]})),
            ),
            (
                "escaped pointer tokens",
                json!({"metadata": {"annotations": {"a/b": "x", "c~d": "y"}}}),
                json!([{"op": "replace", "path": "/metadata/annotations/a~1b", "value": "z"}, {"op": "remove", "path": "/metadata/annotations/c~0d"}]),
                Ok(json!({"metadata": {"annotations": {"a/b": "z"}}})),
            ),
            ("remove array element", json!({"l": ["a", "b", "c"]}), json!([{"op": "remove", "path": "/l/1"}]), Ok(json!({"l": ["a", "c"]}))),
            (
                "move and copy",
                json!({"a": {"x": 1}, "b": {}}),
                json!([{"op": "copy", "from": "/a/x", "path": "/b/y"}, {"op": "move", "from": "/a", "path": "/c"}]),
                Ok(json!({"b": {"y": 1}, "c": {"x": 1}})),
            ),
            ("test passes", json!({"a": [1]}), json!([{"op": "test", "path": "/a/0", "value": 1.0}]), Ok(json!({"a": [1]}))),
            ("test fails", json!({"a": "x"}), json!([{"op": "test", "path": "/a", "value": "y"}]), Err("operation 0 (test /a): testing value")),
            ("replace missing map key sets it", json!({"a": 1}), json!([{"op": "replace", "path": "/b", "value": 2}]), Ok(json!({"a": 1, "b": 2}))),
            ("replace under missing parent fails", json!({"a": 1}), json!([{"op": "replace", "path": "/x/b", "value": 2}]), Err("operation 0 (replace /x/b): doc is missing path")),
            ("replace past the end of a list fails", json!({"l": [1]}), json!([{"op": "replace", "path": "/l/1", "value": 2}]), Err("operation 0 (replace /l/1): unable to access invalid index")),
            ("test of a missing key against null passes", json!({"a": 1}), json!([{"op": "test", "path": "/b", "value": null}]), Ok(json!({"a": 1}))),
            ("test of a missing key against a value fails", json!({"a": 1}), json!([{"op": "test", "path": "/b", "value": 1}]), Err("operation 0 (test /b): testing value")),
            ("copy of a missing key copies null", json!({"a": 1}), json!([{"op": "copy", "from": "/b", "path": "/c"}]), Ok(json!({"a": 1, "c": null}))),
            ("move of a missing key fails", json!({"a": 1}), json!([{"op": "move", "from": "/b", "path": "/c"}]), Err("operation 0 (move /c): unable to remove nonexistent key")),
            ("remove missing key fails", json!({"a": 1}), json!([{"op": "add", "path": "/c", "value": 1}, {"op": "remove", "path": "/b"}]), Err("operation 1 (remove /b): unable to remove nonexistent key")),
            ("add under missing parent fails", json!({}), json!([{"op": "add", "path": "/x/y", "value": 1}]), Err("operation 0 (add /x/y): doc is missing path")),
            ("index past the end fails", json!({"l": [1]}), json!([{"op": "add", "path": "/l/3", "value": 1}]), Err("operation 0 (add /l/3): unable to access invalid index")),
            ("unknown op fails", json!({}), json!([{"op": "frob", "path": "/a"}]), Err("operation 0 (frob /a): unexpected kind")),
            ("remove does not take -", json!({"l": [1]}), json!([{"op": "remove", "path": "/l/-"}]), Err("operation 0 (remove /l/-): invalid array index")),
            ("negative index counts from the end", json!({"l": [1, 2, 3]}), json!([{"op": "remove", "path": "/l/-1"}]), Ok(json!({"l": [1, 2]}))),
        ]
    }

    #[test]
    fn json6902_operations() {
        for (name, mut doc, ops, expected) in cases() {
            let ops = decode(&ops).unwrap_or_else(|e| panic!("{name}: {e}"));
            let result = apply(&mut doc, &ops);
            match expected {
                Ok(want) => {
                    result.unwrap_or_else(|e| panic!("{name}: {e}"));
                    assert_eq!(doc, want, "{name}");
                }
                Err(prefix) => {
                    let err = result.expect_err(name).to_string();
                    assert!(err.starts_with(prefix), "{name}: {err}");
                }
            }
        }
    }

    #[test]
    fn integral_floats_come_back_as_integers() {
        let object = json!({"a": 1.0, "b": 0.5, "c": [2.0]}).as_object().cloned().expect("map");
        let ops = decode(&json!([{"op": "add", "path": "/d", "value": 3.0}])).expect("ops");
        let out = apply_to_object(&object, &ops).expect("applies");
        assert_eq!(Value::Object(out), json!({"a": 1, "b": 0.5, "c": [2], "d": 3}));
    }

    #[test]
    fn decode_rejects_a_map() {
        assert!(matches!(decode(&json!({"op": "add"})), Err(JsonPatchError::Decode(_))));
    }
}
