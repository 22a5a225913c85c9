//! Who may talk to the server: the access token, the CSRF token, the Host/Origin checks and the
//! security headers every response carries.
//!
//! The server holds cluster credentials, so every request needs the random token printed at start
//! (like Jupyter). A browser presents it once in the URL (`/?token=...`), gets it back as an
//! HttpOnly SameSite=Strict cookie and is redirected to a URL without it; scripts send
//! `Authorization: Bearer ...`. State-changing requests are POST only and must also carry the
//! per-server CSRF token in a custom header (which a cross-site form cannot set), and are refused
//! when the browser says they come from another site (Origin, Sec-Fetch-Site).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use rand::RngCore;

use super::ServerState;

/// Name of the cookie that carries the access token after the first visit.
pub const TOKEN_COOKIE: &str = "kfctl_token";
/// Header that state-changing requests must carry, holding the CSRF token.
pub const CSRF_HEADER: &str = "x-kfctl-csrf";

/// A random secret: 32 bytes from the OS-seeded generator, URL-safe base64 without padding.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// A fresh secret of 32 random bytes.
    pub fn generate() -> Secret {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        Secret(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
    }

    /// The secret's text, for printing the start-up URL or handing the CSRF token to the page.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `candidate` equals the secret, in time that does not depend on where they differ.
    pub fn matches(&self, candidate: &str) -> bool {
        constant_time_eq(self.0.as_bytes(), candidate.as_bytes())
    }
}

impl std::fmt::Debug for Secret {
    // Secrets never reach logs, not even through a stray `{:?}`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Compares two byte strings without an early exit. The length is not secret (it is fixed).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// Where a request presented its access token, which decides what the response does with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Presented {
    Bearer,
    Cookie,
    Query,
}

/// The first token the request presents: `Authorization: Bearer`, then the cookie, then `?token=`.
fn presented_token(request: &Request) -> Option<(String, Presented)> {
    let headers = request.headers();
    if let Some(value) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok())
        && let Some(token) = value.strip_prefix("Bearer ")
    {
        return Some((token.trim().to_string(), Presented::Bearer));
    }
    if let Some(token) = cookie_value(headers, TOKEN_COOKIE) {
        return Some((token, Presented::Cookie));
    }
    let query = request.uri().query()?;
    form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| key == "token")
        .map(|(_, value)| (value.into_owned(), Presented::Query))
}

/// The value of cookie `name` from any `Cookie` header.
fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_string())
}

/// A refusal with a short JSON body saying why and what to do.
pub fn refusal(status: StatusCode, error: &str, hint: &str) -> Response {
    let body = serde_json::json!({ "error": error, "hint": hint });
    (status, axum::Json(body)).into_response()
}

/// Middleware: Host check, access token, CSRF protection for POST; other methods are refused.
pub async fn guard(State(state): State<Arc<ServerState>>, request: Request, next: Next) -> Response {
    if !host_allowed(&state, request.headers()) {
        return refusal(
            StatusCode::MISDIRECTED_REQUEST,
            "the Host header does not name this server",
            "open the URL that `kfctl serve` printed (loopback servers only answer to localhost names)",
        );
    }

    let Some((token, presented)) = presented_token(&request) else {
        return refusal(
            StatusCode::UNAUTHORIZED,
            "missing access token",
            "open the URL with ?token=... that `kfctl serve` printed, or send `Authorization: Bearer TOKEN`",
        );
    };
    if !state.access_token.matches(&token) {
        return refusal(
            StatusCode::UNAUTHORIZED,
            "wrong access token",
            "copy the URL again from the output of `kfctl serve` (the token changes at every start)",
        );
    }

    match *request.method() {
        Method::GET | Method::HEAD => {}
        Method::POST => {
            if let Err(why) = check_same_site(&state, request.headers()) {
                return refusal(StatusCode::FORBIDDEN, why, "state-changing requests must come from the kfctl page itself");
            }
        }
        _ => {
            return refusal(StatusCode::METHOD_NOT_ALLOWED, "method not allowed", "use GET to read and POST to change");
        }
    }

    // A token in the URL of a page load is moved into a cookie, and the browser is sent to the
    // same URL without it, so it does not linger in the address bar, history or Referer.
    if presented == Presented::Query && request.method() == Method::GET {
        let path = request.uri().path().to_string();
        let rest: Vec<(String, String)> = request
            .uri()
            .query()
            .map(|q| form_urlencoded::parse(q.as_bytes()).filter(|(k, _)| k != "token").map(|(k, v)| (k.into_owned(), v.into_owned())).collect())
            .unwrap_or_default();
        let location = if rest.is_empty() {
            path
        } else {
            let query: String = form_urlencoded::Serializer::new(String::new()).extend_pairs(rest).finish();
            format!("{path}?{query}")
        };
        let mut response = (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response();
        let cookie = format!("{TOKEN_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict", state.access_token.expose());
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            response.headers_mut().insert(header::SET_COOKIE, value);
        }
        return response;
    }

    next.run(request).await
}

