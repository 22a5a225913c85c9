//! The patch transformers end to end, each case checked against the real `kubectl kustomize`
//! (kustomize v5.5): a kustomization with `sortOptions: fifo`, resources and patches is written to a
//! temp dir; kubectl renders it; the patch functions render the same resources; both must agree as
//! parsed YAML, or both must fail.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use super::{apply_patches, apply_patches_json6902, apply_patches_strategic_merge};
use crate::kustomization::Kustomization;
use crate::loader::{Loader, resources_from_text};
use crate::resource::{Origin, Resource};

/// One case: the kustomization's patch fields (YAML), the resources, and extra files.
struct Case {
    name: &'static str,
    kustomization: &'static str,
    resources: &'static str,
    files: &'static [(&'static str, &'static str)],
}

const DEPLOY: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: main
        image: nginx:1
        env:
        - name: A
          value: "1"
        - name: B
          valueFrom:
            fieldRef: {fieldPath: metadata.name}
        volumeMounts:
        - name: data
          mountPath: /data
        ports:
        - containerPort: 80
          protocol: TCP
      volumes:
      - name: data
        emptyDir: {}
      - name: cfg
        configMap: {name: cfg}
---
apiVersion: v1
kind: Service
metadata:
  name: web
  labels: {app: web}
  annotations: {team: a}
spec:
  selector: {app: web}
  ports:
  - port: 80
    targetPort: 8080
    name: http
---
apiVersion: batch/v1beta1
kind: CronJob
metadata:
  name: job
  namespace: kf
spec:
  schedule: "* * * * *"
  jobTemplate:
    spec:
      template:
        spec:
          containers:
          - name: c
            image: busybox
            args: [a, b]
---
apiVersion: kubeflow.org/v1
kind: Profile
metadata:
  name: p
spec:
  owner: {kind: User, name: a}
  plugins:
  - name: x
    spec: {a: 1}
  resourceQuotaSpec:
    hard: {cpu: "1"}
    scopes: null
"#;

/// Objects with keys written with no value (`key:`) beside written-out nulls.
const BARE_KEYS: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: gw
  creationTimestamp: null
spec:
  template:
    spec:
      affinity:
        nodeAffinity:
          preferredDuringSchedulingIgnoredDuringExecution:
          requiredDuringSchedulingIgnoredDuringExecution: ~
      tolerations:
      - key: a
        value:
      containers:
      - name: proxy
        image: x
        env:
        - name: E
          value:
---
apiVersion: kubeflow.org/v1
kind: Profile
metadata:
  name: p
spec:
  bare:
  written: null
  list:
  - item:
