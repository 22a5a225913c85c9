//! The renderer against malformed input: kustomizations and YAML of the real v1.4.1 and 26.03
//! archives, mutated (truncated, bytes flipped, lines swapped, dropped or duplicated, values of
//! the wrong type, deep nesting, huge counts, cycles, bad paths), fed to `kfctl_render::build`.
//! Every case must end, without a panic, within a time bound, and an error must name a file.
//!
//! Bounded for CI (`KFCTL_FUZZ_SECONDS`, 40 s by default) with a fixed seed (`KFCTL_FUZZ_SEED`),
//! printed so that a failure reproduces: `KFCTL_FUZZ_SEED=S KFCTL_FUZZ_CASE=N` runs case N alone.
//! `KFCTL_FUZZ_VERBOSE=1` prints every case and its outcome. Longer runs: `scripts/fuzz-render [SECONDS] [SEED]`. Should the process abort (a stack
//! overflow is not a panic), the case it was on is in `target/tmp/fuzz-render-last-case.txt`.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The seed CI uses.
const DEFAULT_SEED: u64 = 20261206;
/// How long one case may take before it counts as a hang (a debug build renders the largest
/// overlays of these archives in a few seconds).
const CASE_LIMIT: Duration = Duration::from_secs(60);

/// A release archive unpacked once into a temporary directory, with its kustomization folders.
struct Tree {
    _dir: tempfile::TempDir,
    root: PathBuf,
    kustomizations: Vec<PathBuf>,
}

fn registries() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|dir| dir.join("shared/registries"))
        .find(|path| path.is_dir())
        .expect("shared/registries beside the repository")
}

fn unpack(version: &str) -> Tree {
    let archive = registries().join(format!("kubeflow-manifests-{version}.tar.gz"));
    assert!(archive.is_file(), "{} is missing", archive.display());
    let dir = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("tar").arg("xzf").arg(&archive).arg("-C").arg(dir.path()).status().unwrap();
    assert!(status.success(), "tar xzf {}", archive.display());
    let root = dir.path().to_path_buf();
    let mut kustomizations = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
            } else if matches!(p.file_name().and_then(|n| n.to_str()), Some("kustomization.yaml" | "kustomization.yml" | "Kustomization")) {
                kustomizations.push(d.clone());
            }
        }
    }
    kustomizations.sort();
    kustomizations.dedup();
    Tree { _dir: dir, root, kustomizations }
}

/// What one case did, for the report.
struct Case {
    dir: PathBuf,
    files: Vec<(PathBuf, Vec<String>)>,
}

impl std::fmt::Display for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "build {}", self.dir.display())?;
        for (file, mutations) in &self.files {
            write!(f, "\n    {}: {}", file.display(), mutations.join(", "))?;
        }
        Ok(())
    }
}

const WRONG_TYPES: &[&str] = &[
    "resources: 5",
    "resources: {a: b}",
    "resources: [[x]]",
    "namespace: [a, b]",
    "namePrefix: {x: 1}",
    "patches: nope",
    "patches: [{path: 3}]",
    "patchesStrategicMerge: [1, {a: b}]",
    "patchesJson6902: [{target: x, path: [y]}]",
    "images: 3",
    "images: [{name: 1, newTag: {a: b}}]",
    "replicas: [{name: x, count: many}]",
    "configMapGenerator: [1]",
    "configMapGenerator: [{name: x, literals: {a: b}}]",
    "secretGenerator: [{name: s, files: [7]}]",
    "commonLabels: [a]",
    "labels: [{pairs: [x]}]",
    "components: {a: b}",
    "bases: 1.5",
    "crds: [{}]",
    "vars: [{name: V, objref: 3}]",
    "replacements: [{source: 1, targets: x}]",
    "transformers: [7]",
    "generators: {x: y}",
    "openapi: [x]",
    "configurations: 0x10",
    "sortOptions: {order: sideways}",
    "apiVersion: [v1]",
    "kind: {Kustomization: 1}",
    "metadata: 7",
    "spec: [[[]]]",
    "metadata: {name: [a], namespace: {b: c}, labels: [x], annotations: 5}",
];

