//! The OAuth tokens `cm-export connection authorize` obtained for a connection, kept in a
//! file only its owner can read (never in `connections.toml`), and written back when a run
//! refreshes them, so the next run and the scheduler keep working.
//!
//! Several processes may share one file (a scheduler and a run by hand): a refresh happens
//! under a lock beside the file, and a process that finds the file already holds newer tokens
//! than the one that expired takes those instead of refreshing again. A refresh token the API
//! rotates is then never spent twice.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use super::credentials::Secret;
use super::types::OAuthTokens;
use crate::state::{open_private, write_atomic};

/// A connection's token file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenFile {
    path: PathBuf,
    /// The connection it belongs to, for the messages that tell an admin what to run.
    connection: String,
}

/// What the file holds.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Stored {
    access_token: String,
    refresh_token: String,
    /// RFC 3339, UTC.
    expires_at: String,
    authorized_at: String,
    refreshed_at: String,
}

/// Tokens read from a file.
#[derive(Debug, Clone)]
pub struct Tokens {
    pub access: Secret,
    pub refresh: Secret,
    pub authorized_at: DateTime<Utc>,
    /// When the tokens were last replaced: at authorization, then at each refresh.
    pub refreshed_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    #[error("cannot read the token file `{}`: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error(
        "the token file `{}` is not one `cm-export connection authorize` wrote ({reason}); run `cm-export connection authorize {connection}` to replace it",
        path.display()
    )]
    Corrupt {
        path: PathBuf,
        connection: String,
        reason: String,
    },
    #[error(
        "the token file `{}` can be read by others (mode {mode:o}); it holds the connection's tokens: `chmod 600` it, or authorize again",
        path.display()
    )]
    Exposed { path: PathBuf, mode: u32 },
    #[error("cannot write the token file `{}`: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
}

fn stamp(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Secs, true)
}

impl TokenFile {
    pub fn new(path: PathBuf, connection: &str) -> Self {
        Self {
            path,
            connection: connection.to_owned(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn connection(&self) -> &str {
        &self.connection
    }

    /// The tokens, or `None` when the connection was never authorized (no file).
    pub fn read(&self) -> Result<Option<Tokens>, TokenFileError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(TokenFileError::Read {
                    path: self.path.clone(),
                    source,
                });
            }
        };
        self.refuse_exposed()?;
        let corrupt = |reason: String| TokenFileError::Corrupt {
            path: self.path.clone(),
            connection: self.connection.clone(),
            reason,
        };
        // serde_json's message quotes no values, so no token ends up in it.
        let stored: Stored = serde_json::from_str(&text).map_err(|e| corrupt(e.to_string()))?;
        let time = |name: &str, text: &str| {
            DateTime::parse_from_rfc3339(text)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| corrupt(format!("`{name}` is not an RFC 3339 time")))
        };
        if stored.access_token.is_empty() || stored.refresh_token.is_empty() {
            return Err(corrupt("a token is empty".into()));
        }
        Ok(Some(Tokens {
            authorized_at: time("authorized_at", &stored.authorized_at)?,
            refreshed_at: time("refreshed_at", &stored.refreshed_at)?,
            expires_at: time("expires_at", &stored.expires_at)?,
            access: Secret::new(stored.access_token),
            refresh: Secret::new(stored.refresh_token),
        }))
    }

    #[cfg(unix)]
    fn refuse_exposed(&self) -> Result<(), TokenFileError> {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&self.path)
            .map_err(|source| TokenFileError::Read {
                path: self.path.clone(),
                source,
            })?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(TokenFileError::Exposed {
                path: self.path.clone(),
                mode: mode & 0o777,
            });
        }
        Ok(())
    }

    #[cfg(not(unix))]
    fn refuse_exposed(&self) -> Result<(), TokenFileError> {
        Ok(())
    }

    /// Replaces the file with `tokens`, issued at `now`; `authorized_at` is kept from the
    /// file being refreshed, or `now` for a new authorization.
    pub fn write(
        &self,
        tokens: &OAuthTokens,
        authorized_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<(), TokenFileError> {
        // An absurd lifetime from the API is capped (a century), not a panic or a time no
        // RFC 3339 reader takes back.
        const CENTURY: u64 = 100 * 365 * 24 * 60 * 60;
        let expires_at = now + chrono::TimeDelta::seconds(tokens.expires_in.min(CENTURY) as i64);
        let stored = Stored {
            access_token: tokens.access_token.clone(),
            refresh_token: tokens.refresh_token.clone(),
            expires_at: stamp(expires_at),
            authorized_at: stamp(authorized_at.unwrap_or(now)),
            refreshed_at: stamp(now),
        };
        let mut bytes = serde_json::to_vec_pretty(&stored).unwrap_or_default();
        bytes.push(b'\n');
        write_atomic(&self.path, &bytes).map_err(|source| TokenFileError::Write {
            path: self.path.clone(),
            source,
        })
    }

    /// Holds the file's refresh lock until dropped. Blocks while another process refreshes,
    /// which takes one token request.
    pub async fn lock(&self) -> Result<RefreshLock, TokenFileError> {
        let mut path = self.path.as_os_str().to_owned();
        path.push(".lock");
        let path = PathBuf::from(path);
        let write_err = |source| TokenFileError::Write {
            path: path.clone(),
            source,
        };
        let file =
            open_private(&path, OpenOptions::new().write(true).create(true).truncate(false)).map_err(write_err)?;
        let file = tokio::task::spawn_blocking(move || file.lock().map(|()| file))
            .await
            .map_err(|e| write_err(std::io::Error::other(e)))?
            .map_err(write_err)?;
        Ok(RefreshLock { _held: file })
    }
}

