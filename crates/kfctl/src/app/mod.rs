//! The app directory: kfctl.yaml, the vendored registry, and rendering per component.
//!
//! ```text
//! DIR/kfctl.yaml              the declarative config (crate::config)
//! DIR/registry/v1.4.1/...     the release, unpacked and verified by `kfctl init`
//! DIR/<anything>              the user's patch files and own kustomize directories
//! ```
//! Every path in kfctl.yaml is relative to DIR, so the directory can be moved, committed to git
//! and used on another machine, offline.

pub mod settings;

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use indexmap::IndexMap;
use serde_json::{Map, Value, json};

use crate::config::{self, AppConfig, ComponentConfig, ConfigError, RegistryConfig};
use crate::platform::PlatformSpec;
use crate::progress::{Progress, ProgressSink};
use crate::registry::catalog::{self, ParameterTarget, Release, UnknownVersion};
use crate::registry::digest::{self, Pin};
use crate::registry::remote::{self, Fetched, RemoteFetcher, VendoredRemotes};
use crate::registry::{self, RegistryError, UnpackLimits};
use kfctl_render::RemoteSource;

/// An app directory and its parsed config.
#[derive(Debug, Clone)]
pub struct App {
    /// The app directory (holding kfctl.yaml).
    pub dir: PathBuf,
    /// kfctl.yaml, validated.
    pub config: AppConfig,
}

/// What `kfctl init` needs.
#[derive(Debug, Clone, Default)]
pub struct InitOptions {
    /// The app directory to create (or fill, if it exists and holds no kfctl.yaml).
    pub dir: PathBuf,
    /// The registry archive: `https://` or `file://` URL, or a local path.
    pub registry: String,
    /// The release's expected pin: `tree-sha256:HEX` (its unpacked content) or `sha256:HEX` /
    /// bare HEX (the archive's bytes). When None: the catalog's pin if `registry` is a release's
    /// default URL or the archive holds a catalog release, otherwise the digest is computed and
    /// recorded (not verified).
    pub digest: Option<String>,
    /// Read remote resources through this mirror (`BASE/HOST/PATH`), recorded in kfctl.yaml.
    pub mirror: Option<String>,
    /// The Kubeflow version; when None, taken from the registry URL or the archive's top-level
    /// directory (`manifests-1.4.1/`).
    pub version: Option<String>,
    /// The platform; `existing` when None.
    pub platform: Option<PlatformSpec>,
    /// The app's name; `kubeflow` when None.
    pub name: Option<String>,
    /// Replace an existing app's kfctl.yaml and vendored registry.
    pub force: bool,
}

/// All objects of an app, in render order (components in catalog order, then the user's own).
#[derive(Debug, Clone, Default)]
pub struct RenderedApp {
    pub objects: Vec<ComponentObject>,
}

/// A release vendored into an app directory by [`App::vendor_release`].
#[derive(Debug, Clone)]
pub struct VendoredRelease {
    pub release: &'static Release,
    /// Its registry config, paths relative to the app directory.
    pub registry: RegistryConfig,
    /// What this call created in the app directory (to remove again if the upgrade is abandoned
    /// before kfctl.yaml names it).
    pub created: Vec<PathBuf>,
}

/// One rendered object and the component it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct ComponentObject {
    pub component: String,
    pub object: Value,
}

/// What can go wrong with an app directory.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Version(#[from] UnknownVersion),
    #[error("{dir} already holds an app (kfctl.yaml)\n  hint: pass --force to replace it, or choose another directory")]
    AlreadyInitialised { dir: PathBuf },
    #[error("cannot create {dir}: its parent directory does not exist\n  hint: create {parent} first")]
    NoParent { dir: PathBuf, parent: PathBuf },
    #[error("cannot tell which Kubeflow version {registry} holds\n  hint: pass --version (supported: {supported})")]
    UnknownArchiveVersion { registry: String, supported: String },
    #[error("{registry} does not look like Kubeflow {version}: {missing} is missing\n  hint: check --version, or the archive")]
    CatalogMismatch { registry: String, version: String, missing: String },
    #[error("the vendored registry {path} is missing\n  hint: restore it (it belongs in git with kfctl.yaml) or re-create the app with `kfctl init --force`")]
    RegistryMissing { path: PathBuf },
    #[error("component {component:?}: {path} does not exist\n  hint: the path in kfctl.yaml is relative to the app directory")]
    MissingPath { component: String, path: PathBuf },
    #[error("cannot render component {component:?} ({dir}): {message}")]
    Render { component: String, dir: PathBuf, message: String },
    #[error("component {component:?}: cannot apply parameter {parameter}: {message}")]
    Parameter { component: String, parameter: String, message: String },
    #[error("component {component:?}: unknown variant {variant:?}\n  hint: known variants: {known}; or remove `variant:` to let the platform choose")]
    UnknownVariant { component: String, variant: String, known: String },
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: std::io::Error },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> AppError + '_ {
    move |source| AppError::Io { path: path.to_path_buf(), error: source }
}

impl App {
    /// Read `dir/kfctl.yaml` and check that the vendored registry is there.
    pub fn open(dir: &Path) -> Result<App, AppError> {
        let config = AppConfig::load(&dir.join(config::FILE_NAME))?;
        let app = App { dir: dir.to_path_buf(), config };
        if !app.registry_dir().is_dir() {
            return Err(AppError::RegistryMissing { path: app.registry_dir() });
        }
        Ok(app)
    }

