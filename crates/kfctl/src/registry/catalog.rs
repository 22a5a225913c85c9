//! The component catalog: for each Kubeflow release kfctl supports, which components it has,
//! where their kustomize directories are inside the release, what they depend on, and which of
//! them a plain `kfctl init` enables (the base set).
//!
//! Written by hand from each release's `example/kustomization.yaml`; the order of
//! [`Release::components`] is that file's order, which is also the render order.

/// One Kubeflow release kfctl knows.
#[derive(Debug)]
pub struct Release {
    /// The version as users type it, e.g. `v1.4.1`.
    pub version: &'static str,
    /// The upstream release archive, used when `kfctl init` is given no `--registry`.
    pub default_url: &'static str,
    /// The content pin of the release (`tree-sha256:HEX` of the unpacked tree, see
    /// `registry::digest`): an init of this release is verified whoever compressed the archive.
    pub default_digest: &'static str,
    /// Components in render order.
    pub components: &'static [ComponentSpec],
}

/// One component of a release.
#[derive(Debug)]
pub struct ComponentSpec {
    /// The name used in kfctl.yaml and on the command line.
    pub name: &'static str,
    /// One line for `kfctl component list`.
    pub description: &'static str,
    /// kustomize directories inside the release, relative to its root, in build order.
    pub paths: &'static [&'static str],
    /// Components that must be deployed for this one to work.
    pub depends_on: &'static [&'static str],
    /// Enabled by a plain `kfctl init`.
    pub base: bool,
    /// Parameters this component accepts in kfctl.yaml.
    pub parameters: &'static [ParameterSpec],
}

/// A parameter a component accepts under `parameters:` in kfctl.yaml.
#[derive(Debug)]
pub struct ParameterSpec {
    /// The key in kfctl.yaml.
    pub name: &'static str,
    /// What it changes, for `kfctl component list` and error hints.
    pub description: &'static str,
    /// What the value must look like.
    pub kind: ParameterKind,
    /// Where the value goes when the component is rendered.
    pub target: ParameterTarget,
}

/// How a parameter reaches the rendered objects (through an overlay kfctl generates).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParameterTarget {
    /// A field (JSON pointer) of the YAML document stored under `key` in the ConfigMap defined
    /// by `file` (relative to the release root); rendered as a patch of that ConfigMap.
    EmbeddedYaml { file: &'static str, key: &'static str, pointer: &'static str },
    /// A literal `key=value` of the configMapGenerator named `generator`, merged by the overlay.
    GeneratorLiteral { generator: &'static str, key: &'static str },
}

/// The shape of a parameter's value, checked by `kfctl.yaml` validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParameterKind {
    /// An email address (`name@domain`).
    Email,
    /// A bcrypt hash (`$2a$`, `$2b$` or `$2y$`); never a plaintext password.
    BcryptHash,
    /// A Kubernetes object name (DNS-1123 label).
    DnsLabel,
}

impl ComponentSpec {
    /// The parameter named `name`, if this component accepts it.
    pub fn parameter(&self, name: &str) -> Option<&'static ParameterSpec> {
        self.parameters.iter().find(|p| p.name == name)
    }
}

impl Release {
    /// The component named `name`, if this release has it.
    pub fn component(&self, name: &str) -> Option<&'static ComponentSpec> {
        self.components.iter().find(|c| c.name == name)
    }

    /// Names of components that list `name` among their dependencies.
    pub fn dependents_of(&self, name: &str) -> Vec<&'static str> {
        self.components.iter().filter(|c| c.depends_on.contains(&name)).map(|c| c.name).collect()
    }

    /// The release's component names, comma-separated, for error hints.
    pub fn component_names(&self) -> String {
        self.components.iter().map(|c| c.name).collect::<Vec<_>>().join(", ")
    }
}

/// The version a plain `kfctl init` installs.
pub const DEFAULT_VERSION: &str = "v1.4.1";

/// Every release kfctl supports, oldest first.
pub static RELEASES: &[Release] = &[V1_4_1];

/// A version kfctl has no catalog for.
#[derive(Debug, thiserror::Error)]
#[error("Kubeflow version {version:?} is not supported; supported versions: {supported}")]
pub struct UnknownVersion {
    pub version: String,
    pub supported: String,
}

/// The catalog of `version` (with or without the leading `v`).
pub fn release(version: &str) -> Result<&'static Release, UnknownVersion> {
    let wanted = version.strip_prefix('v').unwrap_or(version);
    RELEASES.iter().find(|r| r.version.strip_prefix('v') == Some(wanted)).ok_or_else(|| UnknownVersion {
        version: version.to_string(),
        supported: RELEASES.iter().map(|r| r.version).collect::<Vec<_>>().join(", "),
    })
}

/// The release whose default archive is `url`, so `--registry URL` alone picks the version.
pub fn release_for_url(url: &str) -> Option<&'static Release> {
    RELEASES.iter().find(|r| r.default_url == url)
}

