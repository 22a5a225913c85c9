//! The kustomization file schema (kustomize v5.5 `types.Kustomization`), read strictly: an unknown
//! field is kustomize's `invalid Kustomization: json: unknown field "x"` error.
//!
//! Fields whose semantics belong to the transformer and patch modules (label fieldSpecs,
//! replacements, patch targets) are typed here only as far as core needs to load them; the
//! modules that apply them read the rest.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use crate::error::{RenderError, Result};

/// The file names kustomize recognises, in its lookup order.
pub const KUSTOMIZATION_FILE_NAMES: [&str; 3] = ["kustomization.yaml", "kustomization.yml", "Kustomization"];

/// `kind: Kustomization` (the default).
pub const KIND_KUSTOMIZATION: &str = "Kustomization";
/// `kind: Component`.
pub const KIND_COMPONENT: &str = "Component";
const KUSTOMIZATION_VERSION: &str = "kustomize.config.k8s.io/v1beta1";
const COMPONENT_VERSION: &str = "kustomize.config.k8s.io/v1alpha1";

/// A kustomization file. `Option`s distinguish "absent" from "empty" as kustomize's emptiness
/// check does.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Kustomization {
    pub api_version: Option<String>,
    pub kind: Option<String>,
    pub metadata: Option<Value>,
    pub openapi: Option<BTreeMap<String, String>>,

    pub name_prefix: Option<String>,
    pub name_suffix: Option<String>,
    pub namespace: Option<String>,
    pub common_labels: Option<indexmap::IndexMap<String, String>>,
    pub labels: Option<Vec<Label>>,
    pub common_annotations: Option<indexmap::IndexMap<String, String>>,
    /// Deprecated: paths to patch files or inline patches.
    pub patches_strategic_merge: Option<Vec<String>>,
    /// Deprecated: JSON 6902 patches with a target.
    pub patches_json6902: Option<Vec<Patch>>,
    pub patches: Option<Vec<Patch>>,
    pub images: Option<Vec<Image>>,
    /// Deprecated spelling of `images`.
    pub image_tags: Option<Vec<Image>>,
    /// Inline replacements or `{path: file}` entries; parsed by the replacements transformer.
    pub replacements: Option<Vec<Value>>,
    pub replicas: Option<Vec<Replica>>,
    /// Deprecated: vars.
    pub vars: Option<Vec<Value>>,
    pub sort_options: Option<SortOptions>,

    pub resources: Option<Vec<String>>,
    pub components: Option<Vec<String>>,
    pub crds: Option<Vec<String>>,
    /// Deprecated spelling of `resources` (appended after them).
    pub bases: Option<Vec<String>>,

    pub config_map_generator: Option<Vec<GeneratorArgs>>,
    pub secret_generator: Option<Vec<GeneratorArgs>>,
    pub helm_globals: Option<Value>,
    pub helm_charts: Option<Vec<Value>>,
    pub helm_chart_inflation_generator: Option<Vec<Value>>,
    pub generator_options: Option<GeneratorOptions>,

    pub configurations: Option<Vec<String>>,
    pub generators: Option<Vec<String>>,
    pub transformers: Option<Vec<String>>,
    pub validators: Option<Vec<String>>,
    pub inventory: Option<Value>,
    pub build_metadata: Option<Vec<String>>,
}

/// An entry of `labels:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Label {
    pub pairs: Option<indexmap::IndexMap<String, String>>,
    #[serde(default)]
    pub include_selectors: bool,
    #[serde(default)]
    pub include_templates: bool,
    /// Extra fieldSpecs (`fields:`), in fieldSpec YAML form.
    pub fields: Option<Vec<Value>>,
}

/// An entry of `patches:` or `patchesJson6902:`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Patch {
    pub path: Option<String>,
    pub patch: Option<String>,
    pub target: Option<Selector>,
    pub options: Option<BTreeMap<String, bool>>,
}