    /// Create an app directory: fetch the registry, verify its sha256, unpack it safely and
    /// write kfctl.yaml with the release's base components enabled. Blocking. Everything is
    /// staged in a hidden directory next to `opts.dir` and moved into place at the end, so a
    /// failure leaves no trace.
    pub fn init(opts: &InitOptions) -> Result<App, AppError> {
        App::init_with_progress(opts, &crate::progress::Silent)
    }

    /// [`App::init`], reporting each step (fetched, verified, unpacked, written) to `sink`.
    pub fn init_with_progress(opts: &InitOptions, sink: &dyn ProgressSink) -> Result<App, AppError> {
        let dir = &opts.dir;
        if dir.join(config::FILE_NAME).exists() && !opts.force {
            return Err(AppError::AlreadyInitialised { dir: dir.clone() });
        }
        let parent = match dir.parent() {
            Some(p) if p.as_os_str().is_empty() => PathBuf::from("."),
            Some(p) => p.to_path_buf(),
            None => PathBuf::from("/"),
        };
        if !parent.is_dir() {
            return Err(AppError::NoParent { dir: dir.clone(), parent });
        }
        // Fail on a bad version or digest before touching the disk.
        let source = ReleaseSource { registry: opts.registry.clone(), digest: opts.digest.clone(), mirror: opts.mirror.clone(), version: opts.version.clone() };
        source.check()?;

        remove_abandoned_staging(&parent);
        // The owner's pid is in the name, so a later init tells this staging directory from one
        // a killed run left behind, whatever the moment it was killed.
        let prefix = format!("{STAGING_PREFIX}{}-", std::process::id());
        let staging = tempfile::Builder::new().prefix(&prefix).tempdir_in(&parent).map_err(io_err(&parent))?;
        let (release, registry_config) = stage_release(&source, staging.path(), sink)?;
        let registry_rel = registry_config.path.clone();
        let name = opts.name.clone().unwrap_or_else(|| "kubeflow".to_string());
        let config = AppConfig::new(&name, release, registry_config, opts.platform.clone().unwrap_or_default());
        config.save(&staging.path().join(config::FILE_NAME))?;

        move_into_place(staging, dir, &registry_rel)?;
        Ok(App { dir: dir.clone(), config })
    }

    /// Vendor another release into this app directory, next to the one it uses, for `kfctl
    /// upgrade`: `registry/<version>` and its remote resources under `remote/`. A copy already
    /// there that matches `reuse` (a release this app came from, recorded in its history) is used
    /// as it is, offline. Otherwise the release is fetched and verified as `kfctl init` does,
    /// staged, and moved in; a remote resource whose path is taken by different content (another
    /// release's subset of the same repository) goes next to it. kfctl.yaml is not touched.
    pub fn vendor_release(&self, source: &ReleaseSource, reuse: Option<&RegistryConfig>, sink: &dyn ProgressSink) -> Result<VendoredRelease, AppError> {
        let say = |text: String| sink.report(Progress::Message { text });
        if let Some(recorded) = reuse
            && self.verify_vendored(recorded)
        {
            let release = catalog::release(source.version.as_deref().unwrap_or_default())?;
            say(format!("Kubeflow {} is still vendored in {} (verified): nothing to fetch", release.version, recorded.path.display()));
            return Ok(VendoredRelease { release, registry: recorded.clone(), created: Vec::new() });
        }
        source.check()?;
        remove_abandoned_staging(&self.dir);
        let prefix = format!("{STAGING_PREFIX}{}-", std::process::id());
        let staging = tempfile::Builder::new().prefix(&prefix).tempdir_in(&self.dir).map_err(io_err(&self.dir))?;
        let (release, mut registry) = stage_release(source, staging.path(), sink)?;
        let mut created = Vec::new();
        let target = self.dir.join(&registry.path);
        let staged = staging.path().join(&registry.path);
        if target.exists() {
            // Left by an earlier, interrupted upgrade, or by hand: replaced by the verified copy.
            std::fs::rename(&target, staging.path().join("replaced-registry")).map_err(io_err(&target))?;
        }
        std::fs::create_dir_all(target.parent().unwrap_or(&self.dir)).map_err(io_err(&self.dir))?;
        std::fs::rename(&staged, &target).map_err(io_err(&target))?;
        created.push(target);
        for pin in &mut registry.remotes {
            let staged = staging.path().join(&pin.path);
            let mut target = self.dir.join(&pin.path);
            if target.exists() {
                let same = match Pin::parse(&pin.digest) {
                    Ok(Pin::Tree(_)) => digest::tree_digest(&target).ok().map(|d| d.to_string()),
                    _ => digest::file_digest(&target).ok().map(|d| d.to_string()),
                };
                if same.as_deref() == Some(pin.digest.as_str()) {
                    continue;
                }
                let hex = pin.digest.rsplit(':').next().unwrap_or_default();
                let mut name = target.file_name().unwrap_or_default().to_os_string();
                name.push(format!("-{}", &hex[..hex.len().min(12)]));
                target.set_file_name(name);
                pin.path.set_file_name(target.file_name().unwrap_or_default());
                if target.exists() {
                    continue; // the same content, placed by an earlier run
                }
            }
            std::fs::create_dir_all(target.parent().unwrap_or(&self.dir)).map_err(io_err(&self.dir))?;
            std::fs::rename(&staged, &target).map_err(io_err(&target))?;
            created.push(target);
        }
        Ok(VendoredRelease { release, registry, created })
    }

