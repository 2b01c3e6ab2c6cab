//! The API's base URL: `https://` anywhere, plain `http://` only on loopback (the emulator).

use std::fmt;
use std::net::IpAddr;
use url::{Host, Url};

pub const DEFAULT_BASE_URL: &str = "https://api.createsend.com/api/v3.3";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BaseUrlError {
    #[error("`{0}` is not a URL")]
    Invalid(String),
    #[error(
        "`{0}` uses plain http to a host that is not loopback; use https (http is allowed only for 127.0.0.0/8, ::1 and localhost)"
    )]
    InsecureHost(String),
    #[error("`{0}` must use https")]
    Scheme(String),
    /// The URL is not repeated: its user name or password may be a secret.
    #[error(
        "holds a user name or password; remove them from the URL (credentials belong in `api-key-env`, `api-key-file` or `[NAME.oauth]`)"
    )]
    Credentials,
}

/// Why a URL may not carry data off this machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Insecure {
    /// `user:pass@`: a secret in a URL ends up in logs and error messages.
    Credentials,
    /// Plain http to another machine.
    PlainHttp,
    /// Neither http nor https, or no host.
    Scheme,
}

/// The one check for every URL the tool sends to (API base, webhooks): https anywhere, plain
/// http only to this machine, never a user name or password.
pub fn check_secure(url: &Url) -> Result<(), Insecure> {
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Insecure::Credentials);
    }
    match url.scheme() {
        "https" if url.host().is_some() => Ok(()),
        "http" if is_loopback(url) => Ok(()),
        "http" => Err(Insecure::PlainHttp),
        _ => Err(Insecure::Scheme),
    }
}

/// A checked base URL such as `https://api.createsend.com/api/v3.3`, without a trailing slash.
#[derive(Clone, PartialEq, Eq)]
pub struct BaseUrl(Url);

impl BaseUrl {
    pub fn parse(text: &str) -> Result<Self, BaseUrlError> {
        let url = Url::parse(text).map_err(|_| match text.contains('@') {
            // It may be a URL with a secret in it that failed to parse: do not echo it.
            true => BaseUrlError::Credentials,
            false => BaseUrlError::Invalid(text.to_owned()),
        })?;
        match check_secure(&url) {
            Ok(()) => {}
            Err(Insecure::Credentials) => return Err(BaseUrlError::Credentials),
            Err(Insecure::PlainHttp) => return Err(BaseUrlError::InsecureHost(text.to_owned())),
            Err(Insecure::Scheme) => return Err(BaseUrlError::Scheme(text.to_owned())),
        }
        if url.cannot_be_a_base() {
            return Err(BaseUrlError::Invalid(text.to_owned()));
        }
        Ok(Self(url))
    }

    /// `{base}/{path}`, where `path` is like `lists/abc.json`.
    pub fn join(&self, path: &str) -> String {
        format!("{}/{}", self.0.as_str().trim_end_matches('/'), path)
    }

    /// The OAuth token endpoint lives at the host's root: `https://api.createsend.com/oauth/token`.
    pub fn oauth_token_url(&self) -> String {
        self.at_root("/oauth/token").to_string()
    }

    /// The page where a person lets an OAuth application in: `https://api.createsend.com/oauth`.
    pub fn oauth_authorize_url(&self, query: &[(&str, &str)]) -> String {
        let mut url = self.at_root("/oauth");
        url.query_pairs_mut().extend_pairs(query);
        url.to_string()
    }

    fn at_root(&self, path: &str) -> Url {
        let mut url = self.0.clone();
        url.set_path(path);
        url.set_query(None);
        url
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str().trim_end_matches('/')
    }
}

impl fmt::Debug for BaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for BaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether the URL's host is this machine: the only place plain http is allowed.
pub(crate) fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_anywhere_http_only_on_loopback() {
        for ok in [
            DEFAULT_BASE_URL,
            "http://127.0.0.1:8080/api/v3.3",
            "http://127.9.9.9/api/v3.3",
            "http://[::1]:1/api/v3.3",
            "http://localhost:9/api/v3.3/",
        ] {
            assert!(BaseUrl::parse(ok).is_ok(), "{ok}");
        }
        assert_eq!(
            BaseUrl::parse("http://api.createsend.com/api/v3.3"),
            Err(BaseUrlError::InsecureHost("http://api.createsend.com/api/v3.3".into()))
        );
        assert!(matches!(
            BaseUrl::parse("http://10.0.0.1/api"),
            Err(BaseUrlError::InsecureHost(_))
        ));
        assert!(matches!(BaseUrl::parse("ftp://x/api"), Err(BaseUrlError::Scheme(_))));
        assert!(matches!(BaseUrl::parse("not a url"), Err(BaseUrlError::Invalid(_))));
        for with_secret in [
            "https://user:hunter2@api.createsend.com/api/v3.3",
            "http://key-123@127.0.0.1:8080/api/v3.3",
            "https://:hunter2@api.createsend.com/api/v3.3",
        ] {
            let err = BaseUrl::parse(with_secret).unwrap_err();
            assert_eq!(err, BaseUrlError::Credentials, "{with_secret}");
            let text = err.to_string();
            assert!(!text.contains("hunter2") && !text.contains("key-123"), "{text}");
        }
    }

    #[test]
    fn joins_paths_and_finds_the_token_endpoint() {
        let base = BaseUrl::parse("http://127.0.0.1:8080/api/v3.3/").unwrap();
        assert_eq!(
            base.join("systemdate.json"),
            "http://127.0.0.1:8080/api/v3.3/systemdate.json"
        );
        assert_eq!(base.oauth_token_url(), "http://127.0.0.1:8080/oauth/token");
        let real = BaseUrl::parse(DEFAULT_BASE_URL).unwrap();
        assert_eq!(real.oauth_token_url(), "https://api.createsend.com/oauth/token");
        assert_eq!(
            real.oauth_authorize_url(&[("client_id", "8998879"), ("scope", "ManageLists,ImportSubscribers")]),
            "https://api.createsend.com/oauth?client_id=8998879&scope=ManageLists%2CImportSubscribers"
        );
    }
}
