//! `pipelines/NAME.toml`: one export. Parsed strictly into [`Pipeline`] before any I/O
//! beyond reading the definition and its SQL files.

use std::collections::{BTreeMap, HashSet};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::engine::{Engine, EngineWire};
use super::error::ConfigError;
use super::schedule::{Schedule, ScheduleWire};
use super::storage::{Cloud, Storage, StorageWire};
use super::webhook_url::WebhookUrl;
use crate::campaign_monitor::{ConsentToTrack, FieldType, MAX_IMPORT_BATCH};

/// The whole file, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct PipelineWire {
    /// What this export is for, shown in listings.
    description: Option<String>,
    source: SourceWire,
    /// Named SQL queries, each registered as a view in order.
    #[serde(default)]
    segment: Vec<SegmentWire>,
    destination: DestinationWire,
    mapping: MappingWire,
    #[serde(default)]
    options: OptionsWire,
    /// Where the queries run (in process unless it names a Ballista scheduler).
    #[serde(default)]
    engine: EngineWire,
    /// When `cm-export schedule` runs it.
    schedule: Option<ScheduleWire>,
    /// Where a failed or cancelled run posts its summary (else the connection's).
    alert_webhook: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct SourceWire {
    /// A `.parquet` file, a folder (Hive partitions become columns) or a glob, relative to
    /// the pipeline file.
    path: String,
    /// The table name segments query. Default `profiles`.
    table: Option<String>,
    /// How to reach a snapshot in an object store.
    storage: Option<StorageWire>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct SegmentWire {
    name: String,
    /// The query, inline.
    sql: Option<String>,
    /// Or a file holding it, relative to the pipeline file.
    sql_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct DestinationWire {
    /// A connection name from `connections.toml`.
    connection: String,
    /// The Campaign Monitor list id.
    list_id: String,
    /// Which segments to send (their union). Default: all.
    segments: Option<Vec<String>>,
    /// `upsert` (default), `changes` or `mirror`.
    mode: Option<String>,
    /// Mirror only: `delete` (default) or `unsubscribe`.
    removal: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct MappingWire {
    /// The column holding the email address. Required.
    email: String,
    /// The column holding the subscriber's name.
    name: Option<String>,
    /// `Yes`, `No`, `Unchanged` (default), or `{ column = "c" }`. Read as a plain value and
    /// checked by hand: serde's untagged enums answer a typo with "did not match any variant"
    /// and drop unknown keys inside the table.
    consent_to_track: Option<toml::Value>,
    /// Campaign Monitor custom field name or key -> a column (a Text field), or
    /// `{ column, type, options }`. Read as plain values and checked by hand, as consent is.
    #[serde(default)]
    custom_fields: BTreeMap<String, toml::Value>,
    /// A column that finds the row again (a customer id): carried into every rejects row
    /// and into `plan`'s samples; never sent.
    key: Option<String>,
    /// The column holding the subscriber's mobile number, in international form.
    mobile_number: Option<String>,
    /// As `consent-to-track`; absent: no SMS consent is sent.
    consent_to_send_sms: Option<toml::Value>,
    /// `skip` (default): a null leaves the list's value as it is; `clear`: blanks it.
    nulls: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct OptionsWire {
    /// Subscribers per import call, 1..=1000. Default 1000.
    batch_size: Option<i64>,
    /// Import calls in flight when sending starts, 1..=64. Default 8.
    concurrency: Option<i64>,
    /// The most import calls in flight the run may rise to, `concurrency`..=64. Default 64.
    max_concurrency: Option<i64>,
    /// The contract cap: an export over it sends nothing. Default 1,000,000.
    max_profiles: Option<i64>,
    /// Re-add people who unsubscribed or were deleted. Default false.
    resubscribe: Option<bool>,
    /// Create mapped custom fields the list lacks (and options a multi-select field
    /// lacks) before sending. Default false: the run stops and names them.
    create_missing_fields: Option<bool>,
    /// Mirror only: at most this many removals per run, `N` or `"P%"`. Default `"10%"`.
    max_removals: Option<toml::Value>,
}

pub const DEFAULT_TABLE: &str = "profiles";
pub const DEFAULT_BATCH_SIZE: usize = MAX_IMPORT_BATCH;
pub const DEFAULT_CONCURRENCY: usize = 8;
pub const MAX_CONCURRENCY: usize = 64;
pub const DEFAULT_MAX_PROFILES: u64 = 1_000_000;

/// A checked export definition.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// The file name without `.toml`.
    pub name: String,
    pub file: PathBuf,
    pub description: Option<String>,
    pub source: Source,
    pub segments: Vec<Segment>,
    pub destination: Destination,
    pub mapping: Mapping,
    pub options: Options,
    pub engine: Engine,
    pub schedule: Option<Schedule>,
    pub alert_webhook: Option<WebhookUrl>,
}

#[derive(Debug, Clone)]
pub struct Source {
    /// Resolved against the pipeline's folder, or a URL (`s3://`, `az://`, `gs://`, ...).
    pub path: String,
    pub table: String,
    /// The object store `path` names, if it is a URL.
    pub cloud: Option<Cloud>,
    pub storage: Storage,
}

#[derive(Debug, Clone)]
pub struct Segment {
    pub name: String,
    pub sql: String,
}

#[derive(Debug, Clone)]
pub struct Destination {
    pub connection: String,
    pub list_id: String,
    /// Never empty.
    pub segments: Vec<String>,
    pub mode: Mode,
}

/// How the list follows the segment across runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Every run sends every member; nothing is tracked or removed.
    Upsert,
    /// Only members new to this export or whose mapped values changed are sent.
    Changes,
    /// As `Changes`, and members this export sent that left the segment are removed.
    Mirror(Removal),
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Upsert => "upsert",
            Mode::Changes => "changes",
            Mode::Mirror(_) => "mirror",
        }
    }

    /// Whether runs keep the synced state (what this export has on the list).
    pub fn tracks(self) -> bool {
        self != Mode::Upsert
    }
}

