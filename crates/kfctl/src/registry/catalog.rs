//! The component catalog: for each Kubeflow release kfctl supports, which components it has,
//! where their kustomize directories are inside the release, what they depend on, which of them
//! a plain `kfctl init` enables (the base set), the variants a platform picks, and what the
//! release needs from Kubernetes and from the host.
//!
//! Each release is one YAML file in `crates/kfctl/catalogs/` (`build.rs` embeds every file
//! there), so adding a release is adding a file. The files are parsed once and validated
//! strictly: an unknown field or a bad value is an error naming the file and the field. The order
//! of [`Release::components`] is the order of the release's `example/kustomization.yaml`, which
//! is also the render order.

use std::collections::HashSet;
use std::fmt;
use std::sync::LazyLock;

use serde::Deserialize;

use crate::images::ImageRule;
use crate::registry::digest::Pin;

include!(concat!(env!("OUT_DIR"), "/catalog_files.rs"));

/// One Kubeflow release kfctl knows.
#[derive(Debug, Clone)]
pub struct Release {
    /// The version as users type it, e.g. `v1.4.1` or `26.03`.
    pub version: String,
    /// When upstream released it (`YYYY-MM`); orders [`RELEASES`].
    pub released: String,
    /// The upstream release archive, used when `kfctl init` is given no `--registry`.
    pub default_url: String,
    /// The content pin of the release (`tree-sha256:HEX` of the unpacked tree, see
    /// `registry::digest`): an init of this release is verified whoever compressed the archive.
    pub default_digest: String,
    /// Components in render order.
    pub components: Vec<ComponentSpec>,
    /// The Kubernetes versions the release supports and the ones kfctl creates for it.
    pub kubernetes: KubernetesSupport,
    /// What the release's base set needs from the machine (or cluster) it runs on.
    pub footprint: Footprint,
    /// The inotify limits a local cluster's host needs for the release's many Pods.
    pub inotify: InotifyLimits,
    /// How an app of an earlier release becomes one of this release (`kfctl upgrade`).
    pub upgrade: UpgradeSpec,
    /// The Jupyter web app's spawner defaults, for `kfctl notebook` (None: not supported there).
    pub notebook: Option<NotebookDefaults>,
    /// Where the release names images outside pod templates (`kfctl images`, image overrides).
    pub images: Vec<ImageRule>,
}

/// What changed on the way to a release, as `kfctl upgrade` needs it: components renamed or
/// removed since earlier releases, and the migrations an upgrade must run or show. Written in the
/// catalog of the release that made the change; an upgrade from A to B reads the catalogs of every
/// release after A up to B.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpgradeSpec {
    /// Components of earlier releases that this release has under another name (or folded into
    /// another component): an app's settings for `from` move to `to`.
    #[serde(default)]
    pub renamed: Vec<RenamedComponent>,
    /// Components of earlier releases that this release no longer has.
    #[serde(default)]
    pub removed: Vec<RemovedComponent>,
    /// Steps an upgrade into this release takes or shows, in order.
    #[serde(default)]
    pub migrations: Vec<Migration>,
}

/// A component an earlier release called `from`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenamedComponent {
    pub from: String,
    /// A component of this release.
    pub to: String,
    /// What happened, for the plan.
    pub why: String,
}

/// A component of an earlier release that this release dropped.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemovedComponent {
    pub name: String,
    /// What happened, and what replaces it if anything, for the plan.
    pub why: String,
}

/// One step of an upgrade into this release: kfctl replaces an object, or the user must act.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Migration {
    /// A short name, used by `--confirm ID` and in kfctl.yaml's history.
    pub id: String,
    /// The releases an upgrade must come from for this step to apply (empty: any earlier one).
    #[serde(default)]
    pub from: Vec<String>,
    /// Only when the app had this component enabled before the upgrade.
    #[serde(default)]
    pub when_component: Option<String>,
    /// Why the step is needed, for the plan.
    pub why: String,
    /// Delete the object and let the upgrade create it again: fields the API server does not
    /// let an update change (a binding's roleRef, a Deployment's selector).
    #[serde(default)]
    pub replace: Option<ReplaceStep>,
    /// Something kfctl cannot do, such as moving data between stores.
    #[serde(default)]
    pub manual: Option<ManualStep>,
}

/// The object a replace migration deletes before the upgrade applies it again.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplaceStep {
    pub kind: String,
    pub name: String,
    #[serde(default)]
    pub namespace: Option<String>,
    /// The immutable fields (top-level keys of the object, e.g. `roleRef`, `spec`): the live
    /// object is replaced only when one of them differs from what the new release renders.
    pub fields: Vec<String>,
}

/// What the user does by hand, shown in the plan.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManualStep {
    /// The upgrade stops before changing anything until the user confirms the step with
    /// `--confirm ID` (or at the prompt).
    #[serde(default)]
    pub blocking: bool,
    /// What to do, as shell commands and prose.
    pub instructions: String,
    /// What to do on the way back (`kfctl upgrade` to an older release); none: nothing.
    #[serde(default)]
    pub rollback: Option<String>,
}

