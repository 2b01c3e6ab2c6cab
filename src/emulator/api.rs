//! The API under `/api/v3.3`: authentication, rate limit and faults first, then the
//! endpoint itself. One handler routes by path so the guards sit in one readable place.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use rand::Rng;
use serde::Serialize;

use super::Shared;
use super::lists::{ImportOutcome, IncomingImport, IncomingSubscriber, MemberState, Stamp, api_error};
use super::server::ConnectionKill;
use crate::campaign_monitor::types::{
    ApiErrorBody, ClientSummary, ListDetails, ListSummary, NewCustomField, SubscriberPage, SystemDate,
};

pub(super) const CLIENT_ID: &str = "4a397ccaaa55eb4e6aa1221e1e2d7122";

/// A finished answer before headers: status and JSON body (empty for a bodiless 404).
struct Answer {
    status: StatusCode,
    body: Vec<u8>,
}

fn json<T: Serialize>(status: StatusCode, value: &T) -> Answer {
    Answer {
        status,
        body: serde_json::to_vec(value).unwrap_or_default(),
    }
}

fn error(status: StatusCode, code: i64, message: &str) -> Answer {
    json(status, &api_error(code, message))
}

fn bad_request(body: ApiErrorBody) -> Answer {
    json(StatusCode::BAD_REQUEST, &body)
}

fn not_found() -> Answer {
    Answer {
        status: StatusCode::NOT_FOUND,
        body: Vec::new(),
    }
}

fn invalid_list() -> Answer {
    error(StatusCode::BAD_REQUEST, 101, "Invalid ListID")
}

/// Who is calling: the rate limit is counted per identity.
enum Identity {
    Key(String),
    Token(String),
}

fn authenticate(shared: &Shared, headers: &HeaderMap) -> Result<Identity, Answer> {
    use base64::Engine as _;
    let must_supply = || {
        error(
            StatusCode::UNAUTHORIZED,
            50,
            "Must supply a valid HTTP Basic Authorization header",
        )
    };
    let value = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(must_supply)?;
    if let Some(encoded) = value.strip_prefix("Basic ") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(must_supply)?;
        let key = decoded.split_once(':').map_or(decoded.as_str(), |(k, _)| k);
        if shared.config.api_keys.iter().any(|k| k == key) {
            return Ok(Identity::Key(key.to_owned()));
        }
        return Err(must_supply());
    }
    if let Some(token) = value.strip_prefix("Bearer ") {
        let state = shared.lock();
        return match state.tokens.get(token.trim()) {
            None => Err(error(StatusCode::UNAUTHORIZED, 120, "Invalid OAuth Token")),
            Some(t) if t.expires_at <= tokio::time::Instant::now() => {
                Err(error(StatusCode::UNAUTHORIZED, 121, "Expired OAuth Token"))
            }
            Some(t) => Ok(Identity::Token(t.client_id.clone())),
        };
    }
    Err(must_supply())
}

/// What the fault dice said for one request.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    ServerError,
    DropBefore,
    DropAfter,
}