/// How mirror takes a member off the list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// To the Deleted state: reversible, the member can be imported again.
    Delete,
    /// Unsubscribed: the member may be suppressed and is not re-added without `resubscribe`.
    Unsubscribe,
}

/// The most removals one mirror run may make.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MaxRemovals {
    Count(u64),
    /// Per cent of the members this export has on the list.
    Percent(f64),
}

impl MaxRemovals {
    /// The bound for a list holding `members` of this export's members.
    pub fn of(self, members: u64) -> u64 {
        match self {
            MaxRemovals::Count(n) => n,
            MaxRemovals::Percent(p) => (members as f64 * p / 100.0).floor() as u64,
        }
    }
}

impl std::fmt::Display for MaxRemovals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MaxRemovals::Count(n) => write!(f, "{n}"),
            MaxRemovals::Percent(p) => write!(f, "{p}%"),
        }
    }
}

pub const DEFAULT_MAX_REMOVALS: MaxRemovals = MaxRemovals::Percent(10.0);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Consent {
    Constant(ConsentToTrack),
    Column(String),
}

#[derive(Debug, Clone)]
pub struct Mapping {
    pub email: String,
    pub name: Option<String>,
    pub consent: Consent,
    /// Ordered by key.
    pub custom_fields: Vec<FieldMapping>,
    /// The column that finds a rejected row again; never sent.
    pub key: Option<String>,
    pub mobile_number: Option<String>,
    /// `None`: the subscriber's SMS consent is not sent.
    pub sms_consent: Option<Consent>,
    pub nulls: Nulls,
}

/// A custom field and the column that fills it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldMapping {
    /// The field's name or key on the list, as the mapping writes it.
    pub key: String,
    pub column: String,
    /// `None` for a plain `Key = "column"`: the field keeps whatever type the list gave it
    /// (its values go as text, as they always did), and is created as Text.
    pub field_type: Option<FieldType>,
    /// For multi-select fields: the options the list must have (`create-missing-fields`
    /// adds those it lacks).
    pub options: Vec<String>,
    /// MultiSelectMany: what separates the values in the column's text.
    pub delimiter: Option<String>,
}

impl FieldMapping {
    /// What a plain `Key = "column"` maps: no type stated.
    pub fn plain(key: &str, column: &str) -> Self {
        Self {
            key: key.to_owned(),
            column: column.to_owned(),
            field_type: None,
            options: Vec::new(),
            delimiter: None,
        }
    }

    /// The type the field is created with when the list lacks it.
    pub fn created_as(&self) -> FieldType {
        self.field_type.unwrap_or(FieldType::Text)
    }
}

/// What a null custom field value does to the list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Nulls {
    /// Leaves the list's value as it is (the field is not sent).
    #[default]
    Skip,
    /// Blanks the list's value (the API's `Clear`).
    Clear,
}

