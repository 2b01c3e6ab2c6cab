//! `plan` and `validate`: everything a run does but sending.

use std::collections::BTreeMap;

use serde::Serialize;

use super::error::ExportError;
use super::preflight::check_cap;
use super::progress::{Progress, ProgressMode};
use super::scan::Scan;
use crate::campaign_monitor::ImportSubscriber;
use crate::config::Pipeline;
use crate::engine::{self, OnEngine};
use crate::members::{Extractor, RejectReason, mask};
use crate::segment::{self, SegmentError, segment_frame};

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
    /// A few members, addresses masked.
    pub samples: Vec<String>,
}

impl Plan {
    pub fn summary(&self) -> String {
        let through = self
            .connection
            .as_deref()
            .map(|c| format!(" on {c}"))
            .unwrap_or_default();
        let mut lines = vec![format!(
            "plan for export `{}` -> list {}{through} ({} source files)",
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
        for sample in &self.samples {
            lines.push(format!("  sample: {sample}"));
        }
        lines.push("  nothing was sent".to_owned());
        lines.join("\n")
    }
}

/// Counts, rejects and samples of an export, without sending a member.
pub async fn plan(pipeline: &Pipeline, progress: ProgressMode) -> Result<Plan, ExportError> {
    let owned = pipeline.clone();
    let (query, segments, rows_expected) = engine::run(async move {
        let query = segment::prepare(&owned).await?;
        let mut segments = BTreeMap::new();
        for segment in &owned.segments {
            let frame = segment_frame(&query.ctx, &segment.name).await?;
            let rows = frame.count().await.map_err(ExportError::scan)?;
            segments.insert(segment.name.clone(), rows as u64);
        }
        let rows_expected = check_cap(&query, owned.options.max_profiles).await?;
        Ok::<_, ExportError>((OnEngine::new(query), segments, rows_expected))
    })
    .await?;
    let source_files = query.get().snapshot.files.len();
    let progress = Progress::start(progress, rows_expected, &pipeline.name);
    let extractor = Extractor::new(query.get().layout.clone());
    let rows = engine::stream(query, |query| query.export.clone());
    let mut scan = Scan::new(rows, extractor, progress.counters.clone());
    let mut samples = Vec::new();
    let mut keep = |member: ImportSubscriber| {
        if samples.len() < SAMPLES {
            samples.push(sample(&member));
        }
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
        batches: rows.unique.div_ceil(batch_size),
        max_profiles: pipeline.options.max_profiles,
        samples,
    })
}

/// A member as `plan` shows it: the address masked.
fn sample(member: &ImportSubscriber) -> String {
    let mut line = format!(
        "{} name={:?} consent={}",
        mask(&member.email_address),
        member.name.as_deref().unwrap_or(""),
        member.consent_to_track.as_str(),
    );
    for field in &member.custom_fields {
        line.push_str(&format!(" {}={}", field.key, field.value));
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
