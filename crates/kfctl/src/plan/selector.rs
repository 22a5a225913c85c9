//! Evaluating Kubernetes label selectors against a label map, as the API server does.

use serde_json::{Map, Value};

/// Whether `selector` (a metav1.LabelSelector as JSON) selects an object with `labels`.
/// An absent or empty selector selects everything. Unknown operators select nothing, like the
/// API server, which would have rejected them.
pub fn label_selector_matches(selector: Option<&Value>, labels: &Map<String, Value>) -> bool {
    let Some(selector) = selector.and_then(Value::as_object) else { return true };
    let label = |key: &str| labels.get(key).and_then(Value::as_str);
    if let Some(match_labels) = selector.get("matchLabels").and_then(Value::as_object) {
        for (key, want) in match_labels {
            if label(key) != want.as_str() {
                return false;
            }
        }
    }
    let Some(expressions) = selector.get("matchExpressions").and_then(Value::as_array) else { return true };
    expressions.iter().all(|expr| {
        let key = expr.get("key").and_then(Value::as_str).unwrap_or_default();
        let values: Vec<&str> = expr
            .get("values")
            .and_then(Value::as_array)
            .map(|v| v.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        match expr.get("operator").and_then(Value::as_str) {
            Some("In") => label(key).is_some_and(|v| values.contains(&v)),
            Some("NotIn") => label(key).is_none_or(|v| !values.contains(&v)),
            Some("Exists") => label(key).is_some(),
            Some("DoesNotExist") => label(key).is_none(),
            _ => false,
        }
    })
}

/// Whether a plain map selector (a Service's `spec.selector`) selects `labels`. An empty map
/// selects nothing here: a Service without a selector has no workloads behind it.
pub fn map_selector_matches(selector: &Map<String, Value>, labels: &Map<String, Value>) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn selectors_follow_api_server_semantics() {
        let l = labels(json!({"app": "web", "tier": "front"}));
        let cases = [
            (json!(null), true),
            (json!({}), true),
            (json!({"matchLabels": {"app": "web"}}), true),
            (json!({"matchLabels": {"app": "db"}}), false),
            (json!({"matchExpressions": [{"key": "app", "operator": "In", "values": ["web", "x"]}]}), true),
            (json!({"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["web"]}]}), false),
            (json!({"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]}]}), true),
            (json!({"matchExpressions": [{"key": "tier", "operator": "Exists"}]}), true),
            (json!({"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}), false),
            (json!({"matchExpressions": [{"key": "control-plane", "operator": "DoesNotExist"}]}), true),
            (json!({"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "tier", "operator": "In", "values": ["back"]}]}), false),
        ];
        for (selector, want) in cases {
            let sel = (!selector.is_null()).then_some(&selector);
            assert_eq!(label_selector_matches(sel, &l), want, "selector {selector}");
        }
    }

    #[test]
    fn empty_service_selector_selects_nothing() {
        let l = labels(json!({"app": "web"}));
        assert!(!map_selector_matches(&Map::new(), &l));
        assert!(map_selector_matches(&labels(json!({"app": "web"})), &l));
        assert!(!map_selector_matches(&labels(json!({"app": "web", "v": "2"})), &l));
    }
}
