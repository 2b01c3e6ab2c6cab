//! The checkpoint of a run: where it sends and what it reads (refusing to resume when either
//! changed), and the journal of what it got accepted.

use std::path::Path;

use super::error::ExportError;
use crate::state::{self, Journal, Progress, RunState, StateError};

pub struct Checkpoint {
    pub journal: Journal,
    /// What earlier attempts of this run got accepted.
    pub earlier: Progress,
}

/// Opens the checkpoint of the run in `run_dir`: checks that a resumed run still reads the
/// same snapshot with the same definition and sends to the same place, records what this
/// attempt runs on, and opens the journal.
pub fn open(run_dir: &Path, now: RunState, resumed: Option<&RunState>) -> Result<Checkpoint, ExportError> {
    if let Some(then) = resumed
        && let Some(why) = now.fingerprint.difference(&then.fingerprint)
    {
        return Err(StateError::Changed {
            export: now.export.clone(),
            run_id: then.run_id.clone(),
            why,
        }
        .into());
    }
    now.write(run_dir)?;
    let (journal, earlier) = Journal::open(&run_dir.join(state::JOURNAL_FILE)).map_err(StateError::from)?;
    if earlier.unanswered_members > 0 {
        tracing::warn!(
            members = earlier.unanswered_members,
            "an earlier attempt sent members without seeing the answer; they are sent again (an import updates, it does not double)"
        );
    }
    Ok(Checkpoint { journal, earlier })
}