/// A patch/replacement target selector.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Selector {
    pub group: Option<String>,
    pub version: Option<String>,
    pub kind: Option<String>,
    pub name: Option<String>,
    pub namespace: Option<String>,
    pub label_selector: Option<String>,
    pub annotation_selector: Option<String>,
}

/// An entry of `images:`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Image {
    pub name: Option<String>,
    pub new_name: Option<String>,
    pub new_tag: Option<String>,
    pub tag_suffix: Option<String>,
    pub digest: Option<String>,
}

/// An entry of `replicas:`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Replica {
    pub name: Option<String>,
    #[serde(default)]
    pub count: i64,
}

/// `sortOptions:`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SortOptions {
    pub order: Option<String>,
    pub legacy_sort_options: Option<LegacySortOptions>,
}

/// `sortOptions.legacySortOptions`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LegacySortOptions {
    pub order_first: Option<Vec<String>>,
    pub order_last: Option<Vec<String>>,
}

/// configMapGenerator / secretGenerator entry.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GeneratorArgs {
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub behavior: Option<String>,
    pub literals: Option<Vec<String>>,
    pub files: Option<Vec<String>>,
    pub envs: Option<Vec<String>>,
    /// Deprecated single env file, appended to `envs`.
    pub env: Option<String>,
    pub options: Option<GeneratorOptions>,
    /// Secret type (secretGenerator only; kustomize accepts it on both).
    #[serde(rename = "type")]
    pub secret_type: Option<String>,
}

/// `generatorOptions:` (global) or a generator's `options:`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GeneratorOptions {
    pub labels: Option<indexmap::IndexMap<String, String>>,
    pub annotations: Option<indexmap::IndexMap<String, String>>,
    pub disable_name_suffix_hash: Option<bool>,
    pub immutable: Option<bool>,
}

/// A loaded kustomization: the file, its directory and the fixed-up content.
#[derive(Debug, Clone)]
pub struct KustomizationFile {
    /// The kustomization file's path.
    pub file: PathBuf,
    /// Its directory (relative paths in it resolve against this).
    pub dir: PathBuf,
    /// Content after kustomize's FixKustomization (bases folded into resources, imageTags into
    /// images, env into envs).
    pub kustomization: Kustomization,
    /// Deprecated-field warnings, worded as kustomize prints them.
    pub warnings: Vec<String>,
}

impl KustomizationFile {
    /// Whether this is a `kind: Component`.
    pub fn is_component(&self) -> bool {
        self.kustomization.kind.as_deref() == Some(KIND_COMPONENT)
    }
}

const EDIT_FIX: &str = "Run 'kustomize edit fix' to update your Kustomization automatically.";
const EDIT_FIX_EXPERIMENTAL: &str =
    "[EXPERIMENTAL] Run 'kustomize edit fix' to update your Kustomization automatically.";

/// Find the kustomization file in `dir`; kustomize's error when there is none or more than one.
pub fn find_kustomization_file(dir: &Path) -> Result<PathBuf> {
    let found: Vec<PathBuf> =
        KUSTOMIZATION_FILE_NAMES.iter().map(|n| dir.join(n)).filter(|p| p.is_file()).collect();
    match found.len() {
        0 => Err(RenderError::NoKustomization { dir: dir.to_path_buf() }),
        1 => Ok(found.into_iter().next().expect("one element")),
        _ => Err(RenderError::Kustomization {
            file: dir.to_path_buf(),
            message: format!("Found multiple kustomization files under: {}", dir.display()),
        }),
    }
}

/// Read, validate and fix up the kustomization in `dir`.
pub fn load(dir: &Path) -> Result<KustomizationFile> {
    let file = find_kustomization_file(dir)?;
    let text = std::fs::read_to_string(&file).map_err(|source| RenderError::Io { path: file.clone(), source })?;
    let (kustomization, warnings) = parse(&text, &file)?;
    Ok(KustomizationFile { file, dir: dir.to_path_buf(), kustomization, warnings })
}

