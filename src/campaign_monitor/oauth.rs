//! The OAuth authorization-code flow as a command-line tool runs it: the authorize page's
//! address, a loopback listener the browser comes back to with the code, and the token
//! requests (the code's exchange, and the refresh the client does).

use std::future::IntoFuture as _;
use std::net::{Ipv4Addr, SocketAddr};

use axum::Router;
use axum::extract::RawQuery;
use axum::http::StatusCode;
use axum::response::Html;
use tokio::net::TcpListener;
use url::Url;

use super::base_url::BaseUrl;
use super::credentials::Secret;
use super::types::{OAuthError, OAuthTokens};

#[derive(Debug, thiserror::Error)]
pub enum AuthorizeError {
    #[error(
        "cannot listen on {redirect} for the browser's return ({source}); free that port, or register another loopback address with the OAuth application and set it as `redirect-uri`"
    )]
    Listen {
        redirect: String,
        #[source]
        source: std::io::Error,
    },
    #[error("Campaign Monitor did not authorize cm-export: {error}{}", description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Denied { error: String, description: Option<String> },
    #[error(
        "the browser came back from another authorization than this one (its `state` differs); nothing was kept: run the command again and use the address it prints"
    )]
    StateMismatch,
    #[error("exchanging the code for tokens failed: {0}")]
    Exchange(String),
}

/// The authorize page's address for `client_id`, coming back to `redirect`.
pub fn authorize_url(base: &BaseUrl, client_id: &str, redirect: &Url, scope: &str, state: &str) -> String {
    base.oauth_authorize_url(&[
        ("client_id", client_id),
        ("redirect_uri", redirect.as_str()),
        ("scope", scope),
        ("state", state),
    ])
}

/// What the browser brought back in the redirect's query: the code, `None` for a request
/// that carries neither a code nor an error (someone opened the address by hand), or why
/// there is no code.
pub fn returned(query: &str, state: &str) -> Result<Option<String>, AuthorizeError> {
    let mut code = None;
    let mut error = None;
    let mut description = None;
    let mut came_back_with = None;
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        match &*key {
            "code" => code = Some(value.into_owned()),
            "error" => error = Some(value.into_owned()),
            "error_description" => description = Some(value.into_owned()),
            "state" => came_back_with = Some(value.into_owned()),
            _ => {}
        }
    }
    if code.is_none() && error.is_none() {
        return Ok(None);
    }
    if came_back_with.as_deref() != Some(state) {
        return Err(AuthorizeError::StateMismatch);
    }
    match (code, error) {
        (_, Some(error)) => Err(AuthorizeError::Denied { error, description }),
        (code, None) => Ok(code.filter(|c| !c.is_empty())),
    }
}

/// A listener on the redirect address, bound before the browser is sent off.
pub struct Loopback {
    listener: TcpListener,
    redirect: Url,
}

impl Loopback {
    /// Binds `redirect`'s host and port; port 0 takes a free one, which the redirect address
    /// then names.
    pub async fn bind(redirect: &Url) -> Result<Self, AuthorizeError> {
        let listen_err = |source| AuthorizeError::Listen {
            redirect: redirect.to_string(),
            source,
        };
        let port = redirect.port_or_known_default().unwrap_or(80);
        let addr = match redirect.host() {
            Some(url::Host::Ipv4(ip)) => SocketAddr::from((ip, port)),
            Some(url::Host::Ipv6(ip)) => SocketAddr::from((ip, port)),
            _ => SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        };
        let listener = TcpListener::bind(addr).await.map_err(listen_err)?;
        let bound = listener.local_addr().map_err(listen_err)?;
        let mut redirect = redirect.clone();
        // A URL with a host always takes a port.
        let _ = redirect.set_port(Some(bound.port()));
        Ok(Self { listener, redirect })
    }

    /// The redirect address as bound (its port filled in).
    pub fn redirect_uri(&self) -> &Url {
        &self.redirect
    }

