//! Carrying an app's kfctl.yaml from one release to another: components renamed, removed and new
//! (from the catalogs' `upgrade:` sections), with the user's parameters and variants checked
//! against the new release. Pure: the checks that need a render (do patches and image overrides
//! still change anything?) are in `upgrade::check_customisations`.

use indexmap::IndexMap;

use crate::config::{self, AppConfig, ComponentConfig, RegistryConfig};
use crate::registry::catalog::{self, Release};

/// What happened to the app's components on the way, for the plan.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum CarryNote {
    /// The component has another name in the new release; its settings moved.
    Renamed { from: String, to: String, why: String },
    /// The new release has no such component: its objects are pruned.
    Removed { component: String, why: String },
    /// A component the old release did not have; enabled when it is in the new base set.
    Added { component: String, enabled: bool },
    /// Enabled in the app, no longer in the new release's base set: kept as the app has it.
    NoLongerBase { component: String },
    /// Some of the user's settings do not apply to the new release. The upgrade stops unless
    /// `--force`, which drops them from kfctl.yaml (patch files stay on disk).
    NoLongerApplies {
        component: String,
        #[serde(rename = "setting", serialize_with = "joined")]
        settings: Vec<Setting>,
        why: String,
    },
}

/// One of the user's settings in kfctl.yaml.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Setting {
    Parameter(String),
    Variant(String),
    /// A patch, by its path in the app directory.
    Patch(std::path::PathBuf),
    /// An image override, by the image it replaces.
    ImageOverride(String),
    /// kfctl.yaml as a whole: it does not validate against the new release.
    Validation,
}

impl std::fmt::Display for Setting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Setting::Parameter(key) => write!(f, "parameter {key}"),
            Setting::Variant(name) => write!(f, "variant {name}"),
            Setting::Patch(path) => write!(f, "patch {}", path.display()),
            Setting::ImageOverride(image) => write!(f, "image override {image}"),
            Setting::Validation => f.write_str("validation"),
        }
    }
}

fn list(settings: &[Setting]) -> String {
    settings.iter().map(Setting::to_string).collect::<Vec<_>>().join(", ")
}

fn joined<S: serde::Serializer>(settings: &[Setting], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&list(settings))
}

impl CarryNote {
    /// Whether this note stops the upgrade (without `--force`).
    pub fn blocks(&self) -> bool {
        matches!(self, CarryNote::NoLongerApplies { .. })
    }

    /// One line for the plan.
    pub fn line(&self) -> String {
        match self {
            CarryNote::Renamed { from, to, why } => format!("{from} -> {to}: {why}"),
            CarryNote::Removed { component, why } => format!("{component}: {why}; its objects are pruned"),
            CarryNote::Added { component, enabled: true } => format!("{component}: new, in the base set: enabled"),
            CarryNote::Added { component, enabled: false } => {
                format!("{component}: new, optional: listed disabled (`kfctl component add {component}`)")
            }
            CarryNote::NoLongerBase { component } => format!(
                "{component}: no longer in the base set; kept enabled because the app has it (`kfctl component remove {component}` to drop it)"
            ),
            CarryNote::NoLongerApplies { component, settings, why } => format!("{component}: {} no longer applies: {why}", list(settings)),
        }
    }
}

/// The releases an upgrade (or rollback) from `from` to `to` passes, both ends included, in the
/// order it passes them.
pub fn path(from: &'static Release, to: &'static Release) -> Vec<&'static Release> {
    let releases: &'static [Release] = &catalog::RELEASES;
    let index = |r: &Release| releases.iter().position(|x| x.version == r.version).unwrap_or(0);
    let (a, b) = (index(from), index(to));
    if a <= b { releases[a..=b].iter().collect() } else { releases[b..=a].iter().rev().collect() }
}

