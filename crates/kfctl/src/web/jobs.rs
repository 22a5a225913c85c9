//! Deploy jobs kept on disk, so they survive a restart of the server.
//!
//! Each job has a directory `STATE/jobs/ID/` named by a server-generated id (32 hex digits; a
//! request can only name a job by such an id, which is checked before any path is built):
//! - `job.json`: what was asked for (without secrets) and the job's state;
//! - `events.jsonl`: the progress log, one [`JobEvent`] per line, numbered from 1;
//! - `app/`: the app directory the deploy writes (what the download packs);
//! - `private/`: credentials the job needs (an uploaded kubeconfig), mode 0700, never served.
//!
//! A job found `running` at start-up was cut off by a restart (or a kill): it is marked
//! `interrupted` and its log says so, rather than pretending it is still going. An interrupted
//! job can be resumed ([`Job::resume`]): the same job runs again on the app directory the
//! interruption left, and its log goes on after the interruption's last event.
//!
//! A job's end (its state in `job.json` and its last event in the log) is written under the
//! record's lock, state first: whoever sees the last event and then reads the record sees it
//! final, and a job already ended (by a shutdown) is not ended twice.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rand::RngCore;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::progress::{Progress, ProgressSink};

/// What went wrong with the job store.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("cannot {action} {path}: {source}\n  hint: check that the state directory is writable")]
    Io { action: &'static str, path: PathBuf, source: std::io::Error },
    #[error("job file {path} is not valid JSON: {source}")]
    Corrupt { path: PathBuf, source: serde_json::Error },
    #[error("no job with id {0}")]
    NotFound(String),
}

fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> JobError + 'a {
    move |source| JobError::Io { action, path: path.to_path_buf(), source }
}

/// A server-generated job id: 16 random bytes as 32 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct JobId(String);

impl JobId {
    /// A fresh random id.
    pub fn generate() -> JobId {
        let mut bytes = [0u8; 16];
        rand::rng().fill_bytes(&mut bytes);
        JobId(hex::encode(bytes))
    }

    /// Parses an id from a request; anything but 32 lowercase hex digits is refused, so a job id
    /// can never carry `/`, `..` or any other path syntax.
    pub fn parse(text: &str) -> Option<JobId> {
        (text.len() == 32 && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))).then(|| JobId(text.to_string()))
    }

    /// The id's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for JobId {
    type Error = String;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        JobId::parse(&text).ok_or_else(|| format!("not a job id: {text:?}"))
    }
}

impl From<JobId> for String {
    fn from(id: JobId) -> String {
        id.0
    }
}

impl std::fmt::Display for JobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Running,
    Succeeded,
    Failed,
    /// The server stopped while the job was running; what it did on the cluster is unknown.
    Interrupted,
}

impl JobState {
    /// Whether the job will not change any more (unless an interrupted one is resumed).
    pub fn is_final(self) -> bool {
        self != JobState::Running
    }
}

/// What a job does, which decides what resuming it runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// A deployment from the wizard (jobs written before kinds were recorded are deployments).
    #[default]
    Deploy,
    /// An upgrade of a deployed app to `version`.
    Upgrade,
}

/// What `job.json` holds: the request's public parts and the job's state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobRecord {
    pub id: JobId,
    #[serde(default)]
    pub kind: JobKind,
    /// The app's name (DNS-1123).
    pub name: String,
    /// The platform kind, for the job list.
    pub platform: String,
    /// The Kubeflow version.
    pub version: String,
    pub state: JobState,
    /// RFC 3339 timestamps.
    pub created: String,
    pub finished: Option<String>,
    /// One line on how it ended (the error's reason when it failed).
    pub summary: Option<String>,
    /// How to reach the dashboard and JupyterLab once it is ready.
    #[serde(default)]
    pub access: Vec<AccessLink>,
}

/// A way to reach a deployed UI: the port-forward command to run and the URL it serves.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AccessLink {
    pub label: String,
    pub url: String,
    /// The command that makes `url` reachable (a `kfctl open` port-forward), if one is needed.
    pub command: Option<String>,
}

