//! configMapGenerator / secretGenerator (kustomize's api/kv and internal/generators), and the
//! name-suffix hash of api/hasher.

use std::path::Path;

use base64::Engine as _;
use serde_json::{Map, Value};
use sha2::Digest as _;

use crate::error::{RenderError, Result};
use crate::kustomization::{GeneratorArgs, GeneratorOptions};
use crate::loader::Loader;
use crate::resource::{Generated, GeneratorBehavior, Origin, Resource};

/// Which generator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GeneratorKind {
    /// configMapGenerator.
    ConfigMap,
    /// secretGenerator.
    Secret,
}

/// kustomize's MergeGlobalOptionsIntoLocal: global labels/annotations override local ones, and a
/// global `true` wins for disableNameSuffixHash/immutable.
pub fn merge_options(local: Option<&GeneratorOptions>, global: Option<&GeneratorOptions>) -> GeneratorOptions {
    let mut merged = local.cloned().unwrap_or_default();
    if let Some(global) = global {
        for (src, dest) in [(&global.labels, &mut merged.labels), (&global.annotations, &mut merged.annotations)] {
            let dest = dest.get_or_insert_with(Default::default);
            for (k, v) in src.iter().flatten() {
                dest.insert(k.clone(), v.clone());
            }
        }
        if global.disable_name_suffix_hash == Some(true) {
            merged.disable_name_suffix_hash = Some(true);
        }
        if global.immutable == Some(true) {
            merged.immutable = Some(true);
        }
    }
    merged
}

/// Make the object for one generator entry.
pub fn generate(
    kind: GeneratorKind,
    args: &GeneratorArgs,
    global: Option<&GeneratorOptions>,
    loader: &Loader,
    kustomization_file: &Path,
    origin: &Origin,
) -> Result<Resource> {
    let name = args.name.clone().unwrap_or_default();
    let err = |message: String| RenderError::Generator {
        kustomization: kustomization_file.to_path_buf(),
        name: name.clone(),
        message,
    };
    let what = match kind {
        GeneratorKind::ConfigMap => "configmap",
        GeneratorKind::Secret => "secret",
    };
    if name.is_empty() {
        return Err(err(format!("a {what} must have a name")));
    }
    // kustomize's NewGenerationBehavior reads any other word (model-registry's `add`) as
    // unspecified, which then acts as create.
    let behavior = match args.behavior.as_deref().unwrap_or("") {
        "merge" => GeneratorBehavior::Merge,
        "replace" => GeneratorBehavior::Replace,
        _ => GeneratorBehavior::Create,
    };
    let options = merge_options(args.options.as_ref(), global);

    let pairs = load_pairs(args, loader, kustomization_file).map_err(&err)?;

    let mut object = Map::new();
    object.insert("apiVersion".into(), Value::String("v1".into()));
    object.insert("kind".into(), Value::String(if kind == GeneratorKind::ConfigMap { "ConfigMap" } else { "Secret" }.into()));
    let mut metadata = Map::new();
    metadata.insert("name".into(), Value::String(name.clone()));
    if let Some(ns) = args.namespace.as_deref().filter(|ns| !ns.is_empty()) {
        metadata.insert("namespace".into(), Value::String(ns.to_string()));
    }
    if let Some(labels) = options.labels.as_ref().filter(|l| !l.is_empty()) {
        metadata.insert("labels".into(), string_map(labels));
    }
    if let Some(annotations) = options.annotations.as_ref().filter(|a| !a.is_empty()) {
        metadata.insert("annotations".into(), string_map(annotations));
    }
    object.insert("metadata".into(), Value::Object(metadata));

    let mut data = Map::new();
    let mut binary = Map::new();
    for (key, value) in pairs {
        validate_key(&key).map_err(|m| err(format!("{what} {name}: {m}")))?;
        if data.contains_key(&key) || binary.contains_key(&key) {
            return Err(err(format!("{what} {name} illegally repeats the key `{key}`")));
        }
        match kind {
            GeneratorKind::ConfigMap => match String::from_utf8(value) {
                Ok(text) => {
                    data.insert(key, Value::String(text));
                }
                Err(e) => {
                    binary.insert(key, Value::String(encode_base64_lines(&e.into_bytes())));
                }
            },
            GeneratorKind::Secret => {
                data.insert(key, Value::String(encode_base64_lines(&value)));
            }
        }
    }
    if kind == GeneratorKind::Secret {
        let secret_type = args.secret_type.clone().filter(|t| !t.is_empty()).unwrap_or_else(|| "Opaque".into());
        object.insert("type".into(), Value::String(secret_type));
    }
    // kustomize creates a Secret's `data` map before filling it (a ConfigMap's only per entry),
    // so a Secret without entries has `data: {}`, and its name hash covers that map.
    if !data.is_empty() || kind == GeneratorKind::Secret {
        object.insert("data".into(), Value::Object(data));
    }
    if !binary.is_empty() {
        object.insert("binaryData".into(), Value::Object(binary));
    }
    if options.immutable == Some(true) {
        object.insert("immutable".into(), Value::Bool(true));
    }
    let mut res = Resource::new(object, origin.clone());
    res.generated = Some(Generated { behavior, append_hash: options.disable_name_suffix_hash != Some(true) });
    Ok(res)
}

