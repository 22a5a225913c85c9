//! The app directory: kfctl.yaml, the vendored registry, and rendering per component.