/// One line of `events.jsonl`: a numbered progress event with its time.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct JobEvent {
    /// 1, 2, 3... in order; the SSE event id, so a reconnecting browser resumes after it.
    pub seq: u64,
    pub time: String,
    pub progress: Progress,
    /// The job's own last event (its outcome). Library steps report `finished` for themselves
    /// too (an apply ends with one), so the stream's end is marked here, not by the event type.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub last: bool,
}

fn now() -> String {
    jiff::Timestamp::now().to_string()
}

/// One job: its directory, its record, its log and the live feed of new events.
pub struct Job {
    pub id: JobId,
    pub dir: PathBuf,
    record: Mutex<JobRecord>,
    log: Mutex<LogWriter>,
    live: broadcast::Sender<JobEvent>,
}

struct LogWriter {
    file: File,
    next_seq: u64,
}

impl Job {
    /// The app directory the deploy writes.
    pub fn app_dir(&self) -> PathBuf {
        self.dir.join("app")
    }

    /// The directory for credentials the job needs; never served or archived.
    pub fn private_dir(&self) -> PathBuf {
        self.dir.join("private")
    }

    fn events_path(&self) -> PathBuf {
        self.dir.join("events.jsonl")
    }

    /// A copy of the job's record.
    pub fn record(&self) -> JobRecord {
        self.record.lock().expect("job record lock").clone()
    }

    /// Live events from now on (combine with [`Job::events_after`] to replay the past first).
    pub fn subscribe(&self) -> broadcast::Receiver<JobEvent> {
        self.live.subscribe()
    }

    /// Appends one event to the log and sends it to live subscribers.
    pub fn append(&self, progress: Progress) -> Result<JobEvent, JobError> {
        self.append_event(progress, false)
    }

    fn append_event(&self, progress: Progress, last: bool) -> Result<JobEvent, JobError> {
        let mut log = self.log.lock().expect("job log lock");
        let event = JobEvent { seq: log.next_seq, time: now(), progress, last };
        let mut line = serde_json::to_string(&event).expect("job events serialize");
        line.push('\n');
        let path = self.events_path();
        log.file.write_all(line.as_bytes()).map_err(io("append to", &path))?;
        log.file.flush().map_err(io("append to", &path))?;
        log.next_seq += 1;
        // No subscriber is fine: the event is on disk for whoever connects later.
        let _ = self.live.send(event.clone());
        Ok(event)
    }

    /// Events with `seq > after`, read back from the on-disk log.
    pub fn events_after(&self, after: u64) -> Result<Vec<JobEvent>, JobError> {
        read_events(&self.events_path(), after)
    }

    /// Ends a running job: its state, summary and (when it succeeded) the access links in
    /// `job.json`, then `last` as the log's last event. A job that has already ended (a shutdown
    /// marked it interrupted while its work was still stopping) is left as it is: `Ok(false)`.
    pub fn end(&self, state: JobState, summary: String, access: Vec<AccessLink>) -> Result<bool, JobError> {
        self.end_saying(None, state, summary, access)
    }

    /// [`Job::end`], with `note` logged just before the outcome (only if the job ends here).
    fn end_saying(&self, note: Option<String>, state: JobState, summary: String, access: Vec<AccessLink>) -> Result<bool, JobError> {
        let mut record = self.record.lock().expect("job record lock");
        if record.state.is_final() {
            return Ok(false);
        }
        if let Some(text) = note {
            self.append(Progress::Message { text })?;
        }
        let mut ended = record.clone();
        ended.state = state;
        ended.finished = Some(now());
        ended.summary = Some(summary.clone());
        ended.access = access;
        write_record(&self.dir, &ended)?;
        *record = ended;
        self.append_event(Progress::Finished { ok: state == JobState::Succeeded, summary }, true)?;
        Ok(true)
    }

    /// Ends a running job as interrupted by `why` (the server stopped or was stopped), saying in
    /// its log what that means and how to go on.
    pub fn interrupt(&self, why: &str) -> Result<bool, JobError> {
        let note = format!(
            "Interrupted: {why}. What it had applied stays on the cluster; \
             Resume runs the job again from its app directory and finishes it."
        );
        self.end_saying(Some(note), JobState::Interrupted, format!("interrupted: {why}"), Vec::new())
    }

