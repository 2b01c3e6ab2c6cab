//! The JSON API under `/api`: `Authorization: Bearer TOKEN` on every request (401 without a
//! valid one), the role asked before anything is read or changed (403 when it may not),
//! errors as `{"error": "..."}`, and every change in the audit log (see `ops`).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::Shared;
use super::access::{Answer, ApiError, Caller};
use super::ops::{ExportView, Started, UserView};
use super::vault::{ConnectionView, NewConnection};
use crate::config::UsableBy;
use crate::state::HistoryEntry;

pub fn router() -> Router<Shared> {
    Router::new()
        .route("/api/me", get(me))
        .route("/api/users", get(users))
        .route("/api/audit", get(audit))
        .route("/api/connections", get(connections).post(add_connection))
        .route(
            "/api/connections/{name}",
            patch(change_connection).delete(remove_connection),
        )
        .route("/api/exports", get(exports))
        .route(
            "/api/exports/{name}",
            get(one_export).put(save_export).delete(remove_export),
        )
        .route("/api/exports/{name}/plan", post(plan))
        .route("/api/exports/{name}/runs", get(runs).post(run_now))
        .route("/api/exports/{name}/runs/{run_id}", get(one_run))
        .route(
            "/api/{*rest}",
            axum::routing::any(|| async { ApiError::not_found("no such endpoint".into()) }),
        )
}

async fn me(caller: Caller) -> Json<Value> {
    Json(json!({ "name": caller.name, "role": caller.role }))
}

async fn users(caller: Caller, State(service): State<Shared>) -> Answer<Json<Vec<UserView>>> {
    service.users(&caller).map(Json)
}

async fn audit(caller: Caller, State(service): State<Shared>) -> Answer<Json<Vec<super::AuditEntry>>> {
    service.audit_log(&caller).map(Json)
}

async fn connections(_: Caller, State(service): State<Shared>) -> Answer<Json<Vec<ConnectionView>>> {
    service.connections().map(Json)
}

async fn add_connection(
    caller: Caller,
    State(service): State<Shared>,
    Json(new): Json<NewConnection>,
) -> Answer<(StatusCode, Json<ConnectionView>)> {
    let (added, view) = service.add_connection(&caller, new)?;
    Ok((if added { StatusCode::CREATED } else { StatusCode::OK }, Json(view)))
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
    service.set_usable_by(&caller, &name, change.usable_by)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn remove_connection(
    caller: Caller,
    State(service): State<Shared>,
    Path(name): Path<String>,
) -> Answer<StatusCode> {
    service.remove_connection(&caller, &name)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn exports(_: Caller, State(service): State<Shared>) -> Answer<Json<Vec<ExportView>>> {
    service.exports().map(Json)
}

async fn one_export(_: Caller, State(service): State<Shared>, Path(name): Path<String>) -> Answer<Json<Value>> {
    let (export, definition) = service.one_export(&name)?;
    Ok(Json(json!({ "export": export, "definition": definition })))
}

async fn save_export(
    caller: Caller,
    State(service): State<Shared>,
    Path(name): Path<String>,
    body: String,
) -> Answer<(StatusCode, Json<Value>)> {
    let added = service.save_export(&caller, &name, &body).await?;
    let status = if added { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(json!({ "name": name, "saved": true }))))
}

async fn remove_export(caller: Caller, State(service): State<Shared>, Path(name): Path<String>) -> Answer<StatusCode> {
    service.remove_export(&caller, &name)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn plan(
    caller: Caller,
    State(service): State<Shared>,
    Path(name): Path<String>,
) -> Answer<Json<crate::export::Plan>> {
    service.plan(&caller, &name).await.map(Json)
}

async fn run_now(
    caller: Caller,
    State(service): State<Shared>,
    Path(name): Path<String>,
) -> Answer<(StatusCode, Json<Started>)> {
    let started = service.run_now(&caller, &name).await?;
    Ok((StatusCode::ACCEPTED, Json(started)))
}

async fn runs(_: Caller, State(service): State<Shared>, Path(name): Path<String>) -> Answer<Json<Vec<HistoryEntry>>> {
    service.history(&name, 1000).map(Json)
}

async fn one_run(
    _: Caller,
    State(service): State<Shared>,
    Path((name, run_id)): Path<(String, String)>,
) -> Answer<Json<Value>> {
    service.one_run(&name, &run_id).map(Json)
}
