//! The checkpoint of a run: an append-only journal of the batches it sent and got accepted.
//!
//! Three kinds of line, each written with one `write_all`:
//! - `{"sending":N,"members":M}` before batch `N` leaves, so a later attempt knows how many
//!   members may have landed without an answer;
//! - `{"batch":N,"new":..,"existing":..,"emails":[..],"failures":[..]}` once the API accepted it;
//! - `{"refused":N}` once the API refused it for good (its members did not land);
//! - `{"removed":"address"}` once mirror took a member off the list, `{"gone":"address"}`
//!   when it found the member had already left (unsubscribed, deleted, bounced, not there).
//!
//! Accepted lines of exports that keep a synced state also carry each member's
//! `fingerprints` (of its mapped values), in the order of `emails`.
//!
//! A kill can tear only the last line: opening the journal cuts a torn tail (and says so),
//! so the next attempt's lines never fuse with it. A bad line anywhere else was not made by a
//! kill, and the journal is refused with its line number rather than read in part. Lines
//! reach the disk at least once a second ([`SYNC_EVERY`]) and when the run ends: a power loss
//! costs at most the last second's accepted batches, which the next attempt sends again
//! (imports update members already on the list; nobody is added twice). The journal holds
//! addresses, so it is readable by its owner only.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::files::open_private;
use crate::campaign_monitor::types::ImportFailure;

/// How often appended lines are flushed to disk while a run goes.
pub const SYNC_EVERY: Duration = Duration::from_secs(1);

/// One accepted batch, as read back.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Accepted {
    /// Its number in the run; absent in journals written before batches were numbered.
    #[serde(default)]
    pub batch: Option<u64>,
    pub new: u64,
    pub existing: u64,
    /// Every address of the batch, failed ones included: none is sent again.
    pub emails: Vec<String>,
    /// The rows the API refused, as it listed them.
    pub failures: Vec<ImportFailure>,
    /// Each member's value fingerprint, as `emails`; empty when the export keeps no state.
    #[serde(default)]
    pub fingerprints: Vec<u64>,
    /// The `[mapping] key` of each refused row, as `failures`; empty when the mapping has no
    /// key (and in journals written before keys were kept).
    #[serde(default)]
    pub failure_keys: Vec<Option<String>>,
}

impl Accepted {
    /// Lowercased addresses the API took, with their fingerprints.
    pub fn landed(&self) -> impl Iterator<Item = (String, u64)> + '_ {
        let failed: HashSet<String> = self
            .failures
            .iter()
            .map(|f| f.email_address.to_ascii_lowercase())
            .collect();
        self.emails
            .iter()
            .zip(&self.fingerprints)
            .map(|(email, fingerprint)| (email.to_ascii_lowercase(), *fingerprint))
            .filter(move |(email, _)| !failed.contains(email))
    }
}

/// A batch about to leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Sending {
    sending: u64,
    members: u64,
}

/// A batch the API refused for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Refused {
    refused: u64,
}

/// A member mirror took off the list (`removed`) or found already gone (`gone`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dropped {
    Removed(String),
    Gone(String),
}

impl Dropped {
    /// The member's key (its lowercased address).
    pub fn key(&self) -> &str {
        match self {
            Dropped::Removed(key) | Dropped::Gone(key) => key,
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Line {
    Sending(Sending),
    Refused(Refused),
    Dropped(Dropped),
    Accepted(Accepted),
}

/// An accepted batch as its journal line records it, from borrowed data: no address is
/// copied to journal a batch. Read back as [`Accepted`].
#[derive(Serialize)]
pub struct AcceptedBatch<'a> {
    pub batch: u64,
    pub new: u64,
    pub existing: u64,
    pub emails: Vec<&'a str>,
    pub failures: &'a [ImportFailure],
    /// The members' value fingerprints when the export keeps a synced state, else empty.
    #[serde(skip_serializing_if = "<[u64]>::is_empty")]
    pub fingerprints: &'a [u64],
    /// The `[mapping] key` of each failure's row, else empty.
    #[serde(skip_serializing_if = "<[Option<String>]>::is_empty")]
    pub failure_keys: &'a [Option<String>],
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("cannot {action} the checkpoint `{}`", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "line {line} of the checkpoint `{}` cannot be read ({why}); only a last line can be torn by a kill, so the file was changed by something else. Start a new run without --resume",
        path.display()
    )]
    Corrupt { path: PathBuf, line: usize, why: String },
}

/// What earlier attempts of the run did.
#[derive(Debug, Default)]
pub struct Progress {
    /// Lowercased addresses not to send again.
    pub sent: HashSet<String>,
    pub batches: Vec<Accepted>,
    /// Members of batches that left without an accepted answer: they may have landed, and
    /// are sent again.
    pub unanswered_members: u64,
    /// The next free batch number.
    pub next_batch: u64,
    /// Members mirror took off the list or found gone, lowercased.
    pub dropped: Vec<Dropped>,
}

pub struct Journal {
    path: PathBuf,
    file: File,
    last_sync: Instant,
}

impl Journal {
    /// Opens the journal of a run for appending (creating it, owner-only), cuts a torn last
    /// line, and reads what earlier attempts did.
    pub fn open(path: &Path) -> Result<(Self, Progress), JournalError> {
        let io = |action| {
            move |source| JournalError::Io {
                action,
                path: path.to_owned(),
                source,
            }
        };
        let mut options = std::fs::OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        let mut file = open_private(path, &mut options).map_err(io("open"))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io("read"))?;
        let whole = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        if whole < bytes.len() {
            tracing::warn!(
                checkpoint = %path.display(),
                bytes = bytes.len() - whole,
                "cut a torn last line from the checkpoint (the earlier attempt was killed while writing it)"
            );
            file.set_len(whole as u64).map_err(io("cut the torn line of"))?;
            file.sync_all().map_err(io("sync"))?;
        }
        file.seek(SeekFrom::End(0)).map_err(io("open"))?;
        let progress = read(path, &bytes[..whole])?;
        let journal = Self {
            path: path.to_owned(),
            file,
            last_sync: Instant::now(),
        };
        Ok((journal, progress))
    }

