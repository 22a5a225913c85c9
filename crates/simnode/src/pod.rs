//! The kubelet's part for pods bound to simulated nodes: status, completion, failure, deletion.
//!
//! Stateless by design: each reconcile reads the pod's own status (startTime, container
//! startedAt, lastState.finishedAt) to know where the pod is in its life, so a restarted simnode
//! continues where the last one stopped.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Api, ResourceExt as _};

use crate::fault::{Failure, FaultBook};
use crate::pull::PullBook;
use crate::node::{FIELD_MANAGER, Fleet, SimNode};
use crate::{Args, log};

/// A pod could not be brought to its simulated state.
#[derive(Debug, thiserror::Error)]
pub enum PodError {
    #[error("pod {pod}: {source}")]
    Kube { pod: String, source: kube::Error },
    #[error(transparent)]
    Ipam(#[from] crate::ipam::IpamError),
}

struct Context {
    client: kube::Client,
    fleet: Arc<Fleet>,
    faults: FaultBook,
    pulls: PullBook,
    args: Args,
}

/// Runs the pod controller until the watch fails for good.
pub async fn run(
    client: kube::Client,
    fleet: Arc<Fleet>,
    faults: FaultBook,
    pulls: PullBook,
    args: Args,
) -> anyhow::Result<()> {
    let api: Api<Pod> = Api::all(client.clone());
    let rules_changed = futures::stream::select(changes(faults.subscribe()), changes(pulls.subscribe()));
    let controller = Controller::new(api, watcher::Config::default()).reconcile_all_on(rules_changed);
    let store = controller.store();
    let ctx = Arc::new(Context { client, fleet, faults, pulls, args });
    let released = ctx.clone();
    // IPs of pods that are gone are freed on the next reconcile round; a simple periodic sweep
    // over the cache is enough because IPs are plentiful (/24 per node, 110 pods max).
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            let live: std::collections::HashSet<String> =
                store.state().iter().filter_map(|p| p.metadata.uid.clone()).collect();
            released.fleet.pod_ips.retain(|uid| live.contains(uid));
        }
    });
    controller
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok(_) => {}
                // A requeued pod that was deleted meanwhile: nothing left to do.
                Err(kube::runtime::controller::Error::ObjectNotFound(_)) => {}
                // Reconcile errors were logged by error_policy and are retried there.
                Err(kube::runtime::controller::Error::ReconcilerFailed(..)) => {}
                Err(e) => log!("pod controller: {e}"),
            }
        })
        .await;
    anyhow::bail!("the pod watch ended")
}

fn error_policy(_pod: Arc<Pod>, error: &PodError, _ctx: Arc<Context>) -> Action {
    log!("{error}; retrying in 1s");
    Action::requeue(Duration::from_secs(1))
}

fn now() -> Time {
    Time(jiff::Timestamp::now())
}

/// Time elapsed since `t` (zero if `t` is in the future).
fn since(t: &Time) -> Duration {
    let elapsed = jiff::Timestamp::now().duration_since(t.0);
    Duration::try_from(elapsed).unwrap_or(Duration::ZERO)
}

fn is_job_pod(pod: &Pod) -> bool {
    pod.owner_references().iter().any(|o| o.kind == "Job" && o.controller == Some(true))
}

