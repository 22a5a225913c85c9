//! One test per way an image is named: input objects and rules, what `find` lists, what
//! `rewrite` makes of them.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::*;

fn rules(yaml: &str) -> Vec<ImageRule> {
    let rules: Vec<ImageRule> = serde_saphyr::from_str(yaml).unwrap();
    for rule in &rules {
        rule.check().unwrap_or_else(|e| panic!("{}: {e}", rule.id));
    }
    rules
}

fn places(found: &[ImageUse]) -> Vec<(String, String, String)> {
    let mut out: Vec<_> = found
        .iter()
        .flat_map(|i| {
            i.locations
                .iter()
                .map(|l| (i.image.clone(), l.field.clone(), l.rule.clone()))
        })
        .collect();
    out.sort();
    out
}

fn to(name: &str, digest: &str) -> Target {
    Target {
        new_name: Some(name.into()),
        new_tag: None,
        digest: Some(digest.into()),
    }
}

const DIGEST: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

fn deployment(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": "kubeflow"}, "spec": {"template": {"spec": spec}}})
}

#[test]
fn pod_templates_anywhere_are_found_and_rewritten() {
    let objects = vec![
        deployment(
            "web",
            json!({"initContainers": [{"name": "init", "image": "busybox:1.28"}], "containers": [{"name": "web", "image": "gcr.io/a/web:1"}]}),
        ),
        json!({"apiVersion": "trainer.kubeflow.org/v1alpha1", "kind": "ClusterTrainingRuntime", "metadata": {"name": "torch"},
               "spec": {"template": {"spec": {"replicatedJobs": [{"name": "node", "template": {"spec": {"template": {"spec": {
                   "containers": [{"name": "node", "image": "pytorch/pytorch:2.7"}]}}}}}]}}}}),
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"ephemeralContainers": [{"name": "debug", "image": "gcr.io/a/web:1"}]}}),
    ];
    let found = find(&objects, &[]);
    assert_eq!(
        places(&found),
        vec![
            ("busybox:1.28".into(), "spec.template.spec.initContainers[name=init].image".into(), POD_TEMPLATE.into()),
            ("gcr.io/a/web:1".into(), "spec.ephemeralContainers[name=debug].image".into(), POD_TEMPLATE.into()),
            ("gcr.io/a/web:1".into(), "spec.template.spec.containers[name=web].image".into(), POD_TEMPLATE.into()),
            (
                "pytorch/pytorch:2.7".into(),
                "spec.template.spec.replicatedJobs[name=node].template.spec.template.spec.containers[name=node].image".into(),
                POD_TEMPLATE.into()
            ),
        ]
    );
    let web = found.iter().find(|i| i.image == "gcr.io/a/web:1").unwrap();
    assert_eq!(
        web.reference.as_ref().unwrap().registry.as_deref(),
        Some("gcr.io")
    );
    assert_eq!(
        (
            web.locations[0].kind.as_str(),
            web.locations[0].namespace.as_str(),
            web.locations[1].namespace.as_str()
        ),
        ("Deployment", "kubeflow", "")
    );

    let mut edited = objects.clone();
    let overrides = BTreeMap::from([(
        "gcr.io/a/web:1".to_string(),
        to("reg.local:5000/a/web", DIGEST),
    )]);
    let done = rewrite(edited.iter_mut(), &[], &overrides);
    assert_eq!(
        done.images["gcr.io/a/web:1"],
        (format!("reg.local:5000/a/web@{DIGEST}"), 2)
    );
    assert_eq!(
        edited[0]
            .pointer("/spec/template/spec/containers/0/image")
            .unwrap(),
        &json!(format!("reg.local:5000/a/web@{DIGEST}"))
    );
    assert_eq!(
        edited[0]
            .pointer("/spec/template/spec/initContainers/0/image")
            .unwrap(),
        "busybox:1.28",
        "no override: unchanged"
    );
}

