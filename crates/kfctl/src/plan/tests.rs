use super::*;
use serde_json::json;

fn co(component: &str, object: Value) -> ComponentObject {
    ComponentObject { component: component.to_owned(), object }
}

/// A small app touching every phase: a webhook server (Service + Deployment + mounted Secret), a
/// webhook intercepting Widgets and ConfigMaps in labelled namespaces, a CRD and its CR.
fn fixture() -> Vec<ComponentObject> {
    vec![
        co("widgets", json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w1", "namespace": "apps"}})),
        co("widgets", json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "plain", "namespace": "quiet"}})),
        co("widgets", json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "checked", "namespace": "apps"}})),
        co("hooks", json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": "widget-check"},
            "webhooks": [{"name": "check.example.com", "clientConfig": {"service": {"namespace": "hooks", "name": "checker"}},
                "namespaceSelector": {"matchLabels": {"checked": "yes"}},
                "rules": [{"operations": ["CREATE", "UPDATE"], "apiGroups": ["example.com", ""], "apiVersions": ["v1"], "resources": ["widgets", "configmaps"]}]}]})),
        co("hooks", json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "checker", "namespace": "hooks"},
            "spec": {"selector": {"matchLabels": {"app": "checker"}}, "template": {"metadata": {"labels": {"app": "checker"}},
                "spec": {"containers": [{"name": "c", "image": "x"}], "volumes": [{"name": "tls", "secret": {"secretName": "checker-tls"}}]}}}})),
        co("hooks", json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "other", "namespace": "hooks"},
            "spec": {"selector": {"matchLabels": {"app": "other"}}, "template": {"metadata": {"labels": {"app": "other"}}, "spec": {"containers": []}}}})),
        co("hooks", json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "checker-tls", "namespace": "hooks"}})),
        co("hooks", json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "checker", "namespace": "hooks"},
            "spec": {"selector": {"app": "checker"}, "ports": [{"port": 443}]}})),
        co("hooks", json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "checker", "namespace": "hooks"}})),
        co("hooks", json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "checker"}})),
        co("widgets", json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": "widgets.example.com"},
            "spec": {"group": "example.com", "scope": "Namespaced", "names": {"kind": "Widget", "plural": "widgets"}}})),
        co("base", json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "apps", "labels": {"checked": "yes"}}})),
        co("base", json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "quiet"}})),
        co("base", json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "hooks"}})),
    ]
}

fn names(plan: &Plan) -> Vec<(PhaseName, Vec<String>)> {
    plan.phases
        .iter()
        .map(|p| (p.name, p.objects.iter().map(|o| format!("{}/{}", o.reference.kind, o.reference.name)).collect()))
        .collect()
}

#[test]
fn phases_follow_dependencies() {
    let plan = Plan::build("kubeflow", &fixture(), &KindTable::builtin()).unwrap();
    let got = names(&plan);
    let want = vec![
        (PhaseName::Namespaces, vec!["Namespace/apps", "Namespace/quiet", "Namespace/hooks"]),
        (PhaseName::Crds, vec!["CustomResourceDefinition/widgets.example.com"]),
        (PhaseName::Rbac, vec!["ServiceAccount/checker", "ClusterRole/checker"]),
        (PhaseName::WebhookServers, vec!["Deployment/checker", "Secret/checker-tls", "Service/checker"]),
        (PhaseName::Webhooks, vec!["ValidatingWebhookConfiguration/widget-check"]),
        // the Widget and the ConfigMap in the labelled namespace wait for the webhook ...
        (PhaseName::Intercepted, vec!["Widget/w1", "ConfigMap/checked"]),
        // ... the ConfigMap in the unlabelled namespace and the unrelated Deployment do not.
        (PhaseName::Rest, vec!["ConfigMap/plain", "Deployment/other"]),
    ];
    let want: Vec<(PhaseName, Vec<String>)> =
        want.into_iter().map(|(p, v)| (p, v.into_iter().map(String::from).collect())).collect();
    assert_eq!(got, want);
}

