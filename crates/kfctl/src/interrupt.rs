//! Ctrl-C (SIGINT) and SIGTERM during a run that writes: the first stops new writes (requests in
//! flight finish, the inventory is written, the run says what was and was not applied); a second
//! exits at once. Exit codes follow the shell's: 130 for SIGINT, 143 for SIGTERM.

use std::sync::atomic::{AtomicI32, Ordering};

use tokio::sync::Notify;

/// The signal received (0: none).
static SIGNAL: AtomicI32 = AtomicI32::new(0);
static RECEIVED: Notify = Notify::const_new();

/// Why an object was not written: the run was interrupted before its write started.
pub const NOT_STARTED: &str = "not started: kfctl was interrupted";

/// A signal that asked kfctl to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interrupt {
    Int,
    Term,
}

impl Interrupt {
    /// The shell's exit code for a process stopped by this signal.
    pub fn exit_code(self) -> u8 {
        match self {
            Interrupt::Int => 130,
            Interrupt::Term => 143,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Interrupt::Int => "SIGINT (Ctrl-C)",
            Interrupt::Term => "SIGTERM",
        }
    }
}

/// The signal received, if any.
pub fn requested() -> Option<Interrupt> {
    match SIGNAL.load(Ordering::SeqCst) {
        2 => Some(Interrupt::Int),
        15 => Some(Interrupt::Term),
        _ => None,
    }
}

/// Resolves once a signal is received (at once if one was).
pub async fn received() {
    let notified = RECEIVED.notified();
    tokio::pin!(notified);
    notified.as_mut().enable();
    if requested().is_some() {
        return;
    }
    notified.await;
}

/// Listen for SIGINT and SIGTERM on the current runtime. Without it (library callers) nothing
/// is ever interrupted. `again` is the hint a second signal, which exits at once, prints: how to
/// finish what was cut off (`run `kfctl apply DIR` again: ...`).
pub fn install(again: String) -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    tokio::spawn(async move {
        loop {
            let got = tokio::select! {
                _ = int.recv() => Interrupt::Int,
                _ = term.recv() => Interrupt::Term,
            };
            if let Some(first) = requested() {
                eprintln!("{}: stopping now; requests in flight may or may not have reached the cluster\n  hint: {again}", got.name());
                std::process::exit(i32::from(first.exit_code()));
            }
            SIGNAL.store(if got == Interrupt::Int { 2 } else { 15 }, Ordering::SeqCst);
            RECEIVED.notify_waiters();
            eprintln!("{}: no new writes; finishing the requests in flight and writing the inventory (press Ctrl-C again to stop at once)", got.name());
        }
    });
    Ok(())
}
