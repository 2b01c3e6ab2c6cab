//! The run report (JSON): what happened to every row, in counts. No addresses, no secrets.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::members::RowCounts;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Succeeded,
    SucceededWithRejects,
    /// Also what a run is until it finishes.
    #[default]
    Failed,
    /// Stopped by a signal; `--resume` continues it.
    Interrupted,
    /// Stopped because its definition, schedule or connection was removed or disabled.
    Cancelled,
    /// Never started: another run of the export was going.
    Skipped,
}

impl RunStatus {
    /// 0 succeeded, 1 succeeded with rejected rows, 2 anything else.
    pub fn exit_code(self) -> u8 {
        match self {
            RunStatus::Succeeded => 0,
            RunStatus::SucceededWithRejects => 1,
            RunStatus::Failed | RunStatus::Interrupted | RunStatus::Cancelled | RunStatus::Skipped => 2,
        }
    }

    /// For people: `succeeded with rejected rows`, `FAILED`, ...
    pub fn describe(self) -> &'static str {
        match self {
            RunStatus::Succeeded => "succeeded",
            RunStatus::SucceededWithRejects => "succeeded with rejected rows",
            RunStatus::Failed => "FAILED",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Cancelled => "cancelled",
            RunStatus::Skipped => "skipped",
        }
    }

    /// Whether the run's owner should hear about it at once.
    pub fn alerts(self) -> bool {
        matches!(self, RunStatus::Failed | RunStatus::Cancelled)
    }
}

/// What started a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// `cm-export run`.
    #[default]
    Manual,
    /// `cm-export schedule`, at a time of the export's cron expression.
    Schedule,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Manual => "manual",
            Trigger::Schedule => "schedule",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejected {
    pub missing_email: u64,
    pub invalid_email: u64,
    pub invalid_field: u64,
    pub duplicate: u64,
    /// API failure code -> rows.
    pub api: BTreeMap<i64, u64>,
    /// Members whose batch was not accepted because the run stopped first.
    pub not_sent: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub export: String,
    pub run_id: String,
    pub status: RunStatus,
    #[serde(default)]
    pub trigger: Trigger,
    pub connection: String,
    pub display_name: String,
    pub export_user: String,
    pub list_id: String,
    pub segments: Vec<String>,
    pub sandbox: bool,
    /// `upsert`, `changes` or `mirror`.
    #[serde(default = "upsert")]
    pub mode: String,
    /// Why a `changes` or `mirror` run sent every member (`--full`, its first run, another
    /// list or mapping than the synced state's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_sync: Option<String>,
    /// The Ballista scheduler the queries ran on; absent when they ran in process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<String>,
    /// Whether this run continued an interrupted one (`--resume`); counts cover both.
    pub resumed: bool,
    pub started_at: String,
    pub finished_at: String,
    pub duration_seconds: f64,
    pub source_files: u64,
    pub rows_matched: u64,
    pub members_unique: u64,
    pub members_sent: u64,
    pub members_new: u64,
    pub members_existing: u64,
    /// Members the synced state has with the same values: not sent.
    #[serde(default)]
    pub members_unchanged: u64,
    /// Members mirror took off the list (they left the segment).
    #[serde(default)]
    pub members_removed: u64,
    /// Members who left the segment but had already left the list on their own
    /// (unsubscribed, deleted, bounced, or not there): not touched.
    #[serde(default)]
    pub members_already_gone: u64,
    /// Removals the API refused or that stayed busy: in the rejects file as
    /// `removal_failed`, tried again next run.
    #[serde(default)]
    pub removal_failures: u64,
    /// Members this export has on the list after the run, per the synced state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synced_members: Option<u64>,
    pub rejected: Rejected,
    pub batches: u64,
    pub requests: u64,
    pub retries: u64,
    /// Requests sent again after an answer was lost (it may have been applied).
    pub resent_after_unknown: u64,
    /// Members sent again that an earlier request (of this attempt, or of the attempt it
    /// resumes) may have imported already: imports update, so they are not doubled.
    #[serde(default)]
    pub members_maybe_resent: u64,
    pub members_per_second: f64,
    /// Imports the adaptive limit allowed in flight when the run ended: it starts at
    /// `concurrency` and rises, while it is what holds sending back, to `max-concurrency`.
    #[serde(default)]
    pub concurrency_at_end: u64,
    /// The highest that limit was during the run.
    #[serde(default)]
    pub concurrency_peak: u64,
    pub rejects_file: Option<PathBuf>,
    /// Where this report is (the `--report` copy when there is one).
    #[serde(default)]
    pub report_file: Option<PathBuf>,
    /// Why the run failed, in plain words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn upsert() -> String {
    "upsert".to_owned()
}

