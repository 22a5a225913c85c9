//! Merge keys and patch strategies of the built-in Kubernetes types, as kustomize v5.5 sees them.
//!
//! kustomize's strategic merge (kyaml `merge2`) takes list strategies from the OpenAPI document of
//! Kubernetes v1.21.2 that it embeds: a list is merged element by element only where its schema says
//! `x-kubernetes-patch-strategy: merge`; the element keys are `x-kubernetes-list-map-keys` when the
//! schema lists them, else `x-kubernetes-patch-merge-key`. Everything else (lists of kinds the schema
//! does not know, such as custom resources or `extensions/v1beta1` Deployments) is replaced whole.
//!
//! Only the part of the schema that leads to merge lists is modelled here: object types, the fields
//! that reach a merge list, and the kinds whose root type is known. A field absent from this model
//! behaves exactly like a field with a non-merge schema, which is what kyaml does with it.

/// The schema of one node while walking a resource: the named object type it has, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TypeRef(&'static str);

/// What the schema says about one field of an object type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FieldSchema {
    /// A nested object of the named type.
    Object(TypeRef),
    /// A list with patch strategy `merge`: elements are matched by `keys` (all of them, in
    /// order), or by value when `keys` is empty (a primitive list such as `finalizers`).
    MergeList { keys: &'static [&'static str], element: Option<TypeRef> },
}

/// The schema kyaml finds for a list field: either a merge list, or none (replace whole).
impl FieldSchema {
    /// The merge keys when this is a merge list.
    pub(crate) fn merge_keys(&self) -> Option<&'static [&'static str]> {
        match self {
            FieldSchema::MergeList { keys, .. } => Some(keys),
            FieldSchema::Object(_) => None,
        }
    }
}

const OBJECT_META: TypeRef = TypeRef("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta");
const POD_TEMPLATE_SPEC: TypeRef = TypeRef("io.k8s.api.core.v1.PodTemplateSpec");
const POD_SPEC: TypeRef = TypeRef("io.k8s.api.core.v1.PodSpec");
const CONTAINER: TypeRef = TypeRef("io.k8s.api.core.v1.Container");
const EPHEMERAL_CONTAINER: TypeRef = TypeRef("io.k8s.api.core.v1.EphemeralContainer");
const POD_STATUS: TypeRef = TypeRef("io.k8s.api.core.v1.PodStatus");
const WORKLOAD_SPEC: TypeRef = TypeRef("kfctl.workload.Spec");
const WORKLOAD_STATUS: TypeRef = TypeRef("kfctl.workload.Status");
const JOB_TEMPLATE_SPEC: TypeRef = TypeRef("io.k8s.api.batch.v1.JobTemplateSpec");
const CRON_JOB_SPEC: TypeRef = TypeRef("io.k8s.api.batch.v1.CronJobSpec");
const SERVICE_SPEC: TypeRef = TypeRef("io.k8s.api.core.v1.ServiceSpec");
const SERVICE_STATUS: TypeRef = TypeRef("io.k8s.api.core.v1.ServiceStatus");
const NODE_SPEC: TypeRef = TypeRef("io.k8s.api.core.v1.NodeSpec");
const NODE_STATUS: TypeRef = TypeRef("io.k8s.api.core.v1.NodeStatus");
const CONDITIONS_STATUS: TypeRef = TypeRef("kfctl.conditions.Status");
/// Root of every kind known to the schema that has no merge list beyond `metadata`.
const PLAIN_KIND: TypeRef = TypeRef("kfctl.plain.Kind");
const POD: TypeRef = TypeRef("io.k8s.api.core.v1.Pod");
const POD_TEMPLATE: TypeRef = TypeRef("io.k8s.api.core.v1.PodTemplate");
const WORKLOAD: TypeRef = TypeRef("kfctl.workload.Kind");
const CRON_JOB: TypeRef = TypeRef("io.k8s.api.batch.v1.CronJob");
const SERVICE: TypeRef = TypeRef("io.k8s.api.core.v1.Service");
const SERVICE_ACCOUNT: TypeRef = TypeRef("io.k8s.api.core.v1.ServiceAccount");
const NODE: TypeRef = TypeRef("io.k8s.api.core.v1.Node");
const CONDITIONS_KIND: TypeRef = TypeRef("kfctl.conditions.Kind");
const WEBHOOK_CONFIGURATION: TypeRef =
    TypeRef("io.k8s.api.admissionregistration.v1.WebhookConfiguration");

