//! core/v1 Events on the app's Application, one per step: phase started/applied, component
//! applied/ready, failures with their reason.

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::Client;
use kube::api::{Api, PostParams};
use tokio::sync::Mutex;

use super::application::{APPLICATION_API_VERSION, APPLICATION_KIND};
use crate::plan::AppTarget;
use crate::progress::{Progress, ProgressSink};

/// Records Events on the Application (and reports each as [`Progress::Event`]). Events that
/// cannot be written yet (the namespace does not exist before the first phase) are kept and
/// written with the next one that can.
pub struct EventRecorder<'a> {
    client: Client,
    target: AppTarget,
    sink: &'a dyn ProgressSink,
    waiting: Mutex<Vec<Event>>,
}

impl<'a> EventRecorder<'a> {
    pub fn new(client: Client, target: AppTarget, sink: &'a dyn ProgressSink) -> EventRecorder<'a> {
        EventRecorder { client, target, sink, waiting: Mutex::new(Vec::new()) }
    }

    /// Record one event (`warning` for failures).
    pub async fn record(&self, warning: bool, reason: &str, message: &str) {
        self.sink.report(Progress::Event { reason: reason.to_owned(), message: message.to_owned(), warning });
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let event = Event {
            metadata: ObjectMeta {
                name: Some(format!("{}.{:016x}", self.target.name, rand::random::<u64>())),
                namespace: Some(self.target.namespace.clone()),
                ..Default::default()
            },
            involved_object: ObjectReference {
                api_version: Some(APPLICATION_API_VERSION.to_owned()),
                kind: Some(APPLICATION_KIND.to_owned()),
                name: Some(self.target.name.clone()),
                namespace: Some(self.target.namespace.clone()),
                ..Default::default()
            },
            reason: Some(reason.to_owned()),
            // The API server caps messages at 1 KiB.
            message: Some(truncate(message, 1000)),
            type_: Some(if warning { "Warning" } else { "Normal" }.to_owned()),
            source: Some(EventSource { component: Some("kfctl".to_owned()), host: None }),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            count: Some(1),
            reporting_component: Some("kfctl".to_owned()),
            ..Default::default()
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), &self.target.namespace);
        let mut waiting = self.waiting.lock().await;
        waiting.push(event);
        let mut kept = Vec::new();
        for e in waiting.drain(..) {
            if api.create(&PostParams::default(), &e).await.is_err() {
                kept.push(e);
            }
        }
        // Never hold more than a handful: events are for people, not a queue.
        kept.truncate(50);
        *waiting = kept;
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}
