//! The emulator's lists and members, and the import rules the real API follows.
//! Pure: no I/O, no clock (the caller passes `now`), so tests feed it literals.

use std::borrow::Cow;
use std::collections::HashMap;

use serde::Deserialize;

use super::members::{Members, Visit, key};
use crate::campaign_monitor::ConsentToTrack;
pub use crate::campaign_monitor::MemberState;
use crate::campaign_monitor::types::{
    ApiErrorBody, CustomField, CustomFieldValue, ImportFailure, ImportResult, ListStats, SubscriberDetails,
};

/// A member as the list keeps it. A million-member import is the emulator's heaviest
/// work, and most of it is memory: the address and the name share one allocation and the
/// consents are a byte each, so a member is 96 bytes and one allocation, not 176 and two.
#[derive(Debug, Clone)]
pub struct Member {
    /// The address as first given (trimmed), then the name.
    text: Box<str>,
    name_at: u32,
    pub state: MemberState,
    pub consent_to_track: ConsentToTrack,
    pub consent_to_send_sms: ConsentToTrack,
    pub custom_fields: Vec<(String, String)>,
    pub mobile_number: Option<Box<str>>,
    pub date: Stamp,
    pub joined: Stamp,
}

/// When a request was taken, to the second, written as the API writes it
/// (`2026-11-30 09:42:09`). A plain value that every member a request touches copies: a
/// shared, counted string cost the import about an eighth of its time, each change of its
/// count waiting for the member's stores before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Stamp(chrono::NaiveDateTime);

impl Stamp {
    const FORMAT: &str = "%Y-%m-%d %H:%M:%S";

    pub fn now() -> Self {
        use chrono::Timelike;
        let now = chrono::Utc::now().naive_utc();
        Self(now.with_nanosecond(0).unwrap_or(now))
    }
}

impl std::fmt::Display for Stamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.format(Self::FORMAT).fmt(f)
    }
}

impl std::str::FromStr for Stamp {
    type Err = chrono::ParseError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        chrono::NaiveDateTime::parse_from_str(text, Self::FORMAT).map(Self)
    }
}

impl Member {
    /// An active member who has consented to nothing yet, joined `now`.
    pub fn new(email: &str, name: &str, now: Stamp) -> Self {
        Self {
            text: [email, name].concat().into_boxed_str(),
            // Addresses reach a list only through the import and add calls, which refuse
            // any longer than 254 bytes.
            name_at: u32::try_from(email.len()).expect("an address is shorter than 4 GiB"),
            state: MemberState::Active,
            consent_to_track: ConsentToTrack::No,
            consent_to_send_sms: ConsentToTrack::No,
            custom_fields: Vec::new(),
            mobile_number: None,
            date: now,
            joined: now,
        }
    }

    pub fn email(&self) -> &str {
        &self.text[..self.name_at as usize]
    }

    pub fn name(&self) -> &str {
        &self.text[self.name_at as usize..]
    }

    pub fn set_name(&mut self, name: &str) {
        if self.name() != name {
            self.text = [self.email(), name].concat().into_boxed_str();
        }
    }

    pub fn details(&self) -> SubscriberDetails {
        SubscriberDetails {
            email_address: self.email().to_owned(),
            name: self.name().to_owned(),
            date: self.date.to_string(),
            list_joined_date: self.joined.to_string(),
            state: self.state.as_str().to_owned(),
            custom_fields: self
                .custom_fields
                .iter()
                .map(|(key, value)| CustomFieldValue {
                    key: key.clone(),
                    value: value.clone(),
                })
                .collect(),
            reads_email_with: String::new(),
            consent_to_track: Some(self.consent_to_track.as_str().to_owned()),
            // Only for members with a number: the official clients' fixtures, whose shape
            // the answers keep, have neither key.
            mobile_number: self.mobile_number.as_deref().map(str::to_owned),
            consent_to_send_sms: self
                .mobile_number
                .is_some()
                .then(|| self.consent_to_send_sms.as_str().to_owned()),
        }
    }
}

/// A string of a request: borrowed from the body when it holds no escapes, so that reading
/// a thousand subscribers allocates only what the list keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text<'a>(pub Cow<'a, str>);

