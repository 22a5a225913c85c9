//! Kubeflow 26.03 in an air gap, end to end through the real binary and two real registries
//! (Debian's docker-registry in the testenv netns: a plain-HTTP source holding generated images
//! under the upstream names, and a private target with TLS from a test CA and basic auth):
//!
//! 1. `kfctl images` lists what the base set runs; the source is seeded with exactly those.
//! 2. `kfctl mirror --source ... --to ...` copies them and records an override by digest for each
//!    in kfctl.yaml; a second run copies nothing.
//! 3. `kfctl apply` with simnode checking every pod's images against the private registry (a
//!    manifest HEAD with the node's credentials, as a kubelet pulls): everything gets ready, so
//!    every image resolved there, and every image string in the applied objects names it.
//! 4. `kfctl bundle --images` -> source stopped -> `kfctl init --bundle` -> `kfctl mirror
//!    --from-bundle` to a fresh prefix: no network but the private registry.
//!
//! The generated source images cannot carry upstream's digests, so the components that pin
//! images by digest (knative, and kserve which needs it) are left out of this app; copying by
//! digest is checked on its own below.
//!
//! Run inside the testenv: `scripts/testenv exec -- cargo test -p kfctl --test airgap`.

mod support;

use std::collections::BTreeSet;
use std::path::Path;

use kfctl::config::AppConfig;
use regex::Regex;
use serde_json::Value;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DynamicObject, ListParams};
use support::kubeflow::{APP, APP_LABEL, Kfctl, inventory, kinds_of, tail};
use support::oci_registry::{OciRegistry, PASSWORD, USER, seed};

/// Components that pin images by digest (see the module doc).
const BY_DIGEST: [&str; 2] = ["kserve", "knative"];
const PREFIX: &str = "kubeflow";

/// Image-looking strings (a registry host with a dot or port, a path, a tag or digest): the
/// same broad pattern the images test walks renders with.
fn image_strings(value: &Value, out: &mut BTreeSet<String>) {
    let pattern = Regex::new(r"[a-z0-9][a-z0-9-]*(?:\.[a-z0-9-]+)*(?:\.[a-z0-9-]+|:[0-9]+)/[a-z0-9._/-]*[a-z0-9](?::[A-Za-z0-9_][A-Za-z0-9_.-]*|@sha256:[0-9a-f]{64})").unwrap();
    match value {
        Value::String(s) => out.extend(pattern.find_iter(s).map(|m| m.as_str().to_owned())),
        Value::Array(items) => items.iter().for_each(|v| image_strings(v, out)),
        Value::Object(map) => map.values().for_each(|v| image_strings(v, out)),
        _ => {}
    }
}

/// `kfctl images DIR --output json`: the image names.
fn images_of(kfctl: &Kfctl, app: &str, extra: &[&str]) -> Vec<String> {
    let mut args = vec!["images", app, "--output", "json"];
    args.extend_from_slice(extra);
    let out = support::kfctl_command(&kfctl.kubeconfig).args(&args).output().expect("kfctl images");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: Value = serde_json::from_slice(&out.stdout).expect("kfctl images --output json");
    json["images"].as_array().unwrap().iter().map(|i| i["image"].as_str().unwrap().to_owned()).collect()
}

/// A 26.03 base-set app (without [`BY_DIGEST`]) with the sim-cluster overlay, at `dir`.
fn app_26_03(kubeconfig: &Path, dir: &Path) -> Kfctl {
    let kfctl = Kfctl { kubeconfig: kubeconfig.to_path_buf(), app: dir.to_path_buf() };
    let app = kfctl.app().to_owned();
    let archive = support::release_archive("26.03");
    let mirror = support::shared_dir().join("registries/mirror");
    kfctl.ok(&["init", &app, "--registry", archive.to_str().unwrap(), "--mirror", mirror.to_str().unwrap()]);
    for component in BY_DIGEST {
        kfctl.ok(&["component", "remove", component, "--app", &app]);
    }
    support::sim_cluster::add(dir, "26.03");
    kfctl
}

/// `--source HOST=URL` for every registry host `images` name, all read from `source`.
fn source_args(source: &OciRegistry, images: &[String]) -> Vec<String> {
    let hosts: BTreeSet<String> = images.iter().map(|i| kfctl::oci::Reference::parse(i).unwrap().host).collect();
    hosts.into_iter().flat_map(|h| ["--source".to_owned(), format!("{h}={}/{h}", source.url())]).collect()
}