async fn reconcile(pod: Arc<Pod>, ctx: Arc<Context>) -> Result<Action, PodError> {
    let Some(node_name) = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) else {
        return Ok(Action::await_change()); // not scheduled yet
    };
    let Some(node) = ctx.fleet.node(node_name) else {
        return Ok(Action::await_change()); // someone else's node
    };
    let (namespace, name) = (pod.namespace().unwrap_or_default(), pod.name_any());
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let kube_err = |source| PodError::Kube { pod: format!("{namespace}/{name}"), source };

    if pod.metadata.deletion_timestamp.is_some() {
        // A kubelet deletes with grace 0 once the containers stopped; ours stop at once.
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions { uid: pod.metadata.uid.clone(), resource_version: None }),
            ..Default::default()
        };
        match api.delete(&name, &dp).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => return Err(kube_err(e)),
        }
        if let Some(uid) = &pod.metadata.uid {
            ctx.fleet.pod_ips.release(uid);
        }
        return Ok(Action::await_change());
    }

    let status = pod.status.clone().unwrap_or_default();
    if matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) {
        return Ok(Action::await_change());
    }

    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let host_network = pod.spec.as_ref().and_then(|s| s.host_network).unwrap_or(false);
    let pod_ip = if host_network {
        node.internal_ip
    } else {
        if let Some(ip) = status.pod_ip.as_deref().and_then(|ip| ip.parse::<Ipv4Addr>().ok()) {
            ctx.fleet.pod_ips.adopt(node.index, &uid, ip);
        }
        ctx.fleet.pod_ips.ip_for(node.index, &node.name, &uid)?
    };

    // Pods of opted-in namespaces start only once their images resolve (checked until then).
    let unpullable = match ctx.pulls.policy_for(&namespace) {
        Some(policy) if !containers_started(&status) => {
            crate::pull::first_unpullable(&policy, &ctx.client, &pod).await
        }
        _ => None,
    };
    let next = plan(&pod, node, pod_ip, &ctx, unpullable);
    if let Some(new_status) = next.status {
        log!(
            "pod {namespace}/{name} on {}: {} ready={} ip={pod_ip}{}",
            node.name,
            new_status.phase.as_deref().unwrap_or("?"),
            new_status.conditions.iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True"),
            new_status
                .container_statuses
                .iter()
                .flatten()
                .find_map(|c| c.state.as_ref()?.waiting.as_ref()?.reason.clone())
                .map(|r| format!(" waiting={r}"))
                .unwrap_or_default()
        );
        let patch = serde_json::json!({ "status": new_status });
        let pp = PatchParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() };
        api.patch_status(&name, &pp, &Patch::Merge(&patch)).await.map_err(kube_err)?;
    }
    Ok(next.action)
}

/// What to write (if anything) and when to look again.
struct Step {
    status: Option<PodStatus>,
    action: Action,
}

