//! The kfctl.yaml schema and its validation.
//!
//! kfctl.yaml is the declarative description of an app: which Kubeflow release, where its
//! registry archive came from (URL and sha256) and where it is vendored in the app directory,
//! the platform, and each component with its parameters, patches and image overrides.
//! [`AppConfig::to_commented_yaml`] writes it with comments explaining each section, and
//! [`AppConfig::from_yaml`] reads it back (the two round-trip).
//!
//! Secrets: a component parameter never holds a plaintext password. dex's default user takes a
//! `passwordHash` (bcrypt, what dex itself stores); `kfctl component set dex password=...` hashes
//! the password before it reaches this file, and validation rejects a `password` key.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::path::{Component, Path, PathBuf};

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use crate::platform::{ClusterSettings, PlatformSpec};
use crate::registry::catalog::{self, ParameterKind, Release};
use crate::registry::digest::Pin;
use crate::registry::remote::VendoredRemote;

/// The `apiVersion` of kfctl.yaml.
pub const API_VERSION: &str = "kfctl.dev/v1alpha1";
/// The `kind` of kfctl.yaml.
pub const KIND: &str = "KfctlApp";
/// The config file's name inside the app directory.
pub const FILE_NAME: &str = "kfctl.yaml";

/// The whole of kfctl.yaml.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AppConfig {
    pub api_version: String,
    pub kind: String,
    /// The app's name: labels every object kfctl applies (`app.kubernetes.io/part-of`).
    pub name: String,
    /// Where the app runs.
    #[serde(default)]
    pub platform: PlatformSpec,
    /// The Kubeflow release, e.g. `v1.4.1`; selects the component catalog.
    pub version: String,
    /// Where the manifests came from and where they are vendored.
    pub registry: RegistryConfig,
    /// Components in render order: the release's catalog order, then the user's own.
    #[serde(default)]
    pub components: Vec<ComponentConfig>,
    /// Choices about the cluster, detected by the platform and reviewable here.
    #[serde(default)]
    pub cluster: ClusterSettings,
    /// App-wide image settings: overrides that reach every place an image is named.
    #[serde(default, skip_serializing_if = "AppImages::is_empty")]
    pub images: AppImages,
    /// Upgrades between releases, oldest first (`kfctl upgrade`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<UpgradeRecord>,
}

/// The app's `images:` section.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AppImages {
    /// Images to replace after rendering, in every place `kfctl images` lists (pod templates,
    /// args, env, ConfigMap-held documents, custom resources), unlike a component's kustomize
    /// `images:` which reach only the fields kustomize knows.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overrides: Vec<AppImageOverride>,
}

impl AppImages {
    pub fn is_empty(&self) -> bool {
        self.overrides.is_empty()
    }

    /// The overrides by image, as `images::rewrite` takes them.
    pub fn targets(&self) -> std::collections::BTreeMap<String, crate::images::Target> {
        self.overrides.iter().map(|o| (o.name.clone(), o.target())).collect()
    }
}

/// One image override: `name` becomes `newName` (or keeps its name) with `digest`, or `newTag`,
/// or its own tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AppImageOverride {
    /// The image exactly as the render names it, tag or digest included
    /// (`gcr.io/ml-pipeline/frontend:2.5.0`; `kfctl images --as-released` lists them).
    pub name: String,
    /// The repository it is replaced by, without tag or digest
    /// (`registry.internal:5000/kubeflow/gcr.io/ml-pipeline/frontend`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_name: Option<String>,
    /// The tag to use; absent, the image keeps its own (unless `digest` is given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_tag: Option<String>,
    /// `sha256:` and 64 hex digits: the image is then pulled by digest (what `kfctl mirror`
    /// records, so the cluster runs exactly what was copied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

impl AppImageOverride {
    /// Where the override sends its image.
    pub fn target(&self) -> crate::images::Target {
        crate::images::Target { new_name: self.new_name.clone(), new_tag: self.new_tag.clone(), digest: self.digest.clone() }
    }

