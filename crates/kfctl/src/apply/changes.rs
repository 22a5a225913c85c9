//! `kfctl diff`: what the next `kfctl apply` would do, computed without writing anything.
//!
//! It starts from the same assessment as an apply ([`super::assess`]): inventory records and
//! metadata lists prove most objects unchanged, full reads and [`super::diff::is_unchanged`] most
//! of the rest. Only what is still pending is examined one by one: an object not on the cluster
//! is a create (no dry-run: its namespace or CRD may not exist yet); any other gets a server-side
//! apply dry-run, so defaults, admission webhooks and immutable fields are the server's word,
//! and its change set is the leaf-wise difference between the dry-run result and the live object.
//! What apply would prune is checked as prune would check it ([`super::delete::deletable`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use futures::{StreamExt, stream};
use kube::Client;
use kube::api::{Patch, PatchParams};
use serde_json::Value;

use super::{ApplyError, ApplyOptions, Assessment, ReleaseRange, assess, delete, typed_value};
use crate::app::RenderedApp;
use crate::discovery::KindResolver;
use crate::plan::{AppTarget, FIELD_MANAGER, InventoryEntry, PlannedObject};
use crate::progress::{Progress, StageTimes};

/// What the next `kfctl apply` would do, by object.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct AppDiff {
    /// Objects not on the cluster.
    pub create: Vec<ObjectDiff>,
    /// Objects apply would change, with the fields; also those whose dry-run failed (`reason`).
    pub change: Vec<ObjectDiff>,
    /// Objects whose change the server refuses as immutable: apply would have to delete and
    /// recreate them (`reason`: the server's message).
    pub replace: Vec<ObjectDiff>,
    /// Objects that left the config and would be deleted.
    pub prune: Vec<ObjectDiff>,
    /// Objects that left the config but would be kept (`reason`: why).
    pub keep: Vec<ObjectDiff>,
    /// Objects already as kfctl would apply them.
    pub unchanged: usize,
    /// What the apply would warn about too (a server outside the release's Kubernetes range).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// One object's part in an [`AppDiff`].
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ObjectDiff {
    pub component: String,
    /// As [`crate::plan::ObjectRef`]'s Display: `Deployment.apps ns/name`.
    pub object: String,
    /// The fields that change (changes only; Secret values redacted).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldChange>,
    /// replace: the server's message; keep: why; a change whose dry-run failed: the error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One leaf field that changes: absent `before` is added, absent `after` removed.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FieldChange {
    /// `spec.template.spec.containers[name=manager].image`: list items by their `name` where
    /// they have one, else by index; keys that are not plain words quoted (`data["a.yaml"]`).
    pub path: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

impl AppDiff {
    /// Nothing to create, change, replace or prune (kept objects are no change).
    pub fn is_empty(&self) -> bool {
        self.create.is_empty() && self.change.is_empty() && self.replace.is_empty() && self.prune.is_empty()
    }

    /// One line for a person.
    pub fn summary(&self) -> String {
        if self.is_empty() {
            let kept = if self.keep.is_empty() { String::new() } else { format!(", {} kept out of the config", self.keep.len()) };
            return format!("no changes: {} objects unchanged{kept}", self.unchanged);
        }
        let mut parts = Vec::new();
        for (n, what) in [
            (self.create.len(), "to create"),
            (self.change.len(), "to change"),
            (self.replace.len(), "to replace"),
            (self.prune.len(), "to prune"),
            (self.keep.len(), "kept"),
        ] {
            if n > 0 {
                parts.push(format!("{n} {what}"));
            }
        }
        parts.push(format!("{} unchanged", self.unchanged));
        parts.join(", ")
    }

    /// The diff for a person: grouped by component, a line per object (`+` create, `~` change,
    /// `!` replace, `-` prune, `=` keep), `-`/`+` lines per changed field, the summary at the end.
    pub fn text(&self) -> String {
        let mut by_component: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        let groups: [(&[ObjectDiff], &str, &str); 5] = [
            (&self.create, "+", "create"),
            (&self.change, "~", "change"),
            (&self.replace, "!", "replace"),
            (&self.prune, "-", "prune"),
            (&self.keep, "=", "keep"),
        ];
        for (objects, mark, action) in groups {
            for o in objects {
                let lines = by_component.entry(o.component.as_str()).or_default();
                let reason = match (action, &o.reason) {
                    ("replace", Some(r)) => format!(": apply must delete and recreate it; the server says: {r}"),
                    ("change", Some(r)) => format!(": the dry-run failed: {r}"),
                    (_, Some(r)) => format!(": {r}"),
                    (_, None) => String::new(),
                };
                lines.push(format!("  {mark} {action} {}{reason}", o.object));
                for f in &o.fields {
                    lines.push(format!("      {}", f.path));
                    if let Some(before) = &f.before {
                        lines.push(format!("      - {}", shown(before)));
                    }
                    if let Some(after) = &f.after {
                        lines.push(format!("      + {}", shown(after)));
                    }
                }
            }
        }
        let mut text = String::new();
        for (component, lines) in by_component {
            text.push_str(&format!("component {component}:\n"));
            for line in lines {
                text.push_str(&line);
                text.push('\n');
            }
        }
        for w in &self.warnings {
            text.push_str(w);
            text.push('\n');
        }
        text.push_str(&self.summary());
        text.push('\n');
        text
    }
}

/// A value on one line: JSON (strings quoted, so `""` and a missing value differ).
fn shown(value: &Value) -> String {
    serde_json::to_string(value).expect("JSON value serializes")
}

/// What the next apply of `rendered` as `target` would do (see the module documentation).
/// Writes nothing.
pub async fn diff_rendered(client: &Client, target: &AppTarget, rendered: &RenderedApp, opts: &ApplyOptions) -> Result<AppDiff, ApplyError> {
    diff_assessed(client, target, rendered, opts, None).await
}

/// [`diff_rendered`] with the cluster reads [`prefetch`](super::prefetch) made while the app
/// rendered.
pub async fn diff_prefetched(
    client: &Client,
    target: &AppTarget,
    rendered: &RenderedApp,
    opts: &ApplyOptions,
    warm: super::Prefetched,
) -> Result<AppDiff, ApplyError> {
    diff_assessed(client, target, rendered, opts, Some(warm)).await
}

async fn diff_assessed(
    client: &Client,
    target: &AppTarget,
    rendered: &RenderedApp,
    opts: &ApplyOptions,
    warm: Option<super::Prefetched>,
) -> Result<AppDiff, ApplyError> {
    let mut times = StageTimes::from_env();
    let warnings = Mutex::new(Vec::new());
    let sink = |p: Progress| {
        if let Progress::Message { text } = p {
            warnings.lock().expect("warnings lock").push(text);
        }
    };
    let Assessment { resolver, plan, live, pending, prune, .. } = assess(client, target, rendered, opts, &sink, &mut times, warm, false).await?;
    let mut diff = AppDiff { warnings: warnings.into_inner().expect("warnings lock"), ..AppDiff::default() };

    let objects: Vec<&PlannedObject> = plan.phases.iter().flat_map(|p| &p.objects).collect();
    diff.unchanged = objects.iter().filter(|o| !pending.contains_key(&o.reference.identity())).count();
    let resolver = &resolver;
    let live = &live;
    let examined: Vec<(&PlannedObject, Examined)> = stream::iter(objects.into_iter().filter(|o| pending.contains_key(&o.reference.identity())))
        .map(|o| async move { (o, examine(client, resolver, o, live.get(&o.reference.identity())).await) })
        .buffered(opts.concurrency.max(1))
        .collect()
        .await;
    times.mark("dry-runs", &format!("{} objects examined", examined.len()));
    for (o, examined) in examined {
        let entry = |fields: Vec<FieldChange>, reason: Option<String>| ObjectDiff {
            component: o.component.clone(),
            object: o.reference.to_string(),
            fields,
            reason,
        };
        match examined {
            Examined::Create => diff.create.push(entry(Vec::new(), None)),
            Examined::Change(fields) => diff.change.push(entry(fields, None)),
            Examined::OwnershipOnly => diff.change.push(entry(
                Vec::new(),
                Some("no value changes: kfctl takes ownership of the fields it sets (metadata.managedFields)".into()),
            )),
            Examined::Replace(message) => diff.replace.push(entry(Vec::new(), Some(message))),
            Examined::Failed(reason) => diff.change.push(entry(Vec::new(), Some(reason))),
            Examined::Unchanged => diff.unchanged += 1,
        }
    }

    pruned(client, resolver, target, &prune, &mut diff).await;
    times.mark("prune checks", &format!("{} objects", prune.len()));
    Ok(diff)
}

/// [`diff_rendered`] for an app directory, as [`super::apply_app`] applies it (the release's
/// Kubernetes range filled in from the app's version).
pub async fn diff_app(client: &Client, app: &crate::app::App, rendered: &RenderedApp, opts: &ApplyOptions) -> Result<AppDiff, ApplyError> {
    let mut opts = opts.clone();
    opts.release = opts.release.or_else(|| ReleaseRange::of(&app.config.version));
    diff_rendered(client, &AppTarget::for_app(app), rendered, &opts).await
}

/// What one pending object turns out to be.
enum Examined {
    Create,
    Change(Vec<FieldChange>),
    /// No value changes, but kfctl's field ownership does (apply still writes it).
    OwnershipOnly,
    Replace(String),
    Failed(String),
    /// The dry-run changes nothing at all (the cheap comparison could not prove it).
    Unchanged,
}

async fn examine(client: &Client, resolver: &KindResolver, o: &PlannedObject, live: Option<&Value>) -> Examined {
    let r = &o.reference;
    // A kind no discovery knows and no CRD in the plan defines was refused by the API preflight;
    // one only a CRD in the plan defines has no objects yet.
    let Some(resolved) = resolver.resolve(&r.api_version(), &r.kind) else { return Examined::Create };
    let api = delete::api_for(client, &resolved, r.namespace.as_deref());
    let live = match live {
        Some(live) => live.clone(),
        // Not read: absent from the lists (or no record proved it), or without kfctl's label.
        None => match api.get_opt(&r.name).await {
            Ok(Some(item)) => typed_value(item, &resolved.resource),
            // get_opt says None for 404: the object, its namespace's object or its kind (a CRD
            // this apply installs) is not there yet.
            Ok(None) => return Examined::Create,
            // A kind not served yet answers with a bare "404 page not found", which get_opt
            // does not take for NotFound.
            Err(kube::Error::Api(s)) if s.code == 404 => return Examined::Create,
            Err(e) => return Examined::Failed(format!("cannot read it: {}", crate::cluster::error_chain(&e))),
        },
    };
    let params = PatchParams::apply(FIELD_MANAGER).force().dry_run();
    match api.patch(&r.name, &params, &Patch::Apply(&o.object)).await {
        Ok(after) => {
            let after = typed_value(after, &resolved.resource);
            let fields = field_changes(&live, &after);
            if !fields.is_empty() {
                Examined::Change(fields)
            } else if kfctl_fields(&live) != kfctl_fields(&after) {
                Examined::OwnershipOnly
            } else {
                Examined::Unchanged
            }
        }
        Err(kube::Error::Api(s)) if is_immutable(s.code, &s.message) => Examined::Replace(s.message),
        Err(kube::Error::Api(s)) if s.code == 404 => Examined::Create,
        // The server's own words and code, as apply reports a refusal.
        Err(kube::Error::Api(s)) => Examined::Failed(format!("{} ({})", s.message, s.code)),
        Err(e) => Examined::Failed(crate::cluster::error_chain(&e)),
    }
}

/// Whether the API server refused a change because a field cannot change after creation: "field
/// is immutable", "Forbidden: ... immutable", RBAC's "cannot change roleRef", a StatefulSet's
/// "updates to statefulset spec for fields other than ... are forbidden".
fn is_immutable(code: u16, message: &str) -> bool {
    code == 422
        && (message.contains("immutable")
            || message.contains("cannot change roleRef")
            || message.contains("updates to statefulset spec for fields other than"))
}

/// The fields kfctl's server-side apply owns, as the server records them.
fn kfctl_fields(object: &Value) -> Option<&Value> {
    object.pointer("/metadata/managedFields")?.as_array()?.iter().find_map(|e| {
        let ours = e.get("manager").and_then(Value::as_str) == Some(FIELD_MANAGER)
            && e.get("operation").and_then(Value::as_str) == Some("Apply");
        if ours { e.get("fieldsV1") } else { None }
    })
}

/// Metadata the server keeps for itself; never a change kfctl makes.
const SERVER_METADATA: &[&str] = &["managedFields", "resourceVersion", "generation", "uid", "creationTimestamp", "selfLink"];

/// The leaf-wise difference between `before` and `after` (live and dry-run result), leaving out
/// [`SERVER_METADATA`] and `status`, with Secret values redacted.
pub fn field_changes(before: &Value, after: &Value) -> Vec<FieldChange> {
    let comparable = |v: &Value| {
        let mut v = v.clone();
        if let Some(o) = v.as_object_mut() {
            o.remove("status");
            if let Some(meta) = o.get_mut("metadata").and_then(Value::as_object_mut) {
                for key in SERVER_METADATA {
                    meta.remove(*key);
                }
            }
        }
        v
    };
    let mut out = Vec::new();
    walk(String::new(), Some(&comparable(before)), Some(&comparable(after)), &mut out);
    if is_secret(before) || is_secret(after) {
        for change in &mut out {
            redact(change);
        }
    }
    out
}

fn is_secret(object: &Value) -> bool {
    object.get("apiVersion").and_then(Value::as_str) == Some("v1") && object.get("kind").and_then(Value::as_str) == Some("Secret")
}

/// Replace a Secret's values (`data`, base64; `stringData`, text) by their sizes.
fn redact(change: &mut FieldChange) {
    let top = change.path.split(['.', '[']).next().unwrap_or_default();
    if top != "data" && top != "stringData" {
        return;
    }
    let encoded = top == "data";
    let size = |v: &Value| match v {
        Value::String(s) if encoded => {
            use base64::Engine as _;
            let n = base64::engine::general_purpose::STANDARD.decode(s).map_or(s.len(), |bytes| bytes.len());
            format!("(redacted: {n} bytes)")
        }
        Value::String(s) => format!("(redacted: {} bytes)", s.len()),
        _ => "(redacted)".to_string(),
    };
    let changed = change.before.is_some() && change.after.is_some();
    change.before = change.before.as_ref().map(|v| Value::String(size(v)));
    change.after = change.after.as_ref().map(|v| {
        let text = size(v);
        Value::String(if changed { format!("{}, changed)", text.trim_end_matches(')')) } else { text })
    });
}

/// `path` and `key` joined: `.key` for plain words, `["key"]` otherwise.
fn child_path(path: &str, key: &str) -> String {
    let plain = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    match (path.is_empty(), plain) {
        (true, true) => key.to_string(),
        (false, true) => format!("{path}.{key}"),
        (_, false) => format!("{path}[{}]", shown(&Value::String(key.to_string()))),
    }
}

/// The `name` of every item when all items have a distinct one (then items pair by name).
fn item_names(items: &[Value]) -> Option<Vec<&str>> {
    let names: Vec<&str> = items.iter().map(|i| i.get("name").and_then(Value::as_str)).collect::<Option<_>>()?;
    let distinct: BTreeSet<&str> = names.iter().copied().collect();
    (distinct.len() == names.len()).then_some(names)
}

fn walk(path: String, before: Option<&Value>, after: Option<&Value>, out: &mut Vec<FieldChange>) {
    // The server leaves out what is null; so does a change set.
    let before = before.filter(|v| !v.is_null());
    let after = after.filter(|v| !v.is_null());
    match (before, after) {
        (None, None) => {}
        (Some(b), Some(a)) if b == a => {}
        // A map on both sides, or added or removed whole: key by key.
        (Some(Value::Object(b)), Some(Value::Object(a))) => {
            let keys: BTreeSet<&String> = b.keys().chain(a.keys()).collect();
            for key in keys {
                walk(child_path(&path, key), b.get(key), a.get(key), out);
            }
        }
        (Some(Value::Object(m)), None) | (None, Some(Value::Object(m))) if !m.is_empty() => {
            let added = before.is_none();
            let sorted: BTreeMap<&String, &Value> = m.iter().collect();
            for (key, v) in sorted {
                let (b, a) = if added { (None, Some(v)) } else { (Some(v), None) };
                walk(child_path(&path, key), b, a, out);
            }
        }
        (Some(Value::Array(b)), Some(Value::Array(a))) => match (item_names(b), item_names(a)) {
            (Some(bn), Some(an)) => {
                let mut names: Vec<&str> = bn.clone();
                names.extend(an.iter().filter(|n| !bn.contains(n)));
                for name in names {
                    let find = |items: &'_ [Value], names: &[&str]| names.iter().position(|n| *n == name).map(|i| items[i].clone());
                    let (bi, ai) = (find(b, &bn), find(a, &an));
                    walk(format!("{path}[name={name}]"), bi.as_ref(), ai.as_ref(), out);
                }
            }
            _ => {
                for i in 0..b.len().max(a.len()) {
                    walk(format!("{path}[{i}]"), b.get(i), a.get(i), out);
                }
            }
        },
        (Some(Value::Array(items)), None) | (None, Some(Value::Array(items))) if !items.is_empty() => {
            let added = before.is_none();
            let names = item_names(items);
            for (i, v) in items.iter().enumerate() {
                let at = match &names {
                    Some(names) => format!("{path}[name={}]", names[i]),
                    None => format!("{path}[{i}]"),
                };
                let (b, a) = if added { (None, Some(v)) } else { (Some(v), None) };
                walk(at, b, a, out);
            }
        }
        // Numbers by value: 1 and 1.0 are the same number.
        (Some(Value::Number(b)), Some(Value::Number(a))) if b.as_f64() == a.as_f64() => {}
        // A scalar, an empty map or list, or a change of type: one leaf.
        (b, a) => out.push(FieldChange { path, before: b.cloned(), after: a.cloned() }),
    }
}

/// The prune set as apply's prune would treat it: deleted, kept (with why), or already gone
/// (left out: apply has nothing to do there but forget it).
async fn pruned(client: &Client, resolver: &KindResolver, target: &AppTarget, prune: &[InventoryEntry], diff: &mut AppDiff) {
    if prune.is_empty() {
        return;
    }
    // Kinds only the old config had are not in the plan's discovery.
    let gvs: BTreeSet<String> = prune.iter().map(|e| e.reference.api_version()).collect();
    let _ = resolver.refresh(gvs).await;
    let kept_claims = &delete::kept_claims(prune, false);
    let checked: Vec<Option<Pruned>> = stream::iter(prune)
        .map(|e| async move {
            let entry = |reason: Option<String>| ObjectDiff {
                component: e.component.clone(),
                object: e.reference.to_string(),
                fields: Vec::new(),
                reason,
            };
            match delete::deletable(client, resolver, target, e, false, kept_claims).await {
                Ok(_) => Some(Pruned::Deleted(entry(None))),
                Err(Ok(delete::KeepReason::Gone)) => None,
                Err(Ok(why)) => Some(Pruned::Kept(entry(Some(why.to_string())))),
                Err(Err(reason)) => {
                    Some(Pruned::Deleted(entry(Some(format!("cannot read it to check whether it may be deleted: {reason}")))))
                }
            }
        })
        .buffered(16)
        .collect()
        .await;
    for pruned in checked.into_iter().flatten() {
        match pruned {
            Pruned::Deleted(o) => diff.prune.push(o),
            Pruned::Kept(o) => diff.keep.push(o),
        }
    }
}

/// What prune would do with one inventory entry.
enum Pruned {
    Deleted(ObjectDiff),
    Kept(ObjectDiff),
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn paths(changes: &[FieldChange]) -> Vec<&str> {
        changes.iter().map(|c| c.path.as_str()).collect()
    }

    #[test]
    fn list_items_by_name_else_by_index() {
        let deployment = |image: &str, args: Value| {
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
                "spec": {"template": {"spec": {"containers": [
                    {"name": "proxy", "image": "envoy:1"},
                    {"name": "manager", "image": image, "args": args}]}}}})
        };
        let changes = field_changes(&deployment("m:1", json!(["--a", "--b"])), &deployment("m:2", json!(["--a", "--c"])));
        assert_eq!(
            paths(&changes),
            ["spec.template.spec.containers[name=manager].args[1]", "spec.template.spec.containers[name=manager].image"]
        );
        assert_eq!(changes[1].before, Some(json!("m:1")));
        assert_eq!(changes[1].after, Some(json!("m:2")));
    }

    #[test]
    fn added_and_removed_fields_have_one_side() {
        let before = json!({"kind": "ConfigMap", "data": {"a.yaml": "x", "gone": "y"}});
        let after = json!({"kind": "ConfigMap", "data": {"a.yaml": "z", "new-key": "n"}, "binaryData": {}});
        let changes = field_changes(&before, &after);
        assert_eq!(paths(&changes), ["binaryData", "data[\"a.yaml\"]", "data.gone", "data.new-key"]);
        assert_eq!((changes[2].before.clone(), changes[2].after.clone()), (Some(json!("y")), None));
        assert_eq!((changes[3].before.clone(), changes[3].after.clone()), (None, Some(json!("n"))));
    }

    #[test]
    fn server_metadata_status_nulls_and_equal_numbers_are_no_change() {
        let before = json!({"metadata": {"name": "a", "resourceVersion": "1", "generation": 1, "uid": "u", "managedFields": [1],
            "creationTimestamp": "t", "selfLink": "/x"}, "spec": {"replicas": 1, "paused": null}, "status": {"ready": 1}});
        let after = json!({"metadata": {"name": "a", "resourceVersion": "2", "generation": 2, "uid": "u", "managedFields": [2]},
            "spec": {"replicas": 1.0}, "status": {"ready": 0}});
        assert_eq!(field_changes(&before, &after), Vec::<FieldChange>::new());
    }

    #[test]
    fn new_list_items_and_renamed_items_show_per_leaf() {
        let before = json!({"spec": {"ports": [{"name": "http", "port": 80}]}});
        let after = json!({"spec": {"ports": [{"name": "http", "port": 80}, {"name": "grpc", "port": 9000}], "volumes": [{"name": "v", "emptyDir": {}}]}});
        let changes = field_changes(&before, &after);
        assert_eq!(paths(&changes), ["spec.ports[name=grpc].name", "spec.ports[name=grpc].port", "spec.volumes[name=v].emptyDir", "spec.volumes[name=v].name"]);
        assert_eq!(changes[2].after, Some(json!({})));
    }

    #[test]
    fn secret_values_are_redacted_before_and_after() {
        use base64::Engine as _;
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let secret = |data: Value| json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "type": "Opaque", "data": data});
        let before = secret(json!({"password": b64("old-password-1"), "removed": b64("gone-value")}));
        let after = secret(json!({"password": b64("new-password-12"), "token": b64("fresh-token")}));
        let changes = field_changes(&before, &after);
        assert_eq!(paths(&changes), ["data.password", "data.removed", "data.token"]);
        assert_eq!(changes[0].before, Some(json!("(redacted: 14 bytes)")));
        assert_eq!(changes[0].after, Some(json!("(redacted: 15 bytes, changed)")));
        assert_eq!((changes[1].before.clone(), changes[1].after.clone()), (Some(json!("(redacted: 10 bytes)")), None));
        assert_eq!((changes[2].before.clone(), changes[2].after.clone()), (None, Some(json!("(redacted: 11 bytes)"))));
        let text = serde_json::to_string(&changes).unwrap();
        for secret in ["old-password-1", "new-password-12", "gone-value", "fresh-token"] {
            assert!(!text.contains(secret) && !text.contains(&b64(secret)), "{secret} leaked: {text}");
        }
        // stringData is text, not base64; a whole map added is redacted leaf by leaf.
        let mut with_string_data = secret(json!({}));
        with_string_data["stringData"] = json!({"key": "plain-value"});
        let changes = field_changes(&secret(json!({})), &with_string_data);
        assert_eq!(changes[0].path, "stringData.key");
        assert_eq!(changes[0].after, Some(json!("(redacted: 11 bytes)")));
        // Other fields of a Secret are not values.
        let mut relabelled = secret(json!({}));
        relabelled["type"] = json!("kubernetes.io/tls");
        assert_eq!(field_changes(&secret(json!({})), &relabelled)[0].after, Some(json!("kubernetes.io/tls")));
    }

    #[test]
    fn immutable_refusals_are_replacements() {
        assert!(is_immutable(422, "Deployment.apps \"d\" is invalid: spec.selector: Invalid value: v1.LabelSelector{}: field is immutable"));
        assert!(is_immutable(422, "PersistentVolumeClaim \"p\" is invalid: spec: Forbidden: spec is immutable after creation"));
        assert!(is_immutable(422, "ClusterRoleBinding.rbac.authorization.k8s.io \"b\" is invalid: roleRef: Invalid value: ...: cannot change roleRef"));
        assert!(!is_immutable(422, "Deployment.apps \"d\" is invalid: spec.replicas: Invalid value: -1"));
        assert!(!is_immutable(409, "field is immutable"));
    }

    #[test]
    fn text_groups_by_component_and_ends_with_the_summary() {
        let diff = AppDiff {
            change: vec![ObjectDiff {
                component: "web".into(),
                object: "Deployment.apps ns/web".into(),
                fields: vec![FieldChange { path: "spec.replicas".into(), before: Some(json!(1)), after: Some(json!(2)) }],
                reason: None,
            }],
            prune: vec![ObjectDiff { component: "old".into(), object: "ConfigMap ns/c".into(), fields: vec![], reason: None }],
            keep: vec![ObjectDiff { component: "old".into(), object: "PersistentVolumeClaim ns/p".into(), fields: vec![], reason: Some("kept: x".into()) }],
            unchanged: 3,
            ..AppDiff::default()
        };
        assert_eq!(
            diff.text(),
            "component old:\n  - prune ConfigMap ns/c\n  = keep PersistentVolumeClaim ns/p: kept: x\n\
             component web:\n  ~ change Deployment.apps ns/web\n      spec.replicas\n      - 1\n      + 2\n\
             1 to change, 1 to prune, 1 kept, 3 unchanged\n"
        );
        assert!(!diff.is_empty());
        let nothing = AppDiff { keep: diff.keep.clone(), unchanged: 3, ..AppDiff::default() };
        assert!(nothing.is_empty());
        assert_eq!(nothing.summary(), "no changes: 3 objects unchanged, 1 kept out of the config");
    }
}
