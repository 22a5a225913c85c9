//! The HTTP endpoints. Every route sits behind [`access::guard`]; POST routes also need the CSRF
//! header. Jobs are named only by server-generated ids ([`JobId::parse`]).
//!
//! | method | path                         | what                                              |
//! |--------|------------------------------|---------------------------------------------------|
//! | GET    | /                            | the wizard page                                   |
//! | GET    | /assets/app.js, app.css, ... | embedded assets (a fixed list, no file system)    |
//! | GET    | /api/session                 | the CSRF token for this page                      |
//! | GET    | /api/catalog                 | versions and their components                     |
//! | POST   | /api/kubeconfig/contexts     | contexts of an uploaded or server-side kubeconfig |
//! | POST   | /api/preview                 | validate the wizard; kfctl.yaml + Terraform plan  |
//! | POST   | /api/jobs                    | start a deployment                                |
//! | GET    | /api/jobs                    | all jobs                                          |
//! | GET    | /api/jobs/{id}               | one job                                           |
//! | GET    | /api/jobs/{id}/events        | its progress (SSE, resumable)                     |
//! | GET    | /api/jobs/{id}/download      | its app directory as .tar.gz, without credentials |
//! | POST   | /api/jobs/{id}/upgrade/plan  | the plan for upgrading its app (changes nothing)  |
//! | POST   | /api/jobs/{id}/upgrade       | start upgrading its app (a new job)               |
//! | POST   | /api/jobs/{id}/notebook      | JupyterLab with codelabs for a finished deployment |
//! | POST   | /api/jobs/{id}/resume        | run an interrupted job again, in the same job     |

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::access::{self, refusal};
use super::archive::{self, KnownSecrets};
use super::deploy;
use super::upgrade::{self, UpgradeRequest, UpgradeWebError};
use super::events;
use super::jobs::{Job, JobId};
use super::wizard::{self, DeploymentForm, KubeconfigSource};
use super::worker::{self, ResumeError};
use super::{Release, ServerState};

/// Largest request body: room for an uploaded kubeconfig, nothing more.
const MAX_BODY_BYTES: usize = 512 * 1024;

pub fn router(state: Arc<ServerState>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/assets/{file}", get(asset))
        .route("/api/session", get(session))
        .route("/api/catalog", get(catalog))
        .route("/api/kubeconfig/contexts", post(kubeconfig_contexts))
        .route("/api/preview", post(preview))
        .route("/api/jobs", get(list_jobs).post(start_job))
        .route("/api/jobs/{id}", get(job))
        .route("/api/jobs/{id}/events", get(job_events))
        .route("/api/jobs/{id}/download", get(download))
        .route("/api/jobs/{id}/upgrade/plan", post(upgrade_plan))
        .route("/api/jobs/{id}/upgrade", post(start_upgrade))
        .route("/api/jobs/{id}/notebook", post(open_notebook))
        .route("/api/jobs/{id}/resume", post(resume_job))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(state.clone(), access::guard))
        .layer(middleware::from_fn(access::security_headers))
        .with_state(state)
}

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");
const FAVICON_SVG: &str = include_str!("assets/favicon.svg");

async fn index() -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], INDEX_HTML).into_response()
}