impl std::ops::Deref for Text<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl<'a> From<&'a str> for Text<'a> {
    fn from(text: &'a str) -> Self {
        Self(Cow::Borrowed(text))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Cow<'de, str>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Self::Value, E> {
                Ok(Cow::Borrowed(text))
            }
            fn visit_str<E>(self, text: &str) -> Result<Self::Value, E> {
                Ok(Cow::Owned(text.to_owned()))
            }
            fn visit_string<E>(self, text: String) -> Result<Self::Value, E> {
                Ok(Cow::Owned(text))
            }
        }
        deserializer.deserialize_str(Visit).map(Text)
    }
}

/// A consent as a request gives it, read with the body so that checking a request and
/// applying it do not read it twice: `None` inside for a value the API does not take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Consent(Option<ConsentToTrack>);

impl Consent {
    pub fn read(text: &str) -> Self {
        Self(ConsentToTrack::parse(text))
    }
}

impl<'de> Deserialize<'de> for Consent {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl serde::de::Visitor<'_> for Visit {
            type Value = Consent;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E>(self, text: &str) -> Result<Consent, E> {
                Ok(Consent::read(text))
            }
        }
        deserializer.deserialize_str(Visit)
    }
}

/// A subscriber as a request carries it: every field optional, so that the emulator, not
/// serde, decides which omission is which API error.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct IncomingSubscriber<'a> {
    #[serde(default, borrow)]
    pub email_address: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub name: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub custom_fields: Option<Vec<IncomingField<'a>>>,
    #[serde(default)]
    pub consent_to_track: Option<Consent>,
    #[serde(default, borrow)]
    pub mobile_number: Option<Text<'a>>,
    #[serde(default, rename = "ConsentToSendSms")]
    pub consent_to_send_sms: Option<Consent>,
    #[serde(default)]
    pub resubscribe: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct IncomingField<'a> {
    #[serde(borrow)]
    pub key: Text<'a>,
    #[serde(default, borrow)]
    pub value: Option<Text<'a>>,
    #[serde(default)]
    pub clear: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct IncomingImport<'a> {
    #[serde(default, borrow)]
    pub subscribers: Option<Vec<IncomingSubscriber<'a>>>,
    #[serde(default)]
    pub resubscribe: Option<bool>,
    // Both spellings the official clients send are accepted (and otherwise unused).
    #[serde(default, alias = "QueueSubscriptionBasedAutoresponders")]
    pub queue_subscription_based_auto_responders: Option<bool>,
    #[serde(default)]
    pub restart_subscription_based_autoresponders: Option<bool>,
}

impl<'a> IncomingImport<'a> {
    /// Reads an import's body; `None` when it is not JSON of this shape. UTF-8 is checked
    /// once for the whole body rather than string by string: a million-member export sends
    /// a hundred megabytes of it.
    pub fn parse(body: &'a [u8]) -> Option<Self> {
        serde_json::from_str(std::str::from_utf8(body).ok()?).ok()
    }
}

pub fn api_error(code: i64, message: &str) -> ApiErrorBody {
    ApiErrorBody {
        code,
        message: message.to_owned(),
    }
}

/// What an import or add did, for the answer and the stats.
#[derive(Debug)]
pub enum ImportOutcome {
    /// 201: all rows imported.
    Imported(ImportResult),
    /// 400 code 210: some rows failed, the rest imported.
    Partial(ImportResult),
    /// 400 with this body: nothing imported.
    Rejected(ApiErrorBody),
}

#[derive(Debug)]
pub struct List {
    pub id: String,
    pub title: String,
    pub custom_fields: Vec<CustomField>,
    pub members: Members,
    pub total_new: u64,
    pub total_existing: u64,
}

impl List {
    pub fn new(id: &str, title: &str) -> Self {
        Self {
            id: id.to_owned(),
            title: title.to_owned(),
            custom_fields: Vec::new(),
            members: Members::default(),
            total_new: 0,
            total_existing: 0,
        }
    }

    pub fn member(&self, email: &str) -> Option<&Member> {
        self.members.get(email)
    }

    pub fn member_mut(&mut self, email: &str) -> Option<&mut Member> {
        self.members.get_mut(email)
    }

    pub fn count_by_state(&self) -> HashMap<MemberState, u64> {
        let mut counts = HashMap::new();
        for member in self.members.values() {
            *counts.entry(member.state).or_insert(0) += 1;
        }
        counts
    }