/// kustomize's encodeBase64: standard base64 broken into 70-character lines, each followed by a
/// newline when there is more than one line.
fn encode_base64_lines(bytes: &[u8]) -> String {
    const LINE: usize = 70;
    let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
    let lines = encoded.len() / LINE + 1;
    if lines == 1 {
        return encoded;
    }
    let mut out = String::with_capacity(encoded.len() + lines);
    for chunk in encoded.as_bytes().chunks(LINE) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        out.push('\n');
    }
    out
}

fn string_map(m: &indexmap::IndexMap<String, String>) -> Value {
    Value::Object(m.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect())
}

/// Key/value pairs in kustomize's order: env files, then literals, then files.
fn load_pairs(args: &GeneratorArgs, loader: &Loader, kfile: &Path) -> std::result::Result<Vec<(String, Vec<u8>)>, String> {
    let mut pairs = Vec::new();
    for env in args.envs.iter().flatten() {
        let (_, bytes) = loader.read_file(env, kfile).map_err(|e| format!("env source files: {e}"))?;
        pairs.extend(env_pairs(&bytes).map_err(|e| format!("env source file {env}: {e}"))?);
    }
    for literal in args.literals.iter().flatten() {
        let (k, v) = parse_literal(literal)?;
        pairs.push((k, v.into_bytes()));
    }
    for source in args.files.iter().flatten() {
        let (key, path) = parse_file_source(source)?;
        let (_, bytes) = loader.read_file(&path, kfile).map_err(|e| format!("file sources: {e}"))?;
        pairs.push((key, bytes));
    }
    Ok(pairs)
}

/// `KEY=VALUE`, surrounding matching quotes removed from the value.
fn parse_literal(source: &str) -> std::result::Result<(String, String), String> {
    let invalid = || format!("invalid literal source {source}, expected key=value");
    let (key, value) = source.split_once('=').ok_or_else(invalid)?;
    if key.is_empty() {
        return Err(invalid());
    }
    let bytes = value.as_bytes();
    let value = if bytes.len() >= 2 && bytes[0] == bytes[bytes.len() - 1] && (bytes[0] == b'"' || bytes[0] == b'\'') {
        &value[1..value.len() - 1]
    } else {
        value
    };
    Ok((key.to_string(), value.to_string()))
}

/// `path` (key = file name) or `key=path`.
fn parse_file_source(source: &str) -> std::result::Result<(String, String), String> {
    match source.split_once('=') {
        None => {
            let key = Path::new(source).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            Ok((key, source.to_string()))
        }
        Some((key, path)) => {
            if key.is_empty() {
                return Err(format!("key name for file path {path} missing"));
            }
            if path.is_empty() {
                return Err(format!("file path for key name {key} missing"));
            }
            if path.contains('=') {
                return Err("key names or file paths cannot contain '='".to_string());
            }
            Ok((key.to_string(), path.to_string()))
        }
    }
}