/// Where component `name` of release `x` lands in release `y`, the next release on the way:
/// `Ok(new name)` with a note when it was renamed, or `Err(why)` when `y` has no such component.
fn step(name: &str, x: &Release, y: &Release) -> Result<(String, Option<CarryNote>), String> {
    if y.component(name).is_some() {
        return Ok((name.to_string(), None));
    }
    let forward = x.released <= y.released;
    if forward {
        if let Some(r) = y.upgrade.renamed.iter().find(|r| r.from == name) {
            let note = CarryNote::Renamed { from: r.from.clone(), to: r.to.clone(), why: format!("{} ({})", r.why, y.version) };
            return Ok((r.to.clone(), Some(note)));
        }
        if let Some(r) = y.upgrade.removed.iter().find(|r| r.name == name) {
            return Err(format!("removed in {}: {}", y.version, r.why));
        }
        return Err(format!("Kubeflow {} has no component {name}", y.version));
    }
    // Back: a rename recorded in the newer release `x`, undone.
    if let Some(r) = x.upgrade.renamed.iter().find(|r| r.to == name && y.component(&r.from).is_some()) {
        let note = CarryNote::Renamed { from: name.to_string(), to: r.from.clone(), why: format!("back from {}: {}", x.version, r.why) };
        return Ok((r.from.clone(), Some(note)));
    }
    Err(format!("Kubeflow {} added it; {} does not have it", x.version, y.version))
}

/// kfctl.yaml for release `to` with `registry`, carried from `old` (at release `from`).
/// `force` drops settings that no longer apply instead of only reporting them.
pub fn carry(old: &AppConfig, from: &'static Release, to: &'static Release, registry: RegistryConfig, force: bool) -> (AppConfig, Vec<CarryNote>) {
    let mut notes = Vec::new();
    let releases = path(from, to);
    // Catalog components by their name in `to`, merged where two became one.
    let mut mapped: IndexMap<String, ComponentConfig> = IndexMap::new();
    let mut own = Vec::new();
    for c in &old.components {
        if c.path.is_some() {
            own.push(c.clone());
            continue;
        }
        let mut name = c.name.clone();
        let mut removed = None;
        for pair in releases.windows(2) {
            match step(&name, pair[0], pair[1]) {
                Ok((next, note)) => {
                    name = next;
                    notes.extend(note);
                }
                Err(why) => {
                    removed = Some(why);
                    break;
                }
            }
        }
        if let Some(why) = removed {
            if c.enabled {
                notes.push(CarryNote::Removed { component: c.name.clone(), why });
                for setting in settings_of(c) {
                    notes.push(CarryNote::NoLongerApplies {
                        component: c.name.clone(),
                        settings: vec![setting],
                        why: format!("Kubeflow {} has no component {}", to.version, c.name),
                    });
                }
            }
            continue;
        }
        let moved = ComponentConfig { name: name.clone(), ..c.clone() };
        match mapped.get_mut(&name) {
            None => {
                mapped.insert(name, moved);
            }
            Some(existing) => merge_into(existing, moved, &mut notes),
        }
    }

    let mut components = Vec::new();
    for spec in &to.components {
        let Some(mut c) = mapped.shift_remove(&spec.name) else {
            notes.push(CarryNote::Added { component: spec.name.clone(), enabled: spec.base });
            components.push(ComponentConfig::named(&spec.name, spec.base));
            continue;
        };
        let was_base = from.component(&spec.name).is_some_and(|s| s.base);
        if c.enabled && was_base && !spec.base {
            notes.push(CarryNote::NoLongerBase { component: spec.name.clone() });
        }
        check_settings(&mut c, spec, &to.version, force, &mut notes);
        components.push(c);
    }
    components.extend(own);

    let mut config = old.clone();
    config.version = to.version.clone();
    config.registry = registry;
    config.components = components;
    (config, notes)
}