impl Migration {
    /// Whether this step applies to an upgrade that starts at `from`, given what the app had enabled.
    pub fn applies(&self, from: &str, enabled_before: &dyn Fn(&str) -> bool) -> bool {
        (self.from.is_empty() || self.from.iter().any(|v| bare(v) == bare(from)))
            && self.when_component.as_deref().is_none_or(enabled_before)
    }
}

/// The Jupyter web app's defaults for a new notebook server (its spawner config).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotebookDefaults {
    /// The default JupyterLab image.
    pub image: String,
    /// CPU request and limit (Kubernetes quantities).
    pub cpu: String,
    pub cpu_limit: String,
    /// Memory request and limit.
    pub memory: String,
    pub memory_limit: String,
    /// Where the workspace volume is mounted (the image's home directory).
    pub workspace_mount: String,
    /// The size of a new workspace volume.
    pub workspace_size: String,
    /// Extended resource names of GPUs, in the web app's order.
    pub gpu_vendors: Vec<String>,
}

/// Supported Kubernetes versions of one Kubeflow release and what kfctl creates for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubernetesSupport {
    /// Kubeflow release ("v1.4.1").
    pub release: String,
    /// Oldest supported minor (1, 19).
    pub min: (u32, u32),
    /// Newest supported minor (1, 21); None when upstream names no upper bound ("1.34+").
    pub max: Option<(u32, u32)>,
    /// Version string for clouds ("1.21").
    pub cloud_version: String,
    /// `minikube start --kubernetes-version`.
    pub minikube_version: String,
    /// `kind create cluster --image`.
    pub kind_image: String,
    /// The kind release kfctl suggests installing: one that runs `kind_image`.
    pub kind_version: String,
    /// `k3d cluster create --image`.
    pub k3s_image: String,
    /// The snap channel that installs a supported MicroK8s.
    pub microk8s_channel: String,
    /// CPU architecture the release's images are built for.
    pub architecture: String,
}

/// What the release's base set needs: upstream's recommendation for a whole install.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Footprint {
    /// CPU cores.
    pub cpu: u32,
    /// Memory in GiB.
    pub memory_gib: u32,
    /// Persistent volume storage the base set claims, in GiB.
    pub volumes_gib: u32,
}

/// `fs.inotify.max_user_instances` and `fs.inotify.max_user_watches` a local cluster's host needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InotifyLimits {
    pub max_user_instances: u64,
    pub max_user_watches: u64,
}

/// One component of a release.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComponentSpec {
    /// The name used in kfctl.yaml and on the command line.
    pub name: String,
    /// One line for `kfctl component list`.
    pub description: String,
    /// kustomize directories inside the release, relative to its root, in build order (the
    /// default variant's, when the component has variants).
    pub paths: Vec<String>,
    /// Components that must be deployed for this one to work.
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// Enabled by a plain `kfctl init`.
    #[serde(default)]
    pub base: bool,
    /// Parameters this component accepts in kfctl.yaml.
    #[serde(default)]
    pub parameters: Vec<ParameterSpec>,
    /// The name of the variant `paths` is (required when `variants` is not empty).
    #[serde(default)]
    pub default_variant: Option<String>,
    /// Alternatives to `paths`: chosen by the platform or by `variant:` in kfctl.yaml.
    #[serde(default)]
    pub variants: Vec<VariantSpec>,
    /// Namespace for the component's objects that name none (upstream applies them with
    /// `kubectl apply -n NAMESPACE`).
    #[serde(default)]
    pub namespace: Option<String>,
}

/// Another set of directories for a component, e.g. istio's GKE overlay.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariantSpec {
    /// The name used under `variant:` in kfctl.yaml (upstream's overlay name).
    pub name: String,
    /// What it changes.
    pub description: String,
    /// The directories to build instead of the component's `paths`.
    pub paths: Vec<String>,
    /// Platforms (`platform.kind` in kfctl.yaml) on which kfctl picks this variant by itself.
    #[serde(default)]
    pub platforms: Vec<String>,
    /// What the user must still do when this variant is picked, shown with the choice.
    #[serde(default)]
    pub note: Option<String>,
}

/// A parameter a component accepts under `parameters:` in kfctl.yaml.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParameterSpec {
    /// The key in kfctl.yaml.
    pub name: String,
    /// What it changes, for `kfctl component list` and error hints.
    pub description: String,
    /// What the value must look like.
    pub kind: ParameterKind,
    /// Where the value goes when the component is rendered.
    pub target: ParameterTarget,
}

/// How a parameter reaches the rendered objects (through an overlay kfctl generates).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ParameterTarget {
    /// A field (JSON pointer) of the YAML document stored under `key` in the ConfigMap defined
    /// by `file` (relative to the release root); rendered as a patch of that ConfigMap.
    EmbeddedYaml { file: String, key: String, pointer: String },
    /// A literal `key=value` of the configMapGenerator named `generator`, merged by the overlay.
    GeneratorLiteral { generator: String, key: String },
    /// A field (JSON pointer) of the object defined by `file`; rendered as a JSON patch that
    /// replaces it (so it may rename the object).
    Field { file: String, pointer: String },
}

/// The shape of a parameter's value, checked by `kfctl.yaml` validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParameterKind {
    /// An email address (`name@domain`).
    Email,
    /// A bcrypt hash (`$2a$`, `$2b$` or `$2y$`); never a plaintext password.
    BcryptHash,
    /// A Kubernetes object name (DNS-1123 label).
    DnsLabel,
}

