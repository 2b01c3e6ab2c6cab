//! Credentials for the API, kept out of every `Debug`, `Display` and log line.

use std::fmt;

use super::token_file::TokenFile;

/// A secret value (API key, token, client secret). Its `Debug` and `Display` print `***`;
/// only [`Secret::expose`] gives the value, and only the request builder calls it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// How the client authenticates.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// HTTP Basic with the key as user name and `x` as password.
    ApiKey(Secret),
    /// `Authorization: Bearer`; refreshed once on 401 code 121 when a refresh token is known,
    /// and written back to the token file they came from, if any.
    OAuth {
        access_token: Secret,
        refresh_token: Option<Secret>,
        file: Option<TokenFile>,
    },
}

impl Credentials {
    /// Who these credentials sign in as, without the secret: an API key by a digest of it (a
    /// key is long and random, so its digest reveals nothing); OAuth tokens are replaced on
    /// every refresh, so only their kind is stable.
    pub fn account(&self) -> String {
        use sha2::Digest as _;
        match self {
            Credentials::ApiKey(key) => {
                let digest = sha2::Sha256::new()
                    .chain_update(b"cm-export account\n")
                    .chain_update(key.expose().as_bytes())
                    .finalize();
                let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
                format!("api key sha256:{hex}")
            }
            Credentials::OAuth { .. } => "oauth".to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let creds = Credentials::OAuth {
            access_token: Secret::new("tok-123"),
            refresh_token: Some(Secret::new("ref-456")),
            file: None,
        };
        let shown = format!(
            "{creds:?} {} {:?}",
            Secret::new("k-789"),
            Credentials::ApiKey(Secret::new("k-789"))
        );
        let account = Credentials::ApiKey(Secret::new("k-789")).account();
        assert!(
            account.starts_with("api key sha256:") && !account.contains("k-789"),
            "{account}"
        );
        assert_ne!(account, Credentials::ApiKey(Secret::new("k-780")).account());
        for secret in ["tok-123", "ref-456", "k-789"] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }
}