const fn merge(keys: &'static [&'static str], element: Option<TypeRef>) -> FieldSchema {
    FieldSchema::MergeList { keys, element }
}

/// (type, field, schema). Types that share their merge-relevant shape share one entry
/// (e.g. the workload kinds Deployment/StatefulSet/DaemonSet/ReplicaSet/Job/ReplicationController
/// all reach a PodTemplateSpec at `spec.template` and have `status.conditions` merged by `type`).
const FIELDS: &[(TypeRef, &str, FieldSchema)] = &[
    (OBJECT_META, "finalizers", merge(&[], None)),
    (OBJECT_META, "ownerReferences", merge(&["uid"], None)),
    (PLAIN_KIND, "metadata", FieldSchema::Object(OBJECT_META)),
    (POD, "metadata", FieldSchema::Object(OBJECT_META)),
    (POD, "spec", FieldSchema::Object(POD_SPEC)),
    (POD, "status", FieldSchema::Object(POD_STATUS)),
    (POD_STATUS, "conditions", merge(&["type"], None)),
    (POD_STATUS, "podIPs", merge(&["ip"], None)),
    (POD_TEMPLATE, "metadata", FieldSchema::Object(OBJECT_META)),
    (POD_TEMPLATE, "template", FieldSchema::Object(POD_TEMPLATE_SPEC)),
    (POD_TEMPLATE_SPEC, "metadata", FieldSchema::Object(OBJECT_META)),
    (POD_TEMPLATE_SPEC, "spec", FieldSchema::Object(POD_SPEC)),
    (POD_SPEC, "containers", merge(&["name"], Some(CONTAINER))),
    (POD_SPEC, "initContainers", merge(&["name"], Some(CONTAINER))),
    (POD_SPEC, "ephemeralContainers", merge(&["name"], Some(EPHEMERAL_CONTAINER))),
    (POD_SPEC, "volumes", merge(&["name"], None)),
    (POD_SPEC, "imagePullSecrets", merge(&["name"], None)),
    (POD_SPEC, "hostAliases", merge(&["ip"], None)),
    (POD_SPEC, "topologySpreadConstraints", merge(&["topologyKey", "whenUnsatisfiable"], None)),
    (CONTAINER, "ports", merge(&["containerPort", "protocol"], None)),
    (CONTAINER, "env", merge(&["name"], None)),
    (CONTAINER, "volumeMounts", merge(&["mountPath"], None)),
    (CONTAINER, "volumeDevices", merge(&["devicePath"], None)),
    (EPHEMERAL_CONTAINER, "ports", merge(&["containerPort", "protocol"], None)),
    (EPHEMERAL_CONTAINER, "env", merge(&["name"], None)),
    (EPHEMERAL_CONTAINER, "volumeMounts", merge(&["mountPath"], None)),
    (EPHEMERAL_CONTAINER, "volumeDevices", merge(&["devicePath"], None)),
    (WORKLOAD, "metadata", FieldSchema::Object(OBJECT_META)),
    (WORKLOAD, "spec", FieldSchema::Object(WORKLOAD_SPEC)),
    (WORKLOAD, "status", FieldSchema::Object(WORKLOAD_STATUS)),
    (WORKLOAD_SPEC, "template", FieldSchema::Object(POD_TEMPLATE_SPEC)),
    (WORKLOAD_STATUS, "conditions", merge(&["type"], None)),
    (CRON_JOB, "metadata", FieldSchema::Object(OBJECT_META)),
    (CRON_JOB, "spec", FieldSchema::Object(CRON_JOB_SPEC)),
    (CRON_JOB_SPEC, "jobTemplate", FieldSchema::Object(JOB_TEMPLATE_SPEC)),
    (JOB_TEMPLATE_SPEC, "metadata", FieldSchema::Object(OBJECT_META)),
    (JOB_TEMPLATE_SPEC, "spec", FieldSchema::Object(WORKLOAD_SPEC)),
    (SERVICE, "metadata", FieldSchema::Object(OBJECT_META)),
    (SERVICE, "spec", FieldSchema::Object(SERVICE_SPEC)),
    (SERVICE, "status", FieldSchema::Object(SERVICE_STATUS)),
    (SERVICE_SPEC, "ports", merge(&["port", "protocol"], None)),
    (SERVICE_STATUS, "conditions", merge(&["type"], None)),
    (SERVICE_ACCOUNT, "metadata", FieldSchema::Object(OBJECT_META)),
    (SERVICE_ACCOUNT, "secrets", merge(&["name"], None)),
    (NODE, "metadata", FieldSchema::Object(OBJECT_META)),
    (NODE, "spec", FieldSchema::Object(NODE_SPEC)),
    (NODE, "status", FieldSchema::Object(NODE_STATUS)),
    (NODE_SPEC, "podCIDRs", merge(&[], None)),
    (NODE_STATUS, "conditions", merge(&["type"], None)),
    (NODE_STATUS, "addresses", merge(&["type"], None)),
    (CONDITIONS_KIND, "metadata", FieldSchema::Object(OBJECT_META)),
    (CONDITIONS_KIND, "status", FieldSchema::Object(CONDITIONS_STATUS)),
    (CONDITIONS_STATUS, "conditions", merge(&["type"], None)),
    (WEBHOOK_CONFIGURATION, "metadata", FieldSchema::Object(OBJECT_META)),
    (WEBHOOK_CONFIGURATION, "webhooks", merge(&["name"], None)),
];