/// Which variant of a component is rendered, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VariantChoice<'a> {
    /// The variant's name (the default variant's for components with variants).
    pub name: &'a str,
    /// The directories to build.
    pub paths: &'a [String],
    /// Why this one, for `kfctl init`/`kfctl deploy` output.
    pub reason: String,
    /// What the user must still do (from the catalog).
    pub note: Option<&'a str>,
}

impl ComponentSpec {
    /// The parameter named `name`, if this component accepts it.
    pub fn parameter(&self, name: &str) -> Option<&ParameterSpec> {
        self.parameters.iter().find(|p| p.name == name)
    }

    /// Every variant name, the default first.
    pub fn variant_names(&self) -> Vec<&str> {
        self.default_variant.iter().map(String::as_str).chain(self.variants.iter().map(|v| v.name.as_str())).collect()
    }

    /// The variant to render: `chosen` (kfctl.yaml's `variant:`), else the one the catalog picks
    /// for `platform`, else the default. None when `chosen` names no variant of this component.
    pub fn choose_variant(&self, chosen: Option<&str>, platform: &str) -> Option<VariantChoice<'_>> {
        let default_name = self.default_variant.as_deref().unwrap_or("default");
        let default = |reason: String| VariantChoice { name: default_name, paths: &self.paths, reason, note: None };
        fn of(v: &VariantSpec, reason: String) -> VariantChoice<'_> {
            VariantChoice { name: v.name.as_str(), paths: v.paths.as_slice(), reason, note: v.note.as_deref() }
        }
        match chosen {
            Some(name) if name == default_name => Some(default("kfctl.yaml chooses it".into())),
            Some(name) => self.variants.iter().find(|v| v.name == name).map(|v| of(v, "kfctl.yaml chooses it".into())),
            None => Some(match self.variants.iter().find(|v| v.platforms.iter().any(|p| p == platform)) {
                Some(v) => of(v, format!("the platform is {platform}")),
                None => default(format!("it is upstream's default and the platform is {platform}")),
            }),
        }
    }
}

impl Release {
    /// The component named `name`, if this release has it.
    pub fn component(&self, name: &str) -> Option<&ComponentSpec> {
        self.components.iter().find(|c| c.name == name)
    }

    /// Names of components that list `name` among their dependencies.
    pub fn dependents_of(&self, name: &str) -> Vec<&str> {
        self.components.iter().filter(|c| c.depends_on.iter().any(|d| d == name)).map(|c| c.name.as_str()).collect()
    }

    /// The release's component names, comma-separated, for error hints.
    pub fn component_names(&self) -> String {
        self.components.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
    }

    /// Every directory any component or variant builds, each once, in catalog order.
    pub fn all_paths(&self) -> Vec<(&str, &str)> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for c in &self.components {
            for path in c.paths.iter().chain(c.variants.iter().flat_map(|v| v.paths.iter())) {
                if seen.insert(path.as_str()) {
                    out.push((c.name.as_str(), path.as_str()));
                }
            }
        }
        out
    }
}

impl KubernetesSupport {
    /// Does a server at `major.minor` suit this release?
    pub fn accepts(&self, version: (u32, u32)) -> bool {
        self.min <= version && self.max.is_none_or(|max| version <= max)
    }

    /// "1.19 to 1.21" or "1.34 or newer", for messages.
    pub fn range(&self) -> String {
        match self.max {
            Some(max) => format!("{}.{} to {}.{}", self.min.0, self.min.1, max.0, max.1),
            None => format!("{}.{} or newer", self.min.0, self.min.1),
        }
    }
}

/// Major and minor of a version as Kubernetes reports it ("1", "20+") or as people write it
/// ("v1.21.5", "1.21").
pub fn parse_minor(version: &str) -> Option<(u32, u32)> {
    let version = version.trim().trim_start_matches('v');
    let mut parts = version.split('.');
    let major = leading_number(parts.next()?)?;
    let minor = leading_number(parts.next()?)?;
    Some((major, minor))
}

