//! Patches: `patchesStrategicMerge`, `patches` and `patchesJson6902`, applied as kustomize v5.5's
//! PatchStrategicMergeTransformer, PatchTransformer and PatchJson6902Transformer do.
//!
//! - [`strategic_merge`]: kyaml's merge walker (what a strategic merge patch does to one object);
//! - [`merge_keys`]: the list merge keys of the built-in types it consults;
//! - [`json6902`]: RFC 6902 operations;
//! - [`target`]: which resources a `target:` selects.
//!
//! The entry points below load patch files through the kustomization's [`Loader`] (so kustomize's
//! root-only file restriction applies), pick the resources, and report failures as
//! [`RenderError::Patch`] naming the patch file (or the kustomization for inline patches) and the
//! resource.

pub mod json6902;
pub mod merge_keys;
pub mod strategic_merge;
pub mod target;

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::error::{RenderError, Result};
use crate::kustomization::{Patch, Selector};
use crate::loader::{Loader, resources_from_text};
use crate::resource::{Origin, Resource};

use json6902::Operation;
use target::{CompiledSelector, id_string, ids_equal};

/// A strategic merge patch document, with the `options` of the entry that carried it.
struct SmPatch {
    object: Map<String, Value>,
    allow_name_change: bool,
    allow_kind_change: bool,
}

/// A `patches:` entry once loaded: strategic merge documents or JSON 6902 operations.
enum LoadedPatch {
    Strategic(Vec<Map<String, Value>>),
    Json(Vec<Operation>),
}

fn patch_error(file: &Path, resource: impl Into<String>, message: impl Into<String>) -> RenderError {
    RenderError::Patch { file: file.to_path_buf(), resource: resource.into(), message: message.into() }
}

/// Apply the kustomization's `patchesStrategicMerge` entries (file paths, or inline YAML as
/// kustomize still accepts) in order. Each patch document must name exactly one resource by its
/// apiVersion/kind/name/namespace; a patch that names no resource is kustomize's
/// `no matches for Id ...` error.
pub fn apply_patches_strategic_merge(
    resources: &mut Vec<Resource>,
    entries: &[String],
    loader: &Loader,
    kustomization: &Path,
) -> Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    let mut loaded: Vec<(PathBuf, Map<String, Value>)> = Vec::new();
    for entry in entries {
        // For legacy reasons kustomize first tries the entry as patch content, then as a path.
        let inline = crate::yaml::parse_documents(entry, kustomization)
            .ok()
            .filter(|docs| !docs.is_empty() && docs.iter().all(Value::is_object))
            .and_then(|_| resources_from_text(entry, kustomization, &Origin::default()).ok());
        let (file, docs) = match inline {
            Some(docs) => (kustomization.to_path_buf(), docs),
            None => {
                let (file, text) = loader.read_text(entry, kustomization)?;
                let docs = resources_from_text(&text, &file, &Origin::default())?;
                (file, docs)
            }
        };
        loaded.extend(docs.into_iter().map(|r| (file.clone(), r.object)));
    }
    if loaded.is_empty() {
        return Err(patch_error(
            kustomization,
            "patchesStrategicMerge",
            format!("patch appears to be empty; files={entries:?}"),
        ));
    }
    for (file, object) in loaded {
        let patch = SmPatch { object, allow_name_change: false, allow_kind_change: false };
        let index = find_unique_target(resources, &patch.object)
            .map_err(|message| patch_error(&file, id_string(&patch_id(&patch.object)), message))?;
        apply_sm_patch_at(resources, &[index], &patch, &file)?;
    }
    Ok(())
}