    /// Makes an interrupted job run again: `running` in `job.json`, and `note` in the log after
    /// the interruption's last event. `Ok(false)` when the job is not interrupted (running,
    /// or it ended otherwise): nothing changes.
    pub fn resume(&self, note: String) -> Result<bool, JobError> {
        let mut record = self.record.lock().expect("job record lock");
        if record.state != JobState::Interrupted {
            return Ok(false);
        }
        let mut resumed = record.clone();
        resumed.state = JobState::Running;
        resumed.finished = None;
        resumed.summary = None;
        resumed.access = Vec::new();
        write_record(&self.dir, &resumed)?;
        *record = resumed;
        self.append_event(Progress::Message { text: note }, false)?;
        Ok(true)
    }
}

/// Lets the deploy pipeline report into the job log. A failed write cannot be reported anywhere
/// better than stderr; the job goes on.
impl ProgressSink for Job {
    fn report(&self, progress: Progress) {
        if let Err(err) = self.append(progress) {
            eprintln!("kfctl serve: job {}: {err}", self.id);
        }
    }
}

fn read_events(path: &Path, after: u64) -> Result<Vec<JobEvent>, JobError> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(io("read", path)(err)),
    };
    let mut events = Vec::new();
    for line in BufReader::new(file).lines() {
        let line = line.map_err(io("read", path))?;
        // A line cut short by a crash mid-write is the only kind we expect to fail; skip it.
        let Ok(event) = serde_json::from_str::<JobEvent>(&line) else { continue };
        if event.seq > after {
            events.push(event);
        }
    }
    Ok(events)
}

fn write_record(dir: &Path, record: &JobRecord) -> Result<(), JobError> {
    let path = dir.join("job.json");
    let tmp = dir.join("job.json.tmp");
    let text = serde_json::to_string_pretty(record).expect("job record serializes");
    fs::write(&tmp, text).map_err(io("write", &tmp))?;
    fs::rename(&tmp, &path).map_err(io("write", &path))
}

/// All jobs under `STATE/jobs/`.
pub struct JobStore {
    root: PathBuf,
    jobs: Mutex<HashMap<JobId, Arc<Job>>>,
}

impl JobStore {
    /// Opens (creating) `state_dir/jobs`, loads every job, and marks jobs that were running when
    /// the previous server stopped as interrupted.
    pub fn open(state_dir: &Path) -> Result<JobStore, JobError> {
        let root = state_dir.join("jobs");
        fs::create_dir_all(&root).map_err(io("create", &root))?;
        restrict_dir(state_dir)?;
        let mut jobs = HashMap::new();
        for entry in fs::read_dir(&root).map_err(io("list", &root))? {
            let entry = entry.map_err(io("list", &root))?;
            // Only directories named like our ids; anything else there is not ours to read.
            let Some(id) = entry.file_name().to_str().and_then(JobId::parse) else { continue };
            if !entry.file_type().map_err(io("inspect", &entry.path()))?.is_dir() {
                continue;
            }
            let job = load_job(&entry.path(), id.clone())?;
            if job.record().state == JobState::Running {
                job.interrupt("the server stopped during the job")?;
            }
            jobs.insert(id, Arc::new(job));
        }
        Ok(JobStore { root, jobs: Mutex::new(jobs) })
    }

    /// Creates a new running job's directory and record.
    pub fn create(&self, kind: JobKind, name: &str, platform: &str, version: &str) -> Result<Arc<Job>, JobError> {
        let id = JobId::generate();
        let dir = self.root.join(id.as_str());
        fs::create_dir(&dir).map_err(io("create", &dir))?;
        let private = dir.join("private");
        fs::create_dir(&private).map_err(io("create", &private))?;
        restrict_dir(&private)?;
        let record = JobRecord {
            id: id.clone(),
            kind,
            name: name.to_string(),
            platform: platform.to_string(),
            version: version.to_string(),
            state: JobState::Running,
            created: now(),
            finished: None,
            summary: None,
            access: Vec::new(),
        };
        write_record(&dir, &record)?;
        let job = Arc::new(open_job(dir, record)?);
        self.jobs.lock().expect("job map lock").insert(id, job.clone());
        Ok(job)
    }

    /// The job with this id.
    pub fn get(&self, id: &JobId) -> Option<Arc<Job>> {
        self.jobs.lock().expect("job map lock").get(id).cloned()
    }

