//! One repository on one registry over the distribution API: manifests by tag or digest, blobs by
//! digest, monolithic blob uploads (POST, then one PUT with `?digest=`: the registry commits the
//! blob only when the whole body arrived and hashed to that digest, so an interrupted upload never
//! becomes a blob).

use std::sync::Arc;

use base64::Engine as _;
use futures::StreamExt as _;
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use tokio::io::AsyncWriteExt as _;

use super::OciError;
use super::auth::{Challenge, Credentials, DockerConfig};
use super::manifest::media_type;

/// Where a registry host is served and how it is reached: shared by every repository of a copy.
pub struct Connection {
    pub client: reqwest::Client,
    pub config: Arc<DockerConfig>,
}

/// A repository, ready for requests: its base URL, its path there, and the auth it needs.
pub struct Repository {
    client: reqwest::Client,
    /// `https://host[:port]` (or the scheme and authority of a `--source` override).
    base: String,
    /// The repository's path on that server (a `--source` URL path is a prefix).
    path: String,
    /// The host as the user wrote it (for messages and credentials).
    host: String,
    /// The image, for messages.
    image: String,
    credentials: Option<Credentials>,
    config: Arc<DockerConfig>,
    push: bool,
    authorization: tokio::sync::Mutex<Option<String>>,
}

/// A reachable base URL and the repository path on it.
pub struct Endpoint {
    pub base: String,
    pub path_prefix: String,
    pub host: String,
}

impl Repository {
    /// Connect to `repository` at `endpoint`, answering its auth challenge (for `push`, with
    /// push scope). Fails early on refused credentials, untrusted certificates and the like.
    pub async fn open(connection: &Connection, endpoint: &Endpoint, repository: &str, image: &str, push: bool) -> Result<Repository, OciError> {
        let path = if endpoint.path_prefix.is_empty() { repository.to_string() } else { format!("{}/{repository}", endpoint.path_prefix) };
        let repo = Repository {
            client: connection.client.clone(),
            base: endpoint.base.clone(),
            path,
            host: endpoint.host.clone(),
            image: image.to_string(),
            credentials: connection.config.credentials(&endpoint.host).cloned(),
            config: connection.config.clone(),
            push,
            authorization: tokio::sync::Mutex::new(None),
        };
        let response = repo.raw(Method::GET, &format!("{}/v2/", repo.base), None).await?;
        if response.status() == StatusCode::UNAUTHORIZED {
            repo.authenticate(&response).await?;
            // Basic credentials are checked only when used: ask once more with them.
            let header = repo.authorization.lock().await.clone();
            let again = repo.raw(Method::GET, &format!("{}/v2/", repo.base), header.as_deref()).await?;
            if again.status() == StatusCode::UNAUTHORIZED {
                return Err(repo.refused());
            }
        }
        Ok(repo)
    }

    fn refused(&self) -> OciError {
        OciError::CredentialsRefused { host: self.host.clone(), config: self.config.describe() }
    }

    /// Answer a 401: Basic sends the user and password; Bearer trades them (or nothing, for
    /// anonymous pulls) for a token at the realm with this repository's scope.
    async fn authenticate(&self, unauthorized: &Response) -> Result<(), OciError> {
        let challenge =
            unauthorized.headers().get_all(reqwest::header::WWW_AUTHENTICATE).iter().filter_map(|v| v.to_str().ok()).find_map(Challenge::parse).ok_or_else(
                || OciError::Registry {
                    image: self.image.clone(),
                    action: "authentication".into(),
                    status: 401,
                    message: "with no WWW-Authenticate challenge kfctl understands (Basic or Bearer)".into(),
                },
            )?;
        let header = match challenge {
            Challenge::Basic => {
                let credentials = self.credentials.as_ref().ok_or_else(|| self.missing())?;
                basic(credentials)
            }
            Challenge::Bearer { realm, service, .. } => {
                let scope = format!("repository:{}:{}", self.path, if self.push { "pull,push" } else { "pull" });
                let mut query = form_urlencoded::Serializer::new(String::new());
                query.append_pair("scope", &scope);
                if let Some(service) = &service {
                    query.append_pair("service", service);
                }
                let url = format!("{realm}{}{}", if realm.contains('?') { '&' } else { '?' }, query.finish());
                let mut request = self.client.get(&url);
                if let Some(credentials) = &self.credentials {
                    request = request.header(reqwest::header::AUTHORIZATION, basic(credentials));
                }
                let response = request.send().await.map_err(|e| connect_error(&realm, &e))?;
                match response.status() {
                    StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN if self.credentials.is_some() => {
                        return Err(self.refused());
                    }
                    StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => return Err(self.missing()),
                    status if !status.is_success() => {
                        return Err(self.status_error("token request", response).await);
                    }
                    _ => {}
                }
                #[derive(serde::Deserialize)]
                struct Token {
                    token: Option<String>,
                    access_token: Option<String>,
                }
                let body = response.bytes().await.map_err(|e| connect_error(&realm, &e))?;
                let token: Token = serde_json::from_slice(&body).map_err(|e| OciError::Registry {
                    image: self.image.clone(),
                    action: "token request".into(),
                    status: 200,
                    message: format!("the token answer is not JSON: {e}"),
                })?;
                let token = token.token.or(token.access_token).unwrap_or_default();
                format!("Bearer {token}")
            }
        };
        *self.authorization.lock().await = Some(header);
        Ok(())
    }

