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
    contained_at(want, have, false)
}

/// Keys whose values are resource quantities (or maps of them), which the server stores in
/// canonical form: `2000m` comes back as `2`, `1024Mi` as `1Gi`.
const QUANTITY_KEYS: &[&str] = &["limits", "requests", "hard", "capacity", "overhead", "sizeLimit"];

fn contained_at(want: &Value, have: Option<&Value>, quantities: bool) -> bool {
    match (want, have) {
        // The server drops empty and zero values of `omitempty` fields (`value: ""` of an env
        // var, `apiGroup: ""`, `preserveUnknownFields: false`, `rules: []`), or returns null.
        (w, None | Some(Value::Null)) if is_zero(w) => true,
        (_, None) => false,
        (Value::Object(w), Some(Value::Object(h))) => {
            w.iter().all(|(k, v)| contained_at(v, h.get(k), quantities || QUANTITY_KEYS.contains(&k.as_str())))
        }
        (Value::Array(w), Some(Value::Array(h))) => {
            w.len() == h.len() && w.iter().zip(h).all(|(a, b)| contained_at(a, Some(b), false))
        }
        (Value::Number(a), Some(Value::Number(b))) => a == b || a.as_f64() == b.as_f64(),
        (Value::String(a), Some(Value::String(b))) if quantities && a != b => {
            matches!((quantity(a), quantity(b)), (Some(x), Some(y)) if x.same_as(&y))
        }
        (w, Some(h)) => w == h,
    }
}

/// Null, "", false, 0, {} and []: what Go's `omitempty` leaves out.
fn is_zero(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

/// A resource quantity as an exact fraction `numerator / denominator`.
#[derive(Debug, Clone, Copy)]
struct Quantity {
    numerator: i128,
    denominator: i128,
}

impl Quantity {
    fn same_as(&self, other: &Quantity) -> bool {
        match (self.numerator.checked_mul(other.denominator), other.numerator.checked_mul(self.denominator)) {
            (Some(a), Some(b)) => a == b,
            _ => false,
        }
    }
}

/// Parse a Kubernetes quantity (`1.5`, `500m`, `1Gi`, `2e3`); None when it is not one.
fn quantity(text: &str) -> Option<Quantity> {
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-')).unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let (sign, number) = match number.strip_prefix('-') {
        Some(rest) => (-1, rest),
        None => (1, number.strip_prefix('+').unwrap_or(number)),
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() || !whole.chars().chain(fraction.chars()).all(|c| c.is_ascii_digit()) {
        return None;
    }
    if fraction.len() > 18 || whole.len() > 18 {
        return None;
    }
    let digits: i128 = format!("{whole}{fraction}").parse().ok()?;
    let mut q = Quantity { numerator: sign * digits, denominator: 10i128.pow(fraction.len() as u32) };
    let pow10 = |e: u32| 10i128.checked_pow(e);
    let (mul, div): (i128, i128) = match suffix {
        "" => (1, 1),
        "n" => (1, pow10(9)?),
        "u" => (1, pow10(6)?),
        "m" => (1, 1000),
        "k" => (1000, 1),
        "M" => (pow10(6)?, 1),
        "G" => (pow10(9)?, 1),
        "T" => (pow10(12)?, 1),
        "P" => (pow10(15)?, 1),
        "E" => (pow10(18)?, 1),
        "Ki" => (1 << 10, 1),
        "Mi" => (1 << 20, 1),
        "Gi" => (1 << 30, 1),
        "Ti" => (1 << 40, 1),
        "Pi" => (1 << 50, 1),
        "Ei" => (1 << 60, 1),
        exponent => {
            let e = exponent.strip_prefix(['e', 'E'])?;
            let (negative, e) = match e.strip_prefix('-') {
                Some(rest) => (true, rest),
                None => (false, e.strip_prefix('+').unwrap_or(e)),
            };
            let e: u32 = e.parse().ok().filter(|e| *e <= 18)?;
            if negative { (1, pow10(e)?) } else { (pow10(e)?, 1) }
        }
    };
    q.numerator = q.numerator.checked_mul(mul)?;
    q.denominator = q.denominator.checked_mul(div)?;
    Some(q)
}

/// Whether kfctl's last apply set fields that `desired` no longer has (they must be removed, so
/// the object has to be applied). Lists are treated as one field: their contents were compared
/// already, element by element. No kfctl apply entry at all means kfctl must take ownership.
fn owns_fields_beyond(live: &Map<String, Value>, desired: &Map<String, Value>) -> bool {
    let managed = live.get("metadata").and_then(|m| m.get("managedFields")).and_then(Value::as_array);
    let Some(entry) = managed.into_iter().flatten().find(|e| {
        e.get("manager").and_then(Value::as_str) == Some(crate::plan::FIELD_MANAGER)
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
    fn omitted_zero_values_are_no_change() {
        // What the server leaves out or returns as null.
        assert!(contained(&json!({"name": "PREFIX", "value": ""}), Some(&json!({"name": "PREFIX"}))));
        assert!(contained(&json!({"preserveUnknownFields": false}), Some(&json!({}))));
        assert!(contained(&json!({"rules": []}), Some(&json!({"rules": null}))));
        assert!(contained(&json!({"subjects": [{"kind": "ServiceAccount", "apiGroup": ""}]}), Some(&json!({"subjects": [{"kind": "ServiceAccount"}]}))));
        // A real value is still a change.
        assert!(!contained(&json!({"value": "x"}), Some(&json!({}))));
        assert!(!contained(&json!({"value": ""}), Some(&json!({"value": "x"}))));
    }

    #[test]
    fn quantities_compare_by_value_where_they_are_quantities() {
        let resources = |cpu: &str, memory: &str| json!({"resources": {"limits": {"cpu": cpu, "memory": memory}, "requests": {"cpu": cpu}}});
        assert!(contained(&resources("2000m", "1024Mi"), Some(&resources("2", "1Gi"))));
        assert!(contained(&resources("0.5", "1e3"), Some(&resources("500m", "1k"))));
        assert!(!contained(&resources("2100m", "1Gi"), Some(&resources("2", "1Gi"))));
        assert!(!contained(&resources("2", "1G"), Some(&resources("2", "1Gi"))));
        // Elsewhere a string is a string.
        assert!(!contained(&json!({"env": [{"name": "N", "value": "1000m"}]}), Some(&json!({"env": [{"name": "N", "value": "1"}]}))));
        assert!(quantity("1.5Gi").is_some() && quantity("abc").is_none() && quantity("1.2.3").is_none() && quantity("").is_none());
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
