//! The HTTP client: one pooled HTTP/1.1 connection pool, authentication, typed calls.
//!
//! Retrying, backoff and concurrency belong to the export; this client sends once (but for
//! the single token refresh the API asks for with code 121) and says what came back.

use std::error::Error as _;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue, USER_AGENT};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use tokio::sync::{Mutex, RwLock};

use super::base_url::BaseUrl;
use super::classify::{ApiFailure, Class, RateLimit, Response, TransportError, TransportErrorKind, classify};
use super::credentials::{Credentials, Secret};
use super::import::ImportBatch;
use super::token_file::TokenFile;
use super::types::MemberState;
use super::types::{
    ApiErrorBody, ClientSummary, CustomField, ListDetails, ListStats, ListSummary, NewCustomField, OAuthTokens,
    SubscriberDetails, SubscriberPage, SystemDate,
};
use crate::retry::{Attempt, Backoff, retry};

/// Connect and request timeouts.
#[derive(Debug, Clone, Copy)]
pub struct ClientOptions {
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(120),
        }
    }
}

/// Why a typed call failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("Campaign Monitor refused the request: {0}")]
    Api(#[from] ApiFailure),
    #[error("Campaign Monitor did not answer usefully: {reason}")]
    Unavailable { reason: String },
    #[error("unexpected answer from `{endpoint}`")]
    Decode {
        endpoint: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("could not build the HTTP client")]
    Http(#[source] reqwest::Error),
}

enum Auth {
    Basic(HeaderValue),
    Bearer {
        access: RwLock<HeaderValue>,
        refresh: Mutex<Option<Secret>>,
        file: Option<TokenFile>,
    },
}

/// A Campaign Monitor API client for one account.
pub struct Client {
    http: reqwest::Client,
    base: BaseUrl,
    auth: Auth,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

fn sensitive(value: String) -> HeaderValue {
    // Secrets come from env vars or files; a byte a header cannot carry makes the header empty
    // (and the API answers 401), rather than the secret showing up in an error.
    let mut header = HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""));
    header.set_sensitive(true);
    header
}

fn basic(key: &Secret) -> HeaderValue {
    use base64::Engine as _;
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{}:x", key.expose()));
    sensitive(format!("Basic {token}"))
}

fn bearer(token: &Secret) -> HeaderValue {
    sensitive(format!("Bearer {}", token.expose()))
}