/// The digits a version part starts with: GKE reports minor "20+", k3s "21+k3s1".
pub fn leading_number(part: &str) -> Option<u32> {
    let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The version a plain `kfctl init` installs.
pub const DEFAULT_VERSION: &str = "26.03";

/// The environment variable naming a directory of extra release catalogs (`*.yaml`, the same
/// format as `crates/kfctl/catalogs/`): a fork or distribution of Kubeflow that kfctl should
/// install and upgrade, without rebuilding kfctl.
pub const EXTRA_CATALOGS_ENV: &str = "KFCTL_CATALOGS";

/// Every release kfctl supports, oldest first (by release date): the embedded catalogs, plus
/// those in `$KFCTL_CATALOGS`.
pub static RELEASES: LazyLock<Vec<Release>> = LazyLock::new(|| {
    let mut releases = match parse_catalogs(CATALOG_FILES) {
        Ok(releases) => releases,
        // The files are embedded at build time and every one is parsed by the unit tests, so
        // this only happens to a build whose catalogs were never tested.
        Err(err) => panic!("kfctl's embedded release catalogs are invalid: {err}"),
    };
    if let Some(dir) = std::env::var_os(EXTRA_CATALOGS_ENV).filter(|d| !d.is_empty()) {
        // A bad extra file is said once and skipped: the embedded releases still work, and a
        // command naming the skipped version then says it is not supported.
        for problem in add_extra_catalogs(&mut releases, std::path::Path::new(&dir)) {
            eprintln!("warning: {problem}; the file is skipped ({EXTRA_CATALOGS_ENV})");
        }
        releases.sort_by(|a, b| a.released.cmp(&b.released));
    }
    releases
});

/// Read every `*.yaml` in `dir` as a catalog into `releases`; what cannot be used, as messages
/// naming the file (and the field).
fn add_extra_catalogs(releases: &mut Vec<Release>, dir: &std::path::Path) -> Vec<String> {
    let mut problems = Vec::new();
    let mut files: Vec<std::path::PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "yaml")).collect(),
        Err(e) => return vec![format!("cannot read {}: {e}", dir.display())],
    };
    files.sort();
    for path in files {
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) => {
                problems.push(format!("cannot read {}: {e}", path.display()));
                continue;
            }
        };
        let name = path.display().to_string();
        match parse_catalog(&name, &text) {
            Ok(release) if releases.iter().any(|r| bare(&r.version) == bare(&release.version)) => {
                problems.push(format!("{name}: version: {:?} is already a release kfctl knows", release.version))
            }
            Ok(release) => releases.push(release),
            Err(e) => problems.push(e.to_string()),
        }
    }
    problems
}

/// A version kfctl has no catalog for.
#[derive(Debug, thiserror::Error)]
#[error("Kubeflow version {version:?} is not supported; supported versions: {supported}")]
pub struct UnknownVersion {
    pub version: String,
    pub supported: String,
}

/// The version without a leading `v`, so `1.4.1`, `v1.4.1`, `26.03` and `v26.03` compare.
fn bare(version: &str) -> &str {
    version.strip_prefix('v').unwrap_or(version)
}

/// The catalog of `version` (with or without the leading `v`).
pub fn release(version: &str) -> Result<&'static Release, UnknownVersion> {
    RELEASES.iter().find(|r| bare(&r.version) == bare(version)).ok_or_else(|| UnknownVersion {
        version: version.to_string(),
        supported: supported_versions(),
    })
}

/// Every supported version, comma-separated, oldest first.
pub fn supported_versions() -> String {
    RELEASES.iter().map(|r| r.version.as_str()).collect::<Vec<_>>().join(", ")
}

/// The release whose default archive is `url`, so `--registry URL` alone picks the version.
pub fn release_for_url(url: &str) -> Option<&'static Release> {
    RELEASES.iter().find(|r| r.default_url == url)
}

/// The platform names a variant may list (`platform.kind` in kfctl.yaml). Kept here rather than
/// taken from `platform::PlatformKind` so the registry does not depend on the platform layer; a
/// unit test keeps the two lists equal.
pub const PLATFORM_NAMES: [&str; 8] = ["existing", "kind", "minikube", "microk8s", "k3d", "gke", "eks", "aks"];

/// A catalog file that cannot be used: which file, which field, what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct CatalogError {
    /// The file, as `catalogs/NAME.yaml`.
    pub file: String,
    /// The field (`components[3].depends_on[0]`), empty when the file does not parse at all.
    pub field: String,
    pub message: String,
}

impl fmt::Display for CatalogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Embedded catalogs are named by file name, extra ones by their path.
        let file = if self.file.contains('/') { self.file.clone() } else { format!("catalogs/{}", self.file) };
        if self.field.is_empty() {
            write!(f, "{file}: {}", self.message)
        } else {
            write!(f, "{file}: {}: {}", self.field, self.message)
        }
    }
}

