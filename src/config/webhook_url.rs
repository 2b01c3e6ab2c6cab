//! A checked webhook address. Chat webhooks carry their secret in the path, so only the
//! scheme and host are ever shown.

use std::fmt;

use url::Url;

use crate::campaign_monitor::{Insecure, check_secure};

#[derive(Clone, PartialEq, Eq)]
pub struct WebhookUrl(Url);

impl WebhookUrl {
    /// `https://` anywhere, plain `http://` only to this machine.
    pub fn parse(text: &str) -> Result<Self, String> {
        let url = Url::parse(text.trim()).map_err(|_| "is not a URL".to_owned())?;
        match check_secure(&url) {
            Ok(()) => Ok(Self(url)),
            Err(Insecure::Credentials) => Err("holds a user name or password; put the secret in the path or a header the receiver checks, not in the URL's user part".to_owned()),
            Err(Insecure::PlainHttp) => Err("uses plain http to a host that is not loopback; use https".to_owned()),
            Err(Insecure::Scheme) => Err("must be an https:// URL".to_owned()),
        }
    }

    pub fn as_url(&self) -> &Url {
        &self.0
    }
}

impl fmt::Display for WebhookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}/…", self.0.scheme(), self.0.host_str().unwrap_or(""))
    }
}

impl fmt::Debug for WebhookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_or_loopback_and_never_shows_the_path() {
        let url = WebhookUrl::parse("https://hooks.example.com/services/T000/B000/SECRET").unwrap();
        assert_eq!(url.to_string(), "https://hooks.example.com/…");
        assert_eq!(format!("{url:?}"), "https://hooks.example.com/…");
        assert!(WebhookUrl::parse("http://127.0.0.1:9/hook").is_ok());
        assert!(
            WebhookUrl::parse("http://hooks.example.com/x")
                .unwrap_err()
                .contains("https")
        );
        assert!(WebhookUrl::parse("mailto:ops@example.com").is_err());
        assert!(WebhookUrl::parse("not a url").is_err());
    }
}
