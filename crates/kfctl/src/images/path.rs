//! Field paths as the catalogs' image rules write them: `spec.template.spec.containers[*].args`,
//! `env[name=V2_DRIVER_IMAGE].value`, `data[katib-config.yaml]` (a key with dots, in brackets).

use serde_json::Value;

/// One step of a [`FieldPath`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A map key (or, on a list, an index).
    Key(String),
    /// Every element of a list.
    All,
    /// The elements of a list whose `key` is the string `value` (`[name=manager]`).
    Select { key: String, value: String },
}

/// A parsed field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPath(pub Vec<Step>);

/// A value a path reached: its JSON pointer (for editing), its readable field (for people), and
/// the value.
#[derive(Debug, Clone)]
pub struct Reached<'a> {
    pub pointer: String,
    pub field: String,
    pub value: &'a Value,
}

impl FieldPath {
    /// Parse `text`; the error says what is wrong with it.
    pub fn parse(text: &str) -> Result<FieldPath, String> {
        let mut steps = Vec::new();
        let mut rest = text;
        if rest.is_empty() {
            return Err("is empty".into());
        }
        while !rest.is_empty() {
            if let Some(inner) = rest.strip_prefix('[') {
                let end = inner
                    .find(']')
                    .ok_or_else(|| format!("{text:?}: '[' without ']'"))?;
                let body = &inner[..end];
                steps.push(match body.split_once('=') {
                    _ if body == "*" => Step::All,
                    Some((key, value)) if !key.is_empty() => Step::Select {
                        key: key.into(),
                        value: value.into(),
                    },
                    _ if !body.is_empty() => Step::Key(body.into()),
                    _ => return Err(format!("{text:?}: empty []")),
                });
                rest = &inner[end + 1..];
                rest = rest.strip_prefix('.').unwrap_or(rest);
            } else {
                let end = rest.find(['.', '[']).unwrap_or(rest.len());
                if end == 0 {
                    return Err(format!("{text:?}: empty key"));
                }
                steps.push(Step::Key(rest[..end].into()));
                rest = &rest[end..];
                if let Some(after) = rest.strip_prefix('.') {
                    if after.is_empty() {
                        return Err(format!("{text:?}: ends with '.'"));
                    }
                    rest = after;
                }
            }
        }
        Ok(FieldPath(steps))
    }

    /// Every value the path reaches in `root`; `pointer` and `field` start from the given prefixes.
    pub fn reach<'a>(&self, root: &'a Value, pointer: &str, field: &str) -> Vec<Reached<'a>> {
        let mut out = Vec::new();
        walk(
            &self.0,
            root,
            pointer.to_owned(),
            field.to_owned(),
            &mut out,
        );
        out
    }
}

/// `a.b` (a key with a dot or bracket goes in brackets).
pub fn join_field(field: &str, key: &str) -> String {
    let key = if key.contains(['.', '[', ']']) {
        format!("[{key}]")
    } else {
        key.to_owned()
    };
    match (field.is_empty(), key.starts_with('[')) {
        (true, _) => key,
        (false, true) => format!("{field}{key}"),
        (false, false) => format!("{field}.{key}"),
    }
}

/// A JSON pointer's token for `key`.
pub fn pointer_token(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// `[name=X]` for a list element with a name, `[i]` otherwise.
pub fn element_field(field: &str, index: usize, element: &Value) -> String {
    match element.get("name").and_then(Value::as_str) {
        Some(name) => format!("{field}[name={name}]"),
        None => format!("{field}[{index}]"),
    }
}

fn walk<'a>(
    steps: &[Step],
    value: &'a Value,
    pointer: String,
    field: String,
    out: &mut Vec<Reached<'a>>,
) {
    let Some((step, rest)) = steps.split_first() else {
        out.push(Reached {
            pointer,
            field,
            value,
        });
        return;
    };
    match (step, value) {
        (Step::Key(key), Value::Object(map)) => {
            if let Some(next) = map.get(key) {
                walk(
                    rest,
                    next,
                    format!("{pointer}/{}", pointer_token(key)),
                    join_field(&field, key),
                    out,
                );
            }
        }
        (Step::Key(key), Value::Array(items)) => {
            if let Some(next) = key.parse::<usize>().ok().and_then(|i| items.get(i)) {
                walk(
                    rest,
                    next,
                    format!("{pointer}/{key}"),
                    format!("{field}[{key}]"),
                    out,
                );
            }
        }
        (Step::All, Value::Object(map)) => {
            for (key, item) in map {
                walk(
                    rest,
                    item,
                    format!("{pointer}/{}", pointer_token(key)),
                    join_field(&field, key),
                    out,
                );
            }
        }
        (Step::All, Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                walk(
                    rest,
                    item,
                    format!("{pointer}/{i}"),
                    element_field(&field, i, item),
                    out,
                );
            }
        }
        (Step::Select { key, value: wanted }, Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                if item.get(key).and_then(Value::as_str) == Some(wanted.as_str()) {
                    walk(
                        rest,
                        item,
                        format!("{pointer}/{i}"),
                        format!("{field}[{key}={wanted}]"),
                        out,
                    );
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_parse_and_reach_what_they_name() {
        let path = FieldPath::parse("spec.containers[*].env[name=A].value").unwrap();
        let object = json!({"spec": {"containers": [
            {"name": "c", "env": [{"name": "A", "value": "x"}, {"name": "B", "value": "y"}]},
            {"name": "d", "env": [{"name": "A", "value": "z"}]},
        ]}});
        let reached: Vec<(String, String, &Value)> = path
            .reach(&object, "", "")
            .into_iter()
            .map(|r| (r.pointer, r.field, r.value))
            .collect();
        assert_eq!(
            reached,
            vec![
                (
                    "/spec/containers/0/env/0/value".into(),
                    "spec.containers[name=c].env[name=A].value".into(),
                    &json!("x")
                ),
                (
                    "/spec/containers/1/env/0/value".into(),
                    "spec.containers[name=d].env[name=A].value".into(),
                    &json!("z")
                ),
            ]
        );
        let keyed = FieldPath::parse("data[katib-config.yaml]").unwrap();
        assert_eq!(
            keyed.0,
            vec![
                Step::Key("data".into()),
                Step::Key("katib-config.yaml".into())
            ]
        );
        let object = json!({"data": {"katib-config.yaml": "t"}});
        let got = keyed.reach(&object, "", "");
        assert_eq!(
            (got[0].pointer.as_str(), got[0].field.as_str()),
            ("/data/katib-config.yaml", "data[katib-config.yaml]")
        );
        for bad in ["", "a.", "a[", "a[]", ".a"] {
            assert!(FieldPath::parse(bad).is_err(), "{bad:?}");
        }
    }
}