    /// Whether the release and remote resources `registry` names are in this app directory and
    /// match their pins.
    pub fn verify_vendored(&self, registry: &RegistryConfig) -> bool {
        let release_dir = self.dir.join(&registry.path);
        let release_ok = registry.pin().is_some_and(|pin| match pin {
            Pin::Tree(_) => digest::tree_digest(&release_dir).is_ok_and(|d| d == pin),
            // An app pinned by archive bytes: the bytes are gone, the directory is what there is.
            Pin::Bytes(_) => release_dir.is_dir(),
        });
        release_ok
            && registry.vendored_remotes().iter().all(|r| {
                let path = self.dir.join(&r.path);
                match &r.digest {
                    Pin::Tree(_) => digest::tree_digest(&path).is_ok_and(|d| d == r.digest),
                    Pin::Bytes(_) => digest::file_digest(&path).is_ok_and(|d| d == r.digest),
                }
            })
    }

    /// Write kfctl.yaml (validated, commented, atomically).
    pub fn save(&self) -> Result<(), AppError> {
        self.config.save(&self.dir.join(config::FILE_NAME))?;
        Ok(())
    }

    /// The unpacked release inside the app directory.
    pub fn registry_dir(&self) -> PathBuf {
        self.dir.join(&self.config.registry.path)
    }

