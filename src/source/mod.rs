//! Registers the snapshot (a Parquet file, a folder with Hive partitions, or a glob) as a
//! table in a DataFusion session. Everything that can be checked on disk is checked here,
//! so a path that matches nothing fails before any query runs.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::ListingOptions;
use datafusion::prelude::SessionContext;

use crate::config::Source;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("source `{path}` matches nothing: {why}; check `source.path` (it is relative to the pipeline file)")]
    NoMatch { path: String, why: String },
    #[error("cannot read the Parquet snapshot at `{path}`; is it a valid Parquet file?")]
    Unreadable {
        path: String,
        #[source]
        source: datafusion::error::DataFusionError,
    },
}

/// What was found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Every Parquet file, sorted.
    pub files: Vec<PathBuf>,
    /// Hive partition columns (`key=value` folders), outermost first.
    pub partition_columns: Vec<String>,
}

fn is_glob(path: &str) -> bool {
    path.contains(['*', '?', '['])
}

fn is_parquet(path: &Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("parquet"))
}

fn hidden(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.') || n.starts_with('_'))
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if hidden(&path) {
            continue;
        }
        if path.is_dir() {
            walk(&path, files)?;
        } else if is_parquet(&path) {
            files.push(path);
        }
    }
    Ok(())
}

/// Lists the files a source path names, and the Hive partition columns of a folder.
pub fn discover(path: &str) -> Result<Snapshot, SourceError> {
    let no_match = |why: &str| SourceError::NoMatch {
        path: path.to_owned(),
        why: why.to_owned(),
    };
    if is_glob(path) {
        let pattern = glob::glob(path).map_err(|e| no_match(&format!("bad glob pattern: {e}")))?;
        let mut files: Vec<PathBuf> = pattern.filter_map(Result::ok).filter(|p| p.is_file()).collect();
        files.sort();
        if files.is_empty() {
            return Err(no_match("no file matches the pattern"));
        }
        return Ok(Snapshot {
            files,
            partition_columns: Vec::new(),
        });
    }
    let root = Path::new(path);
    if root.is_file() {
        return Ok(Snapshot {
            files: vec![root.to_owned()],
            partition_columns: Vec::new(),
        });
    }
    if !root.is_dir() {
        return Err(no_match("no such file or folder"));
    }
    let mut files = Vec::new();
    walk(root, &mut files).map_err(|e| no_match(&format!("cannot list the folder: {e}")))?;
    files.sort();
    let Some(first) = files.first() else {
        return Err(no_match("the folder holds no .parquet files"));
    };
    let partition_columns = first
        .strip_prefix(root)
        .unwrap_or(first)
        .parent()
        .map(|rel| {
            rel.components()
                .filter_map(|c| c.as_os_str().to_str()?.split_once('=').map(|(k, _)| k.to_owned()))
                .collect()
        })
        .unwrap_or_default();
    Ok(Snapshot {
        files,
        partition_columns,
    })
}

/// Registers the source as `source.table`. Hive partition values arrive as strings.
pub async fn register(ctx: &SessionContext, source: &Source) -> Result<Snapshot, SourceError> {
    let snapshot = discover(&source.path)?;
    let unreadable = |e| SourceError::Unreadable {
        path: source.path.clone(),
        source: e,
    };
    let table_path = if is_glob(&source.path) {
        absolute(&source.path)
    } else {
        let canonical = std::fs::canonicalize(&source.path).map_err(|e| SourceError::NoMatch {
            path: source.path.clone(),
            why: e.to_string(),
        })?;
        let mut text = canonical.to_string_lossy().into_owned();
        if canonical.is_dir() && !text.ends_with('/') {
            text.push('/');
        }
        text
    };
    let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
        .with_file_extension(if is_glob(&source.path) { "" } else { ".parquet" })
        .with_table_partition_cols(
            snapshot
                .partition_columns
                .iter()
                .map(|c| (c.clone(), DataType::Utf8))
                .collect(),
        );
    ctx.register_listing_table(source.table.as_str(), table_path, options, None, None)
        .await
        .map_err(unreadable)?;
    // Schema inference reads only footers; make sure the table can be planned too.
    ctx.table(source.table.as_str()).await.map_err(unreadable)?;
    Ok(snapshot)
}

fn absolute(path: &str) -> String {
    if Path::new(path).is_absolute() {
        return path.to_owned();
    }
    std::env::current_dir()
        .map(|d| d.join(path).to_string_lossy().into_owned())
        .unwrap_or_else(|_| path.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_hive_partitions_and_reports_nothing_found() {
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().join("country=RO").join("tier=gold");
        std::fs::create_dir_all(&part).unwrap();
        std::fs::write(part.join("a.parquet"), b"").unwrap();
        std::fs::write(dir.path().join("_SUCCESS"), b"").unwrap();
        let found = discover(dir.path().to_str().unwrap()).unwrap();
        assert_eq!(found.partition_columns, vec!["country", "tier"]);
        assert_eq!(found.files.len(), 1);

        let empty = tempfile::tempdir().unwrap();
        let err = discover(empty.path().to_str().unwrap()).unwrap_err().to_string();
        assert!(err.contains("holds no .parquet files"), "{err}");
        let err = discover("/nonexistent/x.parquet").unwrap_err().to_string();
        assert!(err.contains("`/nonexistent/x.parquet` matches nothing"), "{err}");
        let pattern = format!("{}/*.nothing", dir.path().display());
        assert!(discover(&pattern).is_err());
    }
}
