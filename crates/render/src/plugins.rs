//! kustomize's builtin plugins configured by objects: the `generators:`, `transformers:` and
//! `validators:` fields of a kustomization list files, kustomization directories or inline YAML
//! whose objects (`apiVersion: builtin`, kind = the plugin) configure kustomize's builtin
//! generators and transformers (api/internal/builtins, plugin/builtin/*). Each kind runs on top of
//! the transformer this crate already has for the matching kustomization field, with the fields
//! and fieldSpecs of its config instead of the kustomization's and the built-in tables.
//!
//! Only builtin plugins run, as with `kubectl kustomize` (which has no flag to enable others);
//! exec, containerized and KRM-function plugins are an error naming the config and its kind.

use std::path::Path;

use indexmap::IndexMap;
use serde::Deserialize;
use serde_json::Value;

use crate::builtin_config::TransformerConfig;
use crate::error::{RenderError, Result};
use crate::fieldspec::FieldSpec;
use crate::generator::{self, GeneratorKind};
use crate::kustomization::{GeneratorArgs, Patch, Selector};
use crate::loader::Loader;
use crate::resource::{Origin, Resource};
use crate::transform::{self, ImageRewrite, NamespaceOptions, ReplicaCount, SubjectMode, TransformError};

/// The apiVersion of builtin plugin configs.
pub const BUILTIN_API_VERSION: &str = "builtin";

/// Which kustomization field listed a plugin config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginField {
    /// `generators:`
    Generators,
    /// `transformers:`
    Transformers,
    /// `validators:` (transformers that must leave the objects unchanged)
    Validators,
}

impl PluginField {
    /// The field's name in a kustomization.
    pub fn name(self) -> &'static str {
        match self {
            PluginField::Generators => "generators",
            PluginField::Transformers => "transformers",
            PluginField::Validators => "validators",
        }
    }
}

/// Builtin generator kinds.
const GENERATORS: [&str; 2] = ["ConfigMapGenerator", "SecretGenerator"];
/// Builtin transformer kinds.
const TRANSFORMERS: [&str; 14] = [
    "AnnotationsTransformer",
    "HashTransformer",
    "ImageTagTransformer",
    "LabelTransformer",
    "NamespaceTransformer",
    "PatchJson6902Transformer",
    "PatchStrategicMergeTransformer",
    "PatchTransformer",
    "PrefixSuffixTransformer",
    "PrefixTransformer",
    "SuffixTransformer",
    "ReplacementTransformer",
    "ReplicaCountTransformer",
    "ValueAddTransformer",
];

/// Where a config came from, for errors: its file, or the kustomization for inline configs.
fn config_source(config: &Resource, kustomization: &Path) -> String {
    match &config.origin.file {
        Some(file) => file.display().to_string(),
        None => format!("inline config in {}", kustomization.display()),
    }
}

fn config_error(config: &Resource, kustomization: &Path, field: PluginField, message: String) -> RenderError {
    RenderError::Kustomization {
        file: kustomization.to_path_buf(),
        message: format!(
            "{}: {} '{}' ({}): {message}",
            field.name(),
            config.kind(),
            config.name(),
            config_source(config, kustomization)
        ),
    }
}

/// Check that `config` is a builtin plugin usable in `field`; returns its kind.
fn builtin_kind<'c>(config: &'c Resource, kustomization: &Path, field: PluginField) -> Result<&'c str> {
    let kind = config.kind();
    if config.api_version() != BUILTIN_API_VERSION {
        return Err(config_error(
            config,
            kustomization,
            field,
            format!(
                "apiVersion '{}' is not a builtin plugin; kfctl build, like kubectl kustomize, runs only kustomize's builtin plugins (apiVersion: builtin), not exec, containerized or KRM-function plugins\n  hint: run the plugin yourself, save its output to a file and list that under 'resources'",
                config.api_version()
            ),
        ));
    }
    let wanted: &[&str] = match field {
        PluginField::Generators => &GENERATORS,
        PluginField::Transformers | PluginField::Validators => &TRANSFORMERS,
    };
    if !wanted.contains(&kind) {
        let message = if GENERATORS.contains(&kind) || TRANSFORMERS.contains(&kind) {
            format!(
                "plugin {kind} is not a {}\n  hint: list generators under 'generators' and transformers under 'transformers'",
                if field == PluginField::Generators { "generator" } else { "transformer" }
            )
        } else if kind == "HelmChartInflationGenerator" {
            "helm charts are not rendered by kfctl build (kubectl kustomize needs --enable-helm for them too)\n  hint: render the chart with `helm template` and list the output under 'resources'".to_string()
        } else {
            format!(
                "unknown builtin plugin kind '{kind}'\n  hint: builtin kinds are {} and {}",
                GENERATORS.join(", "),
                TRANSFORMERS.join(", ")
            )
        };
        return Err(config_error(config, kustomization, field, message));
    }
    Ok(kind)
}

