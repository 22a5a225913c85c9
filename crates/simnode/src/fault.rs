//! Failures a test asks for: which pods to keep failing, and how.
//!
//! Two ways to ask, both toggled at run time:
//! - the pod annotation `simnode.kfctl.dev/fail: <Reason>` (set it in the pod template);
//! - the ConfigMap `kube-system/simnode-faults`: every data value is a rule
//!   `"<Reason> <namespace>/<pod-name-prefix>"` (namespace `*` matches every namespace; keys are
//!   free names so tests can add and remove their own rules). simnode watches it and re-evaluates
//!   every pod when it changes.
//!
//! Reasons: `CrashLoopBackOff`, `ImagePullBackOff`, `NotReady`.

use std::sync::{Arc, RwLock};

use futures::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::Api;
use kube::runtime::watcher;
use tokio::sync::watch;

use crate::log;

/// Annotation that makes one pod fail.
pub const FAIL_ANNOTATION: &str = "simnode.kfctl.dev/fail";
/// Namespace of the fault ConfigMap.
pub const CONFIG_MAP_NAMESPACE: &str = "kube-system";
/// Name of the fault ConfigMap.
pub const CONFIG_MAP_NAME: &str = "simnode-faults";

/// How a pod fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Containers crash repeatedly: waiting reason CrashLoopBackOff, restartCount increasing.
    CrashLoopBackOff,
    /// Image never pulls: waiting reason ImagePullBackOff, no restarts.
    ImagePullBackOff,
    /// Containers run but the readiness probe fails: Running, Ready False.
    NotReady,
}

/// A fault rule is not understood.
#[derive(Debug, thiserror::Error)]
pub enum FaultError {
    #[error("unknown failure reason {0:?} (expected CrashLoopBackOff, ImagePullBackOff or NotReady)")]
    UnknownReason(String),
    #[error("fault rule {0:?} is not \"<Reason> <namespace>/<pod-name-prefix>\"")]
    Malformed(String),
}

impl std::str::FromStr for Failure {
    type Err = FaultError;
    fn from_str(s: &str) -> Result<Self, FaultError> {
        match s.trim() {
            "CrashLoopBackOff" => Ok(Failure::CrashLoopBackOff),
            "ImagePullBackOff" => Ok(Failure::ImagePullBackOff),
            "NotReady" => Ok(Failure::NotReady),
            other => Err(FaultError::UnknownReason(other.to_string())),
        }
    }
}

/// "Pods in `namespace` whose name starts with `name_prefix` fail with `failure`."
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultRule {
    pub failure: Failure,
    pub namespace: String,
    pub name_prefix: String,
}

impl FaultRule {
    /// Parses `"<Reason> <namespace>/<pod-name-prefix>"`.
    pub fn parse(s: &str) -> Result<Self, FaultError> {
        let mut words = s.split_whitespace();
        let (Some(reason), Some(target), None) = (words.next(), words.next(), words.next()) else {
            return Err(FaultError::Malformed(s.to_string()));
        };
        let (namespace, name_prefix) =
            target.split_once('/').ok_or_else(|| FaultError::Malformed(s.to_string()))?;
        if namespace.is_empty() {
            return Err(FaultError::Malformed(s.to_string()));
        }
        Ok(FaultRule {
            failure: reason.parse()?,
            namespace: namespace.to_string(),
            name_prefix: name_prefix.to_string(),
        })
    }

    fn matches(&self, namespace: &str, name: &str) -> bool {
        (self.namespace == "*" || self.namespace == namespace) && name.starts_with(&self.name_prefix)
    }
}

/// The current rules (command line + ConfigMap), shared between the watcher and the pod loop.
#[derive(Clone)]
pub struct FaultBook {
    cli_rules: Arc<Vec<FaultRule>>,
    config_map_rules: Arc<RwLock<Vec<FaultRule>>>,
    changed_tx: watch::Sender<u64>,
}

impl FaultBook {
    pub fn new(cli_rules: Vec<FaultRule>) -> Self {
        FaultBook {
            cli_rules: Arc::new(cli_rules),
            config_map_rules: Arc::default(),
            changed_tx: watch::channel(0).0,
        }
    }