const DEX_PARAMETERS: &[ParameterSpec] = &[
    ParameterSpec {
        name: "email",
        description: "the default user's login email (upstream: user@example.com)",
        kind: ParameterKind::Email,
        target: ParameterTarget::EmbeddedYaml { file: "common/dex/base/config-map.yaml", key: "config.yaml", pointer: "/staticPasswords/0/email" },
    },
    ParameterSpec {
        name: "passwordHash",
        description: "bcrypt hash of the default user's password (set it with `kfctl component set dex password=...`, which stores only the hash)",
        kind: ParameterKind::BcryptHash,
        target: ParameterTarget::EmbeddedYaml { file: "common/dex/base/config-map.yaml", key: "config.yaml", pointer: "/staticPasswords/0/hash" },
    },
];

const USER_NAMESPACE_PARAMETERS: &[ParameterSpec] = &[
    ParameterSpec {
        name: "user",
        description: "the email of the user who owns the profile (match dex's email)",
        kind: ParameterKind::Email,
        target: ParameterTarget::GeneratorLiteral { generator: "default-install-config", key: "user" },
    },
    ParameterSpec {
        name: "profileName",
        description: "the name of the user's profile and namespace (upstream: kubeflow-user-example-com)",
        kind: ParameterKind::DnsLabel,
        target: ParameterTarget::GeneratorLiteral { generator: "default-install-config", key: "profile-name" },
    },
];

