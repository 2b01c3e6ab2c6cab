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
        "list `{list_id}` has no custom field with key `{key}` (it has: {available}); create it in Campaign Monitor, fix `mapping.custom-fields`, or set `options.create-missing-fields = true`"
    )]
    UnknownCustomField {
        list_id: String,
        key: String,
        available: String,
    },
    #[error(
        "list `{list_id}` has custom field `{field}` as {on_list}, but `mapping.custom-fields.{key}` maps it as {mapped}; nothing was sent. Change the mapping's `type`, or the field in Campaign Monitor (a field's type cannot change: delete it and create it again)"
    )]
    FieldTypeClash {
        list_id: String,
        key: String,
        field: String,
        on_list: String,
        mapped: &'static str,
    },
    #[error(
        "list `{list_id}`'s custom field `{field}` lacks the option(s) {missing} that `mapping.custom-fields.{key}` names; nothing was sent. Add them in Campaign Monitor, or set `options.create-missing-fields = true`"
    )]
    MissingFieldOptions {
        list_id: String,
        key: String,
        field: String,
        missing: String,
    },
    #[error("cannot prepare custom field `{field}` on list `{list_id}`")]
    FieldNotPrepared {
        list_id: String,
        field: String,
        #[source]
        source: ApiError,
    },
    #[error(
        "cannot read the country names Campaign Monitor knows, which the Country fields' values are checked against"
    )]
    Countries {
        #[source]
        source: ApiError,
    },
    #[error(
        "the export would send {members} distinct members, over `options.max-profiles` = {max}; nothing was sent. Narrow the segment or raise the cap"
    )]
    OverCap { members: u64, max: u64 },
    /// The data could not be read. `detail` has the values it quoted masked.
    #[error("cannot read the snapshot while exporting: {detail}")]
    Scan { detail: String },
    /// [`ExportError::Scan`] on a cluster.
    #[error("a query failed on the Ballista cluster at {cluster}: {detail}")]
    ClusterQuery { cluster: String, detail: String },
    #[error("Campaign Monitor refused an import into list `{list_id}`; the run stopped")]
    Import {
        list_id: String,
        #[source]
        source: ApiFailure,
    },
    #[error("Campaign Monitor refused a removal from list `{list_id}`; the run stopped")]
    Removal {
        list_id: String,
        #[source]
        source: ApiFailure,
    },
    /// The guard on mirror's removals said no; the text says how many, why and what to do.
    #[error("{0}")]
    RemovalsRefused(String),
    #[error(transparent)]
    Sync(#[from] crate::sync::SyncError),
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

impl ExportError {
    /// A failure to read or evaluate the data on a cluster says where it happened.
    pub fn on(self, engine: &crate::config::Engine) -> Self {
        match (self, engine.cluster()) {
            (Self::Scan { detail }, Some(cluster)) => Self::ClusterQuery { cluster, detail },
            (error, _) => error,
        }
    }

    /// A failure to read or evaluate the data: its text quotes values from the data, which
    /// are masked here, before the error can reach a report, a log or an alert.
    pub fn scan(error: datafusion::error::DataFusionError) -> Self {
        Self::Scan {
            detail: crate::error_text::redact(&crate::error_text::chain(&error)),
        }
    }
}