/// A catalog file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    version: String,
    released: String,
    archive: ArchiveFile,
    kubernetes: KubernetesFile,
    footprint: Footprint,
    inotify: InotifyLimits,
    #[serde(default)]
    notebook: Option<NotebookDefaults>,
    components: Vec<ComponentSpec>,
    #[serde(default)]
    upgrade: UpgradeSpec,
    #[serde(default)]
    images: Vec<ImageRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ArchiveFile {
    url: String,
    digest: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KubernetesFile {
    min: String,
    #[serde(default)]
    max: Option<String>,
    cloud: String,
    minikube: String,
    kind_image: String,
    kind_version: String,
    k3s_image: String,
    microk8s_channel: String,
    architecture: String,
}

/// Parse and validate every `(file name, contents)`; releases oldest first.
pub fn parse_catalogs(files: &[(&str, &str)]) -> Result<Vec<Release>, CatalogError> {
    let mut releases = Vec::new();
    for (name, text) in files {
        let release = parse_catalog(name, text)?;
        if let Some(other) = releases.iter().find(|r: &&Release| bare(&r.version) == bare(&release.version)) {
            return Err(CatalogError {
                file: (*name).to_owned(),
                field: "version".into(),
                message: format!("{:?} is also the version of another catalog ({:?})", release.version, other.version),
            });
        }
        releases.push(release);
    }
    releases.sort_by(|a, b| a.released.cmp(&b.released));
    Ok(releases)
}

/// Parse and validate one catalog file named `file` (e.g. `26.03.yaml`).
pub fn parse_catalog(file: &str, text: &str) -> Result<Release, CatalogError> {
    let raw: CatalogFile = serde_saphyr::from_str(text).map_err(|e| CatalogError {
        file: file.to_owned(),
        field: String::new(),
        message: e.to_string(),
    })?;
    let mut problems = Problems { file, first: None };
    problems.check(&raw)?;
    let k = &raw.kubernetes;
    let minor = |field: &str, value: &str| {
        parse_minor(value).ok_or_else(|| problems_at(file, field, format!("{value:?} is not a Kubernetes version like \"1.34\"")))
    };
    let min = minor("kubernetes.min", &k.min)?;
    let max = k.max.as_deref().map(|m| minor("kubernetes.max", m)).transpose()?;
    let kubernetes = KubernetesSupport {
        release: raw.version.clone(),
        min,
        max,
        cloud_version: k.cloud.clone(),
        minikube_version: k.minikube.clone(),
        kind_image: k.kind_image.clone(),
        kind_version: k.kind_version.clone(),
        k3s_image: k.k3s_image.clone(),
        microk8s_channel: k.microk8s_channel.clone(),
        architecture: k.architecture.clone(),
    };
    if max.is_some_and(|max| max < min) {
        return Err(problems_at(file, "kubernetes.max", format!("{} is older than min {}", k.max.as_deref().unwrap_or_default(), k.min)));
    }
    // What kfctl creates must itself be supported: one table, no way for the two to drift.
    let created = [
        ("kubernetes.cloud", k.cloud.as_str()),
        ("kubernetes.minikube", k.minikube.as_str()),
        ("kubernetes.kind_image", k.kind_image.rsplit(':').next().unwrap_or_default()),
        ("kubernetes.k3s_image", k.k3s_image.rsplit(':').next().unwrap_or_default()),
        ("kubernetes.microk8s_channel", k.microk8s_channel.split('/').next().unwrap_or_default()),
    ];
    for (field, version) in created {
        let parsed = minor(field, version)?;
        if !kubernetes.accepts(parsed) {
            return Err(problems_at(file, field, format!("{version} is outside the supported range {}", kubernetes.range())));
        }
    }
    Ok(Release {
        version: raw.version,
        released: raw.released,
        default_url: raw.archive.url,
        default_digest: raw.archive.digest,
        components: raw.components,
        kubernetes,
        footprint: raw.footprint,
        inotify: raw.inotify,
        upgrade: raw.upgrade,
        notebook: raw.notebook,
        images: raw.images,
    })
}

fn problems_at(file: &str, field: &str, message: String) -> CatalogError {
    CatalogError { file: file.to_owned(), field: field.to_owned(), message }
}

/// The checks serde cannot make: names, references between fields, path shapes.
struct Problems<'a> {
    file: &'a str,
    first: Option<CatalogError>,
}