    /// The catalog of the app's release.
    pub fn release(&self) -> Result<&'static Release, AppError> {
        Ok(self.config.release()?)
    }

    /// For each enabled catalog component that has variants, which one renders and why, as
    /// lines for `kfctl init`/`kfctl deploy` ("istio: overlay gke, because the platform is gke").
    pub fn variant_lines(&self) -> Result<Vec<String>, AppError> {
        let release = self.release()?;
        let platform = self.config.platform.kind.as_str();
        let mut lines = Vec::new();
        for component in self.config.components.iter().filter(|c| c.enabled && c.path.is_none()) {
            let Some(spec) = release.component(&component.name).filter(|s| !s.variants.is_empty()) else { continue };
            let Some(choice) = spec.choose_variant(component.variant.as_deref(), platform) else { continue };
            let mut line = format!("{}: overlay {}, because {}", spec.name, choice.name, choice.reason);
            let others: Vec<&str> = spec.variant_names().into_iter().filter(|n| *n != choice.name).collect();
            line.push_str(&format!(" (others: {}; choose with `variant:` in kfctl.yaml)", others.join(", ")));
            if let Some(note) = choice.note {
                line.push_str(&format!("\n  note: {note}"));
            }
            lines.push(line);
        }
        Ok(lines)
    }

    /// Enabled components in render order: catalog order, then the user's own in config order.
    pub fn enabled_components(&self) -> Result<Vec<&ComponentConfig>, AppError> {
        let release = self.release()?;
        let rank = |c: &ComponentConfig| release.components.iter().position(|s| s.name == c.name).unwrap_or(usize::MAX);
        let mut enabled: Vec<_> = self.config.components.iter().filter(|c| c.enabled).collect();
        enabled.sort_by_key(|c| rank(c)); // stable: the user's own keep their config order
        Ok(enabled)
    }

    /// Render every enabled component with the native kustomize renderer, applying its
    /// parameters, patches and image overrides through a generated overlay. Blocking;
    /// components render in parallel on scoped threads.
    ///
    /// Then the app's image overrides (`images.overrides`) are applied to every place an image
    /// is named (`images::rewrite`): this is the render apply, diff, deploy, upgrade and the web
    /// app all use.
    pub fn render(&self) -> Result<RenderedApp, AppError> {
        let mut rendered = self.render_as_released()?;
        let targets = self.config.images.targets();
        if !targets.is_empty() {
            let rules = &self.release()?.images;
            crate::images::rewrite(rendered.objects.iter_mut().map(|o| &mut o.object), rules, &targets);
        }
        Ok(rendered)
    }

    /// [`App::render`] without the image overrides: the images as the release (and the
    /// components' kustomize `images:`) name them, which is what overrides are written against.
    pub fn render_as_released(&self) -> Result<RenderedApp, AppError> {
        let components = self.enabled_components()?;
        let remotes = VendoredRemotes::new(&self.dir, self.config.registry.vendored_remotes());
        let scratch = tempfile::Builder::new().prefix("kfctl-render-").tempdir().map_err(io_err(Path::new("/tmp")))?;
        let mut jobs = Vec::with_capacity(components.len());
        for (i, component) in components.iter().enumerate() {
            jobs.push(self.render_job(component, &scratch.path().join(format!("{i:02}-{}", component.name)))?);
        }

        let next = AtomicUsize::new(0);
        let results: Mutex<BTreeMap<usize, Result<Vec<Value>, AppError>>> = Mutex::new(BTreeMap::new());
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get()).min(jobs.len()).max(1);
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(job) = jobs.get(i) else { break };
                        let result = job.run(&remotes);
                        results.lock().unwrap_or_else(|e| e.into_inner()).insert(i, result);
                    }
                });
            }
        });

        let mut objects = Vec::new();
        for (i, result) in results.into_inner().unwrap_or_else(|e| e.into_inner()) {
            let component = &jobs[i].component;
            objects.extend(result?.into_iter().map(|object| ComponentObject { component: component.clone(), object }));
        }
        // The choices under `cluster:` (auto-configured by the platform, reviewable in kfctl.yaml):
        // storage class or emptyDir, GPU option, gateway Service type.
        settings::apply_settings(&self.config.cluster, &mut objects);
        Ok(RenderedApp { objects })
    }

    /// Render one component as configured by `component` (which need not be in kfctl.yaml: an
    /// upgrade asks what a component renders without one of the user's patches). Blocking.
    pub fn render_component(&self, component: &ComponentConfig) -> Result<Vec<Value>, AppError> {
        let remotes = VendoredRemotes::new(&self.dir, self.config.registry.vendored_remotes());
        let scratch = tempfile::Builder::new().prefix("kfctl-render-").tempdir().map_err(io_err(Path::new("/tmp")))?;
        self.render_job(component, &scratch.path().join(&component.name))?.run(&remotes)
    }

    /// Decide what to build for one component: its vendored directories as they are, or an
    /// overlay written to `overlay_dir` that adds the user's parameters, patches and images.
    fn render_job(&self, component: &ComponentConfig, overlay_dir: &Path) -> Result<RenderJob, AppError> {
        let release = self.release()?;
        let spec = release.component(&component.name);
        let bases: Vec<PathBuf> = match (&component.path, spec) {
            (Some(path), _) => vec![self.dir.join(path)],
            (None, Some(spec)) => {
                let choice = spec
                    .choose_variant(component.variant.as_deref(), self.config.platform.kind.as_str())
                    .ok_or_else(|| AppError::UnknownVariant {
                        component: component.name.clone(),
                        variant: component.variant.clone().unwrap_or_default(),
                        known: spec.variant_names().join(", "),
                    })?;
                choice.paths.iter().map(|p| self.registry_dir().join(p)).collect()
            }
            (None, None) => unreachable!("validated: a component without a path is in the catalog"),
        };
        let namespace = spec.and_then(|s| s.namespace.as_deref());
        for base in &bases {
            if !base.is_dir() {
                return Err(AppError::MissingPath { component: component.name.clone(), path: base.clone() });
            }
        }
        let customised = !component.parameters.is_empty()
            || !component.patches.is_empty()
            || !component.images.is_empty()
            || namespace.is_some();
        if !customised {
            return Ok(RenderJob { component: component.name.clone(), dirs: bases });
        }
        let overlay = self.write_overlay(component, &bases, overlay_dir)?;
        Ok(RenderJob { component: component.name.clone(), dirs: vec![overlay] })
    }

    /// Write `overlay_dir/kustomization.yaml` referencing `bases` (by relative path, as kustomize
    /// wants) plus the component's parameters, patch files and image overrides.
    fn write_overlay(&self, component: &ComponentConfig, bases: &[PathBuf], overlay_dir: &Path) -> Result<PathBuf, AppError> {
        std::fs::create_dir_all(overlay_dir).map_err(io_err(overlay_dir))?;
        let overlay_abs = std::fs::canonicalize(overlay_dir).map_err(io_err(overlay_dir))?;
        let mut resources = Vec::new();
        for base in bases {
            let base_abs = std::fs::canonicalize(base).map_err(io_err(base))?;
            resources.push(Value::String(relative_path(&overlay_abs, &base_abs).display().to_string()));
        }
        let mut kustomization = Map::new();
        kustomization.insert("apiVersion".into(), json!("kustomize.config.k8s.io/v1beta1"));
        kustomization.insert("kind".into(), json!("Kustomization"));
        kustomization.insert("resources".into(), Value::Array(resources));
        // What upstream applies with `kubectl apply -n NAMESPACE` (objects that name no namespace).
        if let Some(namespace) = self.release()?.component(&component.name).and_then(|s| s.namespace.as_deref()) {
            kustomization.insert("namespace".into(), json!(namespace));
        }

        let mut patches = Vec::new();
        let mut generators = Vec::new();
        if !component.parameters.is_empty() {
            let (param_patches, param_generators) = self.parameter_overlay(component, overlay_dir)?;
            patches.extend(param_patches);
            generators.extend(param_generators);
        }
        for (i, patch) in component.patches.iter().enumerate() {
            let source = self.dir.join(&patch.path);
            let file_name = format!("patch-{i:02}-{}", patch.path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default());
            // Copied in: kustomize refuses patch files outside the kustomization's directory.
            std::fs::copy(&source, overlay_dir.join(&file_name)).map_err(io_err(&source))?;
            let mut entry = Map::new();
            entry.insert("path".into(), Value::String(file_name));
            if let Some(target) = &patch.target {
                entry.insert("target".into(), serde_json::to_value(target).unwrap_or(Value::Null));
            }
            patches.push(Value::Object(entry));
        }
        if !generators.is_empty() {
            kustomization.insert("configMapGenerator".into(), Value::Array(generators));
        }
        if !patches.is_empty() {
            kustomization.insert("patches".into(), Value::Array(patches));
        }
        if !component.images.is_empty() {
            kustomization.insert("images".into(), serde_json::to_value(&component.images).unwrap_or(Value::Null));
        }
        // kfctl_render's writer quotes what a YAML 1.1 reader (kustomize) would misread.
        let text = kfctl_render::yaml::to_string(&Value::Object(kustomization));
        let file = overlay_dir.join("kustomization.yaml");
        std::fs::write(&file, text).map_err(io_err(&file))?;
        Ok(overlay_dir.to_path_buf())
    }

    /// Turn catalog parameters into overlay patches (inline files in `overlay_dir`) and
    /// configMapGenerator merges.
    fn parameter_overlay(&self, component: &ComponentConfig, overlay_dir: &Path) -> Result<(Vec<Value>, Vec<Value>), AppError> {
        let release = self.release()?;
        let Some(spec) = release.component(&component.name) else { return Ok((Vec::new(), Vec::new())) };
        let param_err = |parameter: &str, message: String| AppError::Parameter {
            component: component.name.clone(),
            parameter: parameter.to_string(),
            message,
        };
        // Group edits per (ConfigMap file, key) so each embedded document gets one patch.
        let mut embedded: IndexMap<(&str, &str), Vec<(&str, &str, &str)>> = IndexMap::new();
        let mut literals: IndexMap<&str, Vec<String>> = IndexMap::new();
        let mut fields: IndexMap<&str, Vec<(&str, &str, &str)>> = IndexMap::new();
        for (name, value) in &component.parameters {
            let Some(param) = spec.parameter(name) else { continue }; // validation reported it
            match &param.target {
                ParameterTarget::EmbeddedYaml { file, key, pointer } => {
                    embedded.entry((file, key)).or_default().push((name.as_str(), pointer, value.as_str()))
                }
                ParameterTarget::GeneratorLiteral { generator, key } => {
                    literals.entry(generator).or_default().push(format!("{key}={value}"))
                }
                ParameterTarget::Field { file, pointer } => {
                    fields.entry(file).or_default().push((name.as_str(), pointer, value.as_str()))
                }
            }
        }
        let mut patches = Vec::new();
        // A JSON patch per object file: it may replace any field, the name included (a strategic
        // merge patch finds its target by name, so it could not rename the user's Profile).
        for (file, edits) in fields {
            let path = self.registry_dir().join(file);
            let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
            let object = kfctl_render::yaml::parse_documents(&text, &path)
                .map_err(|e| param_err(edits[0].0, e.to_string()))?
                .into_iter()
                .next()
                .unwrap_or_default();
            let (group, version) = match object.pointer("/apiVersion").and_then(Value::as_str).unwrap_or_default().split_once('/') {
                Some((group, version)) => (group.to_string(), version.to_string()),
                None => (String::new(), object.pointer("/apiVersion").and_then(Value::as_str).unwrap_or_default().to_string()),
            };
            let mut target = Map::new();
            if !group.is_empty() {
                target.insert("group".into(), json!(group));
            }
            target.insert("version".into(), json!(version));
            target.insert("kind".into(), object.pointer("/kind").cloned().unwrap_or_default());
            target.insert("name".into(), object.pointer("/metadata/name").cloned().unwrap_or_default());
            let mut operations = Vec::new();
            for (name, pointer, value) in edits {
                if object.pointer(pointer).is_none() {
                    return Err(param_err(name, format!("{} has no {pointer}", path.display())));
                }
                operations.push(json!({ "op": "replace", "path": pointer, "value": value }));
            }
            let patch = kfctl_render::yaml::to_string(&Value::Array(operations));
            patches.push(json!({ "patch": patch, "target": Value::Object(target) }));
        }
        for (n, ((file, key), edits)) in embedded.into_iter().enumerate() {
            let path = self.registry_dir().join(file);
            let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
            let configmap = kfctl_render::yaml::parse_documents(&text, &path)
                .map_err(|e| param_err(edits[0].0, e.to_string()))?
                .into_iter()
                .next()
                .unwrap_or_default();
            let cm_name = configmap.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string();
            let embedded_text = configmap
                .pointer(&format!("/data/{key}"))
                .and_then(Value::as_str)
                .ok_or_else(|| param_err(edits[0].0, format!("{} has no data.{key}", path.display())))?;
            // The embedded document is read by Go YAML libraries, so YAML 1.1 rules apply.
            let mut document = kfctl_render::yaml::parse_document(embedded_text, &path)
                .map_err(|e| param_err(edits[0].0, format!("data.{key}: {e}")))?;
            for (name, pointer, value) in edits {
                let slot = document
                    .pointer_mut(pointer)
                    .ok_or_else(|| param_err(name, format!("{} data.{key} has no {pointer}", path.display())))?;
                *slot = Value::String(value.to_string());
            }
            let new_text = kfctl_render::yaml::to_string(&document);
            let patch = json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": { "name": cm_name },
                "data": { key: new_text },
            });
            let file_name = format!("parameters-{n:02}.yaml");
            let patch_text = kfctl_render::yaml::to_string(&patch);
            let patch_path = overlay_dir.join(&file_name);
            std::fs::write(&patch_path, patch_text).map_err(io_err(&patch_path))?;
            patches.push(json!({ "path": file_name, "target": { "kind": "ConfigMap", "name": cm_name } }));
        }
        let generators = literals
            .into_iter()
            .map(|(generator, literals)| json!({ "name": generator, "behavior": "merge", "literals": literals }))
            .collect();
        Ok((patches, generators))
    }
}

