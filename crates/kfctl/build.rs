//! Embeds every release catalog in `catalogs/` into the binary: adding a release is adding a
//! file there, with no Rust list to edit. The catalogs are parsed and validated at run time
//! (`registry::catalog`), where a bad file is reported by name and field.
//!
//! Embeds the codelabs in `codelabs/<release>/` the same way (`notebook::codelabs`).

use std::path::Path;

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("catalogs");
    // Re-run when a file is added, removed or changed (a directory's mtime changes on add/remove).
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    let mut out = String::from("/// Every catalog file in `crates/kfctl/catalogs/`: (file name, contents), by file name.\n");
    out.push_str("pub(crate) static CATALOG_FILES: &[(&str, &str)] = &[\n");
    for path in &files {
        println!("cargo:rerun-if-changed={}", path.display());
        let name = path.file_name().expect("a file name").to_string_lossy();
        out.push_str(&format!("    ({:?}, include_str!({:?})),\n", name, path.display().to_string()));
    }
    out.push_str("];\n");
    let target = Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("catalog_files.rs");
    std::fs::write(&target, out).unwrap_or_else(|e| panic!("cannot write {}: {e}", target.display()));
    embed_codelabs();
}

/// `CODELAB_FILES`: (release, file name, contents) for every file in `codelabs/<release>/`.
fn embed_codelabs() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("codelabs");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut entries = Vec::new();
    let mut releases: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.is_dir())
        .collect();
    releases.sort();
    for release_dir in releases {
        println!("cargo:rerun-if-changed={}", release_dir.display());
        let release = release_dir.file_name().expect("a folder name").to_string_lossy().into_owned();
        let mut files: Vec<_> = std::fs::read_dir(&release_dir)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", release_dir.display()))
            .map(|entry| entry.expect("a directory entry").path())
            .filter(|path| path.is_file())
            .collect();
        files.sort();
        for path in files {
            println!("cargo:rerun-if-changed={}", path.display());
            let name = path.file_name().expect("a file name").to_string_lossy().into_owned();
            entries.push(format!("    ({release:?}, {name:?}, include_str!({:?})),\n", path.display().to_string()));
        }
    }
    let mut out = String::from("/// Every file in `crates/kfctl/codelabs/<release>/`: (release, file name, contents).\n");
    out.push_str("pub(crate) static CODELAB_FILES: &[(&str, &str, &str)] = &[\n");
    out.extend(entries);
    out.push_str("];\n");
    let target = Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("codelab_files.rs");
    std::fs::write(&target, out).unwrap_or_else(|e| panic!("cannot write {}: {e}", target.display()));
}