    pub fn stats(&self) -> ListStats {
        let counts = self.count_by_state();
        let get = |s| counts.get(&s).copied().unwrap_or(0);
        ListStats {
            total_active_subscribers: get(MemberState::Active),
            total_unsubscribes: get(MemberState::Unsubscribed),
            total_deleted: get(MemberState::Deleted),
            total_bounces: get(MemberState::Bounced),
            ..ListStats::default()
        }
    }

    /// Members in one state, ordered by email ascending as the API's default listing is.
    pub fn in_state(&self, state: MemberState) -> Vec<&Member> {
        let mut members: Vec<&Member> = self.members.values().filter(|m| m.state == state).collect();
        members.sort_unstable_by_key(|m| m.email().to_ascii_lowercase());
        members
    }

    /// Creates a custom field and returns its key, `[name]` lowercased without spaces.
    pub fn add_custom_field(
        &mut self,
        name: &str,
        data_type: &str,
        options: Vec<String>,
        visible: bool,
    ) -> Result<String, ApiErrorBody> {
        const TYPES: [&str; 7] = [
            "Text",
            "Number",
            "MultiSelectOne",
            "MultiSelectMany",
            "Date",
            "Country",
            "USState",
        ];
        if name.trim().is_empty() {
            return Err(api_error(250, "Invalid Field Name"));
        }
        if !TYPES.contains(&data_type) {
            return Err(api_error(251, "Invalid Field Type"));
        }
        let key = format!("[{}]", name.to_lowercase().replace(char::is_whitespace, ""));
        if self.custom_fields.iter().any(|f| f.key == key) {
            return Err(api_error(255, "Field Key Exists"));
        }
        self.custom_fields.push(CustomField {
            field_name: name.to_owned(),
            key: key.clone(),
            data_type: data_type.to_owned(),
            field_options: options,
            visible_in_preference_center: visible,
        });
        Ok(key)
    }

    /// `PUT .../customfields/{key}/options.json`: a multi-select field's options, replaced
    /// or added to (keeping the order, no duplicates).
    pub fn set_field_options(&mut self, key: &str, options: Vec<String>, keep: bool) -> Result<(), ApiErrorBody> {
        let Some(at) = self.field_at(key) else {
            return Err(api_error(253, "Invalid Custom Field Key"));
        };
        let field = &mut self.custom_fields[at];
        if !matches!(field.data_type.as_str(), "MultiSelectOne" | "MultiSelectMany") {
            return Err(api_error(254, "Custom field is not a multi-option field"));
        }
        if !keep {
            field.field_options.clear();
        }
        for option in options {
            if !field.field_options.contains(&option) {
                field.field_options.push(option);
            }
        }
        Ok(())
    }

    /// Where the field with `key` (with or without brackets, any case) is.
    fn field_at(&self, key: &str) -> Option<usize> {
        let bare = key.trim().trim_start_matches('[').trim_end_matches(']');
        self.custom_fields
            .iter()
            .position(|f| f.key[1..f.key.len() - 1].eq_ignore_ascii_case(bare))
    }

    /// `POST /subscribers/{listid}/import.json`.
    pub fn import(&mut self, request: IncomingImport, now: Stamp) -> ImportOutcome {
        let subscribers = request.subscribers.unwrap_or_default();
        if subscribers.is_empty() {
            return ImportOutcome::Rejected(api_error(212, "No subscribers were provided"));
        }
        if subscribers.len() > 1000 {
            return ImportOutcome::Rejected(api_error(
                209,
                "Too many subscribers. The maximum number of subscribers per import is 1000",
            ));
        }
        // Consent is checked for the whole request before anything is applied.
        for subscriber in &subscribers {
            if let Err(error) = check_consent(subscriber) {
                return ImportOutcome::Rejected(error);
            }
        }
        let resubscribe = request.resubscribe.unwrap_or(false);
        let mut result = ImportResult::default();
        // The first of each address is applied; the others are reported once. Addresses
        // not on the list that are refused are remembered here, the rest by `members`.
        self.members.begin_request();
        let mut refused: foldhash::HashMap<Cow<'_, str>, bool> = foldhash::HashMap::default();
        for subscriber in &subscribers {
            let email = subscriber.email_address.as_deref().unwrap_or_default();
            let key = key(email);
            let target = match self.members.visit(&key) {
                Visit::Known(index) => Target::Known(index),
                Visit::Absent(hash) if !refused.contains_key(&key) => Target::New(hash),
                Visit::Repeated { first_repeat, .. } => {
                    if first_repeat {
                        result.duplicate_emails_in_submission.push(email.to_owned());
                    }
                    continue;
                }
                Visit::Absent(_) => {
                    if let Some(reported @ false) = refused.get_mut(&key) {
                        *reported = true;
                        result.duplicate_emails_in_submission.push(email.to_owned());
                    }
                    continue;
                }
            };
            result.total_unique_emails_submitted += 1;
            match self.apply(subscriber, target, resubscribe, now) {
                Ok(true) => result.total_new_subscribers += 1,
                Ok(false) => result.total_existing_subscribers += 1,
                Err(error) => {
                    if let Target::New(_) = target {
                        refused.insert(key, false);
                    }
                    result.failure_details.push(failure(email, error));
                }
            }
        }
        self.total_new += result.total_new_subscribers;
        self.total_existing += result.total_existing_subscribers;
        if result.failure_details.is_empty() {
            ImportOutcome::Imported(result)
        } else {
            ImportOutcome::Partial(result)
        }
    }