/// Where a release comes from: the flags `kfctl init` and `kfctl upgrade` share.
#[derive(Debug, Clone, Default)]
pub struct ReleaseSource {
    /// The registry archive: `https://` or `file://` URL, or a local path.
    pub registry: String,
    /// The expected pin (see [`InitOptions::digest`]).
    pub digest: Option<String>,
    /// Read remote resources through this mirror.
    pub mirror: Option<String>,
    /// The Kubeflow version; when None, taken from the registry URL or the archive.
    pub version: Option<String>,
}

impl ReleaseSource {
    /// A bad version or digest, found before anything is fetched.
    fn check(&self) -> Result<(), AppError> {
        self.version.as_deref().map(catalog::release).transpose()?;
        self.digest.as_deref().map(Pin::parse).transpose().map_err(|message| RegistryError::InvalidPin { message })?;
        Ok(())
    }
}

/// Fetch, verify and unpack a release into `staging/registry/<version>`, and vendor the remote
/// resources its kustomizations name into `staging/remote/`. Returns the release and its
/// registry config (paths relative to `staging`, as they will be in the app directory).
fn stage_release(source: &ReleaseSource, staging: &Path, sink: &dyn ProgressSink) -> Result<(&'static Release, RegistryConfig), AppError> {
    let say = |text: String| sink.report(Progress::Message { text });
    let wanted = source.version.as_deref().map(catalog::release).transpose()?;
    let by_url = catalog::release_for_url(&source.registry);
    let given = source.digest.as_deref().map(Pin::parse).transpose().map_err(|message| RegistryError::InvalidPin { message })?;
    say(format!("fetching {}", source.registry));
    let fetched = registry::fetch(&source.registry, staging)?;
    say(format!("fetched {} bytes", fetched.size));
    if let Some(Pin::Bytes(expected)) = &given {
        registry::verify(&source.registry, expected, &fetched.sha256)?;
        say("archive sha256 verified".to_string());
    }
    let unpacked = staging.join("release");
    let report = registry::unpack(fetched.file.path(), &source.registry, &unpacked, &UnpackLimits::default())?;
    say(format!("unpacked {} files ({} bytes), {} directories, {} links", report.files, report.bytes, report.dirs, report.links));
    drop(fetched);

    let release = match wanted.or(by_url) {
        Some(r) => r,
        None => report
            .stripped_prefix
            .as_deref()
            .and_then(registry::version_from_prefix)
            .and_then(|v| catalog::release(&v).ok())
            .ok_or_else(|| AppError::UnknownArchiveVersion {
                registry: source.registry.clone(),
                supported: catalog::supported_versions(),
            })?,
    };
    let tree = digest::tree_digest(&unpacked).map_err(io_err(&unpacked))?;
    // The content pin to check: the one given, else the catalog's (the same tree, however
    // the archive was compressed, from wherever it came).
    let expected = match &given {
        Some(pin @ Pin::Tree(_)) => Some(pin.clone()),
        Some(Pin::Bytes(_)) => None,
        None => Pin::parse(&release.default_digest).ok(),
    };
    if let Some(expected) = &expected {
        if *expected != tree {
            return Err(RegistryError::ContentMismatch {
                source_name: source.registry.clone(),
                what: format!("Kubeflow {}", release.version),
                expected: expected.to_string(),
                actual: tree.to_string(),
            }
            .into());
        }
        say(format!("content verified ({tree})"));
    }
    // Every directory the catalog may build, variants included, so a later change of
    // platform or `variant:` needs nothing the app directory lacks.
    for (_, path) in release.all_paths() {
        if !unpacked.join(path).join("kustomization.yaml").is_file() {
            return Err(AppError::CatalogMismatch {
                registry: source.registry.clone(),
                version: release.version.to_string(),
                missing: format!("{path}/kustomization.yaml"),
            });
        }
    }
    let component_dirs: Vec<(String, PathBuf)> =
        release.all_paths().into_iter().map(|(component, path)| (component.to_string(), unpacked.join(path))).collect();
    let fetcher = RemoteFetcher::new(source.mirror.as_deref(), remote::default_cache_dir());
    let remotes = vendor_remotes(&component_dirs, &fetcher, staging, &say)?;

    let registry_rel = Path::new("registry").join(&release.version);
    let staged_registry = staging.join(&registry_rel);
    std::fs::create_dir_all(staged_registry.parent().unwrap_or(staging)).map_err(io_err(staging))?;
    std::fs::rename(&unpacked, &staged_registry).map_err(io_err(&staged_registry))?;

    // A local path is recorded absolute: relative to the current directory it would mean nothing later.
    let url = if source.registry.contains("://") {
        source.registry.clone()
    } else {
        std::fs::canonicalize(&source.registry).map(|p| p.display().to_string()).unwrap_or_else(|_| source.registry.clone())
    };
    let registry_config = RegistryConfig {
        url,
        digest: Some(tree.to_string()),
        sha256: None,
        path: registry_rel,
        mirror: source.mirror.clone(),
        remotes,
    };
    Ok((release, registry_config))
}

