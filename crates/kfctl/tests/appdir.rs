//! The app directory end to end, through the real `kfctl` binary and the real upstream
//! v1.4.1 archive: init (offline), moving the directory, bad archives, components.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use flate2::Compression;
use flate2::write::GzEncoder;

mod support;
use support::{V1_4_1_SHA256, V1_4_1_TREE, real_archive};

fn kfctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kfctl")).args(args).output().expect("run kfctl")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[track_caller]
fn ok(args: &[&str]) -> (String, String) {
    let out = kfctl(args);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "kfctl {args:?} failed:\n{stdout}\n{stderr}");
    (stdout, stderr)
}

#[track_caller]
fn fails(args: &[&str]) -> String {
    let out = kfctl(args);
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "kfctl {args:?} succeeded:\n{}\n{stderr}", text(&out.stdout));
    assert_eq!(stderr.matches("error: ").count(), 1, "one error message: {stderr}");
    stderr
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<_> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

/// Init an app from the real archive into `<tmp>/app`.
fn init_app(tmp: &Path) -> PathBuf {
    let dir = tmp.join("app");
    let archive = real_archive();
    ok(&["init", dir.to_str().unwrap(), "--registry", archive.to_str().unwrap(), "--sha256", V1_4_1_SHA256]);
    dir
}

#[test]
fn init_from_the_real_archive_offline() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("app");
    let archive = real_archive();
    let (stdout, _) = ok(&["init", dir.to_str().unwrap(), "--registry", archive.to_str().unwrap(), "--sha256", &V1_4_1_SHA256.to_uppercase()]);
    assert!(stdout.contains("for Kubeflow v1.4.1 (20 components enabled"), "{stdout}");

    let config = fs::read_to_string(dir.join("kfctl.yaml")).unwrap();
    assert!(config.starts_with("# kfctl app"), "{config}");
    assert!(config.contains("apiVersion: kfctl.dev/v1alpha1"), "{config}");
    // Pinned by content, whatever pinned the archive's bytes on the command line.
    assert!(config.contains(&format!("digest: {V1_4_1_TREE}")), "{config}");
    assert!(!config.contains("\n  sha256: "), "{config}");
    assert!(config.contains("path: registry/v1.4.1"), "{config}");
    // The release is vendored with its top-level directory stripped.
    let example = fs::read_to_string(dir.join("registry/v1.4.1/example/kustomization.yaml")).unwrap();
    assert!(example.contains("../common/dex/overlays/istio"));
    // Only the app is left in the parent: no staging directories.
    assert_eq!(entries(tmp.path()), vec!["app"]);
    assert_eq!(entries(&dir), vec!["kfctl.yaml", "registry"]);

    // A second init refuses to overwrite; --force replaces.
    let err = fails(&["init", dir.to_str().unwrap(), "--registry", archive.to_str().unwrap()]);
    assert!(err.contains("already holds an app") && err.contains("--force"), "{err}");
    fs::write(dir.join("registry/v1.4.1/marker"), "old").unwrap();
    let (stdout, _) = ok(&["init", dir.to_str().unwrap(), "--registry", archive.to_str().unwrap(), "--force"]);
    // No --sha256 and not the default URL: the release's content is still verified against the
    // catalog's pin, so a local or mirrored copy of a release is as safe as the upstream URL.
    assert!(stdout.contains(V1_4_1_TREE), "{stdout}");
    assert!(!dir.join("registry/v1.4.1/marker").exists(), "--force replaced the registry");
    assert_eq!(entries(tmp.path()), vec!["app"]);
}