    /// `POST /subscribers/{listid}.json`: one subscriber; answers the address on success.
    pub fn add(&mut self, subscriber: IncomingSubscriber, now: Stamp) -> Result<String, ApiErrorBody> {
        check_consent(&subscriber)?;
        let email = subscriber.email_address.as_deref().unwrap_or_default();
        let resubscribe = subscriber.resubscribe.unwrap_or(false);
        self.members.begin_request();
        let target = match self.members.visit(&key(email)) {
            Visit::Absent(hash) => Target::New(hash),
            // A request of one subscriber cannot name it twice.
            Visit::Known(index) | Visit::Repeated { index, .. } => Target::Known(index),
        };
        self.apply(&subscriber, target, resubscribe, now)?;
        Ok(email.trim().to_owned())
    }

    /// Adds or updates one member: `Ok(true)` when new.
    fn apply(
        &mut self,
        subscriber: &IncomingSubscriber,
        target: Target,
        resubscribe: bool,
        now: Stamp,
    ) -> Result<bool, ApiErrorBody> {
        let email = subscriber.email_address.as_deref().unwrap_or_default();
        if let Target::New(_) = target {
            plausible(email)?;
        }
        // "Unchanged" (or nothing) leaves a known member's consent, and a new one's at No.
        let consent = |given: Option<Consent>| given.and_then(|c| c.0).filter(|c| *c != ConsentToTrack::Unchanged);
        let mobile = subscriber.mobile_number.as_deref().map(str::trim);
        let mut fields = Vec::new();
        let mut cleared = Vec::new();
        for field in subscriber.custom_fields.iter().flatten() {
            // Like the real API, keys the list does not define are ignored...
            let Some(at) = self.field_at(&field.key) else {
                continue;
            };
            let defined = &self.custom_fields[at];
            let name = defined.field_name.clone();
            if field.clear == Some(true) {
                cleared.push(name);
            } else if let Some(value) = &field.value
                && readable(defined, value)
            {
                fields.push((name, value.to_string()));
            }
        }
        let (member, is_new) = match target {
            Target::Known(index) => {
                let member = self.members.at_mut(index);
                match member.state {
                    MemberState::Unsubscribed if !resubscribe => {
                        return Err(api_error(206, "Subscriber is unsubscribed and Resubscribe is false"));
                    }
                    MemberState::Deleted if !resubscribe => {
                        return Err(api_error(205, "Subscriber is deleted and Resubscribe is false"));
                    }
                    MemberState::Bounced => return Err(api_error(207, "Subscriber has bounced")),
                    MemberState::Unsubscribed | MemberState::Deleted => {
                        member.state = MemberState::Active;
                        member.joined = now;
                    }
                    MemberState::Active | MemberState::Unconfirmed => {}
                }
                if let Some(name) = &subscriber.name {
                    member.set_name(name);
                }
                (member, false)
            }
            Target::New(hash) => {
                let name = subscriber.name.as_deref().unwrap_or_default();
                (
                    self.members.insert_new(hash, Member::new(email.trim(), name, now)),
                    true,
                )
            }
        };
        if let Some(consent) = consent(subscriber.consent_to_track) {
            member.consent_to_track = consent;
        }
        if let Some(consent) = consent(subscriber.consent_to_send_sms) {
            member.consent_to_send_sms = consent;
        }
        if let Some(mobile) = mobile {
            member.mobile_number = Some(mobile.into());
        }
        member
            .custom_fields
            .retain(|(k, _)| !fields.iter().any(|(updated, _)| updated == k) && !cleared.contains(k));
        member.custom_fields.extend(fields);
        member.date = now;
        Ok(is_new)
    }
}

