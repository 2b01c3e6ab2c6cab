//! The bulk import request: at most 1000 subscribers, and `ConsentToTrack` always sent.

use serde::{Deserialize, Serialize};

/// The most subscribers one import call may carry.
pub const MAX_IMPORT_BATCH: usize = 1000;

/// The largest request body the API is taken to accept. Campaign Monitor publishes no
/// number; 2 MiB is the common default of web servers, and the emulator enforces it, so an
/// export that passes against the emulator fits the stricter reading.
pub const MAX_REQUEST_BYTES: usize = 2 * 1024 * 1024;

/// The import body around its subscribers: `{"Subscribers":[...],"Resubscribe":false,...}`.
const BODY_ENVELOPE_BYTES: usize = 160;

/// The most subscriber JSON (commas included) one import body may carry.
pub const MAX_SUBSCRIBER_BYTES: usize = MAX_REQUEST_BYTES - BODY_ENVELOPE_BYTES;

/// Whether serde_json writes `text` as it is between its quotes: nearly every address and
/// name. Checked over the whole string at once, which is many times faster than escaping
/// byte by byte.
fn needs_no_escape(text: &str) -> bool {
    text.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\')
}

/// Bytes of `text` as a JSON string, quotes included, as serde_json writes it.
fn json_string_len(text: &str) -> usize {
    if needs_no_escape(text) {
        return text.len() + 2;
    }
    2 + text
        .bytes()
        .map(|b| match b {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
            0..=0x1f => 6,
            _ => 1,
        })
        .sum::<usize>()
}

/// Where a subscriber's JSON goes: measured, to fill batches by size before any is built,
/// or written into a body. One description of the JSON serves both, so they cannot differ.
trait Json {
    fn raw(&mut self, json: &str);
    fn string(&mut self, text: &str);
}

struct Measure(usize);

impl Json for Measure {
    fn raw(&mut self, json: &str) {
        self.0 += json.len();
    }
    fn string(&mut self, text: &str) {
        self.0 += json_string_len(text);
    }
}

impl Json for Vec<u8> {
    fn raw(&mut self, json: &str) {
        self.extend_from_slice(json.as_bytes());
    }
    fn string(&mut self, text: &str) {
        if needs_no_escape(text) {
            self.push(b'"');
            self.extend_from_slice(text.as_bytes());
            self.push(b'"');
        } else {
            // Writing a string into a Vec cannot fail.
            serde_json::to_writer(&mut *self, text).unwrap_or_default();
        }
    }
}

/// Also SMS consent, which takes the same three values. `Unchanged` by default: the value
/// that changes nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConsentToTrack {
    Yes,
    No,
    #[default]
    Unchanged,
}

impl ConsentToTrack {
    /// Case-insensitive, as the official clients treat it.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        [Self::Yes, Self::No, Self::Unchanged]
            .into_iter()
            .find(|c| c.as_str().eq_ignore_ascii_case(text))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Yes => "Yes",
            Self::No => "No",
            Self::Unchanged => "Unchanged",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImportSubscriber {
    pub email_address: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// In international form (`+` and digits), as the extractor leaves it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mobile_number: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub custom_fields: Vec<ImportField>,
    pub consent_to_track: ConsentToTrack,
    /// The same three values as tracking consent; not sent when the mapping has none.
    #[serde(rename = "ConsentToSendSms", skip_serializing_if = "Option::is_none")]
    pub consent_to_send_sms: Option<ConsentToTrack>,
    /// The `[mapping] key` value of the row this member came from, so that a reject can
    /// point back to it. Never sent.
    #[serde(skip)]
    pub row_key: Option<String>,
}

impl ImportSubscriber {
    /// The length of this subscriber's JSON in an import body, without writing it.
    pub fn json_len(&self) -> usize {
        let mut measure = Measure(0);
        self.write_json(&mut measure);
        measure.0
    }

