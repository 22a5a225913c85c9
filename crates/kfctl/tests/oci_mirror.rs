//! The image copy engine (`kfctl::oci`) and `kfctl mirror` against real registries: a plain-HTTP
//! source filled with generated images under upstream names, and a private TLS + basic-auth
//! target (tests/support/oci_registry.rs). Run inside the testenv netns (`scripts/testenv exec`),
//! where `docker-registry` is installed; no cluster is needed.

mod support;

use std::collections::BTreeMap;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use kfctl::oci::{Copier, CopyOptions, NoProgress};
use support::oci_registry::{self, OciRegistry, PASSWORD, SeededImage};

const FRONTEND: &str = "gcr.io/ml-pipeline/frontend:2.5.0";
const API_SERVER: &str = "gcr.io/ml-pipeline/api-server:2.5.0";
const JUPYTER: &str = "docker.io/kubeflownotebookswg/jupyter:v1.9.0";

/// `--source` overrides reading gcr.io and docker.io from the seeded source registry.
fn overrides(source: &OciRegistry) -> BTreeMap<String, String> {
    ["gcr.io", "docker.io"].into_iter().map(|host| (host.to_string(), format!("{}/{host}", source.url()))).collect()
}

fn copier(source: &OciRegistry, target: &OciRegistry, password: &str, platform: Option<&str>) -> Copier {
    Copier::new(CopyOptions {
        platform: platform.map(str::to_string),
        ca_file: target.ca_file.clone(),
        insecure: true, // for the http:// source only: the target speaks TLS and is verified
        docker_config: Some(target.docker_config(password)),
        source_overrides: overrides(source),
        concurrency: 0,
    })
    .unwrap()
}

fn mirror_args(source: &OciRegistry, target: &OciRegistry) -> Vec<String> {
    let mut args = vec!["mirror".to_string(), "--insecure".into(), "--ca-file".into(), target.ca_file.as_ref().unwrap().display().to_string()];
    args.extend(["--docker-config".into(), target.docker_config(PASSWORD).display().to_string()]);
    for (host, url) in overrides(source) {
        args.extend(["--source".into(), format!("{host}={url}")]);
    }
    args
}

fn kfctl(args: &[String]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kfctl")).args(args).env("DOCKER_CONFIG", "/nonexistent").output().expect("run kfctl")
}

/// Every manifest and blob of `image` is in `target` at `repository`, and the tag points at the
/// seeded digest.
async fn assert_complete(target: &OciRegistry, repository: &str, image: &SeededImage) {
    let tag = image.reference.tag.as_deref().unwrap();
    assert!(target.has(repository, "manifests", &image.digest).await, "{repository}@{} missing", image.digest);
    for (platform, manifest, blobs) in &image.platforms {
        assert!(target.has(repository, "manifests", manifest).await, "{repository}: {platform} manifest {manifest} missing");
        for blob in blobs {
            assert!(target.has(repository, "blobs", blob).await, "{repository}: {platform} blob {blob} missing");
        }
    }
    assert!(target.has(repository, "manifests", tag).await, "{repository}:{tag} missing");
}

#[tokio::test]
async fn copies_every_platform_and_blob_to_a_tls_registry_and_a_second_copy_pushes_nothing() {
    let (source, target) = (OciRegistry::source(), OciRegistry::private());
    let images = oci_registry::seed(&source, &[(FRONTEND, true), (API_SERVER, false), (JUPYTER, false)], 2, 16).await;
    let copier = copier(&source, &target, PASSWORD, None);
    for image in &images {
        let destination = image.reference.mirrored_to(&target.host(), "kubeflow");
        let report = copier.copy(&image.reference.clone().into(), &destination.clone().into(), &NoProgress).await.unwrap();
        assert_eq!(report.digest, image.digest, "{}", image.reference);
        assert_eq!((report.blobs_copied, report.blobs_skipped), (image.blobs().len(), 0), "{}", image.reference);
        assert_eq!(report.manifests_pushed, image.platforms.len() + usize::from(image.platforms.len() > 1));
        assert_complete(&target, &destination.repository, image).await;

        let again = copier.copy(&image.reference.clone().into(), &destination.into(), &NoProgress).await.unwrap();
        assert_eq!(
            (again.digest.as_str(), again.blobs_copied, again.blobs_skipped, again.bytes, again.manifests_pushed),
            (image.digest.as_str(), 0, image.blobs().len(), 0, 0),
            "second copy of {}",
            image.reference
        );
    }
    // Under the upstream-derived name, not anywhere else.
    assert!(!target.has("gcr.io/ml-pipeline/frontend", "manifests", "2.5.0").await);
}

