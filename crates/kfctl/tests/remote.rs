//! Remote resources: `kfctl build --mirror` against a real HTTP server on loopback standing in for
//! the code host, with real archives; the cache; and every kind of bad input, each one error that
//! names the URL and the kustomization that asked for it, with nothing written.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::mirror::MirrorServer;

/// A `.tar.gz` of `files` (path, content) under the top-level directory `root`, written with
/// the tar crate (so it is a real archive a code host could serve).
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

/// A `.tar.gz` with one entry whose name climbs out of the archive (`root/../../evil.yaml`),
/// written header by header since the tar crate refuses to make one.
fn hostile_tar_gz() -> Vec<u8> {
    let content = b"kind: ConfigMap\n";
    let mut header = [0u8; 512];
    let name = b"repo-v1/../../evil.yaml";
    header[..name.len()].copy_from_slice(name);
    header[100..108].copy_from_slice(b"0000644\0");
    header[108..116].copy_from_slice(b"0000000\0");
    header[116..124].copy_from_slice(b"0000000\0");
    header[124..136].copy_from_slice(format!("{:011o}\0", content.len()).as_bytes());
    header[136..148].copy_from_slice(b"00000000000\0");
    header[156] = b'0';
    header[257..263].copy_from_slice(b"ustar\0");
    header[263..265].copy_from_slice(b"00");
    header[148..156].copy_from_slice(b"        ");
    let sum: u32 = header.iter().map(|b| u32::from(*b)).sum();
    header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    let mut tar = header.to_vec();
    tar.extend_from_slice(content);
    tar.resize(512 * 2, 0);
    tar.extend_from_slice(&[0u8; 1024]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &tar).unwrap();
    gz.finish().unwrap()
}

fn configmap(name: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  k: v\n")
}

/// A mirror directory laid out as the code host's paths: repository `example.test/org/repo` at
/// ref v1 (whose `base` uses a sibling directory and a patch), and a plain file.
fn mirror_tree() -> tempfile::TempDir {
    let mirror = tempfile::tempdir().unwrap();
    let archive = mirror.path().join("example.test/org/repo/archive/v1.tar.gz");
    std::fs::create_dir_all(archive.parent().unwrap()).unwrap();
    let cm_a = configmap("from-repo");
    let cm_b = configmap("sibling");
    std::fs::write(
        &archive,
        tar_gz(
            "repo-1",
            &[
                ("deploy/base/kustomization.yaml", "resources:\n- cm.yaml\n- ../shared\nnamePrefix: remote-\n"),
                ("deploy/base/cm.yaml", &cm_a),
                ("deploy/shared/kustomization.yaml", "resources:\n- cm.yaml\n"),
                ("deploy/shared/cm.yaml", &cm_b),
                ("README.md", "not read by the build\n"),
            ],
        ),
    )
    .unwrap();
    let file = mirror.path().join("example.test/org/files/releases/download/v2/manifests.yaml");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(file, configmap("from-file")).unwrap();
    mirror
}

fn kustomization(entries: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::from("resources:\n");
    for e in entries {
        text.push_str(&format!("- {e}\n"));
    }
    std::fs::write(dir.path().join("kustomization.yaml"), text).unwrap();
    dir
}

const REPO_ENTRY: &str = "https://example.test/org/repo//deploy/base?ref=v1";
const FILE_ENTRY: &str = "https://example.test/org/files/releases/download/v2/manifests.yaml";

fn build(dir: &Path, mirror: &str, cache: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kfctl"))
        .args(["build"])
        .arg(dir)
        .args(["--mirror", mirror])
        .env("KFCTL_CACHE_DIR", cache)
        .output()
        .expect("run kfctl")
}

fn names(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("  name: ").map(str::to_string))
        .collect()
}

fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.path().is_dir() {
                out.extend(files_below(&e.path()));
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

#[test]
fn repository_and_file_come_through_the_mirror_then_from_the_cache() {
    let mirror = mirror_tree();
    let server = MirrorServer::start(mirror.path());
    let cache = tempfile::tempdir().unwrap();
    let app = kustomization(&[REPO_ENTRY, FILE_ENTRY]);

    let first = build(app.path(), &server.url(), cache.path());
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    // kustomize's legacy order: by kind, then by name.
    assert_eq!(names(&first), ["from-file", "remote-from-repo", "remote-sibling"]);
    assert_eq!(server.requests(), 2, "one archive and one file");

    // The same output with the server gone: everything is cached.
    drop(server);
    let again = build(app.path(), "http://127.0.0.1:1", cache.path());
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    assert_eq!(again.stdout, first.stdout);

    // A local directory laid out the same way is a mirror too.
    let other_cache = tempfile::tempdir().unwrap();
    let local = build(app.path(), &mirror.path().display().to_string(), other_cache.path());
    assert!(local.status.success(), "{}", String::from_utf8_lossy(&local.stderr));
    assert_eq!(local.stdout, first.stdout);
}

/// Runs a build that must fail, and checks the one error names the entry and the kustomization
/// file, says `expected`, and that nothing was cached or printed.
fn assert_refused(entries: &[&str], mirror: &str, expected: &str) {
    let cache = assert_fails(entries, mirror, expected);
    let cached = files_below(cache.path());
    assert!(cached.is_empty(), "{entries:?}: wrote {cached:?}");
}

/// [`assert_refused`] without the cache check; returns the cache.
fn assert_fails(entries: &[&str], mirror: &str, expected: &str) -> tempfile::TempDir {
    let cache = tempfile::tempdir().unwrap();
    let app = kustomization(entries);
    let out = build(app.path(), mirror, cache.path());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{entries:?} should fail");
    assert!(out.stdout.is_empty(), "{entries:?}: printed objects");
    assert!(err.contains(&app.path().join("kustomization.yaml").display().to_string()), "{entries:?}: no kustomization named:\n{err}");
    assert!(err.contains(entries[0]), "{entries:?}: no URL named:\n{err}");
    assert!(err.contains(expected), "{entries:?}: wanted {expected:?}:\n{err}");
    assert_eq!(err.matches("\nerror:").count() + usize::from(err.starts_with("error:")), 1, "one error:\n{err}");
    cache
}

#[test]
fn bad_remote_input_is_one_clear_error_and_writes_nothing() {
    let mirror = mirror_tree();
    // A ref that does not exist, and a server error page in place of an archive.
    let server = MirrorServer::start(mirror.path());
    assert_refused(&["https://example.test/org/repo//deploy/base?ref=v9"], &server.url(), "answered 404");
    assert_refused(&["https://example.test/org/repo//deploy/base?ref=v9"], &server.url(), "check that the repository, ref or file exists");
    let broken = mirror.path().join("example.test/org/broken/archive/v1.tar.gz");
    std::fs::create_dir_all(broken.parent().unwrap()).unwrap();
    std::fs::write(&broken, "<html>rate limited</html>").unwrap();
    assert_refused(&["https://example.test/org/broken//x?ref=v1"], &server.url(), "is not a valid .tar.gz");
    // An archive with a path escaping its root.
    let hostile = mirror.path().join("example.test/org/hostile/archive/v1.tar.gz");
    std::fs::create_dir_all(hostile.parent().unwrap()).unwrap();
    std::fs::write(&hostile, hostile_tar_gz()).unwrap();
    assert_refused(&["https://example.test/org/hostile//x?ref=v1"], &server.url(), "is unsafe");
    assert!(!mirror.path().join("example.test/org/evil.yaml").exists());
    // A directory the repository does not have (the repository itself was fetched and cached).
    assert_fails(&["https://example.test/org/repo//nope?ref=v1"], &server.url(), "'nope' is not a directory of example.test/org/repo@v1");
    drop(server);

    // An unreachable host (nothing listens on the mirror's port now).
    let closed = format!("http://127.0.0.1:{}", MirrorServer::start(mirror.path()).port);
    assert_refused(&[REPO_ENTRY], &closed, "cannot fetch https://example.test/org/repo/archive/v1.tar.gz (through the mirror");
    // Forms kfctl does not fetch.
    assert_refused(&["git::https://example.test/org/repo//deploy/base?ref=v1"], &closed, "hint: write it as https://HOST/OWNER/REPO//PATH?ref=REF");
    assert_refused(&["git@github.com:org/repo.git//x?ref=v1"], &closed, "the git/ssh form is not supported");
    assert_refused(&["https://example.test/org/repo/x?ref=v1"], &closed, "mark it with //");
}

#[test]
fn remote_repositories_naming_each_other_in_a_cycle_are_refused() {
    let mirror = tempfile::tempdir().unwrap();
    for (name, other) in [("a", "b"), ("b", "a")] {
        let archive = mirror.path().join(format!("example.test/org/{name}/archive/v1.tar.gz"));
        std::fs::create_dir_all(archive.parent().unwrap()).unwrap();
        let k = format!("resources:\n- https://example.test/org/{other}//k?ref=v1\n");
        std::fs::write(&archive, tar_gz(&format!("{name}-1"), &[("k/kustomization.yaml", &k)])).unwrap();
    }
    let cache = tempfile::tempdir().unwrap();
    let app = kustomization(&["https://example.test/org/a//k?ref=v1"]);
    let out = build(app.path(), &mirror.path().display().to_string(), cache.path());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("cycle detected: repository 'example.test/org/a@v1' is referenced again"), "{err}");
    assert!(err.contains("https://example.test/org/a//k?ref=v1"), "{err}");
}
