//! Which API errors pass with time, and the backoff between attempts.

use std::time::Duration;

/// An attempt's failure: worth retrying, or final (with the reason to report).
#[derive(Debug)]
pub enum Failure {
    Retry(String),
    Permanent(String),
    /// The client gave up on the API server (see [`crate::cluster::outage`]): final, and nothing
    /// more of the run reaches the server.
    Unavailable(String),
}

impl Failure {
    /// Classify a kube error. Transient: conflicts (409), throttling (429), server errors (5xx),
    /// a webhook not serving yet, a kind not discovered yet (404 on the collection), transport
    /// errors. Everything else (403, 400, 422, ...) is final and reported with the server's text.
    pub fn from_kube(err: kube::Error) -> Failure {
        // The outage layer waited as long as allowed (--timeout): another attempt fails at once.
        if let Some(why) = crate::cluster::outage::unavailable(&err) {
            return Failure::Unavailable(why);
        }
        match &err {
            kube::Error::Api(status) => {
                let text = if status.message.is_empty() { status.reason.clone() } else { status.message.clone() };
                let webhook_not_ready = text.contains("failed calling webhook")
                    || text.contains("connection refused")
                    || text.contains("no endpoints available")
                    || text.contains("context deadline exceeded");
                let transient = matches!(status.code, 409 | 429 | 500..=599)
                    || webhook_not_ready
                    || (status.code == 404 && text.contains("could not find the requested resource"));
                let text = format!("{text} ({})", status.code);
                if transient { Failure::Retry(text) } else { Failure::Permanent(text) }
            }
            _ => Failure::Retry(crate::cluster::error_chain(&err)),
        }
    }
}

/// Exponential backoff: 250 ms doubling to 8 s, about a minute in all.
pub struct Backoff {
    attempt: u32,
}

const MAX_ATTEMPTS: u32 = 12;

impl Backoff {
    pub fn new() -> Backoff {
        Backoff { attempt: 1 }
    }

    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// Sleep before the next attempt; false when attempts are used up.
    pub async fn wait(&mut self) -> bool {
        if self.attempt >= MAX_ATTEMPTS {
            return false;
        }
        let delay = Duration::from_millis(250u64 << self.attempt.min(5)).min(Duration::from_secs(8));
        self.attempt += 1;
        tokio::time::sleep(delay).await;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16, message: &str) -> kube::Error {
        kube::Error::Api(Box::new(kube::core::Status::failure(message, "").with_code(code)))
    }

    #[test]
    fn transient_and_final_errors() {
        let retry = |e| matches!(Failure::from_kube(e), Failure::Retry(_));
        assert!(retry(api(409, "Operation cannot be fulfilled")));
        assert!(retry(api(503, "unavailable")));
        assert!(retry(api(500, "Internal error occurred: failed calling webhook \"x\": Post ...: dial tcp: connect: connection refused")));
        assert!(retry(api(404, "the server could not find the requested resource")));
        assert!(!retry(api(404, "namespaces \"x\" not found")));
        assert!(!retry(api(403, "deployments.apps is forbidden: User \"u\" cannot patch resource")));
        assert!(!retry(api(422, "Service \"s\" is invalid")));
        // a webhook denying on purpose is final
        assert!(!retry(api(400, "admission webhook \"deny.example.com\" denied the request: no")));
    }
}
