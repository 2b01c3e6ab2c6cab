//! The members stage: normalise and validate addresses, check mobile numbers and typed field
//! values, dedupe.
//! Pure and hot; unit-tested beside the code.

mod dedupe;
mod email;
mod extract;
mod mobile;
mod reject;
mod typed;
mod values;

pub use dedupe::Dedupe;
pub use email::{EmailProblem, WHITESPACE, mask, normalise};
pub use extract::{Change, Extractor, FieldLayout, ITEM_SEPARATOR, Layout, MAX_FIELD_CHARS, RowCounts, is_string_type};
pub use mobile::normalise_mobile;
pub use reject::{Reject, RejectReason};
pub use typed::FieldValues;
pub use values::fingerprint;
