//! `cm-export`: export segments of unified customer profiles from Parquet to Campaign
//! Monitor subscriber lists.
//!
//! The modules follow the data:
//!
//! - [`config`]: pipeline (`pipelines/NAME.toml`) and connection (`connections.toml`)
//!   definitions, parsed strictly into checked types before any other I/O.
//! - [`source`]: registers a Parquet file, folder (Hive partitions) or glob as a table.
//! - [`segment`]: runs segment SQL read-only, registers each segment as a view, and builds
//!   the export query that projects the mapped columns.
//! - [`members`]: normalises, validates and dedupes addresses; pure and hot.
//! - [`campaign_monitor`]: the API's wire types, the client and the pure classifier of
//!   its answers.
//! - [`emulator`]: a protocol-faithful Campaign Monitor emulator with fault injection,
//!   used by `--sandbox`, the tests and the benchmarks.
//! - [`export`]: the run itself: the stream of stages, sending with retries, the report and
//!   the rejects file; also `plan` and `validate`.
//! - [`state`]: the state folder: per run what it started on and the journal of accepted
//!   batches that lets an interrupted run resume; per export the lock that keeps runs from
//!   overlapping; the history of every run (embedded store).
//! - [`schedule`]: the long-running scheduler: cron times, reloading the folder, cancelling
//!   runs whose definition or connection went away.
//! - [`alert`]: failure alerts to a webhook.
//! - [`sample`]: synthetic unified profiles as Parquet, for the quickstart and benchmarks.
//!
//! The command line lives with the binary (`src/main.rs`, `src/cli/`): it parses, loads,
//! calls these modules and maps outcomes to exit codes.

pub mod alert;
pub mod campaign_monitor;
pub mod config;
pub mod emulator;
pub mod export;
pub mod members;
pub mod sample;
pub mod schedule;
pub mod segment;
pub mod source;
pub mod state;
