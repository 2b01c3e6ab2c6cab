//! Pipeline and connection definitions: wire structs parsed strictly (unknown keys are
//! errors), then checked into the types the rest of the crate uses, before any other I/O.

mod connection;
mod engine;
mod error;
mod pipeline;
mod schedule;
mod storage;
mod webhook_url;

pub use connection::{
    CONNECTIONS_ENV, Connection, Connections, CredentialSource, DEFAULT_REDIRECT_URI, DEFAULT_SCOPE, Missing, OAuthApp,
    UsableBy, env_secret,
};
pub use engine::Engine;
#[cfg(feature = "ballista")]
pub use engine::Scheduler;
pub use error::ConfigError;
pub use pipeline::{
    Consent, Destination, FieldMapping, Mapping, MaxRemovals, Mode, Nulls, Options, Pipeline, Removal, Segment, Source,
};
pub use schedule::Schedule;
pub use storage::{Cloud, Storage};
pub use webhook_url::WebhookUrl;