#[test]
fn a_moved_app_directory_still_works() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = init_app(tmp.path());
    let moved = tmp.path().join("elsewhere/kf");
    fs::create_dir(tmp.path().join("elsewhere")).unwrap();
    fs::rename(&dir, &moved).unwrap();
    let (stdout, _) = ok(&["component", "list", moved.to_str().unwrap()]);
    assert!(stdout.lines().any(|l| l.starts_with("pipelines ") && l.contains(" yes ")), "{stdout}");
    let mut app = kfctl::app::App::open(&moved).unwrap();
    assert!(app.registry_dir().join("example").is_dir());
    // Rendering reads only the moved copy: the original path is gone.
    assert!(!dir.exists());
    for c in app.config.components.iter_mut() {
        c.enabled = c.name == "kubeflow-namespace" || c.name == "kubeflow-roles";
    }
    let rendered = app.render().unwrap();
    assert!(rendered.objects.iter().any(|o| o.component == "kubeflow-namespace" && o.object["kind"] == "Namespace"));
    assert!(rendered.objects.iter().any(|o| o.component == "kubeflow-roles" && o.object["kind"] == "ClusterRole"));
}

#[test]
fn checksum_mismatch_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("app");
    let archive = real_archive();
    let wrong = "0".repeat(64);
    let err = fails(&["init", dir.to_str().unwrap(), "--registry", archive.to_str().unwrap(), "--sha256", &wrong]);
    assert!(err.contains(&format!("expected sha256 {wrong}, got {V1_4_1_SHA256}")), "{err}");
    assert!(err.contains("nothing was written"), "{err}");
    assert!(err.contains("hint:"), "{err}");
    assert_eq!(err.matches("error:").count(), 1, "one message: {err}");
    assert!(entries(tmp.path()).is_empty(), "left behind: {:?}", entries(tmp.path()));

    let err = fails(&["init", dir.to_str().unwrap(), "--registry", archive.to_str().unwrap(), "--sha256", "abc"]);
    assert!(err.contains("is not a sha256 digest"), "{err}");
    assert!(entries(tmp.path()).is_empty());
}

/// A tar.gz whose entry names and link targets are written raw (tar's setters refuse these).
fn hostile_archive(entries: &[(&str, tar::EntryType, &str)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
    for (path, kind, link) in entries {
        let data: &[u8] = if *kind == tar::EntryType::Regular { b"kind: ConfigMap\n" } else { b"" };
        let mut header = tar::Header::new_old();
        header.set_entry_type(*kind);
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        let old = header.as_old_mut();
        old.name[..path.len()].copy_from_slice(path.as_bytes());
        old.linkname[..link.len()].copy_from_slice(link.as_bytes());
        header.set_cksum();
        builder.append(&header, data).unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap()
}

#[test]
fn hostile_archives_are_refused_and_leave_nothing() {
    use tar::EntryType::{Directory, Link, Regular, Symlink};
    let cases: &[(&str, &[(&str, tar::EntryType, &str)], &str)] = &[
        ("dotdot", &[("manifests-1.4.1/", Directory, ""), ("manifests-1.4.1/../../../evil", Regular, "")], "contains a `..` component"),
        ("absolute", &[("manifests-1.4.1/", Directory, ""), ("/tmp/kfctl-evil", Regular, "")], "is an absolute path"),
        ("symlink", &[("manifests-1.4.1/", Directory, ""), ("manifests-1.4.1/ssh", Symlink, "../../../../root/.ssh")], "outside the directory"),
        ("hardlink", &[("manifests-1.4.1/", Directory, ""), ("manifests-1.4.1/passwd", Link, "/etc/passwd")], "outside the directory"),
    ];
    for (name, entries_of, expected) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let archive = tmp.path().join(format!("{name}.tar.gz"));
        fs::write(&archive, hostile_archive(entries_of)).unwrap();
        let work = tmp.path().join("work");
        fs::create_dir(&work).unwrap();
        let dir = work.join("app");
        let err = fails(&["init", dir.to_str().unwrap(), "--registry", archive.to_str().unwrap(), "--version", "v1.4.1"]);
        assert!(err.contains("is unsafe") && err.contains(expected), "{name}: {err}");
        assert_eq!(err.matches("error:").count(), 1, "{name}: one message: {err}");
        assert!(entries(&work).is_empty(), "{name}: left behind {:?}", entries(&work));
    }
    assert!(!Path::new("/tmp/kfctl-evil").exists());
}

#[test]
fn an_archive_that_is_not_the_release_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("other.tar.gz");
    fs::write(&archive, hostile_archive(&[("manifests-1.4.1/", tar::EntryType::Directory, ""), ("manifests-1.4.1/README.md", tar::EntryType::Regular, "")])).unwrap();
    let dir = tmp.path().join("app");
    // Its tree is not the release's: the content pin of the catalog refuses it.
    let err = fails(&["init", dir.to_str().unwrap(), "--registry", archive.to_str().unwrap()]);
    assert!(err.contains(&format!("Kubeflow v1.4.1 should have {V1_4_1_TREE}, the archive's tree has tree-sha256:")), "{err}");
    assert_eq!(entries(tmp.path()), vec!["other.tar.gz"]);
    // Pinned by its bytes instead (a fork of the release): the catalog's paths must be there.
    let sha = hex_sha256(&fs::read(&archive).unwrap());
    let err = fails(&["init", dir.to_str().unwrap(), "--registry", archive.to_str().unwrap(), "--sha256", &sha]);
    assert!(err.contains("does not look like Kubeflow v1.4.1"), "{err}");
    assert_eq!(entries(tmp.path()), vec!["other.tar.gz"]);

    let err = fails(&["init", dir.to_str().unwrap(), "--registry", archive.to_str().unwrap(), "--version", "v0.7"]);
    assert!(err.contains("\"v0.7\" is not supported; supported versions: v1.4.1, v1.10.2, 26.03"), "{err}");
}

