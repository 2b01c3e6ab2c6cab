//! The members stage: normalise and validate addresses, check field values, dedupe.
//! Pure and hot; unit-tested beside the code.

mod dedupe;
mod email;
mod extract;
mod reject;

pub use dedupe::Dedupe;
pub use email::{EmailProblem, mask, normalise};
pub use extract::{Extractor, Layout, MAX_FIELD_CHARS, RowCounts, is_string_type};
pub use reject::{Reject, RejectReason};
