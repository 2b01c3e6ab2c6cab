//! `plan` and `validate`: everything a run does but sending.

use std::collections::{BTreeMap, HashSet};

use serde::Serialize;

use super::error::ExportError;
use super::options::RunOptions;
use super::preflight::guard_cap;
use super::progress::{Progress, Work};
use super::scan::Scan;
use super::tracking::{self, Tracking};
use crate::campaign_monitor::ImportSubscriber;
use crate::config::Pipeline;
use crate::engine::{self, OnEngine};
use crate::members::{Change, Extractor, RejectReason, mask};
use crate::segment::{self, SegmentError, segment_frame};
use crate::state;
use crate::sync::Verdict;

const SAMPLES: usize = 5;

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub export: String,
    pub list_id: String,
    /// The connection, as the command line found it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection: Option<String>,
    pub source_files: usize,
    /// Rows each segment returns on its own.
    pub segments: BTreeMap<String, u64>,
    /// Rows the union of the chosen segments yields.
    pub rows_matched: u64,
    pub members_unique: u64,
    pub rejected: BTreeMap<&'static str, u64>,
    pub batches: u64,
    pub max_profiles: u64,
    /// A few members that would be sent, addresses masked.
    pub samples: Vec<String>,
    /// `upsert`, `changes` or `mirror`.
    pub mode: &'static str,
    /// The Ballista scheduler the queries ran on; absent in process.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub engine: Option<String>,
    /// For `changes` and `mirror`: the diff against what the export has on the list.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<PlanDiff>,
}

/// What a `changes` or `mirror` run would do.
#[derive(Debug, Clone, Serialize)]
pub struct PlanDiff {
    /// Why every member would be sent, when they would.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub full_sync: Option<String>,
    pub to_add: u64,
    pub to_update: u64,
    pub unchanged: u64,
    /// Mirror: members who left the segment, the most the guard allows, and its verdict.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub removals: Option<PlanRemovals>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlanRemovals {
    pub to_remove: u64,
    pub bound: u64,
    /// `None` when the run would remove them; else why it would refuse (and send nothing).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
    /// A few of them, masked.
    pub samples: Vec<String>,
}

impl Plan {
    pub fn summary(&self) -> String {
        let through = self
            .connection
            .as_deref()
            .map(|c| format!(" on {c}"))
            .unwrap_or_default();
        let cluster = self
            .engine
            .as_deref()
            .map(|e| format!(", queries on the Ballista cluster at {e}"))
            .unwrap_or_default();
        let mut lines = vec![format!(
            "plan for export `{}` -> list {}{through} ({} source files{cluster})",
            self.export, self.list_id, self.source_files
        )];
        for (name, rows) in &self.segments {
            lines.push(format!("  segment `{name}`: {rows} rows"));
        }
        lines.push(format!(
            "  rows matched {}  ->  unique members {} in {} batches (cap {})",
            self.rows_matched, self.members_unique, self.batches, self.max_profiles
        ));
        let rejected: Vec<String> = self.rejected.iter().map(|(k, v)| format!("{k} {v}")).collect();
        lines.push(format!("  rejected: {}", rejected.join(", ")));
        if let Some(diff) = &self.diff {
            lines.push(format!(
                "  mode {}: to add {}, to update {}, unchanged {}",
                self.mode, diff.to_add, diff.to_update, diff.unchanged
            ));
            if let Some(why) = &diff.full_sync {
                lines.push(format!("  would send every member: {why}"));
            }
            if let Some(removals) = &diff.removals {
                lines.push(match &removals.refused {
                    None => format!(
                        "  to remove {} (at most {} this run): would remove them",
                        removals.to_remove, removals.bound
                    ),
                    Some(why) => format!("  to remove {}: REFUSED: {why}", removals.to_remove),
                });
                for sample in &removals.samples {
                    lines.push(format!("  sample removal: {sample}"));
                }
            }
        }
        for sample in &self.samples {
            lines.push(format!("  sample: {sample}"));
        }
        lines.push("  nothing was sent".to_owned());
        lines.join("\n")
    }
}