const BAD_PATHS: &[&str] = &[
    "/etc/passwd",
    "../../../../../../../../../../etc",
    "does-not-exist.yaml",
    "missing-dir/",
    "",
    ".",
    "./",
    "..",
    "\"\\0\"",
    "https://kfctl-unreachable.invalid/x?ref=v1",
    "github.com/kubeflow/manifests//nowhere?ref=v0",
    "git@kfctl-unreachable.invalid:a/b.git",
    "~/x.yaml",
    "C:\\\\windows\\\\x.yaml",
    "%s%s%s%n",
];

/// Mutate `text` (a kustomization when `is_kustomization`) once; says what it did.
fn mutate(rng: &mut StdRng, text: &mut Vec<u8>, is_kustomization: bool, dir_name: &str) -> String {
    let lines = |t: &[u8]| -> Vec<Vec<u8>> { t.split(|b| *b == b'\n').map(<[u8]>::to_vec).collect() };
    let join = |ls: Vec<Vec<u8>>| -> Vec<u8> { ls.join(&b'\n') };
    match rng.random_range(0..12) {
        0 => {
            let at = rng.random_range(0..=text.len());
            text.truncate(at);
            format!("truncated at byte {at}")
        }
        1 => {
            let n = rng.random_range(1..=8);
            let mut at = Vec::new();
            for _ in 0..n {
                if text.is_empty() {
                    break;
                }
                let i = rng.random_range(0..text.len());
                text[i] ^= 1 << rng.random_range(0..8);
                at.push(i);
            }
            format!("flipped bits at bytes {at:?}")
        }
        2 => {
            let mut ls = lines(text);
            let (a, b) = (rng.random_range(0..ls.len()), rng.random_range(0..ls.len()));
            ls.swap(a, b);
            *text = join(ls);
            format!("swapped lines {} and {}", a + 1, b + 1)
        }
        3 => {
            // Swap the keys of two `key: value` lines.
            let mut ls = lines(text);
            let keyed: Vec<usize> = (0..ls.len()).filter(|i| ls[*i].windows(2).any(|w| w == b": ")).collect();
            if keyed.len() < 2 {
                return "no keys to swap".into();
            }
            let (a, b) = (keyed[rng.random_range(0..keyed.len())], keyed[rng.random_range(0..keyed.len())]);
            let split = |l: &[u8]| {
                let i = l.windows(2).position(|w| w == b": ").unwrap();
                (l[..i].to_vec(), l[i..].to_vec())
            };
            let ((ka, va), (kb, vb)) = (split(&ls[a]), split(&ls[b]));
            ls[a] = [kb, va].concat();
            ls[b] = [ka, vb].concat();
            *text = join(ls);
            format!("swapped the keys of lines {} and {}", a + 1, b + 1)
        }
        4 => {
            let mut ls = lines(text);
            let i = rng.random_range(0..ls.len());
            ls.remove(i);
            *text = join(ls);
            format!("dropped line {}", i + 1)
        }
        5 => {
            let mut ls = lines(text);
            let i = rng.random_range(0..ls.len());
            let l = ls[i].clone();
            let n = rng.random_range(1..=3);
            for _ in 0..n {
                ls.insert(i, l.clone());
            }
            *text = join(ls);
            format!("duplicated line {} {n} time(s)", i + 1)
        }
        6 => {
            let wrong = WRONG_TYPES[rng.random_range(0..WRONG_TYPES.len())];
            let key = wrong.split(':').next().unwrap();
            let mut ls = lines(text);
            let found = ls.iter().position(|l| l.starts_with(format!("{key}:").as_bytes()));
            match found {
                Some(i) => ls[i] = wrong.as_bytes().to_vec(),
                None => ls.push(wrong.as_bytes().to_vec()),
            }
            *text = join(ls);
            format!("wrong type: {wrong}")
        }
        7 => {
            let depth = [64usize, 1_000, 10_000, 100_000][rng.random_range(0..4)];
            let (open, close, what) = match rng.random_range(0..3) {
                0 => ("[", "]", "flow sequences"),
                1 => ("{a: ", "}", "flow mappings"),
                _ => ("- ", "", "block sequences"),
            };
            let nested = if close.is_empty() {
                // Block nesting: each level one more indentation.
                (0..depth.min(2_000)).map(|i| format!("{}- ", " ".repeat(i * 2))).collect::<Vec<_>>().join("\n") + "x"
            } else {
                format!("{}x{}", open.repeat(depth), close.repeat(depth))
            };
            let key = if is_kustomization { ["resources", "patches", "namespace", "labels"][rng.random_range(0..4)] } else { "spec" };
            let line = if close.is_empty() { format!("{key}:\n{nested}") } else { format!("{key}: {nested}") };
            text.extend_from_slice(b"\n");
            text.extend_from_slice(line.as_bytes());
            format!("{what} nested {depth} deep under {key}")
        }
        8 => {
            match rng.random_range(0..4) {
                0 => {
                    // Aliases that expand exponentially ("billion laughs").
                    let mut s = String::from("\nx0: &a0 [\"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\"]\n");
                    for i in 1..10 {
                        let p = i - 1;
                        s.push_str(&format!("x{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"));
                    }
                    text.extend_from_slice(s.as_bytes());
                    "aliases expanding 9^10 times".to_string()
                }
                1 => {
                    let n = 100_000;
                    let entries: String = (0..n).map(|i| format!("- r{i}.yaml\n")).collect();
                    text.extend_from_slice(format!("\nresources:\n{entries}").as_bytes());
                    format!("{n} resources entries")
                }
                2 => {
                    text.extend_from_slice(b"\nreplicas:\n- name: x\n  count: 99999999999999999999999999999\n");
                    "a replica count beyond any integer".to_string()
                }
                _ => {
                    let n = 20_000;
                    let docs: String = (0..n).map(|i| format!("---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c{i}\n")).collect();
                    text.extend_from_slice(docs.as_bytes());
                    format!("{n} more documents")
                }
            }
        }
        9 => {
            let entry = match rng.random_range(0..3) {
                0 => ".".to_string(),
                1 => format!("../{dir_name}"),
                _ => "./".to_string(),
            };
            let section = ["resources", "components", "bases"][rng.random_range(0..3)];
            add_entry(text, section, &entry);
            format!("cycle: {section} includes {entry}")
        }
        10 => {
            let bad = BAD_PATHS[rng.random_range(0..BAD_PATHS.len())];
            let section = ["resources", "components", "patchesStrategicMerge", "crds", "configurations", "transformers"][rng.random_range(0..6)];
            add_entry(text, section, bad);
            format!("bad path in {section}: {bad:?}")
        }
        _ => {
            // Patches and generators pointing at bad files or holding bad inline documents.
            let s = match rng.random_range(0..5) {
                0 => "\npatches:\n- path: /dev/zero\n".to_string(),
                1 => "\npatches:\n- patch: |-\n    [{\"op\": \"move\", \"from\": \"/a/-\", \"path\": \"/a/0/b\"}]\n  target:\n    kind: \"*\"\n".to_string(),
                2 => "\nconfigMapGenerator:\n- name: g\n  files:\n  - ../../../../../../../../etc/hostname\n  envs:\n  - /proc/self/environ\n".to_string(),
                3 => "\npatchesJson6902:\n- target: {version: v1, kind: Deployment, name: '*'}\n  patch: '[{\"op\": \"copy\", \"from\": \"\", \"path\": \"/spec\"}]'\n".to_string(),
                _ => "\nimages:\n- name: '*'\n  newName: ''\n  digest: 'sha256:'\n".to_string(),
            };
            text.extend_from_slice(s.as_bytes());
            format!("inserted {:?}", s.trim())
        }
    }
}