/// An env file: `KEY=VALUE` lines, blank lines and `#` comments skipped, a UTF-8 BOM on the first
/// line dropped, leading whitespace trimmed; a line without `=` is the key with an empty value.
fn env_pairs(bytes: &[u8]) -> std::result::Result<Vec<(String, Vec<u8>)>, String> {
    let mut out = Vec::new();
    for (i, raw) in bytes.split(|b| *b == b'\n').enumerate() {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let Ok(mut line) = std::str::from_utf8(raw) else {
            return Err(format!("line {i} has invalid utf8 bytes"));
        };
        if i == 0 {
            line = line.strip_prefix('\u{feff}').unwrap_or(line);
        }
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = line.split_once('=').unwrap_or((line, ""));
        if !is_env_var_name(key) {
            return Err(format!(
                "\"{key}\" is not a valid key name: a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and must not start with a digit"
            ));
        }
        out.push((key.to_string(), value.as_bytes().to_vec()));
    }
    Ok(out)
}

fn is_env_var_name(key: &str) -> bool {
    !key.is_empty()
        && !key.starts_with(|c: char| c.is_ascii_digit())
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
}

/// ConfigMap/Secret keys: `[-._a-zA-Z0-9]+`, at most 253 characters, not `.` or `..`.
fn validate_key(key: &str) -> std::result::Result<(), String> {
    let ok = !key.is_empty()
        && key.len() <= 253
        && key != "."
        && key != ".."
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
    if ok { Ok(()) } else { Err(format!("\"{key}\" is not a valid key name for a ConfigMap or Secret")) }
}

/// kustomize's content hash for a ConfigMap or Secret (other kinds: the whole object).
pub fn content_hash(object: &Map<String, Value>) -> String {
    let kind = object.get("kind").and_then(Value::as_str).unwrap_or("");
    // kustomize looks the name up with kyaml's Lookup("metadata/name"), which searches for a
    // top-level field literally called "metadata/name": the name is always "" in the hash.
    let name = object.get("metadata/name").cloned().unwrap_or(Value::String(String::new()));
    let field = |k: &str| object.get(k).cloned().unwrap_or(Value::String(String::new()));
    let is_map = |k: &str| object.get(k).is_some_and(Value::is_object);
    // Go's json.Marshal of a map sorts keys; build the same document with sorted keys.
    let mut doc = std::collections::BTreeMap::new();
    match kind {
        "ConfigMap" => {
            doc.insert("kind", Value::String("ConfigMap".into()));
            doc.insert("name", name);
            doc.insert("data", field("data"));
            if is_map("binaryData") {
                doc.insert("binaryData", field("binaryData"));
            }
        }
        "Secret" => {
            doc.insert("kind", Value::String("Secret".into()));
            doc.insert("type", field("type"));
            doc.insert("name", name);
            doc.insert("data", field("data"));
            if is_map("stringData") {
                doc.insert("stringData", field("stringData"));
            }
        }
        _ => {
            let mut text = String::new();
            go_json(&mut text, &Value::Object(object.clone()), false);
            return encode_hash(&text);
        }
    }
    let mut text = String::from("{");
    for (i, (k, v)) in doc.iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        go_json_string(&mut text, k);
        text.push(':');
        go_json(&mut text, v, true);
    }
    text.push('}');
    encode_hash(&text)
}

fn encode_hash(text: &str) -> String {
    let hex = hex::encode(sha2::Sha256::digest(text.as_bytes()));
    hex[..10]
        .chars()
        .map(|c| match c {
            '0' => 'g',
            '1' => 'h',
            '3' => 'k',
            'a' => 'm',
            'e' => 't',
            c => c,
        })
        .collect()
}