/// Counts, rejects and samples of an export, and for `changes` and `mirror` the diff
/// against what it has on the list, without sending a member. Of `options`, it reads the
/// progress display, the state folder, `full` and `allow_removals`.
pub async fn plan(pipeline: &Pipeline, options: &RunOptions) -> Result<Plan, ExportError> {
    plan_on_engine(pipeline, options)
        .await
        .map_err(|error| error.on(&pipeline.engine))
}

async fn plan_on_engine(pipeline: &Pipeline, options: &RunOptions) -> Result<Plan, ExportError> {
    let owned = pipeline.clone();
    let run_options = options.clone();
    let (query, segments, rows_expected, tracking) = engine::run(async move {
        let mut query = segment::prepare(&owned).await?;
        let mut segments = BTreeMap::new();
        for segment in &owned.segments {
            let frame = segment_frame(&query.ctx, &segment.name).await?;
            let rows = frame.count().await.map_err(ExportError::scan)?;
            segments.insert(segment.name.clone(), rows as u64);
        }
        // The export query is the chosen segments' union (`UNION ALL`): its rows are theirs.
        // The plan's own scan computes every value: no count has to run before it.
        let rows_expected = owned
            .destination
            .segments
            .iter()
            .map(|name| segments.get(name).copied().unwrap_or(0))
            .sum();
        guard_cap(&query, rows_expected, owned.options.max_profiles).await?;
        let state_dir = run_options
            .state_dir
            .clone()
            .unwrap_or_else(|| state::default_dir(owned.dir()));
        let tracking = tracking::prepare(
            &mut query,
            &owned,
            &state_dir,
            &run_options,
            rows_expected,
            &HashSet::new(),
        )
        .await?;
        Ok::<_, ExportError>((OnEngine::new(query), segments, rows_expected, tracking))
    })
    .await?;
    let source_files = query.get().snapshot.files.len();
    let progress = Progress::start(
        options.progress,
        Work::Scan,
        rows_expected,
        &pipeline.name,
        options.live.as_deref(),
    );
    let extractor = Extractor::expecting(query.get().layout.clone(), rows_expected);
    let rows = engine::stream(query, |query| query.export.clone());
    let mut scan = Scan::new(rows, extractor, progress.counters.clone());
    let tracked = tracking.is_some();
    // The first members by address: the scan (and the diff's join) yield rows in no fixed
    // order, and a plan should read the same twice.
    let mut first: Vec<(String, String)> = Vec::with_capacity(SAMPLES + 1);
    let mut keep = |member: ImportSubscriber, change: Change| {
        let key = member.email_address.to_ascii_lowercase();
        if change == Change::Unchanged || first.len() == SAMPLES && first.last().is_some_and(|(last, _)| *last <= key) {
            return;
        }
        let what = match (tracked, change) {
            (false, _) => "",
            (true, Change::Changed) => "to update: ",
            (true, _) => "to add: ",
        };
        first.push((key, format!("{what}{}", sample(&member))));
        first.sort();
        first.truncate(SAMPLES);
    };
    while let Some(sorted) = scan.next(&mut keep, |_| {}).await {
        sorted?;
    }
    progress.finish();
    let rows = scan.counts;
    let batch_size = pipeline.options.batch_size.get() as u64;
    Ok(Plan {
        export: pipeline.name.clone(),
        list_id: pipeline.destination.list_id.clone(),
        connection: None,
        source_files,
        segments,
        rows_matched: rows.rows,
        members_unique: rows.unique,
        rejected: BTreeMap::from([
            (RejectReason::MissingEmail.as_str(), rows.missing_email),
            (RejectReason::InvalidEmail.as_str(), rows.invalid_email),
            (RejectReason::InvalidField.as_str(), rows.invalid_field),
            ("duplicate", rows.duplicate),
        ]),
        batches: (rows.unique - rows.unchanged).div_ceil(batch_size),
        max_profiles: pipeline.options.max_profiles,
        samples: first.into_iter().map(|(_, line)| line).collect(),
        mode: pipeline.destination.mode.as_str(),
        engine: pipeline.engine.cluster(),
        diff: tracking.map(|t| diff(&t, &rows)),
    })
}