#[test]
fn gates_name_what_they_wait_for() {
    let plan = Plan::build("kubeflow", &fixture(), &KindTable::builtin()).unwrap();
    // The webhook waits for its Service; its configuration and exactly the objects it intercepts wait for it.
    assert_eq!(plan.webhook_gates.len(), 1);
    let hook = &plan.webhook_gates[0];
    assert_eq!(hook.webhook, "check.example.com");
    assert_eq!(hook.service, ("hooks".to_owned(), "checker".to_owned()));
    assert_eq!(hook.configuration.to_string(), "ValidatingWebhookConfiguration.admissionregistration.k8s.io widget-check");
    let intercepted: Vec<String> = hook.intercepted.iter().map(ToString::to_string).collect();
    assert_eq!(intercepted, vec!["Widget.example.com apps/w1", "ConfigMap apps/checked"]);
}

#[test]
fn webhook_reached_by_url_has_no_gate() {
    let objects = vec![co("hooks", json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "external"},
        "webhooks": [{"name": "ext.example.com", "clientConfig": {"url": "https://hooks.example.com/mutate"},
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"]}]}]}))];
    let plan = Plan::build("kf", &objects, &KindTable::builtin()).unwrap();
    assert!(plan.webhook_gates.is_empty());
}

#[test]
fn webhook_in_unknown_namespace_is_assumed_to_intercept() {
    // "elsewhere" is not rendered, so the namespaceSelector cannot be evaluated: be safe.
    let mut objects = fixture();
    objects.push(co("widgets", json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "far", "namespace": "elsewhere"}})));
    let plan = Plan::build("kubeflow", &objects, &KindTable::builtin()).unwrap();
    let intercepted = plan.phases.iter().find(|p| p.name == PhaseName::Intercepted).unwrap();
    assert!(intercepted.objects.iter().any(|o| o.reference.name == "far"));
}

#[test]
fn labels_added_without_clobbering_upstream() {
    let objects = vec![co("pipelines", json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "c", "namespace": "n", "labels": {"app.kubernetes.io/part-of": "kubeflow-pipelines", "app": "ml-pipeline"}}}))];
    let plan = Plan::build("kf", &objects, &KindTable::builtin()).unwrap();
    let labels = &plan.phases[0].objects[0].object["metadata"]["labels"];
    assert_eq!(labels["app.kubernetes.io/part-of"], "kubeflow-pipelines");
    assert_eq!(labels["app"], "ml-pipeline");
    assert_eq!(labels[MANAGED_BY_LABEL], "kfctl");
    assert_eq!(labels[APP_LABEL], "kf");
    assert_eq!(labels[COMPONENT_LABEL], "pipelines");
    // a fresh object gets part-of kubeflow
    let objects = vec![co("x", json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}))];
    let plan = Plan::build("kf", &objects, &KindTable::builtin()).unwrap();
    assert_eq!(plan.phases[0].objects[0].object["metadata"]["labels"][PART_OF_LABEL], "kubeflow");
    // selectors and templates are left alone
    let objects = vec![co("x", json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "namespace": "n"},
        "spec": {"selector": {"matchLabels": {"app": "d"}}, "template": {"metadata": {"labels": {"app": "d"}}}}}))];
    let plan = Plan::build("kf", &objects, &KindTable::builtin()).unwrap();
    let o = &plan.phases[0].objects[0].object;
    assert_eq!(o["spec"]["selector"], json!({"matchLabels": {"app": "d"}}));
    assert_eq!(o["spec"]["template"]["metadata"]["labels"], json!({"app": "d"}));
}

#[test]
fn the_shared_application_crd_is_nobody_s_own() {
    let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "applications.app.k8s.io", "labels": {APP_LABEL: "other-app", COMPONENT_LABEL: "application"}},
        "spec": {"group": "app.k8s.io", "scope": "Namespaced", "names": {"kind": "Application", "plural": "applications"}}});
    let mut objects = fixture();
    objects.push(co("application", crd));
    let plan = Plan::build("kubeflow", &objects, &KindTable::builtin()).unwrap();
    let crds = plan.phases.iter().find(|p| p.name == PhaseName::Crds).unwrap();
    let shared = crds.objects.iter().find(|o| o.reference.name == "applications.app.k8s.io").unwrap();
    assert!(shared.reference.is_shared());
    // labelled as kfctl's, not as any app's or component's
    assert_eq!(shared.object["metadata"]["labels"], json!({MANAGED_BY_LABEL: "kfctl"}));
    // not in the inventory, so never pruned or deleted with one app
    let inventory = plan.inventory();
    assert!(inventory.iter().all(|e| !e.reference.is_shared()));
    assert!(inventory.iter().any(|e| e.reference.name == "widgets.example.com"));
    // an older inventory that still lists it does not prune it
    let mut old = inventory.clone();
    old.push(InventoryEntry { reference: shared.reference.clone(), component: "application".into(), phase: PhaseName::Crds });
    assert!(prune_set(&old, &inventory).is_empty());
}

