//! What a run was started on, so that a resume on changed inputs, or towards another
//! destination, is refused.

use serde::{Deserialize, Serialize};

use crate::config::Pipeline;
use crate::source::SnapshotFile;

/// Where a run sends its members: members an earlier attempt got accepted count as sent
/// only if this attempt sends to the same place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendsTo {
    /// The in-process emulator of `--sandbox` (its address and key change every run).
    pub sandbox: bool,
    pub base_url: String,
    pub connection: String,
    /// Who the credentials are: never the secret itself (see `Credentials::account`).
    pub account: String,
    pub list_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// The definition as checked: source, segments' SQL, destination, mapping, options.
    pub definition: String,
    pub snapshot: Vec<SnapshotFile>,
    /// Absent in runs started before destinations were recorded: those cannot be resumed.
    #[serde(default)]
    pub sends_to: Option<SendsTo>,
}

impl Fingerprint {
    pub fn of(pipeline: &Pipeline, snapshot: Vec<SnapshotFile>, sends_to: SendsTo) -> Self {
        // The source by its real path: `./pipelines/x.toml` and `pipelines/x.toml` are one export.
        let source = match pipeline.source.cloud {
            Some(_) => pipeline.source.path.clone(),
            None => std::fs::canonicalize(&pipeline.source.path)
                .or_else(|_| std::path::absolute(&pipeline.source.path))
                .map(|p| p.components().collect::<std::path::PathBuf>().display().to_string())
                .unwrap_or_else(|_| pipeline.source.path.clone()),
        };
        Self {
            definition: format!(
                "{source}|{}|{:?}|{:?}|{:?}|{:?}",
                pipeline.source.table, pipeline.segments, pipeline.destination, pipeline.mapping, pipeline.options
            ),
            snapshot,
            sends_to: Some(sends_to),
        }
    }

    /// Why `self` (now) differs from `then`, in plain words.
    pub fn difference(&self, then: &Fingerprint) -> Option<String> {
        if let Some(why) = destination_difference(self.sends_to.as_ref(), then.sends_to.as_ref()) {
            return Some(why);
        }
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

fn destination_difference(now: Option<&SendsTo>, then: Option<&SendsTo>) -> Option<String> {
    let (Some(now), Some(then)) = (now, then) else {
        return Some("the earlier attempt did not record where it sent its members".to_owned());
    };
    let place = |s: &SendsTo| {
        if s.sandbox {
            "the sandbox emulator (--sandbox)".to_owned()
        } else {
            format!("`{}` through connection `{}`", s.base_url, s.connection)
        }
    };
    if now.sandbox != then.sandbox || (!now.sandbox && now.base_url != then.base_url) {
        return Some(format!(
            "the earlier attempt sent to {}, this one would send to {}; what it got accepted is not on this destination's list",
            place(then),
            place(now)
        ));
    }
    if now.connection != then.connection {
        return Some(format!(
            "the earlier attempt sent through connection `{}`, this one would use `{}`",
            then.connection, now.connection
        ));
    }
    if now.account != then.account {
        return Some(format!(
            "connection `{}` now signs in as another account ({}, it was {})",
            now.connection, now.account, then.account
        ));
    }
    if now.list_id != then.list_id {
        return Some(format!(
            "the earlier attempt sent to list `{}`, this one would send to list `{}`",
            then.list_id, now.list_id
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sends_to() -> SendsTo {
        SendsTo {
            sandbox: false,
            base_url: "https://api.createsend.com/api/v3.3".into(),
            connection: "marketing".into(),
            account: "api key sha256:0011223344556677".into(),
            list_id: "L1".into(),
        }
    }

    fn fingerprint(sends_to: Option<SendsTo>) -> Fingerprint {
        Fingerprint {
            definition: "d".into(),
            snapshot: vec![],
            sends_to,
        }
    }

    #[test]
    fn a_resume_towards_another_destination_says_what_changed() {
        let then = fingerprint(Some(SendsTo {
            sandbox: true,
            base_url: "http://127.0.0.1:4000/api/v3.3".into(),
            ..sends_to()
        }));
        let now = fingerprint(Some(sends_to()));
        let why = now.difference(&then).unwrap();
        assert!(
            why.contains(
                "sent to the sandbox emulator (--sandbox), this one would send to `https://api.createsend.com/api/v3.3`"
            ),
            "{why}"
        );
        for (change, needle) in [
            (
                SendsTo {
                    base_url: "https://eu.example.com/api/v3.3".into(),
                    ..sends_to()
                },
                "sent to `https://eu.example.com/api/v3.3`",
            ),
            (
                SendsTo {
                    account: "api key sha256:ffff".into(),
                    ..sends_to()
                },
                "another account",
            ),
            (
                SendsTo {
                    list_id: "L2".into(),
                    ..sends_to()
                },
                "list `L2`, this one would send to list `L1`",
            ),
        ] {
            let why = now.difference(&fingerprint(Some(change))).unwrap();
            assert!(why.contains(needle), "{why}");
        }
        assert_eq!(now.difference(&fingerprint(Some(sends_to()))), None);
        assert!(now.difference(&fingerprint(None)).unwrap().contains("did not record"));
    }
}