#[test]
fn env_values_and_flags_are_read_by_rules() {
    let rules = rules(
        "- {id: driver, kind: Deployment, name: api, field: 'spec.template.spec.containers[*].env[name=DRIVER_IMAGE].value'}\n\
         - {id: executor, kind: Deployment, name: api, field: 'spec.template.spec.containers[*].args', flag: --executor-image}\n\
         - {id: solver, kind: Deployment, name: api, field: 'spec.template.spec.containers[*].args', flag: --solver-image}\n",
    );
    let objects = vec![deployment(
        "api",
        json!({"containers": [{"name": "api", "image": "ghcr.io/k/api:2",
            "env": [{"name": "DRIVER_IMAGE", "value": "ghcr.io/k/driver:2"}, {"name": "OTHER", "value": "ghcr.io/k/driver:2"}],
            "args": ["--executor-image", "quay.io/argo/exec:v3", "--solver-image=quay.io/j/solver:v1", "--other"]}]}),
    )];
    let found = find(&objects, &rules);
    let all = places(&found);
    assert!(
        all.contains(&(
            "ghcr.io/k/driver:2".into(),
            "spec.template.spec.containers[name=api].env[name=DRIVER_IMAGE].value".into(),
            "driver".into()
        )),
        "{all:?}"
    );
    assert!(
        all.contains(&(
            "quay.io/argo/exec:v3".into(),
            "spec.template.spec.containers[name=api].args[1]".into(),
            "executor".into()
        )),
        "{all:?}"
    );
    assert!(
        all.contains(&(
            "quay.io/j/solver:v1".into(),
            "spec.template.spec.containers[name=api].args[2]".into(),
            "solver".into()
        )),
        "{all:?}"
    );
    // The same image under an env var no rule names: the scan finds it, and says so.
    assert!(
        all.contains(&(
            "ghcr.io/k/driver:2".into(),
            "spec.template.spec.containers[0].env[1].value".into(),
            SCAN.into()
        )),
        "{all:?}"
    );
    assert_eq!(all.len(), 5, "{all:?}");

    let mut edited = objects.clone();
    let overrides = BTreeMap::from([
        (
            "quay.io/j/solver:v1".to_string(),
            to("reg/j/solver", DIGEST),
        ),
        (
            "quay.io/argo/exec:v3".to_string(),
            Target {
                new_name: None,
                new_tag: Some("v4".into()),
                digest: None,
            },
        ),
        (
            "ghcr.io/k/driver:2".to_string(),
            Target {
                new_name: Some("reg/k/driver".into()),
                new_tag: None,
                digest: None,
            },
        ),
    ]);
    rewrite(edited.iter_mut(), &rules, &overrides);
    let args = edited[0]
        .pointer("/spec/template/spec/containers/0/args")
        .unwrap();
    assert_eq!(
        args,
        &json!([
            "--executor-image",
            "quay.io/argo/exec:v4",
            format!("--solver-image=reg/j/solver@{DIGEST}"),
            "--other"
        ])
    );
    let env = edited[0]
        .pointer("/spec/template/spec/containers/0/env")
        .unwrap();
    assert_eq!(env[0]["value"], "reg/k/driver:2");
    assert_eq!(
        env[1]["value"], "reg/k/driver:2",
        "the scan's place is rewritten too"
    );
}