/// Decode a config into the plugin's settings (unknown fields ignored, as kustomize's YAML
/// unmarshalling ignores them).
fn decode<T: for<'de> Deserialize<'de>>(config: &Resource, kustomization: &Path, field: PluginField) -> Result<T> {
    serde_json::from_value(Value::Object(config.object.clone()))
        .map_err(|e| config_error(config, kustomization, field, format!("invalid config: {e}")))
}

/// Run a generator config: the ConfigMap or Secret it makes (to be absorbed as kustomize absorbs
/// generated objects: create, merge or replace).
pub fn generate(config: &Resource, loader: &Loader, kustomization: &Path, origin: &Origin) -> Result<Resource> {
    let field = PluginField::Generators;
    let kind = builtin_kind(config, kustomization, field)?;
    let mut args: GeneratorArgs = decode::<GeneratorConfig>(config, kustomization, field)?.into_args();
    // kustomize's ConfigMapGenerator/SecretGenerator plugins take name and namespace from the
    // config's metadata when the arguments do not set them.
    if args.name.as_deref().unwrap_or("").is_empty() {
        args.name = Some(config.name().to_string());
    }
    if args.namespace.as_deref().unwrap_or("").is_empty() {
        args.namespace = config.namespace().map(str::to_string);
    }
    let kind = if kind == "ConfigMapGenerator" { GeneratorKind::ConfigMap } else { GeneratorKind::Secret };
    // The kustomization's generatorOptions do not apply to plugin generators: only their own.
    generator::generate(kind, &args, None, loader, kustomization, origin)
}

/// A generator config: the generator arguments at the top level, beside apiVersion/kind/metadata.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GeneratorConfig {
    name: Option<String>,
    namespace: Option<String>,
    behavior: Option<String>,
    literals: Option<Vec<String>>,
    files: Option<Vec<String>>,
    envs: Option<Vec<String>>,
    env: Option<String>,
    options: Option<crate::kustomization::GeneratorOptions>,
    #[serde(rename = "type")]
    secret_type: Option<String>,
}