/// Apply the kustomization's `patches` entries in order: each a `path` or inline `patch`, strategic
/// merge or JSON 6902 (told apart as kustomize does: a list is JSON 6902, objects are strategic
/// merge), with an optional `target` and `options` (`allowNameChange`, `allowKindChange`).
pub fn apply_patches(
    resources: &mut Vec<Resource>,
    patches: &[Patch],
    loader: &Loader,
    kustomization: &Path,
) -> Result<()> {
    for entry in patches {
        let (file, text) = patch_text(entry, loader, kustomization)?;
        let options = entry.options.clone().unwrap_or_default();
        let allow_name_change = options.get("allowNameChange").copied().unwrap_or(false);
        let allow_kind_change = options.get("allowKindChange").copied().unwrap_or(false);
        let selector = entry.target.as_ref().map(|t| compile_target(t, &file)).transpose()?;
        match classify(&text, &file)? {
            LoadedPatch::Strategic(docs) => {
                let docs: Vec<SmPatch> = docs
                    .into_iter()
                    .map(|object| SmPatch { object, allow_name_change, allow_kind_change })
                    .collect();
                if let Some(selector) = &selector {
                    if docs.len() > 1 {
                        return Err(patch_error(
                            &file,
                            selector.selector().to_string(),
                            format!(
                                "Multiple Strategic-Merge Patches in one `patches` entry is not allowed to set `patches.target` field: {}",
                                selector.selector()
                            ),
                        ));
                    }
                    let Some(patch) = docs.first() else { continue };
                    let selected = selector.select(resources);
                    apply_sm_patch_at(resources, &selected, patch, &file)?;
                } else {
                    if docs.is_empty() {
                        return Err(patch_error(&file, "patches", format!("must specify a target for JSON patch {text}")));
                    }
                    let mut deleted = false;
                    for patch in &docs {
                        let id = id_string(&patch_id(&patch.object));
                        // kustomize v5.5 leaves a resource deleted by one document of the entry
                        // in its list, emptied, until the entry is done; looking up the next
                        // document's target then dereferences it and crashes.
                        if deleted {
                            return Err(patch_error(
                                &file,
                                id,
                                "a document follows one that deletes a resource in the same `patches` entry: kubectl kustomize v5.5 crashes on this (nil pointer dereference)\n  hint: give each `$patch: delete` document its own `patches` entry, or put it last",
                            ));
                        }
                        let index = find_unique_target(resources, &patch.object).map_err(|message| {
                            patch_error(&file, id.clone(), format!("no resource matches strategic merge patch {id:?}: {message}"))
                        })?;
                        let before = resources.len();
                        apply_sm_patch_at(resources, &[index], patch, &file)?;
                        deleted = resources.len() < before;
                    }
                }
            }
            LoadedPatch::Json(ops) => {
                let Some(selector) = &selector else {
                    return Err(patch_error(&file, "patches", format!("must specify a target for JSON patch {text}")));
                };
                for index in selector.select(resources) {
                    apply_json_patch_at(&mut resources[index], &ops, &file, true)?;
                }
            }
        }
    }
    Ok(())
}

/// Apply the kustomization's deprecated `patchesJson6902` entries: JSON 6902 operations (JSON or
/// YAML, from `path` or inline `patch`) on every resource the `target` selects; the target must
/// name a resource.
pub fn apply_patches_json6902(
    resources: &mut [Resource],
    patches: &[Patch],
    loader: &Loader,
    kustomization: &Path,
) -> Result<()> {
    for entry in patches {
        let target = entry.target.clone().unwrap_or_default();
        if target.name.as_deref().unwrap_or("").is_empty() {
            return Err(patch_error(
                kustomization,
                "patchesJson6902",
                "trouble configuring builtin PatchJson6902Transformer: must specify the target name",
            ));
        }
        let path = entry.path.as_deref().unwrap_or("");
        let inline = entry.patch.as_deref().unwrap_or("");
        let (file, text) = match (path.is_empty(), inline.is_empty()) {
            (true, true) => {
                return Err(patch_error(kustomization, "patchesJson6902", "empty file path and empty jsonOp"));
            }
            (false, false) => {
                return Err(patch_error(kustomization, "patchesJson6902", "must specify a file path or jsonOp, not both"));
            }
            (false, true) => {
                let (file, text) = loader.read_text(path, kustomization)?;
                if text.is_empty() {
                    return Err(patch_error(&file, "patchesJson6902", format!("patch file '{path}' empty seems to be empty")));
                }
                (file, text)
            }
            (true, false) => (kustomization.to_path_buf(), inline.to_string()),
        };
        let ops = decode_json_ops(&text, &file)?;
        if ops.is_empty() {
            return Err(patch_error(&file, "patchesJson6902", format!("patch appears to be empty; file={path}, JsonOp={text}")));
        }
        let selector = compile_target(&target, &file)?;
        for index in selector.select(resources) {
            apply_json_patch_at(&mut resources[index], &ops, &file, false)?;
        }
    }
    Ok(())
}