    /// Problems, each naming the field under `at` and what to do.
    fn problems(&self, at: &str) -> Vec<String> {
        use crate::images::ImageRef;
        let mut problems = Vec::new();
        if ImageRef::parse(&self.name).is_none() {
            problems.push(format!("{at}.name: {:?} is not an image reference; hint: copy it from `kfctl images --as-released`", self.name));
        }
        if let Some(new_name) = &self.new_name {
            match ImageRef::parse(new_name) {
                Some(r) if r.tag.is_none() && r.digest.is_none() => {}
                Some(_) => problems.push(format!("{at}.newName: {new_name:?} has a tag or digest; hint: put it in newTag or digest")),
                None => problems.push(format!("{at}.newName: {new_name:?} is not an image name (REGISTRY/PATH)")),
            }
        }
        if let Some(tag) = &self.new_tag
            && ImageRef::parse(&format!("x:{tag}")).is_none_or(|r| r.tag.as_deref() != Some(tag.as_str()))
        {
            problems.push(format!("{at}.newTag: {tag:?} is not a tag (letters, digits, '_', '.', '-'; at most 128)"));
        }
        if let Some(digest) = &self.digest
            && !crate::images::reference::is_digest(digest)
        {
            problems.push(format!("{at}.digest: {digest:?} is not a digest; hint: sha256: and 64 lowercase hex digits"));
        }
        if self.new_name.is_none() && self.new_tag.is_none() && self.digest.is_none() {
            problems.push(format!("{at}: set at least one of newName, newTag, digest"));
        }
        problems
    }
}

/// One upgrade (or rollback) of the app between Kubeflow releases.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpgradeRecord {
    /// The release the app came from.
    pub from: String,
    /// The release it went to.
    pub to: String,
    /// When the upgrade started (RFC 3339, UTC).
    pub started: String,
    /// When it ended, successfully or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<String>,
    pub outcome: UpgradeOutcome,
    /// Manual migration steps the user confirmed (`--confirm ID`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub confirmed: Vec<String>,
    /// Where the release the app came from is vendored, kept for a rollback until `kfctl gc`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_registry: Option<RegistryConfig>,
    /// Why it failed (the error's first line).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// How far an upgrade got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum UpgradeOutcome {
    /// kfctl.yaml names the new release; nothing was applied yet (`kfctl upgrade --prepare`).
    Prepared,
    /// Applying (or interrupted while applying): `kfctl upgrade --to` the same release finishes it.
    Applying,
    Succeeded,
    /// Stopped with an error: running it again goes on from where it stopped.
    Failed,
}

impl UpgradeRecord {
    /// Not finished: `kfctl upgrade` to the same release resumes it.
    pub fn is_open(&self) -> bool {
        self.outcome != UpgradeOutcome::Succeeded
    }
}

/// The registry archive an app was initialised from, and the remote resources vendored with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegistryConfig {
    /// URL or local path of the archive, as given to `kfctl init`.
    pub url: String,
    /// The content pin of the unpacked release: `tree-sha256:HEX` (see `registry::digest`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Apps written before content pins: lowercase hex sha256 of the archive's bytes. Still read;
    /// a new init writes `digest` instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The unpacked release, relative to the app directory (e.g. `registry/v1.4.1`).
    pub path: PathBuf,
    /// The mirror remote resources were fetched through (`--mirror BASE`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<String>,
    /// Remote resources the release's kustomizations name by URL, vendored into the app directory.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remotes: Vec<RemotePin>,
}

/// One vendored remote resource: a repository at a ref (only the directories the build reads),
/// or a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RemotePin {
    /// A repository (`https://HOST/OWNER/REPO`) or a file's URL.
    pub url: String,
    /// A repository's ref; absent for a file.
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub git_ref: Option<String>,
    /// The vendored copy, relative to the app directory.
    pub path: PathBuf,
    /// Its content pin: `tree-sha256:HEX` for a repository, `sha256:HEX` for a file.
    pub digest: String,
}

impl RegistryConfig {
    /// The release's pin: the content digest, or the archive's sha256 of an older app.
    pub fn pin(&self) -> Option<Pin> {
        match (&self.digest, &self.sha256) {
            (Some(digest), _) => Pin::parse(digest).ok(),
            (None, Some(sha256)) => Pin::parse(sha256).ok().map(|p| Pin::Bytes(p.hex().to_string())),
            (None, None) => None,
        }
    }

    /// The vendored remotes, as the renderer's source reads them (validated: pins parse).
    pub fn vendored_remotes(&self) -> Vec<VendoredRemote> {
        self.remotes
            .iter()
            .filter_map(|r| {
                Some(VendoredRemote { url: r.url.clone(), git_ref: r.git_ref.clone(), path: r.path.clone(), digest: Pin::parse(&r.digest).ok()? })
            })
            .collect()
    }
}

