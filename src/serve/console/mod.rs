//! The web console: server-rendered pages (templates in this folder, no JavaScript build
//! step) over the same operations as the API. A user logs in with a password or their API
//! token and keeps an HTTP-only, `SameSite=Strict` session cookie; every form carries the
//! session's CSRF token, and a POST without it is refused.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::Form;
use axum::Router;
use axum::extract::{FromRequest, FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use minijinja::{Environment, context};
use serde::Serialize;

use super::Shared;
use super::access::{ApiError, Caller};
use super::roles::Action;
use super::users::Users;
use super::vault::NewConnection;
use crate::config::UsableBy;
use crate::state::{HistoryEntry, RunStatus};

const COOKIE: &str = "cmx_session";
/// A session lasts a working day.
const SESSION: Duration = Duration::from_secs(12 * 3600);

/// A logged-in browser.
#[derive(Clone)]
pub struct Session {
    user: String,
    csrf: String,
    expires: Instant,
}

fn templates() -> &'static Environment<'static> {
    static TEMPLATES: OnceLock<Environment<'static>> = OnceLock::new();
    TEMPLATES.get_or_init(|| {
        let mut env = Environment::new();
        env.add_filter("time", time);
        for (name, source) in [
            ("base.html", include_str!("base.html")),
            ("login.html", include_str!("login.html")),
            ("exports.html", include_str!("exports.html")),
            ("export.html", include_str!("export.html")),
            ("edit.html", include_str!("edit.html")),
            ("connections.html", include_str!("connections.html")),
            ("users.html", include_str!("users.html")),
            ("audit.html", include_str!("audit.html")),
            ("refused.html", include_str!("refused.html")),
        ] {
            // The templates are part of the binary: one that does not parse fails every test.
            env.add_template(name, source)
                .unwrap_or_else(|e| panic!("template {name}: {e}"));
        }
        env
    })
}

/// An RFC 3339 time as people read it: `2026-11-29 22:40 UTC`.
fn time(text: String) -> String {
    chrono::DateTime::parse_from_rfc3339(&text)
        .map(|t| t.with_timezone(&chrono::Utc).format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or(text)
}

fn render(name: &str, values: minijinja::Value) -> Response {
    match templates().get_template(name).and_then(|t| t.render(values)) {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!("cannot render {name}: {e:#}");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page cannot be shown; the service's log says why",
            )
                .into_response()
        }
    }
}

pub fn router() -> Router<Shared> {
    Router::new()
        .route("/", get(exports))
        .route("/console.css", get(stylesheet))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/exports/new", get(new_export).post(create_export))
        .route("/exports/{name}", get(export_page))
        .route("/exports/{name}/edit", get(edit_export).post(update_export))
        .route("/exports/{name}/plan", post(plan))
        .route("/exports/{name}/run", post(run_now))
        .route("/exports/{name}/remove", post(remove_export))
        .route("/connections", get(connections).post(add_connection))
        .route("/connections/{name}/usable-by", post(set_usable_by))
        .route("/connections/{name}/test", post(test_connection))
        .route("/connections/{name}/remove", post(remove_connection))
        .route("/users", get(users))
        .route("/audit", get(audit))
}

async fn stylesheet() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("console.css"),
    )
}

/// A form posted from the visitor's own session: its CSRF token is checked before any
/// handler sees it, so no handler can forget to.
pub struct Posted {
    visitor: Visitor,
    fields: Fields,
}

impl FromRequest<Shared> for Posted {
    type Rejection = Response;

    async fn from_request(request: Request, service: &Shared) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = request.into_parts();
        let visitor = Visitor::from_request_parts(&mut parts, service).await?;
        let Form(fields) = Form::<Fields>::from_request(Request::from_parts(parts, body), service)
            .await
            .map_err(IntoResponse::into_response)?;
        match visitor.forged(&fields) {
            Some(refused) => Err(refused),
            None => Ok(Posted { visitor, fields }),
        }
    }
}

/// The user of a console request, with their session's CSRF token.
pub struct Visitor {
    caller: Caller,
    csrf: String,
}

