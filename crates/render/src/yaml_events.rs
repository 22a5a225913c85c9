//! The fast path of [`crate::yaml`]'s reader: documents built straight from the YAML parser's
//! events (granit-parser, the parser serde-saphyr itself runs), without serde-saphyr's
//! deserializer layer, which costs about as much again as the parsing itself.
//!
//! It only handles what it can decide exactly like serde-saphyr does: mappings, sequences and
//! scalars without tags, anchors or aliases, with distinct plain-text keys. Plain scalars whose
//! type is not obviously "string" are typed by serde-saphyr itself (one scalar at a time, cached).
//! Anything else — a tag, an anchor, an alias, a merge key, a duplicate key, a parse error —
//! returns `None`, and the caller reads the whole text with serde-saphyr as before. So this path
//! either gives serde-saphyr's result or none.

use std::borrow::Cow;
use std::collections::HashMap;

use granit_parser::{Event, Parser, ScalarStyle, StructureStyle};
use serde_json::{Map, Value};

use crate::resource::{NodePath, PathSegment};
use crate::yaml::Dialect;

/// Every document of `text` (null documents included, as serde-saphyr returns them), or `None`
/// when the text needs serde-saphyr's full treatment.
#[cfg(test)]
pub(crate) fn parse_documents(text: &str, dialect: Dialect) -> Option<Vec<Value>> {
    parse_documents_marked(text, dialect).map(|docs| docs.into_iter().map(|(doc, _)| doc).collect())
}

/// [`parse_documents`], each document with the paths of its bare keys (`key:` with no value;
/// see [`crate::resource::Resource::bare_keys`]), which serde-saphyr cannot tell from `key: null`.
pub(crate) fn parse_documents_marked(text: &str, dialect: Dialect) -> Option<Vec<(Value, Vec<NodePath>)>> {
    let options = granit_parser::options! { emit_comments: false };
    let mut builder = Builder {
        parser: Parser::new_from_str_with_options(text, options),
        dialect,
        typed: HashMap::new(),
        bare_keys: Vec::new(),
    };
    let mut docs = Vec::new();
    match builder.next()? {
        Event::StreamStart => {}
        _ => return None,
    }
    loop {
        match builder.next()? {
            Event::StreamEnd => return Some(docs),
            Event::DocumentStart(_, None) => {
                let first = builder.next()?;
                let doc = builder.node(first)?;
                // Paths were built leaf first (see `Builder::bare_keys`).
                let bare_keys = builder.bare_keys.drain(..).map(|path| path.into_iter().rev().collect()).collect();
                match builder.next()? {
                    Event::DocumentEnd => docs.push((doc, bare_keys)),
                    _ => return None,
                }
            }
            _ => return None,
        }
    }
}

struct Builder<'a> {
    parser: Parser<'a, granit_parser::StrInput<'a>>,
    dialect: Dialect,
    /// Plain scalars typed by serde-saphyr, by text (ports and flags repeat a lot).
    typed: HashMap<String, Value>,
    /// Bare keys of the document being read, each path leaf first: a node appends its own step
    /// to the paths its child added, so only documents that have bare keys pay for paths.
    bare_keys: Vec<NodePath>,
}

impl<'a> Builder<'a> {
    fn next(&mut self) -> Option<Event<'a>> {
        self.next_spanned().map(|(event, _)| event)
    }

    /// The next event, and whether it covers no text (the parser reports a missing value as a
    /// `~` scalar of zero length).
    fn next_spanned(&mut self) -> Option<(Event<'a>, bool)> {
        match self.parser.next_event()? {
            Ok((event, span)) => Some((event, span.is_empty())),
            Err(_) => None,
        }
    }

    fn node(&mut self, event: Event<'a>) -> Option<Value> {
        match event {
            Event::Scalar(text, style, 0, None) => self.scalar(text, style),
            Event::SequenceStart(_, 0, None) => {
                let mut items = Vec::new();
                loop {
                    match self.next()? {
                        Event::SequenceEnd => return Some(Value::Array(items)),
                        event => {
                            let marked = self.bare_keys.len();
                            items.push(self.node(event)?);
                            for path in &mut self.bare_keys[marked..] {
                                path.push(PathSegment::Item(items.len() - 1));
                            }
                        }
                    }
                }
            }
            Event::MappingStart(style, 0, None) => {
                let mut map = Map::new();
                loop {
                    let key = match self.next()? {
                        Event::MappingEnd => return Some(Value::Object(map)),
                        Event::Scalar(text, style, 0, None) if style != ScalarStyle::Plain || plain_key_is_text(&text) => {
                            text.into_owned()
                        }
                        _ => return None,
                    };
                    // serde-saphyr's flow-mapping and duplicate-key handling is left to it.
                    if style == StructureStyle::Flow && map.contains_key(&key) {
                        return None;
                    }
                    let (event, unwritten) = self.next_spanned()?;
                    let marked = self.bare_keys.len();
                    if unwritten && matches!(&event, Event::Scalar(_, ScalarStyle::Plain, 0, None)) {
                        self.bare_keys.push(Vec::new());
                    }
                    let value = self.node(event)?;
                    for path in &mut self.bare_keys[marked..] {
                        path.push(PathSegment::Field(key.clone()));
                    }
                    if map.insert(key, value).is_some() {
                        return None;
                    }
                }
            }
            _ => None,
        }
    }

    fn scalar(&mut self, text: Cow<'a, str>, style: ScalarStyle) -> Option<Value> {
        if style != ScalarStyle::Plain {
            return Some(Value::String(text.into_owned()));
        }
        if text.is_empty() {
            return Some(Value::Null);
        }
        if plain_value_is_text(&text) {
            return Some(Value::String(text.into_owned()));
        }
        if let Some(value) = self.typed.get(text.as_ref()) {
            return Some(value.clone());
        }
        let value = type_plain_scalar(&text, self.dialect)?;
        self.typed.insert(text.into_owned(), value.clone());
        Some(value)
    }
}

