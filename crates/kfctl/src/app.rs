//! The app directory: kfctl.yaml, the vendored registry, and rendering per component.

// The rendered-app types below are the contract between `app` (which renders) and `plan`/`apply`
// (which consume). They are written first so both halves build against the same shape.

/// Everything an app renders to, in render order, each object tagged with its component.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RenderedApp {
    pub objects: Vec<ComponentObject>,
}

/// One rendered Kubernetes object and the component (catalog name) it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct ComponentObject {
    pub component: String,
    pub object: serde_json::Value,
}