/// Parse kustomization text the way kustomize does: YAML to JSON, then a strict decode.
pub fn parse(text: &str, file: &Path) -> Result<(Kustomization, Vec<String>)> {
    let invalid = |message: String| RenderError::Kustomization { file: file.to_path_buf(), message };
    let value = crate::yaml::parse_document(text, file)?;
    if !value.is_object() {
        return Err(invalid(format!(
            "invalid Kustomization: json: cannot unmarshal {} into Go value of type types.Kustomization",
            json_type_name(&value)
        )));
    }
    let value = fold_field_case(value, KUSTOMIZATION_FIELDS);
    let mut k: Kustomization = serde_json::from_value(value)
        .map_err(|e| invalid(format!("invalid Kustomization: json: {}", go_style_message(&e.to_string()))))?;

    let mut warnings = Vec::new();
    let deprecated = [
        (k.bases.is_some(), "# Warning: 'bases' is deprecated. Please use 'resources' instead.", EDIT_FIX),
        (
            k.common_labels.is_some(),
            "# Warning: 'commonLabels' is deprecated. Please use 'labels' instead.",
            EDIT_FIX,
        ),
        (k.image_tags.is_some(), "# Warning: 'imageTags' is deprecated. Please use 'images' instead.", EDIT_FIX),
        (
            k.patches_json6902.is_some(),
            "# Warning: 'patchesJson6902' is deprecated. Please use 'patches' instead.",
            EDIT_FIX,
        ),
        (
            k.patches_strategic_merge.is_some(),
            "# Warning: 'patchesStrategicMerge' is deprecated. Please use 'patches' instead.",
            EDIT_FIX,
        ),
        (
            k.vars.is_some(),
            "# Warning: 'vars' is deprecated. Please use 'replacements' instead.",
            EDIT_FIX_EXPERIMENTAL,
        ),
    ];
    for (used, message, fix) in deprecated {
        if used {
            warnings.push(format!("{message} {fix}"));
        }
    }

    fix(&mut k);
    if is_empty(&k) {
        return Err(invalid("kustomization.yaml is empty".to_string()));
    }
    let kind = k.kind.as_deref().unwrap_or(KIND_KUSTOMIZATION);
    let mut errs = Vec::new();
    if kind != KIND_KUSTOMIZATION && kind != KIND_COMPONENT {
        errs.push(format!("kind should be {KIND_KUSTOMIZATION} or {KIND_COMPONENT}"));
    }
    let required = if kind == KIND_COMPONENT { COMPONENT_VERSION } else { KUSTOMIZATION_VERSION };
    if let Some(v) = k.api_version.as_deref().filter(|v| !v.is_empty() && *v != required) {
        let _ = v;
        errs.push(format!("apiVersion for {kind} should be {required}"));
    }
    if !errs.is_empty() {
        let dir = file.parent().unwrap_or(Path::new("."));
        return Err(invalid(format!(
            "Failed to read kustomization file under {}:\n{}",
            dir.display(),
            errs.join("\n")
        )));
    }
    Ok((k, warnings))
}

/// kustomize's FixKustomization: default kind, fold legacy fields into current ones.
fn fix(k: &mut Kustomization) {
    if k.kind.as_deref().is_none_or(str::is_empty) {
        k.kind = Some(KIND_KUSTOMIZATION.to_string());
    }
    if let Some(bases) = k.bases.take() {
        k.resources.get_or_insert_with(Vec::new).extend(bases);
    }
    if let Some(tags) = k.image_tags.take() {
        k.images.get_or_insert_with(Vec::new).extend(tags);
    }
    for g in k.config_map_generator.iter_mut().flatten().chain(k.secret_generator.iter_mut().flatten()) {
        if let Some(env) = g.env.take().filter(|e| !e.is_empty()) {
            g.envs.get_or_insert_with(Vec::new).push(env);
        }
    }
}

/// kustomize compares against an empty Kustomization with the same TypeMeta.
fn is_empty(k: &Kustomization) -> bool {
    let Kustomization { api_version: _, kind: _, .. } = k;
    let probe = Kustomization { api_version: k.api_version.clone(), kind: k.kind.clone(), ..Default::default() };
    format!("{k:?}") == format!("{probe:?}")
}

