//! One writer per app: a `coordination.k8s.io/v1` Lease named after the app, in the app's
//! namespace, held while `apply`, `delete`, `upgrade` or a web-app job writes the app's objects.
//!
//! The holder renews it every third of its duration; a holder that dies stops renewing, and the
//! next writer takes the Lease over once it has expired. Whoever finds it held waits (saying who
//! holds it) or, with `--no-wait`, fails at once. `KFCTL_LOCK_LEASE_SECONDS` sets the duration
//! (30 s by default; tests use a few seconds).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use kube::Client;

use crate::plan::{AppTarget, MANAGED_BY_LABEL};
use crate::progress::{Progress, ProgressSink};

/// The environment variable that sets the Lease's duration in seconds.
pub const LEASE_SECONDS_ENV: &str = "KFCTL_LOCK_LEASE_SECONDS";
const DEFAULT_LEASE_SECONDS: i32 = 30;
/// The annotation holding what the holder is doing (`kfctl apply`, `web-app job ...`).
const PURPOSE_ANNOTATION: &str = "kfctl.kubeflow.org/purpose";

/// Why the lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("app {app} is locked by {holder} ({purpose}), renewed {renewed} ago, Lease {namespace}/{lease}\n  hint: wait for it to finish (run again without --no-wait to wait), or, if that process is gone, the lock expires {expires}")]
    Held { app: String, namespace: String, lease: String, holder: String, purpose: String, renewed: String, expires: String },
    #[error("interrupted while waiting for the lock of app {app}, held by {holder} ({purpose}); nothing was written")]
    Interrupted { app: String, holder: String, purpose: String },
    #[error("not allowed to use the app's lock (Lease {namespace}/{lease}): {reason}")]
    Forbidden { namespace: String, lease: String, reason: String },
    #[error("cannot take the lock of app {app} (Lease {namespace}/{lease}): {reason}\n  hint: kfctl needs to get, create, update and delete Leases (coordination.k8s.io) in namespace {namespace}; check the cluster is reachable and `kubectl auth can-i create leases -n {namespace}`")]
    Api { app: String, namespace: String, lease: String, reason: String },
}

/// The Lease's name for an app.
pub fn lease_name(target: &AppTarget) -> String {
    format!("kfctl-lock-{}", target.name)
}

/// How long a Lease lasts without renewal.
fn lease_duration() -> Duration {
    let seconds = std::env::var(LEASE_SECONDS_ENV).ok().and_then(|s| s.parse::<i32>().ok()).filter(|s| *s > 0);
    Duration::from_secs(seconds.unwrap_or(DEFAULT_LEASE_SECONDS) as u64)
}

/// Who this process is: `user@host pid N`.
pub fn holder_identity() -> String {
    let user = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "unknown".into());
    let host = hostname::get().ok().and_then(|h| h.into_string().ok()).unwrap_or_else(|| "unknown-host".into());
    format!("{user}@{host} pid {}", std::process::id())
}

/// The lock, held until [`LockGuard::release`] (or, if the process dies, until it expires).
pub struct LockGuard {
    /// None when the user may not use Leases there: the run goes on without a lock.
    held: Option<HeldLease>,
}

/// A Lease this process holds.
struct HeldLease {
    api: Api<Lease>,
    name: String,
    /// The last Lease this process wrote (renewals replace it).
    lease: Arc<Mutex<Lease>>,
    renewer: tokio::task::JoinHandle<()>,
    /// To look, at release, whether a namespace a lock created is still needed.
    client: Client,
    namespace: String,
}

impl LockGuard {
    /// Stop renewing and delete the Lease (only if it is still this process's).
    pub async fn release(self) {
        let Some(held) = self.held else { return };
        held.release().await;
    }
}

impl HeldLease {
    async fn release(self) {
        self.renewer.abort();
        // An aborted renewal may still be mid-request: let it end before reading what it wrote.
        while !self.renewer.is_finished() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut lease = self.lease.lock().expect("lease lock").clone();
        let me = lease.spec.as_ref().and_then(|s| s.holder_identity.clone());
        for _ in 0..3 {
            let rv = lease.metadata.resource_version.clone();
            let params = DeleteParams { preconditions: Some(Preconditions { resource_version: rv, uid: None }), ..Default::default() };
            match self.api.delete(&self.name, &params).await {
                // A renewal cut off by the abort may still reach the server after its request
                // left (the client's buffer sends it on), so the Lease is newer than the one
                // read above: still this process's, it goes at its new version.
                Err(kube::Error::Api(s)) if s.code == 409 => match self.api.get_opt(&self.name).await {
                    Ok(Some(current)) if current.spec.as_ref().and_then(|s| s.holder_identity.clone()) == me => lease = current,
                    // Taken over by another writer, or gone: not ours to delete.
                    _ => break,
                },
                // Deleted, or gone already (its namespace deleted by this very run, say).
                _ => break,
            }
        }
        remove_if_unused(&self.client, &self.namespace).await;
    }
}

