//! The curated codelabs shipped in the binary, per release (`crates/kfctl/codelabs/<release>/`,
//! embedded by build.rs): small runnable notebooks that `kfctl notebook` puts in the workspace.

include!(concat!(env!("OUT_DIR"), "/codelab_files.rs"));

/// One codelab notebook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Codelab {
    /// The file name, e.g. `2-first-pipeline.ipynb`.
    pub file: &'static str,
    /// The notebook (nbformat 4 JSON).
    pub contents: &'static str,
}

/// The codelabs of `release` (with or without a leading `v`), in file-name order; empty when the
/// release has none.
pub fn for_release(release: &str) -> Vec<Codelab> {
    let bare = |v: &str| v.strip_prefix('v').unwrap_or(v).to_owned();
    CODELAB_FILES
        .iter()
        .filter(|(r, file, _)| bare(r) == bare(release) && file.ends_with(".ipynb"))
        .map(|(_, file, contents)| Codelab { file, contents })
        .collect()
}

/// The releases that ship codelabs, comma-separated, for messages.
pub fn releases() -> String {
    let mut releases: Vec<&str> = CODELAB_FILES.iter().map(|(r, _, _)| *r).collect();
    releases.dedup();
    releases.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_current_releases_ship_five_codelabs() {
        for release in ["26.03", "v1.10.2", "1.10.2"] {
            let labs = for_release(release);
            assert_eq!(labs.len(), 5, "{release}: {:?}", labs.iter().map(|l| l.file).collect::<Vec<_>>());
            for lab in labs {
                let nb: serde_json::Value = serde_json::from_str(lab.contents).unwrap_or_else(|e| panic!("{}: {e}", lab.file));
                assert_eq!(nb["nbformat"], 4, "{}", lab.file);
            }
        }
        assert!(for_release("v1.4.1").is_empty());
    }
}