/// Go's encoding/json output; `sort_keys` as for Go maps (struct-like objects keep order).
fn go_json(out: &mut String, v: &Value, sort_keys: bool) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => go_json_string(out, s),
        Value::Array(a) => {
            out.push('[');
            for (i, item) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                go_json(out, item, sort_keys);
            }
            out.push(']');
        }
        Value::Object(m) => {
            let mut entries: Vec<(&String, &Value)> = m.iter().collect();
            if sort_keys {
                entries.sort_by(|a, b| a.0.cmp(b.0));
            }
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                go_json_string(out, k);
                out.push(':');
                go_json(out, v, sort_keys);
            }
            out.push('}');
        }
    }
}

/// A JSON string escaped as Go's encoding/json does (HTML-safe: `<`, `>`, `&` as \u00XX).
fn go_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => out.push_str(&format!("\\u{:04x}", c as u32)),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hash_matches_kustomize() {
        // Cases and expected values from kustomize's api/hasher tests.
        let obj = |v: Value| v.as_object().unwrap().clone();
        let cases = [
            (json!({"apiVersion": "v1", "kind": "ConfigMap"}), "6ct58987ht"),
            (json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"one": ""}}), "9g67k2htb6"),
            (json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"two": 2, "one": "", "three": 3}}), "7757f9kkct"),
            (json!({"apiVersion": "v1", "kind": "ConfigMap", "binaryData": {"one": ""}}), "6mtk2m274t"),
        ];
        for (object, expected) in cases {
            assert_eq!(content_hash(&obj(object.clone())), expected, "{object}");
        }
    }

    #[test]
    fn hash_ignores_the_name_like_kustomize() {
        // `kubectl kustomize` names a configMapGenerator `settings` with LOG_LEVEL=debug
        // settings-47668c6k28, with or without a namePrefix.
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "pre-settings"}, "data": {"LOG_LEVEL": "debug"}});
        assert_eq!(content_hash(cm.as_object().unwrap()), "47668c6k28");
    }

    #[test]
    fn base64_lines_as_kustomize() {
        assert_eq!(encode_base64_lines(b"abc"), "YWJj");
        let long = encode_base64_lines(&[b'x'; 60]);
        let lines: Vec<&str> = long.split_terminator('\n').collect();
        assert_eq!(lines.iter().map(|l| l.len()).collect::<Vec<_>>(), [70, 10]);
        assert!(long.ends_with('\n'));
    }

    #[test]
    fn literals_and_env_lines() {
        assert_eq!(parse_literal("a=\"b c\"").unwrap(), ("a".into(), "b c".into()));
        assert_eq!(parse_literal("a=x=y").unwrap(), ("a".into(), "x=y".into()));
        assert!(parse_literal("=x").is_err());
        assert!(parse_literal("novalue").is_err());
        let pairs = env_pairs(b"\xef\xbb\xbfA=1\n# c\n\n  B=two words\r\nC\n").unwrap();
        let pairs: Vec<(String, String)> =
            pairs.into_iter().map(|(k, v)| (k, String::from_utf8(v).unwrap())).collect();
        assert_eq!(pairs, [("A".into(), "1".into()), ("B".into(), "two words".into()), ("C".into(), "".into())]);
        assert!(env_pairs(b"1A=x\n").is_err());
    }

    #[test]
    fn global_options_override_local() {
        let local = GeneratorOptions {
            labels: Some([("a".to_string(), "local".to_string())].into_iter().collect()),
            ..Default::default()
        };
        let global = GeneratorOptions {
            labels: Some([("a".to_string(), "global".to_string())].into_iter().collect()),
            disable_name_suffix_hash: Some(true),
            ..Default::default()
        };
        let merged = merge_options(Some(&local), Some(&global));
        assert_eq!(merged.labels.unwrap()["a"], "global");
        assert_eq!(merged.disable_name_suffix_hash, Some(true));
    }
}
