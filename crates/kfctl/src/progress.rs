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
    /// Waiting on one thing (a namespace, a notebook server), with why it is not there yet.
    Waiting { what: String, reason: Option<String> },
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
    /// Progress bars on a terminal (stderr): objects applied while phases run, components ready
    /// while waiting, a spinner while waiting on one thing; failures and phase ends on lines of
    /// their own above the bar.
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
    components: std::collections::BTreeMap<String, bool>,
    /// The bar drawn on a terminal, and what it counts.
    bar: Option<(Bar, indicatif::ProgressBar)>,
    /// The last waiting line printed in plain style (printed again only when it changes).
    last_waiting: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bar {
    Objects,
    Components,
    Waiting,
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

    /// A line above the bar (or alone when there is none).
    fn line(&self, state: &mut PrinterState, text: &str) {
        match &state.bar {
            Some((_, bar)) => bar.suspend(|| eprintln!("{text}")),
            None => eprintln!("{text}"),
        }
    }

    /// The terminal's bar of `kind`, replacing a bar of another kind.
    fn bar(state: &mut PrinterState, kind: Bar) -> &indicatif::ProgressBar {
        if state.bar.as_ref().is_some_and(|(k, _)| *k != kind)
            && let Some((_, old)) = state.bar.take()
        {
            old.finish_and_clear();
        }
        let (_, bar) = state.bar.get_or_insert_with(|| {
            let (bar, template) = match kind {
                Bar::Objects => (indicatif::ProgressBar::new(0), "{spinner} [{bar:30}] {pos}/{len} applied, {msg} ({elapsed})"),
                Bar::Components => (indicatif::ProgressBar::new(0), "{spinner} [{bar:30}] {pos}/{len} components ready {msg} ({elapsed})"),
                Bar::Waiting => (indicatif::ProgressBar::new_spinner(), "{spinner} {msg} ({elapsed})"),
            };
            bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
            bar.set_style(
                indicatif::ProgressStyle::with_template(template).expect("a valid progress template").progress_chars("=> "),
            );
            bar.enable_steady_tick(std::time::Duration::from_millis(120));
            (kind, bar)
        });
        bar
    }

    fn clear_bar(state: &mut PrinterState) {
        if let Some((_, bar)) = state.bar.take() {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Printer {
    fn drop(&mut self) {
        if let Ok(mut state) = self.state.lock() {
            Printer::clear_bar(&mut state);
        }
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
                // Phases run side by side: the bar counts over all that started.
                state.phase_objects += objects;
                self.line(&mut state, &format!("phase {phase}: {objects} objects"));
                if terminal {
                    let total = state.phase_objects as u64;
                    Printer::bar(&mut state, Bar::Objects).set_length(total);
                }
            }
            Progress::ObjectApplied { component, kind, namespace, name, outcome } => {
                state.done += 1;
                if outcome != "unchanged" {
                    state.changed += 1;
                }
                if terminal {
                    let (done, total, changed) = (state.done as u64, state.phase_objects as u64, state.changed);
                    let bar = Printer::bar(&mut state, Bar::Objects);
                    bar.set_length(total.max(done));
                    bar.set_position(done);
                    bar.set_message(format!("{changed} changed"));
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
                if terminal {
                    let total = state.components.len() as u64;
                    let ready_count = state.components.values().filter(|r| **r).count() as u64;
                    let waiting_on: Vec<&str> =
                        state.components.iter().filter(|(_, r)| !**r).map(|(c, _)| c.as_str()).take(3).collect();
                    let message = if waiting_on.is_empty() { String::new() } else { format!("(waiting on {})", waiting_on.join(", ")) };
                    let bar = Printer::bar(&mut state, Bar::Components);
                    bar.set_length(total);
                    bar.set_position(ready_count);
                    bar.set_message(message);
                }
            }
            Progress::Waiting { what, reason } => {
                let text = match reason {
                    Some(reason) => format!("waiting for {what}: {reason}"),
                    None => format!("waiting for {what}"),
                };
                if terminal {
                    Printer::bar(&mut state, Bar::Waiting).set_message(text);
                } else if state.last_waiting.as_deref() != Some(text.as_str()) {
                    self.line(&mut state, &text);
                    state.last_waiting = Some(text);
                }
            }
            Progress::Event { reason, message, warning } => {
                if warning {
                    self.line(&mut state, &format!("warning: {reason}: {message}"));
                }
            }
            Progress::Finished { ok, summary } => {
                Printer::clear_bar(&mut state);
                let word = if ok { "done" } else { "failed" };
                self.line(&mut state, &format!("{word}: {summary}"));
            }
        }
    }
}