impl Drop for HeldLease {
    fn drop(&mut self) {
        // Not released (an error path): stop renewing; the Lease expires on its own.
        self.renewer.abort();
    }
}

/// Take the lock of `target` for `purpose` (`kfctl apply`, `web-app job 1234`). When another
/// holder has it: with `wait`, say who and wait until it is released or expires; without, fail
/// at once naming the holder. A missing app namespace is created (the app's own apply would).
pub async fn acquire(client: &Client, target: &AppTarget, purpose: &str, wait: bool, sink: &dyn ProgressSink) -> Result<LockGuard, LockError> {
    match acquire_lease(client, target, purpose, wait, sink).await {
        Ok(held) => Ok(LockGuard { held: Some(held) }),
        // A user who may not use Leases can still be allowed to write the app (the RBAC
        // preflight says what else is missing): go on without the lock, and say so.
        Err(LockError::Forbidden { reason, namespace, .. }) => {
            sink.report(Progress::Message {
                text: format!(
                    "warning: running without the app's lock (another kfctl run could write at the same time): {reason}\n  hint: allow get, create, update and delete on leases.coordination.k8s.io in namespace {namespace}"
                ),
            });
            Ok(LockGuard { held: None })
        }
        Err(e) => Err(e),
    }
}

async fn acquire_lease(client: &Client, target: &AppTarget, purpose: &str, wait: bool, sink: &dyn ProgressSink) -> Result<HeldLease, LockError> {
    let name = lease_name(target);
    let api: Api<Lease> = Api::namespaced(client.clone(), &target.namespace);
    let duration = lease_duration();
    let me = holder_identity();
    let api_error = |e: kube::Error| match e {
        kube::Error::Api(s) if s.code == 403 => {
            LockError::Forbidden { namespace: target.namespace.clone(), lease: name.clone(), reason: s.message.clone() }
        }
        e => LockError::Api {
            app: target.name.clone(),
            namespace: target.namespace.clone(),
            lease: name.clone(),
            reason: crate::cluster::error_chain(&e),
        },
    };
    let mut said_waiting: Option<String> = None;
    loop {
        let now = Timestamp::now();
        let mine = lease_for(&name, target, &me, purpose, duration, now);
        let existing = api.get_opt(&name).await.map_err(api_error)?;
        let written = match existing {
            None => match api.create(&PostParams::default(), &mine).await {
                Ok(lease) => Some(lease),
                Err(kube::Error::Api(s)) if s.code == 409 => None,
                // The namespace is being deleted (a delete of the app): wait until it is gone.
                Err(kube::Error::Api(s)) if s.code == 403 && s.message.contains("being terminated") => None,
                Err(kube::Error::Api(s)) if s.code == 404 => {
                    create_namespace(client, &target.namespace).await.map_err(api_error)?;
                    None
                }
                Err(e) => return Err(api_error(e)),
            },
            // Ours already: a create the outage layer sent again after the first one went in.
            Some(current) if current.spec.as_ref().and_then(|s| s.holder_identity.as_deref()) == Some(me.as_str()) => Some(current),
            Some(current) => {
                let held = Held::of(&current, now);
                if held.live {
                    if !wait {
                        return Err(held.error(target, &name));
                    }
                    let text = format!(
                        "waiting for the lock of app {}: held by {} ({}) since {}, Lease {}/{}",
                        target.name, held.holder, held.purpose, held.since, target.namespace, name
                    );
                    if said_waiting.as_deref() != Some(text.as_str()) {
                        sink.report(Progress::Message { text: text.clone() });
                        said_waiting = Some(text);
                    }
                    // Ctrl-C while waiting (where the face listens): stop; nothing was written.
                    tokio::select! {
                        () = tokio::time::sleep(poll_interval(duration)) => {}
                        () = crate::interrupt::received() => {
                            return Err(LockError::Interrupted { app: target.name.clone(), holder: held.holder.clone(), purpose: held.purpose.clone() });
                        }
                    }
                    continue;
                }
                // Released or expired: take it over, unless someone else is quicker.
                let mut takeover = mine.clone();
                takeover.metadata.resource_version = current.metadata.resource_version.clone();
                let transitions = current.spec.as_ref().and_then(|s| s.lease_transitions).unwrap_or(0);
                if let Some(spec) = takeover.spec.as_mut() {
                    spec.lease_transitions = Some(transitions + 1);
                }
                match api.replace(&name, &PostParams::default(), &takeover).await {
                    Ok(lease) => {
                        if !held.holder.is_empty() {
                            sink.report(Progress::Message {
                                text: format!(
                                    "took over the lock of app {}: its holder {} ({}) stopped renewing it {} ago",
                                    target.name, held.holder, held.purpose, held.expired_for
                                ),
                            });
                        }
                        Some(lease)
                    }
                    Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => None,
                    Err(e) => return Err(api_error(e)),
                }
            }
        };
        if let Some(lease) = written {
            if said_waiting.is_some() {
                sink.report(Progress::Message { text: format!("got the lock of app {}", target.name) });
            }
            let lease = Arc::new(Mutex::new(lease));
            let renewer = tokio::spawn(renew(api.clone(), name.clone(), lease.clone(), duration, sink_text(target)));
            return Ok(HeldLease { api, name, lease, renewer, client: client.clone(), namespace: target.namespace.clone() });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What a renewal failure says (the renewer runs on its own task, without the caller's sink).
fn sink_text(target: &AppTarget) -> String {
    format!("app {} (Lease {}/{})", target.name, target.namespace, lease_name(target))
}

/// How often a waiter looks again.
fn poll_interval(duration: Duration) -> Duration {
    (duration / 6).clamp(Duration::from_millis(250), Duration::from_secs(2))
}

/// Renew every third of the duration until aborted. A Lease taken by another holder (this
/// process stalled past its expiry) is not taken back: say so on stderr.
async fn renew(api: Api<Lease>, name: String, lease: Arc<Mutex<Lease>>, duration: Duration, what: String) {
    let mut failures = 0;
    loop {
        tokio::time::sleep(duration / 3).await;
        let mut next = lease.lock().expect("lease lock").clone();
        if let Some(spec) = next.spec.as_mut() {
            spec.renew_time = Some(MicroTime(Timestamp::now()));
        }
        match api.replace(&name, &PostParams::default(), &next).await {
            Ok(written) => {
                failures = 0;
                *lease.lock().expect("lease lock") = written;
            }
            Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => {
                // A renewal sent again after an outage conflicts with its own first copy: the
                // Lease is still ours when it still names this process.
                let me = next.spec.as_ref().and_then(|s| s.holder_identity.clone());
                if let Ok(Some(current)) = api.get_opt(&name).await
                    && current.spec.as_ref().and_then(|s| s.holder_identity.clone()) == me
                {
                    *lease.lock().expect("lease lock") = current;
                    continue;
                }
                eprintln!("warning: lost the lock of {what}: another writer took it over (this run stalled longer than the lease, {}s)", duration.as_secs());
                return;
            }
            Err(e) => {
                failures += 1;
                if failures == 2 {
                    eprintln!("warning: cannot renew the lock of {what}: {}; kfctl keeps trying", crate::cluster::error_chain(&e));
                }
            }
        }
    }
}

/// The Lease this process writes.
fn lease_for(name: &str, target: &AppTarget, me: &str, purpose: &str, duration: Duration, now: Timestamp) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(target.namespace.clone()),
            // Not the app label: the lock is kfctl's bookkeeping, not one of the app's objects.
            labels: Some([(MANAGED_BY_LABEL.to_owned(), "kfctl".to_owned())].into()),
            annotations: Some([(PURPOSE_ANNOTATION.to_owned(), purpose.to_owned())].into()),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(me.to_owned()),
            lease_duration_seconds: Some(duration.as_secs() as i32),
            acquire_time: Some(MicroTime(now)),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(0),
            ..Default::default()
        }),
    }
}

