//! Counters behind `GET /_emulator/stats`: tests read them to prove what was (not) sent.

use std::collections::BTreeMap;

use serde::Serialize;

#[derive(Debug, Clone, Default, Serialize)]
pub struct Faults {
    pub injected_500: u64,
    pub dropped_before_applying: u64,
    pub dropped_after_applying: u64,
    pub rate_limited: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ListCounts {
    pub title: String,
    /// Members by state (`Active`, `Unsubscribed`, `Deleted`, ...).
    pub members: BTreeMap<String, u64>,
    /// Sums of `TotalNewSubscribers` and `TotalExistingSubscribers` over all imports.
    pub imported_new: u64,
    pub imported_existing: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    /// `"METHOD endpoint"` -> status -> count, e.g. `"POST subscribers/{listid}/import.json"`.
    pub requests: BTreeMap<String, BTreeMap<u16, u64>>,
    /// Import calls that reached the import logic (not faulted or limited before it).
    pub import_calls: u64,
    /// Subscriber rows in those calls.
    pub subscribers_received: u64,
    /// Rows that were added or updated.
    pub subscribers_applied: u64,
    /// Members moved to Deleted by `DELETE subscribers/{listid}.json`.
    pub subscribers_deleted: u64,
    /// Members moved to Unsubscribed by `POST subscribers/{listid}/unsubscribe.json`.
    pub subscribers_unsubscribed: u64,
    pub faults: Faults,
    pub lists: BTreeMap<String, ListCounts>,
}

impl Stats {
    pub fn record(&mut self, endpoint: &str, status: u16) {
        *self
            .requests
            .entry(endpoint.to_owned())
            .or_default()
            .entry(status)
            .or_insert(0) += 1;
    }
}