fn run(kfctl: &Kfctl, args: &[String]) -> (bool, String, String) {
    let out = support::kfctl_command(&kfctl.kubeconfig).args(args).output().expect("run kfctl");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_26_03_base_set_mirrored_to_a_private_registry_deploys_with_every_image_pulled_from_it() {
    let env = support::env().await;
    let client = env.client().await.expect("client");
    let work = tempfile::tempdir().unwrap();
    let kfctl = app_26_03(&env.kubeconfig, &work.path().join(APP));
    let app = kfctl.app().to_owned();

    // 1. What the app runs, seeded into the source under the upstream names (two multi-arch).
    let images = images_of(&kfctl, &app, &[]);
    assert!(images.len() > 60, "{} images", images.len());
    assert!(images.iter().all(|i| !i.contains('@')), "an image pinned by digest is left: {images:?}");
    let source = OciRegistry::source();
    let mut target = OciRegistry::private();
    let seeded: Vec<(&str, bool)> = images.iter().enumerate().map(|(n, i)| (i.as_str(), n < 2)).collect();
    seed(&source, &seeded, 1, 2).await;

    // 2. Mirror: every image copied, an override by digest recorded for each.
    let docker_config = target.docker_config(PASSWORD);
    let to = format!("{}/{PREFIX}", target.host());
    let mut mirror: Vec<String> = ["mirror", &app, "--to", &to, "--insecure", "--ca-file"].iter().map(|s| s.to_string()).collect();
    mirror.push(target.ca_file.clone().unwrap().display().to_string());
    mirror.extend(["--docker-config".to_owned(), docker_config.display().to_string()]);
    mirror.extend(source_args(&source, &images));
    let (ok, stdout, stderr) = run(&kfctl, &mirror);
    assert!(ok, "kfctl mirror failed:\n{stdout}\n{}", tail(&stderr, 30));
    eprintln!("first mirror: {}", tail(&stderr, 2));
    assert_eq!(stdout.lines().count(), images.len(), "one digest line per image:\n{stdout}");
    assert!(stderr.contains(&format!("recorded {} image overrides (by digest)", images.len())), "{}", tail(&stderr, 5));
    let config = AppConfig::load(&kfctl.app.join("kfctl.yaml")).unwrap();
    let overridden: BTreeSet<&str> = config.images.overrides.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(overridden, images.iter().map(String::as_str).collect(), "overrides vs images");
    for o in &config.images.overrides {
        assert!(o.new_name.as_deref().unwrap().starts_with(&format!("{to}/")), "{o:?}");
        assert!(o.digest.as_deref().unwrap().starts_with("sha256:"), "{o:?}");
    }
    // A second run copies nothing and records the same.
    let blobs = target.blob_count();
    let (ok, _, stderr) = run(&kfctl, &mirror);
    assert!(ok, "{}", tail(&stderr, 20));
    eprintln!("second mirror: {}", tail(&stderr, 2));
    assert!(stderr.contains(&format!("mirrored {} images to {to}", images.len())) && stderr.contains(": 0 blobs copied"), "{}", tail(&stderr, 5));
    assert_eq!(target.blob_count(), blobs, "the second mirror wrote blobs");
    assert_eq!(AppConfig::load(&kfctl.app.join("kfctl.yaml")).unwrap().images, config.images);

    // The render names nothing outside the mirror.
    for image in images_of(&kfctl, &app, &[]) {
        assert!(image.starts_with(&format!("{to}/")) && image.contains("@sha256:"), "{image} is not from the mirror");
    }

    // 3. Pods start only when each image resolves in the private registry with the node's
    //    credentials; then the whole base set gets ready.
    let dry_run = kfctl.ok(&["apply", &app, "--dry-run"]);
    let rendered: Value = serde_json::from_str(&dry_run).unwrap();
    let namespaces: BTreeSet<String> = rendered["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o["metadata"]["namespace"].as_str().or_else(|| (o["kind"] == "Namespace").then(|| o["metadata"]["name"].as_str()).flatten()))
        .map(str::to_owned)
        .collect();
    let ca = std::fs::read_to_string(target.ca_file.as_ref().unwrap()).unwrap();
    let registries = serde_json::json!({ target.host(): { "caPEM": ca, "nodeCredentials": { "username": USER, "password": PASSWORD } } });
    let namespaces: Vec<String> = namespaces.into_iter().collect();
    let pull_rules = support::ImagePullRules::set(&env, &namespaces, registries).await;
    kfctl.ok(&["delete", &app, "--purge"]);
    let applied = kfctl.ok(&["apply", &app]);
    let waited = run(&kfctl, &["wait".into(), app.clone(), "--timeout".into(), "8m".into()]);
    drop(pull_rules);
    assert!(waited.0, "not ready with images from the private registry:\n{}\n{}\n{}", tail(&applied, 10), waited.1, tail(&waited.2, 30));

    // Every image string in every applied object (ConfigMaps and custom resources included)
    // names the private registry.
    let entries = inventory(&client).await;
    let kinds = kinds_of(&client, &entries).await;
    let mut found = BTreeSet::new();
    let lp = ListParams::default().labels(&format!("{APP_LABEL}={APP}"));
    for ar in &kinds {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), ar);
        for object in api.list(&lp).await.expect("list the app's objects").items {
            image_strings(&serde_json::to_value(&object).unwrap(), &mut found);
        }
    }
    assert!(found.len() >= images.len(), "{} image strings on the cluster", found.len());
    let outside: Vec<&String> = found.iter().filter(|s| !s.starts_with(&format!("{to}/"))).collect();
    assert!(outside.is_empty(), "applied objects name images outside the mirror: {outside:?}");
    // And the pods the controllers made from them run those images.
    let mut pods = 0;
    for ns in &namespaces {
        for pod in Api::<Pod>::namespaced(client.clone(), ns).list(&ListParams::default()).await.unwrap().items {
            for c in pod.spec.iter().flat_map(|s| s.containers.iter().chain(s.init_containers.iter().flatten())) {
                let image = c.image.clone().unwrap_or_default();
                assert!(image.starts_with(&format!("{to}/")), "pod {ns}/{:?} runs {image}", pod.metadata.name);
            }
            pods += 1;
        }
    }
    assert!(pods > 30, "{pods} pods");

    // 4. The bundle: the app and its images in one file; in the air gap the source is gone.
    let bundle = work.path().join("kubeflow-airgap.tar.gz");
    let mut args: Vec<String> = ["bundle", &app, "-o", bundle.to_str().unwrap(), "--images", "--insecure"].iter().map(|s| s.to_string()).collect();
    args.extend(source_args(&source, &images));
    let (ok, stdout, stderr) = run(&kfctl, &args);
    assert!(ok, "kfctl bundle --images failed:\n{stdout}\n{}", tail(&stderr, 20));
    assert!(stdout.contains(&format!("{} images", images.len())), "{stdout}");
    drop(source);

    let landed = work.path().join("landed");
    kfctl.ok(&["init", landed.to_str().unwrap(), "--bundle", bundle.to_str().unwrap()]);
    let to = format!("{}/airgap", target.host());
    let mut args: Vec<String> = ["mirror", landed.to_str().unwrap(), "--from-bundle", bundle.to_str().unwrap(), "--to", &to, "--ca-file"].iter().map(|s| s.to_string()).collect();
    args.push(target.ca_file.clone().unwrap().display().to_string());
    args.extend(["--docker-config".to_owned(), docker_config.display().to_string()]);
    let (ok, stdout, stderr) = run(&kfctl, &args);
    assert!(ok, "kfctl mirror --from-bundle failed:\n{stdout}\n{}", tail(&stderr, 20));
    eprintln!("mirror --from-bundle: {}", tail(&stderr, 2));
    assert_eq!(stdout.lines().count(), images.len(), "{stdout}");
    // The landed app already had the first mirror's overrides (they travel in kfctl.yaml): the
    // bundle's images are the released ones, and now the airgap prefix replaces them.
    for image in images_of(&kfctl, landed.to_str().unwrap(), &[]) {
        assert!(image.starts_with(&format!("{to}/")), "{image} is not from the air-gapped mirror");
    }
    let leftovers: Vec<_> = std::fs::read_dir(work.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).filter(|n| n.starts_with(".kfctl")).collect();
    assert!(leftovers.is_empty(), "scratch left behind: {leftovers:?}");

    // A wrong password for the private registry is one clear error, and records nothing.
    let before = std::fs::read_to_string(landed.join("kfctl.yaml")).unwrap();
    let wrong = target.docker_config("not-the-password");
    let last = args.len() - 1;
    args[last] = wrong.display().to_string();
    let (ok, _, stderr) = run(&kfctl, &args);
    assert!(!ok && stderr.contains("refused the credentials"), "{stderr}");
    assert_eq!(std::fs::read_to_string(landed.join("kfctl.yaml")).unwrap(), before);
    target.stop();
}
