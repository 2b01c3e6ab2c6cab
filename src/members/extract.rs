//! From Arrow record batches to import subscribers: read the mapped columns, normalise and
//! validate the address, check field values, dedupe. The hot path: no per-row allocation
//! but for the members that survive.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, LargeStringArray, RecordBatch, StringArray, StringBuilder, StringViewArray,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::datatypes::UInt64Type;
use datafusion::arrow::error::ArrowError;

use super::dedupe::Dedupe;
use super::email::{EmailProblem, normalise};
use super::mobile::normalise_mobile;
use super::reject::{Reject, RejectReason};
use super::typed::FieldValues;
use super::values::fingerprint;
use crate::campaign_monitor::{ConsentToTrack, ImportField, ImportSubscriber};

/// Longest custom field value the API takes.
pub const MAX_FIELD_CHARS: usize = 250;

/// Where each mapped value sits in the batches the export query yields. The default has
/// the address in column 0 and nothing else.
#[derive(Debug, Clone, Default)]
pub struct Layout {
    pub email: usize,
    pub name: Option<usize>,
    /// A column of consent values; `None` means every row gets `consent_default`.
    pub consent: Option<usize>,
    pub consent_default: ConsentToTrack,
    pub fields: Vec<FieldLayout>,
    /// The `[mapping] key` column, as text: carried into rejects, never sent.
    pub key: Option<usize>,
    pub mobile: Option<usize>,
    /// A column of SMS consent values; `None` means every row gets `sms_consent_default`.
    pub sms_consent: Option<usize>,
    /// `None`: SMS consent is not sent.
    pub sms_consent_default: Option<ConsentToTrack>,
    /// A null field value clears the list's value instead of leaving it.
    pub clear_nulls: bool,
    /// The data's name of each projected column, by index: what a reject names (the
    /// projection renames them).
    pub sources: Vec<String>,
    /// The fingerprint the synced state holds for the row's address (UInt64, null when the
    /// export never had it accepted); `None` when the run does not diff.
    pub synced: Option<usize>,
}

/// How a member stands against what this export last had accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Not in the synced state (or the run does not diff).
    New,
    /// In the state, with other mapped values.
    Changed,
    /// In the state with the same values: nothing to send.
    Unchanged,
}

/// One mapped custom field in the export query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldLayout {
    /// The key sent: the mapping's until the list's own spelling is known.
    pub key: String,
    /// The data's column, for rejects.
    pub column: String,
    pub index: usize,
    pub values: FieldValues,
    /// The type as the mapping states it, for rejects (`None`: plain).
    pub stated: Option<&'static str>,
}

impl FieldLayout {
    pub fn plain(key: &str, column: &str, index: usize) -> Self {
        Self {
            key: key.to_owned(),
            column: column.to_owned(),
            index,
            values: FieldValues::Text,
            stated: None,
        }
    }
}

impl Layout {
    /// Whether a mapped field takes country names, which a run asks the API for.
    pub fn wants_countries(&self) -> bool {
        self.fields.iter().any(|f| matches!(f.values, FieldValues::Country(_)))
    }

    /// The country names the API knows, for the Country fields' values to be checked against.
    pub fn set_countries(&mut self, names: &[String]) {
        for field in &mut self.fields {
            if let FieldValues::Country(known) = &mut field.values {
                *known = Some(names.to_vec());
            }
        }
    }

    /// The custom fields as the list has them, in the mapping's order: its own spelling of
    /// each key, and each multi-select field's options (what values are checked against).
    pub fn set_fields(&mut self, on_list: Vec<(String, Vec<String>)>) {
        for (field, (list_key, list_options)) in self.fields.iter_mut().zip(on_list) {
            field.key = list_key;
            match &mut field.values {
                FieldValues::OneOf(options) | FieldValues::ManyOf { options, .. } => *options = Some(list_options),
                _ => {}
            }
        }
    }
}

/// What happened to the rows of one or more batches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RowCounts {
    pub rows: u64,
    pub unique: u64,
    pub duplicate: u64,
    pub missing_email: u64,
    pub invalid_email: u64,
    pub invalid_field: u64,
    /// Of the unique members, those the synced state has with other values...
    pub changed: u64,
    /// ... and with the same values.
    pub unchanged: u64,
}