"#;

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "patches: path SMP merging containers, env, volumes, ports",
            kustomization: "patches:\n- path: p.yaml\n",
            resources: DEPLOY,
            files: &[(
                "p.yaml",
                r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  template:
    spec:
      containers:
      - name: sidecar
        image: envoy
      - name: main
        image: nginx:2
        env:
        - name: C
          value: "3"
        - name: A
          value: "one"
        - name: B
          $patch: delete
        ports:
        - containerPort: 9090
          protocol: TCP
        - containerPort: 80
          protocol: TCP
          name: http
        volumeMounts:
        - mountPath: /data
          readOnly: true
      volumes:
      - name: cfg
        $patch: delete
      - name: extra
        secret: {secretName: s}
"#,
            )],
        },
        Case {
            name: "patchesStrategicMerge: inline and file, null deletes, $patch: delete a resource",
            kustomization: "patchesStrategicMerge:\n- |-\n  apiVersion: v1\n  kind: Service\n  metadata:\n    name: web\n  spec:\n    selector: null\n    type: NodePort\n- del.yaml\n",
            resources: DEPLOY,
            files: &[("del.yaml", "apiVersion: batch/v1beta1\nkind: CronJob\nmetadata:\n  name: job\n  namespace: kf\n$patch: delete\n")],
        },
        Case {
            name: "patches: SMP with a label selector target hits every match and keeps names",
            kustomization: "patches:\n- target:\n    labelSelector: app in (web)\n  patch: |-\n    apiVersion: v1\n    kind: Whatever\n    metadata:\n      name: ignored\n      annotations: {patched: \"yes\"}\n",
            resources: DEPLOY,
            files: &[],
        },
        Case {
            name: "patches: JSON 6902 inline YAML and JSON file with name regex and kind",
            kustomization: "patches:\n- target: {kind: Deployment, name: w.b}\n  patch: |-\n    - op: add\n      path: /spec/template/spec/containers/0/args\n      value: [--v=2]\n    - op: add\n      path: /metadata/labels/enabled\n      value: yes\n    - op: replace\n      path: /spec/replicas\n      value: 3\n    - op: add\n      path: /metadata/annotations\n      value: {a/b: c}\n    - op: move\n      from: /metadata/annotations/a~1b\n      path: /metadata/labels/moved\n- path: ops.json\n  target: {group: batch, kind: CronJob, namespace: kf}\n",
            resources: DEPLOY,
            files: &[(
                "ops.json",
                r#"[{"op": "copy", "from": "/spec/schedule", "path": "/metadata/labels"}, {"op": "remove", "path": "/metadata/labels"}, {"op": "add", "path": "/spec/jobTemplate/spec/template/spec/containers/0/args/1", "value": "x"}, {"op": "test", "path": "/spec/schedule", "value": "* * * * *"}]"#,
            )],
        },
        Case {
            // kubeflow 26.03's argo install replaces /subjects/0/namespace, which argo's binding lacks
            name: "patches: JSON 6902 replace of a missing map key sets it; test of it against null passes",
            kustomization: "patches:\n- target: {kind: Service}\n  patch: |-\n    - op: test\n      path: /spec/ports/0/protocol\n      value: null\n    - op: replace\n      path: /spec/ports/0/protocol\n      value: UDP\n    - op: copy\n      from: /metadata/labels/missing\n      path: /metadata/labels/copied\n",
            resources: DEPLOY,
            files: &[],
        },
        Case {
            name: "error: a document after one deleting a resource in the same entry (kubectl crashes)",
            kustomization: "patches:\n- path: del.yaml\n",
            resources: DEPLOY,
            files: &[("del.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: web}\n$patch: delete\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec: {replicas: 2}\n")],
        },
        Case {
            name: "patches: a deleting document last in its entry is fine",
            kustomization: "patches:\n- path: del.yaml\n",
            resources: DEPLOY,
            files: &[("del.yaml", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec: {replicas: 2}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: web}\n$patch: delete\n")],
        },
        Case {
            name: "error: JSON 6902 replace past the end of a list",
            kustomization: "patches:\n- target: {kind: Service}\n  patch: '[{\"op\": \"replace\", \"path\": \"/spec/ports/1\", \"value\": {port: 1}}]'\n",
            resources: DEPLOY,
            files: &[],
        },
        Case {
            // istio's gateway Deployments (helm output) hold `nodeAffinity:` keys with no value
            name: "SMP drops bare keys where it walks (maps, merge lists), keeps written nulls and keys in other lists",
            kustomization: "patches:\n- patch: |-\n    apiVersion: apps/v1\n    kind: Deployment\n    metadata: {name: gw}\n    spec:\n      template:\n        spec:\n          containers:\n          - name: proxy\n            securityContext: {runAsNonRoot: true}\n- patch: |-\n    apiVersion: kubeflow.org/v1\n    kind: Profile\n    metadata: {name: p}\n    spec: {other: 1}\n",
            resources: BARE_KEYS,
            files: &[],
        },
        Case {
            name: "after a JSON 6902 patch every null is written out, and SMP keeps it",
            kustomization: "patches:\n- target: {kind: Profile}\n  patch: '[{\"op\": \"add\", \"path\": \"/spec/other\", \"value\": 1}]'\n- patch: |-\n    apiVersion: kubeflow.org/v1\n    kind: Profile\n    metadata: {name: p}\n    spec: {more: 2}\n",
            resources: BARE_KEYS,
            files: &[],
        },
        Case {
            name: "patchesJson6902: legacy entry with path and YAML ops",
            kustomization: "patchesJson6902:\n- target: {version: v1, kind: Service, name: web}\n  path: svc.yaml\n",
            resources: DEPLOY,
            files: &[("svc.yaml", "- op: replace\n  path: /spec/ports/0/port\n  value: 8000\n- op: add\n  path: /spec/ports/-\n  value: {port: 9000, name: metrics}\n")],
        },
        Case {
            name: "patches: allowNameChange and allowKindChange options",
            kustomization: "patches:\n- options: {allowNameChange: true}\n  target: {kind: Service}\n  patch: |-\n    apiVersion: v1\n    kind: Service\n    metadata:\n      name: renamed\n",
            resources: DEPLOY,
            files: &[],
        },
        Case {
            name: "SMP on a CRD merges maps, replaces lists, keeps nulls it does not walk",
            kustomization: "patches:\n- patch: |-\n    apiVersion: kubeflow.org/v1\n    kind: Profile\n    metadata:\n      name: p\n    spec:\n      plugins:\n      - name: why\n      owner: {name: b}\n",
            resources: DEPLOY,
            files: &[],
        },
        Case {
            name: "SMP walking a map that holds a null drops it",
            kustomization: "patches:\n- patch: |-\n    apiVersion: kubeflow.org/v1\n    kind: Profile\n    metadata:\n      name: p\n    spec:\n      resourceQuotaSpec:\n        hard: {memory: 1Gi}\n",
            resources: DEPLOY,
            files: &[],
        },
        Case {
            name: "Service ports merge by port; CronJob containers by name",
            kustomization: "patches:\n- patch: |-\n    apiVersion: v1\n    kind: Service\n    metadata:\n      name: web\n    spec:\n      ports:\n      - port: 80\n        nodePort: 30080\n      - port: 443\n        name: https\n- patch: |-\n    apiVersion: batch/v1beta1\n    kind: CronJob\n    metadata:\n      name: job\n      namespace: kf\n    spec:\n      jobTemplate:\n        spec:\n          template:\n            spec:\n              containers:\n              - name: c\n                args: [z]\n",
            resources: DEPLOY,
            files: &[],
        },
        Case {
            name: "a list element `$patch: replace` (kubeflow's metadata-grpc overlay) empties the list",
            kustomization: "patchesStrategicMerge:\n- p.yaml\n",
            resources: DEPLOY,
            files: &[(
                "p.yaml",
                "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  template:\n    spec:\n      containers:\n      - name: main\n        env:\n        - $patch: replace\n        envFrom:\n        - configMapRef: {name: x}\n",
            )],
        },
        Case {
            name: "JSON patch: integral floats become integers, negative index removes from the end",
            kustomization: "patches:\n- target: {kind: Profile}\n  patch: |-\n    - op: add\n      path: /spec/ratio\n      value: 2.0\n    - op: remove\n      path: /spec/plugins/-1\n",
            resources: "apiVersion: kubeflow.org/v1\nkind: Profile\nmetadata:\n  name: p\nspec:\n  weight: 1.0\n  half: 0.5\n  plugins: [{name: a}, {name: b}]\n",
            files: &[],
        },
        Case {
            name: "error: SMP without target naming a missing resource",
            kustomization: "patches:\n- patch: |-\n    apiVersion: apps/v1\n    kind: Deployment\n    metadata:\n      name: nope\n",
            resources: DEPLOY,
            files: &[],
        },
        Case {
            name: "error: SMP without namespace on a namespaced resource",
            kustomization: "patchesStrategicMerge:\n- |-\n  apiVersion: batch/v1beta1\n  kind: CronJob\n  metadata:\n    name: job\n  spec: {suspend: true}\n",
            resources: DEPLOY,
            files: &[],
        },
        Case {
            name: "error: JSON patch test fails",
            kustomization: "patches:\n- target: {kind: Service}\n  patch: '[{\"op\": \"test\", \"path\": \"/spec/type\", \"value\": \"x\"}]'\n",
            resources: DEPLOY,
            files: &[],
        },
        Case {
            name: "error: JSON patch without target",
            kustomization: "patches:\n- patch: '[{\"op\": \"remove\", \"path\": \"/spec\"}]'\n",
            resources: DEPLOY,
            files: &[],
        },
        Case {
            name: "error: legacy patchesJson6902 without target name",
            kustomization: "patchesJson6902:\n- target: {kind: Service}\n  patch: '[{\"op\": \"remove\", \"path\": \"/spec\"}]'\n",
            resources: DEPLOY,
            files: &[],
        },
        Case {
            name: "target namespace default matches resources without namespace",
            kustomization: "patches:\n- target: {namespace: default, kind: Service|Deployment}\n  patch: '[{\"op\": \"add\", \"path\": \"/metadata/labels/ns\", \"value\": \"default\"}]'\n- target: {annotationSelector: \"team!=a\"}\n  patch: '[{\"op\": \"add\", \"path\": \"/spec/noTeamA\", \"value\": \"true\"}]'\n",
            resources: DEPLOY,
            files: &[],
        },
    ]
}