/// Add `- entry` to the top-level list `section`, starting the list where there is none (so the
/// result is a kustomization with one more entry, not one with a duplicate key).
fn add_entry(text: &mut Vec<u8>, section: &str, entry: &str) {
    let mut ls: Vec<Vec<u8>> = text.split(|b| *b == b'\n').map(<[u8]>::to_vec).collect();
    match ls.iter().position(|l| l.starts_with(format!("{section}:").as_bytes())) {
        Some(i) => ls.insert(i + 1, format!("- {entry}").into_bytes()),
        None => ls.push(format!("{section}:\n- {entry}").into_bytes()),
    }
    *text = ls.join(&b'\n');
}

/// Pick and mutate the files of case `n` under `tree`. Returns what to restore afterwards.
fn prepare(tree: &Tree, rng: &mut StdRng) -> (Case, Restore) {
    let dir = tree.kustomizations[rng.random_range(0..tree.kustomizations.len())].clone();
    let mut candidates: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "yaml" || x == "yml" || x == "json" || x == "env") || p.ends_with("Kustomization"))
        .collect();
    candidates.sort();
    let kustomization = candidates.iter().find(|p| p.file_stem().is_some_and(|s| s == "kustomization" || s == "Kustomization")).cloned();
    let mut chosen: Vec<PathBuf> = Vec::new();
    for _ in 0..rng.random_range(1..=2) {
        let pick = match &kustomization {
            Some(k) if rng.random_bool(0.6) => k.clone(),
            _ => candidates[rng.random_range(0..candidates.len())].clone(),
        };
        if !chosen.contains(&pick) {
            chosen.push(pick);
        }
    }
    let dir_name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("x").to_string();
    let mut restore = Vec::new();
    let mut files = Vec::new();
    let mut created = Vec::new();
    if let Some(k) = kustomization.as_ref().filter(|_| rng.random_bool(0.15)) {
        // Paths that are not plain files: a symlink to itself, a link to the folder above, a
        // folder named like a YAML file, /dev/zero, an empty file.
        let (name, what): (&str, &str) = match rng.random_range(0..5) {
            0 => ("fuzz-loop.yaml", "a symlink to itself"),
            1 => ("fuzz-up", "a symlink to the folder above"),
            2 => ("fuzz-dir.yaml", "a folder named like a file"),
            3 => ("fuzz-zero.yaml", "a symlink to /dev/zero"),
            _ => ("fuzz-empty.yaml", "an empty file"),
        };
        let path = dir.join(name);
        match name {
            "fuzz-loop.yaml" => std::os::unix::fs::symlink(&path, &path).unwrap(),
            "fuzz-up" => std::os::unix::fs::symlink("..", &path).unwrap(),
            "fuzz-dir.yaml" => std::fs::create_dir(&path).unwrap(),
            "fuzz-zero.yaml" => std::os::unix::fs::symlink("/dev/zero", &path).unwrap(),
            _ => std::fs::write(&path, "").unwrap(),
        }
        created.push(path);
        let original = std::fs::read(k).unwrap();
        let section = ["resources", "components", "patchesStrategicMerge", "crds"][rng.random_range(0..4)];
        let mut text = original.clone();
        add_entry(&mut text, section, name);
        std::fs::write(k, &text).unwrap();
        restore.push((k.clone(), original));
        files.push((k.strip_prefix(&tree.root).unwrap().to_path_buf(), vec![format!("{section} names {name}, {what}")]));
        return (Case { dir: dir.strip_prefix(&tree.root).unwrap().to_path_buf(), files }, Restore { files: restore, created });
    }
    for file in chosen {
        let original = std::fs::read(&file).unwrap();
        let mut text = original.clone();
        let is_kustomization = Some(&file) == kustomization.as_ref();
        // Mostly one mutation: more cases get past the parser into the build.
        let count = [1, 1, 1, 1, 1, 1, 1, 2, 2, 3][rng.random_range(0..10)];
        let mutations: Vec<String> = (0..count).map(|_| mutate(rng, &mut text, is_kustomization, &dir_name)).collect();
        std::fs::write(&file, &text).unwrap();
        restore.push((file.clone(), original));
        files.push((file.strip_prefix(&tree.root).unwrap().to_path_buf(), mutations));
    }
    (Case { dir: dir.strip_prefix(&tree.root).unwrap().to_path_buf(), files }, Restore { files: restore, created })
}

