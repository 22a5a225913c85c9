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
    /// A phase finished: `applied` objects are as configured (`changed` of them written by this
    /// run); `failed` objects did not apply.
    PhaseFinished {
        phase: String,
        applied: usize,
        #[serde(default)]
        changed: usize,
        failed: usize,
    },
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

/// Wall time per stage of a run, written to stderr when `KFCTL_STAGE_TIMES` is set (for
/// benchmarks; silent otherwise). Not [`Progress`]: it is for whoever measures kfctl, not for its
/// user, and it is the same for every face.
pub struct StageTimes {
    enabled: bool,
    last: std::time::Instant,
}

impl StageTimes {
    /// Enabled by the environment variable `KFCTL_STAGE_TIMES`.
    pub fn from_env() -> StageTimes {
        StageTimes { enabled: std::env::var_os("KFCTL_STAGE_TIMES").is_some(), last: std::time::Instant::now() }
    }

    /// The time since the previous mark, under `stage` (with `detail`).
    pub fn mark(&mut self, stage: &str, detail: &str) {
        if self.enabled {
            eprintln!("stage {stage}: {} ms{}{detail}", self.last.elapsed().as_millis(), if detail.is_empty() { "" } else { ", " });
        }
        self.last = std::time::Instant::now();
    }
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

/// How a [`Printer`] writes progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrintStyle {
    /// One JSON object per line on stdout (`--output json`).
    JsonLines,
    /// A live counter line on a terminal (stderr), with failures and phase ends on lines of
    /// their own.
    Terminal,
    /// Plain log lines (stderr), for logs and CI.
    Plain,
}

/// A [`ProgressSink`] for the command line.
pub struct Printer {
    style: PrintStyle,
    state: std::sync::Mutex<PrinterState>,
}

#[derive(Default)]
struct PrinterState {
    phase_objects: usize,
    done: usize,
    changed: usize,
    live_line: bool,
    components: std::collections::HashMap<String, bool>,
}

impl Printer {
    /// `json` selects JSON lines; otherwise a terminal on stderr gets the live display.
    pub fn new(json: bool) -> Printer {
        use std::io::IsTerminal;
        let style = if json {
            PrintStyle::JsonLines
        } else if std::io::stderr().is_terminal() {
            PrintStyle::Terminal
        } else {
            PrintStyle::Plain
        };
        Printer::with_style(style)
    }

    pub fn with_style(style: PrintStyle) -> Printer {
        Printer { style, state: std::sync::Mutex::new(PrinterState::default()) }
    }

    fn line(&self, state: &mut PrinterState, text: &str) {
        if state.live_line {
            eprint!("\r\x1b[2K");
            state.live_line = false;
        }
        eprintln!("{text}");
    }
}

fn object_name(kind: &str, namespace: &Option<String>, name: &str) -> String {
    match namespace {
        Some(ns) => format!("{kind} {ns}/{name}"),
        None => format!("{kind} {name}"),
    }
}

impl ProgressSink for Printer {
    fn report(&self, progress: Progress) {
        if self.style == PrintStyle::JsonLines {
            println!("{}", serde_json::to_string(&progress).expect("progress serializes"));
            return;
        }
        let mut state = self.state.lock().expect("printer lock");
        let terminal = self.style == PrintStyle::Terminal;
        match progress {
            Progress::Message { text } => self.line(&mut state, &text),
            Progress::PhaseStarted { phase, objects } => {
                // Phases run side by side: the live line counts over all that started.
                state.phase_objects += objects;
                self.line(&mut state, &format!("phase {phase}: {objects} objects"));
            }
            Progress::ObjectApplied { component, kind, namespace, name, outcome } => {
                state.done += 1;
                if outcome != "unchanged" {
                    state.changed += 1;
                }
                if terminal {
                    eprint!("\r\x1b[2K  {}/{} applied, {} changed", state.done, state.phase_objects, state.changed);
                    state.live_line = true;
                } else if outcome != "unchanged" {
                    self.line(&mut state, &format!("  {outcome} {} [{component}]", object_name(&kind, &namespace, &name)));
                }
            }
            Progress::ObjectFailed { component, kind, namespace, name, reason } => {
                self.line(&mut state, &format!("  FAILED {} [{component}]: {reason}", object_name(&kind, &namespace, &name)));
            }
            Progress::PhaseFinished { phase, applied, changed, failed } => {
                self.line(&mut state, &format!("phase {phase}: {applied} applied ({changed} changed), {failed} failed"));
            }
            Progress::ComponentStatus { component, ready, reason } => {
                if state.components.insert(component.clone(), ready) != Some(ready) {
                    let text = match (ready, reason) {
                        (true, _) => format!("component {component}: ready"),
                        (false, Some(r)) => format!("component {component}: not ready: {r}"),
                        (false, None) => format!("component {component}: not ready"),
                    };
                    self.line(&mut state, &text);
                }
            }
            Progress::Event { reason, message, warning } => {
                if warning {
                    self.line(&mut state, &format!("warning: {reason}: {message}"));
                }
            }
            Progress::Finished { ok, summary } => {
                let word = if ok { "done" } else { "failed" };
                self.line(&mut state, &format!("{word}: {summary}"));
            }
        }
    }
}