    fn missing(&self) -> OciError {
        OciError::CredentialsMissing { host: self.host.clone(), config: self.config.describe(), helper: self.config.helper(&self.host).map(str::to_string) }
    }

    /// One request without auth handling; connection failures become errors that name the host.
    async fn raw(&self, method: Method, url: &str, authorization: Option<&str>) -> Result<Response, OciError> {
        let mut request = self.client.request(method, url);
        if let Some(header) = authorization {
            request = request.header(reqwest::header::AUTHORIZATION, header);
        }
        request.send().await.map_err(|e| connect_error(&self.host, &e))
    }

    /// Send a request built by `build` with the current auth; on a 401 (an expired token)
    /// authenticate again and send it once more.
    async fn send(&self, build: impl Fn(&reqwest::Client) -> Result<RequestBuilder, OciError>) -> Result<Response, OciError> {
        for attempt in 0..2 {
            let mut request = build(&self.client)?;
            if let Some(header) = self.authorization.lock().await.as_deref() {
                request = request.header(reqwest::header::AUTHORIZATION, header);
            }
            let response = request.send().await.map_err(|e| connect_error(&self.host, &e))?;
            if response.status() == StatusCode::UNAUTHORIZED {
                if attempt == 0 {
                    self.authenticate(&response).await?;
                    continue;
                }
                return Err(if self.credentials.is_some() { self.refused() } else { self.missing() });
            }
            return Ok(response);
        }
        unreachable!("the loop returns on its second attempt")
    }

    fn url(&self, kind: &str, reference: &str) -> String {
        format!("{}/v2/{}/{kind}/{reference}", self.base, self.path)
    }