/// One component of the app.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ComponentConfig {
    /// A catalog name (`kfctl component list`), or any name for a user component with `path`.
    pub name: String,
    /// Disabled components stay listed but are not rendered or applied.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Which of the catalog's variants to render (e.g. istio's `ambient-oauth2-proxy`); absent,
    /// kfctl picks the one for `platform.kind` (`kfctl component list` shows them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// Catalog-defined parameters (for example dex's `email` and `passwordHash`).
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub parameters: IndexMap<String, String>,
    /// Patch files, relative to the app directory, applied on top of the component.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub patches: Vec<PatchConfig>,
    /// Image overrides, as kustomize's `images:` field.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<ImageOverride>,
    /// For a user's own component: its kustomize directory, relative to the app directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
}

fn default_true() -> bool {
    true
}

/// A patch file: strategic merge (target optional) or JSON 6902 (target required), as in
/// kustomize's `patches:` field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PatchConfig {
    /// The patch file, relative to the app directory.
    pub path: PathBuf,
    /// Which objects it applies to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<PatchTarget>,
}

/// kustomize's patch target selector.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PatchTarget {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotation_selector: Option<String>,
}

/// kustomize's `images:` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImageOverride {
    /// The image name as it appears in the manifests (without tag).
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_tag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

/// What can be wrong with kfctl.yaml.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {error}\n  hint: is this an app directory? create one with `kfctl init DIR`")]
    Read { path: PathBuf, error: std::io::Error },
    #[error("{path} is not a valid kfctl.yaml: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: {}", problems.join("\n  "))]
    Invalid { path: PathBuf, problems: Vec<String> },
    #[error("cannot write {path}: {error}")]
    Write { path: PathBuf, error: std::io::Error },
    #[error("cannot serialize kfctl.yaml: {0}")]
    Serialize(String),
}

impl ComponentConfig {
    /// An enabled catalog component with nothing customised.
    pub fn named(name: &str, enabled: bool) -> ComponentConfig {
        ComponentConfig {
            name: name.to_string(),
            enabled,
            variant: None,
            parameters: IndexMap::new(),
            patches: Vec::new(),
            images: Vec::new(),
            path: None,
        }
    }
}

impl AppConfig {
    /// A fresh config for `release`: every catalog component listed, the base set enabled.
    pub fn new(name: &str, release: &Release, registry: RegistryConfig, platform: PlatformSpec) -> AppConfig {
        AppConfig {
            api_version: API_VERSION.to_string(),
            kind: KIND.to_string(),
            name: name.to_string(),
            platform,
            version: release.version.to_string(),
            registry,
            components: release.components.iter().map(|c| ComponentConfig::named(&c.name, c.base)).collect(),
            cluster: ClusterSettings::default(),
            images: AppImages::default(),
            history: Vec::new(),
        }
    }

