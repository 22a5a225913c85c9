//! core/v1 Events on the app's Application, one per step: phase started/applied, component
//! applied/ready, failures with their reason.

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use futures::StreamExt;
use kube::Client;
use kube::api::{Api, PostParams};
use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinHandle;

use super::application::{APPLICATION_API_VERSION, APPLICATION_KIND};
use crate::plan::AppTarget;
use crate::progress::{Progress, ProgressSink};

/// Records Events on the Application (and reports each as [`Progress::Event`]) without holding
/// up the caller: Events are written in order by a task of their own. Those that cannot be
/// written yet (the namespace does not exist before the first phase) are kept and written with
/// the next one that can. Call [`EventRecorder::flush`] before the operation ends.
pub struct EventRecorder<'a> {
    target: AppTarget,
    sink: &'a dyn ProgressSink,
    queue: std::sync::Mutex<Option<mpsc::UnboundedSender<Event>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl<'a> EventRecorder<'a> {
    pub fn new(client: Client, target: AppTarget, sink: &'a dyn ProgressSink) -> EventRecorder<'a> {
        let (queue, events) = mpsc::unbounded_channel();
        let writer = tokio::spawn(write_events(Api::namespaced(client, &target.namespace), events));
        EventRecorder { target, sink, queue: std::sync::Mutex::new(Some(queue)), writer: Mutex::new(Some(writer)) }
    }

    /// Record one event (`warning` for failures).
    pub fn record(&self, warning: bool, reason: &str, message: &str) {
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
        if let Some(queue) = self.queue.lock().expect("event queue lock").as_ref() {
            let _ = queue.send(event);
        }
    }

    /// Wait until every Event recorded so far is written (or given up on: Events are for people,
    /// a failure to write one never fails the operation). Later records are dropped.
    pub async fn flush(&self) {
        self.queue.lock().expect("event queue lock").take();
        if let Some(writer) = self.writer.lock().await.take() {
            let _ = writer.await;
        }
    }
}

/// Write `events` as they come, all that are queued at once; one that fails is kept and tried
/// again with the next (and once more at the end). Each carries its own timestamp, so the order
/// they land in does not matter.
async fn write_events(api: Api<Event>, mut events: mpsc::UnboundedReceiver<Event>) {
    let mut waiting: Vec<Event> = Vec::new();
    let mut closed = false;
    while !closed {
        match events.recv().await {
            Some(event) => waiting.push(event),
            None => closed = true,
        }
        while let Ok(event) = events.try_recv() {
            waiting.push(event);
        }
        let attempts = waiting.drain(..).map(|e| {
            let api = api.clone();
            async move { api.create(&PostParams::default(), &e).await.err().map(|_| e) }
        });
        let mut kept: Vec<Event> = futures::stream::iter(attempts).buffered(8).filter_map(|e| async move { e }).collect().await;
        // Never hold more than a handful: events are for people, not a queue.
        kept.truncate(50);
        waiting = kept;
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