/// Another holder's Lease, as a waiter sees it.
struct Held {
    live: bool,
    holder: String,
    purpose: String,
    since: String,
    renewed_ago: String,
    expires_in: String,
    expired_for: String,
}

impl Held {
    fn of(lease: &Lease, now: Timestamp) -> Held {
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.unwrap_or_default();
        let renewed = spec.renew_time.or(spec.acquire_time.clone()).map(|t| t.0);
        let duration = SignedDuration::from_secs(spec.lease_duration_seconds.unwrap_or(DEFAULT_LEASE_SECONDS).into());
        // Judged by this host's clock against the holder's: hosts far out of step see a lease
        // expire early or late by their difference.
        let expiry = renewed.map(|r| r + duration);
        let live = !holder.is_empty() && expiry.is_some_and(|e| e > now);
        let purpose = lease.metadata.annotations.as_ref().and_then(|a| a.get(PURPOSE_ANNOTATION)).cloned().unwrap_or_else(|| "kfctl".into());
        let since = spec.acquire_time.map_or_else(|| "an unknown time".into(), |t| t.0.strftime("%H:%M:%S UTC").to_string());
        let secs = |d: SignedDuration| format!("{}s", d.as_secs().max(0));
        Held {
            live,
            holder,
            purpose,
            since,
            renewed_ago: renewed.map_or_else(|| "never".into(), |r| secs(now.duration_since(r))),
            expires_in: expiry.map_or_else(|| "now".into(), |e| format!("in {}", secs(e.duration_since(now)))),
            expired_for: expiry.map_or_else(|| "0s".into(), |e| secs(now.duration_since(e))),
        }
    }

