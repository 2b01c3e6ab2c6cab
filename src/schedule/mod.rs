//! `cm-export schedule DIR`: runs each enabled export of a folder at the times of its cron
//! expression, never two runs of one export at once, and follows the folder as it changes:
//! added and changed definitions are picked up, and a removed or disabled definition (or a
//! removed connection) stops its run in progress before the next batch.
//!
//! Time comes from a [`Clock`], so tests move it by hand instead of waiting.

mod catalog;
mod clock;
mod scheduler;

pub use catalog::Permit;
pub use clock::{Clock, ManualClock};
pub use scheduler::{Command, Event, LiveRuns, ScheduleError, ScheduleOptions, Scheduler};