impl FromRequestParts<Shared> for Visitor {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, service: &Shared) -> Result<Self, Self::Rejection> {
        let to_login = || Redirect::to("/login").into_response();
        let id = cookie(&parts.headers, COOKIE).ok_or_else(to_login)?;
        let session = {
            let mut sessions = service.sessions.lock().unwrap_or_else(|p| p.into_inner());
            sessions.retain(|_, s| s.expires > Instant::now());
            sessions.get(&id).cloned()
        };
        let session = session.ok_or_else(to_login)?;
        let caller = Caller::by_name(service, &session.user)
            .map_err(IntoResponse::into_response)?
            .ok_or_else(to_login)?;
        Ok(Visitor {
            caller,
            csrf: session.csrf,
        })
    }
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
}

fn random_token() -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

type Fields = HashMap<String, String>;

impl Visitor {
    /// The refusal of a form that is not the visitor's own: one without their session's
    /// CSRF token.
    fn forged(&self, form: &Fields) -> Option<Response> {
        let given = form.get("csrf").map(String::as_bytes).unwrap_or_default();
        let same = given.len() == self.csrf.len()
            && given
                .iter()
                .zip(self.csrf.as_bytes())
                .fold(0u8, |diff, (a, b)| diff | (a ^ b))
                == 0;
        (!same).then(|| {
            self.page_with(
                StatusCode::FORBIDDEN,
                "refused.html",
                context! { heading => "Refused: this form did not come from your session (a missing or wrong CSRF token)." },
            )
        })
    }

    fn page(&self, name: &str, values: minijinja::Value) -> Response {
        self.page_with(StatusCode::OK, name, values)
    }

    fn page_with(&self, status: StatusCode, name: &str, values: minijinja::Value) -> Response {
        let me = context! { name => self.caller.name.clone(), role => self.caller.role.as_str() };
        let mut response = render(name, context! { me, csrf => self.csrf.clone(), ..values });
        if response.status() == StatusCode::OK {
            *response.status_mut() = status;
        }
        response
    }

    /// A refusal or failure shown on the exports page.
    fn failed(&self, service: &Shared, error: ApiError) -> Response {
        let status = error.status;
        let mut response = exports_page(self, service, Some(error.message), None);
        *response.status_mut() = status;
        response
    }
}

async fn login_page() -> Response {
    render("login.html", context! {})
}

async fn login(State(service): State<Shared>, Form(form): Form<Fields>) -> Response {
    let field = |name: &str| form.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());
    let user = match (
        field("token"),
        field("name"),
        form.get("password").filter(|p| !p.is_empty()),
    ) {
        (Some(token), _, _) => Caller::by_token(&service, token).ok().flatten().map(|c| c.name),
        (None, Some(name), Some(password)) => Users::load(&service.users)
            .ok()
            .and_then(|users| users.by_password(name, password).map(|u| u.name.clone())),
        _ => None,
    };
    let Some(user) = user else {
        let mut page = render(
            "login.html",
            context! { error => "That user and password, or that token, is not valid." },
        );
        *page.status_mut() = StatusCode::UNAUTHORIZED;
        return page;
    };
    let id = random_token();
    let session = Session {
        user,
        csrf: random_token(),
        expires: Instant::now() + SESSION,
    };
    service
        .sessions
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(id.clone(), session);
    let cookie = format!(
        "{COOKIE}={id}; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age={}",
        SESSION.as_secs()
    );
    ([(header::SET_COOKIE, cookie)], Redirect::to("/")).into_response()
}

async fn logout(State(service): State<Shared>, headers: HeaderMap, _: Posted) -> Response {
    if let Some(id) = cookie(&headers, COOKIE) {
        service.sessions.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
    }
    let expired = format!("{COOKIE}=; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=0");
    ([(header::SET_COOKIE, expired)], Redirect::to("/login")).into_response()
}

