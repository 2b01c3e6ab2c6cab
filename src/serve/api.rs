//! The JSON API under `/api`: `Authorization: Bearer TOKEN` on every request (401 without a
//! valid one), the role asked before anything is read or changed (403 when it may not),
//! errors as `{"error": "..."}`, and every change in the audit log.

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::owners::Owner;
use super::roles::{Action, Role};
use super::users::Users;
use super::vault::{ConnectionView, NewConnection, VaultError};
use super::{Command, Service};
use crate::config::{Pipeline, UsableBy};
use crate::error_text::chain;
use crate::export::{self, ProgressMode, RunOptions};
use crate::state::History;

type Shared = Arc<Service>;

pub fn router(service: Shared) -> Router {
    Router::new()
        .route("/api/me", get(me))
        .route("/api/users", get(users))
        .route("/api/audit", get(audit))
        .route("/api/connections", get(connections).post(add_connection))
        .route(
            "/api/connections/{name}",
            axum::routing::patch(change_connection).delete(remove_connection),
        )
        .route("/api/exports", get(exports))
        .route(
            "/api/exports/{name}",
            get(one_export).put(save_export).delete(remove_export),
        )
        .route("/api/exports/{name}/plan", post(plan))
        .route("/api/exports/{name}/runs", get(runs).post(run_now))
        .route("/api/exports/{name}/runs/{run_id}", get(one_run))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such endpoint") })
        .with_state(service)
}

/// An answer that went wrong, as `{"error": "..."}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    fn bad(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    fn internal(error: &dyn std::error::Error) -> Self {
        tracing::error!("request failed: {}", chain(error));
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, chain(error))
    }

    fn not_found(what: String) -> Self {
        Self::new(StatusCode::NOT_FOUND, what)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}

type Answer<T> = Result<T, ApiError>;

/// The user a request is from.
pub struct Caller {
    pub name: String,
    pub role: Role,
}

impl Caller {
    fn may(&self, action: Action, what: &str) -> Answer<()> {
        if self.role.may(action) {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!("{} `{}` may not {what}", self.role.as_str(), self.name),
            ))
        }
    }
}

/// A token already checked against its Argon2 hash (which costs tens of milliseconds on
/// purpose, too much for every request): it counts only while its user still holds it.
#[derive(Clone)]
pub struct Checked {
    user: String,
    token_id: String,
}

impl FromRequestParts<Shared> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, service: &Shared) -> Result<Self, Self::Rejection> {
        let unauthorized = |why: &str| ApiError::new(StatusCode::UNAUTHORIZED, why);
        let token = bearer(&parts.headers).ok_or_else(|| unauthorized("send `Authorization: Bearer TOKEN`"))?;
        let users = Users::load(&service.users).map_err(|e| ApiError::internal(&e))?;
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let known = service
            .checked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&digest)
            .cloned();
        let user = match known.and_then(|k| users.get(&k.user).filter(|u| u.token_id() == k.token_id)) {
            Some(user) => user,
            None => {
                let user = users.by_token(&token).ok_or_else(|| {
                    unauthorized("the token is not valid (`cm-export user token NAME` makes a new one)")
                })?;
                let checked = Checked {
                    user: user.name.clone(),
                    token_id: user.token_id().to_owned(),
                };
                service
                    .checked
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(digest, checked);
                user
            }
        };
        Ok(Caller {
            name: user.name.clone(),
            role: user.role,
        })
    }
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_owned())
}

impl Service {
    fn record(&self, caller: &Caller, action: &str, target: &str, detail: Option<String>) -> Answer<()> {
        self.audit
            .record(&caller.name, action, target, detail)
            .map_err(|e| ApiError::internal(&e))
    }

    fn reload(&self) {
        let _ = self.scheduler.send(Command::Reload);
    }

    fn definition_file(&self, name: &str) -> Answer<PathBuf> {
        let valid = !name.is_empty()
            && name.len() <= 64
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !valid {
            return Err(ApiError::bad(format!(
                "`{name}` is not an export name: use letters, digits, `_` and `-`, at most 64"
            )));
        }
        Ok(self.dir.join(format!("{name}.toml")))
    }

    /// Export `name` as saved, with who may use its connection (admins only when the
    /// connection is gone).
    fn export(&self, name: &str) -> Answer<(Pipeline, UsableBy)> {
        let file = self.definition_file(name)?;
        if !file.is_file() {
            return Err(ApiError::not_found(format!("there is no export `{name}`")));
        }
        let pipeline = Pipeline::load(&file).map_err(|e| ApiError::bad(chain(&e)))?;
        let usable_by = self.usable_by(&pipeline.destination.connection)?;
        Ok((pipeline, usable_by))
    }