impl Problems<'_> {
    fn fail(&mut self, field: String, message: String) {
        if self.first.is_none() {
            self.first = Some(problems_at(self.file, &field, message));
        }
    }

    fn check(&mut self, raw: &CatalogFile) -> Result<(), CatalogError> {
        let file_name = self.file.rsplit('/').next().unwrap_or(self.file);
        let stem = file_name.strip_suffix(".yaml").unwrap_or(file_name);
        if raw.version != stem {
            self.fail("version".into(), format!("{:?} differs from the file name; name the file {}.yaml", raw.version, raw.version));
        }
        if !is_date(&raw.released) {
            self.fail("released".into(), format!("{:?} is not a month like 2026-03", raw.released));
        }
        // file:// for a catalog of one's own next to its archive (a fork, an air gap).
        if !raw.archive.url.starts_with("https://") && !raw.archive.url.starts_with("file://") {
            self.fail("archive.url".into(), format!("{:?} is not an https:// (or file://) URL", raw.archive.url));
        }
        match Pin::parse(&raw.archive.digest) {
            Ok(Pin::Tree(_)) => {}
            Ok(Pin::Bytes(_)) => self.fail("archive.digest".into(), "a release is pinned by its content: tree-sha256:HEX".into()),
            Err(why) => self.fail("archive.digest".into(), why),
        }
        if raw.kubernetes.architecture.is_empty() {
            self.fail("kubernetes.architecture".into(), "must not be empty".into());
        }
        if raw.footprint.cpu == 0 || raw.footprint.memory_gib == 0 {
            self.fail("footprint".into(), "cpu and memory_gib must be above 0".into());
        }
        if raw.components.is_empty() {
            self.fail("components".into(), "a release has at least one component".into());
        }
        let names: Vec<&str> = raw.components.iter().map(|c| c.name.as_str()).collect();
        let mut seen = HashSet::new();
        for (i, c) in raw.components.iter().enumerate() {
            let at = format!("components[{i}]");
            if !is_name(&c.name) {
                self.fail(format!("{at}.name"), format!("{:?} is not a lowercase name (a-z, 0-9, -)", c.name));
            }
            if !seen.insert(c.name.as_str()) {
                self.fail(format!("{at}.name"), format!("component {:?} is listed twice", c.name));
            }
            if c.description.trim().is_empty() {
                self.fail(format!("{at}.description"), "must not be empty".into());
            }
            self.check_paths(&format!("{at}.paths"), &c.paths);
            for (j, dep) in c.depends_on.iter().enumerate() {
                if dep == &c.name {
                    self.fail(format!("{at}.depends_on[{j}]"), format!("{} depends on itself", c.name));
                } else if !names.contains(&dep.as_str()) {
                    self.fail(format!("{at}.depends_on[{j}]"), format!("unknown component {dep:?}; known: {}", names.join(", ")));
                }
            }
            let mut params = HashSet::new();
            for (j, p) in c.parameters.iter().enumerate() {
                let at = format!("{at}.parameters[{j}]");
                if p.name.is_empty() || !params.insert(p.name.as_str()) {
                    self.fail(format!("{at}.name"), format!("{:?} is empty or listed twice", p.name));
                }
                let (file, pointer) = match &p.target {
                    ParameterTarget::EmbeddedYaml { file, pointer, .. } | ParameterTarget::Field { file, pointer } => (Some(file), Some(pointer)),
                    ParameterTarget::GeneratorLiteral { .. } => (None, None),
                };
                if let Some(file) = file {
                    self.check_paths(&format!("{at}.target.file"), std::slice::from_ref(file));
                }
                if pointer.is_some_and(|p| !p.starts_with('/')) {
                    self.fail(format!("{at}.target.pointer"), "a JSON pointer starts with /".into());
                }
            }
            match (&c.default_variant, c.variants.is_empty()) {
                (None, false) => self.fail(format!("{at}.default_variant"), "name the variant `paths` is, since the component has variants".into()),
                (Some(_), true) => self.fail(format!("{at}.default_variant"), "the component has no variants".into()),
                _ => {}
            }
            let mut variant_names: HashSet<&str> = c.default_variant.iter().map(String::as_str).collect();
            let mut auto_platforms = HashSet::new();
            for (j, v) in c.variants.iter().enumerate() {
                let at = format!("{at}.variants[{j}]");
                if !is_name(&v.name) || !variant_names.insert(v.name.as_str()) {
                    self.fail(format!("{at}.name"), format!("{:?} is not a lowercase name or is listed twice", v.name));
                }
                self.check_paths(&format!("{at}.paths"), &v.paths);
                for (k, platform) in v.platforms.iter().enumerate() {
                    if !PLATFORM_NAMES.contains(&platform.as_str()) {
                        self.fail(format!("{at}.platforms[{k}]"), format!("unknown platform {platform:?}; known: {}", PLATFORM_NAMES.join(", ")));
                    } else if !auto_platforms.insert(platform.as_str()) {
                        self.fail(format!("{at}.platforms[{k}]"), format!("another variant of {} is already picked on {platform}", c.name));
                    }
                }
            }
            if let Some(ns) = &c.namespace {
                if !is_name(ns) {
                    self.fail(format!("{at}.namespace"), format!("{ns:?} is not a namespace name"));
                }
            }
        }
        self.check_upgrade(&raw.upgrade, &names);
        let mut ids = HashSet::new();
        for (i, rule) in raw.images.iter().enumerate() {
            if let Err(e) = rule.check() {
                self.fail(format!("images[{i}].{}", e.field), e.message);
            } else if !ids.insert(rule.id.as_str()) {
                self.fail(format!("images[{i}].id"), format!("{:?} is the id of another rule", rule.id));
            }
        }
        match self.first.take() {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }

    /// Renames end at a component of this release and start at one it does not have; removed
    /// components are gone; each migration does one thing and has a unique id.
    fn check_upgrade(&mut self, upgrade: &UpgradeSpec, names: &[&str]) {
        for (i, r) in upgrade.renamed.iter().enumerate() {
            let at = format!("upgrade.renamed[{i}]");
            if !names.contains(&r.to.as_str()) {
                self.fail(format!("{at}.to"), format!("unknown component {:?}; known: {}", r.to, names.join(", ")));
            }
            if names.contains(&r.from.as_str()) {
                self.fail(format!("{at}.from"), format!("{:?} is a component of this release; a rename starts at an earlier release's name", r.from));
            }
            if r.why.trim().is_empty() {
                self.fail(format!("{at}.why"), "must not be empty".into());
            }
        }
        for (i, r) in upgrade.removed.iter().enumerate() {
            if names.contains(&r.name.as_str()) {
                self.fail(format!("upgrade.removed[{i}].name"), format!("{:?} is a component of this release", r.name));
            }
        }
        let mut ids = HashSet::new();
        for (i, m) in upgrade.migrations.iter().enumerate() {
            let at = format!("upgrade.migrations[{i}]");
            if !is_name(&m.id) || !ids.insert(m.id.as_str()) {
                self.fail(format!("{at}.id"), format!("{:?} is not a lowercase name or is listed twice", m.id));
            }
            match (&m.replace, &m.manual) {
                (Some(replace), None) => {
                    if replace.fields.is_empty() {
                        self.fail(format!("{at}.replace.fields"), "name the immutable fields that decide a replace".into());
                    }
                }
                (None, Some(manual)) => {
                    if manual.instructions.trim().is_empty() {
                        self.fail(format!("{at}.manual.instructions"), "must not be empty".into());
                    }
                }
                _ => self.fail(at, "a migration is either `replace:` or `manual:`".into()),
            }
        }
    }

    fn check_paths(&mut self, at: &str, paths: &[String]) {
        if paths.is_empty() {
            self.fail(at.to_owned(), "at least one directory".into());
        }
        for (i, path) in paths.iter().enumerate() {
            let bad = path.is_empty() || path.starts_with('/') || path.ends_with('/') || path.split('/').any(|part| part.is_empty() || part == "." || part == "..");
            if bad {
                self.fail(format!("{at}[{i}]"), format!("{path:?} is not a relative path inside the release (no leading /, no . or ..)"));
            }
        }
    }
}

