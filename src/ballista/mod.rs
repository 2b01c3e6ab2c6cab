//! Ballista: the segment queries and the export query planned here and run on a cluster of
//! stock schedulers and executors, their rows streamed back.
//!
//! What the cluster reads it reads itself: local paths must name the same files on its
//! machines, and S3 is reached with the non-secret `[source.storage]` options sent in the
//! session (`s3.endpoint`, `s3.region`, `s3.allow_http`, which stock executors apply) and the
//! credentials of the cluster's own environment: secrets never travel in a session.
//! What only this machine holds (the synced state) is joined here, over the streamed rows.

use std::sync::Arc;
use std::time::Duration;

use ballista::prelude::SessionContextExt;
use ballista_core::object_store::S3Options;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::streaming::StreamingTable;
use datafusion::error::DataFusionError;
use datafusion::execution::TaskContext;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use datafusion::prelude::{DataFrame, SessionConfig, SessionContext};
use futures::{StreamExt, TryStreamExt};

use crate::config::{Scheduler, Storage};

/// How long the scheduler has to accept a connection.
const CONNECT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum BallistaError {
    #[error(
        "cannot reach the Ballista scheduler at {scheduler}: {why}; is it running, and does `engine.ballista` (or --engine) name it?"
    )]
    Unreachable { scheduler: String, why: String },
    #[error("cannot open a Ballista session on {scheduler}: {why}")]
    Session { scheduler: String, why: String },
}

/// A session whose queries run on `scheduler`'s cluster, with `config` (the in-process
/// session's) and the S3 options of `storage`.
pub async fn session(
    scheduler: &Scheduler,
    storage: &Storage,
    config: SessionConfig,
) -> Result<SessionContext, BallistaError> {
    // The client only connects when a query runs; an unreachable scheduler is said first.
    let host = scheduler.host.trim_start_matches('[').trim_end_matches(']');
    let address = (host, scheduler.port);
    let unreachable = |why: String| BallistaError::Unreachable {
        scheduler: scheduler.to_string(),
        why,
    };
    match tokio::time::timeout(CONNECT, tokio::net::TcpStream::connect(address)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(unreachable(e.to_string())),
        Err(_) => return Err(unreachable(format!("no answer in {} s", CONNECT.as_secs()))),
    }
    let session_error = |e: DataFusionError| BallistaError::Session {
        scheduler: scheduler.to_string(),
        why: e.to_string(),
    };
    let mut config = config.with_option_extension(S3Options::default());
    let options = config.options_mut();
    let s3 = [
        ("s3.endpoint", storage.endpoint.clone()),
        ("s3.region", storage.region.clone()),
        ("s3.allow_http", storage.allow_http.then(|| "true".to_owned())),
    ];
    for (key, value) in s3 {
        if let Some(value) = value {
            options.set(key, &value).map_err(session_error)?;
        }
    }
    let state = SessionStateBuilder::new()
        .with_config(config)
        .with_default_features()
        .build();
    SessionContext::remote_with_state(&scheduler.to_string(), state)
        .await
        .map_err(session_error)
}

/// `frame` (a query of a cluster session) as a query of `local`: its rows, streamed back
/// from the cluster when the local query runs.
pub fn here(local: &SessionContext, frame: DataFrame) -> Result<DataFrame, DataFusionError> {
    let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
    let rows = Arc::new(Streamed {
        schema: schema.clone(),
        frame,
    });
    local.read_table(Arc::new(StreamingTable::try_new(schema, vec![rows])?))
}

#[derive(Debug)]
struct Streamed {
    schema: SchemaRef,
    frame: DataFrame,
}

impl PartitionStream for Streamed {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _: Arc<TaskContext>) -> SendableRecordBatchStream {
        let frame = self.frame.clone();
        let batches = futures::stream::once(async move { frame.execute_stream().await })
            .try_flatten()
            .boxed();
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), batches))
    }
}
