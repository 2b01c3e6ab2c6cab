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
    /// the row's address (null when the export never had it accepted). The state is the
    /// join's build side and the export query streams through it, so rows reach the batcher
    /// as the scan reads them.
    pub fn annotate(&self, export: DataFrame) -> Result<DataFrame, SyncError> {
        let columns: Vec<Expr> = export.schema().columns().into_iter().map(Expr::Column).collect();
        let state = self.state.clone().select(vec![
            col(KEY).alias(SYNCED_KEY),
            col(FINGERPRINT).alias(SYNCED_FINGERPRINT),
        ]);
        let joined = export
            .with_column(ROW_KEY, email_key(col("email")))
            .and_then(|rows| state?.join(rows, JoinType::Right, &[SYNCED_KEY], &[ROW_KEY], None))
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

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::UInt64Array;
    use datafusion::physical_plan::displayable;

    async fn state(dir: &Path, ctx: &SessionContext, rows: &[(&str, u64)]) -> Synced {
        let path = dir.join("synced/x.parquet");
        let accepted = rows.iter().map(|(k, f)| ((*k).to_owned(), *f)).collect();
        let frame = Diff::merged(None, ctx, accepted, vec![]).unwrap();
        assert_eq!(Synced::write(&path, frame, "L", "M").await.unwrap(), rows.len() as u64);
        Synced::open(&path).unwrap().unwrap()
    }

    fn export(ctx: &SessionContext, emails: &[Option<&str>]) -> DataFrame {
        let emails = StringArray::from(emails.to_vec());
        ctx.read_batch(RecordBatch::try_from_iter([("email", Arc::new(emails) as Arc<dyn Array>)]).unwrap())
            .unwrap()
    }

    use std::path::Path;

    #[tokio::test]
    async fn the_diff_the_leavers_and_the_next_state() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = SessionContext::new();
        let synced = state(dir.path(), &ctx, &[("a@x.com", 1), ("b@x.com", 2), ("gone@x.com", 3)]).await;
        assert_eq!(
            (synced.list_id.as_str(), synced.mapping.as_str(), synced.members),
            ("L", "M", 3)
        );
        let diff = Diff::open(&ctx, &synced).await.unwrap();
        let rows = export(
            &ctx,
            &[Some(" A@X.com\u{3000}"), Some("b@x.com"), Some("new@x.com"), None],
        );

        let annotated = diff.annotate(rows.clone()).unwrap();
        let plan = annotated.clone().create_physical_plan().await.unwrap();
        let shown = displayable(plan.as_ref()).indent(false).to_string();
        assert!(
            shown.contains("join_type=Right"),
            "the state is the build side:\n{shown}"
        );
        let mut seen: Vec<(String, Option<u64>)> = Vec::new();
        for batch in annotated.collect().await.unwrap() {
            let emails = datafusion::arrow::compute::cast(batch.column(0), &DataType::Utf8).unwrap();
            let fingerprints = batch.column(1).as_any().downcast_ref::<UInt64Array>().unwrap();
            for i in 0..batch.num_rows() {
                let email = emails.as_string::<i32>();
                let email = if email.is_valid(i) {
                    email.value(i).to_owned()
                } else {
                    String::new()
                };
                seen.push((email, fingerprints.is_valid(i).then(|| fingerprints.value(i))));
            }
        }
        seen.sort();
        assert_eq!(
            seen,
            vec![
                (String::new(), None),
                (" A@X.com\u{3000}".to_owned(), Some(1)),
                ("b@x.com".to_owned(), Some(2)),
                ("new@x.com".to_owned(), None),
            ]
        );

        let none = HashSet::new();
        let (kept, total) = diff.leaving(rows.clone(), 10, &none).await.unwrap();
        assert_eq!((kept, total), (vec!["gone@x.com".to_owned()], 1));
        let (kept, total) = diff.leaving(export(&ctx, &[]), 2, &none).await.unwrap();
        assert_eq!((kept.len(), total), (2, 3), "keeps at most 2, counts all");
        let done = HashSet::from(["gone@x.com".to_owned()]);
        assert_eq!(diff.leaving(rows, 10, &done).await.unwrap().1, 0);

        // b changed, new arrived, gone was removed; a stays as it was.
        let next = Diff::merged(
            Some(&diff),
            &ctx,
            vec![("b@x.com".into(), 20), ("new@x.com".into(), 4)],
            vec!["gone@x.com".into()],
        )
        .unwrap();
        let path = dir.path().join("synced/next.parquet");
        assert_eq!(Synced::write(&path, next, "L", "M").await.unwrap(), 3);
        let written = ctx
            .read_parquet(path.to_str().unwrap(), ParquetReadOptions::default())
            .await
            .unwrap()
            .sort(vec![col(KEY).sort(true, false)])
            .unwrap()
            .collect()
            .await
            .unwrap();
        let batch = datafusion::arrow::compute::concat_batches(&written[0].schema(), &written).unwrap();
        let keys = datafusion::arrow::compute::cast(batch.column(0), &DataType::Utf8).unwrap();
        let keys: Vec<&str> = keys.as_string::<i32>().iter().flatten().collect();
        let fingerprints: Vec<u64> = batch
            .column(1)
            .as_any()
            .downcast_ref::<UInt64Array>()
            .unwrap()
            .values()
            .to_vec();
        assert_eq!(keys, vec!["a@x.com", "b@x.com", "new@x.com"]);
        assert_eq!(fingerprints, vec![1, 20, 4]);
    }
}
