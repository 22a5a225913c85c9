//! Waiting out an API server that stops answering: restarts of the API server or of etcd, a
//! network that drops packets, a control plane throttling (429) or failing over.
//!
//! Every request kfctl sends goes through [`OutageLayer`], the outermost layer of the client's
//! service stack, so the retry lives in one place: apply, delete, the inventory, the lock and
//! health all see either an answer or, once the outage outlasts the timeout (`--timeout`), one
//! clear error. A request that fails transiently (connection refused or reset, no answer, 429,
//! 503, 504, etcd's errors) is sent again with capped, jittered backoff. The first failure of
//! an outage, or a request left unanswered for 5 s, prints one line saying what kfctl waits for;
//! the first answer after it prints how long it took.
//!
//! Only a server that has answered once is waited for: one that never did is a wrong address or
//! a cluster that is not running, and `cluster::connect` says so at once.
//!
//! The lines go to stderr, or, for a client made inside [`reporting_to`] (a web-app job), to
//! that job's log.
//!
//! Giving up belongs to one client: its later requests fail at once with [`Unavailable`] (the run
//! stops starting work and says what it did), while a new client, as the next web-app job makes,
//! tries the server afresh.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use kube::client::{Body, DynBody};
use tower::{BoxError, Layer, Service, ServiceExt};

/// How long kfctl waits for a server that stopped answering, unless set by [`set_timeout`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);
/// How long one attempt may wait for the response's headers: longer than the API server's own
/// request timeout (60 s), so its answer comes first when it is alive.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(65);
/// How long a request may go unanswered before kfctl tells the user it is waiting.
const SLOW_AFTER: Duration = Duration::from_secs(5);
/// First delay between attempts, and the cap.
const FIRST_DELAY: Duration = Duration::from_millis(250);
const MAX_DELAY: Duration = Duration::from_secs(5);

static TIMEOUT_SECS: AtomicU64 = AtomicU64::new(DEFAULT_TIMEOUT.as_secs());

/// Where the outage lines of a client go.
pub type Report = Arc<dyn Fn(String) + Send + Sync>;

tokio::task_local! {
    /// Set by [`reporting_to`] for the clients made inside it.
    static REPORT: Report;
}

/// Run `work` with the outage lines of every client made inside it going to `report` (a web-app
/// job's log) instead of stderr.
pub async fn reporting_to<F: Future>(report: Report, work: F) -> F::Output {
    REPORT.scope(report, work).await
}

/// Set how long an outage may last before kfctl stops (the CLI's `--timeout`).
pub fn set_timeout(timeout: Duration) {
    TIMEOUT_SECS.store(timeout.as_secs().max(1), Ordering::SeqCst);
}

fn timeout() -> Duration {
    Duration::from_secs(TIMEOUT_SECS.load(Ordering::SeqCst))
}

/// The error of a request once its client stopped waiting for the API server (an outage outlasted
/// the timeout), and of every later request of that client.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unavailable(String);

/// Why kfctl stopped waiting for the API server, when `err` is a request that failed because its
/// client gave up on the server ([`Unavailable`]).
pub fn unavailable(err: &kube::Error) -> Option<String> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(u) = e.downcast_ref::<Unavailable>() {
            return Some(u.0.clone());
        }
        source = e.source();
    }
    None
}

/// A duration for messages: `45s`, `2m`, `2m30s`.
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 60, s % 60) {
        (0, s) => format!("{s}s"),
        (m, 0) => format!("{m}m"),
        (m, s) => format!("{m}m{s}s"),
    }
}

/// The layer [`crate::cluster::configure`] puts around every client's stack.
pub struct OutageLayer {
    server: String,
    report: Option<Report>,
}

impl OutageLayer {
    /// For a client of `server`, reporting where [`reporting_to`] says, if the caller runs inside it.
    pub fn new(server: String) -> OutageLayer {
        OutageLayer { server, report: REPORT.try_with(Arc::clone).ok() }
    }
}

