//! A custom field's values checked against its type before they are sent: the API takes a
//! number that is not one, a date it cannot read or an option the field lacks without a
//! word and stores nothing, so each such value is a rejected row here, with its reason.

use std::borrow::Cow;

use crate::campaign_monitor::DATES_KEPT;

/// How one mapped field's values are checked and written.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum FieldValues {
    /// As they are (plain mappings and Text fields).
    #[default]
    Text,
    /// A decimal number, sent trimmed.
    Number,
    /// A calendar date, `yyyy/mm/dd` or `yyyy-mm-dd`, sent as `yyyy/mm/dd`.
    Date,
    /// One of the field's options (any case), sent as the field spells it. `None` while
    /// they are not known (`plan` does not ask the list, and the mapping named none):
    /// values then go as written.
    OneOf(Option<Vec<String>>),
    /// Any of the field's options, split on `delimiter` (one value when there is none);
    /// the key is sent once per value, as the API wants.
    ManyOf {
        options: Option<Vec<String>>,
        delimiter: Option<String>,
    },
    /// A country by one of the names the API lists (`countries.json`, any case), sent as the
    /// API spells it; `None` while not asked (`plan`): values then go as written.
    Country(Option<Vec<String>>),
    /// A US state by name or USPS code (any case), sent by name.
    UsState,
}

impl FieldValues {
    /// Hands each value to send for `text` to `send`, or says why none can be.
    pub fn check<'a>(&'a self, text: &'a str, mut send: impl FnMut(Cow<'a, str>)) -> Result<(), String> {
        match self {
            Self::Text => send(Cow::Borrowed(text)),
            Self::Number => {
                let number = text.trim();
                match number.parse::<f64>() {
                    Ok(value) if value.is_finite() && !number.contains(['e', 'E', 'i', 'I', 'n', 'N']) => {
                        send(Cow::Borrowed(number));
                    }
                    _ => return Err(format!("`{text}` is not a number")),
                }
            }
            Self::Date => {
                let day =
                    date(text.trim()).ok_or_else(|| format!("`{text}` is not a date (yyyy/mm/dd or yyyy-mm-dd)"))?;
                if !DATES_KEPT.contains(&day) {
                    return Err(format!(
                        "`{text}` is outside the dates Campaign Monitor keeps ({} to {})",
                        DATES_KEPT.start().format("%Y/%m/%d"),
                        DATES_KEPT.end().format("%Y/%m/%d")
                    ));
                }
                send(Cow::Owned(day.format("%Y/%m/%d").to_string()));
            }
            Self::OneOf(options) => send(option(options.as_deref(), text)?),
            Self::Country(names) => {
                let wanted = text.trim();
                match names {
                    None => send(Cow::Borrowed(wanted)),
                    Some(names) => match names.iter().find(|n| n.eq_ignore_ascii_case(wanted)) {
                        Some(name) => send(Cow::Borrowed(name.as_str())),
                        None => {
                            return Err(format!(
                                "`{wanted}` is not a country name Campaign Monitor knows (it lists them at `countries.json`: `United Kingdom`, `United States of America`, ...)"
                            ));
                        }
                    },
                }
            }
            Self::UsState => send(Cow::Borrowed(crate::campaign_monitor::us_state(text).ok_or_else(
                || {
                    format!(
                        "`{}` is not a US state (a name like `California`, or its code `CA`)",
                        text.trim()
                    )
                },
            )?)),
            Self::ManyOf { options, delimiter } => {
                let parts: Vec<&str> = match delimiter {
                    Some(delimiter) => text
                        .split(delimiter.as_str())
                        .filter(|p| !p.trim().is_empty())
                        .collect(),
                    None => vec![text],
                };
                let mut chosen = Vec::with_capacity(parts.len());
                for part in parts {
                    let option = option(options.as_deref(), part)?;
                    if !chosen.contains(&option) {
                        chosen.push(option);
                    }
                }
                for option in chosen {
                    send(option);
                }
            }
        }
        Ok(())
    }
}

