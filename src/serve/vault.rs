//! The connections the service holds: a connections file of the usual form in the state
//! folder (`serve/connections.toml`, which the scheduler follows), each API key in an
//! owner-only file beside it (`serve/secrets/NAME.key`) that the file names and no answer
//! ever returns.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::campaign_monitor::{BaseUrl, DEFAULT_BASE_URL};
use crate::config::{ConfigError, Connection, Connections, CredentialSource, UsableBy};
use crate::state::write_atomic;

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("`{key}` {why}")]
    Invalid { key: &'static str, why: String },
    #[error(
        "`data_privacy_consent` must be true: adding a connection means agreeing that profile data (email addresses, names, custom fields) is sent to Campaign Monitor"
    )]
    NoConsent,
    #[error(
        "OAuth connections are not added here: write its `[NAME.oauth]` table into the service's `serve/connections.toml` and run `cm-export connection authorize NAME --connections <that file>` on the service's machine; or give an `api_key`"
    )]
    OAuth,
    #[error("there is no connection `{0}`")]
    Unknown(String),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot write `{}`", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A connection as an admin gives it (`POST /api/connections`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewConnection {
    pub name: String,
    pub display_name: String,
    pub usable_by: UsableBy,
    pub data_privacy_consent: bool,
    #[serde(default)]
    pub api_key: Option<String>,
    #[serde(default)]
    pub oauth: Option<serde_json::Value>,
    pub export_user: String,
    #[serde(default)]
    pub base_url: Option<String>,
}

/// A connection as any user may see it: where its key comes from, never the key.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectionView {
    pub name: String,
    pub display_name: String,
    pub usable_by: UsableBy,
    pub data_privacy_consent: bool,
    pub export_user: String,
    pub base_url: String,
    pub credentials: &'static str,
}

impl From<&Connection> for ConnectionView {
    fn from(c: &Connection) -> Self {
        Self {
            name: c.name.clone(),
            display_name: c.display_name.clone(),
            usable_by: c.usable_by,
            data_privacy_consent: c.data_privacy_consent,
            export_user: c.export_user.clone(),
            base_url: c.base_url.to_string(),
            credentials: match c.credentials {
                CredentialSource::ApiKeyEnv(_) | CredentialSource::ApiKeyFile(_) => "api key (held by the service)",
                CredentialSource::OAuthEnv { .. } | CredentialSource::OAuthApp(_) => "oauth (held by the service)",
            },
        }
    }
}

pub struct Vault {
    file: PathBuf,
}

impl Vault {
    pub fn new(state_dir: &Path) -> Self {
        Self {
            file: state_dir.join("serve").join("connections.toml"),
        }
    }

    /// The connections file the scheduler reads.
    pub fn file(&self) -> &Path {
        &self.file
    }

    pub fn load(&self) -> Result<Connections, VaultError> {
        Ok(Connections::load_or_empty(&self.file)?)
    }

    fn secret(&self, name: &str) -> PathBuf {
        self.file.with_file_name("secrets").join(format!("{name}.key"))
    }

    /// Adds `new`, or replaces the connection of its name; returns whether it replaced one.
    pub fn put(&self, new: NewConnection) -> Result<bool, VaultError> {
        let invalid = |key, why: &str| VaultError::Invalid {
            key,
            why: why.to_owned(),
        };
        let identifier = !new.name.is_empty()
            && new.name.len() <= 64
            && new
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !identifier {
            return Err(invalid("name", "must be letters, digits, `_` or `-`, at most 64"));
        }
        if new.display_name.trim().is_empty() {
            return Err(invalid("display_name", "is empty"));
        }
        if new.export_user.trim().is_empty() {
            return Err(invalid("export_user", "is empty; name the person exports run as"));
        }
        if !new.data_privacy_consent {
            return Err(VaultError::NoConsent);
        }
        let key = match (new.api_key, new.oauth) {
            (_, Some(_)) => return Err(VaultError::OAuth),
            (Some(key), None) if !key.trim().is_empty() => key,
            _ => return Err(invalid("api_key", "is missing or empty")),
        };
        let base_url = new.base_url.as_deref().unwrap_or(DEFAULT_BASE_URL);
        BaseUrl::parse(base_url).map_err(|e| VaultError::Invalid {
            key: "base_url",
            why: e.to_string(),
        })?;

        let mut table = self.table()?;
        let replaced = table.remove(&new.name).is_some();
        let mut entry = toml::Table::new();
        entry.insert("display-name".into(), new.display_name.into());
        entry.insert(
            "usable-by".into(),
            match new.usable_by {
                UsableBy::Admins => "admins",
                UsableBy::AdminsAndContributors => "admins-and-contributors",
            }
            .into(),
        );
        entry.insert("data-privacy-consent".into(), true.into());
        entry.insert("api-key-file".into(), format!("secrets/{}.key", new.name).into());
        entry.insert("export-user".into(), new.export_user.into());
        entry.insert("base-url".into(), base_url.into());
        table.insert(new.name.clone(), entry.into());

        let secret = self.secret(&new.name);
        self.write(&secret, key.trim().as_bytes())?;
        self.write_table(&table)?;
        Ok(replaced)
    }