    /// Records that batch `batch` of `members` members is about to leave.
    pub fn sending(&mut self, batch: u64, members: u64) -> Result<(), JournalError> {
        let mut line = serde_json::to_vec(&Sending {
            sending: batch,
            members,
        })
        .map_err(|e| self.error("write", std::io::Error::other(e)))?;
        line.push(b'\n');
        self.write(&line)
    }

    /// Records that the API refused batch `batch` for good: it is answered, nothing landed.
    pub fn refused(&mut self, batch: u64) -> Result<(), JournalError> {
        let mut line = serde_json::to_vec(&Refused { refused: batch })
            .map_err(|e| self.error("write", std::io::Error::other(e)))?;
        line.push(b'\n');
        self.write(&line)
    }

    /// Records that the API accepted a batch.
    pub fn accepted(&mut self, accepted: &AcceptedBatch<'_>) -> Result<(), JournalError> {
        let mut line = serde_json::to_vec(accepted).map_err(|e| self.error("write", std::io::Error::other(e)))?;
        line.push(b'\n');
        self.write(&line)
    }

    /// Records that mirror took a member off the list or found it gone.
    pub fn dropped(&mut self, dropped: &Dropped) -> Result<(), JournalError> {
        let mut line = serde_json::to_vec(dropped).map_err(|e| self.error("write", std::io::Error::other(e)))?;
        line.push(b'\n');
        self.write(&line)
    }

    /// Reads the journal at `path` as it is now (a torn last line ignored).
    pub fn read(path: &Path) -> Result<Progress, JournalError> {
        let bytes = std::fs::read(path).map_err(|source| JournalError::Io {
            action: "read",
            path: path.to_owned(),
            source,
        })?;
        let whole = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        read(path, &bytes[..whole])
    }

    fn write(&mut self, line: &[u8]) -> Result<(), JournalError> {
        self.file.write_all(line).map_err(|e| self.error("write", e))?;
        if self.last_sync.elapsed() >= SYNC_EVERY {
            self.sync()?;
        }
        Ok(())
    }

    /// Flushes what was written to disk.
    pub fn sync(&mut self) -> Result<(), JournalError> {
        self.file.sync_data().map_err(|e| self.error("sync", e))?;
        self.last_sync = Instant::now();
        Ok(())
    }

    fn error(&self, action: &'static str, source: std::io::Error) -> JournalError {
        JournalError::Io {
            action,
            path: self.path.clone(),
            source,
        }
    }
}