fn option<'a>(options: Option<&'a [String]>, text: &'a str) -> Result<Cow<'a, str>, String> {
    let wanted = text.trim();
    let Some(options) = options else {
        return Ok(Cow::Borrowed(wanted));
    };
    options
        .iter()
        .find(|o| o.eq_ignore_ascii_case(wanted))
        .map(|o| Cow::Borrowed(o.as_str()))
        .ok_or_else(|| format!("`{wanted}` is not one of the field's options ({})", options.join(", ")))
}

/// A real calendar date written `yyyy/mm/dd` or `yyyy-mm-dd`.
fn date(text: &str) -> Option<chrono::NaiveDate> {
    chrono::NaiveDate::parse_from_str(text, "%Y/%m/%d")
        .or_else(|_| chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d"))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(values: &FieldValues, text: &str) -> Result<Vec<String>, String> {
        let mut out = Vec::new();
        values.check(text, |v| out.push(v.into_owned()))?;
        Ok(out)
    }

    #[test]
    fn numbers_dates_and_options_are_checked_and_written_as_the_api_reads_them() {
        assert_eq!(sent(&FieldValues::Number, " 42.5 ").unwrap(), ["42.5"]);
        assert_eq!(sent(&FieldValues::Number, "-7").unwrap(), ["-7"]);
        for bad in ["abc", "1e5", "NaN", "inf", "", "4 2"] {
            assert_eq!(sent(&FieldValues::Number, bad), Err(format!("`{bad}` is not a number")));
        }
        assert_eq!(sent(&FieldValues::Date, "2024-02-29").unwrap(), ["2024/02/29"]);
        assert_eq!(sent(&FieldValues::Date, "2024/12/01").unwrap(), ["2024/12/01"]);
        assert!(
            sent(&FieldValues::Date, "2023-02-29")
                .unwrap_err()
                .contains("is not a date")
        );
        assert_eq!(sent(&FieldValues::Date, "1753-01-01").unwrap(), ["1753/01/01"]);
        assert_eq!(
            sent(&FieldValues::Date, "1752-12-31"),
            Err("`1752-12-31` is outside the dates Campaign Monitor keeps (1753/01/01 to 9999/12/31)".into())
        );
        let tiers = FieldValues::OneOf(Some(vec!["Bronze".into(), "Gold".into()]));
        assert_eq!(sent(&FieldValues::OneOf(None), " platinum ").unwrap(), ["platinum"]);
        assert_eq!(sent(&tiers, " gold ").unwrap(), ["Gold"]);
        assert_eq!(
            sent(&tiers, "platinum"),
            Err("`platinum` is not one of the field's options (Bronze, Gold)".into())
        );
        let countries = FieldValues::Country(Some(vec!["Romania".into(), "United Kingdom".into()]));
        assert_eq!(sent(&countries, " united kingdom ").unwrap(), ["United Kingdom"]);
        assert!(
            sent(&countries, "UK")
                .unwrap_err()
                .starts_with("`UK` is not a country name")
        );
        assert_eq!(sent(&FieldValues::Country(None), "UK ").unwrap(), ["UK"]);
        assert_eq!(sent(&FieldValues::UsState, "ca").unwrap(), ["California"]);
        assert_eq!(sent(&FieldValues::UsState, " new YORK").unwrap(), ["New York"]);
        assert_eq!(
            sent(&FieldValues::UsState, "Ontario"),
            Err("`Ontario` is not a US state (a name like `California`, or its code `CA`)".into())
        );
        let interests = FieldValues::ManyOf {
            options: Some(vec!["Books".into(), "Music".into(), "Film".into()]),
            delimiter: Some(";".into()),
        };
        assert_eq!(sent(&interests, "music; books;;Music").unwrap(), ["Music", "Books"]);
        assert!(
            sent(&interests, "music;golf")
                .unwrap_err()
                .contains("`golf` is not one")
        );
    }
}
