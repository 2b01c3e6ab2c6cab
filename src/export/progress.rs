//! Progress: a bar on a terminal (rows scanned and members sent, or mirror's removals;
//! rate, ETA), a log line every few seconds elsewhere.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ProgressMode {
    /// A bar when stderr is a terminal, log lines otherwise.
    #[default]
    Auto,
    Always,
    Never,
}

#[derive(Debug, Default)]
pub struct Counters {
    pub rows: AtomicU64,
    pub sent: AtomicU64,
    /// Batches made and not yet taken to send: what waits while the limit holds sending back.
    pub queued: AtomicU64,
}

/// A run's progress as another task reads it (the service's API, while the run goes): what
/// is being counted, of how many, and the counts.
#[derive(Debug, Default)]
pub struct Live {
    stage: std::sync::Mutex<Option<(Work, u64, Arc<Counters>)>>,
}

impl Live {
    /// `{"stage": "scan", "rows_expected", "rows_scanned", "members_sent", "batches_queued"}`,
    /// `{"stage": "removals", ...}`, or `{"stage": "checking"}` before the scan starts.
    pub fn snapshot(&self) -> serde_json::Value {
        match &*self.stage.lock().unwrap_or_else(|p| p.into_inner()) {
            None => serde_json::json!({ "stage": "checking" }),
            Some((Work::Scan, total, counters)) => serde_json::json!({
                "stage": "scan",
                "rows_expected": total,
                "rows_scanned": counters.rows.load(Ordering::Relaxed),
                "members_sent": counters.sent.load(Ordering::Relaxed),
                "batches_queued": counters.queued.load(Ordering::Relaxed),
            }),
            Some((Work::Removals, total, counters)) => serde_json::json!({
                "stage": "removals",
                "removals_expected": total,
                "removals_answered": counters.rows.load(Ordering::Relaxed),
            }),
        }
    }
}

/// What is being counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// `rows` scanned of the export query, `sent` members accepted.
    Scan,
    /// `rows` counts mirror's removals answered.
    Removals,
}

impl Work {
    fn unit(self) -> &'static str {
        match self {
            Work::Scan => "rows",
            Work::Removals => "removals",
        }
    }
}

pub struct Progress {
    pub counters: Arc<Counters>,
    ticker: tokio::task::JoinHandle<()>,
    bar: Option<ProgressBar>,
}

impl Progress {
    /// `total`: the rows the export query will yield (or the removals to make), for the
    /// bar's length and ETA.
    pub fn start(mode: ProgressMode, work: Work, total: u64, what: &str, live: Option<&Live>) -> Self {
        let counters = Arc::new(Counters::default());
        if let Some(live) = live {
            *live.stage.lock().unwrap_or_else(|p| p.into_inner()) = Some((work, total, counters.clone()));
        }
        let show_bar = match mode {
            ProgressMode::Always => true,
            ProgressMode::Never => false,
            ProgressMode::Auto => std::io::stderr().is_terminal(),
        };
        let bar = show_bar.then(|| {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr_with_hz(8));
            let unit = work.unit();
            bar.set_style(
                ProgressStyle::with_template(&format!(
                    "{{spinner}} {{prefix}} [{{bar:30}}] {{human_pos}}/{{human_len}} {unit}  {{msg}}  {{rate}}  ETA {{eta}}"
                ))
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .with_key(
                    "rate",
                    move |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                        let _ = w.write_str(&rate(state.per_sec(), unit));
                    },
                )
                .progress_chars("=> "),
            );
            bar.set_prefix(what.to_owned());
            bar
        });
        let ticker = {
            let counters = counters.clone();
            let bar = bar.clone();
            tokio::spawn(async move {
                let period = if bar.is_some() {
                    Duration::from_millis(100)
                } else {
                    Duration::from_secs(5)
                };
                let mut interval = tokio::time::interval(period);
                interval.tick().await;
                loop {
                    interval.tick().await;
                    let rows = counters.rows.load(Ordering::Relaxed);
                    let sent = counters.sent.load(Ordering::Relaxed);
                    match (&bar, work) {
                        (Some(bar), Work::Scan) => {
                            bar.set_position(rows);
                            bar.set_message(format!("{sent} members sent"));
                        }
                        (Some(bar), Work::Removals) => bar.set_position(rows),
                        (None, Work::Scan) => tracing::info!(rows_scanned = rows, members_sent = sent, "progress"),
                        (None, Work::Removals) => tracing::info!(removals_answered = rows, of = total, "removing"),
                    }
                }
            })
        };
        Self { counters, ticker, bar }
    }

    pub fn finish(self) {
        self.ticker.abort();
        if let Some(bar) = self.bar {
            bar.set_position(self.counters.rows.load(Ordering::Relaxed));
            bar.finish_and_clear();
        }
    }
}

/// A rate as people read it: `90,987 rows/s`, not `90,987.4509/s`.
fn rate(per_second: f64, unit: &str) -> String {
    let whole = per_second.max(0.0).round() as u64;
    let digits = whole.to_string();
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    format!("{grouped} {unit}/s")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_is_whole_rows_a_second() {
        assert_eq!(rate(90_987.450_9, "rows"), "90,987 rows/s");
        assert_eq!(rate(0.4, "rows"), "0 rows/s");
        assert_eq!(rate(1_234_567.0, "removals"), "1,234,567 removals/s");
    }
}
