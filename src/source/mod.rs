//! The snapshot: one listing decides its files, and exactly those files are registered as
//! the table, read, counted in the report and fingerprinted.
//!
//! - a file: that file;
//! - a glob: the files it matches (`*` stays inside one folder; `data/*/*.parquet` crosses
//!   one level), any extension;
//! - a folder: every `.parquet` file below it, through DataFusion's own listing, whose
//!   answer the session keeps for every later scan of the run; `key=value` folders are Hive
//!   partitions and become string columns.
//!
//! The path may also be a URL of an object store (`s3://`, `az://`, `abfss://`, `gs://`,
//! `https://`, see `store.rs`): the same three forms, listed in the store, with the same
//! rules.
//!
//! What would make the table differ from what a person sees is refused, naming the file:
//! a hidden file or folder (`.`/`_`: a write in progress, or a tool's bookkeeping), an empty
//! file, or a file outside the partition layout of the others.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::TableReference;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::error::DataFusionError;
use datafusion::object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};
use datafusion::prelude::SessionContext;
use futures::TryStreamExt;

use crate::config::Source;

mod store;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("source `{path}` matches nothing: {why}; check `source.path` (it is relative to the pipeline file)")]
    NoMatch { path: String, why: String },
    #[error("cannot list the snapshot at `{path}`: {why}")]
    List { path: String, why: String },
    #[error("cannot open the store of `{path}`: {why}")]
    Store { path: String, why: String },
    #[error("the snapshot at `{path}` holds `{file}`, {why}")]
    Refused { path: String, file: String, why: String },
    #[error("cannot read the Parquet snapshot at `{path}`; is every file in it a valid Parquet file?")]
    Unreadable {
        path: String,
        #[source]
        source: DataFusionError,
    },
}

/// One file of the snapshot, as the listing saw it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SnapshotFile {
    pub path: PathBuf,
    pub bytes: u64,
    pub modified_unix_ms: u128,
    /// The store's entity tag, where it gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e_tag: Option<String>,
}

/// What the listing found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Every file the table reads, sorted by path.
    pub files: Vec<SnapshotFile>,
    /// Hive partition columns (`key=value` folders), outermost first.
    pub partition_columns: Vec<String>,
}

fn is_glob(path: &str) -> bool {
    path.contains(['*', '?', '['])
}

fn hidden(name: &str) -> bool {
    name.starts_with('.') || name.starts_with('_')
}

/// What the listing found: the table's paths (one folder, or one per file), each file, and
/// the extension the table reads.
struct Listed {
    urls: Vec<ListingTableUrl>,
    metas: Vec<ObjectMeta>,
    extension: String,
    /// `scheme://authority` of an object store; `None` for local files.
    base: Option<url::Url>,
}

/// Registers the source as `source.table` over exactly the files one listing found.
pub async fn register(ctx: &SessionContext, source: &Source) -> Result<Snapshot, SourceError> {
    let table = TableReference::bare(source.table.as_str());
    let Listed {
        urls,
        metas,
        extension,
        base,
    } = list(ctx, source, &table).await?;
    let root = urls.first().map(|u| u.prefix().clone()).unwrap_or_default();
    let mut snapshot = check(&source.path, &root, urls.len() == 1 && urls[0].is_collection(), &metas)?;
    if let Some(base) = base {
        // Objects by their whole URL, as the report and the resume fingerprint show them.
        let base = base.as_str().trim_end_matches('/').to_owned();
        for file in &mut snapshot.files {
            file.path = PathBuf::from(format!("{base}{}", file.path.display()));
        }
    }

    let unreadable = |source_error| SourceError::Unreadable {
        path: source.path.clone(),
        source: source_error,
    };
    let format = Arc::new(ParquetFormat::default());
    let store = ctx.runtime_env().object_store(&urls[0]).map_err(unreadable)?;
    let file_schema = format
        .infer_schema(&ctx.state(), &store, &metas)
        .await
        .map_err(unreadable)?;
    let options = ListingOptions::new(format)
        .with_file_extension(extension)
        .with_table_partition_cols(
            snapshot
                .partition_columns
                .iter()
                .map(|c| (c.clone(), DataType::Utf8))
                .collect(),
        );
    let config = ListingTableConfig::new_with_multi_paths(urls)
        .with_listing_options(options)
        .with_schema(file_schema);
    let listing = ListingTable::try_new(config).map_err(unreadable)?;
    ctx.register_table(table.clone(), Arc::new(listing))
        .map_err(unreadable)?;
    // Schema inference reads only footers; make sure the table can be planned too.
    ctx.table(table).await.map_err(unreadable)?;
    Ok(snapshot)
}