/// The text of a `patches:` entry and the file to name in errors (the kustomization for inline).
fn patch_text(entry: &Patch, loader: &Loader, kustomization: &Path) -> Result<(PathBuf, String)> {
    let path = entry.path.as_deref().unwrap_or("");
    let inline = entry.patch.as_deref().unwrap_or("").trim();
    match (path.is_empty(), inline.is_empty()) {
        (true, true) => Err(patch_error(kustomization, "patches", "must specify one of patch and path")),
        (false, false) => Err(patch_error(kustomization, "patches", "patch and path can't be set at the same time")),
        (false, true) => loader.read_text(path, kustomization),
        (true, false) => Ok((kustomization.to_path_buf(), inline.to_string())),
    }
}

fn compile_target(target: &Selector, file: &Path) -> Result<CompiledSelector> {
    target::compile(target).map_err(|e| patch_error(file, "target", e.to_string()))
}

/// Decide between strategic merge and JSON 6902 as kustomize's PatchTransformer does: try both,
/// exactly one must succeed.
fn classify(text: &str, file: &Path) -> Result<LoadedPatch> {
    let strategic = resources_from_text(text, file, &Origin::default());
    let json = if text.is_empty() {
        Err(patch_error(file, "patches", "empty json patch operations"))
    } else {
        decode_json_ops(text, file)
    };
    match (strategic, json) {
        (Ok(docs), Err(_)) => Ok(LoadedPatch::Strategic(docs.into_iter().map(|r| r.object).collect())),
        (Err(_), Ok(ops)) => Ok(LoadedPatch::Json(ops)),
        (Ok(_), Ok(_)) => Err(patch_error(file, "patches", format!("illegally qualifies as both an SM and JSON patch: {text}"))),
        (Err(_), Err(_)) => Err(patch_error(file, "patches", format!("unable to parse SM or JSON patch from {text}"))),
    }
}

/// JSON 6902 operations from JSON or YAML text. Like kustomize, text that starts with `[` is
/// JSON; anything else is YAML read the way sigs.k8s.io/yaml reads it (YAML 1.1: `yes` is true).
fn decode_json_ops(text: &str, file: &Path) -> Result<Vec<Operation>> {
    let first = if text.starts_with('[') {
        serde_json::from_str::<Value>(text).map_err(|e| patch_error(file, "patches", format!("invalid JSON patch: {e}")))?
    } else {
        let docs = crate::yaml::parse_documents_as(text, file, crate::yaml::Dialect::Yaml11)?;
        docs.into_iter().next().unwrap_or(Value::Null)
    };
    json6902::decode(&first).map_err(|e| patch_error(file, "patches", e.to_string()))
}

/// The id a strategic merge patch names (used when it has no target).
fn patch_id(patch: &Map<String, Value>) -> crate::resource::ResId {
    Resource::new(patch.clone(), Origin::default()).id()
}