impl Mapping {
    /// Every column the mapping reads, each once, email first.
    pub fn columns(&self) -> Vec<&str> {
        let mut columns = vec![self.email.as_str()];
        columns.extend(self.name.as_deref());
        if let Consent::Column(c) = &self.consent {
            columns.push(c);
        }
        columns.extend(self.mobile_number.as_deref());
        if let Some(Consent::Column(c)) = &self.sms_consent {
            columns.push(c);
        }
        columns.extend(self.custom_fields.iter().map(|f| f.column.as_str()));
        columns.extend(self.key.as_deref());
        let mut seen = HashSet::new();
        columns.retain(|c| seen.insert(*c));
        columns
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    pub batch_size: NonZeroUsize,
    /// Imports in flight at the start; the run raises it while answers keep up...
    pub concurrency: NonZeroUsize,
    /// ... up to this.
    pub max_concurrency: NonZeroUsize,
    pub max_profiles: u64,
    pub resubscribe: bool,
    pub create_missing_fields: bool,
    pub max_removals: MaxRemovals,
}

impl Pipeline {
    /// Reads and checks `path`, and the SQL files it names.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Checks a definition whose text is already read; `path` places relative paths.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let wire: PipelineWire = toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(source),
        })?;
        let invalid = |key: &str, message: String| ConfigError::invalid(path, key, message);
        let dir = path.parent().unwrap_or(Path::new("."));
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| invalid("file name", "must be NAME.toml with a UTF-8 name".into()))?
            .to_owned();

        if wire.source.path.trim().is_empty() {
            return Err(invalid(
                "source.path",
                "is empty; name a Parquet file, folder or glob".into(),
            ));
        }
        let source_path = if Path::new(&wire.source.path).is_absolute() || wire.source.path.contains("://") {
            wire.source.path.clone()
        } else {
            dir.join(&wire.source.path).to_string_lossy().into_owned()
        };
        let cloud = Cloud::of(&wire.source.path)
            .transpose()
            .map_err(|message| invalid("source.path", message))?;
        let storage = Storage::check(wire.source.storage.unwrap_or_default(), cloud)
            .map_err(|(key, message)| invalid(&key, message))?;
        let table = wire.source.table.unwrap_or_else(|| DEFAULT_TABLE.to_owned());
        if !is_identifier(&table) {
            return Err(invalid(
                "source.table",
                format!("`{table}` is not a plain table name (letters, digits, `_`, not starting with a digit)"),
            ));
        }

        if wire.segment.is_empty() {
            return Err(invalid(
                "segment",
                "is missing; add at least one [[segment]] with `name` and `sql`".into(),
            ));
        }
        let mut segments = Vec::with_capacity(wire.segment.len());
        let mut names = HashSet::new();
        for (i, segment) in wire.segment.into_iter().enumerate() {
            let key = format!("segment[{i}]");
            if segment.name.trim().is_empty() {
                return Err(invalid(&format!("{key}.name"), "is empty".into()));
            }
            if segment.name.eq_ignore_ascii_case(&table) {
                return Err(invalid(
                    &format!("{key}.name"),
                    format!("`{}` is the source table's name", segment.name),
                ));
            }
            if !names.insert(segment.name.to_ascii_lowercase()) {
                return Err(invalid(
                    &format!("{key}.name"),
                    format!("`{}` is defined twice", segment.name),
                ));
            }
            let sql = match (segment.sql, segment.sql_file) {
                (Some(sql), None) => sql,
                (None, Some(file)) => {
                    let file = dir.join(file);
                    std::fs::read_to_string(&file).map_err(|e| {
                        invalid(
                            &format!("{key}.sql-file"),
                            format!("`{}` cannot be read: {e}", file.display()),
                        )
                    })?
                }
                (Some(_), Some(_)) => {
                    return Err(invalid(
                        &key,
                        format!("segment `{}` has both `sql` and `sql-file`; keep one", segment.name),
                    ));
                }
                (None, None) => {
                    return Err(invalid(
                        &key,
                        format!("segment `{}` needs `sql` or `sql-file`", segment.name),
                    ));
                }
            };
            if sql.trim().is_empty() {
                return Err(invalid(&key, format!("segment `{}` has an empty query", segment.name)));
            }
            segments.push(Segment {
                name: segment.name,
                sql,
            });
        }

        let destination = wire.destination;
        if destination.list_id.trim().is_empty() {
            return Err(invalid("destination.list-id", "is empty".into()));
        }
        if destination.connection.trim().is_empty() {
            return Err(invalid("destination.connection", "is empty".into()));
        }
        let chosen = match destination.segments {
            None => segments.iter().map(|s| s.name.clone()).collect(),
            Some(chosen) if chosen.is_empty() => {
                return Err(invalid(
                    "destination.segments",
                    "is empty; leave it out to send every segment".into(),
                ));
            }
            Some(chosen) => {
                for name in &chosen {
                    if !segments.iter().any(|s| &s.name == name) {
                        let known: Vec<_> = segments.iter().map(|s| format!("`{}`", s.name)).collect();
                        return Err(invalid(
                            "destination.segments",
                            format!(
                                "names `{name}`, which is not a segment here (segments: {})",
                                known.join(", ")
                            ),
                        ));
                    }
                }
                chosen
            }
        };

        let mapping = wire.mapping;
        if mapping.email.trim().is_empty() {
            return Err(invalid(
                "mapping.email",
                "is empty; name the column holding the address".into(),
            ));
        }
        let consent =
            consent(mapping.consent_to_track).map_err(|message| invalid("mapping.consent-to-track", message))?;
        let mut custom_fields = Vec::with_capacity(mapping.custom_fields.len());
        for (key, value) in mapping.custom_fields {
            if key.trim().is_empty() || key.starts_with('[') {
                return Err(invalid(
                    "mapping.custom-fields",
                    format!("key `{key}`: write the field's key without brackets"),
                ));
            }
            let at = format!("mapping.custom-fields.{key}");
            custom_fields.push(field_mapping(&key, value).map_err(|message| invalid(&at, message))?);
        }
        if mapping.mobile_number.as_deref().is_some_and(|k| k.trim().is_empty()) {
            return Err(invalid(
                "mapping.mobile-number",
                "names no column; name the column holding mobile numbers, or leave the key out".into(),
            ));
        }
        let sms_consent = mapping
            .consent_to_send_sms
            .map(|value| self::consent(Some(value)))
            .transpose()
            .map_err(|message| invalid("mapping.consent-to-send-sms", message))?;
        let nulls = match mapping.nulls.as_deref() {
            None | Some("skip") => Nulls::Skip,
            Some("clear") => Nulls::Clear,
            Some(other) => {
                return Err(invalid(
                    "mapping.nulls",
                    format!(
                        "is `{other}`; write `skip` (a null leaves the list's value) or `clear` (a null blanks it)"
                    ),
                ));
            }
        };
        if mapping.key.as_deref().is_some_and(|k| k.trim().is_empty()) {
            return Err(invalid(
                "mapping.key",
                "names no column; name the column that identifies a row (a customer id), or leave the key out".into(),
            ));
        }

        let options = wire.options;
        let batch_size = bounded(
            path,
            "options.batch-size",
            options.batch_size,
            DEFAULT_BATCH_SIZE,
            MAX_IMPORT_BATCH,
        )?;
        let concurrency = bounded(
            path,
            "options.concurrency",
            options.concurrency,
            DEFAULT_CONCURRENCY,
            MAX_CONCURRENCY,
        )?;
        let max_concurrency = bounded(
            path,
            "options.max-concurrency",
            options.max_concurrency,
            MAX_CONCURRENCY,
            MAX_CONCURRENCY,
        )?;
        if max_concurrency < concurrency {
            return Err(ConfigError::invalid(
                path,
                "options.max-concurrency",
                format!(
                    "is {max_concurrency}, below options.concurrency ({concurrency}); raise it or lower options.concurrency"
                ),
            ));
        }
        let max_profiles = match options.max_profiles {
            None => DEFAULT_MAX_PROFILES,
            Some(n) if n >= 1 => n as u64,
            Some(n) => {
                return Err(invalid(
                    "options.max-profiles",
                    format!("is {n}; it must be at least 1"),
                ));
            }
        };

        let mode = mode(destination.mode.as_deref(), destination.removal.as_deref())
            .map_err(|(key, message)| invalid(key, message))?;
        let max_removals = match (options.max_removals, mode) {
            (None, _) => DEFAULT_MAX_REMOVALS,
            (Some(value), Mode::Mirror(_)) => {
                max_removals(value).map_err(|message| invalid("options.max-removals", message))?
            }
            (Some(_), _) => {
                return Err(invalid(
                    "options.max-removals",
                    format!(
                        "only applies to `destination.mode = \"mirror\"` (this export's mode is `{}`); remove it or set the mode",
                        mode.as_str()
                    ),
                ));
            }
        };

        let engine = Engine::check(wire.engine).map_err(|message| invalid("engine.ballista", message))?;
        engine
            .reads(cloud)
            .map_err(|message| invalid("engine.ballista", message))?;
        let schedule = wire.schedule.map(|s| Schedule::check(path, s)).transpose()?;
        let alert_webhook = wire
            .alert_webhook
            .map(|text| WebhookUrl::parse(&text).map_err(|why| invalid("alert-webhook", why)))
            .transpose()?;

        Ok(Pipeline {
            name,
            file: path.to_owned(),
            description: wire.description,
            source: Source {
                path: source_path,
                table,
                cloud,
                storage,
            },
            segments,
            destination: Destination {
                connection: destination.connection,
                list_id: destination.list_id.trim().to_owned(),
                segments: chosen,
                mode,
            },
            mapping: Mapping {
                email: mapping.email,
                name: mapping.name,
                consent,
                custom_fields,
                key: mapping.key,
                mobile_number: mapping.mobile_number,
                sms_consent,
                nulls,
            },
            options: Options {
                batch_size,
                concurrency,
                max_concurrency,
                max_profiles,
                resubscribe: options.resubscribe.unwrap_or(false),
                create_missing_fields: options.create_missing_fields.unwrap_or(false),
                max_removals,
            },
            engine,
            schedule,
            alert_webhook,
        })
    }

    /// The folder the pipeline file is in.
    pub fn dir(&self) -> &Path {
        self.file.parent().unwrap_or(Path::new("."))
    }
}

