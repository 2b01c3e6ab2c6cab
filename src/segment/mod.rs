//! Segments: read-only SQL over the source table, each registered as a view (so a later
//! segment can build on an earlier one), and the export query that projects the mapping
//! out of the union of the chosen segments.

mod balance;
mod fallible;

pub use fallible::fallible_columns;

use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::common::TableReference;
use datafusion::error::DataFusionError;
use datafusion::prelude::{DataFrame, Expr, SQLOptions, SessionConfig, SessionContext, cast, ident, lit, to_char};

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::execution::cache::cache_manager::CacheManagerConfig;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::LogicalPlan;

use crate::campaign_monitor::FieldType;
use crate::config::{Consent, Engine, Pipeline};
use crate::engine;
use crate::members::{FieldLayout, FieldValues, ITEM_SEPARATOR, Layout, is_string_type};
use crate::source::{self, Snapshot, SourceError};

#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("segment `{segment}` is not a valid read-only query")]
    Sql {
        segment: String,
        #[source]
        source: DataFusionError,
    },
    #[error("segment `{segment}` does not return the column `{column}` that `{key}` maps; it returns: {available}")]
    MissingColumn {
        segment: String,
        column: String,
        key: String,
        available: String,
    },
    #[error(
        "segment `{segment}`: the email column `{column}` is {data_type}, not a string; map `mapping.email` to a text column or CAST it in the segment"
    )]
    EmailNotString {
        segment: String,
        column: String,
        data_type: DataType,
    },
    #[error(
        "segment `{segment}` nests an expression {depth} levels deep, past the {max} the engine plans safely; split it over several segments or simplify it (long lists of `OR` and `AND` terms are fine)"
    )]
    TooDeep { segment: String, depth: usize, max: usize },
    #[cfg(feature = "ballista")]
    #[error(transparent)]
    Ballista(#[from] crate::ballista::BallistaError),
    #[error("cannot build the export query over segments {segments}")]
    Plan {
        segments: String,
        #[source]
        source: DataFusionError,
    },
}

/// A session with the source and every segment registered, and the export query.
pub struct Prepared {
    /// Where the segment queries run: this process, or a Ballista cluster.
    pub ctx: SessionContext,
    /// Where what only this machine holds (the synced state) is read and joined.
    pub local: SessionContext,
    pub snapshot: Snapshot,
    /// The union of the chosen segments, projected to the mapped values.
    pub export: DataFrame,
    pub layout: Layout,
}

/// Plans one read-only query, its long `AND`/`OR` chains balanced first (see `balance`).
async fn plan_sql(ctx: &SessionContext, sql: &str) -> Result<DataFrame, DataFusionError> {
    let state = ctx.state();
    let dialect = state.config().options().sql_parser.dialect;
    let mut statement = state.sql_to_statement(sql, &dialect)?;
    balance::balance(&mut statement);
    let plan = state.statement_to_plan(statement).await?;
    read_only().verify_plan(&plan)?;
    ctx.execute_logical_plan(plan).await
}

/// Only queries: no DDL, no DML, no `SET` or other statements.
fn read_only() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

/// The session every command uses: Parquet filters pushed into the scan; files in
/// subfolders listed (`source` decides which may be read); and a listing cache large
/// enough that every scan of a run reads the files its first listing found.
pub fn session() -> SessionContext {
    let config = config();
    let caches = CacheManagerConfig::default().with_list_files_cache_limit(LISTING_CACHE_BYTES);
    match RuntimeEnvBuilder::new().with_cache_manager(caches).build_arc() {
        Ok(runtime) => SessionContext::new_with_config_rt(config, runtime),
        // Building a runtime with default pools and stores does not fail in practice; if it
        // did, a session without the larger cache still reads what it lists, only re-lists.
        Err(_) => SessionContext::new_with_config(config),
    }
}

fn config() -> SessionConfig {
    let mut config = SessionConfig::new().with_information_schema(false);
    let options = config.options_mut();
    options.execution.parquet.pushdown_filters = true;
    options.execution.parquet.reorder_filters = true;
    options.execution.listing_table_ignore_subdirectory = false;
    config
}

/// Room for the listing of a snapshot of about a million files.
const LISTING_CACHE_BYTES: usize = 256 * 1024 * 1024;

/// The depth of the deepest expression in `plan`, walked without recursion.
fn depth(plan: &LogicalPlan) -> usize {
    let mut deepest = 0;
    let mut plans = vec![plan];
    while let Some(plan) = plans.pop() {
        let _ = plan.apply_expressions(|top| {
            let mut exprs: Vec<(&Expr, usize)> = vec![(top, 1)];
            while let Some((expr, level)) = exprs.pop() {
                deepest = deepest.max(level);
                expr.apply_children(|child| {
                    exprs.push((child, level + 1));
                    Ok(TreeNodeRecursion::Continue)
                })?;
            }
            Ok(TreeNodeRecursion::Continue)
        });
        plans.extend(plan.inputs());
    }
    deepest
}