fn hex_sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// The release archive unpacked and packed again with other compression settings, optionally
/// with one byte of one file changed.
fn repacked(archive: &Path, out: &Path, change_one_byte: bool) {
    let scratch = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("tar").arg("xzf").arg(archive).arg("-C").arg(scratch.path()).status().unwrap();
    assert!(status.success());
    if change_one_byte {
        let file = scratch.path().join("manifests-1.4.1/README.md");
        let mut bytes = fs::read(&file).unwrap();
        bytes[0] ^= 1;
        fs::write(&file, bytes).unwrap();
    }
    let file = fs::File::create(out).unwrap();
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(file, flate2::Compression::new(1)));
    builder.append_dir_all("manifests-1.4.1", scratch.path().join("manifests-1.4.1")).unwrap();
    builder.into_inner().unwrap().finish().unwrap();
}

#[test]
fn two_compressions_of_one_tree_pin_the_same_and_one_changed_byte_does_not() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = real_archive();
    let same = tmp.path().join("same-tree.tar.gz");
    repacked(&archive, &same, false);
    assert_ne!(hex_sha256(&fs::read(&same).unwrap()), V1_4_1_SHA256, "the repacked archive's bytes differ");
    // Verified against the catalog's content pin, and given explicitly.
    let (stdout, _) = ok(&["init", tmp.path().join("a").to_str().unwrap(), "--registry", same.to_str().unwrap()]);
    assert!(stdout.contains(V1_4_1_TREE), "{stdout}");
    ok(&["init", tmp.path().join("b").to_str().unwrap(), "--registry", same.to_str().unwrap(), "--digest", V1_4_1_TREE]);

    let changed = tmp.path().join("changed.tar.gz");
    repacked(&archive, &changed, true);
    let err = fails(&["init", tmp.path().join("c").to_str().unwrap(), "--registry", changed.to_str().unwrap()]);
    assert!(err.contains("content mismatch") && err.contains(&format!("should have {V1_4_1_TREE}")), "{err}");
    assert!(!tmp.path().join("c").exists(), "a refused init wrote the app");
}

