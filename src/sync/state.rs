//! The synced state file: `synced/<export>.parquet` in the state folder, columns `key`
//! (the lowercased address) and `fingerprint` (of the mapped values, see
//! [`crate::members::fingerprint`]), with the list id and mapping digest in its metadata.
//! Written owner-only (it holds addresses) and replaced atomically: a crash leaves the old
//! state or the new one.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::error::DataFusionError;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::errors::ParquetError;
use datafusion::parquet::file::metadata::KeyValue;
use datafusion::parquet::file::properties::WriterProperties;
use datafusion::parquet::file::reader::{FileReader, SerializedFileReader};
use datafusion::prelude::{DataFrame, col};
use futures::StreamExt;
use sha2::{Digest, Sha256};

use crate::config::{Consent, Mapping, Nulls};
use crate::state::create_private;

pub const KEY: &str = "key";
pub const FINGERPRINT: &str = "fingerprint";
const LIST_ID: &str = "cm-export.list-id";
const MAPPING: &str = "cm-export.mapping";

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("cannot read the synced state `{}`; remove it and run with --full to rebuild it", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: ParquetError,
    },
    #[error("the synced state `{}` has no {what}; remove it and run with --full to rebuild it", path.display())]
    Incomplete { path: PathBuf, what: &'static str },
    #[error("cannot write the synced state `{}`", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: ParquetError,
    },
    #[error("cannot compare the export with its synced state `{}`", path.display())]
    Query {
        path: PathBuf,
        #[source]
        source: DataFusionError,
    },
}

/// The synced state of one export, as its file's footer describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Synced {
    pub path: PathBuf,
    pub list_id: String,
    /// [`mapping_digest`] of the mapping it was made under.
    pub mapping: String,
    /// Members this export has on the list.
    pub members: u64,
}

impl Synced {
    /// Where `export`'s state lives in `state_dir`.
    pub fn path(state_dir: &Path, export: &str) -> PathBuf {
        state_dir.join("synced").join(format!("{export}.parquet"))
    }

    /// The state at `path`; `None` before the export's first tracked run.
    pub fn open(path: &Path) -> Result<Option<Self>, SyncError> {
        let file = match std::fs::File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(SyncError::Read {
                    path: path.to_owned(),
                    source: ParquetError::External(Box::new(e)),
                });
            }
        };
        let reader = SerializedFileReader::new(file).map_err(|source| SyncError::Read {
            path: path.to_owned(),
            source,
        })?;
        let meta = reader.metadata().file_metadata();
        let value = |key: &str| {
            meta.key_value_metadata()
                .and_then(|kv| kv.iter().find(|e| e.key == key))
                .and_then(|e| e.value.clone())
        };
        let incomplete = |what| SyncError::Incomplete {
            path: path.to_owned(),
            what,
        };
        Ok(Some(Self {
            path: path.to_owned(),
            list_id: value(LIST_ID).ok_or_else(|| incomplete("list id"))?,
            mapping: value(MAPPING).ok_or_else(|| incomplete("mapping"))?,
            members: meta.num_rows() as u64,
        }))
    }

    /// Why this state cannot stand for the export's members on `list_id` under `mapping`:
    /// another list's or mapping's state says nothing of what is on this one.
    pub fn mismatch(&self, list_id: &str, mapping: &str) -> Option<String> {
        if self.list_id != list_id {
            Some(format!(
                "the synced state was made for list {}, this run sends to list {list_id}",
                self.list_id
            ))
        } else if self.mapping != mapping {
            Some("the mapping changed since the synced state was made".to_owned())
        } else {
            None
        }
    }

    /// Writes `rows` (columns `key`, `fingerprint`) as the state at `path`; returns its rows.
    pub async fn write(path: &Path, rows: DataFrame, list_id: &str, mapping: &str) -> Result<u64, SyncError> {
        let query = |source| SyncError::Query {
            path: path.to_owned(),
            source,
        };
        let write = |source| SyncError::Write {
            path: path.to_owned(),
            source,
        };
        let rows = rows
            .select(vec![
                datafusion::prelude::cast(col(KEY), DataType::Utf8).alias(KEY),
                datafusion::prelude::cast(col(FINGERPRINT), DataType::UInt64).alias(FINGERPRINT),
            ])
            .map_err(query)?;
        let mut partial = path.as_os_str().to_owned();
        partial.push(".partial");
        let partial = PathBuf::from(partial);
        let file = create_private(&partial).map_err(|e| write(ParquetError::External(Box::new(e))))?;
        let properties = WriterProperties::builder()
            .set_key_value_metadata(Some(vec![
                KeyValue::new(LIST_ID.to_owned(), list_id.to_owned()),
                KeyValue::new(MAPPING.to_owned(), mapping.to_owned()),
            ]))
            .build();
        let mut writer = ArrowWriter::try_new(file, Arc::new(schema()), Some(properties)).map_err(write)?;
        let mut stream = rows.execute_stream().await.map_err(query)?;
        let mut written = 0;
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(query)?;
            written += batch.num_rows() as u64;
            writer.write(&batch).map_err(write)?;
        }
        let file = writer.into_inner().map_err(write)?;
        file.sync_all()
            .map_err(|e| write(ParquetError::External(Box::new(e))))?;
        drop(file);
        std::fs::rename(&partial, path).map_err(|e| write(ParquetError::External(Box::new(e))))?;
        Ok(written)
    }
}

