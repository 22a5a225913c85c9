//! YAML in and out, the way kubectl reads it and kustomize writes it.
//!
//! Reading: multi-document YAML into `serde_json::Value` (field order kept), in the two dialects
//! `kubectl kustomize` uses. Objects (resources, patches) are read by kyaml (go-yaml v3): `0755`
//! is octal (493), only `true`/`false` are booleans, so `on`/`yes` stay strings. Kustomization
//! and transformer-config files are read by sigs.k8s.io/yaml (go-yaml v2, YAML 1.1): there
//! `yes`/`no`/`on`/`off` are booleans too. Limits are raised because rendered Kubeflow trees
//! hold documents with tens of thousands of nodes.
//!
//! Writing: block style like kustomize's kyaml: 2-space indent, sequences not indented under their
//! key, strings quoted where a YAML 1.1 reader would take them for a bool/number/null, multi-line
//! strings as literal blocks, documents separated by `---`.

use std::path::Path;
use std::sync::LazyLock;

use serde_json::{Map, Value};

use crate::error::{RenderError, Result};
use crate::resource::NodePath;

/// Which YAML reader kustomize uses for a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// kyaml / go-yaml v3: objects, patches. Legacy octal, YAML 1.2 booleans.
    Objects,
    /// sigs.k8s.io/yaml / go-yaml v2: kustomization and config files. YAML 1.1 booleans.
    Yaml11,
}

pub(crate) fn read_options(dialect: Dialect) -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_events = usize::MAX / 2;
    budget.max_aliases = 1 << 20;
    budget.max_anchors = 1 << 20;
    budget.max_reader_input_bytes = None;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options.legacy_octal_numbers = true;
    options.strict_booleans = dialect == Dialect::Objects;
    options.with_snippet = false;
    options.emit_comments = false;
    options
}

fn yaml_error(file: &Path, err: serde_saphyr::Error) -> RenderError {
    let (line, column) = err.location().map(|l| (l.line(), l.column())).unwrap_or((0, 0));
    RenderError::Yaml { file: file.to_path_buf(), line, column, message: err.to_string() }
}

/// Parse every document of an object file `text` (read from `file`, named in errors). Empty
/// documents are skipped, as kustomize skips them.
pub fn parse_documents(text: &str, file: &Path) -> Result<Vec<Value>> {
    parse_documents_as(text, file, Dialect::Objects)
}

/// Parse every document of `text` with the given reader dialect.
pub fn parse_documents_as(text: &str, file: &Path, dialect: Dialect) -> Result<Vec<Value>> {
    Ok(parse_marked(text, file, dialect)?.into_iter().map(|doc| doc.value).collect())
}

/// An object document as read, with where it has bare keys ([`Resource::bare_keys`]).
///
/// [`Resource::bare_keys`]: crate::resource::Resource::bare_keys
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectDocument {
    /// The document.
    pub value: Value,
    /// Paths of its mapping keys written with no value.
    pub bare_keys: Vec<NodePath>,
}

/// [`parse_documents`] keeping where each document has bare keys. Only the fast reader tells
/// them apart; a text it declines reads as if every null were written out.
pub fn parse_object_documents(text: &str, file: &Path) -> Result<Vec<ObjectDocument>> {
    parse_marked(text, file, Dialect::Objects)
}

fn parse_marked(text: &str, file: &Path, dialect: Dialect) -> Result<Vec<ObjectDocument>> {
    let mut docs: Vec<ObjectDocument> = match crate::yaml_events::parse_documents_marked(text, dialect) {
        Some(docs) => docs
            .into_iter()
            .filter(|(d, _)| !d.is_null())
            .map(|(value, bare_keys)| ObjectDocument { value, bare_keys })
            .collect(),
        None => serde_saphyr::from_multiple_with_options::<Value>(text, read_options(dialect))
            .map(|docs| {
                docs.into_iter().filter(|d| !d.is_null()).map(|value| ObjectDocument { value, bare_keys: Vec::new() }).collect()
            })
            .map_err(|e| yaml_error(file, e))?,
    };
    if let Some(last) = docs.last_mut() {
        unclip_final_block_scalar(text, &mut last.value);
    }
    Ok(docs)
}