pub(super) fn describe(err: &reqwest::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn transport_error(err: reqwest::Error, path: &str) -> TransportError {
    let kind = if err.is_timeout() {
        TransportErrorKind::Timeout
    } else if err.is_connect() {
        TransportErrorKind::Connect
    } else if err.is_builder() {
        TransportErrorKind::Other
    } else {
        TransportErrorKind::Dropped
    };
    // Paths only, never query strings: those can hold email addresses.
    let endpoint = path.split('?').next().unwrap_or(path);
    TransportError {
        kind,
        message: format!("`{endpoint}`: {}", describe(&err.without_url())),
    }
}

fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

fn encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

impl Client {
    pub fn new(base: BaseUrl, credentials: &Credentials, options: ClientOptions) -> Result<Self, ApiError> {
        let http = reqwest::Client::builder()
            .http1_only()
            .connect_timeout(options.connect_timeout)
            .timeout(options.request_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .user_agent(concat!("cm-export/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(ApiError::Http)?;
        let auth = match credentials {
            Credentials::ApiKey(key) => Auth::Basic(basic(key)),
            Credentials::OAuth {
                access_token,
                refresh_token,
                file,
            } => Auth::Bearer {
                access: RwLock::new(bearer(access_token)),
                refresh: Mutex::new(refresh_token.clone()),
                file: file.clone(),
            },
        };
        Ok(Self { http, base, auth })
    }

    async fn authorization(&self) -> HeaderValue {
        match &self.auth {
            Auth::Basic(header) => header.clone(),
            Auth::Bearer { access, .. } => access.read().await.clone(),
        }
    }

    async fn send_once(
        &self,
        method: &Method,
        path: &str,
        body: Option<&Bytes>,
        authorization: HeaderValue,
    ) -> Result<Response, TransportError> {
        let mut request = self
            .http
            .request(method.clone(), self.base.join(path))
            .header(AUTHORIZATION, authorization)
            .header(USER_AGENT, concat!("cm-export/", env!("CARGO_PKG_VERSION")));
        if let Some(body) = body {
            request = request
                .header(CONTENT_TYPE, "application/json; charset=utf-8")
                .body(body.clone());
        }
        let response = request.send().await.map_err(|e| transport_error(e, path))?;
        let status = response.status().as_u16();
        let headers = response.headers();
        let rate_limit = RateLimit {
            limit: header_u64(headers, "x-ratelimit-limit"),
            remaining: header_u64(headers, "x-ratelimit-remaining"),
            reset: header_u64(headers, "x-ratelimit-reset").map(Duration::from_secs),
        };
        let retry_after = header_u64(headers, "retry-after").map(Duration::from_secs);
        let body = response.bytes().await.map_err(|e| transport_error(e, path))?;
        Ok(Response {
            status,
            rate_limit,
            retry_after,
            body,
        })
    }

    /// Sends one request. On 401 code 121 with OAuth, refreshes the token once and repeats.
    pub async fn send(&self, method: Method, path: &str, body: Option<Bytes>) -> Result<Response, TransportError> {
        let authorization = self.authorization().await;
        let response = self
            .send_once(&method, path, body.as_ref(), authorization.clone())
            .await?;
        if response.status != StatusCode::UNAUTHORIZED.as_u16() {
            return Ok(response);
        }
        let Auth::Bearer { access, refresh, file } = &self.auth else {
            return Ok(response);
        };
        let Ok(refused) = serde_json::from_slice::<ApiErrorBody>(&response.body) else {
            return Ok(response);
        };
        match refused.code {
            121 => {}
            // Invalid or revoked: only a new authorization helps.
            120 | 122 => return Ok(with_remedy(response, refused.code, refused.message, file.as_ref())),
            _ => return Ok(response),
        }
        let mut refresh = refresh.lock().await;
        // Another request may have refreshed while this one waited for the lock.
        if *access.read().await == authorization {
            let renewed = match (file, refresh.as_ref()) {
                (Some(file), _) => self.refresh_through(file, &authorization).await,
                (None, Some(token)) => self
                    .refresh_tokens(token)
                    .await
                    .map(|t| (Secret::new(t.access_token), Secret::new(t.refresh_token))),
                (None, None) => return Ok(response),
            };
            match renewed {
                Ok((new_access, new_refresh)) => {
                    *access.write().await = bearer(&new_access);
                    *refresh = Some(new_refresh);
                }
                Err(reason) => {
                    let why = format!("{}, and refreshing it failed ({reason})", refused.message);
                    tracing::warn!("{why}");
                    return Ok(with_remedy(response, refused.code, why, file.as_ref()));
                }
            }
        }
        drop(refresh);
        let authorization = self.authorization().await;
        self.send_once(&method, path, body.as_ref(), authorization).await
    }

    /// Refreshes the tokens of a token file under its lock: unless another process already
    /// replaced the expired token (then its tokens are taken), and writes the new ones back.
    async fn refresh_through(&self, file: &TokenFile, expired: &HeaderValue) -> Result<(Secret, Secret), String> {
        let _lock = file.lock().await.map_err(|e| e.to_string())?;
        let current = file
            .read()
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("the token file `{}` is gone", file.path().display()))?;
        if bearer(&current.access) != *expired {
            return Ok((current.access, current.refresh));
        }
        let fresh = self.refresh_tokens(&current.refresh).await?;
        if let Err(error) = file.write(&fresh, Some(current.authorized_at), chrono::Utc::now()) {
            tracing::error!(
                "{error}; this run goes on with the new tokens, but the next may need `cm-export connection authorize {}`",
                file.connection()
            );
        }
        Ok((Secret::new(fresh.access_token), Secret::new(fresh.refresh_token)))
    }

    async fn refresh_tokens(&self, refresh_token: &Secret) -> Result<OAuthTokens, String> {
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "refresh_token")
            .append_pair("refresh_token", refresh_token.expose())
            .finish();
        super::oauth::token_request(&self.http, &self.base, form).await
    }

    async fn call<T: DeserializeOwned>(&self, method: Method, path: &str, body: Option<Bytes>) -> Result<T, ApiError> {
        let outcome = self.send(method, path, body).await;
        match classify(&outcome) {
            Class::Success => {
                let body = outcome.map(|r| r.body).unwrap_or_default();
                // Some calls answer an empty 200; `()` then parses from `null`.
                let body: &[u8] = if body.is_empty() { b"null" } else { &body };
                serde_json::from_slice(body).map_err(|source| ApiError::Decode {
                    endpoint: path.split('?').next().unwrap_or(path).to_owned(),
                    source,
                })
            }
            Class::PartialFailure(_) => Err(ApiError::Unavailable {
                reason: format!("`{path}` answered with a partial import failure"),
            }),
            Class::Retryable { reason, .. } => Err(ApiError::Unavailable { reason }),
            Class::Permanent(failure) => Err(ApiError::Api(failure)),
        }
    }

    /// The cheapest authenticated call: checks the credentials.
    pub async fn system_date(&self) -> Result<SystemDate, ApiError> {
        self.call(Method::GET, "systemdate.json", None).await
    }

    /// The country names a Country custom field holds, as the API spells them.
    pub async fn countries(&self) -> Result<Vec<String>, ApiError> {
        self.call(Method::GET, "countries.json", None).await
    }

    /// The clients the credentials reach (an agency account has several).
    pub async fn clients(&self) -> Result<Vec<ClientSummary>, ApiError> {
        self.call(Method::GET, "clients.json", None).await
    }

    pub async fn client_lists(&self, client_id: &str) -> Result<Vec<ListSummary>, ApiError> {
        self.call(Method::GET, &format!("clients/{}/lists.json", encode(client_id)), None)
            .await
    }

    pub async fn list_details(&self, list_id: &str) -> Result<ListDetails, ApiError> {
        self.call(Method::GET, &format!("lists/{}.json", encode(list_id)), None)
            .await
    }

    pub async fn list_stats(&self, list_id: &str) -> Result<ListStats, ApiError> {
        self.call(Method::GET, &format!("lists/{}/stats.json", encode(list_id)), None)
            .await
    }

    pub async fn custom_fields(&self, list_id: &str) -> Result<Vec<CustomField>, ApiError> {
        self.call(
            Method::GET,
            &format!("lists/{}/customfields.json", encode(list_id)),
            None,
        )
        .await
    }

    /// Creates a custom field and returns its key (`[fieldname]`).
    pub async fn create_custom_field(&self, list_id: &str, field: &NewCustomField) -> Result<String, ApiError> {
        let body = Bytes::from(serde_json::to_vec(field).unwrap_or_default());
        self.call(
            Method::POST,
            &format!("lists/{}/customfields.json", encode(list_id)),
            Some(body),
        )
        .await
    }

    /// Adds `options` to a multi-select field, keeping those it has. `key` as the list has
    /// it, with or without brackets.
    pub async fn add_field_options(&self, list_id: &str, key: &str, options: &[String]) -> Result<(), ApiError> {
        let body = serde_json::json!({ "Options": options, "KeepExistingOptions": true });
        let key = format!("[{}]", key.trim_start_matches('[').trim_end_matches(']'));
        self.call(
            Method::PUT,
            &format!("lists/{}/customfields/{}/options.json", encode(list_id), encode(&key)),
            Some(Bytes::from(body.to_string())),
        )
        .await
    }

    /// One page of members in a state: `active`, `unsubscribed`, `deleted`, `bounced`, `unconfirmed`.
    /// `page_size` is clamped to the API's 10..=1000.
    pub async fn members(
        &self,
        list_id: &str,
        state: MemberState,
        page: u64,
        page_size: u64,
    ) -> Result<SubscriberPage, ApiError> {
        let path = format!(
            "lists/{}/{}.json?page={}&pagesize={}&orderfield=email&orderdirection=asc",
            encode(list_id),
            state.path(),
            page.max(1),
            page_size.clamp(10, 1000)
        );
        self.call(Method::GET, &path, None).await
    }

    pub async fn subscriber(&self, list_id: &str, email: &str) -> Result<SubscriberDetails, ApiError> {
        let (method, path, body) = member_call(list_id, email, MemberCall::Details);
        self.call(method, &path, body).await
    }

    pub async fn unsubscribe(&self, list_id: &str, email: &str) -> Result<(), ApiError> {
        let (method, path, body) = member_call(list_id, email, MemberCall::Unsubscribe);
        self.call(method, &path, body).await
    }

    /// Moves a member to the Deleted state.
    pub async fn delete(&self, list_id: &str, email: &str) -> Result<(), ApiError> {
        let (method, path, body) = member_call(list_id, email, MemberCall::Delete);
        self.call(method, &path, body).await
    }

    /// One call about one member, answered raw: for callers that gate, classify and retry
    /// it themselves (mirror's removals).
    pub async fn member_request(
        &self,
        list_id: &str,
        email: &str,
        which: MemberCall,
    ) -> Result<Response, TransportError> {
        let (method, path, body) = member_call(list_id, email, which);
        self.send(method, &path, body).await
    }

    /// Sends one bulk import and returns the raw answer: the export classifies it, retries it
    /// and records each row's outcome.
    pub async fn import(
        &self,
        list_id: &str,
        batch: &ImportBatch,
        resubscribe: bool,
    ) -> Result<Response, TransportError> {
        self.import_body(list_id, Bytes::from(batch.to_body(resubscribe))).await
    }

    /// Sends an import body encoded beforehand (retries re-send the same bytes).
    pub async fn import_body(&self, list_id: &str, body: Bytes) -> Result<Response, TransportError> {
        self.send(
            Method::POST,
            &format!("subscribers/{}/import.json", encode(list_id)),
            Some(body),
        )
        .await
    }
}

/// The calls about one subscriber of a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberCall {
    /// `GET subscribers/{listid}.json?email=`: the member's details and state.
    Details,
    /// `DELETE subscribers/{listid}.json?email=`: to the Deleted state.
    Delete,
    /// `POST subscribers/{listid}/unsubscribe.json`.
    Unsubscribe,
}

fn member_call(list_id: &str, email: &str, which: MemberCall) -> (Method, String, Option<Bytes>) {
    let by_address = format!("subscribers/{}.json?email={}", encode(list_id), encode(email));
    match which {
        MemberCall::Details => (Method::GET, by_address, None),
        MemberCall::Delete => (Method::DELETE, by_address, None),
        MemberCall::Unsubscribe => (
            Method::POST,
            format!("subscribers/{}/unsubscribe.json", encode(list_id)),
            Some(Bytes::from(
                serde_json::to_vec(&ApiEmail { email_address: email }).unwrap_or_default(),
            )),
        ),
    }
}

#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct ApiEmail<'a> {
    email_address: &'a str,
}

/// An answer refusing the OAuth token, its message saying what to do: the status and code
/// stay the API's, so the failure is classified as before.
fn with_remedy(response: Response, code: i64, why: String, file: Option<&TokenFile>) -> Response {
    let remedy = match file {
        Some(file) => format!(
            "run `cm-export connection authorize {}` to authorize the connection again",
            file.connection()
        ),
        None => "put new tokens in the connection's environment variables".to_owned(),
    };
    let body = ApiErrorBody {
        code,
        message: format!("{why}; {remedy}"),
    };
    Response {
        body: Bytes::from(serde_json::to_vec(&body).unwrap_or_default()),
        ..response
    }
}

/// Runs a typed API call, retrying while the API is unavailable (5xx, 429, timeouts,
/// dropped connections), with the same backoff as imports.
pub async fn retry_call<T, F, Fut>(backoff: &Backoff, mut call: F) -> Result<T, ApiError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ApiError>>,
{
    retry(backoff, || {
        let call = call();
        async move {
            match call.await {
                Err(error @ ApiError::Unavailable { .. }) => Attempt::Retry { error, wait: None },
                done => Attempt::Done(done),
            }
        }
    })
    .await
}