pub async fn prepare(pipeline: &Pipeline) -> Result<Prepared, SegmentError> {
    let local = session();
    let ctx = match &pipeline.engine {
        Engine::InProcess => local.clone(),
        #[cfg(feature = "ballista")]
        Engine::Ballista(scheduler) => crate::ballista::session(scheduler, &pipeline.source.storage, config()).await?,
    };
    let snapshot = source::register(&ctx, &pipeline.source).await?;
    for segment in &pipeline.segments {
        let sql_err = |source| SegmentError::Sql {
            segment: segment.name.clone(),
            source,
        };
        let frame = plan_sql(&ctx, &segment.sql).await.map_err(sql_err)?;
        let depth = depth(frame.logical_plan());
        if depth > engine::MAX_DEPTH {
            return Err(SegmentError::TooDeep {
                segment: segment.name.clone(),
                depth,
                max: engine::MAX_DEPTH,
            });
        }
        ctx.register_table(TableReference::bare(segment.name.as_str()), frame.into_view())
            .map_err(sql_err)?;
    }
    let (export, layout) = export_query(&ctx, pipeline).await?;
    Ok(Prepared {
        ctx,
        local,
        snapshot,
        export,
        layout,
    })
}

impl Prepared {
    /// The export query as a query of [`Prepared::local`]: itself in process; on a
    /// cluster, its rows streamed back.
    pub fn export_here(&self) -> Result<DataFrame, DataFusionError> {
        #[cfg(feature = "ballista")]
        if self.ctx.session_id() != self.local.session_id() {
            return crate::ballista::here(&self.local, self.export.clone());
        }
        Ok(self.export.clone())
    }
}

/// A segment's rows, as registered.
pub async fn segment_frame(ctx: &SessionContext, name: &str) -> Result<DataFrame, SegmentError> {
    ctx.table(TableReference::bare(name))
        .await
        .map_err(|source| SegmentError::Sql {
            segment: name.to_owned(),
            source,
        })
}