/// `consent-to-track`: a constant, or a table holding exactly `column`.
fn consent(value: Option<toml::Value>) -> Result<Consent, String> {
    const FORMS: &str = "write `Yes`, `No`, `Unchanged` or `{ column = \"NAME\" }`";
    match value {
        None => Ok(Consent::Constant(ConsentToTrack::Unchanged)),
        Some(toml::Value::String(text)) => ConsentToTrack::parse(&text)
            .map(Consent::Constant)
            .ok_or_else(|| format!("`{text}` is not Yes, No or Unchanged; {FORMS}")),
        Some(toml::Value::Table(table)) => {
            if let Some(unknown) = table.keys().find(|k| *k != "column") {
                return Err(format!("has an unknown key `{unknown}`; {FORMS}"));
            }
            match table.get("column") {
                Some(toml::Value::String(column)) if !column.trim().is_empty() => Ok(Consent::Column(column.clone())),
                Some(_) => Err(format!("`column` must name a column; {FORMS}")),
                None => Err(format!("is an empty table; {FORMS}")),
            }
        }
        Some(other) => Err(format!("is a {}; {FORMS}", other.type_str())),
    }
}

/// One `custom-fields` entry: `"column"` (Text) or `{ column, type, options }`.
fn field_mapping(key: &str, value: toml::Value) -> Result<FieldMapping, String> {
    const FORMS: &str = "write `\"column\"` or `{ column = \"c\", type = \"Number\" }`";
    let names = || FieldType::ALL.map(FieldType::as_str).join(", ");
    let column = |value: Option<&toml::Value>| match value {
        Some(toml::Value::String(column)) if !column.trim().is_empty() => Ok(column.clone()),
        Some(_) => Err(format!("`column` must name a column; {FORMS}")),
        None => Err(format!("names no column; {FORMS}")),
    };
    let table = match value {
        toml::Value::String(text) => return Ok(FieldMapping::plain(key, &column(Some(&toml::Value::String(text)))?)),
        toml::Value::Table(table) => table,
        other => return Err(format!("is a {}; {FORMS}", other.type_str())),
    };
    if let Some(unknown) = table
        .keys()
        .find(|k| !["column", "type", "options", "delimiter"].contains(&k.as_str()))
    {
        return Err(format!(
            "has an unknown key `{unknown}`; the keys are `column`, `type`, `options` and `delimiter`"
        ));
    }
    let field_type = match table.get("type") {
        None => None,
        Some(toml::Value::String(name)) => Some(
            FieldType::parse(name)
                .ok_or_else(|| format!("`type` is `{name}`, not a Campaign Monitor field type ({})", names()))?,
        ),
        Some(other) => return Err(format!("`type` is a {}; write one of {}", other.type_str(), names())),
    };
    let options = match table.get("options") {
        None => Vec::new(),
        Some(_) if !field_type.is_some_and(FieldType::is_multi_select) => {
            return Err(format!(
                "has `options`, which only MultiSelectOne and MultiSelectMany fields take (this one is {})",
                field_type.map_or("not typed", FieldType::as_str)
            ));
        }
        Some(toml::Value::Array(items)) => {
            let mut options = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    toml::Value::String(option) if !option.trim().is_empty() => {
                        if !options.contains(option) {
                            options.push(option.clone());
                        }
                    }
                    _ => return Err("`options` must be a list of non-empty strings".into()),
                }
            }
            options
        }
        Some(_) => return Err("`options` must be a list of non-empty strings".into()),
    };
    let delimiter = match table.get("delimiter") {
        None => None,
        Some(toml::Value::String(d)) if !d.is_empty() && field_type == Some(FieldType::MultiSelectMany) => {
            Some(d.clone())
        }
        Some(_) => {
            return Err(
                "`delimiter` is a non-empty string, and only MultiSelectMany fields take one (the values of a \
                 text column are split on it)"
                    .into(),
            );
        }
    };
    Ok(FieldMapping {
        key: key.to_owned(),
        column: column(table.get("column"))?,
        field_type,
        options,
        delimiter,
    })
}

