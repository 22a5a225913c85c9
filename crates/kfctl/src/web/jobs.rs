//! Deploy jobs kept on disk, so they survive a restart of the server.
//!
//! Each job has a directory `STATE/jobs/ID/` named by a server-generated id (32 hex digits; a
//! request can only name a job by such an id, which is checked before any path is built):
//! - `job.json`: what was asked for (without secrets) and the job's state;
//! - `events.jsonl`: the progress log, one [`JobEvent`] per line, numbered from 1;
//! - `app/`: the app directory the deploy writes (what the download packs);
//! - `private/`: credentials the job needs (an uploaded kubeconfig), mode 0700, never served.
//!
//! A job found `running` at start-up was cut off by a restart: it is marked `interrupted` and its
//! log says so, rather than pretending it is still going.

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
    /// Whether the job will not change any more.
    pub fn is_final(self) -> bool {
        self != JobState::Running
    }
}

/// What `job.json` holds: the request's public parts and the job's state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobRecord {
    pub id: JobId,
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
        let mut log = self.log.lock().expect("job log lock");
        let event = JobEvent { seq: log.next_seq, time: now(), progress };
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

    /// Records the job's end: state, summary and (when it succeeded) the access links.
    pub fn finish(&self, state: JobState, summary: String, access: Vec<AccessLink>) -> Result<(), JobError> {
        let record = {
            let mut record = self.record.lock().expect("job record lock");
            record.state = state;
            record.finished = Some(now());
            record.summary = Some(summary);
            record.access = access;
            record.clone()
        };
        write_record(&self.dir, &record)
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
                job.append(Progress::Message {
                    text: "The kfctl server stopped while this deployment was running; it did not finish. \
                           Check the cluster with `kfctl status` from the downloaded app directory, or deploy again."
                        .into(),
                })?;
                job.append(Progress::Finished { ok: false, summary: "interrupted: the server stopped during the deployment".into() })?;
                job.finish(JobState::Interrupted, "interrupted: the server stopped during the deployment".into(), Vec::new())?;
            }
            jobs.insert(id, Arc::new(job));
        }
        Ok(JobStore { root, jobs: Mutex::new(jobs) })
    }

    /// Creates a new running job's directory and record.
    pub fn create(&self, name: &str, platform: &str, version: &str) -> Result<Arc<Job>, JobError> {
        let id = JobId::generate();
        let dir = self.root.join(id.as_str());
        fs::create_dir(&dir).map_err(io("create", &dir))?;
        let private = dir.join("private");
        fs::create_dir(&private).map_err(io("create", &private))?;
        restrict_dir(&private)?;
        let record = JobRecord {
            id: id.clone(),
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
        let job = store.create("demo", "existing", "v1.4.1").unwrap();
        job.append(Progress::Message { text: "one".into() }).unwrap();
        job.append(Progress::PhaseStarted { phase: "crds".into(), objects: 3 }).unwrap();
        let done = store.create("done", "kind", "v1.4.1").unwrap();
        done.append(Progress::Finished { ok: true, summary: "ready".into() }).unwrap();
        done.finish(JobState::Succeeded, "ready".into(), Vec::new()).unwrap();
        let id = job.id.clone();
        drop((job, done, store));

        let store = JobStore::open(state.path()).unwrap();
        let job = store.get(&id).unwrap();
        assert_eq!(job.record().state, JobState::Interrupted);
        let events = job.events_after(0).unwrap();
        assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2, 3, 4]);
        assert_eq!(events[3].progress, Progress::Finished { ok: false, summary: "interrupted: the server stopped during the deployment".into() });
        assert_eq!(job.events_after(2).unwrap().len(), 2);
        let list = store.list();
        assert_eq!(list.len(), 2);
        assert!(list.iter().any(|r| r.name == "done" && r.state == JobState::Succeeded));
    }
}