/// Render with the patch functions, in kustomize's transformer order.
fn render_with_patches(dir: &Path) -> Result<Vec<Value>, String> {
    let kfile = dir.join("kustomization.yaml");
    let text = std::fs::read_to_string(&kfile).map_err(|e| e.to_string())?;
    let (k, _warnings): (Kustomization, Vec<String>) =
        crate::kustomization::parse(&text, &kfile).map_err(|e| e.to_string())?;
    let loader = Loader::new_root(dir).map_err(|e| e.to_string())?;
    let res_file = dir.join("res.yaml");
    let res_text = std::fs::read_to_string(&res_file).map_err(|e| e.to_string())?;
    let mut resources: Vec<Resource> =
        resources_from_text(&res_text, &res_file, &Origin::default()).map_err(|e| e.to_string())?;
    if let Some(entries) = &k.patches_strategic_merge {
        apply_patches_strategic_merge(&mut resources, entries, &loader, &kfile).map_err(|e| e.to_string())?;
    }
    if let Some(entries) = &k.patches {
        apply_patches(&mut resources, entries, &loader, &kfile).map_err(|e| e.to_string())?;
    }
    if let Some(entries) = &k.patches_json6902 {
        apply_patches_json6902(&mut resources, entries, &loader, &kfile).map_err(|e| e.to_string())?;
    }
    Ok(resources.into_iter().map(|r| Value::Object(r.object)).collect())
}