#[tokio::test]
async fn a_platform_filter_copies_that_platform_s_manifest_under_the_tag() {
    let (source, target) = (OciRegistry::source(), OciRegistry::private());
    let images = oci_registry::seed(&source, &[(FRONTEND, true)], 1, 8).await;
    let (_, arm64, arm64_blobs) = images[0].platforms.iter().find(|(p, _, _)| p == "linux/arm64").unwrap().clone();
    let (_, amd64, amd64_blobs) = images[0].platforms.iter().find(|(p, _, _)| p == "linux/amd64").unwrap().clone();
    let destination = images[0].reference.mirrored_to(&target.host(), "one");
    let report = copier(&source, &target, PASSWORD, Some("linux/arm64"))
        .copy(&images[0].reference.clone().into(), &destination.clone().into(), &NoProgress)
        .await
        .unwrap();
    assert_eq!((report.digest.as_str(), report.blobs_copied, report.manifests_pushed), (arm64.as_str(), arm64_blobs.len(), 1));
    let repo = &destination.repository;
    assert!(target.has(repo, "manifests", &arm64).await && target.has(repo, "manifests", "2.5.0").await);
    assert!(!target.has(repo, "manifests", &amd64).await, "the amd64 manifest was copied too");
    assert!(!target.has(repo, "manifests", &images[0].digest).await, "the index was copied too");
    assert!(!target.has(repo, "blobs", &amd64_blobs[1]).await, "an amd64 layer was copied too");

    let err = copier(&source, &target, PASSWORD, Some("windows/amd64"))
        .copy(&images[0].reference.clone().into(), &destination.into(), &NoProgress)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("has no image for platform windows/amd64 (it has: linux/amd64, linux/arm64)"), "{err}");
}