/// How to undo a case: files to write back, paths to remove.
struct Restore {
    files: Vec<(PathBuf, Vec<u8>)>,
    created: Vec<PathBuf>,
}

impl Restore {
    fn run(self) {
        for (file, original) in self.files {
            std::fs::write(file, original).unwrap();
        }
        for path in self.created {
            if path.is_dir() && !path.is_symlink() {
                std::fs::remove_dir_all(&path).unwrap();
            } else {
                std::fs::remove_file(&path).unwrap();
            }
        }
    }
}

/// Build `dir` on its own thread. Err says what went wrong: a panic, a hang, or an error that
/// names no file.
fn check_build(dir: &Path) -> Result<String, String> {
    let (tx, rx) = mpsc::channel();
    let d = dir.to_path_buf();
    std::thread::Builder::new()
        .name("render".into())
        .spawn(move || {
            let result = std::panic::catch_unwind(|| kfctl_render::build(&d).map(|b| b.resources.len()));
            let _ = tx.send(result);
        })
        .unwrap();
    match rx.recv_timeout(CASE_LIMIT) {
        Err(_) => Err(format!("no result within {CASE_LIMIT:?}: a hang")),
        Ok(Err(panic)) => {
            let what = panic.downcast_ref::<String>().cloned().or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()));
            Err(format!("panicked: {}", what.unwrap_or_default()))
        }
        Ok(Ok(Ok(n))) => Ok(format!("rendered {n} objects")),
        Ok(Ok(Err(e))) => {
            let text = e.to_string();
            if names_a_file(&text) { Ok(format!("error: {}", text.lines().next().unwrap_or_default())) } else { Err(format!("an error that names no file: {text}")) }
        }
    }
}