    /// Serves the redirect address until the browser comes back with a code or an error, and
    /// shows it a page saying what happened.
    pub async fn wait(self, state: &str) -> Result<String, AuthorizeError> {
        let (done, mut outcome) = tokio::sync::mpsc::channel::<Result<String, AuthorizeError>>(1);
        let state = state.to_owned();
        let path = match self.redirect.path() {
            "" => "/".to_owned(),
            path => path.to_owned(),
        };
        let router = Router::new().route(
            &path,
            axum::routing::get(move |RawQuery(query): RawQuery| {
                let result = returned(query.as_deref().unwrap_or(""), &state);
                let done = done.clone();
                async move {
                    let page = match &result {
                        Ok(None) => return (
                            StatusCode::BAD_REQUEST,
                            Html(page(
                                "This address waits for Campaign Monitor's answer to `cm-export connection authorize`."
                                    .into(),
                            )),
                        ),
                        Ok(Some(_)) => {
                            page("cm-export is authorized. You can close this tab and go back to the terminal.".into())
                        }
                        Err(error) => page(format!("cm-export was not authorized: {error}")),
                    };
                    let status = if result.is_ok() {
                        StatusCode::OK
                    } else {
                        StatusCode::BAD_REQUEST
                    };
                    let _ = done.try_send(result.map(|code| code.unwrap_or_default()));
                    (status, Html(page))
                }
            }),
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(
            axum::serve(self.listener, router)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .into_future(),
        );
        let result = outcome.recv().await.unwrap_or(Err(AuthorizeError::StateMismatch));
        // The page is on its way: stop taking new connections and let it finish.
        let _ = stop.send(());
        let _ = server.await;
        result
    }
}

fn page(message: String) -> String {
    let escaped = message.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    format!("<!doctype html><meta charset=utf-8><title>cm-export</title><p>{escaped}</p>\n")
}

/// Exchanges an authorization code for tokens.
pub async fn exchange_code(
    base: &BaseUrl,
    client_id: &str,
    client_secret: &Secret,
    redirect: &Url,
    code: &str,
) -> Result<OAuthTokens, AuthorizeError> {
    let http = reqwest::Client::builder()
        .http1_only()
        .timeout(std::time::Duration::from_secs(60))
        .user_agent(concat!("cm-export/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| AuthorizeError::Exchange(e.to_string()))?;
    let form = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "authorization_code")
        .append_pair("client_id", client_id)
        .append_pair("client_secret", client_secret.expose())
        .append_pair("redirect_uri", redirect.as_str())
        .append_pair("code", code)
        .finish();
    token_request(&http, base, form).await.map_err(AuthorizeError::Exchange)
}

/// `POST /oauth/token` with a form; the tokens, or why not (never a secret).
pub(super) async fn token_request(http: &reqwest::Client, base: &BaseUrl, form: String) -> Result<OAuthTokens, String> {
    let response = http
        .post(base.oauth_token_url())
        .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .map_err(|e| super::client::describe(&e.without_url()))?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|e| super::client::describe(&e.without_url()))?;
    if !status.is_success() {
        let detail = serde_json::from_slice::<OAuthError>(&body)
            .map(|e| format!(" {}: {}", e.error, e.error_description))
            .unwrap_or_default();
        return Err(format!("HTTP {}{detail}", status.as_u16()));
    }
    serde_json::from_slice(&body).map_err(|e| format!("unexpected token answer: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_redirect_brings_a_code_an_error_or_nothing_and_must_carry_our_state() {
        assert_eq!(returned("code=abc&state=s1", "s1").unwrap().as_deref(), Some("abc"));
        assert_eq!(returned("", "s1").unwrap(), None);
        assert!(matches!(
            returned("code=abc&state=other", "s1"),
            Err(AuthorizeError::StateMismatch)
        ));
        assert!(matches!(returned("code=abc", "s1"), Err(AuthorizeError::StateMismatch)));
        let denied = returned("error=access_denied&error_description=User+said+no&state=s1", "s1")
            .unwrap_err()
            .to_string();
        assert_eq!(
            denied,
            "Campaign Monitor did not authorize cm-export: access_denied (User said no)"
        );
    }

    #[tokio::test]
    async fn the_loopback_takes_a_free_port_and_answers_the_browser() {
        let loopback = Loopback::bind(&Url::parse("http://127.0.0.1:0/cb").unwrap())
            .await
            .unwrap();
        let redirect = loopback.redirect_uri().clone();
        assert_ne!(redirect.port(), Some(0));
        let waiting = tokio::spawn(loopback.wait("s1"));
        let http = reqwest::Client::new();
        let idle = http.get(redirect.as_str()).send().await.unwrap();
        assert_eq!(idle.status(), 400);
        let answer = http.get(format!("{redirect}?code=c0de&state=s1")).send().await.unwrap();
        assert_eq!(answer.status(), 200);
        assert!(answer.text().await.unwrap().contains("cm-export is authorized"));
        assert_eq!(waiting.await.unwrap().unwrap(), "c0de");
    }
}