    /// Who may change or remove export `name` as it stands: those who may use its
    /// connection; admins alone when the definition no longer parses.
    fn standing_usable_by(&self, name: &str) -> Answer<UsableBy> {
        match self.export(name) {
            Ok((_, usable_by)) => Ok(usable_by),
            Err(e) if e.status == StatusCode::BAD_REQUEST => Ok(UsableBy::Admins),
            Err(e) => Err(e),
        }
    }

    fn usable_by(&self, connection: &str) -> Answer<UsableBy> {
        let connections = self.vault.load().map_err(|e| ApiError::internal(&e))?;
        Ok(connections
            .connections
            .get(connection)
            .map_or(UsableBy::Admins, |c| c.usable_by))
    }
}

async fn me(caller: Caller) -> Json<serde_json::Value> {
    Json(json!({ "name": caller.name, "role": caller.role }))
}

#[derive(Serialize)]
struct UserView {
    name: String,
    role: Role,
    created_at: String,
    password: bool,
}

async fn users(caller: Caller, State(service): State<Shared>) -> Answer<Json<Vec<UserView>>> {
    caller.may(Action::Administer, "see the users")?;
    let users = Users::load(&service.users).map_err(|e| ApiError::internal(&e))?;
    Ok(Json(
        users
            .list()
            .iter()
            .map(|u| UserView {
                name: u.name.clone(),
                role: u.role,
                created_at: u.created_at.clone(),
                password: u.has_password(),
            })
            .collect(),
    ))
}

async fn audit(caller: Caller, State(service): State<Shared>) -> Answer<Json<Vec<super::AuditEntry>>> {
    caller.may(Action::Administer, "read the audit log")?;
    service.audit.newest(1000).map(Json).map_err(|e| ApiError::internal(&e))
}

async fn connections(_: Caller, State(service): State<Shared>) -> Answer<Json<Vec<ConnectionView>>> {
    let connections = service.vault.load().map_err(|e| ApiError::internal(&e))?;
    Ok(Json(
        connections.connections.values().map(ConnectionView::from).collect(),
    ))
}

fn vault_error(error: VaultError) -> ApiError {
    match error {
        VaultError::Unknown(name) => ApiError::not_found(format!("there is no connection `{name}`")),
        VaultError::Write { .. } | VaultError::Config(_) => ApiError::internal(&error),
        refused => ApiError::bad(refused.to_string()),
    }
}

async fn add_connection(
    caller: Caller,
    State(service): State<Shared>,
    Json(new): Json<NewConnection>,
) -> Answer<(StatusCode, Json<ConnectionView>)> {
    caller.may(Action::ManageConnections, "add or change a connection")?;
    let name = new.name.clone();
    let usable_by = new.usable_by;
    let replaced = service.vault.put(new).map_err(vault_error)?;
    let action = if replaced {
        "connection.changed"
    } else {
        "connection.added"
    };
    service.record(
        &caller,
        action,
        &name,
        Some(format!("usable by {}", describe(usable_by))),
    )?;
    service.record(&caller, "consent.given", &name, None)?;
    service.reload();
    let connections = service.vault.load().map_err(|e| ApiError::internal(&e))?;
    let view = connections
        .connections
        .get(&name)
        .map(ConnectionView::from)
        .ok_or_else(|| ApiError::not_found(format!("there is no connection `{name}`")))?;
    Ok((if replaced { StatusCode::OK } else { StatusCode::CREATED }, Json(view)))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ConnectionChange {
    usable_by: UsableBy,
}

async fn change_connection(
    caller: Caller,
    State(service): State<Shared>,
    Path(name): Path<String>,
    Json(change): Json<ConnectionChange>,
) -> Answer<StatusCode> {
    caller.may(Action::ManageConnections, "change a connection")?;
    service
        .vault
        .set_usable_by(&name, change.usable_by)
        .map_err(vault_error)?;
    service.record(
        &caller,
        "connection.changed",
        &name,
        Some(format!("usable by {}", describe(change.usable_by))),
    )?;
    service.reload();
    Ok(StatusCode::NO_CONTENT)
}

async fn remove_connection(
    caller: Caller,
    State(service): State<Shared>,
    Path(name): Path<String>,
) -> Answer<StatusCode> {
    caller.may(Action::ManageConnections, "remove a connection")?;
    service.vault.remove(&name).map_err(vault_error)?;
    service.record(&caller, "connection.removed", &name, None)?;
    service.reload();
    Ok(StatusCode::NO_CONTENT)
}

fn describe(usable_by: UsableBy) -> &'static str {
    match usable_by {
        UsableBy::Admins => "admins",
        UsableBy::AdminsAndContributors => "admins and contributors",
    }
}

