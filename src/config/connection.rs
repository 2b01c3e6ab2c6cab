//! `connections.toml`: named, authenticated links to Campaign Monitor accounts. The file
//! says where credentials live (an environment variable or a file), never what they are.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::error::ConfigError;
use super::webhook_url::WebhookUrl;
use crate::campaign_monitor::{BaseUrl, Credentials, DEFAULT_BASE_URL, Secret, TokenFile};

/// The environment variable that names the connections file.
pub const CONNECTIONS_ENV: &str = "CM_EXPORT_CONNECTIONS";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct ConnectionWire {
    /// A recognisable name for listings and reports.
    display_name: String,
    /// Who may build exports on it. Default `admins`.
    usable_by: Option<UsableBy>,
    /// Must be `true`: the owner agrees that profile data leaves for Campaign Monitor.
    data_privacy_consent: Option<bool>,
    /// The environment variable holding the API key.
    api_key_env: Option<String>,
    /// Or a file holding it (relative to the connections file).
    api_key_file: Option<PathBuf>,
    /// Or OAuth tokens.
    oauth: Option<OAuthWire>,
    /// The person exports run as, recorded in every report.
    export_user: String,
    /// Default `https://api.createsend.com/api/v3.3`.
    base_url: Option<String>,
    /// Where failed or cancelled runs on this connection post their summary.
    alert_webhook: Option<String>,
}

/// Either an OAuth application that `cm-export connection authorize` signs in with (its
/// tokens then live in a token file), or tokens obtained elsewhere, in environment variables.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct OAuthWire {
    client_id: Option<String>,
    client_secret_env: Option<String>,
    token_file: Option<PathBuf>,
    redirect_uri: Option<String>,
    scope: Option<String>,
    access_token_env: Option<String>,
    refresh_token_env: Option<String>,
}

/// Where `connection authorize` has the browser come back to, as registered with the OAuth
/// application.
pub const DEFAULT_REDIRECT_URI: &str = "http://127.0.0.1:8976/cm-export/authorized";
/// What an export needs: to read and create lists' custom fields, and to import subscribers.
pub const DEFAULT_SCOPE: &str = "ManageLists,ImportSubscribers";

/// An OAuth application a connection is authorized through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthApp {
    pub client_id: String,
    /// Read only by `connection authorize`: refreshing needs just the refresh token.
    pub client_secret_env: String,
    /// The tokens; default `.cm-export/oauth/NAME.json` beside the connections file.
    pub token_file: TokenFile,
    /// A loopback address; port 0 takes any free port (for servers that accept any).
    pub redirect_uri: url::Url,
    pub scope: String,
}

impl OAuthApp {
    /// The client secret from its environment variable.
    pub fn client_secret(&self) -> Result<Secret, ConfigError> {
        secret_from_env(
            self.token_file.connection(),
            &self.client_secret_env,
            "OAuth application's client secret",
        )
    }
}