/// The route, as recorded in the stats, and the answer.
fn route(
    shared: &Shared,
    method: &Method,
    path: &str,
    query: &HashMap<String, String>,
    body: &Bytes,
) -> (String, Answer) {
    let segments: Vec<&str> = path.split('/').collect();
    let name = |template: &str| format!("{method} {template}");
    let strip = |s: &str| s.strip_suffix(".json").map(str::to_owned);
    match segments.as_slice() {
        ["systemdate.json"] if method == Method::GET => (
            name("systemdate.json"),
            json(
                StatusCode::OK,
                &SystemDate {
                    system_date: Stamp::now().to_string(),
                },
            ),
        ),
        ["countries.json"] if method == Method::GET => (
            name("countries.json"),
            json(StatusCode::OK, &super::countries::COUNTRIES),
        ),
        ["clients.json"] if method == Method::GET => (
            name("clients.json"),
            json(
                StatusCode::OK,
                &[ClientSummary {
                    client_id: CLIENT_ID.into(),
                    name: "Emulated client".into(),
                }],
            ),
        ),
        ["clients", client, "lists.json"] if method == Method::GET => {
            let answer = if *client == CLIENT_ID {
                let state = shared.lock();
                let mut lists: Vec<ListSummary> = state
                    .lists
                    .values()
                    .map(|l| ListSummary {
                        list_id: l.id.clone(),
                        name: l.title.clone(),
                    })
                    .collect();
                lists.sort_by(|a, b| a.name.cmp(&b.name));
                json(StatusCode::OK, &lists)
            } else {
                error(StatusCode::BAD_REQUEST, 102, "Invalid ClientID")
            };
            (name("clients/{clientid}/lists.json"), answer)
        }
        ["lists", file] if method == Method::GET => {
            let answer = match strip(file)
                .and_then(|id| shared.lock().lists.get(&id).map(|l| (l.id.clone(), l.title.clone())))
            {
                Some((list_id, title)) => json(
                    StatusCode::OK,
                    &ListDetails {
                        list_id,
                        title,
                        unsubscribe_page: String::new(),
                        confirmed_opt_in: false,
                        confirmation_success_page: String::new(),
                        unsubscribe_setting: "AllClientLists".into(),
                    },
                ),
                None => invalid_list(),
            };
            (name("lists/{listid}.json"), answer)
        }
        ["lists", id, "stats.json"] if method == Method::GET => {
            let answer = match shared.lock().lists.get(*id) {
                Some(list) => json(StatusCode::OK, &list.stats()),
                None => invalid_list(),
            };
            (name("lists/{listid}/stats.json"), answer)
        }
        ["lists", id, "customfields.json"] => {
            let mut state = shared.lock();
            let answer = match (state.lists.get_mut(*id), method) {
                (None, _) => invalid_list(),
                (Some(list), &Method::GET) => json(StatusCode::OK, &list.custom_fields),
                (Some(list), &Method::POST) => match serde_json::from_slice::<NewCustomField>(body) {
                    Ok(field) => match list.add_custom_field(
                        &field.field_name,
                        &field.data_type,
                        field.options,
                        field.visible_in_preference_center,
                    ) {
                        Ok(key) => json(StatusCode::CREATED, &key),
                        Err(e) => bad_request(e),
                    },
                    Err(_) => unreadable_body(),
                },
                _ => method_not_allowed(),
            };
            (name("lists/{listid}/customfields.json"), answer)
        }
        ["lists", id, "customfields", key, "options.json"] if method == Method::PUT => {
            #[derive(serde::Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct NewOptions {
                options: Vec<String>,
                keep_existing_options: bool,
            }
            let mut state = shared.lock();
            let answer = match (state.lists.get_mut(*id), serde_json::from_slice::<NewOptions>(body)) {
                (None, _) => invalid_list(),
                (_, Err(_)) => unreadable_body(),
                (Some(list), Ok(new)) => {
                    // The key comes percent-encoded (`%5Btier%5D`).
                    let key = url::form_urlencoded::parse(format!("k={key}").as_bytes())
                        .next()
                        .map(|(_, key)| key.into_owned())
                        .unwrap_or_default();
                    match list.set_field_options(&key, new.options, new.keep_existing_options) {
                        Ok(()) => Answer {
                            status: StatusCode::OK,
                            body: Vec::new(),
                        },
                        Err(e) => bad_request(e),
                    }
                }
            };
            (name("lists/{listid}/customfields/{key}/options.json"), answer)
        }
        ["lists", id, file] if method == Method::GET => {
            let Some(member_state) = strip(file).as_deref().and_then(MemberState::from_path) else {
                return (name("unknown"), not_found());
            };
            (
                name(&format!("lists/{{listid}}/{file}")),
                member_page(shared, id, member_state, query),
            )
        }
        ["subscribers", id, "import.json"] if method == Method::POST => {
            (name("subscribers/{listid}/import.json"), import(shared, id, body))
        }
        ["subscribers", id, "unsubscribe.json"] if method == Method::POST => {
            #[derive(serde::Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct Email {
                email_address: String,
            }
            let answer = match serde_json::from_slice::<Email>(body) {
                Err(_) => unreadable_body(),
                Ok(e) => change_state(shared, id, &e.email_address, MemberState::Unsubscribed),
            };
            (name("subscribers/{listid}/unsubscribe.json"), answer)
        }
        ["subscribers", file] => {
            let Some(id) = strip(file) else {
                return (name("unknown"), not_found());
            };
            let email = query.get("email").cloned().unwrap_or_default();
            let answer = match *method {
                Method::GET => {
                    let state = shared.lock();
                    match state.lists.get(&id) {
                        None => invalid_list(),
                        Some(list) => match list.member(&email) {
                            Some(m) => json(StatusCode::OK, &m.details()),
                            None => not_in_list(),
                        },
                    }
                }
                Method::DELETE => change_state(shared, &id, &email, MemberState::Deleted),
                Method::POST => match serde_json::from_slice::<IncomingSubscriber>(body) {
                    Err(_) => unreadable_body(),
                    Ok(subscriber) => {
                        let mut state = shared.lock();
                        match state.lists.get_mut(&id) {
                            None => invalid_list(),
                            Some(list) => match list.add(subscriber, Stamp::now()) {
                                Ok(email) => json(StatusCode::CREATED, &email),
                                Err(e) => bad_request(e),
                            },
                        }
                    }
                },
                _ => method_not_allowed(),
            };
            (name("subscribers/{listid}.json"), answer)
        }
        _ => (name("unknown"), not_found()),
    }
}

