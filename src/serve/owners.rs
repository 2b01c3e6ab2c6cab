//! Who saved each export through the service, with the role they had: a contributor's
//! export may run only while its connection stays usable by contributors. Exports written
//! by hand in the folder have no owner: whoever can write there can do what an admin can.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::roles::Role;
use crate::state::write_atomic;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub user: String,
    pub role: Role,
    pub saved_at: String,
}

pub struct Owners {
    path: PathBuf,
    /// One writer at a time: a read-change-write must not lose another's change.
    turn: Mutex<()>,
}

impl Owners {
    pub fn new(state_dir: &Path) -> Self {
        Self {
            path: state_dir.join("serve").join("exports.json"),
            turn: Mutex::new(()),
        }
    }

    /// Every owner; an unreadable file reads as none, with a log line (the exports it
    /// names are then checked as an admin's, never refused for a damaged file).
    pub fn all(&self) -> BTreeMap<String, Owner> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::error!(file = %self.path.display(), "cannot read who saved the exports: {e}");
                BTreeMap::new()
            }),
            Err(_) => BTreeMap::new(),
        }
    }

    pub fn get(&self, export: &str) -> Option<Owner> {
        self.all().remove(export)
    }

    /// Records (`Some`) or forgets (`None`) who saved `export`.
    pub fn set(&self, export: &str, owner: Option<Owner>) -> std::io::Result<()> {
        let _turn = self.turn.lock().unwrap_or_else(|p| p.into_inner());
        let mut all = self.all();
        match owner {
            Some(owner) => all.insert(export.to_owned(), owner),
            None => all.remove(export),
        };
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let bytes = serde_json::to_vec_pretty(&all).map_err(std::io::Error::other)?;
        write_atomic(&self.path, &bytes)
    }
}