/// The one listing: a glob expanded, a file looked up, a folder listed by DataFusion (whose
/// answer the session keeps for every later scan).
async fn list(ctx: &SessionContext, source: &Source, table: &TableReference) -> Result<Listed, SourceError> {
    if let Some(cloud) = source.cloud {
        return list_remote(ctx, source, cloud, table).await;
    }
    let list_err = |e: &dyn std::fmt::Display| SourceError::List {
        path: source.path.clone(),
        why: e.to_string(),
    };
    let (urls, metas, extension) = if is_glob(&source.path) {
        let files = expand_glob(&source.path)?;
        let urls = files
            .iter()
            .map(|f| file_url(f, table))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| list_err(&e))?;
        let metas = head_all(ctx, &urls).await.map_err(|e| list_err(&e))?;
        (urls, metas, String::new())
    } else {
        let root = std::fs::canonicalize(&source.path).map_err(|e| SourceError::NoMatch {
            path: source.path.clone(),
            why: if e.kind() == std::io::ErrorKind::NotFound {
                "no such file or folder".to_owned()
            } else {
                e.to_string()
            },
        })?;
        if root.is_dir() {
            let url = ListingTableUrl::parse(format!("{}/", root.display().to_string().trim_end_matches('/')))
                .map_err(|e| list_err(&e))?
                .with_table_ref(table.clone());
            let store = ctx.runtime_env().object_store(&url).map_err(|e| list_err(&e))?;
            let metas = list_folder(ctx, &url, store.as_ref()).await.map_err(|e| list_err(&e))?;
            if metas.is_empty() {
                return Err(SourceError::NoMatch {
                    path: source.path.clone(),
                    why: "the folder holds no .parquet files".to_owned(),
                });
            }
            (vec![url], metas, ".parquet".to_owned())
        } else {
            let url = file_url(&root, table).map_err(|e| list_err(&e))?;
            let metas = head_all(ctx, std::slice::from_ref(&url))
                .await
                .map_err(|e| list_err(&e))?;
            (vec![url], metas, String::new())
        }
    };
    Ok(Listed {
        urls,
        metas,
        extension,
        base: None,
    })
}