impl<S> Layer<S> for OutageLayer
where
    S: Service<Request<Body>, Response = Response<Box<DynBody>>, Error = BoxError> + Send + 'static,
    S::Future: Send + 'static,
{
    type Service = Outage<tower::buffer::Buffer<Request<Body>, S::Future>>;

    fn layer(&self, inner: S) -> Self::Service {
        // A buffer makes the inner stack cloneable: a retry sends the request again on a clone.
        let inner = tower::buffer::Buffer::new(inner, 1024);
        let state = State {
            server: self.server.clone(),
            reached: AtomicBool::new(false),
            outage: Mutex::new(None),
            gave_up: OnceLock::new(),
            report: self.report.clone(),
        };
        Outage { inner, state: Arc::new(state) }
    }
}

/// What one client knows about its server.
struct State {
    server: String,
    /// The server answered at least once.
    reached: AtomicBool,
    /// When the current outage started.
    outage: Mutex<Option<Instant>>,
    /// Why this client stopped waiting for the server (an outage outlasted the timeout).
    gave_up: OnceLock<String>,
    /// Where its lines go (stderr when none).
    report: Option<Report>,
}

impl State {
    fn say(&self, line: String) {
        match &self.report {
            Some(report) => report(line),
            None => eprintln!("{line}"),
        }
    }

    /// A request got an answer: an outage, if any, is over.
    fn answered(&self) {
        self.reached.store(true, Ordering::SeqCst);
        if let Some(since) = self.outage.lock().expect("outage lock").take() {
            self.say(format!("the API server at {} answers again, after {}", self.server, human(since.elapsed())));
        }
    }

    /// A request failed transiently: how long the outage has lasted (saying so when it starts).
    fn failed(&self, reason: &str) -> Duration {
        let mut outage = self.outage.lock().expect("outage lock");
        match *outage {
            Some(since) => since.elapsed(),
            None => {
                *outage = Some(Instant::now());
                drop(outage);
                self.say(format!("waiting for the API server at {}: {reason}; retrying for up to {} (--timeout)", self.server, human(timeout())));
                Duration::ZERO
            }
        }
    }
}

/// The service [`OutageLayer`] makes.
#[derive(Clone)]
pub struct Outage<S> {
    inner: S,
    state: Arc<State>,
}

type ResponseFuture = Pin<Box<dyn Future<Output = Result<Response<Box<DynBody>>, BoxError>> + Send>>;

impl<S> Service<Request<Body>> for Outage<S>
where
    S: Service<Request<Body>, Response = Response<Box<DynBody>>, Error = BoxError> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Box<DynBody>>;
    type Error = BoxError;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> ResponseFuture {
        // The clone that was made ready serves this call; keep a fresh clone for the next one.
        let ready = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, ready);
        let state = self.state.clone();
        Box::pin(send(inner, state, request))
    }
}

