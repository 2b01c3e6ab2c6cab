//! The service's users: a name, a role, an API token and optionally a password, both kept
//! only as Argon2id hashes in an owner-only file of the state folder.
//!
//! A token reads `cmx_<id>_<secret>`: the id finds the user without trying every hash (each
//! costs tens of milliseconds, on purpose), the secret is what is hashed.

use std::path::{Path, PathBuf};

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::roles::Role;
use crate::state::write_atomic;

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("cannot read the users file `{}`", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the users file `{}` is damaged: {why}", path.display())]
    Damaged { path: PathBuf, why: String },
    #[error("cannot write the users file `{}`", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("there is no user `{0}`")]
    Unknown(String),
    #[error("there is already a user `{0}`")]
    Exists(String),
    #[error("`{0}` is not a user name: use letters, digits, `.`, `_` and `-`, at most 64")]
    BadName(String),
    #[error("a password must have at least {min} characters")]
    ShortPassword { min: usize },
    #[error("cannot hash the secret: {0}")]
    Hash(String),
}

/// The shortest password `user password` takes.
pub const MIN_PASSWORD: usize = 12;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub name: String,
    pub role: Role,
    pub created_at: String,
    token_id: String,
    token_hash: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    password_hash: Option<String>,
}

impl User {
    pub fn has_password(&self) -> bool {
        self.password_hash.is_some()
    }

    pub fn token_id(&self) -> &str {
        &self.token_id
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersFile {
    users: Vec<User>,
}

/// The users of one state folder.
#[derive(Debug, Clone)]
pub struct Users {
    path: PathBuf,
    users: Vec<User>,
}

/// A token as handed out once: `cmx_<id>_<secret>`.
pub struct Token(pub String);

impl Users {
    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join("serve").join("users.json")
    }

    /// The users at `path`; none when there is no file yet.
    pub fn load(path: &Path) -> Result<Self, UserError> {
        let users = match std::fs::read(path) {
            Ok(bytes) => {
                serde_json::from_slice::<UsersFile>(&bytes)
                    .map_err(|e| UserError::Damaged {
                        path: path.to_owned(),
                        why: e.to_string(),
                    })?
                    .users
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(source) => {
                return Err(UserError::Read {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        Ok(Self {
            path: path.to_owned(),
            users,
        })
    }

    fn save(&self) -> Result<(), UserError> {
        let write = |source| UserError::Write {
            path: self.path.clone(),
            source,
        };
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(write)?;
        }
        let file = UsersFile {
            users: self.users.clone(),
        };
        let bytes = serde_json::to_vec_pretty(&file).map_err(|e| write(std::io::Error::other(e)))?;
        write_atomic(&self.path, &bytes).map_err(write)
    }

    pub fn list(&self) -> &[User] {
        &self.users
    }

    pub fn get(&self, name: &str) -> Option<&User> {
        self.users.iter().find(|u| u.name == name)
    }

    fn get_mut(&mut self, name: &str) -> Result<&mut User, UserError> {
        self.users
            .iter_mut()
            .find(|u| u.name == name)
            .ok_or_else(|| UserError::Unknown(name.to_owned()))
    }

    /// Adds a user and returns their token, which is not kept anywhere.
    pub fn add(&mut self, name: &str, role: Role) -> Result<Token, UserError> {
        let valid = !name.is_empty()
            && name.len() <= 64
            && name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
        if !valid {
            return Err(UserError::BadName(name.to_owned()));
        }
        if self.get(name).is_some() {
            return Err(UserError::Exists(name.to_owned()));
        }
        let (token, token_id, token_hash) = new_token()?;
        self.users.push(User {
            name: name.to_owned(),
            role,
            created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            token_id,
            token_hash,
            password_hash: None,
        });
        self.save()?;
        Ok(token)
    }

    pub fn remove(&mut self, name: &str) -> Result<(), UserError> {
        self.get_mut(name)?;
        self.users.retain(|u| u.name != name);
        self.save()
    }

    /// A new token for `name`; the old one stops working.
    pub fn new_token(&mut self, name: &str) -> Result<Token, UserError> {
        let (token, token_id, token_hash) = new_token()?;
        let user = self.get_mut(name)?;
        user.token_id = token_id;
        user.token_hash = token_hash;
        self.save()?;
        Ok(token)
    }

    pub fn set_password(&mut self, name: &str, password: &str) -> Result<(), UserError> {
        if password.chars().count() < MIN_PASSWORD {
            return Err(UserError::ShortPassword { min: MIN_PASSWORD });
        }
        let hash = hash(password.as_bytes())?;
        self.get_mut(name)?.password_hash = Some(hash);
        self.save()
    }

    /// The user `token` belongs to.
    pub fn by_token(&self, token: &str) -> Option<&User> {
        let (id, secret) = token.strip_prefix("cmx_")?.split_once('_')?;
        let user = self.users.iter().find(|u| u.token_id == id)?;
        verify(secret.as_bytes(), &user.token_hash).then_some(user)
    }

    /// The user `name`, when `password` is theirs.
    pub fn by_password(&self, name: &str, password: &str) -> Option<&User> {
        let user = self.get(name)?;
        verify(password.as_bytes(), user.password_hash.as_deref()?).then_some(user)
    }
}

fn hash(secret: &[u8]) -> Result<String, UserError> {
    Argon2::default()
        .hash_password(secret)
        .map(|h| h.to_string())
        .map_err(|e| UserError::Hash(e.to_string()))
}

fn verify(secret: &[u8], hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| Argon2::default().verify_password(secret, &parsed).is_ok())
}

/// `(token, id, hash of its secret)`.
fn new_token() -> Result<(Token, String, String), UserError> {
    let id = format!("{:08x}", rand::random::<u32>());
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    let hash = hash(secret.as_bytes())?;
    Ok((Token(format!("cmx_{id}_{secret}")), id, hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_passwords_are_kept_as_hashes_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = Users::path(dir.path());
        let mut users = Users::load(&path).unwrap();
        let Token(token) = users.add("ana", Role::Admin).unwrap();
        assert!(matches!(users.add("ana", Role::Viewer), Err(UserError::Exists(_))));
        assert!(matches!(users.add("a b", Role::Viewer), Err(UserError::BadName(_))));

        let users = Users::load(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let secret = token.rsplit('_').next().unwrap();
        assert!(!text.contains(secret), "the token is stored in clear");
        assert_eq!(users.by_token(&token).map(|u| u.name.as_str()), Some("ana"));
        let forged = format!("{}x", &token[..token.len() - 1]);
        assert!(users.by_token(&forged).is_none());
        assert!(users.by_token("cmx_00000000_nothing").is_none());

        let mut users = users;
        let Token(second) = users.new_token("ana").unwrap();
        assert!(users.by_token(&token).is_none(), "the old token still works");
        assert!(users.by_token(&second).is_some());
        assert!(matches!(
            users.set_password("ana", "short"),
            Err(UserError::ShortPassword { .. })
        ));
        users.set_password("ana", "correct horse battery").unwrap();
        assert!(users.by_password("ana", "correct horse battery").is_some());
        assert!(users.by_password("ana", "correct horse batterx").is_none());
        users.remove("ana").unwrap();
        assert!(Users::load(&path).unwrap().by_token(&second).is_none());
    }
}