/// The same listing in an object store: a glob matched as locally (`*` stays inside one
/// folder), an object looked up, or a folder listed by DataFusion.
async fn list_remote(
    ctx: &SessionContext,
    source: &Source,
    cloud: crate::config::Cloud,
    table: &TableReference,
) -> Result<Listed, SourceError> {
    use datafusion::object_store::path::Path as ObjectPath;
    let list_err = |e: &dyn std::fmt::Display| SourceError::List {
        path: source.path.clone(),
        why: crate::error_text::hide_queries(&e.to_string()),
    };
    let no_match = |why: &str| SourceError::NoMatch {
        path: source.path.clone(),
        why: why.to_owned(),
    };
    let remote = store::open(&source.path, cloud, &source.storage)?;
    ctx.register_object_store(&remote.base, remote.store.clone());
    let url_of = |key: &str| {
        let mut url = remote.base.clone();
        url.set_path(&format!("/{key}"));
        ListingTableUrl::try_new(url, None).map(|u| u.with_table_ref(table.clone()))
    };
    if is_glob(&remote.key) {
        let pattern = glob::Pattern::new(&remote.key).map_err(|e| no_match(&format!("bad glob pattern: {e}")))?;
        let fixed: Vec<&str> = remote.key.split('/').take_while(|part| !is_glob(part)).collect();
        let prefix = ObjectPath::from_url_path(fixed.join("/")).map_err(|e| list_err(&e))?;
        let mut metas: Vec<ObjectMeta> = remote
            .store
            .list(Some(&prefix))
            .try_filter(|meta| futures::future::ready(pattern.matches_with(meta.location.as_ref(), GLOB_OPTIONS)))
            .try_collect()
            .await
            .map_err(|e| list_err(&e))?;
        if metas.is_empty() {
            return Err(no_match("no object matches the pattern"));
        }
        metas.sort_by(|a, b| a.location.cmp(&b.location));
        let urls = metas
            .iter()
            .map(|meta| url_of(meta.location.as_ref()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| list_err(&e))?;
        return Ok(Listed {
            urls,
            metas,
            extension: String::new(),
            base: Some(remote.base),
        });
    }
    let key = remote.key.trim_end_matches('/');
    if !remote.key.ends_with('/') && !key.is_empty() {
        let object = ObjectPath::from_url_path(key).map_err(|e| list_err(&e))?;
        match remote.store.head(&object).await {
            Ok(meta) => {
                let url = url_of(key).map_err(|e| list_err(&e))?;
                return Ok(Listed {
                    urls: vec![url],
                    metas: vec![meta],
                    extension: String::new(),
                    base: Some(remote.base),
                });
            }
            Err(datafusion::object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(list_err(&e)),
        }
    }
    let folder = match key.is_empty() {
        true => String::new(),
        false => format!("{key}/"),
    };
    let url = url_of(&folder).map_err(|e| list_err(&e))?;
    let metas = list_folder(ctx, &url, remote.store.as_ref())
        .await
        .map_err(|e| list_err(&e))?;
    if metas.is_empty() {
        return Err(no_match("no object is there, nor any .parquet object below it"));
    }
    Ok(Listed {
        urls: vec![url],
        metas,
        extension: ".parquet".to_owned(),
        base: Some(remote.base),
    })
}

/// Every `.parquet` file below `url`, through DataFusion's listing, whose answer the session
/// keeps for every later scan of the run.
async fn list_folder(
    ctx: &SessionContext,
    url: &ListingTableUrl,
    store: &dyn ObjectStore,
) -> Result<Vec<ObjectMeta>, DataFusionError> {
    url.list_all_files(&ctx.state(), store, ".parquet")
        .await?
        .try_collect()
        .await
}

/// `*` and `?` never cross a `/`, nor match a leading `.`: locally and in stores alike.
const GLOB_OPTIONS: glob::MatchOptions = glob::MatchOptions {
    case_sensitive: true,
    require_literal_separator: true,
    require_literal_leading_dot: true,
};

/// The files a glob matches: `*` and `?` never cross a `/`, nor match a leading `.`.
fn expand_glob(pattern: &str) -> Result<Vec<PathBuf>, SourceError> {
    let no_match = |why: String| SourceError::NoMatch {
        path: pattern.to_owned(),
        why,
    };
    let absolute = std::path::absolute(pattern).map_err(|e| no_match(e.to_string()))?;
    let matched = glob::glob_with(&absolute.to_string_lossy(), GLOB_OPTIONS)
        .map_err(|e| no_match(format!("bad glob pattern: {e}")))?;
    let mut files = Vec::new();
    for entry in matched {
        let path = entry.map_err(|e| SourceError::List {
            path: pattern.to_owned(),
            why: e.to_string(),
        })?;
        if path.is_file() {
            files.push(std::fs::canonicalize(&path).unwrap_or(path));
        }
    }
    files.sort();
    files.dedup();
    if files.is_empty() {
        return Err(no_match("no file matches the pattern".to_owned()));
    }
    Ok(files)
}

fn file_url(path: &Path, table: &TableReference) -> Result<ListingTableUrl, DataFusionError> {
    // A file URL holds no glob: its characters are the file's name.
    let url = url::Url::from_file_path(path)
        .map_err(|()| DataFusionError::Plan(format!("`{}` is not an absolute path", path.display())))?;
    Ok(ListingTableUrl::try_new(url, None)?.with_table_ref(table.clone()))
}

async fn head_all(ctx: &SessionContext, urls: &[ListingTableUrl]) -> Result<Vec<ObjectMeta>, DataFusionError> {
    let mut metas = Vec::with_capacity(urls.len());
    for url in urls {
        let store: Arc<dyn ObjectStore> = ctx.runtime_env().object_store(url)?;
        metas.push(store.head(url.prefix()).await?);
    }
    Ok(metas)
}

/// Refuses what would be read differently from what is listed; finds the partition columns.
fn check(
    path: &str,
    root: &datafusion::object_store::path::Path,
    folder: bool,
    metas: &[ObjectMeta],
) -> Result<Snapshot, SourceError> {
    let refused = |meta: &ObjectMeta, why: &str| SourceError::Refused {
        path: path.to_owned(),
        file: meta.location.to_string(),
        why: why.to_owned(),
    };
    // In path order, so the same snapshot gives the same answer however the store lists it.
    let mut metas: Vec<&ObjectMeta> = metas.iter().collect();
    metas.sort_by(|a, b| a.location.cmp(&b.location));
    let mut layout: Option<(Vec<String>, &ObjectMeta)> = None;
    let mut files = Vec::with_capacity(metas.len());
    for meta in metas {
        let relative: Vec<String> = if folder {
            meta.location
                .prefix_match(root)
                .map(|parts| parts.map(|part| part.as_ref().to_owned()).collect())
                .unwrap_or_default()
        } else {
            meta.location.filename().into_iter().map(str::to_owned).collect()
        };
        if let Some(name) = relative.iter().find(|name| hidden(name)) {
            return Err(refused(
                meta,
                &format!(
                    "under the hidden name `{name}` (a write in progress, or a tool's own file?); remove it, or point `source.path` at a glob that leaves it out"
                ),
            ));
        }
        if meta.size == 0 {
            return Err(refused(meta, "which is empty (0 bytes), not a Parquet file; remove it"));
        }
        let folders = &relative[..relative.len().saturating_sub(1)];
        let keys: Vec<String> = folders
            .iter()
            .filter_map(|f| f.split_once('=').map(|(k, _)| k.to_owned()))
            .collect();
        if !keys.is_empty() && keys.len() != folders.len() {
            return Err(refused(
                meta,
                "in a folder that is not a `key=value` partition among partition folders; move it, or export the partitions with a glob",
            ));
        }
        match &layout {
            None => layout = Some((keys, meta)),
            Some((expected, _)) if *expected == keys => {}
            Some((expected, first)) => {
                let shown = |k: &[String]| match k.is_empty() {
                    true => "no partition folders".to_owned(),
                    false => k.iter().map(|k| format!("{k}=...")).collect::<Vec<_>>().join("/"),
                };
                return Err(refused(
                    meta,
                    &format!(
                        "under `{}`, while `{}` is under `{}`; every file must sit in the same partition layout (move one, or name the files with a glob)",
                        shown(&keys),
                        first.location,
                        shown(expected)
                    ),
                ));
            }
        }
        files.push(SnapshotFile {
            path: PathBuf::from(format!("/{}", meta.location)),
            bytes: meta.size,
            modified_unix_ms: meta.last_modified.timestamp_millis().max(0) as u128,
            e_tag: meta.e_tag.clone(),
        });
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(Snapshot {
        files,
        partition_columns: layout.map(|(keys, _)| keys).unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(location: &str, size: u64) -> ObjectMeta {
        ObjectMeta {
            location: datafusion::object_store::path::Path::from(location),
            last_modified: chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            size,
            e_tag: None,
            version: None,
        }
    }

    #[test]
    fn finds_partitions_and_refuses_what_would_be_read_differently() {
        let root = datafusion::object_store::path::Path::from("data/snap");
        let ok = check(
            "snap",
            &root,
            true,
            &[
                meta("data/snap/country=RO/tier=gold/b.parquet", 10),
                meta("data/snap/country=FR/tier=gold/a.parquet", 10),
            ],
        )
        .unwrap();
        assert_eq!(ok.partition_columns, vec!["country", "tier"]);
        assert_eq!(
            ok.files[0].path,
            PathBuf::from("/data/snap/country=FR/tier=gold/a.parquet")
        );

        let plain = check(
            "snap",
            &root,
            true,
            &[meta("data/snap/a.parquet", 1), meta("data/snap/2026/b.parquet", 1)],
        )
        .unwrap();
        assert_eq!((plain.files.len(), plain.partition_columns.len()), (2, 0));

        for (files, needle) in [
            (
                vec![meta("data/snap/a.parquet", 1), meta("data/snap/.tmp-part.parquet", 1)],
                "`data/snap/.tmp-part.parquet`, under the hidden name `.tmp-part.parquet`",
            ),
            (
                vec![meta("data/snap/_temporary/0/a.parquet", 1)],
                "hidden name `_temporary`",
            ),
            (vec![meta("data/snap/a.parquet", 0)], "empty (0 bytes)"),
            (
                vec![
                    meta("data/snap/country=RO/a.parquet", 1),
                    meta("data/snap/extra/b.parquet", 1),
                ],
                "under `no partition folders`, while `data/snap/country=RO/a.parquet` is under `country=...`",
            ),
            (
                vec![meta("data/snap/country=RO/old/a.parquet", 1)],
                "not a `key=value` partition",
            ),
        ] {
            let error = check("snap", &root, true, &files).unwrap_err().to_string();
            assert!(error.contains(needle), "{needle}: {error}");
        }
    }
}