/// Where a subscriber goes: over the member at this index, or a new member with this hash.
#[derive(Debug, Clone, Copy)]
enum Target {
    Known(usize),
    New(u64),
}

/// ... and so are values a field cannot hold: a number that is not one, a date it cannot
/// read or does not keep, an option the field lacks, a country or US state it does not know by that name. The
/// API answers as if they were taken.
fn readable(field: &CustomField, value: &str) -> bool {
    let value = value.trim();
    match field.data_type.as_str() {
        "Number" => value.parse::<f64>().is_ok_and(f64::is_finite),
        "Date" => chrono::NaiveDate::parse_from_str(value, "%Y/%m/%d")
            .or_else(|_| chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d"))
            .is_ok_and(|day| crate::campaign_monitor::DATES_KEPT.contains(&day)),
        "MultiSelectOne" | "MultiSelectMany" => field.field_options.iter().any(|o| o.eq_ignore_ascii_case(value)),
        "Country" => super::countries::COUNTRIES
            .iter()
            .any(|c| c.eq_ignore_ascii_case(value)),
        "USState" => crate::campaign_monitor::US_STATES
            .iter()
            .any(|(_, name)| name.eq_ignore_ascii_case(value)),
        _ => true,
    }
}

fn plausible(email: &str) -> Result<(), ApiErrorBody> {
    match plausible_email(email.trim()) {
        true => Ok(()),
        false => Err(api_error(1, "Invalid Email Address")),
    }
}

fn failure(email: &str, error: ApiErrorBody) -> ImportFailure {
    ImportFailure {
        email_address: email.to_owned(),
        code: error.code,
        message: error.message,
    }
}

fn check_consent(subscriber: &IncomingSubscriber) -> Result<(), ApiErrorBody> {
    match subscriber.consent_to_track {
        None => Err(api_error(214, "ConsentToTrack is required")),
        Some(Consent(None)) => Err(api_error(
            215,
            "Invalid ConsentToTrack value. Accepted values are Yes, No and Unchanged",
        )),
        // SMS consent is optional; the code for a wrong one is not documented, so the
        // emulator answers as for tracking consent, in its own words.
        Some(_) => match subscriber.consent_to_send_sms {
            Some(Consent(None)) => Err(api_error(
                215,
                "Invalid ConsentToSendSms value. Accepted values are Yes, No and Unchanged",
            )),
            _ => Ok(()),
        },
    }
}

/// The emulator's own view of a deliverable address: deliberately independent of the
/// exporter's validator, so that tests between the two can catch a disagreement.
fn plausible_email(email: &str) -> bool {
    let Some(at) = email.bytes().position(|b| b == b'@') else {
        return false;
    };
    let domain = &email.as_bytes()[at + 1..];
    // An ASCII address (nearly all) is checked byte by byte: below or at space, and DEL,
    // are exactly the ASCII characters that are whitespace or control.
    let clean = match email.is_ascii() {
        true => email.bytes().all(|b| b > b' ' && b != 0x7f),
        false => !email.chars().any(|c| c.is_whitespace() || c.is_control()),
    };
    at > 0
        && email.len() <= 254
        && !domain.contains(&b'@')
        && domain.contains(&b'.')
        && domain.first() != Some(&b'.')
        && domain.last() != Some(&b'.')
        && clean
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_a_field_cannot_hold_are_dropped_without_a_word() {
        let mut list = List::new("l", "t");
        list.add_custom_field("Age", "Number", vec![], true).unwrap();
        list.add_custom_field("Joined", "Date", vec![], true).unwrap();
        list.add_custom_field("Tier", "MultiSelectOne", vec!["Gold".into()], true)
            .unwrap();
        list.add_custom_field("Country", "Country", vec![], true).unwrap();
        list.add_custom_field("State", "USState", vec![], true).unwrap();
        let field = |key: &'static str, value: &'static str| IncomingField {
            key: key.into(),
            value: Some(value.into()),
            clear: None,
        };
        let with = |fields: Vec<IncomingField<'static>>| IncomingSubscriber {
            custom_fields: Some(fields),
            ..sub("a@x.com", Some("Yes"))
        };
        list.add(
            with(vec![
                field("Age", "abc"),
                field("Joined", "1700-01-01"),
                field("Tier", "platinum"),
                field("Country", "Narnia"),
                field("State", "CA"),
            ]),
            Stamp::now(),
        )
        .unwrap();
        assert!(list.member("a@x.com").unwrap().custom_fields.is_empty());
        list.add(
            with(vec![
                field("Age", "42"),
                field("Joined", "2024/02/29"),
                field("Tier", "gold"),
                field("Country", "united kingdom"),
                field("State", "California"),
            ]),
            Stamp::now(),
        )
        .unwrap();
        assert_eq!(list.member("a@x.com").unwrap().custom_fields.len(), 5);
    }

    #[test]
    fn a_stamp_reads_and_writes_the_apis_form_to_the_second() {
        let stamp: Stamp = "2026-11-30 09:42:09".parse().unwrap();
        assert_eq!(stamp.to_string(), "2026-11-30 09:42:09");
        assert!(Stamp::now().to_string().parse::<Stamp>().is_ok());
        assert!("2026-11-30T09:42:09".parse::<Stamp>().is_err());
    }

    #[test]
    fn plausible_addresses_by_bytes_agree_with_the_rule_by_characters() {
        let by_chars = |email: &str| match email.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && email.len() <= 254
                    && !domain.contains('@')
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !email.chars().any(|c| c.is_whitespace() || c.is_control())
            }
            None => false,
        };
        let long = format!("{}@x.com", "a".repeat(250));
        for email in [
            "a@b.co",
            "@b.co",
            "a@b",
            "a@.b",
            "a@b.",
            "a@b@c.d",
            "a b@c.d",
            "a\tb@c.d",
            "a\u{7f}@c.d",
            "a\u{1f}@c.d",
            "é@ü.de",
            "a\u{a0}@c.d",
            "a@c\u{2003}.d",
            "a\u{85}@c.d",
            "",
            "@",
            long.as_str(),
        ] {
            assert_eq!(plausible_email(email), by_chars(email), "{email:?}");
        }
    }

    fn sub<'a>(email: &'a str, consent: Option<&'a str>) -> IncomingSubscriber<'a> {
        IncomingSubscriber {
            email_address: Some(email.into()),
            name: Some("N".into()),
            custom_fields: None,
            consent_to_track: consent.map(Consent::read),
            mobile_number: None,
            consent_to_send_sms: None,
            resubscribe: None,
        }
    }

    fn import(list: &mut List, subs: Vec<IncomingSubscriber>, resubscribe: bool) -> ImportOutcome {
        list.import(
            IncomingImport {
                subscribers: Some(subs),
                resubscribe: Some(resubscribe),
                queue_subscription_based_auto_responders: None,
                restart_subscription_based_autoresponders: None,
            },
            "2026-01-01 00:00:00".parse().unwrap(),
        )
    }

    #[test]
    fn counts_new_existing_duplicates_and_failures() {
        let mut list = List::new("l", "L");
        let ImportOutcome::Imported(first) = import(&mut list, vec![sub("a@x.com", Some("Yes"))], false) else {
            panic!()
        };
        assert_eq!((first.total_new_subscribers, first.total_existing_subscribers), (1, 0));
        let ImportOutcome::Partial(second) = import(
            &mut list,
            vec![
                sub("A@x.com", Some("yes")),
                sub("b@x.com", Some("No")),
                sub("B@X.com", Some("No")),
                sub("bad", Some("No")),
                sub("b@x.com", Some("No")),
                sub("BAD", Some("No")),
                sub("a@x.com", Some("No")),
                sub("bad", Some("No")),
            ],
            false,
        ) else {
            panic!()
        };
        assert_eq!(second.total_unique_emails_submitted, 3);
        assert_eq!(
            (second.total_new_subscribers, second.total_existing_subscribers),
            (1, 1)
        );
        // Each address repeated is told once, the refused one too.
        assert_eq!(second.duplicate_emails_in_submission, vec!["B@X.com", "BAD", "a@x.com"]);
        assert_eq!(second.failure_details.len(), 1);
        assert_eq!(second.failure_details[0].code, 1);
        assert_eq!(list.members.len(), 2);
        assert_eq!(
            list.member("a@x.com").unwrap().consent_to_track,
            ConsentToTrack::Yes,
            "the first one counts"
        );
    }

    #[test]
    fn refuses_unsubscribed_and_deleted_unless_resubscribe() {
        let mut list = List::new("l", "L");
        import(
            &mut list,
            vec![sub("a@x.com", Some("Yes")), sub("d@x.com", Some("Yes"))],
            false,
        );
        list.member_mut("a@x.com").unwrap().state = MemberState::Unsubscribed;
        list.member_mut("d@x.com").unwrap().state = MemberState::Deleted;
        let ImportOutcome::Partial(result) = import(
            &mut list,
            vec![sub("a@x.com", Some("Yes")), sub("d@x.com", Some("Yes"))],
            false,
        ) else {
            panic!()
        };
        let codes: Vec<i64> = result.failure_details.iter().map(|f| f.code).collect();
        assert_eq!(codes, vec![206, 205]);
        assert_eq!(list.member("a@x.com").unwrap().state, MemberState::Unsubscribed);
        let ImportOutcome::Imported(result) = import(
            &mut list,
            vec![sub("a@x.com", Some("Yes")), sub("d@x.com", Some("Yes"))],
            true,
        ) else {
            panic!()
        };
        assert_eq!(result.total_existing_subscribers, 2);
        assert_eq!(list.member("d@x.com").unwrap().state, MemberState::Active);
    }

    #[test]
    fn whole_request_errors_import_nothing() {
        let mut list = List::new("l", "L");
        let code = |o: ImportOutcome| match o {
            ImportOutcome::Rejected(e) => e.code,
            other => panic!("{other:?}"),
        };
        assert_eq!(code(import(&mut list, vec![], false)), 212);
        let addresses: Vec<String> = (0..1001).map(|i| format!("{i}@x.com")).collect();
        let many = addresses.iter().map(|a| sub(a, Some("Yes"))).collect();
        assert_eq!(code(import(&mut list, many, false)), 209);
        assert_eq!(
            code(import(
                &mut list,
                vec![sub("a@x.com", Some("Yes")), sub("b@x.com", None)],
                false
            )),
            214
        );
        assert_eq!(code(import(&mut list, vec![sub("a@x.com", Some("Maybe"))], false)), 215);
        assert!(list.members.is_empty());
    }

    #[test]
    fn consents_are_read_from_the_body_in_any_case_and_a_wrong_one_refuses_the_request() {
        let body = |sms: &str| {
            format!(
                r#"{{"Subscribers":[{{"EmailAddress":"a@x.com","ConsentToTrack":" yes ","MobileNumber":"+15550100","ConsentToSendSms":"{sms}"}}]}}"#
            )
        };
        let mut list = List::new("l", "L");
        let refused = body("Maybe");
        let ImportOutcome::Rejected(error) =
            list.import(IncomingImport::parse(refused.as_bytes()).unwrap(), Stamp::now())
        else {
            panic!("taken")
        };
        assert_eq!(
            (error.code, error.message.as_str()),
            (
                215,
                "Invalid ConsentToSendSms value. Accepted values are Yes, No and Unchanged"
            )
        );
        assert!(list.members.is_empty());
        let taken = body("UNCHANGED");
        list.import(IncomingImport::parse(taken.as_bytes()).unwrap(), Stamp::now());
        let member = list.member("a@x.com").unwrap();
        assert_eq!(
            (member.consent_to_track, member.consent_to_send_sms),
            (ConsentToTrack::Yes, ConsentToTrack::No)
        );
    }

    #[test]
    fn custom_fields_known_to_the_list_are_kept() {
        let mut list = List::new("l", "L");
        assert_eq!(
            list.add_custom_field("City Name", "Text", vec![], true).unwrap(),
            "[cityname]"
        );
        assert_eq!(
            list.add_custom_field("city name", "Text", vec![], true)
                .unwrap_err()
                .code,
            255
        );
        let mut s = sub("a@x.com", Some("Yes"));
        s.custom_fields = Some(vec![
            IncomingField {
                key: "[CityName]".into(),
                value: Some("Cluj".into()),
                clear: None,
            },
            IncomingField {
                key: "unknown".into(),
                value: Some("x".into()),
                clear: None,
            },
        ]);
        import(&mut list, vec![s], false);
        assert_eq!(
            list.member("a@x.com").unwrap().custom_fields,
            vec![("City Name".to_owned(), "Cluj".to_owned())]
        );
    }
}