fn exports_page(visitor: &Visitor, service: &Shared, error: Option<String>, notice: Option<String>) -> Response {
    let exports = service.exports().unwrap_or_default();
    let may_edit = visitor
        .caller
        .role
        .may(Action::UseConnection(UsableBy::AdminsAndContributors));
    visitor.page(
        "exports.html",
        context! { page => "exports", exports, may_edit, error, notice },
    )
}

async fn exports(visitor: Visitor, State(service): State<Shared>) -> Response {
    exports_page(&visitor, &service, None, None)
}

/// Members sent per run, oldest on the left, coloured by status: runs over time at a glance.
fn chart(runs: &[HistoryEntry]) -> Option<String> {
    if runs.is_empty() {
        return None;
    }
    let shown: Vec<&HistoryEntry> = runs.iter().take(40).rev().collect();
    let most = shown.iter().map(|r| r.members_sent).max().unwrap_or(0).max(1) as f64;
    let (width, height, gap) = (1000.0, 130.0, 4.0);
    let bar = (width - 20.0) / 40.0 - gap;
    let mut svg = format!(
        r##"<svg class="runs" viewBox="0 0 {width} 160" role="img" aria-label="members sent per run"><line x1="10" y1="140" x2="990" y2="140" stroke="#c9cfdc"/>"##
    );
    for (i, run) in shown.iter().enumerate() {
        let h = (run.members_sent as f64 / most * height).max(2.0);
        let x = 10.0 + i as f64 * (bar + gap);
        let colour = match run.status {
            RunStatus::Succeeded => "#1f8a4c",
            RunStatus::SucceededWithRejects | RunStatus::Interrupted | RunStatus::Skipped => "#d39b00",
            RunStatus::Failed | RunStatus::Cancelled => "#c0262d",
        };
        svg.push_str(&format!(
            r##"<rect x="{x:.1}" y="{:.1}" width="{bar:.1}" height="{h:.1}" rx="2" fill="{colour}"><title>{} · {} · {} sent</title></rect>"##,
            140.0 - h,
            run.started_at,
            run.status.describe(),
            run.members_sent
        ));
    }
    svg.push_str(&format!(
        r##"<text x="10" y="156" font-size="11" fill="#5b6478">oldest</text><text x="990" y="156" font-size="11" fill="#5b6478" text-anchor="end">newest · tallest bar {} members</text></svg>"##,
        most as u64
    ));
    Some(svg)
}

fn export_view(
    visitor: &Visitor,
    service: &Shared,
    name: &str,
    plan: Option<crate::export::Plan>,
    notice: Option<String>,
    error: Option<String>,
) -> Response {
    let (export, _) = match service.one_export(name) {
        Ok(found) => found,
        Err(e) => return visitor.failed(service, e),
    };
    let runs = service.history(name, 200).unwrap_or_default();
    let running = service.running(name);
    let usable_by = export
        .connection
        .as_deref()
        .and_then(|c| service.connections().ok()?.into_iter().find(|v| v.name == c))
        .map_or(UsableBy::Admins, |c| c.usable_by);
    let may_use = visitor.caller.role.may(Action::UseConnection(usable_by));
    visitor.page(
        "export.html",
        context! { page => "exports", export, runs, chart => chart(&runs), running, may_use, plan, notice, error },
    )
}

async fn export_page(visitor: Visitor, State(service): State<Shared>, Path(name): Path<String>) -> Response {
    export_view(&visitor, &service, &name, None, None, None)
}

async fn plan(State(service): State<Shared>, Path(name): Path<String>, Posted { visitor, .. }: Posted) -> Response {
    match service.plan(&visitor.caller, &name).await {
        Ok(plan) => export_view(&visitor, &service, &name, Some(plan), None, None),
        Err(e) if e.status == StatusCode::BAD_REQUEST => {
            export_view(&visitor, &service, &name, None, None, Some(e.message))
        }
        Err(e) => visitor.failed(&service, e),
    }
}

