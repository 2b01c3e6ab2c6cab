//! The checks before a single member leaves: local first (credentials found, SQL, schema),
//! then the API (credentials accepted, the list, its custom fields), then the cap, which
//! evaluates every mapped column so a bad value stops the run here and not after thousands
//! of members were sent.

use datafusion::functions_aggregate::expr_fn::{count, count_distinct};
use datafusion::prelude::{ident, lit, lower, trim};

use super::error::ExportError;
use crate::campaign_monitor::types::{CustomField, NewCustomField};
use crate::campaign_monitor::{Client, ClientOptions, Credentials, retry_call};
use crate::config::{Connection, FieldMapping, Pipeline};
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
    let (client, fields) = connect(pipeline, connection, credentials, options, backoff).await?;
    let max_profiles = pipeline.options.max_profiles;
    let query = engine::run(async move {
        let query = query.into_inner();
        let rows = check_cap(&query, max_profiles).await?;
        Ok::<_, ExportError>((OnEngine::new(query), rows))
    });
    let (query, rows_expected) = query.await?;
    let keys = fields
        .make(
            &client,
            backoff,
            &pipeline.destination.list_id,
            &pipeline.mapping.custom_fields,
        )
        .await?;
    let countries = match query.get().layout.wants_countries() {
        true => Some(
            retry_call(backoff, || client.countries())
                .await
                .map_err(|source| ExportError::Countries { source })?,
        ),
        false => None,
    };
    let query = engine::run(async move {
        let mut query = query.into_inner();
        query.layout.set_fields(keys);
        if let Some(names) = countries {
            query.layout.set_countries(&names);
        }
        Ok::<_, ExportError>(OnEngine::new(query))
    })
    .await?;
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

/// The client, with the credential check and list check done; and what the list has and
/// lacks of the mapped custom fields, checked: a field of another type stops the run here.
pub async fn connect(
    pipeline: &Pipeline,
    connection: &Connection,
    credentials: &Credentials,
    options: ClientOptions,
    backoff: &Backoff,
) -> Result<(Client, ListFields), ExportError> {
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
        return Ok((client, ListFields::default()));
    }
    let fields = retry_call(backoff, || client.custom_fields(list_id))
        .await
        .map_err(list_error)?;
    let found = ListFields::compare(list_id, &pipeline.mapping.custom_fields, &fields)?;
    if !pipeline.options.create_missing_fields {
        found.refuse_missing(list_id, &pipeline.mapping.custom_fields, &fields)?;
    }
    Ok((client, found))
}

/// The mapped fields against the list's, in the mapping's order: `None` for a field the
/// list lacks.
#[derive(Debug, Default)]
pub struct ListFields(Vec<Option<OnList>>);

/// A mapped field the list has.
#[derive(Debug)]
struct OnList {
    /// The list's own key, bare.
    key: String,
    name: String,
    /// Its options, and those the mapping names that it lacks.
    options: Vec<String>,
    missing: Vec<String>,
}

impl ListFields {
    fn compare(list_id: &str, mapped: &[FieldMapping], fields: &[CustomField]) -> Result<Self, ExportError> {
        let mut found = Vec::with_capacity(mapped.len());
        for field in mapped {
            let wanted = comparable(&field.key);
            let Some(on_list) = fields
                .iter()
                .find(|f| comparable(&f.key) == wanted || comparable(&f.field_name) == wanted)
            else {
                found.push(None);
                continue;
            };
            if let Some(mapped) = field.field_type
                && on_list.data_type != mapped.as_str()
            {
                return Err(ExportError::FieldTypeClash {
                    list_id: list_id.to_owned(),
                    key: field.key.clone(),
                    field: on_list.field_name.clone(),
                    on_list: on_list.data_type.clone(),
                    mapped: mapped.as_str(),
                });
            }
            found.push(Some(OnList {
                key: on_list.key.trim_start_matches('[').trim_end_matches(']').to_owned(),
                name: on_list.field_name.clone(),
                options: on_list.field_options.clone(),
                missing: field
                    .options
                    .iter()
                    .filter(|o| !on_list.field_options.contains(o))
                    .cloned()
                    .collect(),
            }));
        }
        Ok(Self(found))
    }