fn render_with_kubectl(dir: &Path) -> Result<Vec<Value>, String> {
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(dir)
        .output()
        .map_err(|e| format!("running kubectl (it must be installed for these tests): {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    crate::yaml::parse_documents(&text, Path::new("kubectl-output")).map_err(|e| e.to_string())
}

#[test]
fn patch_transformers_match_kubectl_kustomize() {
    let mut failures = Vec::new();
    for case in cases() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("res.yaml"), case.resources).expect("write resources");
        let kustomization = format!("resources: [res.yaml]\nsortOptions: {{order: fifo}}\n{}", case.kustomization);
        std::fs::write(dir.path().join("kustomization.yaml"), kustomization).expect("write kustomization");
        for (name, text) in case.files {
            std::fs::write(dir.path().join(name), text).expect("write patch file");
        }
        let ours = render_with_patches(dir.path());
        let theirs = render_with_kubectl(dir.path());
        match (&ours, &theirs) {
            (Ok(a), Ok(b)) if a == b => {}
            (Err(_), Err(_)) if case.name.starts_with("error:") => {}
            _ => failures.push(format!(
                "{}\n  ours:    {}\n  kubectl: {}",
                case.name,
                ours.map(|d| serde_json::to_string(&d).unwrap_or_default()).unwrap_or_else(|e| format!("error: {e}")),
                theirs.map(|d| serde_json::to_string(&d).unwrap_or_default()).unwrap_or_else(|e| format!("error: {e}")),
            )),
        }
    }
    assert!(failures.is_empty(), "{} case(s) differ from kubectl kustomize:\n{}", failures.len(), failures.join("\n\n"));
}