    /// The failure the pod should show, if any. The annotation wins over rules.
    pub fn failure_for(&self, pod: &Pod) -> Option<Failure> {
        let meta = &pod.metadata;
        if let Some(reason) = meta.annotations.as_ref().and_then(|a| a.get(FAIL_ANNOTATION)) {
            match reason.parse() {
                Ok(f) => return Some(f),
                Err(e) => log!(
                    "pod {}/{}: ignoring annotation {FAIL_ANNOTATION}: {e}",
                    meta.namespace.as_deref().unwrap_or_default(),
                    meta.name.as_deref().unwrap_or_default()
                ),
            }
        }
        let (ns, name) = (meta.namespace.as_deref()?, meta.name.as_deref()?);
        let from_config = self.config_map_rules.read().expect("fault rules lock");
        self.cli_rules
            .iter()
            .chain(from_config.iter())
            .find(|r| r.matches(ns, name))
            .map(|r| r.failure)
    }

    /// A receiver that sees a new value whenever the ConfigMap rules change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed_tx.subscribe()
    }

    fn set_config_map_rules(&self, rules: Vec<FaultRule>) {
        let mut current = self.config_map_rules.write().expect("fault rules lock");
        if *current != rules {
            *current = rules;
            drop(current);
            self.changed_tx.send_modify(|n| *n += 1);
        }
    }
}

/// Rules in a ConfigMap's data; malformed entries are logged and skipped so one bad rule does
/// not disable the others.
fn rules_of(cm: &ConfigMap) -> Vec<FaultRule> {
    let mut rules = Vec::new();
    for (key, value) in cm.data.iter().flatten() {
        match FaultRule::parse(value) {
            Ok(rule) => rules.push(rule),
            Err(e) => log!("{CONFIG_MAP_NAMESPACE}/{CONFIG_MAP_NAME} key {key:?}: {e}"),
        }
    }
    rules
}

/// Keeps the book's ConfigMap rules equal to `kube-system/simnode-faults` (absent = no rules).
pub async fn watch_config_map(client: kube::Client, book: FaultBook) -> anyhow::Result<()> {
    watch_named_config_map(client, CONFIG_MAP_NAME, move |cm| match cm {
        Some(cm) => {
            let rules = rules_of(cm);
            log!("fault rules from {CONFIG_MAP_NAME}: {rules:?}");
            book.set_config_map_rules(rules);
        }
        None => {
            log!("{CONFIG_MAP_NAME} deleted: no ConfigMap fault rules");
            book.set_config_map_rules(Vec::new());
        }
    })
    .await
}

/// Calls `apply` with the ConfigMap `kube-system/<name>` whenever it changes (None: deleted), for
/// settings tests change at run time.
pub async fn watch_named_config_map(
    client: kube::Client,
    name: &str,
    apply: impl Fn(Option<&ConfigMap>),
) -> anyhow::Result<()> {
    let api: Api<ConfigMap> = Api::namespaced(client, CONFIG_MAP_NAMESPACE);
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut stream = watcher(api, config).boxed();
    // The watcher retries on its own only with a backoff; we add it explicitly.
    loop {
        match stream.try_next().await {
            Ok(Some(watcher::Event::Apply(cm) | watcher::Event::InitApply(cm))) => apply(Some(&cm)),
            Ok(Some(watcher::Event::Delete(_))) => apply(None),
            Ok(Some(watcher::Event::Init | watcher::Event::InitDone)) => {}
            Ok(None) => anyhow::bail!("the ConfigMap watch of {name} ended"),
            Err(e) => {
                log!("watching {name}: {e}; retrying");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rules() {
        let r = FaultRule::parse("CrashLoopBackOff team-a/db-").unwrap();
        assert_eq!(r.failure, Failure::CrashLoopBackOff);
        assert!(r.matches("team-a", "db-0"));
        assert!(!r.matches("team-b", "db-0"));
        assert!(!r.matches("team-a", "web-0"));
        let any = FaultRule::parse("NotReady */").unwrap();
        assert!(any.matches("x", "y"));
        assert!(FaultRule::parse("Crashing a/b").is_err());
        assert!(FaultRule::parse("CrashLoopBackOff nopath").is_err());
        assert!(FaultRule::parse("CrashLoopBackOff a/b extra").is_err());
    }
}