    /// Changes who may use connection `name`.
    pub fn set_usable_by(&self, name: &str, usable_by: UsableBy) -> Result<(), VaultError> {
        let mut table = self.table()?;
        let entry = table
            .get_mut(name)
            .and_then(|e| e.as_table_mut())
            .ok_or_else(|| VaultError::Unknown(name.to_owned()))?;
        let value = match usable_by {
            UsableBy::Admins => "admins",
            UsableBy::AdminsAndContributors => "admins-and-contributors",
        };
        entry.insert("usable-by".into(), value.into());
        self.write_table(&table)
    }

    pub fn remove(&self, name: &str) -> Result<(), VaultError> {
        let mut table = self.table()?;
        if table.remove(name).is_none() {
            return Err(VaultError::Unknown(name.to_owned()));
        }
        self.write_table(&table)?;
        let secret = self.secret(name);
        match std::fs::remove_file(&secret) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(VaultError::Write {
                path: secret,
                source: e,
            }),
            _ => Ok(()),
        }
    }

    fn table(&self) -> Result<toml::Table, VaultError> {
        // Checked as the scheduler will read it, then kept as a table to write back.
        let connections = self.load()?;
        if connections.connections.is_empty() {
            return Ok(toml::Table::new());
        }
        let text = std::fs::read_to_string(&self.file).map_err(|source| ConfigError::Read {
            path: self.file.clone(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| {
            ConfigError::Parse {
                path: self.file.clone(),
                source: Box::new(source),
            }
            .into()
        })
    }

    fn write_table(&self, table: &toml::Table) -> Result<(), VaultError> {
        let text = format!(
            "# Written by `cm-export serve`: change connections through its API or console.\n{}",
            toml::to_string(table).map_err(|e| VaultError::Write {
                path: self.file.clone(),
                source: std::io::Error::other(e),
            })?
        );
        self.write(&self.file, text.as_bytes())
    }

    fn write(&self, path: &Path, bytes: &[u8]) -> Result<(), VaultError> {
        let error = |source| VaultError::Write {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(error)?;
        }
        write_atomic(path, bytes).map_err(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(name: &str, consent: bool) -> NewConnection {
        NewConnection {
            name: name.into(),
            display_name: "Marketing".into(),
            usable_by: UsableBy::AdminsAndContributors,
            data_privacy_consent: consent,
            api_key: Some("key-0123456789abcdef".into()),
            oauth: None,
            export_user: "ana@example.com".into(),
            base_url: None,
        }
    }

    #[test]
    fn connections_are_kept_with_their_keys_apart_and_refused_without_consent() {
        let dir = tempfile::tempdir().unwrap();
        let vault = Vault::new(dir.path());
        assert!(matches!(vault.put(new("marketing", false)), Err(VaultError::NoConsent)));
        assert!(!vault.put(new("marketing", true)).unwrap());
        assert!(vault.put(new("marketing", true)).unwrap());
        let text = std::fs::read_to_string(vault.file()).unwrap();
        assert!(!text.contains("key-0123456789abcdef"), "{text}");
        let connections = vault.load().unwrap();
        let marketing = &connections.connections["marketing"];
        assert_eq!(marketing.usable_by, UsableBy::AdminsAndContributors);
        assert!(!format!("{:?}", marketing.resolve_credentials().unwrap()).contains("key-0123"));
        vault.set_usable_by("marketing", UsableBy::Admins).unwrap();
        assert_eq!(
            vault.load().unwrap().connections["marketing"].usable_by,
            UsableBy::Admins
        );
        vault.remove("marketing").unwrap();
        assert!(vault.load().unwrap().connections.is_empty());
        assert!(matches!(vault.remove("marketing"), Err(VaultError::Unknown(_))));
    }
}