impl RowCounts {
    pub fn add(&mut self, other: &RowCounts) {
        self.rows += other.rows;
        self.unique += other.unique;
        self.duplicate += other.duplicate;
        self.missing_email += other.missing_email;
        self.invalid_email += other.invalid_email;
        self.invalid_field += other.invalid_field;
        self.changed += other.changed;
        self.unchanged += other.unchanged;
    }

    /// Unique members the synced state does not have.
    pub fn new_members(&self) -> u64 {
        self.unique - self.changed - self.unchanged
    }
}

/// Whether a column can hold addresses: any Arrow string type or a dictionary of one.
pub fn is_string_type(data_type: &DataType) -> bool {
    match data_type {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
        DataType::Dictionary(_, value) => is_string_type(value),
        _ => false,
    }
}

/// A borrowed view of any string column.
enum Strings<'a> {
    Utf8(&'a StringArray),
    Large(&'a LargeStringArray),
    View(&'a StringViewArray),
}

impl Strings<'_> {
    #[inline]
    fn get(&self, row: usize) -> Option<&str> {
        match self {
            Strings::Utf8(a) => a.is_valid(row).then(|| a.value(row)),
            Strings::Large(a) => a.is_valid(row).then(|| a.value(row)),
            Strings::View(a) => a.is_valid(row).then(|| a.value(row)),
        }
    }
}

/// Between the items of a list column read as text: a MultiSelectMany field's values are
/// split on it again (no option holds a control character).
pub const ITEM_SEPARATOR: &str = "\u{1f}";

/// Dictionaries (and anything else castable) become plain strings once per batch; a list
/// column becomes its items joined by [`ITEM_SEPARATOR`].
fn plain(array: &ArrayRef) -> Result<ArrayRef, ArrowError> {
    match array.data_type() {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Ok(array.clone()),
        DataType::List(_) => joined(array.as_list::<i32>().iter()),
        DataType::LargeList(_) => joined(array.as_list::<i64>().iter()),
        _ => cast(array, &DataType::Utf8View),
    }
}

fn joined(rows: impl Iterator<Item = Option<ArrayRef>>) -> Result<ArrayRef, ArrowError> {
    let mut out = StringBuilder::new();
    let mut text = String::new();
    for row in rows {
        let Some(items) = row else {
            out.append_null();
            continue;
        };
        let items = plain(&items)?;
        let values = strings(&items);
        text.clear();
        for value in (0..items.len()).filter_map(|i| values.get(i)) {
            if !text.is_empty() {
                text.push_str(ITEM_SEPARATOR);
            }
            text.push_str(value);
        }
        out.append_value(&text);
    }
    Ok(Arc::new(out.finish()))
}

fn strings(array: &ArrayRef) -> Strings<'_> {
    let any = array.as_any();
    if let Some(a) = any.downcast_ref::<StringArray>() {
        Strings::Utf8(a)
    } else if let Some(a) = any.downcast_ref::<LargeStringArray>() {
        Strings::Large(a)
    } else if let Some(a) = any.downcast_ref::<StringViewArray>() {
        Strings::View(a)
    } else {
        unreachable!("`plain` casts every column to a string array")
    }
}

fn consent_value(text: &str) -> Option<ConsentToTrack> {
    let is = |words: [&str; 3]| words.iter().any(|w| w.eq_ignore_ascii_case(text.trim()));
    ConsentToTrack::parse(text).or_else(|| {
        if is(["true", "1", "y"]) {
            Some(ConsentToTrack::Yes)
        } else if is(["false", "0", "n"]) {
            Some(ConsentToTrack::No)
        } else {
            None
        }
    })
}

/// A row that passed every check, before the dedupe.
struct Candidate<'a> {
    row: usize,
    email: &'a str,
    key: Option<&'a str>,
    custom_fields: Vec<ImportField>,
    consent: ConsentToTrack,
    mobile_number: Option<String>,
    consent_to_send_sms: Option<ConsentToTrack>,
}

/// Turns rows into members, rejects and duplicates.
pub struct Extractor {
    layout: Layout,
    dedupe: Dedupe,
}

impl Extractor {
    pub fn new(layout: Layout) -> Self {
        Self {
            layout,
            dedupe: Dedupe::new(),
        }
    }