    fn error(self, target: &AppTarget, lease: &str) -> LockError {
        LockError::Held {
            app: target.name.clone(),
            namespace: target.namespace.clone(),
            lease: lease.to_owned(),
            holder: self.holder,
            purpose: self.purpose,
            renewed: self.renewed_ago,
            expires: self.expires_in,
        }
    }
}

/// Marks a namespace a lock created (the app namespace did not exist).
const CREATED_FOR_LOCK_ANNOTATION: &str = "kfctl.kubeflow.org/created-for-lock";

/// Create the app namespace for its lock (a first apply, a delete after the namespace went).
async fn create_namespace(client: &Client, name: &str) -> Result<(), kube::Error> {
    let metadata = ObjectMeta {
        name: Some(name.to_owned()),
        labels: Some([(MANAGED_BY_LABEL.to_owned(), "kfctl".to_owned())].into()),
        annotations: Some([(CREATED_FOR_LOCK_ANNOTATION.to_owned(), "true".to_owned())].into()),
        ..Default::default()
    };
    match Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &Namespace { metadata, ..Default::default() }).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Delete a namespace a lock created (this run's or an earlier one's) when nothing is left in
/// it: not taken over by the app (no app label) and no ConfigMap (the inventory) but the one
/// Kubernetes puts in every namespace. A `delete --purge` after the app namespace went leaves
/// none behind.
async fn remove_if_unused(client: &Client, name: &str) {
    use k8s_openapi::api::core::v1::ConfigMap;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let Ok(Some(ns)) = namespaces.get_opt(name).await else { return };
    let created_for_lock = ns.metadata.annotations.as_ref().is_some_and(|a| a.contains_key(CREATED_FOR_LOCK_ANNOTATION));
    if !created_for_lock || ns.metadata.labels.as_ref().is_some_and(|l| l.contains_key(crate::plan::APP_LABEL)) {
        return;
    }
    let Ok(config_maps) = Api::<ConfigMap>::namespaced(client.clone(), name).list(&Default::default()).await else { return };
    if config_maps.items.iter().any(|c| c.metadata.name.as_deref() != Some("kube-root-ca.crt")) {
        return;
    }
    let _ = namespaces.delete(name, &DeleteParams::background()).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: &str, renewed_secs_ago: i64, duration: i32, now: Timestamp) -> Lease {
        let t = MicroTime(now - SignedDuration::from_secs(renewed_secs_ago));
        Lease {
            metadata: ObjectMeta::default(),
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.into()),
                lease_duration_seconds: Some(duration),
                acquire_time: Some(t.clone()),
                renew_time: Some(t),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn a_lease_is_held_until_it_expires_unrenewed() {
        let now = Timestamp::now();
        assert!(Held::of(&lease("a@h pid 1", 5, 30, now), now).live);
        let dead = Held::of(&lease("a@h pid 1", 31, 30, now), now);
        assert!(!dead.live);
        assert_eq!(dead.expired_for, "1s");
        assert!(!Held::of(&lease("", 0, 30, now), now).live, "a released lease (no holder) is free");
    }
}