fn is_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') && !name.starts_with('-') && !name.ends_with('-')
}

fn is_date(text: &str) -> bool {
    let parts: Vec<&str> = text.split('-').collect();
    parts.len() == 2
        && [4, 2].iter().zip(&parts).all(|(len, part)| part.len() == *len && part.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_embedded_catalog_parses_and_releases_are_ordered_by_date() {
        let releases = parse_catalogs(CATALOG_FILES).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(releases.len(), CATALOG_FILES.len());
        let versions: Vec<&str> = releases.iter().map(|r| r.version.as_str()).collect();
        assert_eq!(versions, ["v1.4.1", "v1.10.2", "26.03"]);
        assert!(release(DEFAULT_VERSION).is_ok());
    }

    #[test]
    fn dependencies_name_components_of_the_same_release() {
        for release in RELEASES.iter() {
            for c in &release.components {
                for dep in &c.depends_on {
                    assert!(release.component(dep).is_some(), "{}: {} depends on unknown {dep}", release.version, c.name);
                    assert_ne!(dep, &c.name);
                }
            }
        }
    }

    #[test]
    fn unknown_version_lists_supported_ones() {
        let err = release("v0.9").unwrap_err();
        assert_eq!(err.to_string(), "Kubeflow version \"v0.9\" is not supported; supported versions: v1.4.1, v1.10.2, 26.03");
        assert_eq!(release("1.4.1").unwrap().version, "v1.4.1");
        assert_eq!(release("v26.03").unwrap().version, "26.03");
        assert_eq!(release("26.03").unwrap().version, "26.03");
    }

    #[test]
    fn dependents_are_found() {
        let r = release("v1.4.1").unwrap();
        let deps = r.dependents_of("dex");
        assert_eq!(deps, vec!["oidc-authservice"]);
        assert!(r.dependents_of("istio").contains(&"pipelines"));
    }

    #[test]
    fn variants_follow_the_platform_unless_kfctl_yaml_chooses() {
        let r = release("26.03").unwrap();
        let istio = r.component("istio").unwrap();
        let gke = istio.choose_variant(None, "gke").unwrap();
        assert_eq!((gke.name, gke.reason.as_str()), ("gke", "the platform is gke"));
        assert!(gke.paths.iter().any(|p| p.ends_with("overlays/gke")));
        let kind = istio.choose_variant(None, "kind").unwrap();
        assert_eq!(kind.name, "oauth2-proxy");
        let ambient = istio.choose_variant(Some("ambient-oauth2-proxy-gke"), "gke").unwrap();
        assert_eq!((ambient.name, ambient.reason.as_str()), ("ambient-oauth2-proxy-gke", "kfctl.yaml chooses it"));
        assert!(istio.choose_variant(Some("nope"), "gke").is_none());
        let proxy = r.component("oauth2-proxy").unwrap();
        assert_eq!(proxy.choose_variant(None, "kind").unwrap().name, "m2m-dex-and-kind");
        assert_eq!(proxy.choose_variant(None, "eks").unwrap().name, "m2m-dex-and-eks");
        assert_eq!(proxy.choose_variant(None, "existing").unwrap().name, "m2m-dex-only");
    }

    const GOOD: &str = r#"
version: "9.9"
released: "2030-01"
archive: {url: "https://example.com/9.9.tar.gz", digest: "tree-sha256:0000000000000000000000000000000000000000000000000000000000000000"}
kubernetes: {min: "1.30", max: "1.31", cloud: "1.31", minikube: v1.31.0, kind_image: "kindest/node:v1.31.0", kind_version: v0.24.0, k3s_image: "rancher/k3s:v1.31.0-k3s1", microk8s_channel: 1.31/stable, architecture: amd64}
footprint: {cpu: 4, memory_gib: 8, volumes_gib: 10}
inotify: {max_user_instances: 512, max_user_watches: 524288}
components:
- name: a
  description: the first
  paths: [x/a]
- name: b
  description: the second
  paths: [x/b]
  depends_on: [a]
"#;

    fn error_of(text: &str) -> String {
        parse_catalog("9.9.yaml", text).unwrap_err().to_string()
    }

    #[test]
    fn a_good_catalog_parses() {
        let r = parse_catalog("9.9.yaml", GOOD).unwrap();
        assert_eq!(r.kubernetes.max, Some((1, 31)));
        assert_eq!(r.component("b").unwrap().depends_on, ["a"]);
    }

    #[test]
    fn an_unknown_field_names_the_file_and_the_field() {
        let err = error_of(&GOOD.replace("  depends_on: [a]", "  depends_on: [a]\n  colour: blue"));
        assert!(err.starts_with("catalogs/9.9.yaml: error: line 16 column 3: unknown field `colour`"), "{err}");
        let err = error_of(&GOOD.replace("footprint: {cpu: 4,", "footprint: {cores: 4, cpu: 4,"));
        assert!(err.starts_with("catalogs/9.9.yaml: ") && err.contains("cores"), "{err}");
    }

    #[test]
    fn bad_values_name_the_field() {
        let cases = [
            (GOOD.replace("depends_on: [a]", "depends_on: [c]"), "catalogs/9.9.yaml: components[1].depends_on[0]: unknown component \"c\"; known: a, b"),
            (GOOD.replace("paths: [x/b]", "paths: [../b]"), "catalogs/9.9.yaml: components[1].paths[0]: \"../b\" is not a relative path inside the release (no leading /, no . or ..)"),
            (GOOD.replace("version: \"9.9\"", "version: \"9.8\""), "catalogs/9.9.yaml: version: \"9.8\" differs from the file name; name the file 9.8.yaml"),
            (GOOD.replace("cloud: \"1.31\"", "cloud: \"1.32\""), "catalogs/9.9.yaml: kubernetes.cloud: 1.32 is outside the supported range 1.30 to 1.31"),
            (GOOD.replace("tree-sha256:0000", "sha256:0000"), "catalogs/9.9.yaml: archive.digest: a release is pinned by its content: tree-sha256:HEX"),
            (GOOD.replace("- name: b", "- name: a"), "catalogs/9.9.yaml: components[1].name: component \"a\" is listed twice"),
            (
                GOOD.replace("  paths: [x/a]", "  paths: [x/a]\n  default_variant: one\n  variants: [{name: two, description: d, paths: [x/c], platforms: [openshift]}]"),
                "catalogs/9.9.yaml: components[0].variants[0].platforms[0]: unknown platform \"openshift\"; known: existing, kind, minikube, microk8s, k3d, gke, eks, aks",
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(error_of(&text), expected);
        }
    }

    #[test]
    fn upgrade_sections_name_components_and_releases_that_exist() {
        for (i, release) in RELEASES.iter().enumerate() {
            let earlier = &RELEASES[..i];
            let had = |name: &str| earlier.iter().any(|r| r.component(name).is_some());
            for r in &release.upgrade.renamed {
                assert!(had(&r.from), "{}: renamed from unknown {}", release.version, r.from);
            }
            for r in &release.upgrade.removed {
                assert!(had(&r.name), "{}: removed unknown {}", release.version, r.name);
            }
            for m in &release.upgrade.migrations {
                for v in &m.from {
                    assert!(earlier.iter().any(|r| bare(&r.version) == bare(v)), "{}: {} from unknown or newer {v}", release.version, m.id);
                }
                if let Some(c) = &m.when_component {
                    assert!(had(c), "{}: {} when unknown {c}", release.version, m.id);
                }
            }
        }
    }

    #[test]
    fn bad_upgrade_sections_name_the_field() {
        let with = |section: &str| error_of(&format!("{GOOD}upgrade:\n{section}"));
        assert_eq!(
            with("  renamed: [{from: old, to: c, why: w}]\n"),
            "catalogs/9.9.yaml: upgrade.renamed[0].to: unknown component \"c\"; known: a, b"
        );
        assert_eq!(
            with("  renamed: [{from: a, to: b, why: w}]\n"),
            "catalogs/9.9.yaml: upgrade.renamed[0].from: \"a\" is a component of this release; a rename starts at an earlier release's name"
        );
        assert_eq!(
            with("  migrations: [{id: x, why: w}]\n"),
            "catalogs/9.9.yaml: upgrade.migrations[0]: a migration is either `replace:` or `manual:`"
        );
        assert_eq!(
            with("  migrations: [{id: x, why: w, replace: {kind: K, name: n, fields: []}}]\n"),
            "catalogs/9.9.yaml: upgrade.migrations[0].replace.fields: name the immutable fields that decide a replace"
        );
    }

    #[test]
    fn extra_catalogs_are_read_from_a_directory_and_bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("9.9.yaml"), GOOD).unwrap();
        std::fs::write(dir.path().join("9.8.yaml"), GOOD.replace("9.9", "9.8").replace("depends_on: [a]", "depends_on: [z]")).unwrap();
        std::fs::write(dir.path().join("v1.4.1.yaml"), GOOD.replace("\"9.9\"", "v1.4.1")).unwrap();
        let mut releases = parse_catalogs(CATALOG_FILES).unwrap();
        let problems = add_extra_catalogs(&mut releases, dir.path());
        assert!(releases.iter().any(|r| r.version == "9.9"));
        assert!(!releases.iter().any(|r| r.version == "9.8"));
        let path = |f: &str| dir.path().join(f).display().to_string();
        assert_eq!(problems, [
            format!("{}: components[1].depends_on[0]: unknown component \"z\"; known: a, b", path("9.8.yaml")),
            format!("{}: version: \"v1.4.1\" is already a release kfctl knows", path("v1.4.1.yaml")),
        ]);
    }

    #[test]
    fn a_duplicate_version_names_the_second_file() {
        let err = parse_catalogs(&[("9.9.yaml", GOOD), ("v9.9.yaml", &GOOD.replace("version: \"9.9\"", "version: v9.9"))]).unwrap_err();
        assert_eq!(err.to_string(), "catalogs/v9.9.yaml: version: \"v9.9\" is also the version of another catalog (\"9.9\")");
    }
}