pub fn schema() -> Schema {
    Schema::new(vec![
        Field::new(KEY, DataType::Utf8, true),
        Field::new(FINGERPRINT, DataType::UInt64, true),
    ])
}

/// A digest of what decides the values sent: the columns mapped to the address, name,
/// consent and each custom field key.
pub fn mapping_digest(mapping: &Mapping) -> String {
    let mut text = format!("email={}\nname={:?}\n", mapping.email, mapping.name);
    match &mapping.consent {
        Consent::Constant(c) => text.push_str(&format!("consent={}\n", c.as_str())),
        Consent::Column(column) => text.push_str(&format!("consent-column={column}\n")),
    }
    for field in &mapping.custom_fields {
        text.push_str(&format!("field {}={}\n", field.key, field.column));
        // A plain mapping, the only kind there was, adds nothing: older digests stay.
        if let Some(field_type) = field.field_type {
            text.push_str(&format!("  type {} {:?}\n", field_type.as_str(), field.options));
        }
    }
    // Written only when used, so that the digests of mappings without them stay as they were.
    if let Some(column) = &mapping.mobile_number {
        text.push_str(&format!("mobile={column}\n"));
    }
    match &mapping.sms_consent {
        None => {}
        Some(Consent::Constant(c)) => text.push_str(&format!("sms-consent={}\n", c.as_str())),
        Some(Consent::Column(column)) => text.push_str(&format!("sms-consent-column={column}\n")),
    }
    if mapping.nulls == Nulls::Clear {
        text.push_str("nulls=clear\n");
    }
    let digest = Sha256::digest(text.as_bytes());
    digest.iter().take(12).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::campaign_monitor::ConsentToTrack;
    use crate::campaign_monitor::FieldType;
    use crate::config::{Consent, FieldMapping};

    #[test]
    fn a_state_is_for_one_list_and_one_mapping() {
        let dir = tempfile::tempdir().unwrap();
        let path = Synced::path(dir.path(), "vip");
        assert!(path.ends_with("synced/vip.parquet"));
        assert_eq!(Synced::open(&path).unwrap(), None, "before the first run");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, b"not parquet").unwrap();
        let error = Synced::open(&path).unwrap_err().to_string();
        assert!(
            error.contains("vip.parquet") && error.contains("run with --full"),
            "{error}"
        );

        let synced = Synced {
            path,
            list_id: "L1".into(),
            mapping: "m".into(),
            members: 3,
        };
        assert_eq!(synced.mismatch("L1", "m"), None);
        assert_eq!(
            synced.mismatch("L2", "m").unwrap(),
            "the synced state was made for list L1, this run sends to list L2"
        );
        assert!(synced.mismatch("L1", "n").unwrap().contains("the mapping changed"));
    }

    #[test]
    fn the_mapping_digest_follows_what_decides_the_values() {
        let mapping = Mapping {
            email: "email".into(),
            name: Some("full_name".into()),
            consent: Consent::Constant(ConsentToTrack::Yes),
            custom_fields: vec![FieldMapping::plain("City", "city")],
            key: None,
            mobile_number: None,
            sms_consent: None,
            nulls: Nulls::Skip,
        };
        let digest = mapping_digest(&mapping);
        assert_eq!(digest, mapping_digest(&mapping.clone()));
        // The key finds rejected rows again; it decides no value on the list.
        let keyed = Mapping {
            key: Some("customer_id".into()),
            ..mapping.clone()
        };
        assert_eq!(mapping_digest(&keyed), digest);
        let changes = [
            Mapping {
                name: None,
                ..mapping.clone()
            },
            Mapping {
                consent: Consent::Column("consent".into()),
                ..mapping.clone()
            },
            Mapping {
                custom_fields: vec![FieldMapping::plain("City", "town")],
                ..mapping.clone()
            },
            Mapping {
                custom_fields: vec![FieldMapping {
                    field_type: Some(FieldType::Text),
                    ..FieldMapping::plain("City", "city")
                }],
                ..mapping.clone()
            },
            Mapping {
                email: "work_email".into(),
                ..mapping.clone()
            },
            Mapping {
                mobile_number: Some("phone".into()),
                ..mapping.clone()
            },
            Mapping {
                sms_consent: Some(Consent::Constant(ConsentToTrack::Unchanged)),
                ..mapping.clone()
            },
            Mapping {
                nulls: Nulls::Clear,
                ..mapping.clone()
            },
        ];
        for changed in changes {
            assert_ne!(mapping_digest(&changed), digest, "{changed:?}");
        }
    }
}