#[derive(Serialize)]
struct ExportView {
    name: String,
    description: Option<String>,
    connection: Option<String>,
    list_id: Option<String>,
    mode: Option<&'static str>,
    schedule: Option<String>,
    /// When it would next run on its schedule.
    next_run: Option<String>,
    /// Why the definition cannot be used, when it cannot.
    problem: Option<String>,
    saved_by: Option<Owner>,
    last_run: Option<crate::state::HistoryEntry>,
}

fn view(service: &Service, name: &str, file: &std::path::Path, history: &History) -> ExportView {
    let parsed = Pipeline::load(file).map_err(|e| chain(&e));
    let pipeline = parsed.as_ref().ok();
    let schedule = pipeline.and_then(|p| p.schedule.as_ref());
    ExportView {
        name: name.to_owned(),
        description: pipeline.and_then(|p| p.description.clone()),
        connection: pipeline.map(|p| p.destination.connection.clone()),
        list_id: pipeline.map(|p| p.destination.list_id.clone()),
        mode: pipeline.map(|p| p.destination.mode.as_str()),
        schedule: schedule.map(|s| format!("{} ({})", s.expression, s.timezone.name())),
        next_run: schedule
            .filter(|s| s.enabled)
            .and_then(|s| s.next_after(chrono::Utc::now()))
            .map(|at| at.to_rfc3339()),
        problem: parsed.err(),
        saved_by: service.owners.get(name),
        last_run: history.list(Some(name), 1).ok().and_then(|mut e| e.pop()),
    }
}

async fn exports(_: Caller, State(service): State<Shared>) -> Answer<Json<Vec<ExportView>>> {
    let history = History::new(&service.state_dir);
    let mut views = Vec::new();
    let entries = std::fs::read_dir(&service.dir).map_err(|e| ApiError::internal(&e))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml") && p.is_file())
        .collect();
    files.sort();
    for file in files {
        if let Some(name) = file.file_stem().and_then(|s| s.to_str()) {
            views.push(view(&service, name, &file, &history));
        }
    }
    Ok(Json(views))
}

async fn one_export(
    _: Caller,
    State(service): State<Shared>,
    Path(name): Path<String>,
) -> Answer<Json<serde_json::Value>> {
    let file = service.definition_file(&name)?;
    let text =
        std::fs::read_to_string(&file).map_err(|_| ApiError::not_found(format!("there is no export `{name}`")))?;
    let history = History::new(&service.state_dir);
    let view = view(&service, &name, &file, &history);
    Ok(Json(json!({ "export": view, "definition": text })))
}

async fn save_export(
    caller: Caller,
    State(service): State<Shared>,
    Path(name): Path<String>,
    body: String,
) -> Answer<(StatusCode, Json<serde_json::Value>)> {
    let file = service.definition_file(&name)?;
    let existed = file.is_file();
    if existed {
        let usable_by = service.standing_usable_by(&name)?;
        caller.may(Action::UseConnection(usable_by), &format!("change export `{name}`"))?;
    }
    let pipeline = Pipeline::parse(&file, &body).map_err(|e| ApiError::bad(chain(&e)))?;
    let connection = &pipeline.destination.connection;
    let connections = service.vault.load().map_err(|e| ApiError::internal(&e))?;
    let Some(usable_by) = connections.connections.get(connection).map(|c| c.usable_by) else {
        return Err(ApiError::bad(format!(
            "connection `{connection}` is not defined (an admin adds connections)"
        )));
    };
    caller.may(
        Action::UseConnection(usable_by),
        &format!(
            "save an export on connection `{connection}`, which is usable by {}",
            describe(usable_by)
        ),
    )?;
    export::validate(&pipeline)
        .await
        .map_err(|e| ApiError::bad(chain(&e)))?;
    crate::state::write_atomic(&file, body.as_bytes()).map_err(|e| ApiError::internal(&e))?;
    let owner = Owner {
        user: caller.name.clone(),
        role: caller.role,
        saved_at: crate::export::now_rfc3339(),
    };
    service
        .owners
        .set(&name, Some(owner))
        .map_err(|e| ApiError::internal(&e))?;
    service.record(
        &caller,
        "export.saved",
        &name,
        Some(format!("on connection `{connection}`")),
    )?;
    service.reload();
    let status = if existed { StatusCode::OK } else { StatusCode::CREATED };
    Ok((status, Json(json!({ "name": name, "saved": true }))))
}

