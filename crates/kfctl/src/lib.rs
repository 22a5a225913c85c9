//! kfctl: deploy Kubeflow with one command and keep it healthy.
//!
//! The library is a pipeline, one module per stage:
//! config -> registry -> app (render per component) -> plan -> apply -> health,
//! with `platform` back-ends in front of it and two faces on top (`cli`, `web`); `deploy` runs the
//! whole pipeline for both. `inventory` (what kfctl applied) and `discovery` (kinds to
//! API resources) serve both `apply` and `health`. `images` finds every image a render names and
//! rewrites them for the app's overrides. ARCHITECTURE.md follows one deploy through.

pub mod app;
pub mod apply;
pub mod bundle;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod deploy;
pub mod discovery;
pub mod health;
pub mod images;
pub mod interrupt;
pub mod inventory;
pub mod lock;
pub mod notebook;
pub mod oci;
pub mod plan;
pub mod platform;
pub mod progress;
pub mod registry;
pub mod tls;
pub mod upgrade;
pub mod web;