fn unreadable_body() -> Answer {
    error(
        StatusCode::BAD_REQUEST,
        400,
        "Failed to deserialize your request. Please check the documentation and try again.",
    )
}

fn method_not_allowed() -> Answer {
    Answer {
        status: StatusCode::METHOD_NOT_ALLOWED,
        body: Vec::new(),
    }
}

fn not_in_list() -> Answer {
    error(
        StatusCode::BAD_REQUEST,
        203,
        "Subscriber not in list or has already been removed.",
    )
}

/// `DELETE subscribers/{listid}.json` and `POST subscribers/{listid}/unsubscribe.json`:
/// 200 with an empty body; 203 for an address the list does not have or already deleted.
/// An unsubscribe of someone already unsubscribed answers 200 and changes nothing.
fn change_state(shared: &Shared, list_id: &str, email: &str, to: MemberState) -> Answer {
    let mut state = shared.lock();
    let Some(list) = state.lists.get_mut(list_id) else {
        return invalid_list();
    };
    let Some(member) = list.member_mut(email).filter(|m| m.state != MemberState::Deleted) else {
        return not_in_list();
    };
    if member.state != to {
        member.state = to;
        member.date = Stamp::now();
        match to {
            MemberState::Deleted => state.stats.subscribers_deleted += 1,
            _ => state.stats.subscribers_unsubscribed += 1,
        }
    }
    Answer {
        status: StatusCode::OK,
        body: Vec::new(),
    }
}

fn member_page(shared: &Shared, list_id: &str, member_state: MemberState, query: &HashMap<String, String>) -> Answer {
    let number = |key: &str, default: u64| query.get(key).and_then(|v| v.parse::<u64>().ok()).unwrap_or(default);
    let page = number("page", 1).max(1);
    let page_size = number("pagesize", 1000);
    if !(10..=1000).contains(&page_size) {
        return error(StatusCode::BAD_REQUEST, 400, "PageSize must be between 10 and 1000");
    }
    let direction = query
        .get("orderdirection")
        .map_or("asc", |d| if d.eq_ignore_ascii_case("desc") { "desc" } else { "asc" });
    let state = shared.lock();
    let Some(list) = state.lists.get(list_id) else {
        return invalid_list();
    };
    let mut members = list.in_state(member_state);
    if direction == "desc" {
        members.reverse();
    }
    let total = members.len() as u64;
    let start = ((page - 1) * page_size).min(total) as usize;
    let end = (start + page_size as usize).min(members.len());
    let results: Vec<_> = members[start..end].iter().map(|m| m.details()).collect();
    json(
        StatusCode::OK,
        &SubscriberPage {
            records_on_this_page: results.len() as u64,
            results,
            results_ordered_by: "email".into(),
            order_direction: direction.into(),
            page_number: page,
            page_size,
            total_number_of_records: total,
            number_of_pages: total.div_ceil(page_size),
        },
    )
}

fn import(shared: &Shared, list_id: &str, body: &Bytes) -> Answer {
    let Some(request) = IncomingImport::parse(body) else {
        return unreadable_body();
    };
    let received = request.subscribers.as_ref().map_or(0, Vec::len) as u64;
    let now = Stamp::now();
    let mut state = shared.lock();
    let Some(list) = state.lists.get_mut(list_id) else {
        return invalid_list();
    };
    let outcome = list.import(request, now);
    state.stats.import_calls += 1;
    state.stats.subscribers_received += received;
    match outcome {
        ImportOutcome::Imported(result) => {
            state.stats.subscribers_applied += result.total_new_subscribers + result.total_existing_subscribers;
            json(StatusCode::CREATED, &result)
        }
        ImportOutcome::Partial(result) => {
            state.stats.subscribers_applied += result.total_new_subscribers + result.total_existing_subscribers;
            json(
                StatusCode::BAD_REQUEST,
                &crate::campaign_monitor::types::ImportPartialFailure {
                    result_data: result,
                    code: 210,
                    message: "Subscriber Import had some failures".into(),
                },
            )
        }
        ImportOutcome::Rejected(e) => bad_request(e),
    }
}