/// Words that a plain scalar starting with a letter may spell and that are not strings in one
/// of the dialects (nulls, YAML 1.1 and 1.2 booleans, non-finite floats), lower-cased.
const SPECIAL_WORDS: [&str; 12] = ["null", "true", "false", "yes", "no", "on", "off", "y", "n", "inf", "infinity", "nan"];

/// Whether a plain scalar is a string for sure: it starts with a letter and is none of the
/// special words, or it starts with `/` or `--` (paths and flags), which no number, boolean or
/// null does.
fn plain_value_is_text(text: &str) -> bool {
    let bytes = text.as_bytes();
    match bytes[0] {
        b'a'..=b'z' | b'A'..=b'Z' => {
            if text.len() > 8 {
                return true;
            }
            let lower = text.to_ascii_lowercase();
            !SPECIAL_WORDS.contains(&lower.as_str())
        }
        b'/' => true,
        b'-' => bytes.get(1) == Some(&b'-'),
        _ => false,
    }
}

/// serde-saphyr keeps a plain mapping key as written (`80`, `true`, `yes` stay text), except a
/// null key (an error for a string key) and the merge key `<<`: those go the slow way.
fn plain_key_is_text(text: &str) -> bool {
    !matches!(text, "" | "~" | "null" | "Null" | "NULL" | "<<")
}

/// How `text` reads back when written as a plain (unquoted) scalar in an object file: what kyaml
/// gives a scalar node that has a value but no tag (e.g. one a replacement creates). Texts that
/// cannot be written plain (they would be quoted) stay strings; the empty text is null.
pub(crate) fn plain_scalar_value(text: &str) -> Value {
    if text.is_empty() {
        return Value::Null;
    }
    if plain_value_is_text(text) || !crate::yaml::can_be_plain(text) {
        return Value::String(text.to_string());
    }
    type_plain_scalar(text, Dialect::Objects).unwrap_or_else(|| Value::String(text.to_string()))
}

