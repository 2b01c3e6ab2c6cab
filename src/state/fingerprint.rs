//! What a run was started on, so that a resume on changed inputs is refused.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::Pipeline;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotFile {
    pub path: PathBuf,
    pub bytes: u64,
    pub modified_unix_ms: u128,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// The definition as checked: source, segments' SQL, destination, mapping, options.
    pub definition: String,
    pub snapshot: Vec<SnapshotFile>,
}

impl Fingerprint {
    pub fn of(pipeline: &Pipeline, files: &[PathBuf]) -> Self {
        let snapshot = files
            .iter()
            .map(|path| {
                let meta = std::fs::metadata(path).ok();
                SnapshotFile {
                    path: path.clone(),
                    bytes: meta.as_ref().map_or(0, |m| m.len()),
                    modified_unix_ms: meta
                        .and_then(|m| m.modified().ok())
                        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                        .map_or(0, |d| d.as_millis()),
                }
            })
            .collect();
        Self {
            definition: format!(
                "{:?}|{:?}|{:?}|{:?}|{:?}",
                pipeline.source, pipeline.segments, pipeline.destination, pipeline.mapping, pipeline.options
            ),
            snapshot,
        }
    }

    /// Why `self` (now) differs from `then`, in plain words.
    pub fn difference(&self, then: &Fingerprint) -> Option<String> {
        if self.definition != then.definition {
            return Some("the pipeline definition changed".to_owned());
        }
        if self.snapshot.len() != then.snapshot.len() {
            return Some(format!(
                "the snapshot now has {} files, it had {}",
                self.snapshot.len(),
                then.snapshot.len()
            ));
        }
        self.snapshot
            .iter()
            .zip(&then.snapshot)
            .find(|(now, before)| now != before)
            .map(|(now, _)| format!("the snapshot file `{}` changed", now.path.display()))
    }
}
