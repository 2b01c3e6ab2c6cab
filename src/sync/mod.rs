//! What an export that follows its segment (`changes`, `mirror`) has on its list: the synced
//! state, kept as Parquet in the state folder (each address this export had accepted, with a
//! fingerprint of its mapped values, and the list and mapping it was made under); the diff
//! of the export query against it and the members that left the segment, both DataFusion
//! joins, so a state of millions needs no hash map of ours; the guard on removals; and the
//! state's update from a run's journal.

mod diff;
mod guard;
mod state;

pub use diff::{Diff, email_key};
pub use guard::{Guard, Verdict};
pub use state::{SyncError, Synced, mapping_digest};