/// The schema of `field` inside an object of type `ty`, if the schema has one that matters.
pub(crate) fn field_schema(ty: TypeRef, field: &str) -> Option<FieldSchema> {
    FIELDS.iter().find(|(t, f, _)| *t == ty && *f == field).map(|(_, _, s)| *s)
}

/// The element type of a merge list, if its elements are objects with merge lists inside.
pub(crate) fn element_type(schema: FieldSchema) -> Option<TypeRef> {
    match schema {
        FieldSchema::MergeList { element, .. } => element,
        FieldSchema::Object(_) => None,
    }
}

/// Kinds of the Kubernetes v1.21.2 API, by group, with the versions the schema has them in, and the
/// root type that holds their merge lists.
const KINDS: &[(&str, &[&str], &[&str], TypeRef)] = &[
    ("", &["v1"], &["Pod"], POD),
    ("", &["v1"], &["PodTemplate"], POD_TEMPLATE),
    ("", &["v1"], &["ReplicationController"], WORKLOAD),
    ("", &["v1"], &["Service"], SERVICE),
    ("", &["v1"], &["ServiceAccount"], SERVICE_ACCOUNT),
    ("", &["v1"], &["Node"], NODE),
    ("", &["v1"], &["Namespace", "PersistentVolumeClaim"], CONDITIONS_KIND),
    (
        "",
        &["v1"],
        &[
            "Binding", "ComponentStatus", "ConfigMap", "Endpoints", "Event", "LimitRange",
            "PersistentVolume", "ResourceQuota", "Secret", "EphemeralContainers",
        ],
        PLAIN_KIND,
    ),
    ("apps", &["v1"], &["Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"], WORKLOAD),
    ("apps", &["v1"], &["ControllerRevision"], PLAIN_KIND),
    ("batch", &["v1"], &["Job"], WORKLOAD),
    ("batch", &["v1", "v1beta1"], &["CronJob"], CRON_JOB),
    ("autoscaling", &["v1", "v2beta1", "v2beta2"], &["HorizontalPodAutoscaler"], PLAIN_KIND),
    ("policy", &["v1", "v1beta1"], &["PodDisruptionBudget"], CONDITIONS_KIND),
    ("policy", &["v1beta1"], &["PodSecurityPolicy"], PLAIN_KIND),
    (
        "admissionregistration.k8s.io",
        &["v1", "v1beta1"],
        &["MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"],
        WEBHOOK_CONFIGURATION,
    ),
    ("apiregistration.k8s.io", &["v1", "v1beta1"], &["APIService"], CONDITIONS_KIND),
    ("apiextensions.k8s.io", &["v1", "v1beta1"], &["CustomResourceDefinition"], PLAIN_KIND),
    (
        "rbac.authorization.k8s.io",
        &["v1", "v1beta1", "v1alpha1"],
        &["ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"],
        PLAIN_KIND,
    ),
    ("networking.k8s.io", &["v1", "v1beta1"], &["Ingress", "IngressClass"], PLAIN_KIND),
    ("networking.k8s.io", &["v1"], &["NetworkPolicy"], PLAIN_KIND),
    ("extensions", &["v1beta1"], &["Ingress"], PLAIN_KIND),
    (
        "storage.k8s.io",
        &["v1", "v1beta1"],
        &["CSIDriver", "CSINode", "StorageClass", "VolumeAttachment"],
        PLAIN_KIND,
    ),
    ("storage.k8s.io", &["v1alpha1"], &["VolumeAttachment", "CSIStorageCapacity"], PLAIN_KIND),
    ("storage.k8s.io", &["v1beta1"], &["CSIStorageCapacity"], PLAIN_KIND),
    ("scheduling.k8s.io", &["v1", "v1beta1", "v1alpha1"], &["PriorityClass"], PLAIN_KIND),
    ("coordination.k8s.io", &["v1", "v1beta1"], &["Lease"], PLAIN_KIND),
    ("discovery.k8s.io", &["v1", "v1beta1"], &["EndpointSlice"], PLAIN_KIND),
    ("events.k8s.io", &["v1", "v1beta1"], &["Event"], PLAIN_KIND),
    ("node.k8s.io", &["v1", "v1beta1", "v1alpha1"], &["RuntimeClass"], PLAIN_KIND),
    ("certificates.k8s.io", &["v1", "v1beta1"], &["CertificateSigningRequest"], PLAIN_KIND),
    (
        "flowcontrol.apiserver.k8s.io",
        &["v1beta1", "v1alpha1"],
        &["FlowSchema", "PriorityLevelConfiguration"],
        PLAIN_KIND,
    ),
    ("internal.apiserver.k8s.io", &["v1alpha1"], &["StorageVersion"], PLAIN_KIND),
];

