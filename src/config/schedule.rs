//! A pipeline's `[schedule]`: a standard 5-field cron expression read in a named time zone.

use std::path::Path;

use chrono::{DateTime, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use serde::Deserialize;

use super::error::ConfigError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct ScheduleWire {
    /// `minute hour day-of-month month day-of-week`, e.g. `0 3 * * *`.
    cron: String,
    /// An IANA name such as `Europe/Bucharest`. Default `UTC`.
    timezone: Option<String>,
    /// Default true; `false` keeps the definition but stops its scheduled runs.
    enabled: Option<bool>,
}

#[derive(Debug, Clone)]
pub struct Schedule {
    /// As written, for listings.
    pub expression: String,
    pub timezone: chrono_tz::Tz,
    pub enabled: bool,
    cron: Cron,
}

impl Schedule {
    pub(super) fn check(path: &Path, wire: ScheduleWire) -> Result<Self, ConfigError> {
        let expression = wire.cron.trim().to_owned();
        let fields = expression.split_whitespace().count();
        // Aliases (`@daily`) are one word; anything else must be exactly five fields, so a
        // seconds or year field written by habit from another tool is refused, not misread.
        if !(expression.starts_with('@') || fields == 5) {
            return Err(ConfigError::invalid(
                path,
                "schedule.cron",
                format!(
                    "`{expression}` has {fields} field(s); write 5: minute hour day-of-month month day-of-week, e.g. \"0 3 * * *\" for 03:00 every day"
                ),
            ));
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build()
            .parse(&expression)
            .map_err(|e| {
                ConfigError::invalid(
                    path,
                    "schedule.cron",
                    format!("`{expression}` is not a valid cron expression: {e}"),
                )
            })?;
        let timezone = match wire.timezone.as_deref().map(str::trim) {
            None => chrono_tz::UTC,
            Some(name) => name.parse::<chrono_tz::Tz>().map_err(|_| {
                ConfigError::invalid(
                    path,
                    "schedule.timezone",
                    format!("`{name}` is not an IANA time zone name, like \"UTC\" or \"Europe/Bucharest\""),
                )
            })?,
        };
        Ok(Self {
            expression,
            timezone,
            enabled: wire.enabled.unwrap_or(true),
            cron,
        })
    }

    /// The first time strictly after `after` that the expression matches in its time zone.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = after.with_timezone(&self.timezone);
        self.cron
            .find_next_occurrence(&local, false)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(cron: &str, timezone: Option<&str>) -> Result<Schedule, String> {
        Schedule::check(
            Path::new("pipelines/p.toml"),
            ScheduleWire {
                cron: cron.into(),
                timezone: timezone.map(Into::into),
                enabled: None,
            },
        )
        .map_err(|e| e.to_string())
    }

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn next_run_in_its_time_zone() {
        let s = check("0 3 * * *", Some("Europe/Bucharest")).unwrap();
        assert!(s.enabled);
        // 03:00 in Bucharest in winter is 01:00 UTC; in summer 00:00 UTC.
        assert_eq!(
            s.next_after(utc("2026-11-28T12:00:00Z")),
            Some(utc("2026-11-29T01:00:00Z"))
        );
        assert_eq!(
            s.next_after(utc("2026-07-01T12:00:00Z")),
            Some(utc("2026-07-02T00:00:00Z"))
        );
        let s = check("*/15 * * * *", None).unwrap();
        assert_eq!(
            s.next_after(utc("2026-11-28T12:00:00Z")),
            Some(utc("2026-11-28T12:15:00Z"))
        );
    }

    #[test]
    fn errors_name_the_key_and_the_fix() {
        let e = check("0 0 3 * * *", None).unwrap_err();
        assert!(
            e.contains("schedule.cron") && e.contains("has 6 field(s); write 5"),
            "{e}"
        );
        let e = check("61 3 * * *", None).unwrap_err();
        assert!(e.contains("`61 3 * * *` is not a valid cron expression"), "{e}");
        let e = check("0 3 * * *", Some("Europe/Bucuresti")).unwrap_err();
        assert!(e.contains("schedule.timezone") && e.contains("Europe/Bucuresti"), "{e}");
        assert!(check("@daily", None).is_ok());
    }
}