    /// Read and validate `path`.
    pub fn load(path: &Path) -> Result<AppConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), error: source })?;
        let config = AppConfig::from_yaml(&text).map_err(|message| ConfigError::Parse { path: path.to_path_buf(), message })?;
        config.validate().map_err(|problems| ConfigError::Invalid { path: path.to_path_buf(), problems })?;
        Ok(config)
    }

    /// Parse without validating (errors name the line and column).
    pub fn from_yaml(text: &str) -> Result<AppConfig, String> {
        serde_saphyr::from_str(text).map_err(|e| e.to_string())
    }

    /// The component named `name`.
    pub fn component(&self, name: &str) -> Option<&ComponentConfig> {
        self.components.iter().find(|c| c.name == name)
    }

    /// The component named `name`, mutably.
    pub fn component_mut(&mut self, name: &str) -> Option<&mut ComponentConfig> {
        self.components.iter_mut().find(|c| c.name == name)
    }

    /// The catalog of this config's release.
    pub fn release(&self) -> Result<&'static Release, catalog::UnknownVersion> {
        catalog::release(&self.version)
    }

    /// Every problem, each naming its field (`components[3].name: ...`) and what to do.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        if self.api_version != API_VERSION {
            problems.push(format!("apiVersion: expected {API_VERSION:?}, found {:?}", self.api_version));
        }
        if self.kind != KIND {
            problems.push(format!("kind: expected {KIND:?}, found {:?}", self.kind));
        }
        if let Err(why) = check_dns_label(&self.name) {
            problems.push(format!("name: {:?} {why}", self.name));
        }
        match (&self.registry.digest, &self.registry.sha256) {
            (Some(digest), _) => match Pin::parse(digest) {
                Ok(Pin::Tree(_)) => {}
                Ok(Pin::Bytes(_)) => problems.push(format!("registry.digest: {digest:?} is a file digest; the release is pinned by tree-sha256:HEX")),
                Err(why) => problems.push(format!("registry.digest: {why}")),
            },
            (None, Some(sha256)) => {
                if let Err(why) = crate::registry::normalize_sha256(sha256) {
                    problems.push(format!("registry.sha256: {why}"));
                }
            }
            (None, None) => problems.push("registry: no digest; hint: re-create the app with `kfctl init --force`, which pins the release by content".into()),
        }
        for (i, remote) in self.registry.remotes.iter().enumerate() {
            let at = format!("registry.remotes[{i}]");
            match Pin::parse(&remote.digest) {
                Ok(Pin::Tree(_)) if remote.git_ref.is_none() => problems.push(format!("{at}.digest: a file is pinned by sha256:HEX")),
                Ok(Pin::Bytes(_)) if remote.git_ref.is_some() => problems.push(format!("{at}.digest: a repository is pinned by tree-sha256:HEX")),
                Ok(_) => {}
                Err(why) => problems.push(format!("{at}.digest: {why}")),
            }
            if let Err(why) = check_inside(&remote.path) {
                problems.push(format!("{at}.path: {:?} {why}", remote.path.display().to_string()));
            }
        }
        if let Err(why) = check_inside(&self.registry.path) {
            problems.push(format!("registry.path: {:?} {why}", self.registry.path.display().to_string()));
        }
        let release = match self.release() {
            Ok(r) => Some(r),
            Err(e) => {
                problems.push(format!("version: {e}"));
                None
            }
        };
        let mut seen = HashSet::new();
        for (i, c) in self.components.iter().enumerate() {
            let at = format!("components[{i}]");
            if !seen.insert(c.name.as_str()) {
                problems.push(format!("{at}.name: component {:?} is listed twice; keep one entry", c.name));
            }
            let spec = release.and_then(|r| r.component(&c.name));
            match (&c.path, spec) {
                (Some(path), None) => {
                    if let Err(why) = check_dns_label(&c.name) {
                        problems.push(format!("{at}.name: {:?} {why}", c.name));
                    }
                    if let Err(why) = check_inside(path) {
                        problems.push(format!("{at}.path: {:?} {why}", path.display().to_string()));
                    }
                }
                (Some(_), Some(_)) => problems.push(format!(
                    "{at}.path: {:?} is a catalog component and takes no path; hint: give your own component another name",
                    c.name
                )),
                (None, None) => {
                    if release.is_some() {
                        problems.push(format!(
                            "{at}.name: unknown component {:?}; hint: `kfctl component list` shows the catalog, and a component of your own needs `path:`",
                            c.name
                        ));
                    }
                }
                (None, Some(_)) => {}
            }
            if let Some(variant) = &c.variant {
                match spec {
                    Some(spec) if spec.variant_names().contains(&variant.as_str()) => {}
                    Some(spec) if spec.variants.is_empty() => {
                        problems.push(format!("{at}.variant: {} has no variants; hint: remove `variant:`", c.name))
                    }
                    Some(spec) => problems.push(format!(
                        "{at}.variant: unknown variant {variant:?} of {}; known: {}",
                        c.name,
                        spec.variant_names().join(", ")
                    )),
                    None => problems.push(format!("{at}.variant: a component of your own has no variants; hint: point `path:` at the directory you want")),
                }
            }
            for (key, value) in &c.parameters {
                let field = format!("{at}.parameters.{key}");
                if key == "password" || key.to_ascii_lowercase().contains("password") && key != "passwordHash" {
                    problems.push(format!(
                        "{field}: plaintext passwords are not stored in kfctl.yaml; hint: run `kfctl component set {} password=...`, which stores a bcrypt passwordHash",
                        c.name
                    ));
                    continue;
                }
                let Some(spec) = spec else {
                    problems.push(format!("{field}: a component of your own takes no parameters; hint: use patches"));
                    continue;
                };
                let Some(param) = spec.parameter(key) else {
                    let known: Vec<_> = spec.parameters.iter().map(|p| p.name.as_str()).collect();
                    problems.push(if known.is_empty() {
                        format!("{field}: {} takes no parameters; hint: use patches or images", c.name)
                    } else {
                        format!("{field}: unknown parameter of {}; known: {}", c.name, known.join(", "))
                    });
                    continue;
                };
                if let Err(why) = check_parameter(param.kind, value) {
                    problems.push(format!("{field}: {why}"));
                }
            }
            for (j, patch) in c.patches.iter().enumerate() {
                if let Err(why) = check_inside(&patch.path) {
                    problems.push(format!("{at}.patches[{j}].path: {:?} {why}", patch.path.display().to_string()));
                }
            }
            for (j, image) in c.images.iter().enumerate() {
                if image.name.is_empty() {
                    problems.push(format!("{at}.images[{j}].name: must not be empty"));
                }
                if image.new_name.is_none() && image.new_tag.is_none() && image.digest.is_none() {
                    problems.push(format!("{at}.images[{j}]: set at least one of newName, newTag, digest"));
                }
            }
        }
        let mut names = HashSet::new();
        for (i, image) in self.images.overrides.iter().enumerate() {
            let at = format!("images.overrides[{i}]");
            problems.extend(image.problems(&at));
            if !names.insert(image.name.as_str()) {
                problems.push(format!("{at}.name: {:?} is overridden twice; hint: keep one entry per image", image.name));
            }
        }
        if problems.is_empty() { Ok(()) } else { Err(problems) }
    }

    /// Record image overrides (for `kfctl mirror`): each replaces the override of the same image,
    /// or is added. Not saved: call [`AppConfig::save`].
    pub fn record_image_overrides(&mut self, overrides: impl IntoIterator<Item = AppImageOverride>) {
        for new in overrides {
            match self.images.overrides.iter_mut().find(|o| o.name == new.name) {
                Some(old) => *old = new,
                None => self.images.overrides.push(new),
            }
        }
    }

    /// Dependencies of enabled components that are disabled, as `(component, missing dependency)`.
    /// Not an error (removing a base component is allowed), but worth a warning.
    pub fn missing_dependencies(&self) -> Vec<(String, String)> {
        let Ok(release) = self.release() else { return Vec::new() };
        let enabled = |name: &str| self.component(name).is_some_and(|c| c.enabled);
        let mut missing = Vec::new();
        for c in self.components.iter().filter(|c| c.enabled) {
            if let Some(spec) = release.component(&c.name) {
                for dep in &spec.depends_on {
                    if !enabled(dep) {
                        missing.push((c.name.clone(), dep.to_string()));
                    }
                }
            }
        }
        missing
    }

    /// kfctl.yaml text with a comment before each section and each component. Round-trips
    /// through [`AppConfig::from_yaml`].
    pub fn to_commented_yaml(&self) -> Result<String, ConfigError> {
        let release = self.release().ok();
        let mut out = String::new();
        out.push_str("# kfctl app: a declarative description of one Kubeflow deployment.\n");
        out.push_str("# Commit this directory to git; every kfctl command works offline from it.\n");
        out.push_str("# Edit it by hand or with `kfctl component add|remove|set`, then run `kfctl apply`.\n");
        out.push_str(&yaml_entry("apiVersion", &self.api_version)?);
        out.push_str(&yaml_entry("kind", &self.kind)?);
        out.push_str("\n# The app's name; every object kfctl applies is labelled app.kubernetes.io/part-of=<name>.\n");
        out.push_str(&yaml_entry("name", &self.name)?);
        out.push_str("\n# Where the app runs. kind: existing uses your current kubeconfig and creates nothing;\n");
        out.push_str("# kind, minikube, microk8s, k3d, gke, eks and aks let `kfctl deploy` create the cluster.\n");
        out.push_str(&yaml_entry("platform", &self.platform)?);
        out.push_str("\n# The Kubeflow release; it selects the component catalog (`kfctl component list`).\n");
        out.push_str(&yaml_entry("version", &self.version)?);
        out.push_str("\n# The release archive this app was initialised from: url (or local path), and digest, the\n");
        out.push_str("# pin of its content (tree-sha256: every path, type, executable bit and file content of the\n");
        out.push_str("# unpacked tree, so another compression of the same tree pins the same). path is the\n");
        out.push_str("# unpacked copy inside this directory. remotes: what the release's kustomizations name by\n");
        out.push_str("# URL, vendored below remote/ (repositories: only the directories the build reads) and\n");
        out.push_str("# pinned the same way (a file: sha256 of its bytes); rendering never touches the network.\n");
        out.push_str(&yaml_entry("registry", &self.registry)?);
        out.push_str("\n# Components, rendered and applied in this order. enabled: false keeps one listed but off.\n");
        out.push_str("# parameters: catalog-defined settings (see `kfctl component list`); passwords are stored\n");
        out.push_str("#   only as bcrypt hashes (`kfctl component set dex password=...`).\n");
        out.push_str("# patches: files relative to this directory, strategic merge or JSON 6902 (with target).\n");
        out.push_str("# images: kustomize image overrides (name, newName, newTag, digest).\n");
        out.push_str("# path: a kustomize directory of your own, relative to this directory.\n");
        out.push_str("components:\n");
        for c in &self.components {
            match release.and_then(|r| r.component(&c.name)) {
                Some(spec) => {
                    let _ = write!(out, "# {}: {}", spec.name, spec.description);
                    if spec.base {
                        out.push_str(" (base)");
                    }
                    if !spec.depends_on.is_empty() {
                        let _ = write!(out, "; needs {}", spec.depends_on.join(", "));
                    }
                    out.push('\n');
                }
                None => {
                    let _ = writeln!(out, "# {}: your own component", c.name);
                }
            }
            out.push_str(&yaml_string(&[c])?);
        }
        out.push_str("\n# Cluster settings detected by kfctl (storage class, ...); review and adjust.\n");
        out.push_str(&yaml_entry("cluster", &self.cluster)?);
        if !self.images.is_empty() {
            out.push_str("\n# Image overrides, applied after rendering in every place an image is named (`kfctl images`):\n");
            out.push_str("# name exactly as the render names it; newName; digest (sha256:...) or newTag.\n");
            out.push_str(&yaml_entry("images", &self.images)?);
        }
        if !self.history.is_empty() {
            out.push_str("\n# Upgrades between releases (`kfctl upgrade`), oldest first. fromRegistry is the release\n");
            out.push_str("# the app came from, still vendored for a rollback (`kfctl upgrade --to FROM`) until `kfctl gc`.\n");
            out.push_str(&yaml_entry("history", &self.history)?);
        }
        Ok(out)
    }

    /// Validate, then write `path` atomically (temporary file + rename).
    pub fn save(&self, path: &Path) -> Result<(), ConfigError> {
        self.validate().map_err(|problems| ConfigError::Invalid { path: path.to_path_buf(), problems })?;
        let text = self.to_commented_yaml()?;
        write_atomically(path, text.as_bytes()).map_err(|source| ConfigError::Write { path: path.to_path_buf(), error: source })
    }
}

