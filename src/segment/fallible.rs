//! Which of the export query's values can fail to compute. The cap's count must compute those
//! (a bad value then stops the run before anything is sent) and may leave the rest unread: a
//! column read as it is from the snapshot (or turned into text) cannot fail, and reading the
//! address column alone was most of what the count cost.

use datafusion::arrow::datatypes::DataType;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{Expr, ExprSchemable, LogicalPlan};
use datafusion::prelude::DataFrame;

use crate::members::is_string_type;

/// The names of the output columns of `export` whose values are computed by something that
/// can fail: everything but columns passed through from the scan, and casts of those to text.
/// A plan shape it does not know counts as computed.
pub fn fallible_columns(export: &DataFrame) -> Result<Vec<String>, DataFusionError> {
    let plan = export.clone().into_optimized_plan()?;
    let safe = passed_through(&plan);
    Ok(plan
        .schema()
        .fields()
        .iter()
        .enumerate()
        .filter(|(i, _)| !safe.as_ref().is_some_and(|safe| safe[*i]))
        .map(|(_, field)| field.name().clone())
        .collect())
}

/// Per output column of `plan`, whether it is read from the scan without anything that can
/// fail; `None` when the plan has a node this does not follow.
fn passed_through(plan: &LogicalPlan) -> Option<Vec<bool>> {
    match plan {
        LogicalPlan::TableScan(scan) => Some(vec![true; scan.projected_schema.fields().len()]),
        // Rows dropped or reordered, columns as they were; a failing predicate fails any count.
        LogicalPlan::Filter(filter) => passed_through(&filter.input),
        LogicalPlan::SubqueryAlias(alias) => passed_through(&alias.input),
        LogicalPlan::Sort(sort) => passed_through(&sort.input),
        LogicalPlan::Limit(limit) => passed_through(&limit.input),
        LogicalPlan::Union(union) => {
            union
                .inputs
                .iter()
                .try_fold(vec![true; union.schema.fields().len()], |all, input| {
                    let each = passed_through(input)?;
                    Some(all.iter().zip(each).map(|(a, b)| *a && b).collect())
                })
        }
        LogicalPlan::Projection(projection) => {
            let input = passed_through(&projection.input)?;
            Some(
                projection
                    .expr
                    .iter()
                    .map(|expr| infallible(expr, &projection.input, &input))
                    .collect(),
            )
        }
        _ => None,
    }
}

/// A column of the input that is itself passed through, maybe renamed, maybe cast to text
/// from a type whose text form always exists (anything but bytes, which may not be UTF-8).
fn infallible(expr: &Expr, input: &LogicalPlan, safe: &[bool]) -> bool {
    match expr {
        Expr::Alias(alias) => infallible(&alias.expr, input, safe),
        Expr::Column(column) => input
            .schema()
            .index_of_column(column)
            .is_ok_and(|i| safe.get(i).copied().unwrap_or(false)),
        Expr::Cast(cast) if is_string_type(cast.field.data_type()) => {
            let from = cast.expr.get_type(input.schema().as_ref());
            from.is_ok_and(|t| !matches!(t, DataType::Binary | DataType::LargeBinary | DataType::BinaryView))
                && infallible(&cast.expr, input, safe)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
    use datafusion::prelude::{SessionContext, cast, ident};
    use std::sync::Arc;

    async fn ctx() -> SessionContext {
        let ctx = SessionContext::new();
        let batch = RecordBatch::try_from_iter([
            ("email", Arc::new(StringArray::from(vec!["a@x.com"])) as ArrayRef),
            ("n", Arc::new(Int64Array::from(vec![1])) as ArrayRef),
        ])
        .unwrap();
        ctx.register_batch("profiles", batch).unwrap();
        ctx
    }

    async fn fallible(sql: &str) -> Vec<String> {
        let ctx = ctx().await;
        let segment = ctx.sql(sql).await.unwrap();
        let export = segment
            .select(vec![
                ident("email").alias("email"),
                cast(ident("n"), DataType::Utf8View).alias("field_0"),
            ])
            .unwrap();
        fallible_columns(&export).unwrap()
    }

    #[tokio::test]
    async fn columns_read_as_they_are_cannot_fail_and_computed_ones_can() {
        assert!(fallible("SELECT * FROM profiles WHERE n > 0").await.is_empty());
        assert!(
            fallible("SELECT email, n FROM profiles UNION ALL SELECT email, n FROM profiles")
                .await
                .is_empty()
        );
        assert_eq!(
            fallible("SELECT email, CAST(email AS BIGINT) AS n FROM profiles").await,
            vec!["field_0"]
        );
        assert_eq!(
            fallible("SELECT lower(email) AS email, n FROM profiles").await,
            vec!["email"]
        );
    }
}
