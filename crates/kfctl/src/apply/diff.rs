//! Deciding, before sending anything, whether a live object already is what kfctl would apply.
//!
//! A second `kfctl apply` with nothing changed must write nothing. Server-side apply of an
//! identical object is a no-op, but it still costs a request per object; comparing against one
//! list per kind is what makes a no-op apply of the whole Kubeflow set take well under a second.
//! The comparison is conservative: anything it cannot prove equal is applied (and then is a
//! server-side no-op if the difference was only server-side normalisation).

use serde_json::{Map, Value};

/// Whether applying `desired` over `live` would change nothing kfctl owns.
pub fn is_unchanged(desired: &Value, live: &Value) -> bool {
    let (Some(desired), Some(live)) = (desired.as_object(), live.as_object()) else { return false };
    for (key, want) in desired {
        let have = live.get(key);
        let same = match key.as_str() {
            // Written through the status subresource, never by apply.
            "status" => true,
            "apiVersion" | "kind" => true,
            "metadata" => metadata_contained(want, have),
            // A Secret's stringData is write-only: the server stores it base64-encoded in data.
            "stringData" if is_secret(desired) => string_data_contained(want, live.get("data")),
            _ => contained(want, have),
        };
        if !same {
            return false;
        }
    }
    !owns_fields_beyond(live, desired)
}

fn is_secret(object: &Map<String, Value>) -> bool {
    object.get("apiVersion").and_then(Value::as_str) == Some("v1") && object.get("kind").and_then(Value::as_str) == Some("Secret")
}

/// Every `stringData` entry is in the live `data`, base64-encoded as the server stores it.
fn string_data_contained(want: &Value, live_data: Option<&Value>) -> bool {
    use base64::Engine as _;
    let Some(want) = want.as_object() else { return want.is_null() };
    want.iter().all(|(key, value)| {
        let Some(text) = value.as_str() else { return false };
        let encoded = base64::engine::general_purpose::STANDARD.encode(text.as_bytes());
        live_data.and_then(|d| d.get(key)).and_then(Value::as_str) == Some(encoded.as_str())
    })
}

fn metadata_contained(want: &Value, have: Option<&Value>) -> bool {
    let Some(want) = want.as_object() else { return true };
    ["labels", "annotations"].iter().all(|k| match want.get(*k) {
        Some(w) => contained(w, have.and_then(|h| h.get(*k))),
        None => true,
    })
}

/// `want` is contained in `have`: maps by key (extra live keys are defaults or other managers'),
/// lists element by element with the same length, scalars equal (numbers by value).
fn contained(want: &Value, have: Option<&Value>) -> bool {
    match (want, have) {
        // Empty values are dropped by the server: absent live is the same thing.
        (Value::Null, None | Some(Value::Null)) => true,
        (Value::Object(w), None) if w.is_empty() => true,
        (Value::Array(w), None) if w.is_empty() => true,
        (_, None) => false,
        (Value::Object(w), Some(Value::Object(h))) => w.iter().all(|(k, v)| contained(v, h.get(k))),
        (Value::Array(w), Some(Value::Array(h))) => w.len() == h.len() && w.iter().zip(h).all(|(a, b)| contained(a, Some(b))),
        (Value::Number(a), Some(Value::Number(b))) => a == b || a.as_f64() == b.as_f64(),
        (w, Some(h)) => w == h,
    }
}

/// Whether kfctl's last apply set fields that `desired` no longer has (they must be removed, so
/// the object has to be applied). Lists are treated as one field: their contents were compared
/// already, element by element. No kfctl apply entry at all means kfctl must take ownership.
fn owns_fields_beyond(live: &Map<String, Value>, desired: &Map<String, Value>) -> bool {
    let managed = live.get("metadata").and_then(|m| m.get("managedFields")).and_then(Value::as_array);
    let Some(entry) = managed.into_iter().flatten().find(|e| {
        e.get("manager").and_then(Value::as_str) == Some(super::FIELD_MANAGER)
            && e.get("operation").and_then(Value::as_str) == Some("Apply")
    }) else {
        return true;
    };
    let Some(fields) = entry.get("fieldsV1") else { return false };
    fields_beyond(fields, &Value::Object(desired.clone()))
}