/// Write `bytes` to `path` through a temporary file in the same directory, so a reader never
/// sees a half-written file.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    // Readable like any file meant for git (tempfile's default is 0600).
    let mut tmp = tempfile::Builder::new()
        .prefix(".kfctl-")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

fn yaml_string<T: Serialize>(value: &T) -> Result<String, ConfigError> {
    serde_saphyr::to_string(value).map_err(|e| ConfigError::Serialize(e.to_string()))
}

fn yaml_entry<T: Serialize>(key: &str, value: &T) -> Result<String, ConfigError> {
    let mut map = IndexMap::new();
    map.insert(key, value);
    yaml_string(&map)
}

/// A relative path that stays inside the app directory.
fn check_inside(path: &Path) -> Result<(), &'static str> {
    if path.as_os_str().is_empty() {
        return Err("must not be empty");
    }
    for component in path.components() {
        match component {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => return Err("must stay inside the app directory (no `..`)"),
            Component::RootDir | Component::Prefix(_) => return Err("must be relative to the app directory"),
        }
    }
    Ok(())
}

/// A DNS-1123 label, as Kubernetes names and labels need.
pub(crate) fn check_dns_label(name: &str) -> Result<(), &'static str> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok { Ok(()) } else { Err("must be lowercase letters, digits and '-', at most 63 characters") }
}