async fn send<S>(mut inner: S, state: Arc<State>, request: Request<Body>) -> Result<Response<Box<DynBody>>, BoxError>
where
    S: Service<Request<Body>, Response = Response<Box<DynBody>>, Error = BoxError> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    if let Some(why) = state.gave_up.get() {
        return Err(Unavailable(why.clone()).into());
    }
    let (parts, body) = request.into_parts();
    // A streamed body cannot be sent twice (kube sends none; be safe): one attempt.
    let Some(spare) = body.try_clone() else {
        return inner.call(Request::from_parts(parts, body)).await;
    };
    let mut body = Some(body);
    let mut delay = FIRST_DELAY;
    loop {
        let this = body.take().unwrap_or_else(|| spare.try_clone().expect("a cloneable body stays cloneable"));
        let attempt = inner.clone().oneshot(Request::from_parts(parts.clone(), this));
        tokio::pin!(attempt);
        let answer = match tokio::time::timeout(SLOW_AFTER, &mut attempt).await {
            Ok(answer) => Ok(answer),
            // A server that holds requests (etcd gone: the API server waits for it) is an outage
            // too: say so now, and wait for the answer as long as the timeout allows.
            Err(_) if state.reached.load(Ordering::SeqCst) => {
                let waited = state.failed(&format!("no answer for {}", human(SLOW_AFTER)));
                let left = (ATTEMPT_TIMEOUT - SLOW_AFTER).min(timeout().saturating_sub(waited));
                tokio::time::timeout(left, &mut attempt).await
            }
            Err(_) => tokio::time::timeout(ATTEMPT_TIMEOUT - SLOW_AFTER, &mut attempt).await,
        };
        let outcome = match answer {
            Err(_) => Err(format!("no answer within {}", human(ATTEMPT_TIMEOUT))),
            Ok(Err(err)) => match transport_failure(&*err) {
                Some(reason) => Err(reason),
                None => return Err(err),
            },
            Ok(Ok(response)) => transient_status(response).await,
        };
        let reason = match outcome {
            Ok(response) => {
                state.answered();
                return Ok(response);
            }
            Err(reason) => reason,
        };
        if !state.reached.load(Ordering::SeqCst) {
            return Err(reason.into());
        }
        let waited = state.failed(&reason);
        let limit = timeout();
        if waited >= limit {
            let why = format!(
                "the API server at {} has not answered for {} (--timeout {}): {reason}",
                state.server,
                human(waited),
                human(limit)
            );
            let why = state.gave_up.get_or_init(|| why);
            return Err(Unavailable(why.clone()).into());
        }
        // Full jitter in the upper half: concurrent requests do not come back in lockstep.
        let jittered = delay.mul_f64(rand::random_range(0.5..=1.0));
        tokio::time::sleep(jittered.min(limit - waited)).await;
        delay = (delay * 2).min(MAX_DELAY);
    }
}

/// A transport error worth another attempt, as one line: every failure to connect or to get an
/// answer over a connection. kfctl's writes are idempotent (server-side apply, deletes, Lease
/// updates with a resourceVersion) or tolerate a repeat (creates answer 409).
fn transport_failure(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    // kfctl's own verdict, and credentials that do not work, do not pass with time.
    if err.downcast_ref::<Unavailable>().is_some() || err.downcast_ref::<kube::client::AuthError>().is_some() {
        return None;
    }
    let text = super::error_chain(err);
    let lower = text.to_lowercase();
    // Name the cause a person recognises rather than hyper's wrapping of it.
    let cause = ["connection refused", "connection reset", "broken pipe", "timed out", "deadline has elapsed", "connection closed", "unexpected eof", "unexpected end of file", "no route to host", "network is unreachable"]
        .into_iter()
        .find(|c| lower.contains(c));
    Some(cause.map_or(text, str::to_owned))
}

/// The response itself, or why it is a transient failure: 429, 503 and 504, and a 500 from etcd
/// (its leader changed, a request timed out, the connection to it closed).
async fn transient_status(response: Response<Box<DynBody>>) -> Result<Response<Box<DynBody>>, String> {
    let status = response.status();
    if !(status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()) {
        return Ok(response);
    }
    let (parts, body) = response.into_parts();
    // Error bodies are small Status objects; a body that cannot be read is the outage itself.
    let bytes = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(err) => return Err(format!("{status}: {}", super::error_chain(&*err))),
    };
    let message = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(&bytes).trim().to_owned());
    if is_transient(status, &message) {
        return Err(format!("{} ({message})", status.as_u16()));
    }
    let body: Box<DynBody> = Box::new(http_body_util::Full::new(bytes).map_err(|never| match never {}));
    Ok(Response::from_parts(parts, body))
}