/// One unit of parallel rendering: the directories to build for a component, in order.
struct RenderJob {
    component: String,
    dirs: Vec<PathBuf>,
}

impl RenderJob {
    fn run(&self, remotes: &dyn RemoteSource) -> Result<Vec<Value>, AppError> {
        let mut objects = Vec::new();
        for dir in &self.dirs {
            let built = build_kustomization(dir, remotes).map_err(|message| AppError::Render {
                component: self.component.clone(),
                dir: dir.clone(),
                message,
            })?;
            objects.extend(built);
        }
        Ok(objects)
    }
}

/// Render one kustomization directory into its objects with the native kustomize engine.
fn build_kustomization(dir: &Path, remotes: &dyn RemoteSource) -> Result<Vec<Value>, String> {
    let build = kfctl_render::build_with_remotes(dir, remotes).map_err(|e| e.to_string())?;
    Ok(build.resources.into_iter().map(|r| Value::Object(r.object)).collect())
}

/// Where `kfctl init` vendors remote resources, relative to the app directory.
const REMOTE_DIR: &str = "remote";

/// Render every component directory (component name, directory) once, fetching the remote
/// resources their kustomizations name with `fetcher`, and copy what the builds read into
/// `staging/remote/`: of a repository, the kustomization roots the builds loaded (everything they
/// read lies below those); a file as it is. Returns the pins.
fn vendor_remotes(
    component_dirs: &[(String, PathBuf)],
    fetcher: &RemoteFetcher,
    staging: &Path,
    say: &dyn Fn(String),
) -> Result<Vec<config::RemotePin>, AppError> {
    let mut roots = Vec::new();
    for (component, dir) in component_dirs {
        let build = kfctl_render::build_with_remotes(dir, fetcher).map_err(|e| AppError::Render {
            component: component.clone(),
            dir: dir.clone(),
            message: e.to_string(),
        })?;
        roots.extend(build.roots);
    }
    let mut pins = Vec::new();
    for fetched in fetcher.fetched() {
        let pin = match fetched {
            Fetched::Repo { spec, dir } => {
                let rel = Path::new(REMOTE_DIR).join(remote::repo_path(&spec).map_err(|message| AppError::Render {
                    component: String::new(),
                    dir: dir.clone(),
                    message,
                })?);
                let target = staging.join(&rel);
                let dir = std::fs::canonicalize(&dir).map_err(io_err(&dir))?;
                let mut needed: Vec<&Path> = roots.iter().filter_map(|r| r.strip_prefix(&dir).ok()).collect();
                needed.sort();
                needed.dedup();
                let mut kept: Vec<&Path> = Vec::new();
                for path in needed {
                    if !kept.iter().any(|k| path.starts_with(k)) {
                        kept.push(path);
                    }
                }
                for sub in &kept {
                    copy_tree(&dir.join(sub), &target.join(sub))?;
                }
                std::fs::create_dir_all(&target).map_err(io_err(&target))?;
                let digest = digest::tree_digest(&target).map_err(io_err(&target))?;
                say(format!("vendored {} at {} ({} directories) as {}", remote::VendoredRemote::repo_url(&spec), spec.git_ref, kept.len(), rel.display()));
                config::RemotePin { url: remote::VendoredRemote::repo_url(&spec), git_ref: Some(spec.git_ref.clone()), path: rel, digest: digest.to_string() }
            }
            Fetched::File { url, path } => {
                let rel = Path::new(REMOTE_DIR).join(remote::cache_path(&url).map_err(|message| AppError::Render {
                    component: String::new(),
                    dir: path.clone(),
                    message,
                })?);
                let target = staging.join(&rel);
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent).map_err(io_err(parent))?;
                }
                std::fs::copy(&path, &target).map_err(io_err(&path))?;
                let digest = digest::file_digest(&target).map_err(io_err(&target))?;
                say(format!("vendored {url} as {}", rel.display()));
                config::RemotePin { url, git_ref: None, path: rel, digest: digest.to_string() }
            }
        };
        pins.push(pin);
    }
    Ok(pins)
}

