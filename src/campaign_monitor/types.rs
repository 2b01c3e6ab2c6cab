//! Wire types of the Campaign Monitor API v3.3, in its PascalCase names.
//!
//! The same types serve the client (parsing answers) and the emulator (writing them), so
//! the two halves of the protocol cannot drift apart.

use serde::{Deserialize, Serialize};

/// The error body of every failed call: `{"Code": 50, "Message": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ApiErrorBody {
    pub code: i64,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SystemDate {
    pub system_date: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListDetails {
    #[serde(rename = "ListID")]
    pub list_id: String,
    pub title: String,
    pub unsubscribe_page: String,
    pub confirmed_opt_in: bool,
    pub confirmation_success_page: String,
    pub unsubscribe_setting: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListStats {
    pub total_active_subscribers: u64,
    pub new_active_subscribers_today: u64,
    pub new_active_subscribers_yesterday: u64,
    pub new_active_subscribers_this_week: u64,
    pub new_active_subscribers_this_month: u64,
    pub new_active_subscribers_this_year: u64,
    pub total_unsubscribes: u64,
    pub unsubscribes_today: u64,
    pub unsubscribes_yesterday: u64,
    pub unsubscribes_this_week: u64,
    pub unsubscribes_this_month: u64,
    pub unsubscribes_this_year: u64,
    pub total_deleted: u64,
    pub deleted_today: u64,
    pub deleted_yesterday: u64,
    pub deleted_this_week: u64,
    pub deleted_this_month: u64,
    pub deleted_this_year: u64,
    pub total_bounces: u64,
    pub bounces_today: u64,
    pub bounces_yesterday: u64,
    pub bounces_this_week: u64,
    pub bounces_this_month: u64,
    pub bounces_this_year: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CustomField {
    pub field_name: String,
    /// The key in brackets, as the API lists it: `[website]`.
    pub key: String,
    pub data_type: String,
    pub field_options: Vec<String>,
    pub visible_in_preference_center: bool,
}

/// A custom field's data type, as the API names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldType {
    Text,
    Number,
    Date,
    MultiSelectOne,
    MultiSelectMany,
    Country,
    USState,
}

impl FieldType {
    pub const ALL: [FieldType; 7] = [
        Self::Text,
        Self::Number,
        Self::Date,
        Self::MultiSelectOne,
        Self::MultiSelectMany,
        Self::Country,
        Self::USState,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "Text",
            Self::Number => "Number",
            Self::Date => "Date",
            Self::MultiSelectOne => "MultiSelectOne",
            Self::MultiSelectMany => "MultiSelectMany",
            Self::Country => "Country",
            Self::USState => "USState",
        }
    }

    /// The API's spelling, exactly.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == text)
    }

    pub fn is_multi_select(self) -> bool {
        matches!(self, Self::MultiSelectOne | Self::MultiSelectMany)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NewCustomField {
    pub field_name: String,
    pub data_type: String,
    #[serde(default)]
    pub options: Vec<String>,
    #[serde(default = "default_true")]
    pub visible_in_preference_center: bool,
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CustomFieldValue {
    pub key: String,
    pub value: String,
}

/// A member's state, as `SubscriberDetails.State` names it; each has its own listing
/// (`lists/{id}/active.json`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum MemberState {
    Active,
    Unsubscribed,
    Deleted,
    Bounced,
    Unconfirmed,
}

impl MemberState {
    const ALL: [(Self, &'static str, &'static str); 5] = [
        (Self::Active, "active", "Active"),
        (Self::Unsubscribed, "unsubscribed", "Unsubscribed"),
        (Self::Deleted, "deleted", "Deleted"),
        (Self::Bounced, "bounced", "Bounced"),
        (Self::Unconfirmed, "unconfirmed", "Unconfirmed"),
    ];

    /// The listing's path segment: `active`.
    pub fn path(self) -> &'static str {
        Self::ALL[self as usize].1
    }

    pub fn from_path(path: &str) -> Option<Self> {
        Self::ALL.iter().find(|(_, p, _)| *p == path).map(|(s, _, _)| *s)
    }

    /// The `State` value: `Active`.
    pub fn as_str(self) -> &'static str {
        Self::ALL[self as usize].2
    }
}