async fn run_now(State(service): State<Shared>, Path(name): Path<String>, Posted { visitor, .. }: Posted) -> Response {
    match service.run_now(&visitor.caller, &name).await {
        Ok(started) => {
            let notice = format!("Run {} started.", started.run_id);
            export_view(&visitor, &service, &name, None, Some(notice), None)
        }
        Err(e) if e.status == StatusCode::CONFLICT => {
            export_view(&visitor, &service, &name, None, None, Some(e.message))
        }
        Err(e) => visitor.failed(&service, e),
    }
}

async fn remove_export(
    State(service): State<Shared>,
    Path(name): Path<String>,
    Posted { visitor, .. }: Posted,
) -> Response {
    match service.remove_export(&visitor.caller, &name) {
        Ok(()) => exports_page(&visitor, &service, None, Some(format!("Export {name} removed."))),
        Err(e) => visitor.failed(&service, e),
    }
}

/// What the export form holds; a definition with more than this is edited as TOML.
#[derive(Debug, Default, Serialize)]
struct ExportForm {
    description: String,
    source: String,
    sql: String,
    connection: String,
    list_id: String,
    email: String,
    full_name: String,
    cron: String,
    timezone: String,
}

impl ExportForm {
    fn from_fields(fields: &Fields) -> Self {
        let get = |key: &str| fields.get(key).map(|v| v.trim().to_owned()).unwrap_or_default();
        Self {
            description: get("description"),
            source: get("source"),
            sql: get("sql"),
            connection: get("connection"),
            list_id: get("list_id"),
            email: get("email"),
            full_name: get("full_name"),
            cron: get("cron"),
            timezone: get("timezone"),
        }
    }

    /// The form of a definition that holds nothing else.
    fn of(text: &str) -> Option<Self> {
        let table: toml::Table = toml::from_str(text).ok()?;
        let text_of = |v: Option<&toml::Value>| v.and_then(|v| v.as_str()).map(str::to_owned);
        let only = |t: &toml::Table, keys: &[&str]| t.keys().all(|k| keys.contains(&k.as_str()));
        if !only(
            &table,
            &["description", "source", "segment", "destination", "mapping", "schedule"],
        ) {
            return None;
        }
        let source = table.get("source")?.as_table()?;
        let segments = table.get("segment")?.as_array()?;
        let [segment] = segments.as_slice() else { return None };
        let segment = segment.as_table()?;
        let destination = table.get("destination")?.as_table()?;
        let mapping = table.get("mapping")?.as_table()?;
        let schedule = table.get("schedule").and_then(|s| s.as_table());
        let simple = only(source, &["path"])
            && only(segment, &["name", "sql"])
            && only(destination, &["connection", "list-id"])
            && only(mapping, &["email", "name"])
            && schedule.is_none_or(|s| only(s, &["cron", "timezone"]));
        simple.then(|| Self {
            description: text_of(table.get("description")).unwrap_or_default(),
            source: text_of(source.get("path")).unwrap_or_default(),
            sql: text_of(segment.get("sql")).unwrap_or_default(),
            connection: text_of(destination.get("connection")).unwrap_or_default(),
            list_id: text_of(destination.get("list-id")).unwrap_or_default(),
            email: text_of(mapping.get("email")).unwrap_or_default(),
            full_name: text_of(mapping.get("name")).unwrap_or_default(),
            cron: text_of(schedule.and_then(|s| s.get("cron"))).unwrap_or_default(),
            timezone: text_of(schedule.and_then(|s| s.get("timezone"))).unwrap_or_default(),
        })
    }

    fn to_toml(&self) -> String {
        let mut table = toml::Table::new();
        let text = |v: &str| toml::Value::String(v.to_owned());
        let section = |pairs: &[(&str, &str)]| {
            let mut t = toml::Table::new();
            for (key, value) in pairs.iter().filter(|(_, v)| !v.is_empty()) {
                t.insert((*key).to_owned(), text(value));
            }
            t
        };
        let source = section(&[("path", &self.source)]);
        let segment = section(&[("name", "segment"), ("sql", &self.sql)]);
        let destination = section(&[("connection", &self.connection), ("list-id", &self.list_id)]);
        let mapping = section(&[("email", &self.email), ("name", &self.full_name)]);
        let schedule = section(&[("cron", &self.cron), ("timezone", &self.timezone)]);
        if !self.description.is_empty() {
            table.insert("description".into(), text(&self.description));
        }
        table.insert("source".into(), source.into());
        table.insert("segment".into(), toml::Value::Array(vec![segment.into()]));
        table.insert("destination".into(), destination.into());
        table.insert("mapping".into(), mapping.into());
        if !self.cron.is_empty() {
            table.insert("schedule".into(), schedule.into());
        }
        toml::to_string(&table).unwrap_or_default()
    }
}