/// `destination.mode` and `destination.removal`; `Err((key, message))`.
fn mode(mode: Option<&str>, removal: Option<&str>) -> Result<Mode, (&'static str, String)> {
    let removal = match removal {
        None => None,
        Some("delete") => Some(Removal::Delete),
        Some("unsubscribe") => Some(Removal::Unsubscribe),
        Some(other) => {
            return Err((
                "destination.removal",
                format!("is `{other}`; write `delete` (reversible) or `unsubscribe`"),
            ));
        }
    };
    match (mode.unwrap_or("upsert"), removal) {
        ("mirror", removal) => Ok(Mode::Mirror(removal.unwrap_or(Removal::Delete))),
        (other @ ("upsert" | "changes"), Some(_)) => Err((
            "destination.removal",
            format!("only applies to `mode = \"mirror\"` (this export's mode is `{other}`); remove it or set the mode"),
        )),
        ("upsert", None) => Ok(Mode::Upsert),
        ("changes", None) => Ok(Mode::Changes),
        (other, _) => Err((
            "destination.mode",
            format!(
                "is `{other}`; write `upsert` (send every member), `changes` (only new or changed members) or `mirror` (as changes, and remove members who left the segment)"
            ),
        )),
    }
}

/// `options.max-removals`: a count (`500`) or a percentage (`"10%"`).
fn max_removals(value: toml::Value) -> Result<MaxRemovals, String> {
    const FORMS: &str = "write a count such as `500` or a percentage such as `\"10%\"`";
    match value {
        toml::Value::Integer(n) if n >= 0 => Ok(MaxRemovals::Count(n as u64)),
        toml::Value::String(text) => text
            .trim()
            .strip_suffix('%')
            .and_then(|p| p.trim().parse::<f64>().ok())
            .filter(|p| (0.0..=100.0).contains(p))
            .map(MaxRemovals::Percent)
            .ok_or_else(|| format!("is `{text}`; {FORMS} (0% to 100%)")),
        other => Err(format!("is `{other}`; {FORMS}")),
    }
}

