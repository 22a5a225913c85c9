//! `kfctl images` and `images.overrides` on the real releases: the list covers every image the
//! render names (checked by an independent walk of every string), every catalog rule still finds
//! its place, and overrides for every image leave no other image in the render. Plus an apply
//! on the testenv that rewrites an image held in a ConfigMap's document.
//!
//! The release tests need no cluster; the apply test runs inside the testenv:
//! `scripts/testenv exec -- cargo test -p kfctl --offline --test images`.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use k8s_openapi::api::core::v1::ConfigMap;
use regex::Regex;
use serde_json::{Value, json};

const MIRROR: &str = "registry.internal:5000/mirror";

/// An app of `version` with every catalog component enabled, in a temporary directory.
fn full_app(version: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("app");
    let out = Command::new(env!("CARGO_BIN_EXE_kfctl"))
        .args([
            "init",
            app.to_str().unwrap(),
            "--version",
            version,
            "--registry",
        ])
        .arg(support::release_archive(version))
        .arg("--mirror")
        .arg(support::shared_dir().join("registries/mirror"))
        .env("KFCTL_CACHE_DIR", dir.path().join("cache"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kfctl init {version}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config = app.join("kfctl.yaml");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("enabled: false", "enabled: true");
    std::fs::write(&config, text).unwrap();
    dir
}

fn kfctl(args: &[&str], app: &Path) -> (String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kfctl"))
        .args(args)
        .arg(app)
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "kfctl {args:?} failed:\n{stderr}");
    (stdout, stderr)
}

/// The app's render, as `kfctl apply --dry-run` prints it.
fn render(app: &Path) -> Vec<Value> {
    let (stdout, _) = kfctl(&["apply", "--dry-run"], app);
    let list: Value = serde_json::from_str(&stdout).unwrap();
    list["items"].as_array().unwrap().clone()
}

/// `kfctl images --output json`, and its warnings.
fn images(app: &Path, extra: &[&str]) -> (Value, String) {
    let mut args = vec!["images", "--output", "json"];
    args.extend(extra);
    let (stdout, stderr) = kfctl(&args, app);
    (serde_json::from_str(&stdout).unwrap(), stderr)
}

/// Every image-looking string in `objects`, found independently of kfctl's own scan: a host
/// with a dot or a port, a path, and a tag or digest, not inside a URL.
fn image_strings(objects: &[Value]) -> BTreeSet<String> {
    let pattern = Regex::new(r"[a-z0-9][a-z0-9-]*(?:\.[a-z0-9-]+)*(?:\.[a-z0-9-]+|:[0-9]+)/[a-z0-9._/-]*[a-z0-9](?::[A-Za-z0-9_][A-Za-z0-9_.-]*|@sha256:[0-9a-f]{64})").unwrap();
    let mut out = BTreeSet::new();
    let mut visit = |text: &str| {
        for m in pattern.find_iter(text) {
            let before = text[..m.start()].chars().next_back();
            if before.is_some_and(|c| c.is_ascii_alphanumeric() || "/:.@_-".contains(c)) {
                continue; // the middle of something longer: a URL, a path
            }
            out.insert(m.as_str().trim_end_matches(['.', '-', '_']).to_owned());
        }
    };
    fn walk(value: &Value, visit: &mut dyn FnMut(&str)) {
        match value {
            Value::String(s) => visit(s),
            Value::Array(items) => items.iter().for_each(|v| walk(v, visit)),
            Value::Object(map) => map.values().for_each(|v| walk(v, visit)),
            _ => {}
        }
    }
    for object in objects {
        walk(object, &mut visit);
    }
    out
}

fn all_strings(objects: &[Value]) -> String {
    serde_json::to_string(objects).unwrap()
}

/// The list covers every image-looking string of the render, names nothing the render does not
/// hold, and every catalog rule still finds something. Returns (pod templates, elsewhere).
fn check_release(version: &str) -> (usize, usize, usize) {
    let dir = full_app(version);
    let app = dir.path().join("app");
    let objects = render(&app);
    let (list, warnings) = images(&app, &[]);
    let listed: BTreeSet<String> = list["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["image"].as_str().unwrap().to_owned())
        .collect();

    let missing: Vec<String> = image_strings(&objects)
        .into_iter()
        .filter(|s| !listed.contains(s))
        .collect();
    assert!(
        missing.is_empty(),
        "{version}: images in the render that `kfctl images` does not list: {missing:#?}"
    );

    // Each listed image is in the render: as it is, or (a composed one) as its parts.
    let text = all_strings(&objects);
    for image in list["images"].as_array().unwrap() {
        let name = image["image"].as_str().unwrap();
        let r = &image["reference"];
        let last = r["repository"]
            .as_str()
            .unwrap_or(name)
            .rsplit('/')
            .next()
            .unwrap();
        let version_part = r["tag"]
            .as_str()
            .or(r["digest"].as_str())
            .unwrap_or_default();
        assert!(
            text.contains(name) || (text.contains(last) && text.contains(version_part)),
            "{version}: {name} is listed but not in the render"
        );
        for location in image["locations"].as_array().unwrap() {
            for key in ["apiVersion", "kind", "namespace", "name", "field", "rule"] {
                assert!(
                    location[key].is_string(),
                    "{version}: {name}: location without {key}: {location}"
                );
            }
        }
    }

    // A rule that finds nothing in the whole release is stale (the release moved the image).
    let used: BTreeSet<&str> = list["images"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|i| i["locations"].as_array().unwrap())
        .map(|l| l["rule"].as_str().unwrap())
        .collect();
    let release = kfctl::registry::catalog::release(version).unwrap();
    let stale: Vec<&str> = release
        .images
        .iter()
        .map(|r| r.id.as_str())
        .filter(|id| !used.contains(id))
        .collect();
    assert!(
        stale.is_empty(),
        "{version}: catalog image rules that find nothing: {stale:?}"
    );
    let scan_only = list["scanOnly"].as_u64().unwrap() as usize;
    assert_eq!(
        scan_only, 0,
        "{version}: images no rule explains (the warnings):\n{warnings}"
    );
    (
        list["podTemplate"].as_u64().unwrap() as usize,
        list["elsewhere"].as_u64().unwrap() as usize,
        listed.len(),
    )
}

#[test]
fn every_image_of_every_release_is_listed() {
    let mut table = String::from(
        "| release | images | in pod templates | only elsewhere |\n|---|---|---|---|\n",
    );
    for version in ["26.03", "v1.10.2", "v1.4.1"] {
        let (pod, elsewhere, total) = check_release(version);
        assert!(
            pod > 20 && elsewhere > 5,
            "{version}: {pod} in pod templates, {elsewhere} elsewhere"
        );
        table.push_str(&format!("| {version} | {total} | {pod} | {elsewhere} |\n"));
    }
    eprintln!("{table}");
}

/// A fake digest for `image`, as a mirror would record.
fn digest_of(image: &str) -> String {
    use std::fmt::Write as _;
    let mut hex = String::new();
    for b in image.bytes().cycle().take(32) {
        let _ = write!(hex, "{:02x}", b);
    }
    format!("sha256:{hex}")
}

#[test]
fn overrides_for_every_image_leave_no_other_image_in_the_26_03_render() {
    let dir = full_app("26.03");
    let app = dir.path().join("app");
    let (list, _) = images(&app, &["--as-released"]);
    let mut overrides = String::from("\nimages:\n  overrides:\n");
    let mut targets = BTreeMap::new();
    for image in list["images"].as_array().unwrap() {
        let name = image["image"].as_str().unwrap();
        let r = &image["reference"];
        let plain = format!(
            "{}{}",
            r["registry"]
                .as_str()
                .map(|r| format!("{r}/"))
                .unwrap_or_default(),
            r["repository"].as_str().unwrap()
        );
        let new_name = format!("{MIRROR}/{plain}");
        overrides.push_str(&format!(
            "  - name: {name:?}\n    newName: {new_name:?}\n    digest: {:?}\n",
            digest_of(name)
        ));
        targets.insert(name.to_owned(), new_name);
    }
    let config = app.join("kfctl.yaml");
    std::fs::write(
        &config,
        std::fs::read_to_string(&config).unwrap() + &overrides,
    )
    .unwrap();

    let objects = render(&app);
    let left: Vec<String> = image_strings(&objects)
        .into_iter()
        .filter(|s| !s.starts_with(MIRROR))
        .collect();
    assert!(
        left.is_empty(),
        "images the overrides did not reach: {left:#?}"
    );
    let (after, warnings) = images(&app, &[]);
    assert!(!warnings.contains("warning"), "{warnings}");
    let after: Vec<&str> = after["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["image"].as_str().unwrap())
        .collect();
    let outside: Vec<&&str> = after.iter().filter(|i| !i.starts_with(MIRROR)).collect();
    assert!(
        outside.is_empty(),
        "`kfctl images` still lists: {outside:#?}"
    );
    // Pinned by digest, except where the place has no room for one (KServe's explainer tags).
    let unpinned: Vec<&&str> = after.iter().filter(|i| !i.contains("@sha256:")).collect();
    assert!(
        unpinned.iter().all(|i| i.contains("art-explainer")),
        "{unpinned:#?}"
    );
    // The sidecar injector's values keep their layout: only the proxy image changed.
    let injector = objects
        .iter()
        .find(|o| o["kind"] == "ConfigMap" && o["metadata"]["name"] == "istio-sidecar-injector")
        .unwrap();
    assert!(
        injector["data"]["values"]
            .as_str()
            .unwrap()
            .contains(&format!(
                "\"image\": \"{MIRROR}/gcr.io/istio-release/proxyv2@"
            ))
    );
    assert!(
        injector["data"]["values"]
            .as_str()
            .unwrap()
            .contains("\"hub\": \"gcr.io/istio-release\"")
    );
}

#[test]
fn a_bad_override_is_refused_naming_the_field() {
    let app = support::AppDir::new("bad-override");
    app.component("web", &[json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "v"}})]);
    app.config(&["web"]);
    let config = app.path().join("kfctl.yaml");
    let text = std::fs::read_to_string(&config).unwrap()
        + "images:\n  overrides:\n  - name: ghcr.io/a/b:1\n    newName: reg/a/b\n    digest: sha256:abc\n";
    std::fs::write(&config, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kfctl"))
        .args(["images"])
        .arg(app.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("images.overrides[0].digest: \"sha256:abc\" is not a digest"),
        "{stderr}"
    );
    assert!(
        stderr.contains("hint: sha256: and 64 lowercase hex digits"),
        "{stderr}"
    );
}

/// Apply (and diff) render through the same path: an override reaches the cluster in an image
/// held in a ConfigMap's document, and the diff after it has nothing to change.
#[tokio::test]
async fn apply_writes_the_overridden_image_into_a_configmaps_document() {
    let ns = support::TestNamespace::new("images-apply").await;
    let app = support::AppDir::new(&ns.name);
    let collectors = "{\n  \"StdOut\": {\n    \"image\": \"docker.io/kubeflowkatib/file-metrics-collector:v0.12.0\"\n  }\n}";
    app.component("tuning", &[json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "katib-config", "namespace": ns.name},
        "data": {"metrics-collector-sidecar": collectors}})]);
    app.config(&["tuning"]);
    let digest = digest_of("collector");
    let config = app.path().join("kfctl.yaml");
    let overrides = format!(
        "images:\n  overrides:\n  - name: docker.io/kubeflowkatib/file-metrics-collector:v0.12.0\n    newName: {MIRROR}/kubeflowkatib/file-metrics-collector\n    digest: {digest}\n"
    );
    std::fs::write(
        &config,
        std::fs::read_to_string(&config).unwrap() + &overrides,
    )
    .unwrap();
    let run = |args: &[&str]| {
        let out = ns
            .kfctl()
            .args(args)
            .arg(app.path())
            .args(["--app-namespace", &ns.name])
            .output()
            .unwrap();
        (
            out.status.code(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let (code, text) = run(&["apply"]);
    assert_eq!(code, Some(0), "{text}");
    let live = ns.api::<ConfigMap>().get("katib-config").await.unwrap();
    let data = live.data.unwrap()["metrics-collector-sidecar"].clone();
    assert_eq!(
        data,
        collectors.replace(
            "docker.io/kubeflowkatib/file-metrics-collector:v0.12.0",
            &format!("{MIRROR}/kubeflowkatib/file-metrics-collector@{digest}")
        )
    );
    let (code, text) = run(&["diff"]);
    assert_eq!(
        code,
        Some(0),
        "diff renders with the overrides too, so it has nothing to change:\n{text}"
    );
}