#[test]
fn components_list_add_remove_set() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = init_app(tmp.path());
    let app = dir.to_str().unwrap();

    let (stdout, _) = ok(&["component", "list", app]);
    let header = stdout.lines().next().unwrap();
    assert!(header.starts_with("NAME") && header.contains("ENABLED") && header.contains("DEPENDS ON"), "{stdout}");
    assert_eq!(stdout.lines().count(), 1 + 22, "{stdout}");
    let seldon = stdout.lines().find(|l| l.starts_with("seldon ")).unwrap();
    assert!(seldon.contains(" no ") && seldon.contains("istio,kubeflow-namespace"), "{seldon}");

    // Removing a base component is allowed and names what depends on it.
    let (stdout, stderr) = ok(&["component", "remove", "dex", "--app", app]);
    assert!(stdout.contains("disabled dex"), "{stdout}");
    assert!(stderr.contains("part of the base set") && stderr.contains("oidc-authservice depend on dex"), "{stderr}");
    let (stdout, stderr) = ok(&["component", "list", app]);
    assert!(stdout.lines().any(|l| l.starts_with("dex ") && l.contains(" no ")), "{stdout}");
    assert!(stderr.contains("oidc-authservice needs dex, which is disabled"), "{stderr}");
    ok(&["component", "add", "dex", "--app", app]);
    ok(&["component", "add", "seldon", "--app", app]);
    let config = fs::read_to_string(dir.join("kfctl.yaml")).unwrap();
    assert!(config.contains("- name: seldon\n  enabled: true"), "{config}");

    // Unknown components: one clear message naming the catalog.
    let err = fails(&["component", "add", "foo", "--app", app]);
    assert!(err.contains("unknown component \"foo\"") && err.contains("kfctl component list") && err.contains("--path"), "{err}");
    let err = fails(&["component", "remove", "foo", "--app", app]);
    assert!(err.contains("unknown component \"foo\""), "{err}");
    // ... and in kfctl.yaml, naming the field.
    let edited = config.replace("- name: katib", "- name: katibb");
    fs::write(dir.join("kfctl.yaml"), &edited).unwrap();
    let err = fails(&["component", "list", app]);
    assert!(err.contains("components[10].name: unknown component \"katibb\""), "{err}");
    fs::write(dir.join("kfctl.yaml"), &config).unwrap();

    // A user's own kustomize directory.
    let own = dir.join("mine/hello");
    fs::create_dir_all(&own).unwrap();
    fs::write(own.join("kustomization.yaml"), "resources:\n- cm.yaml\n").unwrap();
    fs::write(own.join("cm.yaml"), "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: hello\n  namespace: kubeflow\ndata:\n  a: b\n").unwrap();
    ok(&["component", "add", "hello", "--path", own.to_str().unwrap(), "--app", app]);
    let config = fs::read_to_string(dir.join("kfctl.yaml")).unwrap();
    assert!(config.contains("- name: hello\n  enabled: true\n  path: mine/hello"), "{config}");
    let outside = tmp.path().join("outside");
    fs::create_dir(&outside).unwrap();
    let err = fails(&["component", "add", "elsewhere", "--path", outside.to_str().unwrap(), "--app", app]);
    assert!(err.contains("is not a directory inside the app directory"), "{err}");

    // Passwords: only the bcrypt hash reaches kfctl.yaml.
    let (stdout, _) = ok(&["component", "set", "dex", "email=admin@example.org", "password=s3cret-Passw0rd", "--app", app]);
    assert!(!stdout.contains("s3cret"), "{stdout}");
    let config = fs::read_to_string(dir.join("kfctl.yaml")).unwrap();
    assert!(!config.contains("s3cret"), "plaintext password written: {config}");
    let loaded = kfctl::app::App::open(&dir).unwrap();
    let dex = loaded.config.component("dex").unwrap();
    assert_eq!(dex.parameters["email"], "admin@example.org");
    assert!(bcrypt::verify("s3cret-Passw0rd", &dex.parameters["passwordHash"]).unwrap());
    // password=- reads it from stdin, so it never shows in the process list.
    let mut child = Command::new(env!("CARGO_BIN_EXE_kfctl"))
        .args(["component", "set", "dex", "password=-", "--app", app])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), b"from-stdin\n").unwrap();
    assert!(child.wait_with_output().unwrap().status.success());
    let hash = kfctl::app::App::open(&dir).unwrap().config.component("dex").unwrap().parameters["passwordHash"].clone();
    assert!(bcrypt::verify("from-stdin", &hash).unwrap());
    let err = fails(&["component", "set", "dex", "passwordHash=plain", "--app", app]);
    assert!(err.contains("is not a bcrypt hash") && !err.contains("plain"), "{err}");
    let err = fails(&["component", "set", "katib", "foo=bar", "--app", app]);
    assert!(err.contains("katib has no parameter \"foo\""), "{err}");
}

