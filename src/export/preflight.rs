//! The checks before a single member leaves: local first (credentials found, SQL, schema),
//! then the API (credentials accepted, the list, its custom fields), then the cap, which
//! evaluates every mapped column so a bad value stops the run here and not after thousands
//! of members were sent.

use datafusion::functions_aggregate::expr_fn::{count, count_distinct};
use datafusion::prelude::{ident, lit, lower, trim};

use super::error::ExportError;
use crate::campaign_monitor::types::CustomField;
use crate::campaign_monitor::{Client, ClientOptions, Credentials, retry_call};
use crate::config::{Connection, Pipeline};
use crate::engine::{self, OnEngine};
use crate::retry::Backoff;
use crate::segment::{self, Prepared, fallible_columns};

/// A run that may send: the query (kept on the engine), the client, the rows to expect.
pub struct Ready {
    pub query: OnEngine<Prepared>,
    pub client: Client,
    pub rows_expected: u64,
}

pub async fn check(
    pipeline: &Pipeline,
    connection: &Connection,
    credentials: &Credentials,
    options: ClientOptions,
    backoff: &Backoff,
) -> Result<Ready, ExportError> {
    let query = OnEngine::new(prepare(pipeline).await?);
    let (client, keys) = connect(pipeline, connection, credentials, options, backoff).await?;
    let max_profiles = pipeline.options.max_profiles;
    let query = engine::run(async move {
        let mut query = query.into_inner();
        query.layout.set_keys(keys);
        let rows = check_cap(&query, max_profiles).await?;
        Ok::<_, ExportError>((OnEngine::new(query), rows))
    });
    let (query, rows_expected) = query.await?;
    Ok(Ready {
        query,
        client,
        rows_expected,
    })
}

/// Plans the segments and the export query on the engine.
pub async fn prepare(pipeline: &Pipeline) -> Result<Prepared, ExportError> {
    let pipeline = pipeline.clone();
    Ok(engine::run(async move { segment::prepare(&pipeline).await }).await?)
}

/// The client, with the credential check and list check done; and the list's key for each
/// mapped custom field, in the mapping's order.
pub async fn connect(
    pipeline: &Pipeline,
    connection: &Connection,
    credentials: &Credentials,
    options: ClientOptions,
    backoff: &Backoff,
) -> Result<(Client, Vec<String>), ExportError> {
    let client = Client::new(connection.base_url.clone(), credentials, options).map_err(ExportError::Client)?;
    retry_call(backoff, || client.system_date())
        .await
        .map_err(|source| ExportError::Credentials {
            connection: connection.name.clone(),
            source,
        })?;
    let list_id = &pipeline.destination.list_id;
    let list_error = |source| ExportError::List {
        list_id: list_id.clone(),
        connection: connection.name.clone(),
        source,
    };
    retry_call(backoff, || client.list_details(list_id))
        .await
        .map_err(list_error)?;
    if pipeline.mapping.custom_fields.is_empty() {
        return Ok((client, Vec::new()));
    }
    let fields = retry_call(backoff, || client.custom_fields(list_id))
        .await
        .map_err(list_error)?;
    let keys = pipeline
        .mapping
        .custom_fields
        .iter()
        .map(|(key, _)| resolve_key(list_id, key, &fields))
        .collect::<Result<_, _>>()?;
    Ok((client, keys))
}

/// How Campaign Monitor makes a key of a field name: no brackets, no spaces, any case.
fn comparable(text: &str) -> String {
    text.trim_start_matches('[')
        .trim_end_matches(']')
        .chars()
        .filter(|c| !c.is_whitespace())
        .flat_map(char::to_lowercase)
        .collect()
}

/// The list's own key (bare) for a mapped key, found by key or by field name.
fn resolve_key(list_id: &str, key: &str, fields: &[CustomField]) -> Result<String, ExportError> {
    let wanted = comparable(key);
    fields
        .iter()
        .find(|f| comparable(&f.key) == wanted || comparable(&f.field_name) == wanted)
        .map(|f| f.key.trim_start_matches('[').trim_end_matches(']').to_owned())
        .ok_or_else(|| ExportError::UnknownCustomField {
            list_id: list_id.to_owned(),
            key: key.to_owned(),
            available: match fields.is_empty() {
                true => "none".to_owned(),
                false => fields
                    .iter()
                    .map(|f| format!("`{}` ({})", f.field_name, f.key))
                    .collect::<Vec<_>>()
                    .join(", "),
            },
        })
}

/// Rows the export query yields, counted with every mapped value that can fail to compute
/// computed (a bad value fails here, before anything is sent; values read as they are from
/// the snapshot are left unread, see `segment::fallible_columns`); over the cap, the exact
/// number of distinct addresses, which is what the cap is about. Runs on the engine.
pub async fn check_cap(query: &Prepared, max_profiles: u64) -> Result<u64, ExportError> {
    let fallible = fallible_columns(&query.export).map_err(ExportError::scan)?;
    // `count(column)` must compute the column; `count(*)` reads only what the filters need.
    let mut counts = vec![count(lit(1)).alias("rows")];
    counts.extend(
        fallible
            .iter()
            .enumerate()
            .map(|(i, name)| count(ident(name)).alias(format!("c{i}"))),
    );
    let rows = first_count(query.export.clone().aggregate(vec![], counts)).await?;
    guard_cap(query, rows, max_profiles).await?;
    Ok(rows)
}

/// Given the rows the export query yields: when they are over the cap, counts the distinct
/// addresses among them (one more scan, of the address column), and refuses if those are.
pub async fn guard_cap(query: &Prepared, rows: u64, max_profiles: u64) -> Result<(), ExportError> {
    if rows <= max_profiles {
        return Ok(());
    }
    let email = ident("email");
    let distinct = query
        .export
        .clone()
        .aggregate(vec![], vec![count_distinct(lower(trim(vec![email]))).alias("n")]);
    let members = first_count(distinct).await?;
    if members > max_profiles {
        return Err(ExportError::OverCap {
            members,
            max: max_profiles,
        });
    }
    Ok(())
}

async fn first_count(
    frame: Result<datafusion::prelude::DataFrame, datafusion::error::DataFusionError>,
) -> Result<u64, ExportError> {
    let batches = frame
        .map_err(ExportError::scan)?
        .collect()
        .await
        .map_err(ExportError::scan)?;
    Ok(batches
        .first()
        .filter(|b| b.num_rows() > 0)
        .and_then(|b| {
            b.column(0)
                .as_any()
                .downcast_ref::<datafusion::arrow::array::Int64Array>()
                .map(|a| a.value(0))
        })
        .unwrap_or(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(name: &str, key: &str) -> CustomField {
        CustomField {
            field_name: name.into(),
            key: key.into(),
            data_type: "Text".into(),
            field_options: vec![],
            visible_in_preference_center: true,
        }
    }

    #[test]
    fn mapped_keys_are_found_by_key_or_name() {
        let fields = [field("Loyalty Tier", "[LoyaltyTier]"), field("city", "[city]")];
        assert_eq!(resolve_key("L", "Loyalty Tier", &fields).unwrap(), "LoyaltyTier");
        assert_eq!(resolve_key("L", "loyaltytier", &fields).unwrap(), "LoyaltyTier");
        assert_eq!(resolve_key("L", "City", &fields).unwrap(), "city");
        let error = resolve_key("L", "Age", &fields).unwrap_err().to_string();
        assert!(
            error.contains("no custom field with key `Age`") && error.contains("`Loyalty Tier` ([LoyaltyTier])"),
            "{error}"
        );
    }
}