async fn remove_export(caller: Caller, State(service): State<Shared>, Path(name): Path<String>) -> Answer<StatusCode> {
    let usable_by = service.standing_usable_by(&name)?;
    caller.may(Action::UseConnection(usable_by), &format!("remove export `{name}`"))?;
    let file = service.definition_file(&name)?;
    std::fs::remove_file(&file).map_err(|e| ApiError::internal(&e))?;
    service.owners.set(&name, None).map_err(|e| ApiError::internal(&e))?;
    service.record(&caller, "export.removed", &name, None)?;
    service.reload();
    Ok(StatusCode::NO_CONTENT)
}

/// The export, when the caller may use its connection, and the role of its owner may too.
fn usable(service: &Service, caller: &Caller, name: &str, what: &str) -> Answer<Pipeline> {
    let (pipeline, usable_by) = service.export(name)?;
    caller.may(Action::UseConnection(usable_by), &format!("{what} export `{name}`"))?;
    Ok(pipeline)
}

async fn plan(caller: Caller, State(service): State<Shared>, Path(name): Path<String>) -> Answer<Json<export::Plan>> {
    let pipeline = usable(&service, &caller, &name, "plan")?;
    let options = RunOptions {
        state_dir: Some(service.state_dir.clone()),
        progress: ProgressMode::Never,
        ..RunOptions::default()
    };
    let mut plan = export::plan(&pipeline, &options)
        .await
        .map_err(|e| ApiError::bad(chain(&e)))?;
    plan.connection = Some(format!("`{}`", pipeline.destination.connection));
    Ok(Json(plan))
}

async fn run_now(
    caller: Caller,
    State(service): State<Shared>,
    Path(name): Path<String>,
) -> Answer<(StatusCode, Json<serde_json::Value>)> {
    usable(&service, &caller, &name, "run")?;
    let (reply, answer) = tokio::sync::oneshot::channel();
    service
        .scheduler
        .send(Command::RunNow {
            export: name.clone(),
            reply,
        })
        .map_err(|_| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the scheduler is stopping"))?;
    let run_id = answer
        .await
        .map_err(|_| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the scheduler is stopping"))?
        .map_err(|why| ApiError::new(StatusCode::CONFLICT, format!("export `{name}` cannot run now: {why}")))?;
    service
        .started
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert((name.clone(), run_id.clone()));
    service.record(&caller, "run.started", &name, Some(run_id.clone()))?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "run_id": run_id }))))
}

async fn runs(
    _: Caller,
    State(service): State<Shared>,
    Path(name): Path<String>,
) -> Answer<Json<Vec<crate::state::HistoryEntry>>> {
    service.definition_file(&name)?;
    let history = History::new(&service.state_dir);
    if !history.exists() {
        return Ok(Json(Vec::new()));
    }
    history
        .list(Some(&name), 1000)
        .map(Json)
        .map_err(|e| ApiError::internal(&e))
}

async fn one_run(
    _: Caller,
    State(service): State<Shared>,
    Path((name, run_id)): Path<(String, String)>,
) -> Answer<Json<serde_json::Value>> {
    service.definition_file(&name)?;
    let history = History::new(&service.state_dir);
    let entries = match history.exists() {
        true => history.run(&name, &run_id).map_err(|e| ApiError::internal(&e))?,
        false => Vec::new(),
    };
    match entries.last() {
        Some(entry) => {
            let report = entry
                .report
                .as_ref()
                .and_then(|path| std::fs::read_to_string(path).ok())
                .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok());
            Ok(Json(report.unwrap_or_else(|| json!(entry))))
        }
        None if service
            .started
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&(name.clone(), run_id.clone()))
            || service.state_dir.join("runs").join(&name).join(&run_id).is_dir() =>
        {
            Ok(Json(json!({ "export": name, "run_id": run_id, "status": "running" })))
        }
        None => Err(ApiError::not_found(format!("export `{name}` has no run `{run_id}`"))),
    }
}