/// Whether an error answer passes with time on the server's side. A webhook that fails is not
/// the API server's outage: apply's own per-object retry deals with it.
fn is_transient(status: StatusCode, message: &str) -> bool {
    if message.contains("failed calling webhook") {
        return false;
    }
    match status.as_u16() {
        429 | 503 | 504 => true,
        500 => ["etcdserver:", "leader changed", "code = Unavailable", "transport is closing", "context deadline exceeded", "connection refused"]
            .iter()
            .any(|m| message.contains(m)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_answers_pass_with_time() {
        let s = |code| StatusCode::from_u16(code).unwrap();
        assert!(is_transient(s(503), "service unavailable"));
        assert!(is_transient(s(429), "too many requests"));
        assert!(is_transient(s(504), "Timeout: request did not complete within requested timeout 34s"));
        assert!(is_transient(s(500), "etcdserver: leader changed"));
        assert!(is_transient(s(500), "etcdserver: request timed out"));
        assert!(is_transient(s(500), "rpc error: code = Unavailable desc = transport is closing"));
        assert!(!is_transient(s(500), "Internal error occurred: failed calling webhook \"x\": Post \"https://x\": dial tcp: connect: connection refused"));
        assert!(!is_transient(s(500), "Internal error occurred: something else"));
        assert!(!is_transient(s(404), "not found"));
    }

    /// A stand-in API server on `listener` answering `GET /version` until the task is aborted.
    fn serve_version(listener: tokio::net::TcpListener) -> tokio::task::JoinHandle<()> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        tokio::spawn(async move {
            loop {
                let Ok((mut conn, _)) = listener.accept().await else { return };
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match conn.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    let body = r#"{"major":"1","minor":"20","gitVersion":"v1.20.2","gitCommit":"","gitTreeState":"","buildDate":"","goVersion":"","compiler":"","platform":""}"#;
                    let response = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = conn.write_all(response.as_bytes()).await;
                });
            }
        })
    }

    fn client(url: &str) -> kube::Client {
        let config = kube::Config::new(url.parse().unwrap());
        kube::client::ClientBuilder::try_from(config).unwrap().with_layer(&OutageLayer::new(url.to_string())).build()
    }

    /// A client's outage lines go where it was made (a web-app job's log). Giving up is the
    /// client's: it fails at once from then on, even once the server is back, while a new client
    /// (the next web-app job's) reaches the server. Before, one outage past the timeout left a
    /// `kfctl serve` unable to reach any cluster until it was restarted.
    #[tokio::test]
    async fn outage_lines_go_where_the_client_was_made_and_giving_up_is_the_clients() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let url = format!("http://{addr}");
        let server = serve_version(listener);
        // Made inside `reporting_to`, as a web-app job makes its clients: its lines go there.
        let said = Arc::new(Mutex::new(Vec::new()));
        let log = said.clone();
        let first = reporting_to(Arc::new(move |line| log.lock().unwrap().push(line)), async { client(&url) }).await;
        first.apiserver_version().await.expect("the server answers");

        server.abort();
        let _ = server.await;
        set_timeout(Duration::from_secs(1));
        let err = first.apiserver_version().await.expect_err("the server is gone");
        let lines = said.lock().unwrap().clone();
        assert_eq!(lines, [format!("waiting for the API server at {url}: connection refused; retrying for up to 1s (--timeout)")]);
        let why = unavailable(&err).unwrap_or_else(|| panic!("not an outage past the timeout: {err}"));
        assert!(why.starts_with(&format!("the API server at {url} has not answered for")) && why.contains("(--timeout 1s)"), "{why}");

        let server = serve_version(tokio::net::TcpListener::bind(addr).await.unwrap());
        let started = Instant::now();
        let err = first.apiserver_version().await.expect_err("a client that gave up stays given up");
        assert_eq!(unavailable(&err).as_deref(), Some(why.as_str()));
        assert!(started.elapsed() < Duration::from_millis(500), "it waited {:?}", started.elapsed());
        client(&url).apiserver_version().await.expect("a new client reaches the server again");
        set_timeout(DEFAULT_TIMEOUT);
        server.abort();
    }

    #[test]
    fn durations_read_as_a_person_writes_them() {
        assert_eq!(human(Duration::from_secs(45)), "45s");
        assert_eq!(human(Duration::from_secs(600)), "10m");
        assert_eq!(human(Duration::from_secs(150)), "2m30s");
    }
}
