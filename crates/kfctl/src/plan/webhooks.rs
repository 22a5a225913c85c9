//! Admission webhooks in the rendered set: which Service serves each, and which objects each one
//! intercepts, by the same rules the API server applies when it decides whether to call it.

use serde_json::{Map, Value};

use super::selector::label_selector_matches;

/// One webhook of a Validating/MutatingWebhookConfiguration.
#[derive(Debug, Clone, PartialEq)]
pub struct Webhook {
    /// `Kind/name` of the configuration it belongs to, for messages.
    pub configuration: String,
    pub name: String,
    /// The Service it calls (namespace, name); `None` for a webhook reached by URL.
    pub service: Option<(String, String)>,
    rules: Vec<Rule>,
    /// `matchPolicy: Exact` only matches the listed versions; `Equivalent` (the v1 default) also
    /// matches the same resource through other versions of its group.
    exact_versions: bool,
    namespace_selector: Option<Value>,
    object_selector: Option<Value>,
}

#[derive(Debug, Clone, PartialEq)]
struct Rule {
    operations: Vec<String>,
    api_groups: Vec<String>,
    api_versions: Vec<String>,
    resources: Vec<String>,
    scope: String,
}

/// What the API server knows about an object when it asks "does this webhook apply?".
#[derive(Debug, Clone)]
pub struct AdmissionTarget<'a> {
    pub group: &'a str,
    pub version: &'a str,
    /// The resource (plural), e.g. `deployments`.
    pub resource: &'a str,
    pub namespaced: bool,
    /// The object's own labels.
    pub labels: &'a Map<String, Value>,
    /// Labels of the object's namespace when known (for a Namespace: its own labels). `None`
    /// means unknown: the namespace is not part of the rendered set, so the selector cannot be
    /// evaluated and the webhook is assumed to apply.
    pub namespace_labels: Option<&'a Map<String, Value>>,
    pub is_namespace: bool,
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default()
}