/// The secret in environment variable `var`, or an error saying how to put `what` there.
fn secret_from_env(connection: &str, var: &str, what: &str) -> Result<Secret, ConfigError> {
    env_secret(var).map(Secret::new).map_err(|missing| ConfigError::Secret {
        connection: connection.to_owned(),
        message: format!(
            "environment variable `{var}` {missing}; {} the {what} in it",
            match missing {
                Missing::Unset => "export",
                Missing::Empty => "put",
            }
        ),
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum UsableBy {
    Admins,
    AdminsAndContributors,
}

/// Where a connection's credentials come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialSource {
    ApiKeyEnv(String),
    ApiKeyFile(PathBuf),
    /// Tokens obtained elsewhere.
    OAuthEnv {
        access_token_env: String,
        refresh_token_env: Option<String>,
    },
    /// Tokens from `cm-export connection authorize`, in a token file.
    OAuthApp(OAuthApp),
}

#[derive(Debug, Clone)]
pub struct Connection {
    pub name: String,
    pub file: PathBuf,
    pub display_name: String,
    pub usable_by: UsableBy,
    pub data_privacy_consent: bool,
    pub credentials: CredentialSource,
    pub export_user: String,
    pub base_url: BaseUrl,
    pub alert_webhook: Option<WebhookUrl>,
}

impl Connection {
    /// Refuses a connection whose owner has not agreed to send personal data.
    pub fn require_consent(&self) -> Result<(), ConfigError> {
        if self.data_privacy_consent {
            Ok(())
        } else {
            Err(ConfigError::NoConsent {
                name: self.name.clone(),
                path: self.file.clone(),
            })
        }
    }

    /// Reads the credentials from where the file says they are.
    pub fn resolve_credentials(&self) -> Result<Credentials, ConfigError> {
        let secret_err = |message: String| ConfigError::Secret {
            connection: self.name.clone(),
            message,
        };
        let from_env = |var: &str, what: &str| secret_from_env(&self.name, var, what);
        match &self.credentials {
            CredentialSource::ApiKeyEnv(var) => Ok(Credentials::ApiKey(from_env(var, "API key")?)),
            CredentialSource::ApiKeyFile(file) => {
                let text = std::fs::read_to_string(file)
                    .map_err(|e| secret_err(format!("cannot read API key file `{}`: {e}", file.display())))?;
                if text.trim().is_empty() {
                    return Err(secret_err(format!("API key file `{}` is empty", file.display())));
                }
                Ok(Credentials::ApiKey(Secret::new(text.trim())))
            }
            CredentialSource::OAuthEnv {
                access_token_env,
                refresh_token_env,
            } => Ok(Credentials::OAuth {
                access_token: from_env(access_token_env, "OAuth access token")?,
                refresh_token: refresh_token_env
                    .as_deref()
                    .map(|var| from_env(var, "OAuth refresh token"))
                    .transpose()?,
                file: None,
            }),
            CredentialSource::OAuthApp(app) => {
                let file = &app.token_file;
                match file.read().map_err(|e| secret_err(e.to_string()))? {
                    Some(tokens) => Ok(Credentials::OAuth {
                        access_token: tokens.access,
                        refresh_token: Some(tokens.refresh),
                        file: Some(file.clone()),
                    }),
                    None => Err(secret_err(format!(
                        "is not authorized yet: run `cm-export connection authorize {}` (its tokens go to `{}`)",
                        self.name,
                        file.path().display()
                    ))),
                }
            }
        }
    }
}

/// Every connection in one file.
#[derive(Debug, Clone)]
pub struct Connections {
    pub file: PathBuf,
    pub connections: BTreeMap<String, Connection>,
}

impl Connections {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        // Editors and `>` empty the file before writing it: caught in between, it must read
        // as unfinished, never as "no connections" (which would cancel every export's runs).
        if text.is_empty() {
            return Err(ConfigError::EmptyFile { path: path.to_owned() });
        }
        Self::parse(path, &text)
    }

    /// Like [`Connections::load`], but a file that was deleted holds no connections: every
    /// export on it has lost its destination.
    pub fn load_or_empty(path: &Path) -> Result<Self, ConfigError> {
        if path.exists() {
            Self::load(path)
        } else {
            Ok(Self {
                file: path.to_owned(),
                connections: BTreeMap::new(),
            })
        }
    }

    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let wire: BTreeMap<String, ConnectionWire> = toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(source),
        })?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut connections = BTreeMap::new();
        for (name, c) in wire {
            let invalid = |key: &str, message: String| ConfigError::invalid(path, &format!("{name}.{key}"), message);
            let credentials = match (c.api_key_env, c.api_key_file, c.oauth) {
                (Some(var), None, None) if var.trim().is_empty() => {
                    return Err(invalid(
                        "api-key-env",
                        "is empty; name the environment variable that holds the API key".into(),
                    ));
                }
                (Some(var), None, None) => CredentialSource::ApiKeyEnv(var),
                (None, Some(file), None) => CredentialSource::ApiKeyFile(dir.join(file)),
                (None, None, Some(oauth)) => oauth_source(oauth, &name, dir, &invalid)?,
                (None, None, None) => {
                    return Err(invalid(
                        "api-key-env",
                        "is missing: give one of `api-key-env`, `api-key-file` or an `[NAME.oauth]` table".into(),
                    ));
                }
                _ => {
                    return Err(invalid(
                        "api-key-env",
                        "conflicts: give exactly one of `api-key-env`, `api-key-file` or `[NAME.oauth]`".into(),
                    ));
                }
            };
            let base_text = c.base_url.as_deref().unwrap_or(DEFAULT_BASE_URL);
            let base_url = BaseUrl::parse(base_text).map_err(|e| invalid("base-url", e.to_string()))?;
            if c.export_user.trim().is_empty() {
                return Err(invalid(
                    "export-user",
                    "is empty; name the person exports run as".into(),
                ));
            }
            let alert_webhook = c
                .alert_webhook
                .map(|text| WebhookUrl::parse(&text).map_err(|why| invalid("alert-webhook", why)))
                .transpose()?;
            connections.insert(
                name.clone(),
                Connection {
                    name,
                    file: path.to_owned(),
                    display_name: c.display_name,
                    usable_by: c.usable_by.unwrap_or(UsableBy::Admins),
                    data_privacy_consent: c.data_privacy_consent.unwrap_or(false),
                    credentials,
                    export_user: c.export_user,
                    base_url,
                    alert_webhook,
                },
            );
        }
        Ok(Self {
            file: path.to_owned(),
            connections,
        })
    }

    /// The connections file for a pipeline: `explicit`, else `$CM_EXPORT_CONNECTIONS`, else
    /// `connections.toml` beside the pipeline, else in its parent folder.
    pub fn locate(explicit: Option<&Path>, pipeline_dir: &Path) -> Result<PathBuf, ConfigError> {
        if let Some(path) = explicit {
            return Ok(path.to_owned());
        }
        if let Some(path) = std::env::var_os(CONNECTIONS_ENV).filter(|v| !v.is_empty()) {
            return Ok(PathBuf::from(path));
        }
        let beside = pipeline_dir.join("connections.toml");
        let parent = pipeline_dir.join("..").join("connections.toml");
        for candidate in [&beside, &parent] {
            if candidate.is_file() {
                return Ok(candidate.clone());
            }
        }
        Err(ConfigError::NoConnectionsFile {
            searched: vec![beside, parent],
        })
    }

    /// The connection an export may send through: defined, with consent given.
    pub fn usable(&self, name: &str) -> Result<&Connection, ConfigError> {
        let connection = self.get(name)?;
        connection.require_consent()?;
        Ok(connection)
    }

    pub fn get(&self, name: &str) -> Result<&Connection, ConfigError> {
        self.connections
            .get(name)
            .ok_or_else(|| ConfigError::UnknownConnection {
                name: name.to_owned(),
                path: self.file.clone(),
                available: if self.connections.is_empty() {
                    "none".to_owned()
                } else {
                    self.connections
                        .keys()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            })
    }
}