/// The user's settings on a component, as the plan names them.
fn settings_of(c: &ComponentConfig) -> Vec<Setting> {
    let mut out: Vec<Setting> = c.parameters.keys().map(|k| Setting::Parameter(k.clone())).collect();
    out.extend(c.patches.iter().map(|p| Setting::Patch(p.path.clone())));
    out.extend(c.images.iter().map(|i| Setting::ImageOverride(i.name.clone())));
    out.extend(c.variant.iter().map(|v| Setting::Variant(v.clone())));
    out
}

/// Fold `other` (a component that became the same one) into `into`.
fn merge_into(into: &mut ComponentConfig, other: ComponentConfig, notes: &mut Vec<CarryNote>) {
    into.enabled |= other.enabled;
    for (key, value) in other.parameters {
        match into.parameters.get(&key) {
            Some(existing) if *existing != value => notes.push(CarryNote::NoLongerApplies {
                component: into.name.clone(),
                settings: vec![Setting::Parameter(key.clone())],
                why: "two components that became this one set it to different values; keep one in kfctl.yaml".into(),
            }),
            _ => {
                into.parameters.insert(key, value);
            }
        }
    }
    into.patches.extend(other.patches);
    into.images.extend(other.images);
    if into.variant.is_none() {
        into.variant = other.variant;
    }
}

