//! Why a row was not exported.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    MissingEmail,
    InvalidEmail,
    InvalidField,
    /// Campaign Monitor refused the row (a `FailureDetails` entry).
    Api,
    /// The run stopped before the row's batch was accepted.
    NotSent,
    /// Mirror could not take the member off the list (the API's code and message).
    RemovalFailed,
}

impl RejectReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MissingEmail => "missing_email",
            Self::InvalidEmail => "invalid_email",
            Self::InvalidField => "invalid_field",
            Self::Api => "api",
            Self::NotSent => "not_sent",
            Self::RemovalFailed => "removal_failed",
        }
    }
}

/// One row that was not exported, as the rejects file records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    /// The address as found in the data (untrimmed), if any.
    pub email: Option<String>,
    pub reason: RejectReason,
    /// The column at fault, for `invalid_field`.
    pub column: Option<String>,
    /// The API's code and message, for `api` and `not_sent`.
    pub code: Option<i64>,
    pub message: Option<String>,
    /// The row's `[mapping] key` value, to find it again.
    pub key: Option<String>,
}

impl Reject {
    pub fn new(email: Option<&str>, reason: RejectReason) -> Self {
        Self {
            email: email.map(str::to_owned),
            reason,
            column: None,
            code: None,
            message: None,
            key: None,
        }
    }

    /// The same reject, with the row's `[mapping] key` value.
    pub fn keyed(self, key: Option<&str>) -> Self {
        Self {
            key: key.map(str::to_owned),
            ..self
        }
    }
}