fn editor(
    visitor: &Visitor,
    service: &Shared,
    name: Option<&str>,
    form: Option<&ExportForm>,
    toml: &str,
    error: Option<String>,
) -> Response {
    // Only the connections this user may build exports on.
    let connections: Vec<_> = service
        .connections()
        .unwrap_or_default()
        .into_iter()
        .filter(|c| visitor.caller.role.may(Action::UseConnection(c.usable_by)))
        .collect();
    let status = if error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    visitor.page_with(
        status,
        "edit.html",
        context! { page => "exports", new => name.is_none(), name, form, toml, connections, error },
    )
}

async fn new_export(visitor: Visitor, State(service): State<Shared>) -> Response {
    let form = ExportForm {
        email: "email".into(),
        full_name: "full_name".into(),
        sql: "SELECT * FROM profiles WHERE ...".into(),
        ..ExportForm::default()
    };
    editor(&visitor, &service, None, Some(&form), "", None)
}

async fn edit_export(visitor: Visitor, State(service): State<Shared>, Path(name): Path<String>) -> Response {
    match service.one_export(&name) {
        Ok((_, text)) => {
            let form = ExportForm::of(&text);
            editor(&visitor, &service, Some(&name), form.as_ref(), &text, None)
        }
        Err(e) => visitor.failed(&service, e),
    }
}

async fn save(visitor: &Visitor, service: &Shared, name: &str, fields: &Fields) -> Response {
    let (form, text) = match fields.get("toml") {
        Some(toml) => (None, toml.clone()),
        None => {
            let form = ExportForm::from_fields(fields);
            let text = form.to_toml();
            (Some(form), text)
        }
    };
    match service.save_export(&visitor.caller, name, &text).await {
        Ok(_) => export_view(
            visitor,
            service,
            name,
            None,
            Some(format!("Export {name} saved.")),
            None,
        ),
        Err(e) if e.status == StatusCode::BAD_REQUEST || e.status == StatusCode::FORBIDDEN => {
            let shown = fields.get("name").is_none().then_some(name);
            let mut page = editor(visitor, service, shown, form.as_ref(), &text, Some(e.message));
            *page.status_mut() = e.status;
            page
        }
        Err(e) => visitor.failed(service, e),
    }
}

async fn create_export(State(service): State<Shared>, Posted { visitor, fields }: Posted) -> Response {
    let name = fields.get("name").map(|n| n.trim().to_owned()).unwrap_or_default();
    if service.definition_file(&name).is_ok_and(|f| f.exists()) {
        let form = ExportForm::from_fields(&fields);
        let error = format!("There is already an export {name}; choose another name or edit it.");
        return editor(&visitor, &service, None, Some(&form), "", Some(error));
    }
    save(&visitor, &service, &name, &fields).await
}

async fn update_export(
    State(service): State<Shared>,
    Path(name): Path<String>,
    Posted { visitor, fields }: Posted,
) -> Response {
    save(&visitor, &service, &name, &fields).await
}

fn connections_page(visitor: &Visitor, service: &Shared, notice: Option<String>, error: Option<String>) -> Response {
    let connections = service.connections().unwrap_or_default();
    let admin = visitor.caller.role.may(Action::ManageConnections);
    visitor.page(
        "connections.html",
        context! { page => "connections", connections, admin, notice, error },
    )
}

async fn connections(visitor: Visitor, State(service): State<Shared>) -> Response {
    connections_page(&visitor, &service, None, None)
}

