//! Who a request is from and what it may not do: a user found by bearer token (the API) or
//! session (the console), and refusals with the status they answer with.

use axum::Json;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::roles::{Action, Role};
use super::users::Users;
use super::{Service, Shared};
use crate::error_text::chain;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    pub fn bad(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn internal(error: &dyn std::error::Error) -> Self {
        tracing::error!("request failed: {}", chain(error));
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, chain(error))
    }

    pub fn not_found(what: String) -> Self {
        Self::new(StatusCode::NOT_FOUND, what)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}

pub type Answer<T> = Result<T, ApiError>;

/// The user a request is from.
pub struct Caller {
    pub name: String,
    pub role: Role,
}

impl Caller {
    pub fn may(&self, action: Action, what: &str) -> Answer<()> {
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
        let token = bearer(&parts.headers)
            .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "send `Authorization: Bearer TOKEN`"))?;
        Caller::by_token(service, &token)?.ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "the token is not valid (`cm-export user token NAME` makes a new one)",
            )
        })
    }
}

impl Caller {
    /// The holder of `token`, if it is a user's current token.
    pub fn by_token(service: &Service, token: &str) -> Answer<Option<Caller>> {
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
                let Some(user) = users.by_token(token) else {
                    return Ok(None);
                };
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
        Ok(Some(Caller {
            name: user.name.clone(),
            role: user.role,
        }))
    }

    /// User `name` as they are now (a console session outlives a change of role), if they
    /// still are.
    pub fn by_name(service: &Service, name: &str) -> Answer<Option<Caller>> {
        let users = Users::load(&service.users).map_err(|e| ApiError::internal(&e))?;
        Ok(users.get(name).map(|u| Caller {
            name: u.name.clone(),
            role: u.role,
        }))
    }
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_owned())
}