    /// The jobs still running.
    pub fn running(&self) -> Vec<Arc<Job>> {
        self.jobs.lock().expect("job map lock").values().filter(|job| job.record().state == JobState::Running).cloned().collect()
    }

    /// Every job's record, newest first.
    pub fn list(&self) -> Vec<JobRecord> {
        let mut records: Vec<JobRecord> = self.jobs.lock().expect("job map lock").values().map(|job| job.record()).collect();
        records.sort_by(|a, b| b.created.cmp(&a.created));
        records
    }
}

fn load_job(dir: &Path, id: JobId) -> Result<Job, JobError> {
    let path = dir.join("job.json");
    let text = fs::read_to_string(&path).map_err(io("read", &path))?;
    let record: JobRecord = serde_json::from_str(&text).map_err(|source| JobError::Corrupt { path: path.clone(), source })?;
    if record.id != id {
        return Err(JobError::NotFound(id.to_string()));
    }
    open_job(dir.to_path_buf(), record)
}

fn open_job(dir: PathBuf, record: JobRecord) -> Result<Job, JobError> {
    let events = dir.join("events.jsonl");
    let last = read_events(&events, 0)?.last().map(|e| e.seq).unwrap_or(0);
    let file = OpenOptions::new().create(true).append(true).open(&events).map_err(io("open", &events))?;
    let (live, _) = broadcast::channel(1024);
    Ok(Job { id: record.id.clone(), dir, record: Mutex::new(record), log: Mutex::new(LogWriter { file, next_seq: last + 1 }), live })
}

/// The state directory holds credentials: only its owner may enter it.
fn restrict_dir(dir: &Path) -> Result<(), JobError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io("restrict permissions of", dir))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_refuse_path_syntax() {
        let id = JobId::generate();
        assert_eq!(JobId::parse(id.as_str()), Some(id));
        for bad in ["..", "../../etc/passwd", "", "0123456789abcdef0123456789abcdeF", "0123456789abcdef0123456789abcde/", "0123456789abcdef0123456789abcdef0"] {
            assert_eq!(JobId::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn log_survives_reopen_and_running_jobs_become_interrupted() {
        let state = tempfile::tempdir().unwrap();
        let store = JobStore::open(state.path()).unwrap();
        let job = store.create(JobKind::Deploy, "demo", "existing", "v1.4.1").unwrap();
        job.append(Progress::Message { text: "one".into() }).unwrap();
        job.append(Progress::PhaseStarted { phase: "crds".into(), objects: 3 }).unwrap();
        let done = store.create(JobKind::Deploy, "done", "kind", "v1.4.1").unwrap();
        assert!(done.end(JobState::Succeeded, "ready".into(), Vec::new()).unwrap());
        assert!(!done.end(JobState::Failed, "again".into(), Vec::new()).unwrap(), "an ended job stays as it ended");
        let id = job.id.clone();
        drop((job, done, store));

        let store = JobStore::open(state.path()).unwrap();
        let job = store.get(&id).unwrap();
        assert_eq!(job.record().state, JobState::Interrupted);
        let events = job.events_after(0).unwrap();
        assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2, 3, 4]);
        assert_eq!(events[3].progress, Progress::Finished { ok: false, summary: "interrupted: the server stopped during the job".into() });
        assert!(events[3].last && !events[2].last);
        assert_eq!(job.events_after(2).unwrap().len(), 2);

        // Resumed, it runs again and its log goes on after the interruption.
        assert!(job.resume("resumed".into()).unwrap());
        assert!(!job.resume("twice".into()).unwrap(), "only an interrupted job resumes");
        assert_eq!(job.record().state, JobState::Running);
        assert!(job.end(JobState::Succeeded, "ready".into(), Vec::new()).unwrap());
        let events = job.events_after(4).unwrap();
        assert_eq!(events.iter().map(|e| (e.seq, e.last)).collect::<Vec<_>>(), vec![(5, false), (6, true)]);
        drop(job);
        drop(store);
        let store = JobStore::open(state.path()).unwrap();
        assert_eq!(store.get(&id).unwrap().record().state, JobState::Succeeded);
        let list = store.list();
        assert_eq!(list.len(), 2);
        assert!(list.iter().any(|r| r.name == "done" && r.state == JobState::Succeeded));
    }
}