fn answered(visitor: &Visitor, service: &Shared, outcome: Result<String, ApiError>) -> Response {
    match outcome {
        Ok(notice) => connections_page(visitor, service, Some(notice), None),
        Err(e) => {
            let status = e.status;
            let mut page = connections_page(visitor, service, None, Some(e.message));
            *page.status_mut() = status;
            page
        }
    }
}

async fn add_connection(State(service): State<Shared>, Posted { visitor, fields }: Posted) -> Response {
    let get = |key: &str| fields.get(key).map(|v| v.trim().to_owned()).unwrap_or_default();
    let new = NewConnection {
        name: get("name"),
        display_name: get("display_name"),
        usable_by: match get("usable_by").as_str() {
            "admins-and-contributors" => UsableBy::AdminsAndContributors,
            _ => UsableBy::Admins,
        },
        data_privacy_consent: get("data_privacy_consent") == "true",
        api_key: Some(get("api_key")),
        oauth: None,
        export_user: get("export_user"),
        base_url: Some(get("base_url")).filter(|u| !u.is_empty()),
    };
    let outcome = service
        .add_connection(&visitor.caller, new)
        .map(|(_, view)| format!("Connection {} saved, with your consent recorded.", view.name));
    answered(&visitor, &service, outcome)
}

async fn set_usable_by(
    State(service): State<Shared>,
    Path(name): Path<String>,
    Posted { visitor, fields }: Posted,
) -> Response {
    let usable_by = match fields.get("usable_by").map(String::as_str) {
        Some("admins-and-contributors") => UsableBy::AdminsAndContributors,
        _ => UsableBy::Admins,
    };
    let outcome = service.set_usable_by(&visitor.caller, &name, usable_by).map(|()| {
        format!(
            "Connection {name} is now usable by {}.",
            super::ops::describe(usable_by)
        )
    });
    answered(&visitor, &service, outcome)
}

async fn test_connection(
    State(service): State<Shared>,
    Path(name): Path<String>,
    Posted { visitor, .. }: Posted,
) -> Response {
    let outcome = service.test_connection(&visitor.caller, &name).await;
    answered(&visitor, &service, outcome)
}

async fn remove_connection(
    State(service): State<Shared>,
    Path(name): Path<String>,
    Posted { visitor, .. }: Posted,
) -> Response {
    let outcome = service
        .remove_connection(&visitor.caller, &name)
        .map(|()| format!("Connection {name} removed; its exports no longer run."));
    answered(&visitor, &service, outcome)
}

async fn users(visitor: Visitor, State(service): State<Shared>) -> Response {
    match service.users(&visitor.caller) {
        Ok(users) => visitor.page("users.html", context! { page => "users", users }),
        Err(e) => visitor.failed(&service, e),
    }
}

async fn audit(visitor: Visitor, State(service): State<Shared>) -> Response {
    match service.audit_log(&visitor.caller) {
        Ok(entries) => visitor.page("audit.html", context! { page => "audit", entries }),
        Err(e) => visitor.failed(&service, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_parses_and_the_form_round_trips() {
        for name in [
            "login.html",
            "exports.html",
            "export.html",
            "edit.html",
            "connections.html",
        ] {
            templates().get_template(name).unwrap();
        }
        let form = ExportForm {
            description: "VIPs \"weekly\"".into(),
            source: "s3://bucket/profiles/".into(),
            sql: "SELECT * FROM profiles\nWHERE lifetime_value > 4500".into(),
            connection: "marketing".into(),
            list_id: "a58ee1d3039b8bec838e6d1482a8a965".into(),
            email: "email".into(),
            full_name: "full_name".into(),
            cron: "0 6 * * *".into(),
            timezone: "Europe/Bucharest".into(),
        };
        let text = form.to_toml();
        let again = ExportForm::of(&text).unwrap();
        assert_eq!(again.to_toml(), text);
        assert!(ExportForm::of(&format!("{text}\n[options]\nbatch-size = 10\n")).is_none());
    }
}
