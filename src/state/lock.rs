//! One lock per export (`<state dir>/locks/<export>.lock`), shared by `run` and the
//! scheduler, so one export never has two runs at once.
//!
//! The lock is an OS file lock (`flock`), so the kernel drops it when its process dies,
//! however it dies. The file also says who holds it: a file that still names a holder while
//! nobody holds the lock was left by a killed process, and is reported and taken over.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::report::Trigger;

/// Who holds (or held) an export's lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub run_id: String,
    pub trigger: Trigger,
    pub pid: u32,
    pub started_at: String,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "run {} ({}, process {}, started {})",
            self.run_id,
            self.trigger.as_str(),
            self.pid,
            self.started_at
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "export `{export}` is already running: {}; wait for it to finish (`cm-export history {export}` shows it)",
        holder.as_ref().map_or_else(|| "a run that is starting".to_owned(), ToString::to_string)
    )]
    Held { export: String, holder: Option<Holder> },
    #[error(
        "another `cm-export schedule` already uses the state folder `{}`{}; stop it first, or give this one its own --state-dir",
        state_dir.display(),
        holder.as_ref().map_or_else(String::new, |h| format!(" (process {}, started {})", h.pid, h.started_at))
    )]
    SchedulerRunning { state_dir: PathBuf, holder: Option<Holder> },
    #[error("cannot use the lock file `{}`", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Held while a run goes; released (and the file emptied) on drop.
#[derive(Debug)]
pub struct ExportLock {
    file: File,
    /// The holder a killed process left behind, if any.
    pub stale: Option<Holder>,
}

impl ExportLock {
    pub fn path(state_dir: &Path, export: &str) -> PathBuf {
        state_dir.join("locks").join(format!("{export}.lock"))
    }

    /// Takes the lock for `holder`, or says who has it.
    pub fn acquire(state_dir: &Path, export: &str, holder: &Holder) -> Result<Self, LockError> {
        Self::take(&Self::path(state_dir, export), holder).map_err(|held| match held {
            Taken::Held(holder) => LockError::Held {
                export: export.to_owned(),
                holder,
            },
            Taken::Io(error) => error,
        })
    }

    /// The one scheduler of a state folder: two would both fire every export, and one of
    /// each pair of runs would only record a skip.
    pub fn scheduler(state_dir: &Path, holder: &Holder) -> Result<Self, LockError> {
        Self::take(&state_dir.join("scheduler.lock"), holder).map_err(|held| match held {
            Taken::Held(holder) => LockError::SchedulerRunning {
                state_dir: state_dir.to_owned(),
                holder,
            },
            Taken::Io(error) => error,
        })
    }

    fn take(path: &Path, holder: &Holder) -> Result<Self, Taken> {
        let io = |source| {
            Taken::Io(LockError::Io {
                path: path.to_owned(),
                source,
            })
        };
        let mut file = super::files::open_private(
            path,
            OpenOptions::new().read(true).write(true).create(true).truncate(false),
        )
        .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(Taken::Held(read_holder(&mut file))),
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        let stale = read_holder(&mut file);
        if let Some(stale) = &stale {
            tracing::warn!(lock = %path.display(), "cleared a stale lock: {stale} ended without releasing it");
        }
        let text = serde_json::to_vec(holder).map_err(|e| io(std::io::Error::other(e)))?;
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        file.write_all(&text).and_then(|()| file.sync_data()).map_err(io)?;
        Ok(Self { file, stale })
    }
}

/// Why a lock was not taken.
enum Taken {
    Held(Option<Holder>),
    Io(LockError),
}

impl Drop for ExportLock {
    fn drop(&mut self) {
        // Empty first: an empty unlocked file means the last holder finished cleanly.
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

fn read_holder(file: &mut File) -> Option<Holder> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut text).ok()?;
    serde_json::from_str(&text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(run_id: &str) -> Holder {
        Holder {
            run_id: run_id.into(),
            trigger: Trigger::Manual,
            pid: std::process::id(),
            started_at: "2026-11-28T03:00:00Z".into(),
        }
    }

    #[test]
    fn second_taker_is_told_who_holds_it_until_it_is_released() {
        let dir = tempfile::tempdir().unwrap();
        let first = ExportLock::acquire(dir.path(), "vip", &holder("run-a")).unwrap();
        assert_eq!(first.stale, None);
        let refused = ExportLock::acquire(dir.path(), "vip", &holder("run-b")).unwrap_err();
        let text = refused.to_string();
        assert!(
            text.contains("export `vip` is already running: run run-a (manual"),
            "{text}"
        );
        // Another export is not affected.
        let other = ExportLock::acquire(dir.path(), "weekly", &holder("run-c")).unwrap();
        drop(other);
        drop(first);
        let second = ExportLock::acquire(dir.path(), "vip", &holder("run-b")).unwrap();
        assert_eq!(second.stale, None, "a clean release leaves nothing stale");
    }

    #[test]
    fn a_lock_file_nobody_holds_is_stale_and_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = ExportLock::path(dir.path(), "vip");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        // What a killed process leaves: its holder record, with no OS lock behind it.
        std::fs::write(&path, serde_json::to_vec(&holder("run-killed")).unwrap()).unwrap();
        let lock = ExportLock::acquire(dir.path(), "vip", &holder("run-new")).unwrap();
        assert_eq!(lock.stale.as_ref().map(|h| h.run_id.as_str()), Some("run-killed"));
        let on_disk: Holder = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(on_disk.run_id, "run-new");
    }
}