    /// This subscriber as serde_json would write it (the tests hold it to that), without
    /// its byte-by-byte escaping of strings that need none: that escaping was 6% of an
    /// export's CPU, and a thousand subscribers are written in half the time without it.
    fn write_json(&self, out: &mut impl Json) {
        out.raw("{\"EmailAddress\":");
        out.string(&self.email_address);
        if let Some(name) = &self.name {
            out.raw(",\"Name\":");
            out.string(name);
        }
        if let Some(mobile) = &self.mobile_number {
            out.raw(",\"MobileNumber\":");
            out.string(mobile);
        }
        for (i, field) in self.custom_fields.iter().enumerate() {
            out.raw(if i == 0 {
                ",\"CustomFields\":[{\"Key\":"
            } else {
                ",{\"Key\":"
            });
            out.string(&field.key);
            out.raw(",\"Value\":");
            out.string(&field.value);
            out.raw(if field.clear { ",\"Clear\":true}" } else { "}" });
        }
        if !self.custom_fields.is_empty() {
            out.raw("]");
        }
        out.raw(",\"ConsentToTrack\":\"");
        out.raw(self.consent_to_track.as_str());
        if let Some(sms) = self.consent_to_send_sms {
            out.raw("\",\"ConsentToSendSms\":\"");
            out.raw(sms.as_str());
        }
        out.raw("\"}");
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImportField {
    /// The key without brackets: `website`, not `[website]`.
    pub key: String,
    pub value: String,
    /// Blanks the list's value (sent with an empty `Value`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub clear: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("an import carries 1 to {MAX_IMPORT_BATCH} subscribers, not {0}")]
pub struct BatchSizeError(pub usize);

/// 1 to 1000 subscribers: the only way to build an import, so the API's 209 and 212 cannot
/// happen by our doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportBatch {
    subscribers: Vec<ImportSubscriber>,
    /// Their JSON, commas included: what the batch weighs in memory, roughly, while in flight.
    json_bytes: usize,
}

impl ImportBatch {
    pub fn new(subscribers: Vec<ImportSubscriber>) -> Result<Self, BatchSizeError> {
        let json_bytes = subscribers.iter().map(|s| s.json_len() + 1).sum();
        Self::measured(subscribers, json_bytes)
    }

    /// For a caller that measured `json_bytes` (the sum of `json_len() + 1`) already.
    pub fn measured(subscribers: Vec<ImportSubscriber>, json_bytes: usize) -> Result<Self, BatchSizeError> {
        if subscribers.is_empty() || subscribers.len() > MAX_IMPORT_BATCH {
            return Err(BatchSizeError(subscribers.len()));
        }
        debug_assert_eq!(json_bytes, subscribers.iter().map(|s| s.json_len() + 1).sum::<usize>());
        Ok(Self {
            subscribers,
            json_bytes,
        })
    }

    pub fn json_bytes(&self) -> usize {
        self.json_bytes
    }

    pub fn subscribers(&self) -> &[ImportSubscriber] {
        &self.subscribers
    }

    pub fn len(&self) -> usize {
        self.subscribers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.subscribers.is_empty()
    }

    /// The request body, as serde_json would write it (see [`ImportSubscriber::write_json`]).
    pub fn to_body(&self, resubscribe: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(BODY_ENVELOPE_BYTES + self.json_bytes);
        out.raw("{\"Subscribers\":[");
        for (i, subscriber) in self.subscribers.iter().enumerate() {
            if i > 0 {
                out.raw(",");
            }
            subscriber.write_json(&mut out);
        }
        out.raw(match resubscribe {
            true => "],\"Resubscribe\":true",
            false => "],\"Resubscribe\":false",
        });
        // PHP/.NET/Java spelling; the emulator also takes Python/Ruby's `...Autoresponders`.
        out.raw(",\"QueueSubscriptionBasedAutoResponders\":false,\"RestartSubscriptionBasedAutoresponders\":false}");
        out
    }
}

/// The dates a Date field keeps. Campaign Monitor does not document its range and drops a
/// date outside it without a word; this is the range of the SQL Server `datetime` its
/// answers' formats suggest (an inference, the one the emulator applies too).
pub const DATES_KEPT: std::ops::RangeInclusive<chrono::NaiveDate> = {
    let (Some(first), Some(last)) = (
        chrono::NaiveDate::from_ymd_opt(1753, 1, 1),
        chrono::NaiveDate::from_ymd_opt(9999, 12, 31),
    ) else {
        panic!("valid dates")
    };
    first..=last
};

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(email: &str) -> ImportSubscriber {
        ImportSubscriber {
            email_address: email.into(),
            name: None,
            custom_fields: vec![],
            consent_to_track: ConsentToTrack::Unchanged,
            row_key: None,
            mobile_number: None,
            consent_to_send_sms: None,
        }
    }

    #[test]
    fn batch_is_one_to_a_thousand() {
        assert_eq!(ImportBatch::new(vec![]), Err(BatchSizeError(0)));
        assert!(ImportBatch::new(vec![sub("a@x.com"); 1000]).is_ok());
        assert_eq!(ImportBatch::new(vec![sub("a@x.com"); 1001]), Err(BatchSizeError(1001)));
    }

    #[test]
    fn body_has_the_api_field_names() {
        let mut one = sub("a@x.com");
        one.name = Some("A".into());
        one.custom_fields.push(ImportField {
            key: "website".into(),
            value: "https://x".into(),
            clear: false,
        });
        one.consent_to_track = ConsentToTrack::Yes;
        let body = ImportBatch::new(vec![one, sub("b@x.com")]).unwrap().to_body(false);
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            value,
            serde_json::json!({
                "Subscribers": [
                    {"EmailAddress": "a@x.com", "Name": "A",
                     "CustomFields": [{"Key": "website", "Value": "https://x"}], "ConsentToTrack": "Yes"},
                    {"EmailAddress": "b@x.com", "ConsentToTrack": "Unchanged"}
                ],
                "Resubscribe": false,
                "QueueSubscriptionBasedAutoResponders": false,
                "RestartSubscriptionBasedAutoresponders": false
            })
        );
    }