/// `kind/namespace/name` of a rendered object.
fn object_id(object: &serde_json::Value) -> String {
    let field = |p: &str| object.pointer(p).and_then(|v| v.as_str()).unwrap_or("").to_string();
    format!("{}/{}/{}", field("/kind"), field("/metadata/namespace"), field("/metadata/name"))
}

#[test]
fn render_covers_the_example_and_tags_components_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = init_app(tmp.path());
    let app = kfctl::app::App::open(&dir).unwrap();
    let rendered = app.render().unwrap();

    // Components appear in catalog (example/kustomization.yaml) order, each as one run.
    let release = app.release().unwrap();
    let mut runs: Vec<&str> = Vec::new();
    for o in &rendered.objects {
        if runs.last() != Some(&o.component.as_str()) {
            runs.push(&o.component);
        }
    }
    let base: Vec<&str> = release.components.iter().filter(|c| c.base).map(|c| c.name.as_str()).collect();
    assert_eq!(runs, base);

    // The base set is exactly what upstream's example/ renders (same objects, any order).
    let out = Command::new("kubectl").arg("kustomize").arg(app.registry_dir().join("example")).output().expect("run kubectl");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let expected: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text(&out.stdout)).unwrap();
    let mut expected: Vec<String> = expected.iter().map(object_id).collect();
    let mut actual: Vec<String> = rendered.objects.iter().map(|o| object_id(&o.object)).collect();
    expected.sort();
    actual.sort();
    assert_eq!(actual.len(), expected.len());
    assert_eq!(actual, expected);
}

#[test]
fn render_applies_parameters_patches_images_and_own_components() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = init_app(tmp.path());
    let app_dir = dir.to_str().unwrap();
    ok(&["component", "set", "dex", "email=admin@example.org", "password=correct horse", "--app", app_dir]);
    ok(&["component", "set", "user-namespace", "user=admin@example.org", "profileName=admin", "--app", app_dir]);
    fs::create_dir_all(dir.join("patches")).unwrap();
    fs::write(dir.join("patches/dex-replicas.yaml"), "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: dex\n  namespace: auth\nspec:\n  replicas: 2\n").unwrap();
    fs::write(dir.join("patches/dex-label.json"), r#"[{"op": "add", "path": "/metadata/labels", "value": {"team": "ml"}}]"#).unwrap();
    let own = dir.join("mine/hello");
    fs::create_dir_all(&own).unwrap();
    fs::write(own.join("kustomization.yaml"), "resources:\n- cm.yaml\n").unwrap();
    fs::write(own.join("cm.yaml"), "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: hello\n  namespace: kubeflow\n").unwrap();
    ok(&["component", "add", "hello", "--path", "mine/hello", "--app", app_dir]);

    let mut app = kfctl::app::App::open(&dir).unwrap();
    let dex = app.config.component_mut("dex").unwrap();
    dex.patches.push(kfctl::config::PatchConfig { path: "patches/dex-replicas.yaml".into(), target: None });
    dex.patches.push(kfctl::config::PatchConfig {
        path: "patches/dex-label.json".into(),
        target: Some(kfctl::config::PatchTarget { kind: Some("Service".into()), name: Some("dex".into()), ..Default::default() }),
    });
    dex.images.push(kfctl::config::ImageOverride { name: "quay.io/dexidp/dex".into(), new_name: Some("registry.example/dex".into()), new_tag: Some("v2.31.0".into()), digest: None });
    // Also the optional (contrib) components, to check their catalog paths render.
    for c in app.config.components.iter_mut() {
        c.enabled = ["dex", "user-namespace", "hello", "seldon", "spark-operator"].contains(&c.name.as_str());
    }
    app.save().unwrap();
    let app = kfctl::app::App::open(&dir).unwrap();
    let rendered = app.render().unwrap();
    let find = |component: &str, id: &str| {
        rendered
            .objects
            .iter()
            .find(|o| o.component == component && object_id(&o.object) == id)
            .unwrap_or_else(|| panic!("{component} {id} not rendered"))
            .object
            .clone()
    };
    let config = find("dex", "ConfigMap/auth/dex");
    let dex_config: serde_json::Value = serde_saphyr::from_str(config["data"]["config.yaml"].as_str().unwrap()).unwrap();
    let user = &dex_config["staticPasswords"][0];
    assert_eq!(user["email"], "admin@example.org");
    assert!(bcrypt::verify("correct horse", user["hash"].as_str().unwrap()).unwrap());
    assert_eq!(dex_config["issuer"], "http://dex.auth.svc.cluster.local:5556/dex", "rest of dex's config kept");
    let deployment = find("dex", "Deployment/auth/dex");
    assert_eq!(deployment["spec"]["replicas"], 2);
    assert_eq!(deployment["spec"]["template"]["spec"]["containers"][0]["image"], "registry.example/dex:v2.31.0");
    assert_eq!(find("dex", "Service/auth/dex")["metadata"]["labels"]["team"], "ml");
    let profile = find("user-namespace", "Profile//admin");
    assert_eq!(profile["spec"]["owner"]["name"], "admin@example.org");
    find("hello", "ConfigMap/kubeflow/hello");
    assert!(rendered.objects.iter().any(|o| o.component == "seldon" && o.object["kind"] == "Deployment"));
    assert!(rendered.objects.iter().any(|o| o.component == "spark-operator" && o.object["kind"] == "Deployment"));
    let components: Vec<&str> = rendered.objects.iter().map(|o| o.component.as_str()).collect();
    let last_dex = components.iter().rposition(|c| *c == "dex").unwrap();
    let first_user = components.iter().position(|c| *c == "user-namespace").unwrap();
    let first_own = components.iter().position(|c| *c == "hello").unwrap();
    let first_seldon = components.iter().position(|c| *c == "seldon").unwrap();
    assert!(last_dex < first_user && first_user < first_seldon && first_seldon < first_own, "render order: catalog, then own");
}

