//! Writing objects the way the API server stores them, so that what kfctl applies is what it
//! later reads back: a second apply then finds nothing to change, and kfctl never fights a
//! controller over a field the API says that controller owns.

use base64::Engine as _;
use serde_json::{Map, Value};

/// Normalise one object before it is applied (see the functions below).
pub fn server_equivalent(object: &mut Value) {
    let group = object.get("apiVersion").and_then(Value::as_str).map(|v| v.split_once('/').map_or("", |(g, _)| g).to_owned());
    let kind = object.get("kind").and_then(Value::as_str).map(str::to_owned);
    match (group.as_deref(), kind.as_deref()) {
        (Some(""), Some("Secret")) => secret_string_data_into_data(object),
        (Some("rbac.authorization.k8s.io"), Some("ClusterRole")) => aggregated_rules_left_to_controller(object),
        _ => {}
    }
}

/// A Secret's `stringData` is write-only: the API server merges it into `data` (base64, taking
/// precedence) and stores no `stringData`. Sending `data` instead is the same write, and it can be
/// compared with what the server returns.
fn secret_string_data_into_data(object: &mut Value) {
    let Some(obj) = object.as_object_mut() else { return };
    let Some(Value::Object(string_data)) = obj.remove("stringData") else { return };
    let data = obj.entry("data").or_insert_with(|| Value::Object(Map::new()));
    if !data.is_object() {
        *data = Value::Object(Map::new());
    }
    let data = data.as_object_mut().expect("data is an object");
    for (key, value) in string_data {
        let text = match value {
            Value::String(s) => s,
            other => other.to_string(),
        };
        data.insert(key, Value::from(base64::engine::general_purpose::STANDARD.encode(text)));
    }
}

/// A ClusterRole with an `aggregationRule` gets its `rules` from the cluster-role aggregation
/// controller ("rules are controller-managed", says the API). Applying the manifest's `rules: []`
/// would empty them on every apply (the permissions flap until the controller refills them) and
/// make every apply a change.
fn aggregated_rules_left_to_controller(object: &mut Value) {
    let Some(obj) = object.as_object_mut() else { return };
    if obj.get("aggregationRule").is_some_and(|r| !r.is_null()) {
        obj.remove("rules");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn string_data_becomes_base64_data_and_wins() {
        let mut secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
            "data": {"kept": "eA==", "password": "b2xk"}, "stringData": {"password": "", "user": "root"}});
        server_equivalent(&mut secret);
        assert_eq!(secret, json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
            "data": {"kept": "eA==", "password": "", "user": "cm9vdA=="}}));
    }

    #[test]
    fn aggregated_cluster_roles_leave_rules_alone() {
        let mut aggregated = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "a"},
            "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"x": "true"}}]}, "rules": []});
        server_equivalent(&mut aggregated);
        assert!(aggregated.get("rules").is_none());
        let plain = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "p"}, "rules": []});
        let mut same = plain.clone();
        server_equivalent(&mut same);
        assert_eq!(same, plain);
    }
}