impl Default for Report {
    fn default() -> Self {
        Self {
            export: String::new(),
            run_id: String::new(),
            status: RunStatus::default(),
            trigger: Trigger::default(),
            connection: String::new(),
            display_name: String::new(),
            export_user: String::new(),
            list_id: String::new(),
            segments: Vec::new(),
            sandbox: false,
            mode: upsert(),
            full_sync: None,
            engine: None,
            resumed: false,
            started_at: String::new(),
            finished_at: String::new(),
            duration_seconds: 0.0,
            source_files: 0,
            rows_matched: 0,
            members_unique: 0,
            members_sent: 0,
            members_new: 0,
            members_existing: 0,
            members_unchanged: 0,
            members_removed: 0,
            members_already_gone: 0,
            removal_failures: 0,
            synced_members: None,
            rejected: Rejected::default(),
            batches: 0,
            requests: 0,
            retries: 0,
            resent_after_unknown: 0,
            members_maybe_resent: 0,
            members_per_second: 0.0,
            concurrency_at_end: 0,
            concurrency_peak: 0,
            rejects_file: None,
            report_file: None,
            error: None,
        }
    }
}

impl Report {
    pub fn count_rows(&mut self, rows: &RowCounts) {
        self.rows_matched += rows.rows;
        self.members_unique += rows.unique;
        self.rejected.missing_email += rows.missing_email;
        self.rejected.invalid_email += rows.invalid_email;
        self.rejected.invalid_field += rows.invalid_field;
        self.rejected.duplicate += rows.duplicate;
        self.members_unchanged += rows.unchanged;
    }

    pub fn api_rejected(&self) -> u64 {
        self.rejected.api.values().sum()
    }

    /// Rows that are in the rejects file.
    pub fn rejected_rows(&self) -> u64 {
        self.rejected.missing_email
            + self.rejected.invalid_email
            + self.rejected.invalid_field
            + self.api_rejected()
            + self.rejected.not_sent
            + self.removal_failures
    }

    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut text = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        text.push(b'\n');
        super::files::write_atomic(path, &text)
    }

    /// A few lines for a person at the end of a run.
    pub fn summary(&self) -> String {
        let api: Vec<String> = self
            .rejected
            .api
            .iter()
            .map(|(c, n)| format!("{n} (code {c})"))
            .collect();
        let mut lines = vec![
            format!(
                "export `{}` run {}: {} in {:.1}s",
                self.export,
                self.run_id,
                self.status.describe(),
                self.duration_seconds
            ),
            if self.sandbox {
                format!(
                    "  list {} on the sandbox emulator (in place of `{}`), as {}",
                    self.list_id, self.connection, self.export_user
                )
            } else {
                format!(
                    "  list {} on `{}` ({}), as {}",
                    self.list_id, self.connection, self.display_name, self.export_user
                )
            },
            format!(
                "  rows matched {}  ->  unique members {}  ->  sent {} (new {}, existing {})  at {:.0} members/s",
                self.rows_matched,
                self.members_unique,
                self.members_sent,
                self.members_new,
                self.members_existing,
                self.members_per_second
            ),
            format!(
                "  rejected: missing email {}, invalid email {}, invalid field {}, duplicate {}, by the API {}{}",
                self.rejected.missing_email,
                self.rejected.invalid_email,
                self.rejected.invalid_field,
                self.rejected.duplicate,
                self.api_rejected(),
                if api.is_empty() {
                    String::new()
                } else {
                    format!(" [{}]", api.join(", "))
                }
            ),
            format!(
                "  {} batches, {} requests, {} retries, {} members re-sent after a lost answer",
                self.batches, self.requests, self.retries, self.members_maybe_resent
            ),
        ];
        if let Some(engine) = &self.engine {
            lines.push(format!("  queries ran on the Ballista cluster at {engine}"));
        }
        if self.mode != "upsert" {
            let mut line = format!("  mode {}: {} unchanged (not sent)", self.mode, self.members_unchanged);
            if self.mode == "mirror" {
                line.push_str(&format!(
                    ", {} removed, {} had already left the list, {} removal failures",
                    self.members_removed, self.members_already_gone, self.removal_failures
                ));
            }
            if let Some(members) = self.synced_members {
                line.push_str(&format!("; {members} members of this export on the list"));
            }
            lines.push(line);
            if let Some(why) = &self.full_sync {
                lines.push(format!("  sent every member: {why}"));
            }
        }
        if self.rejected.not_sent > 0 {
            lines.push(format!(
                "  not sent because the run stopped: {}",
                self.rejected.not_sent
            ));
        }
        if let Some(file) = &self.rejects_file {
            lines.push(format!("  rejects: {}", file.display()));
        }
        if let Some(error) = &self.error {
            let label = if self.status == RunStatus::Cancelled {
                "why"
            } else {
                "error"
            };
            lines.push(format!("  {label}: {error}"));
        }
        lines.join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sandbox_run_does_not_claim_the_real_connection() {
        let report = Report {
            export: "vip".into(),
            run_id: "r1".into(),
            connection: "marketing".into(),
            display_name: "Campaign Monitor - Marketing".into(),
            list_id: "L1".into(),
            sandbox: true,
            status: RunStatus::Interrupted,
            ..Report::default()
        };
        let summary = report.summary();
        assert!(
            summary.contains("list L1 on the sandbox emulator (in place of `marketing`)"),
            "{summary}"
        );
        assert!(!summary.contains("Campaign Monitor - Marketing"), "{summary}");
    }
}
