//! The shipped codelabs (crates/kfctl/codelabs/<release>/): each is a valid nbformat 4 notebook,
//! each code cell parses as Python (python3's own parser), each installs exactly the SDK pins of
//! its release's sdk.yaml, and the cells `scripts/test-codelabs` runs without a cluster are tagged
//! `offline`. `scripts/test-codelabs` then runs those cells with the pinned SDKs.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const RELEASES: [&str; 2] = ["26.03", "v1.10.2"];
const CODELABS: [&str; 5] = [
    "1-check-the-platform.ipynb",
    "2-first-pipeline.ipynb",
    "3-hyperparameter-tuning.ipynb",
    "4-distributed-training.ipynb",
    "5-serve-a-model.ipynb",
];

fn dir(release: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("codelabs").join(release)
}

fn notebook(release: &str, file: &str) -> Value {
    let path = dir(release).join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

fn source(cell: &Value) -> String {
    match &cell["source"] {
        Value::String(s) => s.clone(),
        Value::Array(lines) => lines.iter().map(|l| l.as_str().expect("source lines are strings")).collect(),
        other => panic!("source is neither a string nor lines: {other}"),
    }
}

/// `file: ["pin", ...]` lines of sdk.yaml.
fn pins(release: &str, file: &str) -> Vec<String> {
    let text = std::fs::read_to_string(dir(release).join("sdk.yaml")).expect("sdk.yaml");
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{file}: ")))
        .unwrap_or_else(|| panic!("{release}/sdk.yaml has no pins for {file}"));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{release}/sdk.yaml {file}: {e}"))
}

#[test]
fn each_release_ships_the_five_codelabs_and_nothing_else() {
    for release in RELEASES {
        let mut files: Vec<String> = std::fs::read_dir(dir(release))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|f| f.ends_with(".ipynb"))
            .collect();
        files.sort();
        assert_eq!(files, CODELABS, "{release}");
    }
}

#[test]
fn codelabs_are_nbformat_4_notebooks() {
    for release in RELEASES {
        for file in CODELABS {
            let nb = notebook(release, file);
            let at = format!("{release}/{file}");
            assert_eq!(nb["nbformat"], 4, "{at}: nbformat");
            assert!(nb["nbformat_minor"].as_u64().is_some_and(|m| m >= 5), "{at}: nbformat_minor >= 5 (cell ids)");
            assert_eq!(nb["metadata"]["kernelspec"]["name"], "python3", "{at}: kernelspec");
            assert_eq!(nb["metadata"]["kfctl"]["release"], release, "{at}: metadata.kfctl.release");
            let cells = nb["cells"].as_array().unwrap_or_else(|| panic!("{at}: no cells"));
            let mut ids = std::collections::HashSet::new();
            for (i, cell) in cells.iter().enumerate() {
                let kind = cell["cell_type"].as_str().unwrap_or_else(|| panic!("{at} cell {i}: no cell_type"));
                assert!(matches!(kind, "code" | "markdown"), "{at} cell {i}: cell_type {kind}");
                assert!(cell["metadata"].is_object(), "{at} cell {i}: metadata");
                let id = cell["id"].as_str().unwrap_or_else(|| panic!("{at} cell {i}: no id"));
                assert!(ids.insert(id.to_owned()), "{at} cell {i}: id {id} repeats");
                if kind == "code" {
                    assert_eq!(cell["outputs"], serde_json::json!([]), "{at} cell {i}: shipped with outputs");
                    assert!(cell["execution_count"].is_null(), "{at} cell {i}: execution_count");
                }
                let _ = source(cell);
            }
        }
    }
}

#[test]
fn code_cells_parse_as_python() {
    let mut script = String::from("import ast, json, sys\ncells = json.load(sys.stdin)\nfor where, src in cells:\n    try:\n        ast.parse(src)\n    except SyntaxError as e:\n        print(f'{where}: line {e.lineno}: {e.msg}')\n        sys.exit(1)\nprint(len(cells))\n");
    script.push('\n');
    let mut cells = Vec::new();
    for release in RELEASES {
        for file in CODELABS {
            let nb = notebook(release, file);
            for (i, cell) in nb["cells"].as_array().unwrap().iter().enumerate() {
                if cell["cell_type"] == "code" {
                    cells.push((format!("{release}/{file} cell {i}"), source(cell)));
                }
            }
        }
    }
    let mut child = Command::new("python3")
        .args(["-c", &script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 (the codelab checks parse cells with Python's own parser)");
    serde_json::to_writer(child.stdin.take().unwrap(), &cells).unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "a code cell does not parse: {stdout}");
    assert_eq!(stdout.trim(), cells.len().to_string());
}

#[test]
fn each_codelab_installs_exactly_its_release_pins() {
    for release in RELEASES {
        for file in CODELABS {
            let nb = notebook(release, file);
            let install: Vec<String> = nb["cells"]
                .as_array()
                .unwrap()
                .iter()
                .map(source)
                .filter(|s| s.contains("\"pip\", \"install\""))
                .collect();
            assert_eq!(install.len(), 1, "{release}/{file}: one install cell");
            let wanted = pins(release, file);
            let named: Vec<String> = install[0]
                .split('"')
                .filter(|part| part.contains("=="))
                .map(str::to_owned)
                .collect();
            assert_eq!(named, wanted, "{release}/{file}: install cell pins vs sdk.yaml");
        }
    }
}

#[test]
fn offline_cells_are_tagged_where_the_metadata_promises_checks() {
    for release in RELEASES {
        for file in CODELABS {
            let nb = notebook(release, file);
            let promised = &nb["metadata"]["kfctl"]["offline"];
            let tagged = nb["cells"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|c| c["metadata"]["tags"].as_array().is_some_and(|t| t.iter().any(|t| t == "offline")))
                .count();
            let checks = promised.as_object().map(|o| o.len()).unwrap_or(0);
            assert_eq!(tagged > 0, checks > 0, "{release}/{file}: {tagged} offline cells for checks {promised}");
        }
    }
    // What the script checks per topic: the pipeline compiles, the objects validate.
    for release in RELEASES {
        assert_eq!(notebook(release, CODELABS[1])["metadata"]["kfctl"]["offline"]["compiles"][0], "first_pipeline.yaml");
        assert_eq!(notebook(release, CODELABS[2])["metadata"]["kfctl"]["offline"]["validates"][0], "Experiment");
        assert_eq!(notebook(release, CODELABS[4])["metadata"]["kfctl"]["offline"]["validates"][0], "InferenceService");
    }
    assert_eq!(notebook("26.03", CODELABS[3])["metadata"]["kfctl"]["offline"]["validates"][0], "TrainJob");
    assert_eq!(notebook("v1.10.2", CODELABS[3])["metadata"]["kfctl"]["offline"]["validates"][0], "PyTorchJob");
}
