//! Every release catalog (crates/kfctl/catalogs/*.yaml) against its real archive in
//! /work/shared/registries: the content pin, every directory a component or variant builds, the
//! files and fields parameters edit, and the base set: rendered component by component with
//! kfctl's renderer, it must be exactly the objects upstream's `example/` renders (as a multiset
//! of objects keyed by apiVersion/kind/namespace/name, compared in full; order aside).
//!
//! Needs no cluster. Releases that name remote bases (26.03) read them from the mirror directory
//! through a cache in a temporary directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kfctl::registry::catalog::{self, ParameterTarget, Release};
use kfctl::registry::remote::RemoteFetcher;
use kfctl::registry::{self, UnpackLimits, digest};
use serde_json::Value;

const REGISTRIES: &str = "/work/shared/registries";

/// The release unpacked into a temporary directory, as `kfctl init` unpacks it.
fn unpack(release: &Release, holder: &Path) -> PathBuf {
    let archive = Path::new(REGISTRIES).join(format!("kubeflow-manifests-{}.tar.gz", release.version));
    assert!(archive.is_file(), "{}: no archive for Kubeflow {}", archive.display(), release.version);
    let dir = holder.join("release");
    registry::unpack(&archive, &archive.display().to_string(), &dir, &UnpackLimits::default())
        .unwrap_or_else(|e| panic!("unpack {}: {e}", archive.display()));
    dir
}

/// (apiVersion, kind, namespace, name) of an object, for messages and sorting.
fn key(object: &Value) -> String {
    let field = |pointer: &str| object.pointer(pointer).and_then(Value::as_str).unwrap_or("").to_owned();
    format!(
        "{} {} {}/{}",
        field("/apiVersion"),
        field("/kind"),
        field("/metadata/namespace"),
        field("/metadata/name")
    )
}

/// The objects as a multiset: key -> full contents (serde_json's maps are sorted, so the text
/// is canonical), each listed as often as it occurs.
fn multiset(objects: Vec<Value>) -> BTreeMap<String, Vec<String>> {
    let mut set: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for object in objects {
        set.entry(key(&object)).or_default().push(serde_json::to_string(&object).expect("an object serializes"));
    }
    for contents in set.values_mut() {
        contents.sort();
    }
    set
}

fn render(dir: &Path, fetcher: &RemoteFetcher) -> Result<Vec<Value>, String> {
    let build = kfctl_render::build_with_remotes(dir, fetcher).map_err(|e| e.to_string())?;
    Ok(build.resources.into_iter().map(|r| Value::Object(r.object)).collect())
}

/// What differs between the base set's objects and example/'s, one line per object.
fn differences(base: &BTreeMap<String, Vec<String>>, example: &BTreeMap<String, Vec<String>>) -> Vec<String> {
    let mut lines = Vec::new();
    for (key, contents) in base {
        match example.get(key) {
            None => lines.push(format!("only in the base set: {key}")),
            Some(other) if other.len() != contents.len() => {
                lines.push(format!("{key}: {} times in the base set, {} in example/", contents.len(), other.len()))
            }
            Some(other) if other != contents => lines.push(format!("{key}: contents differ\n    base set: {}\n    example/: {}", contents[0], other[0])),
            Some(_) => {}
        }
    }
    for key in example.keys().filter(|k| !base.contains_key(*k)) {
        lines.push(format!("only in example/: {key}"));
    }
    lines
}

