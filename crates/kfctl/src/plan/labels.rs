//! The labels kfctl puts on every object it applies, and the field manager it applies with.
//!
//! Only `metadata.labels` is touched, never selectors or pod templates, and the recommended
//! `app.kubernetes.io/part-of` label is added only where upstream did not set its own: other
//! objects (aggregated ClusterRoles, webhook selectors, Services) may select on upstream values.

use serde_json::{Map, Value};

/// The field manager kfctl applies with (server-side apply), the inventory's too.
pub const FIELD_MANAGER: &str = "kfctl";

/// `app.kubernetes.io/managed-by: kfctl`.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// `app.kubernetes.io/part-of: kubeflow` (kept when upstream set its own).
pub const PART_OF_LABEL: &str = "app.kubernetes.io/part-of";
/// The kfctl app an object belongs to; the Application's selector and kfctl's ownership check.
pub const APP_LABEL: &str = "kfctl.kubeflow.org/app";
/// The kfctl component (catalog name) an object was rendered from.
pub const COMPONENT_LABEL: &str = "kfctl.kubeflow.org/component";

/// Label `object` as part of `app`, rendered from `component`.
pub fn add_labels(object: &mut Value, app: &str, component: &str) {
    let Some(obj) = object.as_object_mut() else { return };
    let metadata = obj.entry("metadata").or_insert_with(|| Value::Object(Map::new()));
    let Some(metadata) = metadata.as_object_mut() else { return };
    let labels = metadata.entry("labels").or_insert_with(|| Value::Object(Map::new()));
    if !labels.is_object() {
        *labels = Value::Object(Map::new());
    }
    let labels = labels.as_object_mut().expect("labels is an object");
    labels.insert(MANAGED_BY_LABEL.to_owned(), Value::from("kfctl"));
    labels.entry(PART_OF_LABEL).or_insert_with(|| Value::from("kubeflow"));
    labels.insert(APP_LABEL.to_owned(), Value::from(app));
    labels.insert(COMPONENT_LABEL.to_owned(), Value::from(component));
}

/// Label an object every kfctl app on the cluster shares (see [`super::ObjectRef::is_shared`]):
/// managed by kfctl, and nothing that names one app or component, so that no app's apply claims
/// it and no app's label-selected list, prune or delete finds it as its own.
pub fn add_shared_labels(object: &mut Value) {
    let Some(metadata) = object.as_object_mut().and_then(|o| o.entry("metadata").or_insert_with(|| Value::Object(Map::new())).as_object_mut())
    else {
        return;
    };
    let labels = metadata.entry("labels").or_insert_with(|| Value::Object(Map::new()));
    if !labels.is_object() {
        *labels = Value::Object(Map::new());
    }
    let labels = labels.as_object_mut().expect("labels is an object");
    labels.insert(MANAGED_BY_LABEL.to_owned(), Value::from("kfctl"));
    labels.remove(APP_LABEL);
    labels.remove(COMPONENT_LABEL);
}

/// Whether live `labels` say the object belongs to kfctl app `app`.
pub fn is_kfctl_owned(labels: Option<&std::collections::BTreeMap<String, String>>, app: &str) -> bool {
    labels.is_some_and(|l| l.get(APP_LABEL).map(String::as_str) == Some(app))
}