/// A block scalar (`|`, `>`) on the last line of a file without a final line break has no
/// trailing newline in YAML (and in kustomize's reader); the parser adds one. The file's last
/// node in document order is that scalar, so drop the newline there when its last line is the
/// file's last line.
fn unclip_final_block_scalar(text: &str, doc: &mut Value) {
    if text.is_empty() || text.ends_with('\n') {
        return;
    }
    let last_line = text.rsplit('\n').next().unwrap_or("").trim();
    if last_line.is_empty() {
        return;
    }
    let mut node = doc;
    loop {
        node = match node {
            Value::Object(map) => match map.values_mut().next_back() {
                Some(child) => child,
                None => return,
            },
            Value::Array(items) => match items.last_mut() {
                Some(child) => child,
                None => return,
            },
            Value::String(s) => {
                let body = match s.strip_suffix('\n') {
                    Some(body) => body,
                    None => return,
                };
                if body.rsplit('\n').next().unwrap_or("").trim() == last_line {
                    s.pop();
                }
                return;
            }
            _ => return,
        };
    }
}

/// Parse a single-document YAML 1.1 file (a kustomization, a transformer config) as
/// sigs.k8s.io/yaml does; an empty file is an empty mapping.
pub fn parse_document(text: &str, file: &Path) -> Result<Value> {
    let mut docs = parse_documents_as(text, file, Dialect::Yaml11)?;
    match docs.len() {
        0 => Ok(Value::Object(Map::new())),
        1 => Ok(docs.remove(0)),
        n => Err(RenderError::Yaml {
            file: file.to_path_buf(),
            line: 0,
            column: 0,
            message: format!("expected one YAML document, found {n}"),
        }),
    }
}

/// Write documents as kustomize does: each a block-style document, `---` between them.
pub fn write_documents<'a>(docs: impl IntoIterator<Item = &'a Map<String, Value>>) -> String {
    let mut out = String::with_capacity(64 * 1024);
    for (i, doc) in docs.into_iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        write_document(&mut out, doc);
    }
    out
}

/// Append one block-style document (no separator).
pub fn write_document(out: &mut String, doc: &Map<String, Value>) {
    if doc.is_empty() {
        out.push_str("{}\n");
    } else {
        write_mapping(out, doc, 0, false);
    }
}

/// Serialize any value as a block-style YAML document.
pub fn to_string(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(m) => write_document(&mut out, m),
        Value::Array(a) if !a.is_empty() => write_sequence(&mut out, a, 0, false),
        other => {
            write_scalar(&mut out, other, 0);
            out.push('\n');
        }
    }
    out
}

fn indent(out: &mut String, n: usize) {
    out.extend(std::iter::repeat_n(' ', n));
}

/// `first_inline`: the first entry continues the current line (after `- `).
fn write_mapping(out: &mut String, map: &Map<String, Value>, ind: usize, first_inline: bool) {
    for (i, (key, value)) in map.iter().enumerate() {
        if i > 0 || !first_inline {
            indent(out, ind);
        }
        write_string(out, key, ind, true);
        out.push(':');
        match value {
            Value::Object(m) if !m.is_empty() => {
                out.push('\n');
                write_mapping(out, m, ind + 2, false);
            }
            Value::Array(a) if !a.is_empty() => {
                out.push('\n');
                write_sequence(out, a, ind, false);
            }
            scalar => {
                out.push(' ');
                write_scalar(out, scalar, ind + 2);
                out.push('\n');
            }
        }
    }
}

fn write_sequence(out: &mut String, seq: &[Value], ind: usize, first_inline: bool) {
    for (i, item) in seq.iter().enumerate() {
        if i > 0 || !first_inline {
            indent(out, ind);
        }
        out.push('-');
        match item {
            Value::Object(m) if !m.is_empty() => {
                out.push(' ');
                write_mapping(out, m, ind + 2, true);
            }
            Value::Array(a) if !a.is_empty() => {
                out.push(' ');
                write_sequence(out, a, ind + 2, true);
            }
            scalar => {
                out.push(' ');
                write_scalar(out, scalar, ind + 2);
                out.push('\n');
            }
        }
    }
}

/// A scalar or empty collection; `block_ind` is the indentation of a literal block's content.
fn write_scalar(out: &mut String, value: &Value, block_ind: usize) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => write_number(out, n),
        Value::String(s) => write_string(out, s, block_ind, false),
        Value::Array(_) => out.push_str("[]"),
        Value::Object(_) => out.push_str("{}"),
    }
}

fn write_number(out: &mut String, n: &serde_json::Number) {
    if let Some(f) = n.as_f64().filter(|_| n.is_f64()) {
        let text = f.to_string();
        // A YAML 1.1 reader only takes a float when it has a dot; keep it a float.
        if text.contains(['.', 'e', 'E']) || !f.is_finite() {
            out.push_str(&text);
        } else {
            out.push_str(&text);
            out.push_str(".0");
        }
    } else {
        out.push_str(&n.to_string());
    }
}