/// Copy the directory `from` to `to` (created), following symbolic links: the loader resolves
/// them and reads their targets, so the copy holds what it read.
fn copy_tree(from: &Path, to: &Path) -> Result<(), AppError> {
    std::fs::create_dir_all(to).map_err(io_err(to))?;
    for entry in std::fs::read_dir(from).map_err(io_err(from))? {
        let entry = entry.map_err(io_err(from))?;
        let source = entry.path();
        let target = to.join(entry.file_name());
        let meta = std::fs::metadata(&source).map_err(io_err(&source))?;
        if meta.is_dir() {
            copy_tree(&source, &target)?;
        } else {
            std::fs::copy(&source, &target).map_err(io_err(&source))?;
        }
    }
    Ok(())
}


/// Hidden directories `kfctl init` stages an app in, next to the app directory:
/// `.kfctl-init-<pid of the owning kfctl>-<random>`.
const STAGING_PREFIX: &str = ".kfctl-init-";

/// A fresh staging directory in `parent` for an app being made (by init, or from a bundle),
/// owned by this process; those that killed runs left there are removed first.
pub(crate) fn staging_dir(parent: &Path) -> Result<tempfile::TempDir, AppError> {
    remove_abandoned_staging(parent);
    let prefix = format!("{STAGING_PREFIX}{}-", std::process::id());
    tempfile::Builder::new().prefix(&prefix).tempdir_in(parent).map_err(io_err(parent))
}

/// Remove staging directories in `parent` whose owning kfctl is gone (killed mid-init): an
/// interrupted init never leaves a half-written app, and this keeps it from leaving litter.
fn remove_abandoned_staging(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(STAGING_PREFIX)) else { continue };
        let owner = rest.split_once('-').and_then(|(pid, _)| pid.parse::<u32>().ok());
        if owner.is_some_and(|pid| !process_alive(pid)) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Whether process `pid` is running (a zombie, killed but not yet reaped, is not).
fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // "pid (comm) S ...": the state follows the last ')'.
        Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}

/// Move the staged app into `dir`: one rename of the whole staging directory when `dir` is
/// new; otherwise (an existing directory is kept as it is: it may be a git checkout, or a shell's
/// working directory) the registry version directory and kfctl.yaml one rename each.
fn move_into_place(staging: tempfile::TempDir, dir: &Path, registry_rel: &Path) -> Result<(), AppError> {
    if std::fs::symlink_metadata(dir).is_err() {
        let staged = staging.keep();
        return std::fs::rename(&staged, dir).map_err(|error| {
            let _ = std::fs::remove_dir_all(&staged);
            AppError::Io { path: dir.to_path_buf(), error }
        });
    }
    let target_registry = dir.join(registry_rel);
    if target_registry.exists() {
        // --force: move the old copy into staging, which is deleted on drop.
        let trash = staging.path().join("replaced-registry");
        std::fs::rename(&target_registry, &trash).map_err(io_err(&target_registry))?;
    }
    if let Some(parent) = target_registry.parent() {
        std::fs::create_dir_all(parent).map_err(io_err(parent))?;
    }
    std::fs::rename(staging.path().join(registry_rel), &target_registry).map_err(io_err(&target_registry))?;
    let target_remote = dir.join(REMOTE_DIR);
    if target_remote.exists() {
        std::fs::rename(&target_remote, staging.path().join("replaced-remote")).map_err(io_err(&target_remote))?;
    }
    let staged_remote = staging.path().join(REMOTE_DIR);
    if staged_remote.exists() {
        std::fs::rename(&staged_remote, &target_remote).map_err(io_err(&target_remote))?;
    }
    let config_path = dir.join(config::FILE_NAME);
    std::fs::rename(staging.path().join(config::FILE_NAME), &config_path).map_err(io_err(&config_path))?;
    Ok(())
}

