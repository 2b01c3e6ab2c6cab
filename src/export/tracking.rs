//! The sync stage of `changes` and `mirror` runs: the synced state opened and checked
//! against the definition, the export query diffed against it, the members who left the
//! segment found and the removal guard asked, all before anything is sent; after sending,
//! whatever way the run ended, the state updated from the run's journal.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::error::ExportError;
use super::options::RunOptions;
use crate::config::{Mode, Pipeline};
use crate::engine;
use crate::segment::{self, Prepared};
use crate::state::{Accepted, Journal, StateError};
use crate::sync::{Diff, Guard, SyncError, Synced, Verdict, mapping_digest};

pub struct Tracking {
    pub mode: Mode,
    path: PathBuf,
    list_id: String,
    mapping: String,
    /// The state so far, when it stands for this list and mapping.
    usable: Option<Synced>,
    /// Why every member is sent, when they are.
    pub full_sync: Option<String>,
    /// Mirror: the members to take off the list (as many as the guard allows)...
    pub leaving: Vec<String>,
    /// ... how many left the segment in all, the most this run may remove, and whether it
    /// may remove them.
    pub leaving_total: u64,
    pub bound: u64,
    pub verdict: Verdict,
}

/// On the engine, with the query's session: reads the state, makes the export query carry
/// the diff, and (mirror) finds the members who left and asks the guard (whose refusal the
/// caller acts on). `rows` is what
/// the export query returns; `done` holds members an earlier attempt already dropped.
pub async fn prepare(
    query: &mut Prepared,
    pipeline: &Pipeline,
    state_dir: &Path,
    options: &RunOptions,
    rows: u64,
    done: &HashSet<String>,
) -> Result<Option<Tracking>, ExportError> {
    let mode = pipeline.destination.mode;
    if !mode.tracks() {
        return Ok(None);
    }
    let mapping = mapping_digest(&pipeline.mapping);
    let list_id = pipeline.destination.list_id.clone();
    // The sandbox's list starts empty every time, and what it accepted says nothing of the
    // real list: it keeps a state of its own, made anew each run.
    let (path, found) = match options.sandbox {
        true => (Synced::path(state_dir, &format!("{}.sandbox", pipeline.name)), None),
        false => {
            let path = Synced::path(state_dir, &pipeline.name);
            let found = Synced::open(&path)?;
            (path, found)
        }
    };
    let (usable, mismatch) = match found {
        None if options.sandbox => (None, Some("a sandbox run: the emulator's list starts empty".to_owned())),
        None => (None, Some("this is the export's first run in this mode".to_owned())),
        Some(synced) => match synced.mismatch(&list_id, &mapping) {
            Some(why) => (
                None,
                Some(format!(
                    "{why}; the state is made anew, and nobody is removed on the strength of the old one"
                )),
            ),
            None => (Some(synced), None),
        },
    };
    let full_sync = mismatch.or_else(|| options.full.then(|| "--full was given".to_owned()));
    if let Some(why) = &full_sync {
        tracing::info!(export = %pipeline.name, "sending every member: {why}");
    }
    let diff = match &usable {
        Some(synced) => Some(Diff::open(&query.local, synced).await?),
        None => None,
    };
    let export = query.export_here().map_err(|source| SyncError::Query {
        path: path.clone(),
        source,
    })?;
    if let Some(diff) = diff.as_ref().filter(|_| !options.full) {
        query.layout.synced = Some(export.schema().fields().len());
        query.export = diff.annotate(export.clone())?;
    }
    let (mut leaving, mut leaving_total, mut bound, mut verdict) = (Vec::new(), 0, 0, Verdict::Remove);
    if let (Mode::Mirror(_), Some(diff), Some(synced)) = (mode, &diff, &usable) {
        let guard = |leaving| Guard {
            leaving,
            on_list: synced.members,
            max_removals: pipeline.options.max_removals,
            allowed_extra: options.allow_removals,
            rows,
        };
        bound = guard(0).bound();
        (leaving, leaving_total) = diff.leaving(export, bound, done).await?;
        verdict = guard(leaving_total).verdict();
    }
    Ok(Some(Tracking {
        mode,
        path,
        list_id,
        mapping,
        usable,
        full_sync,
        leaving,
        leaving_total,
        bound,
        verdict,
    }))
}

impl Tracking {
    /// Writes the state this run leaves, from its journal (every attempt's): members the
    /// API accepted, with their new values, replace their old entries; members removed or
    /// found gone leave it; the rest stays. Returns the members it holds.
    pub async fn save(&self, journal: &Path) -> Result<u64, ExportError> {
        let progress = Journal::read(journal).map_err(StateError::from)?;
        let accepted: Vec<(String, u64)> = progress.batches.iter().flat_map(Accepted::landed).collect();
        let dropped: Vec<String> = progress.dropped.iter().map(|d| d.key().to_owned()).collect();
        let (path, usable, list_id, mapping) = (
            self.path.clone(),
            self.usable.clone(),
            self.list_id.clone(),
            self.mapping.clone(),
        );
        let saved = engine::run(async move {
            let ctx = segment::session();
            let old = match &usable {
                Some(synced) => Some(Diff::open(&ctx, synced).await?),
                None => None,
            };
            let rows = Diff::merged(old.as_ref(), &ctx, accepted, dropped).map_err(|source| SyncError::Query {
                path: path.clone(),
                source,
            })?;
            Synced::write(&path, rows, &list_id, &mapping).await
        });
        Ok(saved.await?)
    }
}
