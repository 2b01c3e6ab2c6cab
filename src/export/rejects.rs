//! The rejects file: every row that was not exported (duplicates aside), with its reason.
//! It holds addresses (it is for fixing the data), so it is readable by its owner only.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int64Builder, RecordBatch, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::errors::ParquetError;

use crate::members::Reject;
use crate::state::create_private;

const FLUSH_ROWS: usize = 8192;

#[derive(Debug, thiserror::Error)]
#[error("cannot write the rejects file `{}`", path.display())]
pub struct RejectsError {
    pub path: PathBuf,
    #[source]
    pub source: ParquetError,
}

pub struct RejectsWriter {
    path: PathBuf,
    writer: ArrowWriter<File>,
    pending: Vec<Reject>,
    written: u64,
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("email", DataType::Utf8, true),
        Field::new("key", DataType::Utf8, true),
        Field::new("reason", DataType::Utf8, false),
        Field::new("column", DataType::Utf8, true),
        Field::new("api_code", DataType::Int64, true),
        Field::new("message", DataType::Utf8, true),
    ]))
}

impl RejectsWriter {
    pub fn create(path: &Path) -> Result<Self, RejectsError> {
        let err = |source| RejectsError {
            path: path.to_owned(),
            source,
        };
        let file = create_private(path).map_err(|e| err(ParquetError::External(Box::new(e))))?;
        let writer = ArrowWriter::try_new(file, schema(), None).map_err(err)?;
        Ok(Self {
            path: path.to_owned(),
            writer,
            pending: Vec::new(),
            written: 0,
        })
    }

    pub fn push(&mut self, reject: Reject) -> Result<(), RejectsError> {
        self.pending.push(reject);
        if self.pending.len() >= FLUSH_ROWS {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), RejectsError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let mut email = StringBuilder::new();
        let mut key = StringBuilder::new();
        let mut reason = StringBuilder::new();
        let mut column = StringBuilder::new();
        let mut code = Int64Builder::new();
        let mut message = StringBuilder::new();
        for r in self.pending.drain(..) {
            email.append_option(r.email);
            key.append_option(r.key);
            reason.append_value(r.reason.as_str());
            column.append_option(r.column);
            code.append_option(r.code);
            message.append_option(r.message);
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(email.finish()),
            Arc::new(key.finish()),
            Arc::new(reason.finish()),
            Arc::new(column.finish()),
            Arc::new(code.finish()),
            Arc::new(message.finish()),
        ];
        let err = |source| RejectsError {
            path: self.path.clone(),
            source,
        };
        let batch = RecordBatch::try_new(schema(), columns).map_err(|e| err(e.into()))?;
        self.written += batch.num_rows() as u64;
        self.writer.write(&batch).map_err(err)
    }

    /// Writes what is pending and closes the file; returns the rows written.
    pub fn finish(mut self) -> Result<u64, RejectsError> {
        self.flush()?;
        let path = self.path.clone();
        self.writer.close().map_err(|source| RejectsError { path, source })?;
        Ok(self.written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::members::RejectReason;
    use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    #[test]
    fn writes_rows_readable_by_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r/rejects.parquet");
        let mut writer = RejectsWriter::create(&path).unwrap();
        writer
            .push(Reject::new(Some(" bad "), RejectReason::InvalidEmail))
            .unwrap();
        let mut api = Reject::new(Some("a@x.com"), RejectReason::Api);
        api.code = Some(206);
        writer.push(api).unwrap();
        assert_eq!(writer.finish().unwrap(), 2);
        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(&path).unwrap())
            .unwrap()
            .build()
            .unwrap();
        let rows: usize = reader.map(|b| b.unwrap().num_rows()).sum();
        assert_eq!(rows, 2);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }
}