/// The refresh lock of a token file; the kernel drops it if the process dies.
#[derive(Debug)]
pub struct RefreshLock {
    _held: File,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(access: &str) -> OAuthTokens {
        OAuthTokens {
            access_token: access.into(),
            expires_in: 1_209_600,
            refresh_token: "refresh-1".into(),
        }
    }

    #[test]
    fn written_owner_only_read_back_and_authorized_time_kept_on_refresh() {
        let dir = tempfile::tempdir().unwrap();
        let file = TokenFile::new(dir.path().join("oauth/marketing.json"), "marketing");
        assert!(file.read().unwrap().is_none());
        let first = DateTime::parse_from_rfc3339("2026-11-30T07:00:00Z").unwrap().to_utc();
        file.write(&tokens("access-1"), None, first).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(file.path()).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let later = first + chrono::Duration::days(20);
        let read = file.read().unwrap().unwrap();
        file.write(&tokens("access-2"), Some(read.authorized_at), later)
            .unwrap();
        let read = file.read().unwrap().unwrap();
        assert_eq!(read.access.expose(), "access-2");
        assert_eq!(read.refresh.expose(), "refresh-1");
        assert_eq!((read.authorized_at, read.refreshed_at), (first, later));
        assert_eq!(read.expires_at, later + chrono::Duration::days(14));
        let forever = OAuthTokens {
            expires_in: u64::MAX,
            ..tokens("access-3")
        };
        file.write(&forever, None, later).unwrap();
        assert!(file.read().unwrap().unwrap().expires_at > later);
    }

    #[cfg(unix)]
    #[test]
    fn a_file_others_can_read_or_one_not_written_here_is_refused_by_name() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = TokenFile::new(dir.path().join("t.json"), "marketing");
        file.write(&tokens("access-1"), None, Utc::now()).unwrap();
        std::fs::set_permissions(file.path(), std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = file.read().unwrap_err().to_string();
        assert!(
            err.contains("t.json") && err.contains("mode 644") && err.contains("chmod 600"),
            "{err}"
        );
        std::fs::write(file.path(), "{\"access_token\": \"secret-value\"}").unwrap();
        std::fs::set_permissions(file.path(), std::fs::Permissions::from_mode(0o600)).unwrap();
        let err = file.read().unwrap_err().to_string();
        assert!(
            err.contains("connection authorize marketing") && !err.contains("secret-value"),
            "{err}"
        );
    }
}