    /// The body as serde_json writes it from the derived shape: the reference the
    /// hand-written JSON is held to, byte for byte.
    fn serde_body(batch: &ImportBatch, resubscribe: bool) -> Vec<u8> {
        #[derive(Serialize)]
        #[serde(rename_all = "PascalCase")]
        struct Body<'a> {
            subscribers: &'a [ImportSubscriber],
            resubscribe: bool,
            queue_subscription_based_auto_responders: bool,
            restart_subscription_based_autoresponders: bool,
        }
        serde_json::to_vec(&Body {
            subscribers: batch.subscribers(),
            resubscribe,
            queue_subscription_based_auto_responders: false,
            restart_subscription_based_autoresponders: false,
        })
        .unwrap()
    }

    #[test]
    fn body_and_lengths_are_what_serde_json_writes() {
        let mut wide = sub("a\"b@x.com");
        wide.name = Some("Zoë \u{1}\t\\ \u{7f} \u{2028}".into());
        wide.custom_fields = vec![
            ImportField {
                key: "City".into(),
                value: "Cluj-Napoca".into(),
                clear: false,
            },
            ImportField {
                key: "Note".into(),
                value: "line\nbreak \"quoted\" \r\u{8}\u{c}".into(),
                clear: false,
            },
        ];
        let mut texting = sub("b@x.com");
        texting.mobile_number = Some("+40712345678".into());
        texting.consent_to_send_sms = Some(ConsentToTrack::No);
        texting.custom_fields = vec![ImportField {
            key: "City".into(),
            value: String::new(),
            clear: true,
        }];
        let mut named = sub("c@x.com");
        named.name = Some(String::new());
        named.consent_to_track = ConsentToTrack::Yes;
        let members = vec![sub("a@x.com"), wide, texting, named];
        for member in &members {
            assert_eq!(
                member.json_len(),
                serde_json::to_vec(member).unwrap().len(),
                "{member:?}"
            );
        }
        let batch = ImportBatch::new(members).unwrap();
        for resubscribe in [false, true] {
            let body = batch.to_body(resubscribe);
            assert_eq!(
                String::from_utf8(body.clone()).unwrap(),
                String::from_utf8(serde_body(&batch, resubscribe)).unwrap()
            );
            assert!(body.len() - batch.json_bytes() <= BODY_ENVELOPE_BYTES);
        }
    }

    #[test]
    fn consent_parses_case_insensitively() {
        assert_eq!(ConsentToTrack::parse("YES"), Some(ConsentToTrack::Yes));
        assert_eq!(ConsentToTrack::parse(" unchanged "), Some(ConsentToTrack::Unchanged));
        assert_eq!(ConsentToTrack::parse("maybe"), None);
    }
}