    async fn status_error(&self, action: &str, response: Response) -> OciError {
        let status = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        // The distribution API's {"errors":[{"code","message"}]}: show code and message only.
        let message = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| {
                let errors = v
                    .get("errors")?
                    .as_array()?
                    .iter()
                    .map(|e| format!("{} {}", e["code"].as_str().unwrap_or(""), e["message"].as_str().unwrap_or("")))
                    .collect::<Vec<_>>();
                Some(errors.join("; "))
            })
            .unwrap_or_else(|| body.chars().take(200).collect());
        OciError::Registry { image: self.image.clone(), action: action.to_string(), status, message }
    }

    /// The manifest at `reference` (tag or digest): its bytes and Content-Type; None on 404.
    pub async fn manifest(&self, reference: &str) -> Result<Option<(Vec<u8>, Option<String>)>, OciError> {
        let url = self.url("manifests", reference);
        let response = self.send(|c| Ok(c.get(&url).header(reqwest::header::ACCEPT, media_type::ACCEPT))).await?;
        match response.status() {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => {
                let content_type = response.headers().get(reqwest::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_string);
                let bytes = response.bytes().await.map_err(|e| connect_error(&self.host, &e))?;
                Ok(Some((bytes.to_vec(), content_type)))
            }
            _ => Err(self.status_error("reading the manifest", response).await),
        }
    }

    /// The digest the registry has at `reference` (HEAD), or None.
    pub async fn manifest_digest(&self, reference: &str) -> Result<Option<String>, OciError> {
        let url = self.url("manifests", reference);
        let response = self.send(|c| Ok(c.head(&url).header(reqwest::header::ACCEPT, media_type::ACCEPT))).await?;
        match response.status() {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => Ok(response.headers().get("docker-content-digest").and_then(|v| v.to_str().ok()).map(str::to_string)),
            status => {
                Err(OciError::Registry { image: self.image.clone(), action: "checking the manifest".into(), status: status.as_u16(), message: String::new() })
            }
        }
    }

    /// Whether the registry has the blob.
    pub async fn has_blob(&self, digest: &str) -> Result<bool, OciError> {
        let url = self.url("blobs", digest);
        let response = self.send(|c| Ok(c.head(&url))).await?;
        match response.status() {
            StatusCode::NOT_FOUND => Ok(false),
            s if s.is_success() => Ok(true),
            status => Err(OciError::Registry {
                image: self.image.clone(),
                action: format!("checking blob {digest}"),
                status: status.as_u16(),
                message: String::new(),
            }),
        }
    }

    /// Stream the blob into the (empty) `file` (not verified here: the caller hashes it off the
    /// runtime). `on_bytes` is called per chunk for progress.
    pub async fn blob_to_file(&self, digest: &str, file: &std::fs::File, on_bytes: &(dyn Fn(u64) + Send + Sync)) -> Result<(), OciError> {
        let url = self.url("blobs", digest);
        let response = self.send(|c| Ok(c.get(&url))).await?;
        if !response.status().is_success() {
            return Err(self.status_error(&format!("reading blob {digest}"), response).await);
        }
        let io = |error| OciError::Io { action: "write a temp file in", path: std::env::temp_dir(), error };
        let mut out = tokio::fs::File::from_std(file.try_clone().map_err(io)?);
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| connect_error(&self.host, &e))?;
            out.write_all(&chunk).await.map_err(io)?;
            on_bytes(chunk.len() as u64);
        }
        out.flush().await.map_err(io)
    }

    /// Upload the blob in `file` (already verified to hash to `digest`) in one PUT.
    pub async fn push_blob(&self, digest: &str, file: &std::fs::File, size: u64) -> Result<(), OciError> {
        let start = format!("{}/v2/{}/blobs/uploads/", self.base, self.path);
        let response = self.send(|c| Ok(c.post(&start).header(reqwest::header::CONTENT_LENGTH, 0))).await?;
        if response.status() != StatusCode::ACCEPTED {
            return Err(self.status_error(&format!("starting the upload of blob {digest}"), response).await);
        }
        let location = response.headers().get(reqwest::header::LOCATION).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        let location = if location.starts_with("http://") || location.starts_with("https://") { location } else { format!("{}{location}", self.base) };
        let put = format!("{location}{}digest={digest}", if location.contains('?') { '&' } else { '?' });
        let response = self
            .send(|c| {
                let io = |error| OciError::Io { action: "read the blob to upload from", path: std::env::temp_dir(), error };
                // A clone shares the offset: rewind it for this attempt (there may be a retry).
                let mut std_file = file.try_clone().map_err(io)?;
                std::io::Seek::rewind(&mut std_file).map_err(io)?;
                let stream = tokio_util::io::ReaderStream::new(tokio::fs::File::from_std(std_file));
                Ok(c.put(&put)
                    .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                    .header(reqwest::header::CONTENT_LENGTH, size)
                    .body(reqwest::Body::wrap_stream(stream)))
            })
            .await?;
        if response.status() != StatusCode::CREATED {
            return Err(self.status_error(&format!("uploading blob {digest}"), response).await);
        }
        Ok(())
    }

    /// Push manifest bytes under `reference` (a tag, or the digest itself).
    pub async fn push_manifest(&self, reference: &str, media_type: &str, bytes: &[u8]) -> Result<(), OciError> {
        let url = self.url("manifests", reference);
        let body = bytes.to_vec();
        let response = self.send(|c| Ok(c.put(&url).header(reqwest::header::CONTENT_TYPE, media_type).body(body.clone()))).await?;
        if !response.status().is_success() {
            return Err(self.status_error(&format!("pushing the manifest {reference}"), response).await);
        }
        Ok(())
    }
}

fn basic(credentials: &Credentials) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", credentials.username, credentials.password)))
}

/// A failed connection, said in the user's terms: untrusted certificate, plain HTTP where HTTPS
/// was expected, or unreachable (with the cause chain).
pub fn connect_error(host: &str, error: &reqwest::Error) -> OciError {
    let mut detail = error.to_string();
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(error);
    while let Some(c) = cause {
        if let Some(tls) = c.downcast_ref::<rustls::Error>() {
            return match tls {
                rustls::Error::InvalidCertificate(reason) => OciError::UntrustedCertificate { host: host.to_string(), detail: format!("{reason:?}") },
                rustls::Error::InvalidMessage(_) => OciError::PlainHttp { host: host.to_string() },
                other => OciError::Unreachable { host: host.to_string(), detail: format!("TLS: {other}") },
            };
        }
        // io::Error's source() skips the error it wraps (often an io::Error wrapping rustls'):
        // look inside it instead.
        let inner = c.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()).map(|e| e as &(dyn std::error::Error + 'static));
        if inner.is_none() && !detail.contains(&c.to_string()) {
            detail.push_str(": ");
            detail.push_str(&c.to_string());
        }
        cause = inner.or_else(|| c.source());
    }
    OciError::Unreachable { host: host.to_string(), detail }
}