/// Loopback servers answer only to loopback names, which defeats DNS rebinding. A server listening
/// elsewhere (with --allow-remote) cannot know its public names, so it relies on the token alone.
fn host_allowed(state: &ServerState, headers: &HeaderMap) -> bool {
    if state.allow_remote {
        return true;
    }
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let name = host_name(host);
    name == "localhost" || name == "127.0.0.1" || name == "[::1]" || name.ends_with(".localhost") || is_loopback_v4(name)
}

/// The name part of a `Host` header value (without the port).
fn host_name(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map(|end| &host[..=end]).unwrap_or(host);
    }
    host.rsplit_once(':').map(|(name, _)| name).unwrap_or(host)
}

fn is_loopback_v4(name: &str) -> bool {
    name.parse::<std::net::Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
}

/// Refuses a POST unless it carries the CSRF header and the browser does not say it is cross-site.
fn check_same_site(state: &ServerState, headers: &HeaderMap) -> Result<(), &'static str> {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
        && site != "same-origin"
        && site != "none"
    {
        return Err("cross-site request refused (Sec-Fetch-Site)");
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
        let same = origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://")).is_some_and(|rest| rest == host);
        if !same {
            return Err("cross-site request refused (Origin does not match Host)");
        }
    }
    match headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()) {
        Some(token) if state.csrf_token.matches(token) => Ok(()),
        Some(_) => Err("wrong CSRF token"),
        None => Err("missing CSRF header x-kfctl-csrf"),
    }
}

/// Content-Security-Policy: only our own script and style files, no inline code, no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// Middleware: the security headers on every response, refusals included.
pub async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    let fixed = [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::HeaderName::from_static("cross-origin-opener-policy"), "same-origin"),
        (header::HeaderName::from_static("cross-origin-resource-policy"), "same-origin"),
    ];
    for (name, value) in fixed {
        headers.insert(name, HeaderValue::from_static(value));
    }
    headers.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_long_url_safe_and_distinct() {
        let a = Secret::generate();
        let b = Secret::generate();
        assert_eq!(a.expose().len(), 43, "32 bytes in unpadded base64");
        assert!(a.expose().chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        assert_ne!(a.expose(), b.expose());
        assert!(a.matches(a.expose()));
        assert!(!a.matches(b.expose()));
        assert!(!a.matches(""));
        assert!(!a.matches(&a.expose()[..42]));
        assert_eq!(format!("{a:?}"), "Secret(<redacted>)");
    }

    #[test]
    fn host_names_without_ports() {
        assert_eq!(host_name("localhost:8080"), "localhost");
        assert_eq!(host_name("[::1]:8080"), "[::1]");
        assert_eq!(host_name("127.0.0.1"), "127.0.0.1");
        assert!(is_loopback_v4("127.3.2.1"));
        assert!(!is_loopback_v4("10.0.0.1"));
    }
}