fn diff(tracking: &Tracking, rows: &crate::members::RowCounts) -> PlanDiff {
    PlanDiff {
        full_sync: tracking.full_sync.clone(),
        to_add: rows.new_members(),
        to_update: rows.changed,
        unchanged: rows.unchanged,
        removals: matches!(tracking.mode, crate::config::Mode::Mirror(_)).then(|| PlanRemovals {
            to_remove: tracking.leaving_total,
            bound: tracking.bound,
            refused: match &tracking.verdict {
                Verdict::Remove => None,
                Verdict::Refuse(why) => Some(why.clone()),
            },
            samples: {
                // In address order: the join yields them in no fixed one.
                let mut first: Vec<&String> = tracking.leaving.iter().collect();
                first.sort();
                first.into_iter().take(SAMPLES).map(|key| mask(key)).collect()
            },
        }),
    }
}

/// A member as `plan` shows it: the address masked.
fn sample(member: &ImportSubscriber) -> String {
    let mut line = mask(&member.email_address);
    if let Some(key) = &member.row_key {
        line.push_str(&format!(" key={key}"));
    }
    line.push_str(&format!(
        " name={:?} consent={}",
        member.name.as_deref().unwrap_or(""),
        member.consent_to_track.as_str(),
    ));
    if let Some(mobile) = &member.mobile_number {
        // Personal data, like the address: the country code and the last two digits.
        let hidden = mobile.len().saturating_sub(5);
        line.push_str(&format!(
            " mobile={}{}{}",
            &mobile[..3.min(mobile.len())],
            "*".repeat(hidden),
            &mobile[mobile.len().saturating_sub(2).max(3)..]
        ));
    }
    if let Some(sms) = member.consent_to_send_sms {
        line.push_str(&format!(" sms-consent={}", sms.as_str()));
    }
    for field in &member.custom_fields {
        match field.clear {
            false => line.push_str(&format!(" {}={}", field.key, field.value)),
            true => line.push_str(&format!(" {}=(cleared)", field.key)),
        }
    }
    line
}

/// Checks SQL and schema exactly as a run plans them: every segment, the export query, and
/// its physical plan (the optimiser included); reads no rows.
pub async fn validate(pipeline: &Pipeline) -> Result<(), ExportError> {
    let pipeline = pipeline.clone();
    engine::run(async move {
        let query = segment::prepare(&pipeline).await?;
        query.export.clone().create_physical_plan().await.map_err(|source| {
            ExportError::Segment(SegmentError::Plan {
                segments: pipeline.destination.segments.join(", "),
                source,
            })
        })?;
        Ok(())
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::campaign_monitor::{ConsentToTrack, ImportField};

    #[test]
    fn a_sample_masks_address_and_mobile_and_shows_the_key_and_cleared_fields() {
        let member = ImportSubscriber {
            email_address: "jane.doe@example.com".into(),
            name: Some("Jane".into()),
            mobile_number: Some("+40712345678".into()),
            custom_fields: vec![
                ImportField {
                    key: "City".into(),
                    value: "Cluj".into(),
                    clear: false,
                },
                ImportField {
                    key: "Tier".into(),
                    value: String::new(),
                    clear: true,
                },
            ],
            consent_to_track: ConsentToTrack::Yes,
            consent_to_send_sms: Some(ConsentToTrack::No),
            row_key: Some("c-42".into()),
        };
        assert_eq!(
            sample(&member),
            "j***@example.com key=c-42 name=\"Jane\" consent=Yes mobile=+40*******78 sms-consent=No City=Cluj Tier=(cleared)"
        );
    }
}