    /// Without `create-missing-fields`: the first missing field or options, as the error.
    fn refuse_missing(
        &self,
        list_id: &str,
        mapped: &[FieldMapping],
        fields: &[CustomField],
    ) -> Result<(), ExportError> {
        for (field, on_list) in mapped.iter().zip(&self.0) {
            let Some(on_list) = on_list else {
                return Err(ExportError::UnknownCustomField {
                    list_id: list_id.to_owned(),
                    key: field.key.clone(),
                    available: match fields.is_empty() {
                        true => "none".to_owned(),
                        false => fields
                            .iter()
                            .map(|f| format!("`{}` ({})", f.field_name, f.key))
                            .collect::<Vec<_>>()
                            .join(", "),
                    },
                });
            };
            if !on_list.missing.is_empty() {
                return Err(ExportError::MissingFieldOptions {
                    list_id: list_id.to_owned(),
                    key: field.key.clone(),
                    field: on_list.name.clone(),
                    missing: on_list
                        .missing
                        .iter()
                        .map(|o| format!("`{o}`"))
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
        }
        Ok(())
    }

    /// Creates the fields the list lacks (with their types and options) and adds the
    /// options it lacks; returns the list's key and options of every mapped field. Called
    /// once every check has passed, so that a run that stops early leaves the list as it was.
    pub async fn make(
        self,
        client: &Client,
        backoff: &Backoff,
        list_id: &str,
        mapped: &[FieldMapping],
    ) -> Result<Vec<(String, Vec<String>)>, ExportError> {
        let mut made = Vec::with_capacity(mapped.len());
        for (field, on_list) in mapped.iter().zip(self.0) {
            let failed = |source| ExportError::FieldNotPrepared {
                list_id: list_id.to_owned(),
                field: field.key.clone(),
                source,
            };
            match on_list {
                Some(OnList {
                    key,
                    mut options,
                    missing,
                    ..
                }) => {
                    if !missing.is_empty() {
                        retry_call(backoff, || client.add_field_options(list_id, &key, &missing))
                            .await
                            .map_err(failed)?;
                        tracing::info!(field = %field.key, options = missing.len(), "added options to a custom field");
                        options.extend(missing);
                    }
                    made.push((key, options));
                }
                None => {
                    let new = NewCustomField {
                        field_name: field.key.clone(),
                        data_type: field.created_as().as_str().to_owned(),
                        options: field.options.clone(),
                        visible_in_preference_center: true,
                    };
                    let key = retry_call(backoff, || client.create_custom_field(list_id, &new))
                        .await
                        .map_err(failed)?;
                    tracing::info!(field = %field.key, r#type = field.created_as().as_str(), "created a custom field");
                    let key = key.trim_start_matches('[').trim_end_matches(']').to_owned();
                    made.push((key, field.options.clone()));
                }
            }
        }
        Ok(made)
    }
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
    use crate::campaign_monitor::FieldType;

    fn field(name: &str, key: &str, data_type: &str, options: &[&str]) -> CustomField {
        CustomField {
            field_name: name.into(),
            key: key.into(),
            data_type: data_type.into(),
            field_options: options.iter().map(|o| (*o).to_owned()).collect(),
            visible_in_preference_center: true,
        }
    }

    fn mapped(key: &str, field_type: FieldType, options: &[&str]) -> FieldMapping {
        FieldMapping {
            options: options.iter().map(|o| (*o).to_owned()).collect(),
            field_type: Some(field_type),
            ..FieldMapping::plain(key, "column")
        }
    }

    #[test]
    fn mapped_fields_are_found_by_key_or_name_and_what_is_missing_is_named() {
        let fields = [
            field("Loyalty Tier", "[LoyaltyTier]", "MultiSelectOne", &["bronze", "silver"]),
            field("city", "[city]", "Text", &[]),
        ];
        let mapping = [
            mapped("Loyalty Tier", FieldType::MultiSelectOne, &["silver", "gold"]),
            mapped("loyaltytier", FieldType::MultiSelectOne, &[]),
            mapped("City", FieldType::Text, &[]),
            mapped("Age", FieldType::Number, &[]),
        ];
        let found = ListFields::compare("L", &mapping, &fields).unwrap();
        let keys: Vec<Option<&str>> = found.0.iter().map(|f| f.as_ref().map(|f| f.key.as_str())).collect();
        assert_eq!(keys, [Some("LoyaltyTier"), Some("LoyaltyTier"), Some("city"), None]);
        assert_eq!(found.0[0].as_ref().unwrap().missing, ["gold"]);
        let error = found.refuse_missing("L", &mapping, &fields).unwrap_err().to_string();
        assert!(
            error.contains("custom field `Loyalty Tier` lacks the option(s) `gold`"),
            "{error}"
        );
        let rest = &mapping[1..];
        let error = ListFields::compare("L", rest, &fields)
            .unwrap()
            .refuse_missing("L", rest, &fields)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("no custom field with key `Age`") && error.contains("`Loyalty Tier` ([LoyaltyTier])"),
            "{error}"
        );
    }

    #[test]
    fn a_field_of_another_type_is_refused_naming_both() {
        let fields = [field("Age", "[age]", "Text", &[])];
        let error = ListFields::compare("L", &[mapped("Age", FieldType::Number, &[])], &fields)
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "list `L` has custom field `Age` as Text, but `mapping.custom-fields.Age` maps it as Number; nothing was sent. \
             Change the mapping's `type`, or the field in Campaign Monitor (a field's type cannot change: delete it and create it again)"
        );
    }
}
