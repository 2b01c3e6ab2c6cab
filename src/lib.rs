//! `cm-export`: export segments of unified customer profiles from Parquet to Campaign
//! Monitor subscriber lists.
//!
//! The modules, highest layer first: each imports only modules listed below it.
//!
//! - [`serve`]: `cm-export serve`: the scheduler behind an HTTP API where each request is a
//!   user's and roles decide what it may do; users (Argon2-hashed tokens), the connections
//!   the service holds, who saved each export, the audit log.
//! - [`schedule`]: the long-running scheduler: cron times, reloading the folder, cancelling
//!   runs whose definition or connection went away; alerts after its runs.
//! - [`alert`]: failure alerts to a webhook, sent by the run's caller (CLI, scheduler).
//! - [`export`]: one run, in stages (`export/run.rs` strings them together):
//!   - `preflight`: credentials, SQL and schema, the list and its fields, the cap;
//!   - `checkpoint`: the fingerprint that guards `--resume`, the journal of accepted batches;
//!   - `tracking` (`changes`, `mirror`): the diff against the synced state, the removal guard;
//!   - `batcher`: scan, extract, dedupe, cut batches by count and bytes;
//!   - `dispatch`: imports in flight under the adaptive `concurrency` and the rate `gate`,
//!     each sent (`send`) with retries;
//!   - `remove` (`mirror`): members who left the segment, taken off the list;
//!   - `tally`: the one owner of counts and of the rejects file;
//!
//!   and `plan` / `validate`, which do all of that but send.
//! - [`emulator`]: a protocol-faithful Campaign Monitor emulator with fault injection,
//!   used by `--sandbox`, the tests and the benchmarks.
//! - [`sync`]: what an export that follows its segment has on its list (Parquet), the diff
//!   and the members who left as DataFusion joins, the guard on removals.
//! - [`state`]: the state folder: run records (report, status, trigger), per run its
//!   fingerprint and journal, per export its lock, the history of every run; owner-only,
//!   atomically written files.
//! - [`segment`]: runs segment SQL read-only, registers each segment as a view, and builds
//!   the export query that projects the mapped columns.
//! - [`source`]: the snapshot's files, on disk or in an object store (S3, Azure, GCS,
//!   HTTPS), decided by one listing, registered as a table.
//! - [`engine`]: where queries run: DataFusion on threads with deep stacks.
//! - `ballista` (cargo feature `ballista`): segment queries on a Ballista cluster, their rows
//!   streamed back.
//! - [`config`]: pipeline (`pipelines/NAME.toml`) and connection (`connections.toml`)
//!   definitions, parsed strictly into checked types before any other I/O.
//! - [`members`]: normalises, validates and dedupes addresses, checks mobile numbers and
//!   typed custom field values; pure and hot.
//! - [`campaign_monitor`]: the API's wire types, the client, the pure classifier of its
//!   answers, and the one check of URLs the tool sends to.
//! - [`retry`]: capped exponential backoff with jitter, and the one retry loop.
//! - [`error_text`]: errors as one line, with values from the data masked.
//! - [`sample`]: synthetic unified profiles as Parquet, for the quickstart and benchmarks.
//!
//! The command line lives with the binary (`src/main.rs`, `src/cli/`): it parses, loads,
//! calls these modules and maps outcomes to exit codes.

pub mod alert;
#[cfg(feature = "ballista")]
pub mod ballista;
pub mod campaign_monitor;
pub mod config;
pub mod emulator;
pub mod engine;
pub mod error_text;
pub mod export;
pub mod members;
pub mod retry;
pub mod sample;
pub mod schedule;
pub mod segment;
pub mod serve;
pub mod source;
pub mod state;
pub mod sync;