const V1_4_1: Release = Release {
    version: "v1.4.1",
    default_url: "https://github.com/kubeflow/manifests/archive/refs/tags/v1.4.1.tar.gz",
    default_digest: "tree-sha256:c6130041f6ec67a4eb0cd0ff59866d98c58d9157b6e1ad6e33f838b04fa84331",
    components: &[
        ComponentSpec {
            name: "cert-manager",
            description: "cert-manager and the kubeflow-self-signing-issuer ClusterIssuer",
            paths: &["common/cert-manager/cert-manager/base", "common/cert-manager/kubeflow-issuer/base"],
            depends_on: &[],
            base: true,
            parameters: &[],
        },
        ComponentSpec {
            name: "istio",
            description: "Istio 1.9: CRDs, istio-system namespace, istiod and the ingress gateway",
            paths: &[
                "common/istio-1-9/istio-crds/base",
                "common/istio-1-9/istio-namespace/base",
                "common/istio-1-9/istio-install/base",
            ],
            depends_on: &[],
            base: true,
            parameters: &[],
        },
        ComponentSpec {
            name: "oidc-authservice",
            description: "OIDC AuthService: logs users in through dex at the Istio gateway",
            paths: &["common/oidc-authservice/base"],
            depends_on: &["istio", "dex"],
            base: true,
            parameters: &[],
        },
        ComponentSpec {
            name: "dex",
            description: "Dex identity provider with the default static user",
            paths: &["common/dex/overlays/istio"],
            depends_on: &["istio"],
            base: true,
            parameters: DEX_PARAMETERS,
        },
        ComponentSpec {
            name: "knative",
            description: "Knative Serving (on the cluster-local gateway) and Eventing, for KFServing",
            paths: &[
                "common/knative/knative-serving/overlays/gateways",
                "common/knative/knative-eventing/base",
                "common/istio-1-9/cluster-local-gateway/base",
            ],
            depends_on: &["istio"],
            base: true,
            parameters: &[],
        },
        ComponentSpec {
            name: "kubeflow-namespace",
            description: "the kubeflow namespace",
            paths: &["common/kubeflow-namespace/base"],
            depends_on: &[],
            base: true,
            parameters: &[],
        },
        ComponentSpec {
            name: "kubeflow-roles",
            description: "kubeflow-admin/edit/view ClusterRoles that profiles aggregate",
            paths: &["common/kubeflow-roles/base"],
            depends_on: &[],
            base: true,
            parameters: &[],
        },
        ComponentSpec {
            name: "kubeflow-istio-resources",
            description: "the kubeflow-gateway and the Istio ClusterRoles",
            paths: &["common/istio-1-9/kubeflow-istio-resources/base"],
            depends_on: &["istio", "kubeflow-namespace"],
            base: true,
            parameters: &[],
        },
        ComponentSpec {
            name: "pipelines",
            description: "Kubeflow Pipelines, multi-user (Argo, MinIO, MySQL, metadata, UI)",
            paths: &["apps/pipeline/upstream/env/platform-agnostic-multi-user"],
            depends_on: &["istio", "kubeflow-namespace", "kubeflow-roles", "kubeflow-istio-resources", "profiles"],
            base: true,
            parameters: &[],
        },
        ComponentSpec {
            name: "kfserving",
            description: "KFServing model serving (InferenceService) and its web app",
            paths: &["apps/kfserving/upstream/overlays/kubeflow"],
            depends_on: &["cert-manager", "istio", "knative", "kubeflow-namespace", "kubeflow-istio-resources"],
            base: true,
            parameters: &[],
        },
        ComponentSpec {
            name: "katib",
            description: "Katib hyperparameter tuning: controller, DB manager, MySQL, UI",
            paths: &["apps/katib/upstream/installs/katib-with-kubeflow"],
            depends_on: &["cert-manager", "istio", "kubeflow-namespace", "kubeflow-roles", "kubeflow-istio-resources"],
            base: true,
            parameters: &[],
        },
        ComponentSpec {
            name: "central-dashboard",
            description: "the Kubeflow central dashboard",
            paths: &["apps/centraldashboard/upstream/overlays/istio"],
            depends_on: &["istio", "kubeflow-namespace", "kubeflow-istio-resources", "profiles"],
            base: true,
            parameters: &[],
        },
        ComponentSpec {
            name: "admission-webhook",
            description: "the PodDefault admission webhook (certificate from cert-manager)",
            paths: &["apps/admission-webhook/upstream/overlays/cert-manager"],
            depends_on: &["cert-manager", "kubeflow-namespace"],
            base: true,
            parameters: &[],
        },
        ComponentSpec {
            name: "notebooks",
            description: "Jupyter web app and the notebook controller",
            paths: &[
                "apps/jupyter/jupyter-web-app/upstream/overlays/istio",
                "apps/jupyter/notebook-controller/upstream/overlays/kubeflow",
            ],
            depends_on: &["istio", "kubeflow-namespace", "kubeflow-roles", "kubeflow-istio-resources", "admission-webhook", "profiles"],
            base: true,
            parameters: &[],
        },
        ComponentSpec {
            name: "profiles",
            description: "the profile controller and KFAM (access management)",
            paths: &["apps/profiles/upstream/overlays/kubeflow"],
            depends_on: &["istio", "kubeflow-namespace", "kubeflow-roles"],
            base: true,
            parameters: &[],
        },
        ComponentSpec {
            name: "volumes-web-app",
            description: "the volumes web app (PVC management)",
            paths: &["apps/volumes-web-app/upstream/overlays/istio"],
            depends_on: &["istio", "kubeflow-namespace", "kubeflow-roles", "kubeflow-istio-resources"],
            base: true,
            parameters: &[],
        },
        ComponentSpec {
            name: "tensorboard",
            description: "the Tensorboard controller and the Tensorboards web app",
            paths: &[
                "apps/tensorboard/tensorboard-controller/upstream/overlays/kubeflow",
                "apps/tensorboard/tensorboards-web-app/upstream/overlays/istio",
            ],
            depends_on: &["istio", "kubeflow-namespace", "kubeflow-roles", "kubeflow-istio-resources"],
            base: true,
            parameters: &[],
        },
        ComponentSpec {
            name: "training-operator",
            description: "the training operator (TFJob, PyTorchJob, MXJob, XGBoostJob)",
            paths: &["apps/training-operator/upstream/overlays/kubeflow"],
            depends_on: &["kubeflow-namespace", "kubeflow-roles"],
            base: true,
            parameters: &[],
        },
        ComponentSpec {
            name: "mpi-operator",
            description: "the MPI operator (MPIJob)",
            paths: &["apps/mpi-job/upstream/overlays/kubeflow"],
            depends_on: &["kubeflow-namespace", "kubeflow-roles"],
            base: true,
            parameters: &[],
        },
        ComponentSpec {
            name: "user-namespace",
            description: "the default user's Profile (and so their namespace)",
            paths: &["common/user-namespace/base"],
            depends_on: &["profiles"],
            base: true,
            parameters: USER_NAMESPACE_PARAMETERS,
        },
        ComponentSpec {
            name: "seldon",
            description: "Seldon Core operator (contrib, not part of the base set)",
            paths: &["contrib/seldon/seldon-core-operator/base"],
            depends_on: &["istio", "kubeflow-namespace"],
            base: false,
            parameters: &[],
        },
        ComponentSpec {
            name: "spark-operator",
            description: "Spark operator (contrib, not part of the base set)",
            paths: &["contrib/spark/spark-operator/base"],
            depends_on: &["kubeflow-namespace"],
            base: false,
            parameters: &[],
        },
    ],
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependencies_name_components_of_the_same_release() {
        for release in RELEASES {
            for c in release.components {
                for dep in c.depends_on {
                    assert!(release.component(dep).is_some(), "{}: {} depends on unknown {dep}", release.version, c.name);
                    assert_ne!(*dep, c.name);
                }
            }
        }
    }

    #[test]
    fn unknown_version_lists_supported_ones() {
        let err = release("v0.9").unwrap_err();
        assert_eq!(err.to_string(), "Kubeflow version \"v0.9\" is not supported; supported versions: v1.4.1");
        assert_eq!(release("1.4.1").unwrap().version, "v1.4.1");
    }

    #[test]
    fn dependents_are_found() {
        let r = release("v1.4.1").unwrap();
        let deps = r.dependents_of("dex");
        assert_eq!(deps, vec!["oidc-authservice"]);
        assert!(r.dependents_of("istio").contains(&"pipelines"));
    }
}