/// Files under `dir`, recursively (0 when it is gone).
fn files_under(dir: &Path) -> usize {
    let Ok(read) = fs::read_dir(dir) else { return 0 };
    read.flatten().map(|e| if e.file_type().is_ok_and(|t| t.is_dir()) { files_under(&e.path()) } else { 1 }).sum()
}

#[test]
fn an_interrupted_init_leaves_no_half_written_app() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("app");
    let archive = real_archive();
    // How many files a whole app holds: the kills are spread over them.
    init_app(tmp.path());
    let total = files_under(&dir);
    fs::remove_dir_all(&dir).unwrap();
    // Kill init (SIGKILL: no cleanup code runs) at once, then once its staging directory holds
    // 1/5 .. 4/5 of the app's files; whatever the moment, the app is either absent or whole.
    let mut mid_run = 0;
    for share in 0..5 {
        let kill_at = total * share / 5;
        let mut child = Command::new(env!("CARGO_BIN_EXE_kfctl"))
            .args(["init", dir.to_str().unwrap(), "--registry", archive.to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        loop {
            let staged: usize = entries(tmp.path()).iter().filter(|n| n.starts_with(".kfctl-init-")).map(|n| files_under(&tmp.path().join(n))).sum();
            if staged >= kill_at || child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let _ = child.kill();
        mid_run += usize::from(child.wait().unwrap().code().is_none() && !dir.exists());
        if dir.exists() {
            assert!(dir.join("kfctl.yaml").is_file() && dir.join("registry/v1.4.1/example/kustomization.yaml").is_file(), "half-written app, killed at {kill_at} of {total} files");
            kfctl::app::App::open(&dir).unwrap();
            fs::remove_dir_all(&dir).unwrap();
        }
        for name in entries(tmp.path()) {
            assert!(name.starts_with(".kfctl-init-"), "killed at {kill_at} of {total} files: {name} left visible");
        }
    }
    assert!(mid_run >= 4, "only {mid_run} of 5 kills landed before init finished");
    // The next init removes what killed runs left behind.
    init_app(tmp.path());
    assert_eq!(entries(tmp.path()), vec!["app"]);
    assert_eq!(entries(&dir), vec!["kfctl.yaml", "registry"]);
}
