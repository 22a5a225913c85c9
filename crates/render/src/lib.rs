//! kfctl's native kustomize engine.

pub mod builtin_config;
pub mod fieldspec;
pub mod resource;
pub mod transform;
