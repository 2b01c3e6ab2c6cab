//! The Campaign Monitor API v3.3: wire types, credentials, the client and the pure
//! classifier of its answers. The emulator (`crate::emulator`) speaks the same types.

mod base_url;
mod classify;
mod client;
mod credentials;
mod import;
pub mod oauth;
mod token_file;
pub mod types;
mod us_states;

pub use base_url::{BaseUrl, BaseUrlError, DEFAULT_BASE_URL, Insecure, check_secure};
pub use classify::{ApiFailure, Class, RateLimit, Response, TransportError, TransportErrorKind, classify};
pub use client::{ApiError, Client, ClientOptions, MemberCall, retry_call};
pub use credentials::{Credentials, Secret};
pub use import::{
    BatchSizeError, ConsentToTrack, DATES_KEPT, ImportBatch, ImportField, ImportSubscriber, MAX_IMPORT_BATCH,
    MAX_REQUEST_BYTES, MAX_SUBSCRIBER_BYTES,
};
pub use token_file::{TokenFile, TokenFileError, Tokens};
pub use types::{FieldType, MemberState};
pub use us_states::{US_STATES, us_state};