/// Assets come from a fixed list compiled into the binary; the name never touches the file system.
async fn asset(Path(file): Path<String>) -> Response {
    let (body, content_type) = match file.as_str() {
        "app.js" => (APP_JS, "text/javascript; charset=utf-8"),
        "app.css" => (APP_CSS, "text/css; charset=utf-8"),
        "favicon.svg" => (FAVICON_SVG, "image/svg+xml"),
        _ => return not_found().await,
    };
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

async fn not_found() -> Response {
    refusal(StatusCode::NOT_FOUND, "no such page", "start from / (the URL kfctl serve printed)")
}

async fn session(State(state): State<Arc<ServerState>>) -> Response {
    Json(serde_json::json!({ "csrf_token": state.csrf_token.expose() })).into_response()
}

async fn catalog(State(state): State<Arc<ServerState>>) -> Response {
    let versions: Vec<_> = state
        .releases
        .iter()
        .map(|r| serde_json::json!({ "version": r.version, "components": r.components }))
        .collect();
    Json(serde_json::json!({
        "versions": versions,
        // Listed newest first; preselected: the release whose archive the operator named, else
        // the version a plain `kfctl init` installs.
        "default_version": state.releases.iter().find(|r| r.operator_archive).map_or(crate::registry::catalog::DEFAULT_VERSION, |r| r.version.as_str()),
        "upstream_default_password": wizard::UPSTREAM_DEFAULT_PASSWORD,
    }))
    .into_response()
}

/// A JSON body that did not parse: 400 with the parser's reason (which names the field).
fn bad_json(rejection: JsonRejection) -> Response {
    refusal(rejection.status(), &rejection.body_text(), "send the JSON the wizard page sends")
}

fn invalid(fields: Vec<wizard::FieldError>) -> Response {
    let body = serde_json::json!({
        "error": "some fields are not valid",
        "hint": "correct the fields listed and try again",
        "fields": fields,
    });
    (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ContextsRequest {
    kubeconfig: KubeconfigSource,
}

async fn kubeconfig_contexts(body: Result<Json<ContextsRequest>, JsonRejection>) -> Response {
    let Json(request) = match body {
        Ok(body) => body,
        Err(rejection) => return bad_json(rejection),
    };
    let checked = tokio::task::spawn_blocking(move || match request.kubeconfig {
        KubeconfigSource::Upload { content } => wizard::parse_kubeconfig(content, None),
        KubeconfigSource::ServerPath { path } => wizard::read_server_kubeconfig(&path),
    })
    .await
    .expect("kubeconfig check panicked");
    match checked {
        Ok(checked) => Json(serde_json::json!({ "contexts": checked.contexts, "current_context": checked.current_context })).into_response(),
        Err(message) => invalid(vec![wizard::FieldError { field: "platform.kubeconfig".into(), message }]),
    }
}

/// Validates a wizard form against the release it names.
async fn check_form(state: &Arc<ServerState>, form: DeploymentForm) -> Result<(Release, wizard::CheckedDeployment), Response> {
    let versions: Vec<String> = state.releases.iter().map(|r| r.version.clone()).collect();
    let release = state.release(&form.version).cloned();
    let components = release.as_ref().map(|r| r.components.clone()).unwrap_or_default();
    let checked = tokio::task::spawn_blocking(move || wizard::check(form, &versions, &components)).await.expect("form check panicked");
    match (checked, release) {
        (Ok(checked), Some(release)) => Ok((release, checked)),
        (Err(fields), _) => Err(invalid(fields)),
        (Ok(_), None) => Err(invalid(vec![wizard::FieldError { field: "version".into(), message: "unknown version".into() }])),
    }
}

async fn preview(State(state): State<Arc<ServerState>>, body: Result<Json<DeploymentForm>, JsonRejection>) -> Response {
    let Json(form) = match body {
        Ok(body) => body,
        Err(rejection) => return bad_json(rejection),
    };
    let (release, checked) = match check_form(&state, form).await {
        Ok(ok) => ok,
        Err(response) => return response,
    };
    match deploy::preview(&state, &release, &checked).await {
        Ok(preview) => Json(preview).into_response(),
        Err(err) => refusal(StatusCode::UNPROCESSABLE_ENTITY, &err.to_string(), "check the platform and component choices"),
    }
}

async fn start_job(State(state): State<Arc<ServerState>>, body: Result<Json<DeploymentForm>, JsonRejection>) -> Response {
    let Json(form) = match body {
        Ok(body) => body,
        Err(rejection) => return bad_json(rejection),
    };
    let (release, checked) = match check_form(&state, form).await {
        Ok(ok) => ok,
        Err(response) => return response,
    };
    match deploy::start(state.clone(), release, checked) {
        Ok(job) => (StatusCode::ACCEPTED, Json(job.record())).into_response(),
        Err(err) => refusal(StatusCode::INTERNAL_SERVER_ERROR, &err.to_string(), "check the state directory"),
    }
}

/// "Open JupyterLab with codelabs" on the last page: only for a deployment that succeeded.
async fn open_notebook(State(state): State<Arc<ServerState>>, Path(id): Path<String>) -> Response {
    let job = match lookup(&state, &id) {
        Ok(job) => job,
        Err(response) => return response,
    };
    if job.record().state != super::jobs::JobState::Succeeded {
        return refusal(StatusCode::CONFLICT, "the deployment has not succeeded", "JupyterLab with codelabs needs a ready Kubeflow; wait for the deployment or start a new one");
    }
    match deploy::open_codelabs(&job).await {
        Ok(link) => Json(link).into_response(),
        Err(error) => refusal(StatusCode::BAD_GATEWAY, &error, "`kfctl notebook` in the downloaded app directory shows the same steps on your machine"),
    }
}

/// "Resume" on an interrupted job's page: the same job runs again (202 with its record; its
/// events go on in the same log).
async fn resume_job(State(state): State<Arc<ServerState>>, Path(id): Path<String>) -> Response {
    let job = match lookup(&state, &id) {
        Ok(job) => job,
        Err(response) => return response,
    };
    match worker::resume(&state, job.clone()) {
        Ok(()) => (StatusCode::ACCEPTED, Json(job.record())).into_response(),
        Err(err @ ResumeError::NotInterrupted { .. }) => {
            refusal(StatusCode::CONFLICT, &err.to_string(), "a running job goes on by itself; for a finished one, start a new deployment or an upgrade")
        }
        Err(err @ ResumeError::NoAppDir(_)) => refusal(StatusCode::CONFLICT, &err.to_string(), "start a new deployment from the wizard"),
        Err(err) => refusal(StatusCode::INTERNAL_SERVER_ERROR, &err.to_string(), "check the state directory"),
    }
}

async fn list_jobs(State(state): State<Arc<ServerState>>) -> Response {
    Json(serde_json::json!({ "jobs": state.jobs.list() })).into_response()
}

/// The job a path names, or the refusal to send. Only server-generated ids are accepted.
fn lookup(state: &ServerState, id: &str) -> Result<Arc<Job>, Response> {
    let not_found = || refusal(StatusCode::NOT_FOUND, "no such job", "pick a job from the list at /");
    let id = JobId::parse(id).ok_or_else(not_found)?;
    state.jobs.get(&id).ok_or_else(not_found)
}

async fn job(State(state): State<Arc<ServerState>>, Path(id): Path<String>) -> Response {
    match lookup(&state, &id) {
        Ok(job) => Json(job.record()).into_response(),
        Err(response) => response,
    }
}

#[derive(Deserialize)]
struct EventsQuery {
    after: Option<u64>,
}

async fn job_events(State(state): State<Arc<ServerState>>, Path(id): Path<String>, headers: HeaderMap, Query(query): Query<EventsQuery>) -> Response {
    let job = match lookup(&state, &id) {
        Ok(job) => job,
        Err(response) => return response,
    };
    let after = events::resume_point(&headers, query.after);
    match events::stream(job, after).await {
        Ok(sse) => sse.into_response(),
        Err(err) => refusal(StatusCode::INTERNAL_SERVER_ERROR, &err.to_string(), "the job's log could not be read"),
    }
}

async fn download(State(state): State<Arc<ServerState>>, Path(id): Path<String>) -> Response {
    let job = match lookup(&state, &id) {
        Ok(job) => job,
        Err(response) => return response,
    };
    let record = job.record();
    let mut secrets = vec![state.access_token.expose().to_string(), state.csrf_token.expose().to_string()];
    secrets.extend(state.job_secrets.lock().expect("job secrets lock").get(&job.id).cloned().unwrap_or_default());
    let app_dir = job.app_dir();
    let private_dir = job.private_dir();
    let name = record.name.clone();
    let packed = tokio::task::spawn_blocking(move || {
        secrets.extend(deploy::stored_kubeconfig_secrets(&private_dir));
        archive::pack_app_dir(&app_dir, &name, &KnownSecrets::new(secrets))
    })
    .await
    .expect("archive task panicked");
    match packed {
        Ok(bytes) => {
            let disposition = format!("attachment; filename=\"{}.tar.gz\"", record.name);
            ([(header::CONTENT_TYPE, "application/gzip".to_string()), (header::CONTENT_DISPOSITION, disposition)], bytes).into_response()
        }
        Err(archive::ArchiveError::Missing(_)) => {
            refusal(StatusCode::CONFLICT, "the app directory does not exist yet", "wait until the deployment has written it")
        }
        Err(err) => refusal(StatusCode::INTERNAL_SERVER_ERROR, &err.to_string(), "see the server's output"),
    }
}

fn upgrade_refusal(err: UpgradeWebError) -> Response {
    match err {
        UpgradeWebError::NotDeployed(_) => refusal(StatusCode::CONFLICT, &err.to_string(), "upgrade a deployment that succeeded"),
        UpgradeWebError::Upgrade(message) => refusal(StatusCode::UNPROCESSABLE_ENTITY, &message, "see the message; the app was not changed"),
    }
}

/// The job a path names and the upgrade request in the body, or the refusal to send.
fn upgrade_request(state: &ServerState, id: &str, body: Result<Json<UpgradeRequest>, JsonRejection>) -> Result<(Arc<Job>, UpgradeRequest), Response> {
    let Json(request) = body.map_err(bad_json)?;
    Ok((lookup(state, id)?, request))
}

async fn upgrade_plan(State(state): State<Arc<ServerState>>, Path(id): Path<String>, body: Result<Json<UpgradeRequest>, JsonRejection>) -> Response {
    let (job, request) = match upgrade_request(&state, &id, body) {
        Ok(found) => found,
        Err(response) => return response,
    };
    match upgrade::plan(&job, &request).await {
        Ok(view) => Json(view).into_response(),
        Err(err) => upgrade_refusal(err),
    }
}

async fn start_upgrade(State(state): State<Arc<ServerState>>, Path(id): Path<String>, body: Result<Json<UpgradeRequest>, JsonRejection>) -> Response {
    let (job, request) = match upgrade_request(&state, &id, body) {
        Ok(found) => found,
        Err(response) => return response,
    };
    match upgrade::start(state.clone(), &job, request) {
        Ok(new_job) => (StatusCode::ACCEPTED, Json(new_job.record())).into_response(),
        Err(err) => upgrade_refusal(err),
    }
}