/// Parameters the new release's component does not take (or takes in another shape) and a
/// variant it does not have: noted, and with `force` dropped.
fn check_settings(c: &mut ComponentConfig, spec: &catalog::ComponentSpec, version: &str, force: bool, notes: &mut Vec<CarryNote>) {
    let mut dropped = Vec::new();
    for (key, value) in &c.parameters {
        let why = match spec.parameter(key) {
            None => Some(format!("{} in Kubeflow {version} takes no parameter {key}", c.name)),
            Some(param) => config::check_parameter(param.kind, value).err().map(|e| format!("the value {e}")),
        };
        if let Some(why) = why {
            notes.push(CarryNote::NoLongerApplies { component: c.name.clone(), settings: vec![Setting::Parameter(key.clone())], why });
            dropped.push(key.clone());
        }
    }
    if force {
        for key in dropped {
            c.parameters.shift_remove(&key);
        }
    }
    if let Some(variant) = &c.variant
        && !spec.variant_names().contains(&variant.as_str())
    {
        notes.push(CarryNote::NoLongerApplies {
            component: c.name.clone(),
            settings: vec![Setting::Variant(variant.clone())],
            why: format!("Kubeflow {version} has {}", if spec.variants.is_empty() { "no variants of it".to_string() } else { format!("variants {}", spec.variant_names().join(", ")) }),
        });
        if force {
            c.variant = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ImageOverride, PatchConfig};
    use crate::platform::PlatformSpec;

    fn registry(version: &str) -> RegistryConfig {
        RegistryConfig {
            url: format!("https://example.com/{version}.tar.gz"),
            digest: Some(format!("tree-sha256:{}", "0".repeat(64))),
            sha256: None,
            path: format!("registry/{version}").into(),
            mirror: None,
            remotes: Vec::new(),
        }
    }

    fn app(version: &str) -> AppConfig {
        let release = catalog::release(version).unwrap();
        AppConfig::new("kubeflow", release, registry(version), PlatformSpec::default())
    }

    fn names(config: &AppConfig) -> Vec<(&str, bool)> {
        config.components.iter().map(|c| (c.name.as_str(), c.enabled)).collect()
    }

    #[test]
    fn v1_10_2_to_26_03_folds_networkpolicies_adds_trainer_and_keeps_the_training_operator() {
        let from = catalog::release("v1.10.2").unwrap();
        let to = catalog::release("26.03").unwrap();
        let mut old = app("v1.10.2");
        old.component_mut("networkpolicies").unwrap().patches.push(PatchConfig { path: "np.yaml".into(), target: None });
        let (new, notes) = carry(&old, from, to, registry("26.03"), false);
        new.validate().unwrap();
        assert_eq!(new.version, "26.03");
        assert!(names(&new).contains(&("trainer", true)), "{:?}", names(&new));
        assert!(names(&new).contains(&("training-operator", true)), "the app had it: {:?}", names(&new));
        assert!(new.component("networkpolicies").is_none());
        assert_eq!(new.component("kubeflow-namespace").unwrap().patches[0].path, std::path::Path::new("np.yaml"));
        assert!(notes.iter().any(|n| matches!(n, CarryNote::Renamed { from, to, .. } if from == "networkpolicies" && to == "kubeflow-namespace")), "{notes:?}");
        assert!(notes.contains(&CarryNote::Added { component: "trainer".into(), enabled: true }), "{notes:?}");
        assert!(notes.contains(&CarryNote::NoLongerBase { component: "training-operator".into() }), "{notes:?}");
        assert!(!notes.iter().any(CarryNote::blocks), "{notes:?}");
    }

    #[test]
    fn v1_4_1_to_26_03_passes_v1_10_2_renames_and_removals() {
        let from = catalog::release("v1.4.1").unwrap();
        let to = catalog::release("26.03").unwrap();
        let mut old = app("v1.4.1");
        old.component_mut("oidc-authservice").unwrap().images.push(ImageOverride {
            name: "gcr.io/arrikto/kubeflow/oidc-authservice".into(),
            new_name: None,
            new_tag: Some("x".into()),
            digest: None,
        });
        let (new, notes) = carry(&old, from, to, registry("26.03"), false);
        let lines: Vec<String> = notes.iter().map(CarryNote::line).collect();
        assert!(new.component("oauth2-proxy").is_some_and(|c| c.enabled && c.images.len() == 1), "{lines:?}");
        assert!(new.component("kserve").is_some_and(|c| c.enabled), "kfserving became kserve: {lines:?}");
        assert!(lines.iter().any(|l| l.starts_with("mpi-operator: removed in v1.10.2: the training operator runs MPIJobs")), "{lines:?}");
        assert!(!lines.iter().any(|l| l.starts_with("seldon")), "seldon was disabled: nothing to say: {lines:?}");
    }

    #[test]
    fn a_rollback_undoes_renames_and_drops_what_the_newer_release_added() {
        let from = catalog::release("26.03").unwrap();
        let to = catalog::release("v1.10.2").unwrap();
        let (new, notes) = carry(&app("26.03"), from, to, registry("v1.10.2"), false);
        new.validate().unwrap();
        assert!(new.component("trainer").is_none());
        assert!(names(&new).contains(&("networkpolicies", true)), "new again in the older base set: {:?}", names(&new));
        assert!(notes.iter().any(|n| matches!(n, CarryNote::Removed { component, .. } if component == "trainer")), "{notes:?}");
    }

    #[test]
    fn settings_that_no_longer_apply_are_named_and_dropped_only_with_force() {
        let from = catalog::release("v1.10.2").unwrap();
        let to = catalog::release("26.03").unwrap();
        let mut old = app("v1.10.2");
        old.component_mut("istio").unwrap().variant = Some("oauth2-proxy".into());
        old.component_mut("user-namespace").unwrap().parameters.insert("user".into(), "jane@example.org".into());
        // A parameter 26.03's dex does not take (written by hand; v1.10.2's does not either, but
        // the carry reads what is there).
        old.component_mut("dex").unwrap().parameters.insert("colour".into(), "blue".into());
        let (kept, notes) = carry(&old, from, to, registry("26.03"), false);
        let blocking: Vec<String> = notes.iter().filter(|n| n.blocks()).map(CarryNote::line).collect();
        assert_eq!(blocking, ["dex: parameter colour no longer applies: dex in Kubeflow 26.03 takes no parameter colour"]);
        assert!(kept.component("dex").unwrap().parameters.contains_key("colour"));
        assert_eq!(kept.component("user-namespace").unwrap().parameters["user"], "jane@example.org");
        let (forced, _) = carry(&old, from, to, registry("26.03"), true);
        assert!(!forced.component("dex").unwrap().parameters.contains_key("colour"));
        forced.validate().unwrap();
    }
}
