//! What a long-running operation reports while it works.
//!
//! The CLI draws these on a terminal (or prints plain lines), `--output json` prints one JSON
//! object per line, and the web app streams them to the browser. One enum serves all three.

use serde::{Deserialize, Serialize};

/// One step of progress, in the order it happened.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Progress {
    /// A free-form line for a person (a platform step, a fetch, a hint).
    Message { text: String },
    /// A phase of the apply plan started (for example "namespaces", "crds", "webhooks", "rest").
    PhaseStarted { phase: String, objects: usize },
    /// A phase finished; `failed` objects did not apply.
    PhaseFinished { phase: String, applied: usize, failed: usize },
    /// One object was applied (created, changed or unchanged).
    ObjectApplied { component: String, kind: String, namespace: Option<String>, name: String, outcome: String },
    /// One object could not be applied, with the reason the API server gave.
    ObjectFailed { component: String, kind: String, namespace: Option<String>, name: String, reason: String },
    /// A component's readiness changed.
    ComponentStatus { component: String, ready: bool, reason: Option<String> },
    /// A Kubernetes Event kfctl recorded or observed.
    Event { reason: String, message: String, warning: bool },
    /// The operation ended.
    Finished { ok: bool, summary: String },
}

/// Where progress goes. Implementations must be cheap: they are called from the apply loop.
pub trait ProgressSink: Send + Sync {
    fn report(&self, progress: Progress);
}

/// A sink that drops everything (for library callers that do not care).
pub struct Silent;

impl ProgressSink for Silent {
    fn report(&self, _progress: Progress) {}
}

impl<F: Fn(Progress) + Send + Sync> ProgressSink for F {
    fn report(&self, progress: Progress) {
        self(progress)
    }
}
