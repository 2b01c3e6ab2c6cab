//! The joins of the export query against the synced state: which rows' members the state
//! has (and with which values), which members of the state no row has any more, and the
//! state after a run.

use std::collections::HashSet;
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, RecordBatch, StringArray, UInt64Array};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::JoinType;
use datafusion::error::DataFusionError;
use datafusion::prelude::{DataFrame, Expr, ParquetReadOptions, SessionContext, btrim, cast, col, lit, lower};
use futures::StreamExt;

use super::state::{FINGERPRINT, KEY, SyncError, Synced, schema};
use crate::members::WHITESPACE;

/// The address as the state keys it: trimmed as [`crate::members::normalise`] trims,
/// lowercased. Stock functions only, so any engine running DataFusion SQL computes it.
pub fn email_key(email: Expr) -> Expr {
    lower(btrim(vec![cast(email, DataType::Utf8View), lit(WHITESPACE)]))
}

/// The columns the joins add; named so no export column can clash with them.
const ROW_KEY: &str = "cm_export_row_key";
const SYNCED_KEY: &str = "cm_export_synced_key";
const SYNCED_FINGERPRINT: &str = "cm_export_synced_fingerprint";

/// One export's synced state, read in a session.
pub struct Diff {
    state: DataFrame,
    synced: Synced,
}

impl Diff {
    pub async fn open(ctx: &SessionContext, synced: &Synced) -> Result<Self, SyncError> {
        let path = synced.path.to_string_lossy().into_owned();
        let state = ctx
            .read_parquet(path, ParquetReadOptions::default())
            .await
            .and_then(|state| {
                state.select(vec![
                    cast(col(KEY), DataType::Utf8View).alias(KEY),
                    cast(col(FINGERPRINT), DataType::UInt64).alias(FINGERPRINT),
                ])
            })
            .map_err(|source| query_error(synced, source))?;
        Ok(Self {
            state,
            synced: synced.clone(),
        })
    }

    /// The export query with one more, last column: the fingerprint the state holds for
    /// the row's address (null when the export never had it accepted).
    pub fn annotate(&self, export: DataFrame) -> Result<DataFrame, SyncError> {
        let columns: Vec<Expr> = export.schema().columns().into_iter().map(Expr::Column).collect();
        let state = self.state.clone().select(vec![
            col(KEY).alias(SYNCED_KEY),
            col(FINGERPRINT).alias(SYNCED_FINGERPRINT),
        ]);
        let joined = export
            .with_column(ROW_KEY, email_key(col("email")))
            .and_then(|rows| rows.join(state?, JoinType::Left, &[ROW_KEY], &[SYNCED_KEY], None))
            .and_then(|joined| joined.select(columns.into_iter().chain([col(SYNCED_FINGERPRINT)]).collect::<Vec<_>>()));
        joined.map_err(|source| query_error(&self.synced, source))
    }

    /// Members of the state whose address no row of the export query has: the first
    /// `keep` of them (minus those in `done`), and how many there are in all.
    pub async fn leaving(
        &self,
        export: DataFrame,
        keep: u64,
        done: &HashSet<String>,
    ) -> Result<(Vec<String>, u64), SyncError> {
        let error = |source| query_error(&self.synced, source);
        let rows = export
            .select(vec![email_key(col("email")).alias(ROW_KEY)])
            .map_err(error)?;
        let left = self
            .state
            .clone()
            .join(rows, JoinType::LeftAnti, &[KEY], &[ROW_KEY], None)
            .and_then(|left| left.select(vec![col(KEY)]))
            .map_err(error)?;
        let mut stream = left.execute_stream().await.map_err(error)?;
        let (mut kept, mut total) = (Vec::new(), 0);
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(error)?;
            let keys = batch.column(0).as_string_view();
            for key in keys.iter().flatten() {
                if done.contains(key) {
                    continue;
                }
                total += 1;
                if (kept.len() as u64) < keep {
                    kept.push(key.to_owned());
                }
            }
        }
        Ok((kept, total))
    }

    /// The state after a run: every member the run had accepted, with its new fingerprint,
    /// and every member of the old state the run neither sent nor dropped.
    pub fn merged(
        old: Option<&Diff>,
        ctx: &SessionContext,
        accepted: Vec<(String, u64)>,
        dropped: Vec<String>,
    ) -> Result<DataFrame, DataFusionError> {
        let (keys, fingerprints): (Vec<String>, Vec<u64>) = accepted.into_iter().unzip();
        let accepted = RecordBatch::try_new(
            Arc::new(schema()),
            vec![
                Arc::new(StringArray::from(keys)),
                Arc::new(UInt64Array::from(fingerprints)),
            ],
        )?;
        let accepted = ctx
            .read_batch(accepted)?
            .select(vec![cast(col(KEY), DataType::Utf8View).alias(KEY), col(FINGERPRINT)])?;
        let Some(old) = old else {
            return Ok(accepted);
        };
        let dropped =
            RecordBatch::try_from_iter([(SYNCED_KEY, Arc::new(StringArray::from(dropped)) as Arc<dyn Array>)])?;
        let dropped = ctx
            .read_batch(dropped)?
            .select(vec![cast(col(SYNCED_KEY), DataType::Utf8View).alias(SYNCED_KEY)])?;
        let sent = accepted.clone().select(vec![col(KEY).alias(ROW_KEY)])?;
        let kept = old
            .state
            .clone()
            .join(sent, JoinType::LeftAnti, &[KEY], &[ROW_KEY], None)?
            .join(dropped, JoinType::LeftAnti, &[KEY], &[SYNCED_KEY], None)?;
        accepted.union(kept)
    }
}

fn query_error(synced: &Synced, source: DataFusionError) -> SyncError {
    SyncError::Query {
        path: synced.path.clone(),
        source,
    }
}
