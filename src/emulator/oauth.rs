//! `POST /oauth/token`: issues and refreshes tokens for the `--oauth-client`s.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rand::Rng;

use super::{Shared, Token};
use crate::campaign_monitor::types::{OAuthError, OAuthTokens};

fn invalid_grant(description: &str) -> Response {
    let body = OAuthError {
        error: "invalid_grant".into(),
        error_description: description.into(),
    };
    (StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
}

pub(super) async fn token(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let form: std::collections::HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let field = |name: &str| form.get(name).map(String::as_str).unwrap_or("");
    let client_id = match field("grant_type") {
        // There is no browser here: any non-empty code from a known client is accepted.
        "authorization_code" => {
            let known = shared
                .config
                .oauth_clients
                .iter()
                .any(|(id, secret)| id == field("client_id") && secret == field("client_secret"));
            if !known || field("code").is_empty() {
                return invalid_grant("Specified code was invalid or expired");
            }
            field("client_id").to_owned()
        }
        "refresh_token" => match shared.lock().refresh_tokens.get(field("refresh_token")) {
            Some(client) => client.clone(),
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
    let refresh_token = if field("grant_type") == "refresh_token" {
        field("refresh_token").to_owned()
    } else {
        fresh()
    };
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

/// `POST /_emulator/expire-tokens`: every access token issued so far expires now, so tests
/// can drive the refresh path without waiting.
pub(super) async fn expire(State(shared): State<Arc<Shared>>) -> StatusCode {
    let now = tokio::time::Instant::now();
    for token in shared.lock().tokens.values_mut() {
        token.expires_at = now;
    }
    StatusCode::NO_CONTENT
}