fn check_release(version: &str) {
    let release = catalog::release(version).unwrap();
    let holder = tempfile::tempdir().unwrap();
    let dir = unpack(release, holder.path());

    // The content pin kfctl init checks.
    let tree = digest::tree_digest(&dir).unwrap();
    assert_eq!(tree.to_string(), release.default_digest, "{version}: the catalog's archive.digest");

    // Every directory a component or a variant builds, and every dependency.
    let mut problems = Vec::new();
    for (component, path) in release.all_paths() {
        if !dir.join(path).join("kustomization.yaml").is_file() {
            problems.push(format!("{component}: {path}/kustomization.yaml does not exist"));
        }
    }
    for c in &release.components {
        for dep in &c.depends_on {
            if release.component(dep).is_none() {
                problems.push(format!("{}: depends on {dep}, which is not in the catalog", c.name));
            }
        }
        // Every parameter's target exists in this release, as upstream writes it.
        for p in &c.parameters {
            let at = format!("{}.{}", c.name, p.name);
            let first_document = |file: &str| -> Option<Value> {
                let text = std::fs::read_to_string(dir.join(file)).ok()?;
                kfctl_render::yaml::parse_documents(&text, &dir.join(file)).ok()?.into_iter().next()
            };
            match &p.target {
                ParameterTarget::EmbeddedYaml { file, key, pointer } => {
                    let embedded = first_document(file)
                        .and_then(|cm| cm.pointer(&format!("/data/{key}")).and_then(Value::as_str).map(str::to_owned))
                        .and_then(|text| kfctl_render::yaml::parse_document(&text, Path::new(file)).ok());
                    if embedded.as_ref().and_then(|d| d.pointer(pointer)).is_none() {
                        problems.push(format!("{at}: {file} data.{key} has no {pointer}"));
                    }
                }
                ParameterTarget::Field { file, pointer } => {
                    if first_document(file).as_ref().and_then(|d| d.pointer(pointer)).is_none() {
                        problems.push(format!("{at}: {file} has no {pointer}"));
                    }
                }
                ParameterTarget::GeneratorLiteral { generator, key } => {
                    let found = c.paths.iter().any(|path| {
                        let text = std::fs::read_to_string(dir.join(path).join("kustomization.yaml")).unwrap_or_default();
                        let env = std::fs::read_to_string(dir.join(path).join("params.env")).unwrap_or_default();
                        text.contains(&format!("name: {generator}")) && env.lines().any(|l| l.starts_with(&format!("{key}=")))
                    });
                    if !found {
                        problems.push(format!("{at}: no configMapGenerator {generator} with {key} in {}", c.paths.join(", ")));
                    }
                }
            }
        }
    }
    assert!(problems.is_empty(), "Kubeflow {version}: the catalog does not match the archive:\n  {}", problems.join("\n  "));

    // The base set, component by component, against upstream's example/.
    let cache = holder.path().join("cache");
    let fetcher = RemoteFetcher::new(Some(&format!("{REGISTRIES}/mirror")), cache);
    // Every directory renders, optional components and variants too (a broken overlay upstream
    // must not reach the catalog).
    let mut rendered = BTreeMap::new();
    let mut failed = Vec::new();
    for (component, path) in release.all_paths() {
        match render(&dir.join(path), &fetcher) {
            Ok(objects) => {
                rendered.insert(path.to_owned(), objects);
            }
            Err(err) => failed.push((component.to_owned(), path.to_owned(), err)),
        }
    }
    let broken: Vec<String> = failed
        .iter()
        .filter(|(_, path, _)| !is_known_renderer_bug(version, path))
        .map(|(component, path, err)| format!("{component}: {path}: {err}"))
        .collect();
    assert!(broken.is_empty(), "Kubeflow {version}: directories of the catalog do not render:\n  {}", broken.join("\n  "));
    // The ones `kubectl kustomize` builds but kfctl's renderer does not yet: reported at the end.
    let renderer_bugs: Vec<String> = failed
        .iter()
        .filter(|(component, path, _)| !release.component(component).is_some_and(|c| c.base && c.paths.contains(path)))
        .map(|(component, path, err)| format!("optional component or variant {component}: {path}: {err}"))
        .collect();
    let mut base = Vec::new();
    for c in release.components.iter().filter(|c| c.base) {
        for path in &c.paths {
            base.extend(rendered.get(path).cloned().unwrap_or_default());
        }
    }
    failed.retain(|(component, path, _)| release.component(component).is_some_and(|c| c.base && c.paths.contains(path)));
    let example = render(&dir.join("example"), &fetcher);
    if failed.is_empty() {
        let example = example.unwrap_or_else(|err| panic!("Kubeflow {version}: example/ does not render with kfctl but every base component does: {err}"));
        let diff = compare(&base, example);
        assert!(diff.is_empty(), "Kubeflow {version}: {diff}");
        assert!(renderer_bugs.is_empty(), "Kubeflow {version}: kfctl's renderer cannot build (kubectl kustomize can):\n  {}", renderer_bugs.join("\n  "));
        return;
    }
    // Some directories do not render yet (renderer bugs, fixed elsewhere): say exactly which,
    // and still compare everything else, against example/ without those directories.
    let mut report = format!("Kubeflow {version}: kfctl's renderer cannot build what this test compares (kubectl kustomize can)");
    for line in &renderer_bugs {
        report.push_str(&format!("\n  {line}"));
    }
    for (component, path, err) in &failed {
        report.push_str(&format!("\n  base set component {component}: {path}: {err}"));
    }
    if let Err(err) = &example {
        report.push_str(&format!("\n  example/: {err}"));
    }
    let partial = dir.join("example-without-unrenderable");
    std::fs::create_dir_all(&partial).unwrap();
    let text = std::fs::read_to_string(dir.join("example/kustomization.yaml")).unwrap();
    let kept: Vec<&str> = text
        .lines()
        .filter(|line| !failed.iter().any(|(_, path, _)| line.trim_start_matches(['-', ' ']).split_whitespace().next() == Some(&format!("../{path}"))))
        .collect();
    std::fs::write(partial.join("kustomization.yaml"), kept.join("\n")).unwrap();
    match render(&partial, &fetcher) {
        Ok(objects) => {
            let diff = compare(&base, objects);
            let skipped: Vec<&str> = failed.iter().map(|(_, path, _)| path.as_str()).collect();
            if diff.is_empty() {
                report.push_str(&format!("\n  without {}, the base set and example/ render the same objects", skipped.join(", ")));
            } else {
                report.push_str(&format!("\n  without {}: {diff}", skipped.join(", ")));
            }
        }
        Err(err) => report.push_str(&format!("\n  example/ without those directories: {err}")),
    }
    panic!("{report}\n  (this test passes once they render)");
}