#[test]
fn images_in_documents_held_by_configmaps_are_rewritten_in_place() {
    let rules = rules(
        "- {id: katib, kind: ConfigMap, name: katib-config, field: 'data[katib-config.yaml]', document: yaml, path: ['runtime.suggestions[*].image']}\n\
         - {id: templates, kind: ConfigMap, name: trial-templates, field: 'data[*]', document: yaml, containers: true}\n\
         - {id: kserve, kind: ConfigMap, name: isvc, field: 'data[*]', document: json, path: image}\n",
    );
    let katib = "runtime:\n  # the suggestion services\n  suggestions:\n    - algorithmName: random\n      image: ghcr.io/k/hyperopt:v1   # trailing comment\n    - algorithmName: tpe\n      image: ghcr.io/k/hyperopt:v1\n    - algorithmName: grid\n      image: ghcr.io/k/hyperopt:v1.1\n";
    let template = "apiVersion: batch/v1\nkind: Job\nspec:\n  template:\n    spec:\n      containers:\n        - name: training-container\n          image: ghcr.io/k/mnist:v1\n";
    let kserve = "{\n    \"image\" : \"kserve/agent:v0.16.0\",\n    \"cpuLimit\": \"1\"\n}";
    let objects = vec![
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "katib-config"}, "data": {"katib-config.yaml": katib}}),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "trial-templates"}, "data": {"mnist": template}}),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "isvc"}, "data": {"agent": kserve, "broken": "{ not: [json"}}),
    ];
    let found = find(&objects, &rules);
    let all = places(&found);
    assert_eq!(
        all,
        vec![
            (
                "ghcr.io/k/hyperopt:v1".into(),
                "data[katib-config.yaml]#runtime.suggestions[0].image".into(),
                "katib".into()
            ),
            (
                "ghcr.io/k/hyperopt:v1".into(),
                "data[katib-config.yaml]#runtime.suggestions[1].image".into(),
                "katib".into()
            ),
            (
                "ghcr.io/k/hyperopt:v1.1".into(),
                "data[katib-config.yaml]#runtime.suggestions[2].image".into(),
                "katib".into()
            ),
            (
                "ghcr.io/k/mnist:v1".into(),
                "data.mnist#spec.template.spec.containers[name=training-container].image".into(),
                "templates".into()
            ),
            (
                "kserve/agent:v0.16.0".into(),
                "data.agent#image".into(),
                "kserve".into()
            ),
        ]
    );
    let mut edited = objects.clone();
    let overrides = BTreeMap::from([
        (
            "ghcr.io/k/hyperopt:v1".to_string(),
            to("reg/k/hyperopt", DIGEST),
        ),
        ("ghcr.io/k/mnist:v1".to_string(), to("reg/k/mnist", DIGEST)),
        (
            "kserve/agent:v0.16.0".to_string(),
            to("reg/kserve/agent", DIGEST),
        ),
    ]);
    rewrite(edited.iter_mut(), &rules, &overrides);
    // Only the image token changed: comments, layout and the longer v1.1 tag are as they were.
    assert_eq!(
        edited[0]["data"]["katib-config.yaml"],
        katib
            .replace(
                "ghcr.io/k/hyperopt:v1 ",
                &format!("reg/k/hyperopt@{DIGEST} ")
            )
            .replace(
                "ghcr.io/k/hyperopt:v1\n",
                &format!("reg/k/hyperopt@{DIGEST}\n")
            )
    );
    assert!(
        edited[0]["data"]["katib-config.yaml"]
            .as_str()
            .unwrap()
            .contains("image: ghcr.io/k/hyperopt:v1.1\n")
    );
    assert_eq!(
        edited[1]["data"]["mnist"],
        template.replace("ghcr.io/k/mnist:v1", &format!("reg/k/mnist@{DIGEST}"))
    );
    assert_eq!(
        edited[2]["data"]["agent"],
        kserve.replace(
            "kserve/agent:v0.16.0",
            &format!("reg/kserve/agent@{DIGEST}")
        )
    );
}

