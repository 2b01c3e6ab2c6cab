//! The run: the stream of stages from the Parquet scan to the list, sending with retries
//! under the API's rate limit, the report and the rejects file; and `plan` / `validate`.

mod concurrency;
mod error;
mod gate;
mod plan;
mod progress;
mod rejects;
mod removal;
mod report;
mod retry;
mod run;
mod send;

pub use error::{ExportError, chain};
pub use plan::{Plan, plan, validate};
pub use progress::ProgressMode;
pub use rejects::{RejectsError, RejectsWriter};
pub use removal::{Destination, removed};
pub use report::{Rejected, Report, RunStatus, Trigger};
pub use retry::{Backoff, retry_call};
pub use run::{RunOptions, StopReason, check_cap, connect, new_run_id, now_rfc3339, run};