/// Where rendering component by component rightly differs from one `example/` build: (object
/// key, JSON pointer, value in the base set, value in example/). Each is checked, then ignored.
///
/// 26.03: kustomize's `vars` are global to one build, so in example/ the CERTIFICATE_NAMESPACE
/// and CERTIFICATE_NAME vars that pvcviewer-controller declares also fill the placeholders of
/// jobset's CRD (from the trainer's remote jobset manifests): upstream's example asks
/// cert-manager to inject pvcviewer's CA into jobset's conversion webhook, which jobset's own
/// certificate rotation manages. Rendered alone, as kfctl renders components, the placeholder
/// stays and cert-manager ignores it.
const KNOWN_DIFFERENCES: &[(&str, &str, &str, &str)] = &[(
    "apiextensions.k8s.io/v1 CustomResourceDefinition /jobsets.jobset.x-k8s.io",
    "/metadata/annotations/cert-manager.io~1inject-ca-from",
    "$(CERTIFICATE_NAMESPACE)/$(CERTIFICATE_NAME)",
    "kubeflow/pvcviewer-serving-cert",
)];

/// Check and remove the known differences (see [`KNOWN_DIFFERENCES`]).
fn without_known_differences(objects: &mut [Value], base_side: bool) -> Vec<String> {
    let mut problems = Vec::new();
    for object in objects.iter_mut() {
        for (object_key, pointer, base_value, example_value) in KNOWN_DIFFERENCES {
            if key(object) != *object_key {
                continue;
            }
            let expected = if base_side { base_value } else { example_value };
            let (parent, leaf) = pointer.rsplit_once('/').expect("a pointer with a parent");
            let leaf = leaf.replace("~1", "/").replace("~0", "~");
            let removed = object.pointer_mut(parent).and_then(Value::as_object_mut).and_then(|map| map.remove(&leaf));
            if removed.as_ref().and_then(Value::as_str) != Some(expected) {
                problems.push(format!("known difference {object_key} {pointer}: expected {expected:?}, found {removed:?}"));
            }
        }
    }
    problems
}

/// Directories kfctl's renderer cannot build yet, though `kubectl kustomize` (v5.5) can: being
/// fixed in the renderer. The test still fails on them, naming them; any other directory that
/// does not render fails it as a catalog error. Pipelines: the argo JSON patch replaces
/// `/subjects/0/namespace` of a ClusterRoleBinding that has none.
/// The same for oauth2-proxy's m2m-dex-and-kind overlay (a JSON patch replacing
/// `/spec/jwtRules/0/jwksUri`, which a kustomize component adds) and the model registry's
/// overlays/db (a replacement into an annotation the target lacks).
fn is_known_renderer_bug(version: &str, path: &str) -> bool {
    let known = path.starts_with("applications/pipeline/")
        || path == "common/oauth2-proxy/overlays/m2m-dex-and-kind"
        || path == "applications/model-registry/upstream/overlays/db";
    matches!(version, "v1.10.2" | "26.03") && known
}

/// "" when the two sets of objects are the same multiset, else what differs.
fn compare(base: &[Value], mut example: Vec<Value>) -> String {
    let mut base = base.to_vec();
    let mut problems = without_known_differences(&mut base, true);
    problems.extend(without_known_differences(&mut example, false));
    if !problems.is_empty() {
        return problems.join("\n  ");
    }
    let base = multiset(base);
    let example = multiset(example);
    let diff = differences(&base, &example);
    if diff.is_empty() {
        return String::new();
    }
    format!(
        "the base set renders {} objects, example/ {}; {} differences:\n  {}",
        base.values().map(Vec::len).sum::<usize>(),
        example.values().map(Vec::len).sum::<usize>(),
        diff.len(),
        diff.join("\n  ")
    )
}

#[test]
fn v1_4_1_catalog_matches_its_archive() {
    check_release("v1.4.1");
}

#[test]
fn v1_10_2_catalog_matches_its_archive() {
    check_release("v1.10.2");
}

#[test]
fn v26_03_catalog_matches_its_archive() {
    check_release("26.03");
}

#[test]
fn every_catalog_has_an_archive_test() {
    // A new catalog file needs its archive in /work/shared/registries and a test above.
    let versions: Vec<&str> = catalog::RELEASES.iter().map(|r| r.version.as_str()).collect();
    assert_eq!(versions, ["v1.4.1", "v1.10.2", "26.03"]);
}
