//! The run, in stages: preflight checks, the checkpoint, the batcher, the dispatcher and the
//! tally (see `run.rs` for how they fit); sending with retries under the API's rate limit;
//! and `plan` / `validate`.

mod batcher;
mod checkpoint;
mod concurrency;
mod destination;
mod dispatch;
mod error;
mod gate;
mod options;
mod plan;
mod preflight;
mod progress;
mod rejects;
mod remove;
mod run;
mod scan;
mod send;
mod tally;
mod tracking;

pub use destination::{Destination, removed};
pub use error::ExportError;
pub use options::{RunOptions, StopReason, new_run_id, now_rfc3339};
pub use plan::{Plan, PlanDiff, PlanRemovals, plan, validate};
pub use progress::{Live, ProgressMode};
pub use rejects::RejectsError;
pub use run::run;