/// A plain scalar typed by serde-saphyr on its own. Only called for texts that cannot be read as
/// anything but one plain scalar (they come from a plain scalar), except document markers.
fn type_plain_scalar(text: &str, dialect: Dialect) -> Option<Value> {
    // A plain scalar's text re-read alone is that scalar again, except where folding made it
    // look like a comment or a mapping, or it reads as a document marker.
    if text.starts_with("---")
        || text.starts_with("...")
        || text.ends_with(':')
        || text.contains(['\n', '\t'])
        || text.contains(" #")
        || text.contains(": ")
    {
        return None;
    }
    let value: Value = serde_saphyr::from_str_with_options(text, crate::yaml::read_options(dialect)).ok()?;
    match value {
        Value::Object(_) | Value::Array(_) => None,
        scalar => Some(scalar),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slow(text: &str, dialect: Dialect) -> Vec<Value> {
        serde_saphyr::from_multiple_with_options::<Value>(text, crate::yaml::read_options(dialect)).unwrap()
    }

    #[test]
    fn same_as_serde_saphyr_where_it_answers() {
        let texts = [
            "a: 1\nb: -2\nc: 1.5\nd: 0755\ne: 0x1F\nf: yes\ng: on\nh: true\ni: ~\nj:\nk: null\nl: .inf\nm: 1e3\n",
            "list:\n- a\n- 'b'\n- \"c\\n\"\n- |\n  x\n  y\n- >-\n  folded\n  text\n- [1, two, {three: 3}]\n- {}\n- []\n",
            "---\n---\na: b\n...\n---\n- x\n",
            "ports:\n- containerPort: 8080\n  protocol: TCP\nargs: [\"--port=80\", --v=2, /bin/sh]\nversion: v1.2.3\n",
            "y: n\nYes: No\nNaN: .NaN\nplain: multi\n  line\n  scalar\nkey with spaces: value with spaces\n",
            "a: +1\nb: 1_000\nc: 0o17\nd: -0\ne: 00\nf: 1.\ng: -.5\nh: 0b101\ni: 12345678901234567890\nj: 1:30\n",
        ];
        for text in texts {
            for dialect in [Dialect::Objects, Dialect::Yaml11] {
                if let Some(fast) = parse_documents(text, dialect) {
                    let fast: Vec<Value> = fast.into_iter().filter(|d| !d.is_null()).collect();
                    assert_eq!(fast, slow(text, dialect), "for {text:?} ({dialect:?})");
                }
            }
        }
    }

    #[test]
    fn plain_scalar_values_read_as_kubectl_reads_them() {
        assert_eq!(plain_scalar_value("3"), Value::from(3));
        assert_eq!(plain_scalar_value("1.5"), serde_json::json!(1.5));
        assert_eq!(plain_scalar_value("0755"), Value::from(493));
        assert_eq!(plain_scalar_value("true"), Value::Bool(true));
        assert_eq!(plain_scalar_value("on"), Value::from("on"));
        assert_eq!(plain_scalar_value(""), Value::Null);
        assert_eq!(plain_scalar_value("abc"), Value::from("abc"));
        assert_eq!(plain_scalar_value("a: b"), Value::from("a: b"));
        assert_eq!(plain_scalar_value("- x"), Value::from("- x"));
    }

    #[test]
    fn bare_keys_are_marked_with_their_paths() {
        use PathSegment::{Field, Item};
        let f = |k: &str| Field(k.to_string());
        let text = "a:\n  b:\n  c: null\n  d: ~\n  e: ''\nl:\n- x:\n  y: 1\n- {z: }\n---\nitems:\n- q:\n";
        let docs = parse_documents_marked(text, Dialect::Objects).expect("fast path");
        let marks: Vec<Vec<NodePath>> = docs.into_iter().map(|(_, marks)| marks).collect();
        assert_eq!(
            marks,
            vec![
                vec![vec![f("a"), f("b")], vec![f("l"), Item(0), f("x")], vec![f("l"), Item(1), f("z")]],
                vec![vec![f("items"), Item(0), f("q")]],
            ]
        );
    }

    #[test]
    fn declines_what_it_does_not_decide() {
        for text in [
            "a: &x 1\nb: *x\n",
            "base: &b {x: 1}\nderived:\n  <<: *b\n",
            "a: !!str 1\n",
            "a: 1\na: 2\n",
            "~: http\n",
            "a: [1, 2\n",
            "%YAML 1.1\n---\na: b\n",
        ] {
            assert_eq!(parse_documents(text, Dialect::Objects), None, "for {text:?}");
        }
    }

    #[test]
    fn common_manifest_is_taken_fast() {
        let text = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 3\n  template:\n    spec:\n      containers:\n      - name: web\n        image: nginx:1.21\n        args: [\"--port\", \"80\"]\n";
        let fast = parse_documents(text, Dialect::Objects).expect("plain manifest");
        assert_eq!(fast, slow(text, Dialect::Objects));
    }

    /// The upstream v1.4.1 archive (shared/registries beside the repository, or
    /// KFCTL_TEST_REGISTRY), unpacked with `tar`.
    fn unpacked_v1_4_1() -> tempfile::TempDir {
        let archive = std::env::var_os("KFCTL_TEST_REGISTRY").map(std::path::PathBuf::from).unwrap_or_else(|| {
            let wanted = std::path::Path::new("shared/registries/kubeflow-manifests-v1.4.1.tar.gz");
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .ancestors()
                .map(|dir| dir.join(wanted))
                .find(|path| path.is_file())
                .expect("shared/registries/kubeflow-manifests-v1.4.1.tar.gz beside the repository (or set KFCTL_TEST_REGISTRY)")
        });
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("tar").arg("-xzf").arg(&archive).arg("-C").arg(dir.path()).status().unwrap();
        assert!(status.success(), "cannot unpack {}", archive.display());
        dir
    }

    fn yaml_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                yaml_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") || path.ends_with("Kustomization") {
                out.push(path);
            }
        }
    }

    #[test]
    fn same_as_serde_saphyr_on_every_file_of_the_v1_4_1_archive() {
        let dir = unpacked_v1_4_1();
        let mut files = Vec::new();
        yaml_files(dir.path(), &mut files);
        assert!(files.len() > 1000, "only {} YAML files unpacked", files.len());
        let (mut fast_files, mut compared) = (0, 0);
        for file in &files {
            let Ok(text) = std::fs::read_to_string(file) else { continue };
            for dialect in [Dialect::Objects, Dialect::Yaml11] {
                let Ok(slow) = serde_saphyr::from_multiple_with_options::<Value>(&text, crate::yaml::read_options(dialect)) else {
                    continue;
                };
                compared += 1;
                if let Some(fast) = parse_documents(&text, dialect) {
                    fast_files += 1;
                    let fast: Vec<Value> = fast.into_iter().filter(|d| !d.is_null()).collect();
                    assert_eq!(fast, slow, "{} ({dialect:?})", file.display());
                }
            }
        }
        // The fast path must be the common one, or it is not worth having.
        assert!(fast_files * 10 >= compared * 9, "fast path taken for {fast_files} of {compared}");
    }
}