/// How Go's encoding/json matches object keys to struct fields: exactly, else case-insensitively.
/// A struct's fields; struct-typed fields (or lists of structs) carry their own table, map-typed
/// fields (labels, annotations) and scalars are leaves whose keys are left alone.
#[derive(Clone, Copy)]
enum Shape {
    Leaf,
    Struct(&'static [(&'static str, Shape)]),
}
use Shape::{Leaf, Struct};

const GENERATOR_OPTIONS_FIELDS: &[(&str, Shape)] =
    &[("labels", Leaf), ("annotations", Leaf), ("disableNameSuffixHash", Leaf), ("immutable", Leaf)];
const SELECTOR_FIELDS: &[(&str, Shape)] = &[
    ("group", Leaf),
    ("version", Leaf),
    ("kind", Leaf),
    ("name", Leaf),
    ("namespace", Leaf),
    ("labelSelector", Leaf),
    ("annotationSelector", Leaf),
];
const GENERATOR_FIELDS: &[(&str, Shape)] = &[
    ("namespace", Leaf),
    ("name", Leaf),
    ("behavior", Leaf),
    ("literals", Leaf),
    ("files", Leaf),
    ("envs", Leaf),
    ("env", Leaf),
    ("options", Struct(GENERATOR_OPTIONS_FIELDS)),
    ("type", Leaf),
];
const PATCH_FIELDS: &[(&str, Shape)] =
    &[("path", Leaf), ("patch", Leaf), ("target", Struct(SELECTOR_FIELDS)), ("options", Leaf)];
const LABEL_FIELDS: &[(&str, Shape)] =
    &[("pairs", Leaf), ("includeSelectors", Leaf), ("includeTemplates", Leaf), ("fields", Leaf)];
const IMAGE_FIELDS: &[(&str, Shape)] =
    &[("name", Leaf), ("newName", Leaf), ("newTag", Leaf), ("tagSuffix", Leaf), ("digest", Leaf)];
const REPLICA_FIELDS: &[(&str, Shape)] = &[("name", Leaf), ("count", Leaf)];
const SORT_FIELDS: &[(&str, Shape)] =
    &[("order", Leaf), ("legacySortOptions", Struct(&[("orderFirst", Leaf), ("orderLast", Leaf)]))];

const KUSTOMIZATION_FIELDS: &[(&str, Shape)] = &[
    ("apiVersion", Leaf),
    ("kind", Leaf),
    ("metadata", Leaf),
    ("openapi", Leaf),
    ("namePrefix", Leaf),
    ("nameSuffix", Leaf),
    ("namespace", Leaf),
    ("commonLabels", Leaf),
    ("labels", Struct(LABEL_FIELDS)),
    ("commonAnnotations", Leaf),
    ("patchesStrategicMerge", Leaf),
    ("patchesJson6902", Struct(PATCH_FIELDS)),
    ("patches", Struct(PATCH_FIELDS)),
    ("images", Struct(IMAGE_FIELDS)),
    ("imageTags", Struct(IMAGE_FIELDS)),
    ("replacements", Leaf),
    ("replicas", Struct(REPLICA_FIELDS)),
    ("vars", Leaf),
    ("sortOptions", Struct(SORT_FIELDS)),
    ("resources", Leaf),
    ("components", Leaf),
    ("crds", Leaf),
    ("bases", Leaf),
    ("configMapGenerator", Struct(GENERATOR_FIELDS)),
    ("secretGenerator", Struct(GENERATOR_FIELDS)),
    ("helmGlobals", Leaf),
    ("helmCharts", Leaf),
    ("helmChartInflationGenerator", Leaf),
    ("generatorOptions", Struct(GENERATOR_OPTIONS_FIELDS)),
    ("configurations", Leaf),
    ("generators", Leaf),
    ("transformers", Leaf),
    ("validators", Leaf),
    ("inventory", Leaf),
    ("buildMetadata", Leaf),
];