impl Webhook {
    /// The webhooks of one configuration object; empty for anything else.
    pub fn from_configuration(config: &Value) -> Vec<Webhook> {
        let kind = config.get("kind").and_then(Value::as_str).unwrap_or_default();
        if kind != "ValidatingWebhookConfiguration" && kind != "MutatingWebhookConfiguration" {
            return Vec::new();
        }
        let config_name = config.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
        let Some(hooks) = config.get("webhooks").and_then(Value::as_array) else { return Vec::new() };
        hooks
            .iter()
            .map(|hook| {
                let service = hook.pointer("/clientConfig/service").map(|svc| {
                    let field = |k: &str| svc.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
                    (field("namespace"), field("name"))
                });
                let rules = hook
                    .get("rules")
                    .and_then(Value::as_array)
                    .map(|rules| {
                        rules
                            .iter()
                            .map(|r| Rule {
                                operations: strings(r.get("operations")),
                                api_groups: strings(r.get("apiGroups")),
                                api_versions: strings(r.get("apiVersions")),
                                resources: strings(r.get("resources")),
                                scope: r.get("scope").and_then(Value::as_str).unwrap_or("*").to_owned(),
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                Webhook {
                    configuration: format!("{kind}/{config_name}"),
                    name: hook.get("name").and_then(Value::as_str).unwrap_or_default().to_owned(),
                    service,
                    rules,
                    exact_versions: hook.get("matchPolicy").and_then(Value::as_str) == Some("Exact"),
                    namespace_selector: hook.get("namespaceSelector").cloned(),
                    object_selector: hook.get("objectSelector").cloned(),
                }
            })
            .collect()
    }

    /// Whether applying `target` (a create or an update) would call this webhook.
    pub fn intercepts(&self, target: &AdmissionTarget) -> bool {
        let rule_matches = self.rules.iter().any(|rule| rule.matches(target, self.exact_versions));
        if !rule_matches {
            return false;
        }
        if !label_selector_matches(self.object_selector.as_ref(), target.labels) {
            return false;
        }
        // The namespaceSelector applies to namespaced objects (by their namespace's labels) and to
        // Namespace objects themselves; other cluster-scoped objects are never filtered by it.
        if target.namespaced || target.is_namespace {
            match target.namespace_labels {
                Some(ns_labels) => label_selector_matches(self.namespace_selector.as_ref(), ns_labels),
                None => true,
            }
        } else {
            true
        }
    }
}

impl Rule {
    fn matches(&self, target: &AdmissionTarget, exact_versions: bool) -> bool {
        let any_or = |list: &[String], want: &str| list.iter().any(|v| v == "*" || v == want);
        let operation = self.operations.iter().any(|op| op == "*" || op == "CREATE" || op == "UPDATE");
        let group = any_or(&self.api_groups, target.group);
        let version = !exact_versions || any_or(&self.api_versions, target.version);
        // kfctl writes the main resource, never a subresource: "pods/*" and "*/status" do not
        // match, "*" and "*/*" do.
        let resource = self.resources.iter().any(|r| r == "*" || r == "*/*" || r == target.resource);
        let scope = match self.scope.as_str() {
            "Cluster" => !target.namespaced,
            "Namespaced" => target.namespaced,
            _ => true,
        };
        operation && group && version && resource && scope
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn hook(rules: Value, extra: Value) -> Webhook {
        let mut wh = json!({"name": "h.example.com", "clientConfig": {"service": {"namespace": "sys", "name": "hooks"}}, "rules": rules});
        for (k, v) in extra.as_object().unwrap() {
            wh[k] = v.clone();
        }
        let config = json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
                            "metadata": {"name": "cfg"}, "webhooks": [wh]});
        Webhook::from_configuration(&config).remove(0)
    }

    fn target<'a>(group: &'a str, version: &'a str, resource: &'a str, namespaced: bool, labels: &'a Map<String, Value>,
                  ns_labels: Option<&'a Map<String, Value>>) -> AdmissionTarget<'a> {
        AdmissionTarget { group, version, resource, namespaced, labels, namespace_labels: ns_labels, is_namespace: resource == "namespaces" }
    }

    #[test]
    fn parses_service_reference() {
        let h = hook(json!([]), json!({}));
        assert_eq!(h.service, Some(("sys".into(), "hooks".into())));
        assert_eq!(h.configuration, "ValidatingWebhookConfiguration/cfg");
    }

    #[test]
    fn rule_matching_table() {
        let none = Map::new();
        let rule = |ops: Value, groups: Value, versions: Value, resources: Value, scope: &str| {
            json!([{"operations": ops, "apiGroups": groups, "apiVersions": versions, "resources": resources, "scope": scope}])
        };
        let exact = json!({"matchPolicy": "Exact"});
        let cases: Vec<(Value, Value, (&str, &str, &str, bool), bool)> = vec![
            // exact resource
            (rule(json!(["CREATE"]), json!(["apps"]), json!(["v1"]), json!(["deployments"]), "*"), exact.clone(), ("apps", "v1", "deployments", true), true),
            (rule(json!(["CREATE"]), json!(["apps"]), json!(["v1"]), json!(["deployments"]), "*"), exact.clone(), ("apps", "v1", "statefulsets", true), false),
            // DELETE/CONNECT only never matter for apply
            (rule(json!(["DELETE", "CONNECT"]), json!(["*"]), json!(["*"]), json!(["*"]), "*"), exact.clone(), ("", "v1", "pods", true), false),
            (rule(json!(["*"]), json!(["*"]), json!(["*"]), json!(["*"]), "*"), exact.clone(), ("", "v1", "configmaps", true), true),
            (rule(json!(["UPDATE"]), json!([""]), json!(["v1"]), json!(["*/*"]), "*"), exact.clone(), ("", "v1", "services", true), true),
            // subresource-only rules do not match the main resource
            (rule(json!(["CREATE"]), json!([""]), json!(["v1"]), json!(["pods/*"]), "*"), exact.clone(), ("", "v1", "pods", true), false),
            (rule(json!(["CREATE"]), json!(["*"]), json!(["*"]), json!(["*/status"]), "*"), exact.clone(), ("", "v1", "pods", true), false),
            // group mismatch, wildcard group
            (rule(json!(["CREATE"]), json!(["cert-manager.io"]), json!(["*"]), json!(["*"]), "*"), exact.clone(), ("acme.cert-manager.io", "v1", "orders", true), false),
            (rule(json!(["CREATE"]), json!(["*"]), json!(["v1"]), json!(["certificates"]), "*"), exact.clone(), ("cert-manager.io", "v1", "certificates", true), true),
            // versions: Exact vs Equivalent (the default)
            (rule(json!(["CREATE"]), json!(["apps"]), json!(["v1beta1"]), json!(["deployments"]), "*"), exact.clone(), ("apps", "v1", "deployments", true), false),
            (rule(json!(["CREATE"]), json!(["apps"]), json!(["v1beta1"]), json!(["deployments"]), "*"), json!({}), ("apps", "v1", "deployments", true), true),
            // scope
            (rule(json!(["CREATE"]), json!(["*"]), json!(["*"]), json!(["*"]), "Cluster"), exact.clone(), ("rbac.authorization.k8s.io", "v1", "clusterroles", false), true),
            (rule(json!(["CREATE"]), json!(["*"]), json!(["*"]), json!(["*"]), "Cluster"), exact.clone(), ("rbac.authorization.k8s.io", "v1", "roles", true), false),
            (rule(json!(["CREATE"]), json!(["*"]), json!(["*"]), json!(["*"]), "Namespaced"), exact.clone(), ("", "v1", "namespaces", false), false),
        ];
        for (i, (rules, extra, (g, v, r, namespaced), want)) in cases.into_iter().enumerate() {
            let h = hook(rules, extra);
            assert_eq!(h.intercepts(&target(g, v, r, namespaced, &none, None)), want, "case {i}: {g}/{v} {r}");
        }
    }

    #[test]
    fn selectors_limit_interception() {
        let rules = json!([{"operations": ["CREATE", "UPDATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods", "configmaps", "namespaces"]}]);
        let h = hook(rules, json!({
            "namespaceSelector": {"matchLabels": {"injection": "enabled"}},
            "objectSelector": {"matchExpressions": [{"key": "skip", "operator": "DoesNotExist"}]}
        }));
        let plain = Map::new();
        let skip: Map<String, Value> = json!({"skip": "yes"}).as_object().unwrap().clone();
        let enabled: Map<String, Value> = json!({"injection": "enabled"}).as_object().unwrap().clone();
        // namespace labels known and selected
        assert!(h.intercepts(&target("", "v1", "pods", true, &plain, Some(&enabled))));
        // namespace labels known and not selected
        assert!(!h.intercepts(&target("", "v1", "pods", true, &plain, Some(&plain))));
        // namespace unknown: assume the webhook applies
        assert!(h.intercepts(&target("", "v1", "configmaps", true, &plain, None)));
        // object selector excludes
        assert!(!h.intercepts(&target("", "v1", "pods", true, &skip, Some(&enabled))));
        // a Namespace object is matched by its own labels
        assert!(h.intercepts(&target("", "v1", "namespaces", false, &enabled, Some(&enabled))));
        assert!(!h.intercepts(&target("", "v1", "namespaces", false, &plain, Some(&plain))));
    }
}