/// kustomize's `GetById(patch.OrgId())`: the one resource whose current or any previous id equals
/// the patch's id (namespace "" and "default" are the same).
fn find_unique_target(resources: &[Resource], patch: &Map<String, Value>) -> std::result::Result<usize, String> {
    let id = patch_id(patch);
    let matches: Vec<usize> = resources
        .iter()
        .enumerate()
        .filter(|(_, r)| r.previous_ids.iter().chain(std::iter::once(&r.id())).any(|rid| ids_equal(rid, &id)))
        .map(|(i, _)| i)
        .collect();
    let text = id_string(&id);
    match matches.as_slice() {
        [one] => Ok(*one),
        [] => Err(format!("no matches for Id {text}; failed to find unique target for patch {text}")),
        _ => Err(format!("multiple matches for Id {text}; failed to find unique target for patch {text}")),
    }
}

/// kustomize's `ResMap.ApplySmPatch` on the resources at `indexes`: merge a copy of the patch
/// (with the resource's apiVersion) into each, keep name/kind unless the options allow a change,
/// always keep the namespace, and drop resources the patch deletes.
fn apply_sm_patch_at(resources: &mut Vec<Resource>, indexes: &[usize], patch: &SmPatch, file: &Path) -> Result<()> {
    let mut deleted = Vec::new();
    for &index in indexes {
        let res = &mut resources[index];
        let old_id = res.id();
        let (name, kind, namespace) = (res.name().to_string(), res.kind().to_string(), res.namespace().map(str::to_string));
        let mut patch_copy = patch.object.clone();
        let api_version = res.api_version().to_string();
        if api_version.is_empty() {
            patch_copy.shift_remove("apiVersion");
        } else {
            patch_copy.insert("apiVersion".into(), Value::String(api_version));
        }
        // What the merge leaves of bare keys is inside lists no merge enters: forget them all.
        strategic_merge::drop_bare_keys(&mut res.object, &std::mem::take(&mut res.bare_keys));
        // On error the build stops, so the object can be moved into the merge.
        let merged = strategic_merge::merge_resource_owned(std::mem::take(&mut res.object), patch_copy)
            .map_err(|e| patch_error(file, id_string(&old_id), e.to_string()))?;
        let Some(merged) = merged else {
            deleted.push(index);
            continue;
        };
        res.object = merged;
        if !patch.allow_kind_change {
            res.object.insert("kind".into(), Value::String(kind));
        }
        if !patch.allow_name_change {
            res.metadata_mut().insert("name".into(), Value::String(name));
        }
        match namespace {
            Some(ns) => {
                res.metadata_mut().insert("namespace".into(), Value::String(ns));
            }
            None => {
                if res.object.get("metadata").is_some_and(|m| m.get("namespace").is_some()) {
                    res.metadata_mut().shift_remove("namespace");
                }
            }
        }
        if (patch.allow_name_change || patch.allow_kind_change) && res.id() != old_id {
            res.previous_ids.push(old_id);
        }
    }
    let mut index = 0;
    resources.retain(|_| {
        let keep = !deleted.contains(&index);
        index += 1;
        keep
    });
    Ok(())
}

/// Apply JSON 6902 operations to one resource. `record_rename` keeps the old id when the patch
/// changes it (the `patches` transformer does; the legacy `patchesJson6902` one does not).
fn apply_json_patch_at(res: &mut Resource, ops: &[Operation], file: &Path, record_rename: bool) -> Result<()> {
    let old_id = res.id();
    let patched = json6902::apply_to_object(&res.object, ops).map_err(|e| patch_error(file, id_string(&old_id), e.to_string()))?;
    res.object = patched;
    // kustomize patches the object's JSON form and reads it back: every null is written out now.
    res.bare_keys.clear();
    // kustomize re-sets the annotations after a JSON patch (to restore its internal ones), which
    // removes an annotations map the patch left empty.
    if let Some(Value::Object(meta)) = res.object.get_mut("metadata")
        && meta.get("annotations").is_some_and(|a| a.is_null() || a.as_object().is_some_and(Map::is_empty))
    {
        meta.shift_remove("annotations");
    }
    if record_rename && res.id() != old_id {
        res.previous_ids.push(old_id);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