    /// For a scan expected to yield about `rows` rows: the dedupe is sized once, not grown
    /// (each growth re-hashed every address it held).
    pub fn expecting(layout: Layout, rows: u64) -> Self {
        Self {
            layout,
            dedupe: Dedupe::with_capacity(rows),
        }
    }

    /// Distinct members so far.
    pub fn distinct(&self) -> usize {
        self.dedupe.len()
    }

    /// Reads one batch. Rows that cannot be sent go to `reject` as they are read; then the
    /// members go to `member` in row order, with how they stand against the synced state
    /// (duplicates are only counted).
    pub fn extract(
        &mut self,
        batch: &RecordBatch,
        mut member: impl FnMut(ImportSubscriber, Change),
        mut reject: impl FnMut(Reject),
    ) -> Result<RowCounts, ArrowError> {
        let layout = &self.layout;
        let email_array = plain(batch.column(layout.email))?;
        let emails = strings(&email_array);
        let name_array = layout.name.map(|i| plain(batch.column(i))).transpose()?;
        let names = name_array.as_ref().map(strings);
        let consent_array = layout.consent.map(|i| plain(batch.column(i))).transpose()?;
        let consents = consent_array.as_ref().map(strings);
        let field_arrays = layout
            .fields
            .iter()
            .map(|f| plain(batch.column(f.index)))
            .collect::<Result<Vec<_>, _>>()?;
        let fields: Vec<Strings<'_>> = field_arrays.iter().map(strings).collect();
        let key_array = layout.key.map(|i| plain(batch.column(i))).transpose()?;
        let keys = key_array.as_ref().map(strings);
        let mobile_array = layout.mobile.map(|i| plain(batch.column(i))).transpose()?;
        let mobiles = mobile_array.as_ref().map(strings);
        let sms_array = layout.sms_consent.map(|i| plain(batch.column(i))).transpose()?;
        let sms_consents = sms_array.as_ref().map(strings);
        let column_name = |i: Option<usize>| {
            i.map(|i| match layout.sources.get(i) {
                Some(source) => source.clone(),
                None => batch.schema().field(i).name().clone(),
            })
        };
        let synced = match layout.synced {
            Some(i) => Some(batch.column(i).as_primitive_opt::<UInt64Type>().ok_or_else(|| {
                ArrowError::SchemaError(format!(
                    "the synced fingerprint column is {}, not UInt64",
                    batch.column(i).data_type()
                ))
            })?),
            None => None,
        };

        let mut counts = RowCounts {
            rows: batch.num_rows() as u64,
            ..RowCounts::default()
        };
        let mut candidates = Vec::with_capacity(batch.num_rows());
        'rows: for row in 0..batch.num_rows() {
            let raw = emails.get(row);
            let key = keys.as_ref().and_then(|k| k.get(row));
            let rejected = |reason| Reject::new(raw, reason).keyed(key);
            let invalid = |column: Option<String>, message: String| Reject {
                column,
                message: Some(message),
                ..rejected(RejectReason::InvalidField)
            };
            let email = match normalise(raw) {
                Ok(email) => email,
                Err(EmailProblem::Missing) => {
                    counts.missing_email += 1;
                    reject(rejected(RejectReason::MissingEmail));
                    continue;
                }
                Err(EmailProblem::Invalid) => {
                    counts.invalid_email += 1;
                    reject(rejected(RejectReason::InvalidEmail));
                    continue;
                }
            };
            let mut custom_fields = Vec::new();
            for (field, values) in layout.fields.iter().zip(&fields) {
                let Some(text) = values.get(row) else {
                    if layout.clear_nulls {
                        custom_fields.push(ImportField {
                            key: field.key.clone(),
                            value: String::new(),
                            clear: true,
                        });
                    }
                    continue;
                };
                let mut too_long = None;
                let checked = field.values.check(text, |value| {
                    if value.chars().count() > MAX_FIELD_CHARS {
                        too_long.get_or_insert(value.chars().count());
                    }
                    custom_fields.push(ImportField {
                        key: field.key.clone(),
                        value: value.into_owned(),
                        clear: false,
                    });
                });
                let column = &field.column;
                let why = match (checked, too_long) {
                    (Ok(()), None) => continue,
                    (Ok(()), Some(chars)) => {
                        format!(
                            "column `{column}` holds {chars} characters; Campaign Monitor takes at most {MAX_FIELD_CHARS}"
                        )
                    }
                    (Err(why), _) => format!(
                        "column `{column}`: {why} (custom field `{}` is {})",
                        field.key,
                        field.stated.unwrap_or("Text")
                    ),
                };
                counts.invalid_field += 1;
                reject(invalid(Some(column.clone()), why));
                continue 'rows;
            }
            let consent = match &consents {
                None => layout.consent_default,
                Some(values) => match values.get(row) {
                    None => layout.consent_default,
                    Some(text) => match consent_value(text) {
                        Some(c) => c,
                        None => {
                            counts.invalid_field += 1;
                            reject(invalid(
                                column_name(layout.consent),
                                format!("consent value `{text}` is not Yes, No or Unchanged"),
                            ));
                            continue;
                        }
                    },
                },
            };
            let consent_to_send_sms = match sms_consents.as_ref().and_then(|values| values.get(row)) {
                None => layout.sms_consent_default,
                Some(text) => match consent_value(text) {
                    Some(c) => Some(c),
                    None => {
                        counts.invalid_field += 1;
                        reject(invalid(
                            column_name(layout.sms_consent),
                            format!("SMS consent value `{text}` is not Yes, No or Unchanged"),
                        ));
                        continue;
                    }
                },
            };
            let mobile_number = match mobiles.as_ref().and_then(|values| values.get(row)) {
                None => None,
                Some(text) => match normalise_mobile(text) {
                    Some(number) => Some(number),
                    None => {
                        counts.invalid_field += 1;
                        reject(invalid(
                            column_name(layout.mobile),
                            format!(
                                "mobile number `{text}` is not in international form: `+`, the country code and the number, 8 to 15 digits (+61412345678)"
                            ),
                        ));
                        continue;
                    }
                },
            };
            candidates.push(Candidate {
                row,
                email,
                key,
                custom_fields,
                consent,
                mobile_number,
                consent_to_send_sms,
            });
        }
        // Deduped together, after every row's checks: a row rejected above claims no address.
        let first = self.dedupe.first_times(candidates.iter().map(|c| c.email));
        for (candidate, first) in candidates.into_iter().zip(first) {
            if !first {
                counts.duplicate += 1;
                continue;
            }
            counts.unique += 1;
            let row = candidate.row;
            let found = ImportSubscriber {
                email_address: candidate.email.to_owned(),
                name: names.as_ref().and_then(|n| n.get(row)).map(str::to_owned),
                custom_fields: candidate.custom_fields,
                consent_to_track: candidate.consent,
                row_key: candidate.key.map(str::to_owned),
                mobile_number: candidate.mobile_number,
                consent_to_send_sms: candidate.consent_to_send_sms,
            };
            let change = match synced.filter(|s| s.is_valid(row)).map(|s| s.value(row)) {
                None => Change::New,
                Some(then) if then == fingerprint(&found) => {
                    counts.unchanged += 1;
                    Change::Unchanged
                }
                Some(_) => {
                    counts.changed += 1;
                    Change::Changed
                }
            };
            member(found, change);
        }
        Ok(counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{DictionaryArray, StringArray};
    use datafusion::arrow::datatypes::Int32Type;
    use std::sync::Arc;

    fn batch(emails: ArrayRef, cities: Vec<Option<&str>>) -> RecordBatch {
        RecordBatch::try_from_iter(vec![
            ("email", emails),
            ("city", Arc::new(StringArray::from(cities)) as ArrayRef),
        ])
        .unwrap()
    }

    fn layout() -> Layout {
        Layout {
            consent_default: ConsentToTrack::Yes,
            fields: vec![FieldLayout::plain("City", "city", 1)],
            ..Default::default()
        }
    }

    #[test]
    fn sorts_rows_into_members_rejects_and_duplicates() {
        let long = "x".repeat(251);
        let emails: ArrayRef = Arc::new(StringViewArray::from(vec![
            Some(" Jane@Example.com "),
            Some("jane@example.com"),
            None,
            Some("  "),
            Some("not-an-email"),
            Some("long@example.com"),
            Some("bob@example.com"),
        ]));
        let cities = vec![Some("Cluj"), None, None, None, None, Some(long.as_str()), None];
        let mut extractor = Extractor::new(layout());
        let (mut members, mut rejects) = (vec![], vec![]);
        let counts = extractor
            .extract(&batch(emails, cities), |m, _| members.push(m), |r| rejects.push(r))
            .unwrap();
        assert_eq!(
            counts,
            RowCounts {
                rows: 7,
                unique: 2,
                duplicate: 1,
                missing_email: 2,
                invalid_email: 1,
                invalid_field: 1,
                ..RowCounts::default()
            }
        );
        assert_eq!(members[0].email_address, "Jane@Example.com");
        assert_eq!(members[0].custom_fields[0].value, "Cluj");
        assert_eq!(members[0].consent_to_track, ConsentToTrack::Yes);
        assert!(members[1].custom_fields.is_empty());
        let reasons: Vec<_> = rejects.iter().map(|r| r.reason).collect();
        assert_eq!(
            reasons,
            vec![
                RejectReason::MissingEmail,
                RejectReason::MissingEmail,
                RejectReason::InvalidEmail,
                RejectReason::InvalidField
            ]
        );
        assert_eq!(rejects[2].email.as_deref(), Some("not-an-email"));
        assert_eq!(rejects[3].column.as_deref(), Some("city"));
    }

    #[test]
    fn reads_every_string_representation() {
        let dict: DictionaryArray<Int32Type> = vec!["a@x.com", "b@x.com", "a@x.com"].into_iter().collect();
        for emails in [
            Arc::new(StringArray::from(vec!["a@x.com", "b@x.com", "A@x.com"])) as ArrayRef,
            Arc::new(LargeStringArray::from(vec!["a@x.com", "b@x.com", "A@x.com"])) as ArrayRef,
            Arc::new(dict) as ArrayRef,
        ] {
            let mut extractor = Extractor::new(layout());
            let counts = extractor
                .extract(&batch(emails, vec![None, None, None]), |_, _| {}, |_| {})
                .unwrap();
            assert_eq!((counts.unique, counts.duplicate), (2, 1));
        }
        assert!(is_string_type(&DataType::Dictionary(
            Box::new(DataType::Int8),
            Box::new(DataType::LargeUtf8)
        )));
        assert!(!is_string_type(&DataType::Int64));
    }

    #[test]
    fn members_are_new_changed_or_unchanged_against_the_synced_state() {
        use datafusion::arrow::array::UInt64Array;
        let emails = Arc::new(StringArray::from(vec!["a@x.com", "b@x.com", "c@x.com", "C@x.com"])) as ArrayRef;
        let cities = vec![Some("Cluj"), Some("Cluj"), Some("Iasi"), Some("Iasi")];
        let same = |city: &str| {
            fingerprint(&ImportSubscriber {
                email_address: String::new(),
                name: None,
                custom_fields: vec![ImportField {
                    key: "City".into(),
                    value: city.into(),
                    clear: false,
                }],
                consent_to_track: ConsentToTrack::Yes,
                row_key: None,
                mobile_number: None,
                consent_to_send_sms: None,
            })
        };
        let synced = UInt64Array::from(vec![None, Some(same("Cluj")), Some(same("Cluj")), Some(same("Cluj"))]);
        let mut columns = batch(emails, cities).columns().to_vec();
        columns.push(Arc::new(synced));
        let rows = RecordBatch::try_from_iter(["email", "city", "synced"].into_iter().zip(columns)).unwrap();
        let mut extractor = Extractor::new(Layout {
            synced: Some(2),
            ..layout()
        });
        let mut changes = vec![];
        let counts = extractor
            .extract(&rows, |m, c| changes.push((m.email_address, c)), |_| {})
            .unwrap();
        assert_eq!(
            changes,
            vec![
                ("a@x.com".to_owned(), Change::New),
                ("b@x.com".to_owned(), Change::Unchanged),
                ("c@x.com".to_owned(), Change::Changed),
            ]
        );
        assert_eq!(
            (
                counts.unique,
                counts.new_members(),
                counts.changed,
                counts.unchanged,
                counts.duplicate
            ),
            (3, 1, 1, 1, 1)
        );
    }
}
