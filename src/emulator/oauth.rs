//! OAuth for the `--oauth-client`s: the authorize page (`GET /oauth`, which lets the
//! application in at once: there is no person to ask), and `POST /oauth/token`, which
//! exchanges its codes and refreshes tokens.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::http::header::LOCATION;
use axum::response::{IntoResponse, Response};
use rand::Rng;

use super::{Grant, Shared, Token};
use crate::campaign_monitor::types::{OAuthError, OAuthTokens};

fn invalid_grant(description: &str) -> Response {
    let body = OAuthError {
        error: "invalid_grant".into(),
        error_description: description.into(),
    };
    (StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
}

/// `GET /oauth?client_id&redirect_uri&scope&state`: a known client is sent back to its
/// redirect address with a code (and its state); anything else gets an error page, as a
/// browser would show it.
pub(super) async fn authorize(State(shared): State<Arc<Shared>>, RawQuery(query): RawQuery) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .into_owned()
        .collect();
    let field = |name: &str| form.get(name).map(String::as_str).unwrap_or("");
    let refuse = |why: &str| (StatusCode::BAD_REQUEST, format!("Authorization failed: {why}\n")).into_response();
    if !shared
        .config
        .oauth_clients
        .iter()
        .any(|(id, _)| id == field("client_id"))
    {
        return refuse("unknown client_id");
    }
    if field("scope").is_empty() {
        return refuse("scope is missing");
    }
    let Ok(mut back) = url::Url::parse(field("redirect_uri")) else {
        return refuse("redirect_uri is not a URL");
    };
    let mut state = shared.lock();
    let code = format!("{:032x}", state.rng.random::<u128>());
    state.codes.insert(
        code.clone(),
        Grant {
            client_id: field("client_id").to_owned(),
            redirect_uri: back.to_string(),
        },
    );
    back.query_pairs_mut().append_pair("code", &code);
    if !field("state").is_empty() {
        back.query_pairs_mut().append_pair("state", field("state"));
    }
    (StatusCode::FOUND, [(LOCATION, back.to_string())]).into_response()
}

/// `POST /oauth/token`, counted in the stats as `POST oauth/token` by status.
pub(super) async fn token(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let answer = token_answer(&shared, &body);
    shared.lock().stats.record("POST oauth/token", answer.status().as_u16());
    answer
}

fn token_answer(shared: &Shared, body: &[u8]) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(body).into_owned().collect();
    let field = |name: &str| form.get(name).map(String::as_str).unwrap_or("");
    let client_id = match field("grant_type") {
        // A code is good once, for the client and redirect address it was issued to.
        "authorization_code" => {
            let known = shared
                .config
                .oauth_clients
                .iter()
                .any(|(id, secret)| id == field("client_id") && secret == field("client_secret"));
            let grant = shared.lock().codes.remove(field("code"));
            match grant {
                Some(grant)
                    if known
                        && grant.client_id == field("client_id")
                        && url::Url::parse(field("redirect_uri")).is_ok_and(|u| u.as_str() == grant.redirect_uri) =>
                {
                    grant.client_id
                }
                _ => return invalid_grant("Specified code was invalid or expired"),
            }
        }
        // A refresh token is good once: the stricter reading (the API's documentation says a
        // refresh returns a new one, not whether the old one keeps working).
        "refresh_token" => match shared.lock().refresh_tokens.remove(field("refresh_token")) {
            Some(client) => client,
            None => return invalid_grant("Specified refresh_token was invalid or expired"),
        },
        _ => {
            let body = OAuthError {
                error: "unsupported_grant_type".into(),
                error_description: "grant_type must be authorization_code or refresh_token".into(),
            };
            return (StatusCode::BAD_REQUEST, axum::Json(body)).into_response();
        }
    };
    let mut state = shared.lock();
    let mut fresh = || format!("{:032x}", state.rng.random::<u128>());
    let access_token = fresh();
    let refresh_token = fresh();
    let ttl = shared.config.token_ttl;
    state.tokens.insert(
        access_token.clone(),
        Token {
            client_id: client_id.clone(),
            expires_at: tokio::time::Instant::now() + ttl,
        },
    );
    state.refresh_tokens.insert(refresh_token.clone(), client_id);
    axum::Json(OAuthTokens {
        access_token,
        expires_in: ttl.as_secs(),
        refresh_token,
    })
    .into_response()
}

/// `POST /_emulator/revoke-refresh-tokens`: every refresh token issued so far is refused from
/// now on, as when an application's authorization lapses, so tests can drive that path.
pub(super) async fn revoke_refresh(State(shared): State<Arc<Shared>>) -> StatusCode {
    shared.lock().refresh_tokens.clear();
    StatusCode::NO_CONTENT
}

/// `POST /_emulator/expire-tokens`: every access token issued so far expires now, so tests
/// can drive the refresh path without waiting.
pub(super) async fn expire(State(shared): State<Arc<Shared>>) -> StatusCode {
    let now = tokio::time::Instant::now();
    for token in shared.lock().tokens.values_mut() {
        token.expires_at = now;
    }
    StatusCode::NO_CONTENT
}
