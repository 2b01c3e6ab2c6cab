//! Failure alerts: a failed or cancelled run POSTs its report summary (counts, status, the
//! error in plain words; never secrets or addresses) to the `alert-webhook` of its pipeline,
//! or else of its connection.

mod send;

pub use send::{AlertError, Summary, after_run, default_backoff, notify};