/// The simulated state the pod should be in now, given its current status.
fn plan(pod: &Pod, node: &SimNode, pod_ip: Ipv4Addr, ctx: &Context, unpullable: Option<(String, String)>) -> Step {
    let status = pod.status.clone().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    let start_time = status.start_time.clone();
    let started = start_time.clone().unwrap_or_else(now);
    let base = PodStatus {
        host_ip: Some(node.internal_ip.to_string()),
        host_ips: None,
        pod_ip: Some(pod_ip.to_string()),
        pod_ips: Some(vec![PodIP { ip: pod_ip.to_string() }]),
        start_time: Some(started.clone()),
        qos_class: status.qos_class.clone(),
        ..Default::default()
    };

    let delay = ctx.args.pod_ready_delay();
    let waited = start_time.as_ref().map(since).unwrap_or(Duration::ZERO);
    if !delay.is_zero() && (start_time.is_none() || waited < delay) {
        // ContainerCreating until the delay passed.
        if start_time.is_some() {
            return Step { status: None, action: Action::requeue(delay - waited) };
        }
        let containers = spec.containers.iter().map(|c| waiting(c, "ContainerCreating", "", 0, None)).collect();
        let s = PodStatus {
            phase: Some("Pending".into()),
            conditions: Some(conditions(&status, &started, true, false, false, "ContainersNotReady")),
            container_statuses: Some(containers),
            ..base
        };
        return Step { status: Some(s), action: Action::requeue(delay) };
    }

    let init_statuses = (!spec.init_containers.as_deref().unwrap_or_default().is_empty()).then(|| {
        spec.init_containers.iter().flatten().map(|c| terminated(c, 0, "Completed", &started, 0)).collect()
    });
    if let Some((image, why)) = unpullable {
        // As a kubelet: ErrImagePull on the first failed pull, ImagePullBackOff while backing off.
        let backing_off = spec.containers.iter().any(|c| {
            current_container(&status, &c.name)
                .and_then(|s| s.state.as_ref()?.waiting.as_ref()?.reason.clone())
                .is_some_and(|r| r == "ErrImagePull" || r == "ImagePullBackOff")
        });
        let reason = if backing_off { "ImagePullBackOff" } else { "ErrImagePull" };
        let message = format!("Failed to pull image {image:?}: {why} (simnode)");
        let containers = spec.containers.iter().map(|c| waiting(c, reason, &message, 0, None)).collect();
        let desired = PodStatus {
            phase: Some("Pending".into()),
            conditions: Some(conditions(&status, &started, true, false, false, "ContainersNotReady")),
            container_statuses: Some(containers),
            ..base
        };
        let changed = !same_observable_state(&status, &desired);
        let action = Action::requeue(crate::pull::backoff(since(&started)));
        return Step { status: changed.then_some(desired), action };
    }
    let failure = ctx.faults.failure_for(pod);
    let restarts_now = |c: &Container| current_container(&status, &c.name).map(|s| s.restart_count).unwrap_or(0);

    let (phase, ready, containers, action, reason) = match failure {
        Some(Failure::CrashLoopBackOff) => {
            let interval = ctx.args.crash_interval();
            let containers: Vec<ContainerStatus> = spec
                .containers
                .iter()
                .map(|c| {
                    let prev = current_container(&status, &c.name);
                    let last_crash = prev
                        .and_then(|p| p.last_state.as_ref())
                        .and_then(|s| s.terminated.as_ref())
                        .and_then(|t| t.finished_at.clone());
                    let due = last_crash.as_ref().is_none_or(|t| since(t) >= interval);
                    let (restarts, crashed_at) = if due {
                        (restarts_now(c) + 1, now())
                    } else {
                        (restarts_now(c), last_crash.clone().unwrap_or_else(now))
                    };
                    let message = format!("back-off restarting failed container {} (simnode)", c.name);
                    waiting(c, "CrashLoopBackOff", &message, restarts, Some(crashed_at))
                })
                .collect();
            ("Running", false, containers, Action::requeue(interval), "ContainersNotReady")
        }
        Some(Failure::ImagePullBackOff) => {
            let containers = spec
                .containers
                .iter()
                .map(|c| {
                    let message = format!("Back-off pulling image {:?} (simnode)", c.image.as_deref().unwrap_or(""));
                    waiting(c, "ImagePullBackOff", &message, 0, None)
                })
                .collect();
            ("Pending", false, containers, Action::await_change(), "ContainersNotReady")
        }
        Some(Failure::NotReady) => {
            let containers = spec.containers.iter().map(|c| running(c, &status, false, restarts_now(c))).collect();
            ("Running", false, containers, Action::await_change(), "ContainersNotReady")
        }
        None if is_job_pod(pod) => {
            let ran_since = spec
                .containers
                .iter()
                .filter_map(|c| current_container(&status, &c.name))
                .filter_map(|s| s.state.as_ref()?.running.as_ref()?.started_at.clone())
                .min();
            match ran_since {
                Some(t) if since(&t) >= ctx.args.job_duration() => {
                    let containers = spec
                        .containers
                        .iter()
                        .map(|c| terminated(c, 0, "Completed", &t, restarts_now(c)))
                        .collect();
                    ("Succeeded", false, containers, Action::await_change(), "PodCompleted")
                }
                Some(t) => {
                    let containers = spec.containers.iter().map(|c| running(c, &status, true, restarts_now(c))).collect();
                    ("Running", true, containers, Action::requeue(ctx.args.job_duration() - since(&t)), "")
                }
                None => {
                    let containers = spec.containers.iter().map(|c| running(c, &status, true, restarts_now(c))).collect();
                    ("Running", true, containers, Action::requeue(ctx.args.job_duration()), "")
                }
            }
        }
        None => {
            let containers = spec.containers.iter().map(|c| running(c, &status, true, restarts_now(c))).collect();
            ("Running", true, containers, Action::await_change(), "")
        }
    };

    let desired = PodStatus {
        phase: Some(phase.into()),
        conditions: Some(conditions(&status, &started, true, ready, phase == "Succeeded", reason)),
        container_statuses: Some(containers),
        init_container_statuses: init_statuses,
        ..base
    };
    let status_changed = !same_observable_state(&status, &desired);
    Step { status: status_changed.then_some(desired), action }
}

/// Whether two statuses look the same to a controller (ignoring timestamps we re-derive).
fn same_observable_state(current: &PodStatus, desired: &PodStatus) -> bool {
    let summary = |s: &PodStatus| {
        let containers: Vec<_> = s
            .container_statuses
            .iter()
            .flatten()
            .map(|c| {
                let state = c.state.as_ref();
                (
                    c.name.clone(),
                    c.ready,
                    c.started,
                    c.restart_count,
                    state.and_then(|s| s.waiting.as_ref()).and_then(|w| w.reason.clone()),
                    state.and_then(|s| s.terminated.as_ref()).map(|t| t.exit_code),
                    state.is_some_and(|s| s.running.is_some()),
                )
            })
            .collect();
        let conditions: Vec<_> =
            s.conditions.iter().flatten().map(|c| (c.type_.clone(), c.status.clone())).collect();
        (s.phase.clone(), s.pod_ip.clone(), s.host_ip.clone(), containers, conditions)
    };
    summary(current) == summary(desired)
}