fn fields_beyond(fields: &Value, desired: &Value) -> bool {
    let Some(fields) = fields.as_object() else { return false };
    let Some(desired) = desired.as_object() else {
        // kfctl owned sub-fields of something that is now a scalar or a list: a change.
        return !desired.is_array() && fields.keys().any(|k| k.starts_with("f:"));
    };
    fields.iter().any(|(key, sub)| {
        let Some(name) = key.strip_prefix("f:") else { return false };
        if name == "status" {
            return false;
        }
        match desired.get(name) {
            None => true,
            Some(Value::Array(_)) => false,
            Some(child) => fields_beyond(sub, child),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn live(extra_spec: Value, fields: Value) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "d", "namespace": "n", "resourceVersion": "7", "uid": "u",
                "labels": {"app": "d", "pod-template-hash": "x"},
                "managedFields": [{"manager": "kfctl", "operation": "Apply", "fieldsV1": fields}]},
            "spec": extra_spec, "status": {"replicas": 1}})
    }

    fn desired() -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "d", "namespace": "n", "labels": {"app": "d"}, "creationTimestamp": null},
            "spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "c", "ports": [{"containerPort": 80, "protocol": "TCP"}]}]}},
                "strategy": {}},
            "status": {}})
    }

    fn owned() -> Value {
        json!({"f:metadata": {"f:labels": {"f:app": {}}}, "f:spec": {"f:replicas": {}, "f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"c\"}": {}}}}}})
    }

    fn spec_live() -> Value {
        json!({"replicas": 1, "revisionHistoryLimit": 10,
            "template": {"spec": {"containers": [{"name": "c", "imagePullPolicy": "Always", "ports": [{"containerPort": 80, "protocol": "TCP"}]}]}}})
    }

    #[test]
    fn defaults_and_other_fields_do_not_count_as_changes() {
        assert!(is_unchanged(&desired(), &live(spec_live(), owned())));
    }

    #[test]
    fn changed_values_count() {
        let mut d = desired();
        d["spec"]["replicas"] = json!(3);
        assert!(!is_unchanged(&d, &live(spec_live(), owned())));
        let mut d = desired();
        d["metadata"]["labels"]["new"] = json!("x");
        assert!(!is_unchanged(&d, &live(spec_live(), owned())));
        let mut d = desired();
        d["spec"]["template"]["spec"]["containers"].as_array_mut().unwrap().push(json!({"name": "sidecar"}));
        assert!(!is_unchanged(&d, &live(spec_live(), owned())));
    }

    #[test]
    fn a_field_kfctl_set_before_and_dropped_now_is_a_change() {
        let mut fields = owned();
        fields["f:spec"]["f:paused"] = json!({});
        assert!(!is_unchanged(&desired(), &live(spec_live(), fields)));
    }

    #[test]
    fn object_not_applied_by_kfctl_is_a_change() {
        let mut l = live(spec_live(), owned());
        l["metadata"]["managedFields"][0]["manager"] = json!("kubectl");
        assert!(!is_unchanged(&desired(), &l));
    }

    #[test]
    fn secret_string_data_compares_with_the_stored_data() {
        let desired = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "n"},
            "stringData": {"password": "12341234"}, "type": "Opaque"});
        let live = |data: Value| json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "s", "namespace": "n", "managedFields": [{"manager": "kfctl", "operation": "Apply",
                "fieldsV1": {"f:stringData": {"f:password": {}}, "f:type": {}}}]},
            "data": data, "type": "Opaque"});
        assert!(is_unchanged(&desired, &live(json!({"password": "MTIzNDEyMzQ="}))));
        assert!(!is_unchanged(&desired, &live(json!({"password": "b3RoZXI="}))));
        assert!(!is_unchanged(&desired, &live(json!({}))));
    }

    #[test]
    fn numbers_compare_by_value() {
        assert!(contained(&json!(1), Some(&json!(1.0))));
        assert!(!contained(&json!("1"), Some(&json!(1))));
    }
}