/// The three `X-RateLimit-*` headers, and whether this request is over the limit.
fn rate_limit(shared: &Shared, identity: &str) -> (HeaderMap, bool) {
    let limit = shared.config.rate_limit.unwrap_or(super::config::UNLIMITED);
    let now = tokio::time::Instant::now();
    let mut state = shared.lock();
    let window = state.windows.entry(identity.to_owned()).or_insert((now, 0));
    if now.duration_since(window.0) >= limit.window {
        *window = (now, 0);
    }
    window.1 += 1;
    let over = window.1 > limit.requests;
    let used = window.1.min(limit.requests);
    let reset = limit.window.saturating_sub(now.duration_since(window.0));
    let mut headers = HeaderMap::new();
    headers.insert("x-ratelimit-limit", HeaderValue::from(limit.requests));
    headers.insert("x-ratelimit-remaining", HeaderValue::from(limit.requests - used));
    // Whole seconds, rounded up so a client that waits this long is past the window.
    headers.insert(
        "x-ratelimit-reset",
        HeaderValue::from(reset.as_millis().div_ceil(1000) as u64),
    );
    (headers, over)
}

fn roll_fault(shared: &Shared) -> Fault {
    let config = &shared.config;
    if config.fail_rate <= 0.0 && config.drop_rate <= 0.0 {
        return Fault::None;
    }
    let mut state = shared.lock();
    let roll: f64 = state.fault_rng.random();
    if roll < config.fail_rate {
        Fault::ServerError
    } else if roll < config.fail_rate + config.drop_rate {
        if state.fault_rng.random_bool(0.5) {
            Fault::DropBefore
        } else {
            Fault::DropAfter
        }
    } else {
        Fault::None
    }
}

fn latency(shared: &Shared) -> Option<Duration> {
    let (min, max) = shared.config.latency?;
    if max <= min {
        return Some(min);
    }
    let mut state = shared.lock();
    Some(state.rng.random_range(min..=max))
}

pub(super) async fn handle(
    State(shared): State<Arc<Shared>>,
    kill: Option<axum::Extension<ConnectionKill>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let path = uri.path().strip_prefix("/api/v3.3/").unwrap_or("");
    if method == Method::POST && path.ends_with("/import.json") {
        shared.imports.pass().await;
    }
    let query: HashMap<String, String> = url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .into_owned()
        .collect();
    if let Some(delay) = latency(&shared) {
        tokio::time::sleep(delay).await;
    }
    let identity = authenticate(&shared, &headers);
    let bucket = match &identity {
        Ok(Identity::Key(k)) => format!("key:{k}"),
        Ok(Identity::Token(c)) => format!("client:{c}"),
        Err(_) => "anonymous".to_owned(),
    };
    let (rate_headers, over_limit) = rate_limit(&shared, &bucket);
    // A body over the limit is refused as the API refuses anything: JSON `Code` and `Message`.
    let body = body.map_err(|refused| {
        let status = refused.status();
        error(status, i64::from(status.as_u16()), &refused.body_text())
    });
    let (endpoint, answer) = match (identity, body) {
        (Err(answer), _) => ("auth".to_owned(), answer),
        (Ok(_), _) if over_limit => {
            shared.lock().stats.faults.rate_limited += 1;
            (
                "rate-limited".to_owned(),
                error(StatusCode::TOO_MANY_REQUESTS, 429, "Rate limit exceeded"),
            )
        }
        (Ok(_), Err(answer)) => ("body".to_owned(), answer),
        (Ok(_), Ok(body)) => match roll_fault(&shared) {
            Fault::ServerError => {
                shared.lock().stats.faults.injected_500 += 1;
                (
                    "fault".to_owned(),
                    error(StatusCode::INTERNAL_SERVER_ERROR, 500, "Internal Server Error"),
                )
            }
            Fault::DropBefore => {
                shared.lock().stats.faults.dropped_before_applying += 1;
                return drop_connection(kill).await;
            }
            fault => {
                let routed = route(&shared, &method, path, &query, &body);
                if fault == Fault::DropAfter {
                    shared.lock().stats.faults.dropped_after_applying += 1;
                    return drop_connection(kill).await;
                }
                routed
            }
        },
    };
    shared.lock().stats.record(&endpoint, answer.status.as_u16());
    let has_body = !answer.body.is_empty();
    let mut response = (answer.status, answer.body).into_response();
    response.headers_mut().extend(rate_headers);
    if has_body {
        response.headers_mut().insert(
            axum::http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
    }
    response
}

async fn drop_connection(kill: Option<axum::Extension<ConnectionKill>>) -> Response {
    match kill {
        Some(axum::Extension(kill)) => {
            kill.0.notify_one();
            std::future::pending().await
        }
        // Not served by our own accept loop (a test calling the router directly): the closest
        // thing to a dropped connection is an answer that does not parse.
        None => (StatusCode::INTERNAL_SERVER_ERROR, "").into_response(),
    }
}