/// The credentials an `[NAME.oauth]` table names, checked.
fn oauth_source(
    oauth: OAuthWire,
    name: &str,
    dir: &Path,
    invalid: &dyn Fn(&str, String) -> ConfigError,
) -> Result<CredentialSource, ConfigError> {
    let OAuthWire {
        client_id,
        client_secret_env,
        token_file,
        redirect_uri,
        scope,
        access_token_env,
        refresh_token_env,
    } = oauth;
    let app_keys = client_id.is_some()
        || client_secret_env.is_some()
        || token_file.is_some()
        || redirect_uri.is_some()
        || scope.is_some();
    match access_token_env {
        Some(_) if app_keys => Err(invalid(
            "oauth",
            "takes either `client-id` and `client-secret-env` (tokens from `cm-export connection authorize`) or `access-token-env` (tokens obtained elsewhere), not both".into(),
        )),
        Some(access_token_env) => Ok(CredentialSource::OAuthEnv {
            access_token_env,
            refresh_token_env,
        }),
        None if refresh_token_env.is_some() => Err(invalid(
            "oauth.refresh-token-env",
            "needs `access-token-env` beside it; with `client-id`, `connection authorize` keeps both tokens in the token file".into(),
        )),
        None => {
            let client_id = client_id.filter(|id| !id.trim().is_empty()).ok_or_else(|| {
                invalid(
                    "oauth.client-id",
                    "is missing: give the OAuth application's client id (with `client-secret-env`), then run `cm-export connection authorize`".into(),
                )
            })?;
            let client_secret_env = client_secret_env.filter(|v| !v.trim().is_empty()).ok_or_else(|| {
                invalid(
                    "oauth.client-secret-env",
                    "is missing: name the environment variable holding the OAuth application's client secret".into(),
                )
            })?;
            let redirect_text = redirect_uri.as_deref().unwrap_or(DEFAULT_REDIRECT_URI);
            let redirect_uri = loopback(redirect_text).map_err(|why| invalid("oauth.redirect-uri", why))?;
            let scope = scope.unwrap_or_else(|| DEFAULT_SCOPE.to_owned());
            if scope.trim().is_empty() {
                return Err(invalid(
                    "oauth.scope",
                    format!("is empty; leave it out for `{DEFAULT_SCOPE}`"),
                ));
            }
            let token_file = dir.join(token_file.unwrap_or_else(|| PathBuf::from(format!(".cm-export/oauth/{name}.json"))));
            Ok(CredentialSource::OAuthApp(OAuthApp {
                client_id,
                client_secret_env,
                token_file: TokenFile::new(token_file, name),
                redirect_uri,
                scope,
            }))
        }
    }
}

