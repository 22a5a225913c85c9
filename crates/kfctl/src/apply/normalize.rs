//! Writing objects the way the API server stores them, so that what kfctl applies is what it
//! later reads back: a second apply then finds nothing to change, and kfctl never fights a
//! controller over a field the API says that controller owns.

use serde_json::Value;

/// Normalise one object before it is applied (see the functions below).
pub fn server_equivalent(object: &mut Value) {
    let group = object.get("apiVersion").and_then(Value::as_str).map(|v| v.split_once('/').map_or("", |(g, _)| g).to_owned());
    let kind = object.get("kind").and_then(Value::as_str).map(str::to_owned);
    if let (Some("rbac.authorization.k8s.io"), Some("ClusterRole")) = (group.as_deref(), kind.as_deref()) {
        aggregated_rules_left_to_controller(object);
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
