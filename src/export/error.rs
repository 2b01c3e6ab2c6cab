use crate::campaign_monitor::{ApiError, ApiFailure};
use crate::segment::SegmentError;

/// Why a run stopped early. Every variant says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Segment(#[from] SegmentError),
    #[error("the credentials of connection `{connection}` were refused; check the API key or token it names")]
    Credentials {
        connection: String,
        #[source]
        source: ApiError,
    },
    #[error("list `{list_id}` cannot be used through connection `{connection}`; check `destination.list-id`")]
    List {
        list_id: String,
        connection: String,
        #[source]
        source: ApiError,
    },
    #[error(
        "list `{list_id}` has no custom field with key `{key}` (it has: {available}); create it in Campaign Monitor or fix `mapping.custom-fields`"
    )]
    UnknownCustomField {
        list_id: String,
        key: String,
        available: String,
    },
    #[error(
        "the export would send {members} distinct members, over `options.max-profiles` = {max}; nothing was sent. Narrow the segment or raise the cap"
    )]
    OverCap { members: u64, max: u64 },
    #[error("cannot read the snapshot while exporting")]
    Scan(#[source] datafusion::error::DataFusionError),
    #[error("Campaign Monitor refused an import into list `{list_id}`; the run stopped")]
    Import {
        list_id: String,
        #[source]
        source: ApiFailure,
    },
    #[error(transparent)]
    Rejects(#[from] super::rejects::RejectsError),
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    #[error(transparent)]
    Lock(#[from] crate::state::LockError),
    #[error("cannot start the HTTP client")]
    Client(#[source] ApiError),
    #[error("cannot write the report `{}`", path.display())]
    Report {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The error and its causes on one line: `a: b: c`.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