/// Whether an error message names a file or folder (an absolute path, or a file name).
fn names_a_file(text: &str) -> bool {
    text.contains("/tmp") || text.contains('/') && [".yaml", ".yml", ".json", "kustomization", "Kustomization"].iter().any(|w| text.contains(w))
}

/// Where the case being run is written before it runs.
fn last_case_file() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz-render-last-case.txt")
}

#[test]
fn mutated_kustomizations_and_yaml_never_panic_hang_or_fail_without_naming_a_file() {
    let seed: u64 = std::env::var("KFCTL_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(DEFAULT_SEED);
    let budget = Duration::from_secs(std::env::var("KFCTL_FUZZ_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(40));
    let only: Option<u64> = std::env::var("KFCTL_FUZZ_CASE").ok().and_then(|s| s.parse().ok());
    let verbose = std::env::var_os("KFCTL_FUZZ_VERBOSE").is_some();
    eprintln!("fuzz-render: seed {seed} (rerun: KFCTL_FUZZ_SEED={seed}), budget {budget:?}");
    let trees = [unpack("v1.4.1"), unpack("26.03")];
    let start = Instant::now();
    let mut outcomes = std::collections::BTreeMap::<&str, usize>::new();
    let mut case = 0u64;
    while only.is_some_and(|o| case <= o) || (only.is_none() && start.elapsed() < budget) {
        // Each case from its own generator: case N is the same whatever ran before it.
        let mut rng = StdRng::seed_from_u64(seed ^ case.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        if only.is_some_and(|o| o != case) {
            case += 1;
            continue;
        }
        let tree = &trees[rng.random_range(0..trees.len())];
        let (what, restore) = prepare(tree, &mut rng);
        // A stack overflow aborts the process before any report: leave the case behind.
        let _ = std::fs::write(last_case_file(), format!("case {case} (seed {seed}): {what}\n"));
        let result = check_build(&tree.root.join(&what.dir));
        restore.run();
        match result {
            Ok(said) => {
                if only.is_some() || verbose {
                    eprintln!("case {case}: {what}\n  {said}");
                }
                *outcomes.entry(if said.starts_with("error") { "error naming a file" } else { "rendered" }).or_default() += 1;
            }
            Err(why) => panic!(
                "case {case} (seed {seed}): {why}\n  {what}\n  rerun: KFCTL_FUZZ_SEED={seed} KFCTL_FUZZ_CASE={case} cargo test -p kfctl-render --test fuzz_malformed -- --nocapture"
            ),
        }
        case += 1;
    }
    eprintln!("fuzz-render: {case} cases in {:?}: {outcomes:?}", start.elapsed());
}