#[test]
fn bad_objects_are_named() {
    let objects = vec![co("broken", json!({"apiVersion": "v1", "metadata": {"name": "x"}}))];
    let err = Plan::build("kf", &objects, &KindTable::builtin()).unwrap_err().to_string();
    assert!(err.contains("\"broken\"") && err.contains("kind"), "{err}");
    let dup = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "n"}});
    let objects = vec![co("a", dup.clone()), co("b", dup)];
    let err = Plan::build("kf", &objects, &KindTable::builtin()).unwrap_err().to_string();
    assert!(err.contains("ConfigMap n/x") && err.contains("\"a\"") && err.contains("\"b\""), "{err}");
}

#[test]
fn prune_set_is_inventory_minus_desired_in_reverse_phase_order() {
    let plan = Plan::build("kubeflow", &fixture(), &KindTable::builtin()).unwrap();
    let previous = plan.inventory();
    let without_widgets: Vec<ComponentObject> = fixture().into_iter().filter(|o| o.component != "widgets").collect();
    let desired = Plan::build("kubeflow", &without_widgets, &KindTable::builtin()).unwrap().inventory();
    let prune = prune_set(&previous, &desired);
    let got: Vec<String> = prune.iter().map(|e| format!("{}:{}", e.phase, e.reference.name)).collect();
    assert_eq!(got, vec!["rest:plain", "intercepted:checked", "intercepted:w1", "crds:widgets.example.com"]);
    assert!(prune_set(&previous, &previous).is_empty());
    // a version change alone is not a removal
    let mut bumped = previous.clone();
    bumped.iter_mut().for_each(|e| e.reference.version = "v2".into());
    assert!(prune_set(&previous, &bumped).is_empty());
}

#[test]
fn namespaces_follow_the_kind_scope() {
    // kustomize's namespace transformer gave a cluster-scoped custom resource (its CRD is in the
    // set) and a ClusterRole a namespace; a ConfigMap names none.
    let objects = vec![
        co("cm", json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": "clusterissuers.cert-manager.io"},
            "spec": {"group": "cert-manager.io", "scope": "Cluster", "names": {"kind": "ClusterIssuer", "plural": "clusterissuers"}}})),
        co("cm", json!({"apiVersion": "cert-manager.io/v1alpha2", "kind": "ClusterIssuer", "metadata": {"name": "self", "namespace": "cert-manager"}})),
        co("cm", json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "r", "namespace": "cert-manager"}})),
        co("user", json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "install-config"}})),
        // unknown custom kind: left as rendered
        co("user", json!({"apiVersion": "example.com/v1", "kind": "Gadget", "metadata": {"name": "g"}})),
    ];
    let plan = Plan::build("kf", &objects, &KindTable::builtin()).unwrap();
    let find = |name: &str| plan.phases.iter().flat_map(|p| &p.objects).find(|o| o.reference.name == name).unwrap().clone();
    for name in ["self", "r"] {
        let o = find(name);
        assert_eq!(o.reference.namespace, None, "{name}");
        assert!(o.object["metadata"].get("namespace").is_none(), "{name}: {}", o.object);
    }
    let cm = find("install-config");
    assert_eq!(cm.reference.namespace.as_deref(), Some(DEFAULT_OBJECT_NAMESPACE));
    assert_eq!(cm.object["metadata"]["namespace"], DEFAULT_OBJECT_NAMESPACE);
    assert_eq!(find("g").reference.namespace, None);
}