fn bounded(
    path: &Path,
    key: &str,
    value: Option<i64>,
    default: usize,
    max: usize,
) -> Result<NonZeroUsize, ConfigError> {
    let value = value.unwrap_or(default as i64);
    usize::try_from(value)
        .ok()
        .filter(|v| *v <= max)
        .and_then(NonZeroUsize::new)
        .ok_or_else(|| ConfigError::invalid(path, key, format!("is {value}; it must be between 1 and {max}")))
}

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
description = "VIPs"
[source]
path = "../sample_data/profiles"
[[segment]]
name = "vip"
sql = "SELECT * FROM profiles WHERE lifetime_value > 1000"
[[segment]]
name = "vip-ro"
sql = "SELECT * FROM vip WHERE country = 'RO'"
[destination]
connection = "marketing"
list-id = "a58ee1d3039b8bec838e6d1482a8a965"
segments = ["vip-ro"]
[mapping]
email = "email"
name = "full_name"
consent-to-track = "yes"
custom-fields = { City = "city", Tier = "loyalty_tier" }
[options]
batch-size = 500
"#;

    fn parse(text: &str) -> Result<Pipeline, ConfigError> {
        Pipeline::parse(Path::new("pipelines/vip.toml"), text)
    }

    fn error(text: &str) -> String {
        let err = parse(text).unwrap_err();
        let mut message = err.to_string();
        if let Some(source) = std::error::Error::source(&err) {
            message = format!("{message}: {source}");
        }
        message
    }

    #[test]
    fn reads_a_full_definition() {
        let p = parse(GOOD).unwrap();
        assert_eq!(p.name, "vip");
        assert_eq!(p.source.path, "pipelines/../sample_data/profiles");
        assert_eq!(p.source.table, "profiles");
        assert_eq!(p.destination.segments, vec!["vip-ro"]);
        assert_eq!(p.mapping.consent, Consent::Constant(ConsentToTrack::Yes));
        assert_eq!(p.mapping.custom_fields[0], FieldMapping::plain("City", "city"));
        assert_eq!(p.mapping.columns(), vec!["email", "full_name", "city", "loyalty_tier"]);
        assert_eq!(p.mapping.key, None);
        assert_eq!(p.options.batch_size.get(), 500);
        assert_eq!(p.options.concurrency.get(), DEFAULT_CONCURRENCY);
        assert_eq!(p.options.max_profiles, 1_000_000);
        assert!(!p.options.resubscribe);
        assert!(p.schedule.is_none() && p.alert_webhook.is_none());
    }

    #[test]
    fn a_key_column_is_read_too_and_must_name_one() {
        let keyed = GOOD.replace("[options]", "key = \"customer_id\"\n[options]");
        let p = parse(&keyed).unwrap();
        assert_eq!(p.mapping.key.as_deref(), Some("customer_id"));
        assert_eq!(p.mapping.columns().last(), Some(&"customer_id"));
        let blank = GOOD.replace("[options]", "key = \" \"\n[options]");
        assert!(
            error(&blank).contains("`mapping.key` names no column"),
            "{}",
            error(&blank)
        );
    }

    #[test]
    fn typed_custom_fields_and_their_mistakes() {
        let typed = GOOD
            .replace(
                "custom-fields = { City = \"city\", Tier = \"loyalty_tier\" }",
                "custom-fields = { City = \"city\", Age = { column = \"age\", type = \"Number\" }, \
             Tier = { column = \"loyalty_tier\", type = \"MultiSelectOne\", options = [\"bronze\", \"gold\"] } }\n\
             [options]\ncreate-missing-fields = true",
            )
            .replace("[options]\nbatch-size", "batch-size");
        let p = parse(&typed).unwrap();
        assert!(p.options.create_missing_fields);
        let fields = &p.mapping.custom_fields;
        assert_eq!(fields[0].field_type, Some(FieldType::Number));
        assert_eq!((fields[0].key.as_str(), fields[0].column.as_str()), ("Age", "age"));
        assert_eq!(fields[1], FieldMapping::plain("City", "city"));
        assert_eq!(fields[2].field_type, Some(FieldType::MultiSelectOne));
        assert_eq!(fields[2].options, ["bronze", "gold"]);

        let with = |entry: &str| {
            error(&GOOD.replace(
                "custom-fields = { City = \"city\", Tier = \"loyalty_tier\" }",
                &format!("custom-fields = {{ Age = {entry} }}"),
            ))
        };
        assert!(
            with("{ column = \"age\", type = \"Integer\" }")
                .contains("`mapping.custom-fields.Age` `type` is `Integer`, not a Campaign Monitor field type (Text, Number, Date, MultiSelectOne, MultiSelectMany, Country, USState)"),
            "{}",
            with("{ column = \"age\", type = \"Integer\" }")
        );
        assert!(
            with("{ column = \"age\", type = \"Number\", options = [\"1\"] }")
                .contains("only MultiSelectOne and MultiSelectMany")
        );
        assert!(with("{ type = \"Number\" }").contains("names no column"));
        assert!(with("{ column = \"age\", kind = \"Number\" }").contains("unknown key `kind`"));
        assert!(
            with("{ column = \"t\", type = \"MultiSelectOne\", options = [1] }").contains("list of non-empty strings")
        );
        assert!(with("3").contains("is a integer"));
    }

    #[test]
    fn schedule_and_alert_webhook() {
        let text = format!(
            "alert-webhook = \"https://hooks.example.com/T/B/secret\"\n{GOOD}\n[schedule]\ncron = \"0 3 * * *\"\ntimezone = \"Europe/Bucharest\"\nenabled = false\n"
        );
        let p = parse(&text).unwrap();
        let schedule = p.schedule.unwrap();
        assert_eq!(schedule.expression, "0 3 * * *");
        assert_eq!(schedule.timezone, chrono_tz::Europe::Bucharest);
        assert!(!schedule.enabled);
        assert_eq!(p.alert_webhook.unwrap().to_string(), "https://hooks.example.com/…");
        let message = error(&format!("{GOOD}\n[schedule]\ncron = \"0 3 * *\"\n"));
        assert!(
            message.contains("pipelines/vip.toml") && message.contains("schedule.cron"),
            "{message}"
        );
        let message = error(&format!("{GOOD}\n[schedule]\ncron = \"0 3 * * *\"\nenable = true\n"));
        assert!(message.contains("enable"), "{message}");
        let message = error(&format!("alert-webhook = \"http://hooks.example.com/x\"\n{GOOD}"));
        assert!(message.contains("`alert-webhook` uses plain http"), "{message}");
    }

    #[test]
    fn unknown_keys_are_named() {
        let text = GOOD.replace("batch-size = 500", "batchsize = 500");
        let message = error(&text);
        assert!(message.contains("pipelines/vip.toml"), "{message}");
        assert!(message.contains("batchsize"), "{message}");
        let message = error(&GOOD.replace("[mapping]", "[mapping]\nemali = \"x\""));
        assert!(message.contains("emali"), "{message}");
    }

    #[test]
    fn bounds_and_required_keys() {
        for (from, to, needle) in [
            ("batch-size = 500", "batch-size = 0", "options.batch-size` is 0"),
            ("batch-size = 500", "batch-size = 1001", "between 1 and 1000"),
            ("batch-size = 500", "concurrency = 0", "options.concurrency"),
            (
                "batch-size = 500",
                "concurrency = 16\nmax-concurrency = 12",
                "`options.max-concurrency` is 12, below options.concurrency (16)",
            ),
            ("batch-size = 500", "max-concurrency = 65", "between 1 and 64"),
            ("batch-size = 500", "max-profiles = -1", "options.max-profiles"),
            ("email = \"email\"\n", "", "missing field `email`"),
            (
                "consent-to-track = \"yes\"",
                "consent-to-track = \"maybe\"",
                "`maybe` is not Yes, No or Unchanged",
            ),
            (
                "consent-to-track = \"yes\"",
                "consent-to-track = { colum = \"consent\" }",
                "`mapping.consent-to-track` has an unknown key `colum`; write `Yes`, `No`, `Unchanged` or `{ column = \"NAME\" }`",
            ),
            (
                "consent-to-track = \"yes\"",
                "consent-to-track = { column = \"consent\", default = \"Yes\" }",
                "unknown key `default`",
            ),
            (
                "consent-to-track = \"yes\"",
                "consent-to-track = true",
                "`mapping.consent-to-track` is a boolean",
            ),
            ("segments = [\"vip-ro\"]", "segments = [\"vip-r0\"]", "names `vip-r0`"),
            ("name = \"vip-ro\"", "name = \"vip\"", "`vip` is defined twice"),
            (
                "list-id = \"a58ee1d3039b8bec838e6d1482a8a965\"",
                "list-id = \" \"",
                "destination.list-id",
            ),
        ] {
            let text = GOOD.replace(from, to);
            assert_ne!(text, GOOD, "{from}");
            let message = error(&text);
            assert!(message.contains(needle), "{needle}: {message}");
        }
    }

    #[test]
    fn sync_modes_removals_and_their_bound() {
        let p = parse(GOOD).unwrap();
        assert_eq!(p.destination.mode, Mode::Upsert);
        assert_eq!(p.options.max_removals, MaxRemovals::Percent(10.0));
        let mirror = |extra: &str, options: &str| {
            GOOD.replace("segments = [\"vip-ro\"]", &format!("segments = [\"vip-ro\"]\n{extra}"))
                .replace("batch-size = 500", &format!("batch-size = 500\n{options}"))
        };
        let p = parse(&mirror("mode = \"mirror\"", "max-removals = \"2.5%\"")).unwrap();
        assert_eq!(p.destination.mode, Mode::Mirror(Removal::Delete));
        assert_eq!(p.options.max_removals.of(1000), 25);
        let p = parse(&mirror(
            "mode = \"mirror\"\nremoval = \"unsubscribe\"",
            "max-removals = 40",
        ))
        .unwrap();
        assert_eq!(p.destination.mode, Mode::Mirror(Removal::Unsubscribe));
        assert_eq!(p.options.max_removals.of(1000), 40);
        assert_eq!(
            parse(&mirror("mode = \"changes\"", "")).unwrap().destination.mode,
            Mode::Changes
        );
        for (extra, options, needle) in [
            ("mode = \"sync\"", "", "`destination.mode` is `sync`; write `upsert`"),
            (
                "mode = \"changes\"\nremoval = \"delete\"",
                "",
                "`destination.removal` only applies to `mode = \"mirror\"`",
            ),
            (
                "mode = \"mirror\"\nremoval = \"erase\"",
                "",
                "`destination.removal` is `erase`",
            ),
            (
                "",
                "max-removals = 5",
                "`options.max-removals` only applies to `destination.mode = \"mirror\"`",
            ),
            (
                "mode = \"mirror\"",
                "max-removals = \"ten\"",
                "`options.max-removals` is `ten`",
            ),
            ("mode = \"mirror\"", "max-removals = \"120%\"", "0% to 100%"),
            (
                "mode = \"mirror\"",
                "max-removals = -1",
                "`options.max-removals` is `-1`",
            ),
        ] {
            let message = error(&mirror(extra, options));
            assert!(message.contains(needle), "{needle}: {message}");
        }
    }

    #[test]
    fn consent_column_and_defaults() {
        let text = GOOD
            .replace(
                "consent-to-track = \"yes\"",
                "consent-to-track = { column = \"consent\" }",
            )
            .replace("segments = [\"vip-ro\"]\n", "");
        let p = parse(&text).unwrap();
        assert_eq!(p.mapping.consent, Consent::Column("consent".into()));
        assert_eq!(p.destination.segments, vec!["vip", "vip-ro"]);
    }
}