#[test]
fn composed_images_are_read_from_their_parts_and_written_back_by_the_rules_choice() {
    let rules = rules(
        "- {id: istio, kind: ConfigMap, name: injector, field: 'data[values]', document: json, path: global, compose: {hub: hub, repository: proxy.image, tag: tag}}\n\
         - {id: explainers, kind: ConfigMap, name: isvc, field: 'data[explainers]', document: json, path: '[*]', compose: {repository: image, tag: defaultImageVersion, rewrite: split}}\n\
         - {id: chart, kind: Widget, field: spec.image, compose: {repository: repository, tag: tag, rewrite: split}}\n",
    );
    let values = "{\n  \"global\": {\n    \"hub\": \"gcr.io/istio-release\",\n    \"proxy\": {\n      \"image\": \"proxyv2\"\n    },\n    \"proxy_init\": {\n      \"image\": \"proxyv2\"\n    },\n    \"tag\": \"1.29.0\"\n  }\n}";
    let explainers = "{\n    \"art\": {\n        \"image\" : \"kserve/art-explainer\",\n        \"defaultImageVersion\": \"latest\"\n    }\n}";
    let objects = vec![
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "injector", "namespace": "istio-system"}, "data": {"values": values}}),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "isvc"}, "data": {"explainers": explainers}}),
        json!({"apiVersion": "x/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"image": {"repository": "docker.io/w/widget", "tag": "3"}}}),
    ];
    let all = places(&find(&objects, &rules));
    assert_eq!(
        all,
        vec![
            (
                "docker.io/w/widget:3".into(),
                "spec.image.repository".into(),
                "chart".into()
            ),
            (
                "gcr.io/istio-release/proxyv2:1.29.0".into(),
                "data.values#global.proxy.image".into(),
                "istio".into()
            ),
            (
                "kserve/art-explainer:latest".into(),
                "data.explainers#art.image".into(),
                "explainers".into()
            ),
        ]
    );
    let mut edited = objects.clone();
    let overrides = BTreeMap::from([
        (
            "gcr.io/istio-release/proxyv2:1.29.0".to_string(),
            to("reg/istio/proxyv2", DIGEST),
        ),
        (
            "kserve/art-explainer:latest".to_string(),
            Target {
                new_name: Some("reg/kserve/art".into()),
                new_tag: Some("v1".into()),
                digest: None,
            },
        ),
        (
            "docker.io/w/widget:3".to_string(),
            Target {
                new_name: Some("reg/w".into()),
                new_tag: Some("4".into()),
                digest: None,
            },
        ),
    ]);
    rewrite(edited.iter_mut(), &rules, &overrides);
    // istio takes a proxy.image with a '/' as the whole reference; hub and tag stay.
    assert_eq!(
        edited[0]["data"]["values"],
        values.replace(
            "\"image\": \"proxyv2\"",
            &format!("\"image\": \"reg/istio/proxyv2@{DIGEST}\"")
        )
    );
    assert_eq!(
        edited[1]["data"]["explainers"],
        explainers
            .replace("kserve/art-explainer", "reg/kserve/art")
            .replace("\"latest\"", "\"v1\"")
    );
    assert_eq!(
        edited[2]["spec"]["image"],
        json!({"repository": "reg/w", "tag": "4"})
    );
    // Read again, the rewritten render names only the targets.
    let again: Vec<String> = find(&edited, &rules).into_iter().map(|i| i.image).collect();
    assert_eq!(
        again,
        vec![
            format!("reg/istio/proxyv2@{DIGEST}"),
            "reg/kserve/art:v1".to_string(),
            "reg/w:4".to_string()
        ]
    );
}

#[test]
fn the_scan_counts_only_image_references_with_a_registry_and_a_version() {
    let objects = vec![
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "docs", "annotations": {
            "app.kubernetes.io/name": "x",
            "doc": "see https://gcr.io/ml-pipeline/frontend:2.5.0 and gcr.io/ml-pipeline docs",
        }}, "data": {
            "script": "docker pull registry.k8s.io/pause:3.9; echo localhost:5000/a/b@sha256:1111111111111111111111111111111111111111111111111111111111111111.",
            "plain": "kserve/agent:v0.16.0 busybox:1.28 app.kubernetes.io/part-of",
        }}),
    ];
    let found = find(&objects, &[]);
    let names: Vec<&str> = found.iter().map(|i| i.image.as_str()).collect();
    assert_eq!(
        names,
        vec![
            format!("localhost:5000/a/b@{DIGEST}").as_str(),
            "registry.k8s.io/pause:3.9"
        ]
    );
    assert!(found.iter().all(ImageUse::scan_only));
    assert_eq!(found[1].locations[0].field, "data.script");
}

#[test]
fn bad_rules_name_the_field() {
    let bad = [
        ("{id: a, kind: K, field: 'data['}", "field"),
        ("{id: a, kind: K, field: data.x, document: yaml}", "path"),
        ("{id: a, kind: K, field: data.x, path: x}", "document"),
        ("{id: a, kind: K, field: args, flag: executor}", "flag"),
        (
            "{id: a, kind: K, field: x, compose: {repository: r, rewrite: split}}",
            "compose.rewrite",
        ),
        ("{id: a, kind: K, field: x, containers: true}", "containers"),
    ];
    for (yaml, field) in bad {
        let rule: ImageRule = serde_saphyr::from_str(yaml).unwrap();
        assert_eq!(rule.check().unwrap_err().field, field, "{yaml}");
    }
}