/// A redirect address this machine can listen on: `http`, a loopback host, a port.
fn loopback(text: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(text).map_err(|e| format!("`{text}` is not a URL ({e})"))?;
    let is_loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name == "localhost",
        None => false,
    };
    if url.scheme() != "http" || !is_loopback || url.port().is_none() {
        return Err(format!(
            "`{text}` is not a loopback address with a port, like `{DEFAULT_REDIRECT_URI}`: `connection authorize` listens on it for the browser's return"
        ));
    }
    Ok(url)
}

/// Why a secret's environment variable gave nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    Unset,
    Empty,
}

impl std::fmt::Display for Missing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Missing::Unset => "is not set",
            Missing::Empty => "is empty",
        })
    }
}

/// The secret in the environment variable `var`, trimmed (a value pasted with its newline
/// still works).
pub fn env_secret(var: &str) -> Result<String, Missing> {
    match std::env::var(var) {
        Ok(value) if !value.trim().is_empty() => Ok(value.trim().to_owned()),
        Ok(_) => Err(Missing::Empty),
        Err(_) => Err(Missing::Unset),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[marketing]
display-name = "Campaign Monitor - Marketing"
usable-by = "admins-and-contributors"
data-privacy-consent = true
api-key-env = "CM_TEST_KEY_UNSET_42"
export-user = "data-eng@example.com"

[sandbox]
display-name = "Local"
api-key-file = "key.txt"
export-user = "me"
base-url = "http://127.0.0.1:8080/api/v3.3"
"#;

    fn parse(text: &str) -> Result<Connections, ConfigError> {
        Connections::parse(Path::new("pipelines/connections.toml"), text)
    }

    #[test]
    fn reads_connections() {
        let all = parse(GOOD).unwrap();
        let m = all.get("marketing").unwrap();
        assert_eq!(m.usable_by, UsableBy::AdminsAndContributors);
        assert_eq!(m.base_url.as_str(), DEFAULT_BASE_URL);
        assert!(m.require_consent().is_ok());
        let s = all.get("sandbox").unwrap();
        assert_eq!(
            s.credentials,
            CredentialSource::ApiKeyFile(PathBuf::from("pipelines/key.txt"))
        );
        let refused = s.require_consent().unwrap_err().to_string();
        assert!(
            refused.contains("`sandbox`") && refused.contains("data-privacy-consent = true"),
            "{refused}"
        );
        let unknown = all.get("sales").unwrap_err().to_string();
        assert!(
            unknown.contains("`sales`") && unknown.contains("`marketing`, `sandbox`"),
            "{unknown}"
        );
    }

    #[test]
    fn unset_key_variable_is_named() {
        let all = parse(GOOD).unwrap();
        let err = all
            .get("marketing")
            .unwrap()
            .resolve_credentials()
            .unwrap_err()
            .to_string();
        assert!(err.contains("`CM_TEST_KEY_UNSET_42` is not set"), "{err}");
    }

    #[test]
    fn refuses_plain_http_and_unknown_keys() {
        let err = parse(&GOOD.replace("127.0.0.1:8080", "mail.example.com"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("sandbox.base-url") && err.contains("plain http"), "{err}");
        let err = parse(&GOOD.replace("usable-by", "useable-by")).unwrap_err();
        let text = format!("{err}: {}", std::error::Error::source(&err).unwrap());
        assert!(text.contains("useable-by"), "{text}");
        let err = parse(&GOOD.replace("api-key-file = \"key.txt\"", ""))
            .unwrap_err()
            .to_string();
        assert!(err.contains("sandbox.api-key-env` is missing"), "{err}");
        let err = parse(&GOOD.replace("CM_TEST_KEY_UNSET_42", ""))
            .unwrap_err()
            .to_string();
        assert!(err.contains("marketing.api-key-env` is empty"), "{err}");
        let oauth = GOOD.replace(
            "api-key-env = \"CM_TEST_KEY_UNSET_42\"",
            "[marketing.oauth]\naccess-token-env = \"A\"\nclient-id = \"123\"",
        );
        let err = parse(&oauth).unwrap_err();
        let text = format!("{err}: {}", std::error::Error::source(&err).unwrap());
        assert!(text.contains("client-id"), "{text}");
    }

    #[test]
    fn an_oauth_application_is_checked_and_its_token_file_defaults_beside_the_connections() {
        let app = GOOD.replace(
            "api-key-env = \"CM_TEST_KEY_UNSET_42\"",
            "oauth = { client-id = \"123\", client-secret-env = \"CM_SECRET\" }",
        );
        let all = parse(&app).unwrap();
        let CredentialSource::OAuthApp(oauth) = &all.get("marketing").unwrap().credentials else {
            panic!("not an application");
        };
        assert_eq!(
            oauth.token_file.path(),
            Path::new("pipelines/.cm-export/oauth/marketing.json")
        );
        assert_eq!(oauth.redirect_uri.as_str(), DEFAULT_REDIRECT_URI);
        assert_eq!(oauth.scope, DEFAULT_SCOPE);
        let not_authorized = all
            .get("marketing")
            .unwrap()
            .resolve_credentials()
            .unwrap_err()
            .to_string();
        assert!(
            not_authorized.contains("is not authorized yet: run `cm-export connection authorize marketing`"),
            "{not_authorized}"
        );
        for (change, key, says) in [
            (
                "client-secret-env = \"\"",
                "marketing.oauth.client-secret-env",
                "is missing",
            ),
            (
                "client-secret-env = \"CM_SECRET\", redirect-uri = \"https://127.0.0.1:8976/x\"",
                "marketing.oauth.redirect-uri",
                "not a loopback address with a port",
            ),
            (
                "client-secret-env = \"CM_SECRET\", redirect-uri = \"http://example.com:8976/x\"",
                "marketing.oauth.redirect-uri",
                "not a loopback address with a port",
            ),
            (
                "client-secret-env = \"CM_SECRET\", refresh-token-env = \"R\"",
                "marketing.oauth.refresh-token-env",
                "needs `access-token-env`",
            ),
        ] {
            let text = app.replace("client-secret-env = \"CM_SECRET\"", change);
            let err = parse(&text).unwrap_err().to_string();
            assert!(
                err.contains(&format!("`{key}`")) && err.contains(says),
                "{change}: {err}"
            );
        }
        let err = parse(&app.replace("client-id = \"123\", ", ""))
            .unwrap_err()
            .to_string();
        assert!(err.contains("`marketing.oauth.client-id` is missing"), "{err}");
    }
}