/// One member as the list endpoints (`active`, `unsubscribed`, `deleted`) and the
/// subscriber details endpoint describe it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SubscriberDetails {
    pub email_address: String,
    pub name: String,
    pub date: String,
    pub list_joined_date: String,
    pub state: String,
    pub custom_fields: Vec<CustomFieldValue>,
    pub reads_email_with: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent_to_track: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mobile_number: Option<String>,
    #[serde(default, rename = "ConsentToSendSms", skip_serializing_if = "Option::is_none")]
    pub consent_to_send_sms: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SubscriberPage {
    pub results: Vec<SubscriberDetails>,
    pub results_ordered_by: String,
    pub order_direction: String,
    pub page_number: u64,
    pub page_size: u64,
    pub records_on_this_page: u64,
    pub total_number_of_records: u64,
    pub number_of_pages: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientSummary {
    #[serde(rename = "ClientID")]
    pub client_id: String,
    #[serde(rename = "Name")]
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListSummary {
    #[serde(rename = "ListID")]
    pub list_id: String,
    #[serde(rename = "Name")]
    pub name: String,
}

/// The counts of a bulk import: the body of a 201, or the `ResultData` of a 400 code 210.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImportResult {
    pub failure_details: Vec<ImportFailure>,
    pub total_unique_emails_submitted: u64,
    pub total_existing_subscribers: u64,
    pub total_new_subscribers: u64,
    pub duplicate_emails_in_submission: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImportFailure {
    pub email_address: String,
    pub code: i64,
    pub message: String,
}

/// The partial-failure answer of an import: HTTP 400, code 210, counts under `ResultData`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImportPartialFailure {
    pub result_data: ImportResult,
    pub code: i64,
    pub message: String,
}

/// `{"access_token", "expires_in", "refresh_token"}` from `POST /oauth/token`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OAuthTokens {
    pub access_token: String,
    pub expires_in: u64,
    pub refresh_token: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OAuthError {
    pub error: String,
    pub error_description: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::de::DeserializeOwned;
    use std::path::PathBuf;

    fn fixture<T: DeserializeOwned>(name: &str) -> T {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    #[test]
    fn parses_every_fixture_the_project_uses() {
        let date: SystemDate = fixture("systemdate.json");
        assert_eq!(date.system_date, "2010-10-15 09:27:00");

        let list: ListDetails = fixture("list_details.json");
        assert_eq!(list.list_id, "2fe4c8f0373ce320e2200596d7ef168f");
        assert_eq!(list.unsubscribe_setting, "AllClientLists");

        let stats: ListStats = fixture("list_stats.json");
        assert_eq!((stats.total_active_subscribers, stats.total_unsubscribes), (6, 2));

        let fields: Vec<CustomField> = fixture("custom_fields.json");
        assert_eq!(fields[2].key, "[subscriptiondate]");
        assert_eq!(fields[2].data_type, "Date");

        let created: String = fixture("create_custom_field.json");
        assert_eq!(created, "[newdatefield]");

        for (file, state) in [
            ("active_subscribers.json", "Active"),
            ("active_subscribers_with_tracking_preference.json", "Active"),
            ("unsubscribed_subscribers.json", "Unsubscribed"),
            ("deleted_subscribers.json", "Deleted"),
        ] {
            let page: SubscriberPage = fixture(file);
            assert_eq!(page.records_on_this_page as usize, page.results.len(), "{file}");
            assert!(page.results.iter().all(|s| s.state == state), "{file}");
        }
        let page: SubscriberPage = fixture("active_subscribers.json");
        assert_eq!(page.results[0].custom_fields[1].key, "multi select field");

        let one: SubscriberDetails = fixture("subscriber_details_with_tracking_preference.json");
        assert_eq!(one.consent_to_track.as_deref(), Some("Yes"));
        let one: SubscriberDetails = fixture("subscriber_details.json");
        assert_eq!(one.consent_to_track, None);

        let imported: ImportResult = fixture("import_subscribers.json");
        assert_eq!(imported.total_new_subscribers, 3);
        let partial: ImportPartialFailure = fixture("import_subscribers_partial_success.json");
        assert_eq!(partial.code, 210);
        assert_eq!(partial.result_data.failure_details[0].code, 1);
        assert_eq!(partial.result_data.total_existing_subscribers, 2);

        let clients: Vec<ClientSummary> = fixture("clients.json");
        assert_eq!(clients[1].client_id, "a206def0582eec7dae47d937a4109cb2");
        let lists: Vec<ListSummary> = fixture("lists.json");
        assert_eq!(lists[0].name, "List One");

        for file in [
            "custom_api_error.json",
            "expired_oauth_token_api_error.json",
            "sample_client_error.json",
            "sample_server_error.json",
        ] {
            let _: ApiErrorBody = fixture(file);
        }
        let tokens: OAuthTokens = fixture("refresh_oauth_token.json");
        assert_eq!(tokens.expires_in, 1_209_600);
        let _: OAuthTokens = fixture("oauth_exchange_token.json");
        let err: OAuthError = fixture("oauth_exchange_token_error.json");
        assert_eq!(err.error, "invalid_grant");
    }
}