/// The root schema of a resource, from its `apiVersion` and `kind` (kyaml's
/// `SchemaForResourceType`); None for kinds the embedded schema does not know.
pub(crate) fn root_type(api_version: &str, kind: &str) -> Option<TypeRef> {
    let (group, version) = match api_version.rsplit_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    };
    KINDS
        .iter()
        .find(|(g, versions, kinds, _)| *g == group && versions.contains(&version) && kinds.contains(&kind))
        .map(|(_, _, _, ty)| *ty)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_types_follow_the_v1_21_schema() {
        let cases: &[(&str, &str, bool)] = &[
            ("apps/v1", "Deployment", true),
            ("extensions/v1beta1", "Deployment", false),
            ("apps/v1beta1", "Deployment", false),
            ("batch/v1beta1", "CronJob", true),
            ("v1", "ConfigMap", true),
            ("kubeflow.org/v1", "Notebook", false),
            ("admissionregistration.k8s.io/v1beta1", "MutatingWebhookConfiguration", true),
        ];
        for (api_version, kind, known) in cases {
            assert_eq!(root_type(api_version, kind).is_some(), *known, "{api_version} {kind}");
        }
    }

    #[test]
    fn container_lists_merge_by_their_keys() {
        let pod_spec = root_type("v1", "Pod").and_then(|t| field_schema(t, "spec"));
        let Some(FieldSchema::Object(spec)) = pod_spec else { panic!("Pod.spec: {pod_spec:?}") };
        let containers = field_schema(spec, "containers").expect("containers");
        assert_eq!(containers.merge_keys(), Some(&["name"][..]));
        let container = element_type(containers).expect("Container type");
        assert_eq!(field_schema(container, "volumeMounts").and_then(|s| s.merge_keys()), Some(&["mountPath"][..]));
        assert_eq!(
            field_schema(container, "ports").and_then(|s| s.merge_keys()),
            Some(&["containerPort", "protocol"][..])
        );
        assert_eq!(field_schema(spec, "tolerations"), None, "tolerations have no patch strategy");
    }
}