#[tokio::test]
async fn a_copy_killed_halfway_is_finished_by_a_rerun_that_copies_only_what_is_missing() {
    let (source, target) = (OciRegistry::source(), OciRegistry::private());
    // Enough data that the copy is still running when the first blobs are committed.
    let images = oci_registry::seed(&source, &[("gcr.io/ml-pipeline/big:1", false)], 24, 1024).await;
    let total = images[0].blobs().len();
    let mut args = mirror_args(&source, &target);
    args.extend(["--to".into(), format!("{}/kubeflow", target.host()), "--image".into(), "gcr.io/ml-pipeline/big:1".into()]);

    // Its own temp dir, to show that a killed copy leaves no downloaded blob behind.
    let tmp = tempfile::tempdir().unwrap();
    let mut child =
        Command::new(env!("CARGO_BIN_EXE_kfctl")).args(&args).env("TMPDIR", tmp.path()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    // Kill once a few blobs are committed on the target (counted on its disk, not by time).
    while target.blob_count() < 3 {
        assert!(child.try_wait().unwrap().is_none(), "kfctl mirror ended before the kill");
        assert!(Instant::now() < deadline, "no blob reached the target in 60s");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // An upload whose body arrived whole before the kill may still be committed: let it settle.
    let mut committed = target.blob_count();
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        match target.blob_count() {
            now if now == committed => break,
            now => committed = now,
        }
    }
    assert!(committed < total, "the kill landed after every blob was copied ({committed} of {total})");
    eprintln!("killed with {committed} of {total} blobs committed");
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().flatten().map(|e| e.path()).collect();
    assert!(leftovers.is_empty(), "the killed copy left temp files: {leftovers:?}");

    let rerun = kfctl(&args);
    let stderr = String::from_utf8_lossy(&rerun.stderr);
    assert!(rerun.status.success(), "{stderr}");
    let summary = format!("{}: {} blobs copied", images[0].reference, total - committed);
    assert!(
        stderr.contains(&summary) && stderr.contains(&format!("{committed} already there")),
        "expected {summary:?} and {committed} already there in:\n{stderr}"
    );
    assert_complete(&target, "kubeflow/gcr.io/ml-pipeline/big", &images[0]).await;
}

#[tokio::test]
async fn registry_to_layout_to_registry_needs_no_source_on_the_way_back() {
    let (mut source, target) = (OciRegistry::source(), OciRegistry::private());
    let images = oci_registry::seed(&source, &[(FRONTEND, true), (JUPYTER, false)], 2, 8).await;
    let layout = tempfile::tempdir().unwrap();
    let dir = layout.path().join("images");

    let mut args = mirror_args(&source, &target);
    args.extend(["--to-layout".into(), dir.display().to_string(), "--image".into(), FRONTEND.into(), "--image".into(), JUPYTER.into()]);
    let out = kfctl(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let names: Vec<&str> =
        index["manifests"].as_array().unwrap().iter().map(|m| m["annotations"]["org.opencontainers.image.ref.name"].as_str().unwrap()).collect();
    assert_eq!(names, [FRONTEND, JUPYTER]);
    assert!(dir.join("oci-layout").is_file());
    for image in &images {
        for blob in image.blobs().iter().chain([&image.digest]) {
            assert!(dir.join("blobs/sha256").join(&blob[7..]).is_file(), "{blob} of {} not in the layout", image.reference);
        }
    }

    source.stop();
    let mut args = mirror_args(&source, &target);
    args.extend(["--from-layout".into(), dir.display().to_string(), "--to".into(), format!("{}/kubeflow", target.host())]);
    let out = kfctl(&args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for image in &images {
        let destination = image.reference.mirrored_to(&target.host(), "kubeflow");
        assert!(stdout.contains(&format!("{destination}@{}\n", image.digest)), "{destination}@{} not printed in:\n{stdout}", image.digest);
        assert_complete(&target, &destination.repository, image).await;
    }
}

#[tokio::test]
async fn errors_say_which_host_or_image_and_what_to_do() {
    let (source, target) = (OciRegistry::source(), OciRegistry::private());
    oci_registry::seed(&source, &[(API_SERVER, false)], 1, 4).await;
    let to = format!("{}/kubeflow", target.host());
    let host = target.host();
    let run = |args: Vec<String>| {
        let out = kfctl(&args);
        assert!(!out.status.success(), "kfctl {args:?} succeeded");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let with = |extra: &[&str]| {
        let mut args = mirror_args(&source, &target);
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };

    // Wrong password.
    let wrong = target.docker_config("wrong-password");
    let mut args = with(&["--to", &to, "--image", API_SERVER]);
    let at = args.iter().position(|a| a == "--docker-config").unwrap();
    args[at + 1] = wrong.display().to_string();
    let stderr = run(args);
    assert!(stderr.contains(&format!("the registry refused the credentials for {host} in {}", wrong.display())), "{stderr}");

    // Untrusted certificate: no --ca-file.
    let mut args = with(&["--to", &to, "--image", API_SERVER]);
    let at = args.iter().position(|a| a == "--ca-file").unwrap();
    args.drain(at..at + 2);
    let stderr = run(args);
    assert!(stderr.contains(&format!("the TLS certificate of {host} is not trusted")) && stderr.contains("hint: pass --ca-file"), "{stderr}");

    // Missing image.
    let stderr = run(with(&["--to", &to, "--image", "gcr.io/ml-pipeline/missing:1"]));
    assert!(stderr.contains("image gcr.io/ml-pipeline/missing:1 not found"), "{stderr}");

    // Plain HTTP without --insecure: an http:// source, and a target that speaks plain HTTP.
    let mut args = with(&["--to", &to, "--image", API_SERVER]);
    args.retain(|a| a != "--insecure");
    let stderr = run(args);
    assert!(stderr.contains("plain http:// is refused without --insecure"), "{stderr}");
    let layout = tempfile::tempdir().unwrap();
    oci_registry::generate_layout(layout.path(), &[(API_SERVER, false)], 1, 1);
    let stderr = run(vec!["mirror".into(), "--from-layout".into(), layout.path().display().to_string(), "--to".into(), source.host()]);
    assert!(stderr.contains(&format!("{} speaks plain HTTP, not HTTPS", source.host())) && stderr.contains("hint: pass --insecure"), "{stderr}");
}

#[tokio::test]
async fn simnode_keeps_a_pod_in_image_pull_back_off_until_its_image_is_mirrored() {
    use k8s_openapi::api::core::v1::{Pod, Secret};
    use kube::api::PostParams;

    let ns = support::TestNamespace::new("oci-pull").await;
    let (source, target) = (OciRegistry::source(), OciRegistry::private());
    let images = oci_registry::seed(&source, &[(API_SERVER, false)], 1, 4).await;
    let mirrored = images[0].reference.mirrored_to(&target.host(), "kubeflow");
    ns.check_image_pulls(serde_json::json!({ target.host(): { "caPEM": std::fs::read_to_string(target.ca_file.as_ref().unwrap()).unwrap() } })).await;

    let docker_config = std::fs::read(target.docker_config(PASSWORD)).unwrap();
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "mirror-pull"},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, docker_config)},
    }))
    .unwrap();
    ns.api::<Secret>().create(&PostParams::default(), &secret).await.unwrap();
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "api-server"},
        "spec": {"imagePullSecrets": [{"name": "mirror-pull"}], "containers": [{"name": "main", "image": mirrored.to_string()}]},
    }))
    .unwrap();
    let pods = ns.api::<Pod>();
    pods.create(&PostParams::default(), &pod).await.unwrap();

    let waiting_reason = |pod: &Pod| pod.status.as_ref()?.container_statuses.as_ref()?.first()?.state.as_ref()?.waiting.as_ref()?.reason.clone();
    let ready = |pod: &Pod| pod.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    support::wait_until("the pod to wait in ImagePullBackOff", Duration::from_secs(60), || async {
        let pod = pods.get("api-server").await.unwrap();
        assert!(!ready(&pod), "the pod became Ready without its image");
        waiting_reason(&pod).as_deref() == Some("ImagePullBackOff")
    })
    .await;

    copier(&source, &target, PASSWORD, None).copy(&images[0].reference.clone().into(), &mirrored.into(), &NoProgress).await.unwrap();
    support::wait_until("the pod to become Ready once its image is mirrored", Duration::from_secs(60), || async {
        ready(&pods.get("api-server").await.unwrap())
    })
    .await;
}