fn write_string(out: &mut String, s: &str, block_ind: usize, is_key: bool) {
    if !is_key && s.contains('\n') && literal_block_ok(s) {
        write_literal(out, s, block_ind);
    } else if plain_ok(s) {
        out.push_str(s);
    } else if s.chars().all(|c| c == '\t' || !c.is_control()) && !s.contains('\u{feff}') {
        out.push('\'');
        out.push_str(&s.replace('\'', "''"));
        out.push('\'');
    } else {
        write_double_quoted(out, s);
    }
}

fn write_double_quoted(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\0' => out.push_str("\\0"),
            c if c.is_control() || c == '\u{feff}' => {
                let code = c as u32;
                if code <= 0xff {
                    out.push_str(&format!("\\x{code:02x}"));
                } else {
                    out.push_str(&format!("\\u{code:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A literal block keeps the text exactly when it has no characters that need escaping and its
/// leading empty lines hold no spaces (they would confuse indentation detection).
fn literal_block_ok(s: &str) -> bool {
    if s.chars().any(|c| (c.is_control() && c != '\n' && c != '\t') || c == '\u{feff}') {
        return false;
    }
    for line in s.split('\n') {
        if line.is_empty() {
            continue;
        }
        // The first non-empty line sets the indentation; whitespace-only lines before it break it.
        return !line.trim_start_matches([' ', '\t']).is_empty() || !line.contains(' ');
    }
    true
}

fn write_literal(out: &mut String, s: &str, ind: usize) {
    out.push('|');
    let first_content = s.split('\n').find(|l| !l.is_empty()).unwrap_or("");
    if first_content.starts_with([' ', '\t']) {
        out.push('2');
    }
    let body = s.trim_end_matches('\n');
    let trailing = s.len() - body.len();
    match trailing {
        0 => out.push('-'),
        1 => {}
        _ => out.push('+'),
    }
    // Lines of `body`, then the kept trailing empty lines for `|+` (the last newline closes a line).
    for line in body.split('\n') {
        out.push('\n');
        if !line.is_empty() {
            indent(out, ind);
            out.push_str(line);
        }
    }
    for _ in 1..trailing {
        out.push('\n');
    }
}

static YAML11_NON_STRING: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(concat!(
        r"^(?:",
        // bool (YAML 1.1)
        r"y|Y|yes|Yes|YES|n|N|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF",
        // null
        r"|~|null|Null|NULL",
        // int (1.1: binary, octal, decimal, hex, base 60; 1.2: 0o octal)
        r"|[-+]?0b[01_]+|[-+]?0o?[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+",
        r"|[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+",
        // float (1.1 and 1.2 forms, including exponent without dot)
        r"|[-+]?(?:[0-9][0-9_]*)?\.[0-9_]*(?:[eE][-+]?[0-9]+)?|[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+",
        r"|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)",
        // timestamp
        r"|[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}(?:(?:[Tt]|[ \t]+)[0-9]{1,2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]*)?(?:[ \t]*(?:Z|[-+][0-9]{1,2}(?::[0-9]{2})?))?)?",
        // merge key and value key
        r"|<<|=",
        r")$"
    ))
    .expect("static regex")
});

/// Whether `text` can be written as a plain scalar at all, whatever type it then reads as (the
/// syntax checks of [`plain_ok`] without its YAML 1.1 type check).
pub(crate) fn can_be_plain(text: &str) -> bool {
    plain_syntax_ok(text)
}

/// Whether `s` can be written as a plain scalar and read back as the same string by a YAML 1.1
/// or 1.2 reader.
fn plain_ok(s: &str) -> bool {
    if !plain_syntax_ok(s) {
        return false;
    }
    let first = s.chars().next().unwrap_or(' ');
    // Flow indicators are fine in block context, but a YAML 1.1 reader is stricter about some;
    // keep them plain only when no `, ` style ambiguity exists. Every form the pattern matches
    // starts with one of these characters, and its words are at most five letters long.
    let may_match = match first {
        'y' | 'Y' | 'n' | 'N' | 't' | 'T' | 'f' | 'F' | 'o' | 'O' => s.len() <= 5,
        '~' | '<' | '=' | '+' | '-' | '.' | '0'..='9' => true,
        _ => false,
    };
    !(may_match && YAML11_NON_STRING.is_match(s))
}

/// The syntax part of [`plain_ok`]: no indicator, comment, document marker or control character
/// that would make a plain scalar read as something else.
fn plain_syntax_ok(s: &str) -> bool {
    let Some(first) = s.chars().next() else { return false };
    let last = s.chars().last().unwrap_or(first);
    if first.is_whitespace() || last.is_whitespace() {
        return false;
    }
    if matches!(first, '[' | ']' | '{' | '}' | ',' | '#' | '&' | '*' | '!' | '|' | '>' | '\'' | '"' | '%' | '@' | '`') {
        return false;
    }
    if matches!(first, '-' | '?' | ':') {
        let second = s[1..].chars().next();
        if second.is_none_or(|c| c.is_whitespace()) {
            return false;
        }
    }
    if s.starts_with("---") || s.starts_with("...") {
        return false;
    }
    if s.ends_with(':') || s.contains(": ") || s.contains(" #") || s.contains(":\t") || s.contains("\t#") {
        return false;
    }
    if s.chars().any(|c| c.is_control() || c == '\u{feff}' || c == '\u{85}' || c == '\u{2028}' || c == '\u{2029}') {
        return false;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(text: &str) -> Vec<Value> {
        parse_documents(text, Path::new("test.yaml")).unwrap()
    }

    #[test]
    fn reads_like_kubectl() {
        let docs = parse("a: 0755\nb: yes\nc: off\nd: \"0755\"\ne: 1.5\ng: True\n---\n---\nf: ~\n");
        assert_eq!(
            docs,
            vec![json!({"a": 493, "b": "yes", "c": "off", "d": "0755", "e": 1.5, "g": true}), json!({"f": null})]
        );
        let k = parse_document("a: yes\nb: off\n", Path::new("kustomization.yaml")).unwrap();
        assert_eq!(k, json!({"a": true, "b": false}));
    }

    #[test]
    fn error_names_file_and_line() {
        let err = parse_documents("a: 1\nb: [\n", Path::new("x/y.yaml")).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("x/y.yaml:"), "{text}");
        match err {
            RenderError::Yaml { line, .. } => assert!(line >= 2, "line {line}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn writes_kustomize_block_style() {
        let doc = json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "x", "labels": {"a": "yes", "b": "0755", "c": "1e3", "d": "~", "e": ""}},
            "data": {"script": "line1\nline2\n", "nonl": "a\nb", "n": 5, "f": 1.0},
            "list": [{"name": "a", "ports": [{"containerPort": 80}]}, "s", ["x", "y"], {}],
            "empty": [],
        });
        let text = to_string(&doc);
        let expected = "\
apiVersion: v1
kind: ConfigMap
metadata:
  name: x
  labels:
    a: 'yes'
    b: '0755'
    c: '1e3'
    d: '~'
    e: ''
data:
  script: |
    line1
    line2
  nonl: |-
    a
    b
  'n': 5
  f: 1.0
list:
- name: a
  ports:
  - containerPort: 80
- s
- - x
  - 'y'
- {}
empty: []
";
        assert_eq!(text, expected);
        assert_eq!(parse(&text), vec![doc]);
    }

    #[test]
    fn round_trips_awkward_strings() {
        for s in [
            "yes", "No", "on", "0755", "0x1F", "1_000", "1:30", ".5", "1e3", "+1", "-", "- a", "a: b",
            "a #b", "#c", "*", "&a", "!tag", "'q'", "\"d\"", "trail ", " lead", "tab\tin", "ctl\u{1}",
            "2001-12-14", "<<", "=", "null", "", "---", "multi\n\n  indented\n", "  first\nsecond",
            "\n\nlead newlines", "keep\n\n\n", "crlf\r\nline", "x:", "ünï", "[a]", "{b}", "%x", "@y", "`z",
        ] {
            let doc = json!({ s: s, "list": [s] });
            let text = to_string(&doc);
            assert_eq!(parse(&text), vec![doc], "for {s:?}:\n{text}");
        }
    }

    #[test]
    fn block_scalar_at_end_of_file_without_newline_has_no_trailing_newline() {
        // kubeflow's argo webhook secret ends like this; kubectl keeps no final "\n".
        let docs = parse_documents("stringData:\n  a: |\n    x: 1\n  b: |\n    type: gitlab\n    secret: \"shh!\"", Path::new("f.yaml")).unwrap();
        assert_eq!(docs[0]["stringData"]["a"], "x: 1\n");
        assert_eq!(docs[0]["stringData"]["b"], "type: gitlab\nsecret: \"shh!\"");
        let docs = parse_documents("a: |\n  x\n", Path::new("f.yaml")).unwrap();
        assert_eq!(docs[0]["a"], "x\n");
    }
}