/// Check a parameter value against its declared kind.
pub fn check_parameter(kind: ParameterKind, value: &str) -> Result<(), String> {
    match kind {
        ParameterKind::Email => {
            let ok = value.split_once('@').is_some_and(|(user, domain)| {
                !user.is_empty() && domain.contains('.') && !value.contains(char::is_whitespace)
            });
            if ok { Ok(()) } else { Err(format!("{value:?} is not an email address")) }
        }
        ParameterKind::BcryptHash => {
            if is_bcrypt_hash(value) {
                Ok(())
            } else {
                Err("is not a bcrypt hash ($2a$/$2b$/$2y$, cost, 53 characters); hint: `kfctl component set dex password=...` computes it".to_string())
            }
        }
        ParameterKind::DnsLabel => check_dns_label(value).map_err(|why| format!("{value:?} {why}")),
    }
}

/// `$2a$`/`$2b$`/`$2y$`, a two-digit cost, then 53 characters of bcrypt's base64.
pub fn is_bcrypt_hash(value: &str) -> bool {
    let b = value.as_bytes();
    b.len() == 60
        && (value.starts_with("$2a$") || value.starts_with("$2b$") || value.starts_with("$2y$"))
        && b[4].is_ascii_digit()
        && b[5].is_ascii_digit()
        && b[6] == b'$'
        && b[7..].iter().all(|c| c.is_ascii_alphanumeric() || *c == b'.' || *c == b'/')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> AppConfig {
        let release = catalog::release("v1.4.1").unwrap();
        let mut config = AppConfig::new(
            "kubeflow",
            release,
            RegistryConfig {
                url: "https://github.com/kubeflow/manifests/archive/refs/tags/v1.4.1.tar.gz".into(),
                digest: Some(release.default_digest.clone()),
                sha256: None,
                path: "registry/v1.4.1".into(),
                mirror: None,
                remotes: vec![RemotePin {
                    url: "https://github.com/argoproj/argo-workflows".into(),
                    git_ref: Some("v3.7.3".into()),
                    path: "remote/github.com/argoproj/argo-workflows/v3.7.3".into(),
                    digest: format!("tree-sha256:{}", "a".repeat(64)),
                }],
            },
            PlatformSpec::default(),
        );
        let dex = config.component_mut("dex").unwrap();
        dex.parameters.insert("email".into(), "admin@example.org".into());
        dex.parameters.insert("passwordHash".into(), "$2y$12$4K/VkmDd1q1Orb3xAt82zu8gk7Ad6ReFR4LCP9UeYE90NLiN9Df72".into());
        dex.images.push(ImageOverride { name: "quay.io/dexidp/dex".into(), new_name: None, new_tag: Some("v2.30.0".into()), digest: None });
        dex.patches.push(PatchConfig {
            path: "patches/dex-replicas.yaml".into(),
            target: Some(PatchTarget { kind: Some("Deployment".into()), name: Some("dex".into()), ..Default::default() }),
        });
        config.components.push(ComponentConfig { path: Some("mine/team-a".into()), ..ComponentConfig::named("team-a", true) });
        config
    }

    #[test]
    fn commented_yaml_round_trips() {
        let config = sample();
        config.validate().unwrap();
        let text = config.to_commented_yaml().unwrap();
        assert!(text.contains("# dex: Dex identity provider"), "{text}");
        assert!(text.contains("# team-a: your own component"), "{text}");
        let back = AppConfig::from_yaml(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(back, config);
    }

    #[test]
    fn apps_pinned_by_archive_bytes_still_load_and_pins_are_checked() {
        let mut config = sample();
        config.registry.digest = None;
        config.registry.sha256 = Some("B".repeat(64));
        config.validate().unwrap();
        assert_eq!(config.registry.pin(), Some(Pin::Bytes("b".repeat(64))));
        let back = AppConfig::from_yaml(&config.to_commented_yaml().unwrap()).unwrap();
        assert_eq!(back, config);

        config.registry.sha256 = None;
        config.registry.remotes[0].digest = format!("sha256:{}", "a".repeat(64));
        config.registry.remotes[0].path = "../outside".into();
        let all = config.validate().unwrap_err().join("\n");
        assert!(all.contains("registry: no digest; hint: re-create the app with `kfctl init --force`"), "{all}");
        assert!(all.contains("registry.remotes[0].digest: a repository is pinned by tree-sha256:HEX"), "{all}");
        assert!(all.contains("registry.remotes[0].path: \"../outside\" must stay inside the app directory"), "{all}");
    }

    #[test]
    fn validation_names_the_field() {
        let mut config = sample();
        config.components[4].name = "foo".into();
        config.components[0].parameters.insert("password".into(), "hunter2".into());
        config.component_mut("user-namespace").unwrap().parameters.insert("user".into(), "not-an-email".into());
        config.component_mut("dex").unwrap().parameters.insert("passwordHash".into(), "hunter2".into());
        let problems = config.validate().unwrap_err();
        let all = problems.join("\n");
        assert!(all.contains("components[4].name: unknown component \"foo\"; hint: `kfctl component list`"), "{all}");
        assert!(all.contains("components[0].parameters.password: plaintext passwords are not stored"), "{all}");
        assert!(!all.contains("hunter2"), "a secret leaked into an error: {all}");
        assert!(all.contains("parameters.user: \"not-an-email\" is not an email address"), "{all}");
        assert!(all.contains("parameters.passwordHash: is not a bcrypt hash"), "{all}");
        assert_eq!(problems.len(), 4, "{all}");
    }

    #[test]
    fn image_overrides_round_trip_are_validated_and_recorded_by_image() {
        let mut config = sample();
        let digest = format!("sha256:{}", "ab".repeat(32));
        let to_mirror = |name: &str, repository: &str| AppImageOverride {
            name: name.into(),
            new_name: Some(format!("registry.internal:5000/kf/{repository}")),
            new_tag: None,
            digest: Some(digest.clone()),
        };
        config.record_image_overrides([to_mirror("gcr.io/a/b:1", "gcr.io/a/b"), to_mirror("quay.io/c/d:2", "quay.io/c/d")]);
        let mut again = to_mirror("gcr.io/a/b:1", "gcr.io/a/b");
        again.digest = Some(format!("sha256:{}", "cd".repeat(32)));
        config.record_image_overrides([again.clone()]);
        assert_eq!(config.images.overrides.len(), 2, "recorded once per image");
        assert_eq!(config.images.overrides[0], again);
        config.validate().unwrap();
        let text = config.to_commented_yaml().unwrap();
        assert!(text.contains("# Image overrides, applied after rendering"), "{text}");
        assert_eq!(AppConfig::from_yaml(&text).unwrap(), config);

        config.images.overrides[0].digest = Some("sha256:abc".into());
        config.images.overrides[1].new_name = Some("reg/x:1".into());
        config.images.overrides.push(AppImageOverride { name: "https://x".into(), new_name: None, new_tag: Some("-bad".into()), digest: None });
        let all = config.validate().unwrap_err().join("\n");
        assert!(all.contains("images.overrides[0].digest: \"sha256:abc\" is not a digest; hint: sha256: and 64 lowercase hex digits"), "{all}");
        assert!(all.contains("images.overrides[1].newName: \"reg/x:1\" has a tag or digest"), "{all}");
        assert!(all.contains("images.overrides[2].name: \"https://x\" is not an image reference"), "{all}");
        assert!(all.contains("images.overrides[2].newTag: \"-bad\" is not a tag"), "{all}");
    }

    #[test]
    fn paths_must_stay_inside_the_app() {
        let mut config = sample();
        config.components.last_mut().unwrap().path = Some("../elsewhere".into());
        config.registry.path = "/abs".into();
        let all = config.validate().unwrap_err().join("\n");
        assert!(all.contains("components[22].path: \"../elsewhere\" must stay inside"), "{all}");
        assert!(all.contains("registry.path: \"/abs\" must be relative"), "{all}");
    }

    #[test]
    fn unknown_fields_and_versions_are_reported() {
        let text = sample().to_commented_yaml().unwrap().replace("version: v1.4.1", "version: v9.9");
        let config = AppConfig::from_yaml(&text).unwrap();
        let all = config.validate().unwrap_err().join("\n");
        assert!(all.contains("version: Kubeflow version \"v9.9\" is not supported; supported versions: v1.4.1"), "{all}");
        let err = AppConfig::from_yaml(&format!("{text}\nbogus: 1\n")).unwrap_err();
        assert!(err.contains("bogus"), "{err}");
    }

    #[test]
    fn missing_dependencies_are_listed() {
        let mut config = sample();
        config.component_mut("istio").unwrap().enabled = false;
        let missing = config.missing_dependencies();
        assert!(missing.contains(&("dex".to_string(), "istio".to_string())), "{missing:?}");
        assert!(!missing.iter().any(|(c, _)| c == "seldon"), "disabled components need nothing");
    }
}
