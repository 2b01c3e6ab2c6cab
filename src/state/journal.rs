//! The checkpoint of a run: an append-only journal of accepted batches.
//!
//! Each accepted batch is one JSON line written with a single `write_all` right after its
//! answer is seen. A `kill -9` can only tear the last line, which reading ignores, so the
//! journal is consistent at any moment (the kernel keeps what was written when the process
//! dies). It holds addresses, so it is readable by its owner only.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::campaign_monitor::types::ImportFailure;

/// One accepted batch, as read back.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Accepted {
    pub new: u64,
    pub existing: u64,
    /// Every address of the batch, failed ones included: none is sent again.
    pub emails: Vec<String>,
    /// The rows the API refused, as it listed them.
    pub failures: Vec<ImportFailure>,
}

/// The same line, written from borrowed data: no address is copied to journal a batch.
#[derive(Serialize)]
struct AcceptedRef<'a> {
    new: u64,
    existing: u64,
    emails: Vec<&'a str>,
    failures: &'a [ImportFailure],
}

#[derive(Debug, thiserror::Error)]
#[error("cannot {action} the checkpoint `{}`", path.display())]
pub struct JournalError {
    pub action: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

pub struct Journal {
    path: PathBuf,
    file: File,
}

/// What an earlier attempt of the run got accepted.
#[derive(Debug, Default)]
pub struct Progress {
    /// Lowercased addresses not to send again.
    pub sent: HashSet<String>,
    pub batches: Vec<Accepted>,
}

impl Journal {
    /// Opens for appending (creating it readable by its owner only).
    pub fn open(path: &Path) -> Result<Self, JournalError> {
        let err = |source| JournalError {
            action: "open",
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let mut options = std::fs::OpenOptions::new();
        options.append(true).create(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let file = options.open(path).map_err(err)?;
        Ok(Self {
            path: path.to_owned(),
            file,
        })
    }

    pub fn append<'a>(
        &mut self,
        new: u64,
        existing: u64,
        emails: impl Iterator<Item = &'a str>,
        failures: &[ImportFailure],
    ) -> Result<(), JournalError> {
        let accepted = AcceptedRef {
            new,
            existing,
            emails: emails.collect(),
            failures,
        };
        let mut line = serde_json::to_vec(&accepted).unwrap_or_default();
        line.push(b'\n');
        self.file.write_all(&line).map_err(|source| JournalError {
            action: "write",
            path: self.path.clone(),
            source,
        })
    }

    /// Flushes to disk at the end of a run.
    pub fn sync(&self) -> Result<(), JournalError> {
        self.file.sync_all().map_err(|source| JournalError {
            action: "sync",
            path: self.path.clone(),
            source,
        })
    }

    /// Reads what was accepted; a torn last line is ignored. A missing file is an empty one.
    pub fn read(path: &Path) -> Result<Progress, JournalError> {
        let file = match File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Progress::default()),
            Err(source) => {
                return Err(JournalError {
                    action: "read",
                    path: path.to_owned(),
                    source,
                });
            }
        };
        let mut progress = Progress::default();
        for line in BufReader::new(file).split(b'\n') {
            let Ok(line) = line else { break };
            let Ok(accepted) = serde_json::from_slice::<Accepted>(&line) else {
                break;
            };
            progress
                .sent
                .extend(accepted.emails.iter().map(|e| e.to_ascii_lowercase()));
            progress.batches.push(accepted);
        }
        Ok(progress)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_torn_last_line_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let mut journal = Journal::open(&path).unwrap();
        let failure = ImportFailure {
            email_address: "b@x.com".into(),
            code: 206,
            message: "unsubscribed".into(),
        };
        journal
            .append(1, 0, ["A@x.com", "b@x.com"].into_iter(), &[failure])
            .unwrap();
        journal.append(1, 0, ["c@x.com"].into_iter(), &[]).unwrap();
        drop(journal);
        // A kill in the middle of the third write.
        let mut file = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(br#"{"new":1,"existing":0,"emails":["d@x"#).unwrap();
        let progress = Journal::read(&path).unwrap();
        assert_eq!(progress.batches.len(), 2);
        assert_eq!(progress.batches[0].failures[0].code, 206);
        assert!(progress.sent.contains("a@x.com") && progress.sent.contains("c@x.com"));
        assert!(!progress.sent.contains("d@x.com"));
        assert!(Journal::read(&dir.path().join("none")).unwrap().batches.is_empty());
    }
}