impl GeneratorConfig {
    fn into_args(self) -> GeneratorArgs {
        GeneratorArgs {
            namespace: self.namespace,
            name: self.name,
            behavior: self.behavior,
            literals: self.literals,
            files: self.files,
            envs: self.envs,
            env: self.env,
            options: self.options,
            secret_type: self.secret_type,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct MapConfig {
    #[serde(default)]
    annotations: IndexMap<String, String>,
    #[serde(default)]
    labels: IndexMap<String, String>,
    #[serde(default)]
    field_specs: Vec<FieldSpec>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct NamespaceConfig {
    #[serde(default)]
    field_specs: Vec<FieldSpec>,
    #[serde(default)]
    unset_only: bool,
    #[serde(default)]
    set_role_binding_subjects: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct AffixConfig {
    #[serde(default)]
    prefix: String,
    #[serde(default)]
    suffix: String,
    field_specs: Option<Vec<FieldSpec>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ImageTagConfig {
    #[serde(default)]
    image_tag: ImageConfig,
    #[serde(default)]
    field_specs: Vec<FieldSpec>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ImageConfig {
    #[serde(default)]
    name: String,
    new_name: Option<String>,
    new_tag: Option<String>,
    digest: Option<String>,
    tag_suffix: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ReplicaConfig {
    #[serde(default)]
    replica: ReplicaSpec,
    #[serde(default)]
    field_specs: Vec<FieldSpec>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ReplicaSpec {
    #[serde(default)]
    name: String,
    #[serde(default)]
    count: i64,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct PatchConfig {
    path: Option<String>,
    patch: Option<String>,
    target: Option<Selector>,
    options: Option<std::collections::BTreeMap<String, bool>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct StrategicMergeConfig {
    #[serde(default)]
    paths: Vec<String>,
    #[serde(default)]
    patches: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Json6902Config {
    target: Option<Selector>,
    path: Option<String>,
    json_op: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ReplacementConfig {
    #[serde(default)]
    replacements: Vec<Value>,
}

/// Run a transformer config on `resources` (`field` is Transformers or Validators).
pub fn transform(
    config: &Resource,
    resources: &mut Vec<Resource>,
    loader: &Loader,
    kustomization: &Path,
    field: PluginField,
) -> Result<()> {
    let kind = builtin_kind(config, kustomization, field)?;
    let fail = |e: TransformError| config_error(config, kustomization, field, e.to_string());
    match kind {
        "AnnotationsTransformer" => {
            let c: MapConfig = decode(config, kustomization, field)?;
            let cfg = TransformerConfig { common_annotations: c.field_specs, ..TransformerConfig::default() };
            transform::apply_annotations(resources, &c.annotations, &cfg).map_err(fail)
        }
        "LabelTransformer" => {
            let c: MapConfig = decode(config, kustomization, field)?;
            let cfg = TransformerConfig { common_labels: c.field_specs, ..TransformerConfig::default() };
            transform::apply_common_labels(resources, &c.labels, &cfg).map_err(fail)
        }
        "NamespaceTransformer" => {
            let c: NamespaceConfig = decode(config, kustomization, field)?;
            let subjects = match c.set_role_binding_subjects.as_str() {
                "" | "defaultOnly" => SubjectMode::DefaultOnly,
                "allServiceAccounts" => SubjectMode::AllServiceAccounts,
                "none" => SubjectMode::None,
                other => {
                    return Err(config_error(
                        config,
                        kustomization,
                        field,
                        format!("invalid value for setRoleBindingSubjects: '{other}'\n  hint: use defaultOnly, allServiceAccounts or none"),
                    ));
                }
            };
            // The namespace to set is the config's own metadata.namespace.
            let ns = config.namespace().unwrap_or("").to_string();
            let options = NamespaceOptions { unset_only: c.unset_only, subjects };
            transform::apply_namespace_with(resources, &ns, &c.field_specs, options).map_err(fail)
        }
        "PrefixSuffixTransformer" | "PrefixTransformer" | "SuffixTransformer" => {
            let c: AffixConfig = decode(config, kustomization, field)?;
            let Some(specs) = c.field_specs else {
                return Err(config_error(config, kustomization, field, "fieldSpecs is not expected to be nil".into()));
            };
            if kind != "SuffixTransformer" && !c.prefix.is_empty() {
                transform::apply_name_prefix(resources, &c.prefix, &specs).map_err(fail)?;
            }
            if kind != "PrefixTransformer" && !c.suffix.is_empty() {
                transform::apply_name_suffix(resources, &c.suffix, &specs).map_err(fail)?;
            }
            Ok(())
        }
        "ImageTagTransformer" => {
            let c: ImageTagConfig = decode(config, kustomization, field)?;
            let image = ImageRewrite {
                name: c.image_tag.name,
                new_name: c.image_tag.new_name,
                new_tag: c.image_tag.new_tag,
                digest: c.image_tag.digest,
                tag_suffix: c.image_tag.tag_suffix,
            };
            let cfg = TransformerConfig { images: c.field_specs, ..TransformerConfig::default() };
            transform::apply_images(resources, &[image], &cfg).map_err(fail)
        }
        "ReplicaCountTransformer" => {
            let c: ReplicaConfig = decode(config, kustomization, field)?;
            let cfg = TransformerConfig { replicas: c.field_specs, ..TransformerConfig::default() };
            let replica = ReplicaCount { name: c.replica.name, count: c.replica.count };
            transform::apply_replicas(resources, &[replica], &cfg).map_err(fail)
        }
        "PatchTransformer" => {
            let c: PatchConfig = decode(config, kustomization, field)?;
            let patch = Patch { path: c.path, patch: c.patch, target: c.target, options: c.options };
            crate::patch::apply_patches(resources, &[patch], loader, kustomization)
        }
        "PatchStrategicMergeTransformer" => {
            let c: StrategicMergeConfig = decode(config, kustomization, field)?;
            let mut entries = c.paths;
            if !c.patches.trim().is_empty() {
                entries.push(c.patches);
            }
            if entries.is_empty() {
                return Err(config_error(config, kustomization, field, "empty file path and empty patch content".into()));
            }
            crate::patch::apply_patches_strategic_merge(resources, &entries, loader, kustomization)
        }
        "PatchJson6902Transformer" => {
            let c: Json6902Config = decode(config, kustomization, field)?;
            let patch = Patch { path: c.path, patch: c.json_op, target: c.target, options: None };
            crate::patch::apply_patches_json6902(resources, &[patch], loader, kustomization)
        }
        "ReplacementTransformer" => {
            let c: ReplacementConfig = decode(config, kustomization, field)?;
            let replacements = crate::pipeline::load_replacement_entries(loader, kustomization, &c.replacements)?;
            transform::replacements::apply_replacements(resources, &replacements).map_err(fail)
        }
        "HashTransformer" => {
            // kustomize's HashTransformer: objects whose generator asks for a hash get it now;
            // they keep asking, so the end of the build appends another, as kustomize does.
            for res in resources.iter_mut() {
                if res.generated.as_ref().is_some_and(|g| g.append_hash) {
                    let hash = generator::content_hash(&res.object);
                    let name = format!("{}-{hash}", res.name());
                    res.rename(&name);
                }
            }
            Ok(())
        }
        other => Err(config_error(
            config,
            kustomization,
            field,
            format!("the builtin plugin {other} (alpha in kustomize) is not supported by kfctl build\n  hint: use replacements or a patch to set the value"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(yaml: &str) -> Resource {
        let mut docs = crate::loader::resources_from_text(yaml, Path::new("c.yaml"), &Origin::default()).unwrap();
        docs.remove(0)
    }

    fn objects(yaml: &str) -> Vec<Resource> {
        crate::loader::resources_from_text(yaml, Path::new("r.yaml"), &Origin::default()).unwrap()
    }

    #[test]
    fn kinds_are_checked_against_the_field() {
        let k = Path::new("kustomization.yaml");
        let label = config("apiVersion: builtin\nkind: LabelTransformer\nmetadata: {name: l}\n");
        assert_eq!(builtin_kind(&label, k, PluginField::Transformers).unwrap(), "LabelTransformer");
        let err = builtin_kind(&label, k, PluginField::Generators).unwrap_err().to_string();
        assert!(err.contains("plugin LabelTransformer is not a generator"), "{err}");
        let exec = config("apiVersion: someteam.example.com/v1\nkind: SedTransformer\nmetadata: {name: s}\n");
        let err = builtin_kind(&exec, k, PluginField::Transformers).unwrap_err().to_string();
        assert!(err.contains("SedTransformer") && err.contains("not a builtin plugin"), "{err}");
        let unknown = config("apiVersion: builtin\nkind: MagicTransformer\nmetadata: {name: m}\n");
        let err = builtin_kind(&unknown, k, PluginField::Transformers).unwrap_err().to_string();
        assert!(err.contains("unknown builtin plugin kind 'MagicTransformer'"), "{err}");
    }

    #[test]
    fn generator_takes_name_and_namespace_from_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let loader = Loader::new_root(dir.path()).unwrap();
        let c = config("apiVersion: builtin\nkind: ConfigMapGenerator\nmetadata: {name: cm, namespace: ns}\nliterals: [a=b]\n");
        let res = generate(&c, &loader, Path::new("kustomization.yaml"), &Origin::default()).unwrap();
        assert_eq!((res.kind(), res.name(), res.namespace()), ("ConfigMap", "cm", Some("ns")));
        assert_eq!(res.object["data"]["a"], "b");
        assert!(res.generated.as_ref().is_some_and(|g| g.append_hash));
    }

    #[test]
    fn namespace_transformer_uses_its_metadata_namespace_and_options() {
        let dir = tempfile::tempdir().unwrap();
        let loader = Loader::new_root(dir.path()).unwrap();
        let c = config(
            "apiVersion: builtin\nkind: NamespaceTransformer\nmetadata: {name: n, namespace: team}\nunsetOnly: true\nfieldSpecs: [{path: metadata/namespace, create: true}]\n",
        );
        let mut res = objects(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: b, namespace: kept}\n",
        );
        transform(&c, &mut res, &loader, Path::new("kustomization.yaml"), PluginField::Transformers).unwrap();
        assert_eq!(res[0].namespace(), Some("team"));
        assert_eq!(res[1].namespace(), Some("kept"));
    }

    #[test]
    fn prefix_transformer_needs_field_specs() {
        let dir = tempfile::tempdir().unwrap();
        let loader = Loader::new_root(dir.path()).unwrap();
        let c = config("apiVersion: builtin\nkind: PrefixTransformer\nmetadata: {name: p}\nprefix: x-\n");
        let mut res = objects("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n");
        let err = transform(&c, &mut res, &loader, Path::new("k.yaml"), PluginField::Transformers).unwrap_err();
        assert!(err.to_string().contains("fieldSpecs is not expected to be nil"), "{err}");
    }
}