/// The path from directory `from` to `to`, both absolute and canonical.
fn relative_path(from: &Path, to: &Path) -> PathBuf {
    let from: Vec<Component> = from.components().collect();
    let to: Vec<Component> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..from.len() {
        out.push("..");
    }
    for part in &to[common..] {
        out.push(part.as_os_str());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_between_directories() {
        assert_eq!(relative_path(Path::new("/tmp/a/b"), Path::new("/work/app/registry")), PathBuf::from("../../../work/app/registry"));
        assert_eq!(relative_path(Path::new("/work/app"), Path::new("/work/app/registry/x")), PathBuf::from("registry/x"));
        assert_eq!(relative_path(Path::new("/work/app/o"), Path::new("/work/app")), PathBuf::from(".."));
    }

    /// A `.tar.gz` of `files` under the top-level directory `root`.
    fn tar_gz(root: &str, files: &[(&str, &str)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default()));
        for (path, content) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(content.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder.append_data(&mut header, format!("{root}/{path}"), content.as_bytes()).unwrap();
        }
        builder.into_inner().unwrap().finish().unwrap()
    }

    #[test]
    fn vendored_remotes_render_offline_and_are_checked_against_their_pins() {
        let cm = |name: &str| format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n");
        // A mirror (a local directory laid out as the code host) with a repository and a file.
        let mirror = tempfile::tempdir().unwrap();
        let archive = mirror.path().join("example.test/org/repo/archive/v1.tar.gz");
        std::fs::create_dir_all(archive.parent().unwrap()).unwrap();
        let (a, b) = (cm("a"), cm("b"));
        let files = [
            ("deploy/base/kustomization.yaml", "resources:\n- a.yaml\n- ../shared\n"),
            ("deploy/base/a.yaml", a.as_str()),
            ("deploy/shared/kustomization.yaml", "resources:\n- b.yaml\n"),
            ("deploy/shared/b.yaml", b.as_str()),
            ("docs/huge.md", "not needed by the build\n"),
        ];
        std::fs::write(&archive, tar_gz("repo-1", &files)).unwrap();
        let file = mirror.path().join("example.test/org/files/manifests.yaml");
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, cm("c")).unwrap();
        // A release whose one component names both.
        let release = tempfile::tempdir().unwrap();
        let component = release.path().join("app");
        std::fs::create_dir_all(&component).unwrap();
        std::fs::write(
            component.join("kustomization.yaml"),
            "resources:\n- https://example.test/org/repo//deploy/base?ref=v1\n- https://example.test/org/files/manifests.yaml\n",
        )
        .unwrap();

        let cache = tempfile::tempdir().unwrap();
        let staging = tempfile::tempdir().unwrap();
        let fetcher = RemoteFetcher::new(Some(&mirror.path().display().to_string()), cache.path().to_path_buf());
        let pins = vendor_remotes(&[("app".into(), component.clone())], &fetcher, staging.path(), &|_| {}).unwrap();
        assert_eq!(pins.len(), 2, "{pins:?}");
        assert_eq!(pins[0].url, "https://example.test/org/repo");
        assert_eq!(pins[0].git_ref.as_deref(), Some("v1"));
        assert!(pins[0].digest.starts_with("tree-sha256:"), "{pins:?}");
        assert_eq!(pins[1].url, "https://example.test/org/files/manifests.yaml");
        assert!(pins[1].digest.starts_with("sha256:"), "{pins:?}");
        // Only what the build read is vendored.
        let repo = staging.path().join(&pins[0].path);
        assert!(repo.join("deploy/shared/b.yaml").is_file());
        assert!(!repo.join("docs").exists());

        // Offline: no mirror, no cache; the same objects from the vendored copies.
        drop(mirror);
        drop(cache);
        let vendored: Vec<_> = pins
            .iter()
            .map(|p| remote::VendoredRemote { url: p.url.clone(), git_ref: p.git_ref.clone(), path: p.path.clone(), digest: Pin::parse(&p.digest).unwrap() })
            .collect();
        let source = VendoredRemotes::new(staging.path(), vendored.clone());
        let names: Vec<String> =
            build_kustomization(&component, &source).unwrap().iter().map(|o| o["metadata"]["name"].as_str().unwrap().to_string()).collect();
        assert_eq!(names, ["a", "b", "c"]);

        // One changed byte in a vendored file: refused, naming the remote.
        std::fs::write(repo.join("deploy/shared/b.yaml"), cm("B")).unwrap();
        let err = build_kustomization(&component, &VendoredRemotes::new(staging.path(), vendored)).unwrap_err();
        assert!(err.contains("the vendored copy of repository https://example.test/org/repo at v1"), "{err}");
        assert!(err.contains("no longer matches its pin"), "{err}");
    }

    #[test]
    fn versions_from_archive_prefixes() {
        assert_eq!(registry::version_from_prefix("manifests-1.4.1").as_deref(), Some("v1.4.1"));
        assert_eq!(registry::version_from_prefix("manifests-v1.8.0").as_deref(), Some("v1.8.0"));
        assert_eq!(registry::version_from_prefix("manifests-master"), None);
        assert_eq!(registry::version_from_prefix("other-1.4.1"), None);
    }
}