fn find<'a>(schema: &'a Schema, segment: &str, column: &str, key: &str) -> Result<&'a DataType, SegmentError> {
    schema
        .field_with_name(column)
        .map(|f| f.data_type())
        .map_err(|_| SegmentError::MissingColumn {
            segment: segment.to_owned(),
            column: column.to_owned(),
            key: key.to_owned(),
            available: schema
                .fields()
                .iter()
                .map(|f| format!("`{}`", f.name()))
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// The column a consent is read from, if it is read from one.
fn consent_column(consent: Option<&Consent>) -> Option<&String> {
    match consent {
        Some(Consent::Column(column)) => Some(column),
        _ => None,
    }
}

fn is_list(data_type: &DataType) -> bool {
    matches!(data_type, DataType::List(_) | DataType::LargeList(_))
}

/// Whether `column` fills a MultiSelectMany field (and only such fields).
fn many_from(mapping: &crate::config::Mapping, column: &str) -> bool {
    let fields: Vec<_> = mapping.custom_fields.iter().filter(|f| f.column == column).collect();
    !fields.is_empty() && fields.iter().all(|f| f.field_type == Some(FieldType::MultiSelectMany))
}

/// Options named by the mapping, `None` when it names none.
fn known(options: &[String]) -> Option<Vec<String>> {
    (!options.is_empty()).then(|| options.to_vec())
}

/// A mapped value as text: strings as they are, dates as `yyyy/mm/dd`, the rest as its
/// plain decimal or text form.
fn as_text(column: &str, data_type: &DataType) -> Expr {
    let value = ident(column);
    match data_type {
        t if is_string_type(t) => value,
        DataType::Date32 | DataType::Date64 | DataType::Timestamp(_, _) => to_char(value, lit("%Y/%m/%d")),
        _ => cast(value, DataType::Utf8),
    }
}

async fn export_query(ctx: &SessionContext, pipeline: &Pipeline) -> Result<(DataFrame, Layout), SegmentError> {
    let mapping = &pipeline.mapping;
    let chosen = &pipeline.destination.segments;
    let mut union: Option<DataFrame> = None;
    let mut layout = None;
    for name in chosen {
        let frame = segment_frame(ctx, name).await?;
        let schema = frame.schema().as_arrow().clone();
        let email_type = find(&schema, name, &mapping.email, "mapping.email")?;
        if !is_string_type(email_type) {
            return Err(SegmentError::EmailNotString {
                segment: name.clone(),
                column: mapping.email.clone(),
                data_type: email_type.clone(),
            });
        }
        // Several segments must agree on types to be unioned; one keeps its own.
        let email = if chosen.len() > 1 {
            cast(ident(&mapping.email), DataType::Utf8View)
        } else {
            ident(&mapping.email)
        };
        let mut exprs = vec![email.alias("email")];
        let mut sources = vec![mapping.email.clone()];
        // Each mapped column, as text under its own alias (a list column of a MultiSelectMany
        // field as it is: the extractor joins its items); its index in the projection.
        let mut project = |column: Option<&String>, key: &str, alias: String| -> Result<Option<usize>, SegmentError> {
            let Some(column) = column else {
                return Ok(None);
            };
            let t = find(&schema, name, column, key)?;
            let value = match is_list(t) && many_from(mapping, column) {
                true => ident(column),
                false => cast(as_text(column, t), DataType::Utf8View),
            };
            exprs.push(value.alias(alias));
            sources.push(column.clone());
            Ok(Some(sources.len() - 1))
        };
        let name_index = project(mapping.name.as_ref(), "mapping.name", "name".into())?;
        let consent_index = project(
            consent_column(Some(&mapping.consent)),
            "mapping.consent-to-track",
            "consent".into(),
        )?;
        let mut fields = Vec::new();
        for (i, field) in mapping.custom_fields.iter().enumerate() {
            let (key, column) = (&field.key, &field.column);
            let Some(index) = project(
                Some(column),
                &format!("mapping.custom-fields.{key}"),
                format!("field_{i}"),
            )?
            else {
                continue;
            };
            fields.push(FieldLayout {
                values: match field.field_type {
                    None | Some(FieldType::Text) => FieldValues::Text,
                    // The names are the API's: a run asks it for them.
                    Some(FieldType::Country) => FieldValues::Country(None),
                    Some(FieldType::USState) => FieldValues::UsState,
                    Some(FieldType::Number) => FieldValues::Number,
                    Some(FieldType::Date) => FieldValues::Date,
                    // Until the list's own are known (a run asks it), the mapping's options.
                    Some(FieldType::MultiSelectOne) => FieldValues::OneOf(known(&field.options)),
                    Some(FieldType::MultiSelectMany) => FieldValues::ManyOf {
                        options: known(&field.options),
                        // The column was found by `project`: a list is joined on the separator.
                        delimiter: match schema.field_with_name(column).is_ok_and(|f| is_list(f.data_type())) {
                            true => Some(ITEM_SEPARATOR.to_owned()),
                            false => field.delimiter.clone(),
                        },
                    },
                },
                stated: field.field_type.map(FieldType::as_str),
                ..FieldLayout::plain(key, column, index)
            });
        }
        let key_index = project(mapping.key.as_ref(), "mapping.key", "row_key".into())?;
        let mobile_index = project(mapping.mobile_number.as_ref(), "mapping.mobile-number", "mobile".into())?;
        let sms_index = project(
            consent_column(mapping.sms_consent.as_ref()),
            "mapping.consent-to-send-sms",
            "sms_consent".into(),
        )?;
        let plan_err = |source| SegmentError::Plan {
            segments: chosen.join(", "),
            source,
        };
        let projected = frame.select(exprs).map_err(plan_err)?;
        union = Some(match union {
            None => projected,
            Some(previous) => previous.union(projected).map_err(plan_err)?,
        });
        layout.get_or_insert(Layout {
            email: 0,
            name: name_index,
            consent: consent_index,
            consent_default: match mapping.consent {
                Consent::Constant(c) => c,
                Consent::Column(_) => crate::campaign_monitor::ConsentToTrack::Unchanged,
            },
            fields,
            key: key_index,
            mobile: mobile_index,
            sms_consent: sms_index,
            sms_consent_default: match mapping.sms_consent {
                None => None,
                Some(Consent::Constant(c)) => Some(c),
                Some(Consent::Column(_)) => Some(crate::campaign_monitor::ConsentToTrack::Unchanged),
            },
            clear_nulls: mapping.nulls == crate::config::Nulls::Clear,
            sources: sources.clone(),
            synced: None,
        });
    }
    match (union, layout) {
        (Some(union), Some(layout)) => Ok((union, layout)),
        // `Pipeline::parse` guarantees at least one chosen segment.
        _ => Err(SegmentError::Plan {
            segments: String::new(),
            source: DataFusionError::Plan("no segment chosen".into()),
        }),
    }
}