/// Whether the pod's containers got past pulling (running or terminated): no pull check then.
fn containers_started(status: &PodStatus) -> bool {
    let statuses = status.container_statuses.as_deref().unwrap_or_default();
    !statuses.is_empty()
        && statuses.iter().all(|c| c.state.as_ref().is_some_and(|s| s.running.is_some() || s.terminated.is_some()))
}

fn current_container<'a>(status: &'a PodStatus, name: &str) -> Option<&'a ContainerStatus> {
    status.container_statuses.iter().flatten().find(|c| c.name == name)
}

fn container_id(c: &Container) -> String {
    format!("simnode://{}", c.name)
}

fn base_container(c: &Container, restart_count: i32) -> ContainerStatus {
    ContainerStatus {
        name: c.name.clone(),
        image: c.image.clone().unwrap_or_default(),
        image_id: format!("simnode://{}", c.image.as_deref().unwrap_or_default()),
        restart_count,
        ..Default::default()
    }
}

fn running(c: &Container, status: &PodStatus, ready: bool, restart_count: i32) -> ContainerStatus {
    // Keep the original start time so a running container does not look restarted.
    let started_at = current_container(status, &c.name)
        .and_then(|s| s.state.as_ref()?.running.as_ref()?.started_at.clone())
        .unwrap_or_else(now);
    ContainerStatus {
        ready,
        started: Some(true),
        container_id: Some(container_id(c)),
        state: Some(ContainerState {
            running: Some(ContainerStateRunning { started_at: Some(started_at) }),
            ..Default::default()
        }),
        ..base_container(c, restart_count)
    }
}

fn waiting(c: &Container, reason: &str, message: &str, restart_count: i32, crashed_at: Option<Time>) -> ContainerStatus {
    ContainerStatus {
        ready: false,
        started: Some(false),
        state: Some(ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(reason.into()),
                message: (!message.is_empty()).then(|| message.to_string()),
            }),
            ..Default::default()
        }),
        last_state: crashed_at.map(|t| ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: 1,
                reason: Some("Error".into()),
                started_at: Some(t.clone()),
                finished_at: Some(t),
                container_id: Some(container_id(c)),
                ..Default::default()
            }),
            ..Default::default()
        }),
        container_id: crashed_at_id(c, restart_count),
        ..base_container(c, restart_count)
    }
}

fn crashed_at_id(c: &Container, restart_count: i32) -> Option<String> {
    (restart_count > 0).then(|| container_id(c))
}

fn terminated(c: &Container, exit_code: i32, reason: &str, started: &Time, restart_count: i32) -> ContainerStatus {
    ContainerStatus {
        ready: false,
        started: Some(false),
        container_id: Some(container_id(c)),
        state: Some(ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code,
                reason: Some(reason.into()),
                started_at: Some(started.clone()),
                finished_at: Some(now()),
                container_id: Some(container_id(c)),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..base_container(c, restart_count)
    }
}

/// PodScheduled/Initialized/ContainersReady/Ready, keeping lastTransitionTime when unchanged.
fn conditions(
    current: &PodStatus,
    started: &Time,
    initialized: bool,
    ready: bool,
    completed: bool,
    not_ready_reason: &str,
) -> Vec<PodCondition> {
    let flag = |b: bool| if b { "True" } else { "False" };
    let wanted = [
        ("PodScheduled", "True", ""),
        ("Initialized", flag(initialized), if completed { "PodCompleted" } else { "" }),
        ("ContainersReady", flag(ready), if ready { "" } else { not_ready_reason }),
        ("Ready", flag(ready), if ready { "" } else { not_ready_reason }),
    ];
    wanted
        .into_iter()
        .map(|(type_, status, reason)| {
            let previous = current.conditions.iter().flatten().find(|c| c.type_ == type_);
            let since = match previous {
                Some(p) if p.status == status => p.last_transition_time.clone(),
                _ if type_ == "PodScheduled" => Some(started.clone()),
                _ => Some(now()),
            };
            PodCondition {
                type_: type_.into(),
                status: status.into(),
                reason: (!reason.is_empty()).then(|| reason.to_string()),
                last_transition_time: since,
                ..Default::default()
            }
        })
        .collect()
}

/// Each change of the fault rules as one `()`, to drive `reconcile_all_on`.
fn changes(rx: tokio::sync::watch::Receiver<u64>) -> impl futures::Stream<Item = ()> + Send + 'static {
    futures::stream::unfold(rx, |mut rx| async move {
        rx.changed().await.ok()?;
        Some(((), rx))
    })
}