/// Rename keys that match a field of `fields` only case-insensitively to the field's spelling,
/// recursively into struct-typed fields; unknown keys stay for the strict decoder to reject.
fn fold_field_case(value: Value, fields: &'static [(&'static str, Shape)]) -> Value {
    let Value::Object(map) = value else { return value };
    let mut out = serde_json::Map::new();
    for (key, v) in map {
        let found = fields
            .iter()
            .find(|(name, _)| *name == key)
            .or_else(|| fields.iter().find(|(name, _)| name.eq_ignore_ascii_case(&key)));
        match found {
            Some((name, shape)) => {
                let v = match (shape, v) {
                    (Struct(sub), Value::Array(items)) => {
                        Value::Array(items.into_iter().map(|i| fold_field_case(i, sub)).collect())
                    }
                    (Struct(sub), v) => fold_field_case(v, sub),
                    (Leaf, v) => v,
                };
                out.insert((*name).to_string(), v);
            }
            None => {
                out.insert(key, v);
            }
        }
    }
    Value::Object(out)
}

fn json_type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// serde_json says `unknown field `foo`, expected one of ...`; Go says `unknown field "foo"`.
fn go_style_message(serde_message: &str) -> String {
    if let Some(rest) = serde_message.strip_prefix("unknown field `")
        && let Some(end) = rest.find('`')
    {
        return format!("unknown field \"{}\"", &rest[..end]);
    }
    serde_message.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_text(text: &str) -> Result<(Kustomization, Vec<String>)> {
        parse(text, Path::new("/k/kustomization.yaml"))
    }

    #[test]
    fn unknown_field_is_kustomize_error() {
        let err = parse_text("resources:\n- a.yaml\nfoo: bar\n").unwrap_err();
        assert_eq!(err.to_string(), "/k/kustomization.yaml: invalid Kustomization: json: unknown field \"foo\"");
    }

    #[test]
    fn field_names_match_case_insensitively_like_go_json() {
        let (k, _) = parse_text("nameprefix: x-\nResources:\n- a.yaml\nconfigmapgenerator:\n- NAME: c\n  options:\n    DisableNameSuffixHash: true\n").unwrap();
        assert_eq!(k.name_prefix.as_deref(), Some("x-"));
        assert_eq!(k.resources.unwrap(), vec!["a.yaml"]);
        let g = &k.config_map_generator.unwrap()[0];
        assert_eq!(g.name.as_deref(), Some("c"));
        assert_eq!(g.options.as_ref().unwrap().disable_name_suffix_hash, Some(true));
    }

    #[test]
    fn legacy_fields_fold_and_warn() {
        let (k, warnings) = parse_text(
            "bases:\n- ../base\nresources:\n- a.yaml\nimageTags:\n- name: x\n  newTag: v1\nconfigMapGenerator:\n- name: c\n  env: e.env\n",
        )
        .unwrap();
        assert_eq!(k.resources.unwrap(), vec!["a.yaml", "../base"]);
        assert_eq!(k.images.unwrap()[0].new_tag.as_deref(), Some("v1"));
        assert_eq!(k.config_map_generator.unwrap()[0].envs.as_deref(), Some(&["e.env".to_string()][..]));
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].starts_with("# Warning: 'bases' is deprecated."));
    }

    #[test]
    fn empty_and_bad_kind() {
        assert!(parse_text("kind: Kustomization\n").unwrap_err().to_string().ends_with("kustomization.yaml is empty"));
        let err = parse_text("kind: Foo\nresources: []\n").unwrap_err().to_string();
        assert!(err.contains("kind should be Kustomization or Component"), "{err}");
    }

    #[test]
    fn yaml11_bool_label_value_is_rejected_like_kustomize() {
        let err = parse_text("commonLabels:\n  a: yes\n").unwrap_err().to_string();
        assert!(err.contains("invalid Kustomization"), "{err}");
    }
}