/// Reads whole lines; any line that does not parse is refused with its number.
fn read(path: &Path, bytes: &[u8]) -> Result<Progress, JournalError> {
    let mut progress = Progress::default();
    let mut in_flight: BTreeMap<u64, u64> = BTreeMap::new();
    for (index, line) in bytes.split(|b| *b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        let corrupt = |why: String| JournalError::Corrupt {
            path: path.to_owned(),
            line: index + 1,
            why,
        };
        match serde_json::from_slice::<Line>(line) {
            Ok(Line::Sending(s)) => {
                in_flight.insert(s.sending, s.members);
                progress.next_batch = progress.next_batch.max(s.sending + 1);
            }
            Ok(Line::Refused(r)) => {
                in_flight.remove(&r.refused);
            }
            Ok(Line::Dropped(dropped)) => progress.dropped.push(dropped),
            Ok(Line::Accepted(accepted)) => {
                if let Some(batch) = accepted.batch {
                    in_flight.remove(&batch);
                    progress.next_batch = progress.next_batch.max(batch + 1);
                }
                progress
                    .sent
                    .extend(accepted.emails.iter().map(|e| e.to_ascii_lowercase()));
                progress.batches.push(accepted);
            }
            Err(e) => {
                let shown: String = String::from_utf8_lossy(line).chars().take(40).collect();
                return Err(corrupt(format!(
                    "{e}; it starts `{}`",
                    crate::error_text::redact(&shown)
                )));
            }
        }
    }
    progress.unanswered_members = in_flight.values().sum();
    Ok(progress)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure() -> ImportFailure {
        ImportFailure {
            email_address: "b@x.com".into(),
            code: 206,
            message: "unsubscribed".into(),
        }
    }

    #[test]
    fn a_torn_last_line_is_cut_so_the_next_attempt_does_not_fuse_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let (mut journal, _) = Journal::open(&path).unwrap();
        journal.sending(0, 2).unwrap();
        journal
            .accepted(&AcceptedBatch {
                batch: 0,
                new: 1,
                existing: 0,
                emails: vec!["A@x.com", "b@x.com"],
                failures: &[failure()],
                fingerprints: &[7, 8],
                failure_keys: &[Some("c-1".into())],
            })
            .unwrap();
        journal.sending(1, 1).unwrap();
        // Refused for good: answered, and nothing of it landed.
        journal.sending(5, 40).unwrap();
        journal.refused(5).unwrap();
        drop(journal);
        // A kill in the middle of batch 1's answer.
        let mut file = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(br#"{"batch":1,"new":1,"existing":0,"emails":["c@x"#)
            .unwrap();
        drop(file);

        // The second attempt: the torn line is gone, batch 1 may have landed.
        let (mut journal, progress) = Journal::open(&path).unwrap();
        assert_eq!(progress.batches.len(), 1);
        assert_eq!(progress.batches[0].failures[0].code, 206);
        assert_eq!(progress.batches[0].failure_keys, [Some("c-1".to_owned())]);
        assert!(progress.sent.contains("a@x.com") && progress.sent.contains("b@x.com"));
        assert_eq!(progress.unanswered_members, 1);
        assert_eq!(progress.next_batch, 6);
        journal.sending(6, 1).unwrap();
        journal
            .accepted(&AcceptedBatch {
                batch: 6,
                new: 1,
                existing: 0,
                emails: vec!["c@x.com"],
                failures: &[],
                fingerprints: &[9],
                failure_keys: &[],
            })
            .unwrap();
        journal.dropped(&Dropped::Removed("d@x.com".into())).unwrap();
        journal.dropped(&Dropped::Gone("e@x.com".into())).unwrap();
        drop(journal);

        // The third attempt reads both earlier attempts' accepted batches.
        let (_, progress) = Journal::open(&path).unwrap();
        assert_eq!(progress.batches.len(), 2);
        assert!(progress.sent.contains("c@x.com"));
        assert_eq!(progress.unanswered_members, 1, "batch 1 never got its answer");
        let landed: Vec<_> = progress.batches.iter().flat_map(Accepted::landed).collect();
        assert_eq!(
            landed,
            vec![("a@x.com".to_owned(), 7), ("c@x.com".to_owned(), 9)],
            "b was refused"
        );
        assert_eq!(
            progress.dropped,
            vec![Dropped::Removed("d@x.com".into()), Dropped::Gone("e@x.com".into())]
        );
        assert_eq!(Journal::read(&path).unwrap().dropped.len(), 2);
    }

    #[test]
    fn a_bad_line_in_the_middle_is_refused_with_its_number() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        std::fs::write(
            &path,
            "{\"sending\":0,\"members\":1}\nnot json jane@example.com\n{\"sending\":1,\"members\":1}\n",
        )
        .unwrap();
        let error = Journal::open(&path).err().unwrap().to_string();
        assert!(error.contains("line 2 of the checkpoint"), "{error}");
        assert!(!error.contains("jane@example.com"), "{error}");
    }

    #[test]
    fn reads_journals_written_before_batches_were_numbered() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        std::fs::write(
            &path,
            "{\"new\":1,\"existing\":0,\"emails\":[\"a@x.com\"],\"failures\":[]}\n",
        )
        .unwrap();
        let (_, progress) = Journal::open(&path).unwrap();
        assert_eq!(progress.batches.len(), 1);
        assert!(progress.sent.contains("a@x.com"));
        assert!(Journal::open(&dir.path().join("none")).unwrap().1.batches.is_empty());
    }
}
