//! A job's progress as server-sent events, resumable.
//!
//! Each SSE event carries the job event's sequence number as its id. A browser that reconnects
//! sends `Last-Event-ID` and gets only what came after it, replayed from the on-disk log, then the
//! live feed; a page that loads afresh replays the whole log. The stream ends after the job's
//! last event (its outcome), so a finished job's page does not keep a connection open. A resumed
//! job's log holds the interruption's last event and goes on after it: the stream ends when the
//! log's newest event is a last one, not at any earlier one.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::stream::{self, Stream, StreamExt};
use tokio::sync::broadcast::error::RecvError;

use super::jobs::{Job, JobError, JobEvent};

/// The sequence number the client saw last: `Last-Event-ID`, else `?after=`, else 0.
pub fn resume_point(headers: &HeaderMap, after: Option<u64>) -> u64 {
    headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse().ok()).or(after).unwrap_or(0)
}

fn sse_event(event: &JobEvent) -> Event {
    Event::default().id(event.seq.to_string()).event("progress").json_data(event).unwrap_or_else(|_| Event::default().comment("unserializable event"))
}

/// The SSE stream of `job` after sequence number `after`.
pub async fn stream(job: Arc<Job>, after: u64) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, JobError> {
    // Subscribe before reading the log: an event appended in between is then in the live feed,
    // and the sequence filter below drops the ones the log already had.
    let live = job.subscribe();
    let reader = job.clone();
    // Read from the event the client saw last too, to know whether it was the last one.
    let read = tokio::task::spawn_blocking(move || {
        let mut events = reader.events_after(after.saturating_sub(1))?;
        let seen_last = events.first().is_some_and(|e| e.seq == after && e.last);
        events.retain(|e| e.seq > after);
        Ok::<_, JobError>((seen_last, events))
    });
    let (seen_last, past) = read.await.expect("event log reader panicked")?;
    let last_seen = past.last().map(|e| e.seq).unwrap_or(after);
    // The job's end is logged after its record is written (see `jobs`): the log's newest event
    // says whether more can come.
    let ended = past.last().map_or(seen_last, |e| e.last);

    let replay = stream::iter(past.into_iter().map(|e| Ok(sse_event(&e))));
    let live = stream::unfold((live, last_seen, ended), |(mut live, last_seen, ended)| async move {
        if ended {
            return None;
        }
        loop {
            match live.recv().await {
                Ok(event) if event.seq <= last_seen => continue,
                Ok(event) => {
                    let ended = event.last;
                    let seq = event.seq;
                    return Some((Ok(sse_event(&event)), (live, seq, ended)));
                }
                // Fell behind the channel: end the stream; the browser reconnects with
                // Last-Event-ID and the gap is replayed from disk.
                Err(RecvError::Lagged(_)) | Err(RecvError::Closed) => return None,
            }
        }
    });
    Ok(Sse::new(replay.chain(live)).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
