//! `kfctl bundle` and `kfctl init --bundle`, through the real binary and the real 26.03 archive
//! with its remote resources: the app travels in one file, offline, verified on both sides.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use sha2::{Digest, Sha256};

mod support;
use support::{release_archive, shared_dir};

fn kfctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kfctl"))
        .args(args)
        .output()
        .expect("run kfctl")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[track_caller]
fn ok(args: &[&str]) -> String {
    let out = kfctl(args);
    assert!(
        out.status.success(),
        "kfctl {args:?} failed:\n{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

#[track_caller]
fn fails(args: &[&str]) -> String {
    let out = kfctl(args);
    let stderr = text(&out.stderr);
    assert!(
        !out.status.success(),
        "kfctl {args:?} succeeded:\n{}\n{stderr}",
        text(&out.stdout)
    );
    assert_eq!(
        stderr.matches("error: ").count(),
        1,
        "one error message: {stderr}"
    );
    stderr
}

/// Every file and symlink below `dir`, with its content (or target).
fn tree(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = fs::symlink_metadata(&path).unwrap();
            let rel = path.strip_prefix(root).unwrap().to_path_buf();
            if meta.file_type().is_symlink() {
                out.push((
                    rel,
                    fs::read_link(&path)
                        .unwrap()
                        .into_os_string()
                        .into_encoded_bytes(),
                ));
            } else if meta.is_dir() {
                walk(root, &path, out);
            } else {
                out.push((rel, fs::read(&path).unwrap()));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// A 26.03 app whose remote resources came from a mirror directory that is gone afterwards.
fn app_26_03(tmp: &Path) -> PathBuf {
    let mirror = tmp.join("mirror");
    copy_dir(&shared_dir().join("registries/mirror"), &mirror);
    let dir = tmp.join("app");
    let archive = release_archive("26.03");
    ok(&[
        "init",
        dir.to_str().unwrap(),
        "--registry",
        archive.to_str().unwrap(),
        "--mirror",
        mirror.to_str().unwrap(),
    ]);
    fs::remove_dir_all(&mirror).unwrap();
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &to.join(entry.file_name()));
        } else {
            fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

/// Rewrite the bundle `from` into `to`, passing each entry through `edit` (path, content) ->
/// entries to write instead.
fn rewrite(from: &Path, to: &Path, mut edit: impl FnMut(&str, Vec<u8>) -> Vec<(String, Vec<u8>)>) {
    let mut archive = tar::Archive::new(GzDecoder::new(fs::File::open(from).unwrap()));
    let mut builder = tar::Builder::new(GzEncoder::new(
        fs::File::create(to).unwrap(),
        Compression::fast(),
    ));
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let mut header = entry.header().clone();
        if header.entry_type() != tar::EntryType::Regular {
            let link = entry.link_name().unwrap().map(|l| l.into_owned());
            builder
                .append_link(&mut header, &path, link.unwrap())
                .unwrap();
            continue;
        }
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        for (path, data) in edit(&path, data) {
            let mut header = header.clone();
            header.set_size(data.len() as u64);
            builder
                .append_data(&mut header, &path, data.as_slice())
                .unwrap();
        }
    }
    builder.into_inner().unwrap().finish().unwrap();
}

/// No app, staging directory or partial file left next to `dir`.
#[track_caller]
fn nothing_left(parent: &Path, allowed: &[&str]) {
    let mut names: Vec<_> = fs::read_dir(parent)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.retain(|n| !allowed.contains(&n.as_str()));
    assert!(
        names.is_empty(),
        "left behind in {}: {names:?}",
        parent.display()
    );
}

#[test]
fn an_app_travels_in_one_verified_file_and_comes_out_identical_offline() {
    let tmp = tempfile::tempdir().unwrap();
    let app = app_26_03(tmp.path());
    let out = tmp.path().join("out");
    fs::create_dir(&out).unwrap();
    let bundle = out.join("kubeflow.tar.gz");

    let stdout = ok(&[
        "bundle",
        app.to_str().unwrap(),
        "-o",
        bundle.to_str().unwrap(),
    ]);
    assert!(
        stdout.contains(&format!("wrote {}", bundle.display())),
        "{stdout}"
    );
    // The sidecar is `sha256sum -c` input and names the file's real digest.
    let digest = hex::encode(Sha256::digest(fs::read(&bundle).unwrap()));
    assert_eq!(
        fs::read_to_string(out.join("kubeflow.tar.gz.sha256")).unwrap(),
        format!("{digest}  kubeflow.tar.gz\n")
    );
    assert!(stdout.contains(&digest), "{stdout}");
    nothing_left(&out, &["kubeflow.tar.gz", "kubeflow.tar.gz.sha256"]);

    // Deterministic: the same app makes the same bytes.
    let again = out.join("again.tar.gz");
    ok(&[
        "bundle",
        app.to_str().unwrap(),
        "-o",
        again.to_str().unwrap(),
    ]);
    assert_eq!(
        fs::read(&again).unwrap(),
        fs::read(&bundle).unwrap(),
        "two bundles of one app differ"
    );

    // The manifest lists the release and the remote resources, each with its digest.
    let mut manifest = None;
    rewrite(&bundle, &tmp.path().join("scratch.tar.gz"), |path, data| {
        if path == "kfctl-bundle/bundle.json" {
            manifest = Some(serde_json::from_slice::<serde_json::Value>(&data).unwrap());
        }
        vec![(path.to_owned(), data)]
    });
    let manifest = manifest.expect("bundle.json in the bundle");
    assert_eq!(manifest["kubeflowVersion"], "26.03");
    let files = manifest["files"].as_object().unwrap();
    assert!(files.contains_key("app/kfctl.yaml"));
    assert!(
        files.keys().any(|k| k.starts_with("app/remote/")),
        "no remote resource in the bundle"
    );
    assert!(
        files
            .values()
            .all(|v| v.as_str().unwrap().starts_with("sha256:")
                || v.as_str().unwrap().starts_with("symlink:"))
    );

    // In the air gap: no archive, no mirror; the same app comes out, file for file.
    let landed = tmp.path().join("landed");
    let stdout = ok(&[
        "init",
        landed.to_str().unwrap(),
        "--bundle",
        bundle.to_str().unwrap(),
    ]);
    assert!(stdout.contains("for Kubeflow 26.03"), "{stdout}");
    assert_eq!(
        tree(&landed),
        tree(&app),
        "the app from the bundle differs from the one bundled"
    );
    nothing_left(tmp.path(), &["app", "out", "landed", "scratch.tar.gz"]);

    // A bundle only makes a new or empty directory.
    let err = fails(&[
        "init",
        landed.to_str().unwrap(),
        "--bundle",
        bundle.to_str().unwrap(),
    ]);
    assert!(err.contains("is not empty"), "{err}");
}

#[test]
fn a_bundle_whose_content_does_not_match_its_manifest_is_refused_and_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let app = app_26_03(tmp.path());
    let bundle = tmp.path().join("kubeflow.tar.gz");
    ok(&[
        "bundle",
        app.to_str().unwrap(),
        "-o",
        bundle.to_str().unwrap(),
    ]);
    fs::remove_dir_all(&app).unwrap();

    // One byte of one file of the release changed on the way.
    let changed = tmp.path().join("changed.tar.gz");
    let mut victim = String::new();
    rewrite(&bundle, &changed, |path, mut data| {
        if victim.is_empty() && path.ends_with("kustomization.yaml") && path.contains("/registry/")
        {
            victim = path.trim_start_matches("kfctl-bundle/").to_owned();
            data.extend_from_slice(b"\n# changed\n");
        }
        vec![(path.to_owned(), data)]
    });
    let landed = tmp.path().join("landed");
    let err = fails(&[
        "init",
        landed.to_str().unwrap(),
        "--bundle",
        changed.to_str().unwrap(),
    ]);
    assert!(
        err.contains(&format!(
            "{victim} does not match the bundle's manifest (expected sha256:"
        )),
        "{err}"
    );
    assert!(err.contains("compare its sha256"), "{err}");

    // A file slipped in that the manifest does not list.
    let extra = tmp.path().join("extra.tar.gz");
    rewrite(&bundle, &extra, |path, data| {
        let mut out = vec![(path.to_owned(), data)];
        if path == "kfctl-bundle/app/kfctl.yaml" {
            out.push((
                "kfctl-bundle/app/patches/extra.yaml".to_owned(),
                b"kind: Secret\n".to_vec(),
            ));
        }
        out
    });
    let err = fails(&[
        "init",
        landed.to_str().unwrap(),
        "--bundle",
        extra.to_str().unwrap(),
    ]);
    assert!(err.contains("app/patches/extra.yaml does not match the bundle's manifest (it is not in the manifest)"), "{err}");

    // A file the manifest lists is missing.
    let short = tmp.path().join("short.tar.gz");
    rewrite(&bundle, &short, |path, data| {
        if path.ends_with("/kfctl.yaml") {
            vec![]
        } else {
            vec![(path.to_owned(), data)]
        }
    });
    let err = fails(&[
        "init",
        landed.to_str().unwrap(),
        "--bundle",
        short.to_str().unwrap(),
    ]);
    assert!(err.contains("app/kfctl.yaml does not match the bundle's manifest (the manifest lists it, the bundle does not hold it)"), "{err}");

    // Not a bundle at all: a release archive.
    let err = fails(&[
        "init",
        landed.to_str().unwrap(),
        "--bundle",
        release_archive("v1.4.1").to_str().unwrap(),
    ]);
    assert!(err.contains("is not a kfctl bundle"), "{err}");

    nothing_left(
        tmp.path(),
        &[
            "kubeflow.tar.gz",
            "kubeflow.tar.gz.sha256",
            "changed.tar.gz",
            "extra.tar.gz",
            "short.tar.gz",
        ],
    );
}

#[test]
fn a_full_disk_while_bundling_is_one_clear_error_and_leaves_no_partial_file() {
    let tmp = tempfile::tempdir().unwrap();
    let app = app_26_03(tmp.path());
    let small = tmp.path().join("small");
    fs::create_dir(&small).unwrap();
    // A 1 MiB tmpfs in a mount namespace of the command's own: the bundle (several MB) cannot fit.
    let script = format!(
        "mount -t tmpfs -o size=1m tmpfs {small} && {kfctl} bundle {app} -o {small}/kubeflow.tar.gz; status=$?; ls -A {small}; exit $status",
        small = small.display(),
        kfctl = env!("CARGO_BIN_EXE_kfctl"),
        app = app.display(),
    );
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .output()
        .expect("run unshare");
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(
        !out.status.success(),
        "bundling onto a full disk succeeded:\n{stdout}\n{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "cannot write the bundle {}/kubeflow.tar.gz: the disk is full after",
            small.display()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("nothing was left behind"), "{stderr}");
    assert_eq!(stderr.matches("error: ").count(), 1, "{stderr}");
    // `ls -A` ran inside the namespace, on the full tmpfs: it lists nothing.
    assert_eq!(stdout.trim(), "", "left on the full disk: {stdout}");
}
