//! `kfctl upgrade`: move an app to another Kubeflow release with a plan.

pub mod carry;
