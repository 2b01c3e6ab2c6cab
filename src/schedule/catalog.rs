//! What the pipelines folder says now: each definition and whether it may run on its
//! schedule. Read again on every reload.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::{Connection, Connections, Pipeline, Schedule};

/// One `*.toml` in the folder, as last read.
#[derive(Debug, Clone)]
pub struct Definition {
    pub file: PathBuf,
    /// The file's text and the SQL of its segments (which may live in `sql-file`s): when
    /// this is the same as at the last read, nothing about the export changed.
    pub signature: String,
    /// The checked definition, or why it cannot be used.
    pub parsed: Result<Pipeline, String>,
}

/// Whether `export`, as defined, may run on its connection beyond what the connections
/// file says (`serve`: whether the role of whoever saved it may use the connection); `Err`
/// says why not.
#[derive(Clone)]
pub struct Permit(pub Arc<PermitFn>);

pub type PermitFn = dyn Fn(&str, &Pipeline, &Connection) -> Result<(), String> + Send + Sync;

impl std::fmt::Debug for Permit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Permit")
    }
}

/// Whether an export runs on its schedule, and if not, why.
#[derive(Debug, Clone)]
pub enum Standing {
    Scheduled(Box<(Pipeline, Connection)>),
    /// No `[schedule]`: it runs when asked.
    OnDemand(Box<(Pipeline, Connection)>),
    Disabled,
    /// The definition does not parse or check; the message says where and how to fix it.
    Broken(String),
    /// Its connection is missing or has no consent, or the permit refuses it; its schedule,
    /// if it has one, still keeps time, and each time says in the history why it did not run.
    Unusable(String, Option<Box<Schedule>>),
}

impl Standing {
    pub fn of(
        name: &str,
        definition: &Definition,
        connections: &Result<Connections, String>,
        permit: Option<&Permit>,
    ) -> Self {
        let pipeline = match &definition.parsed {
            Ok(pipeline) => pipeline,
            Err(error) => return Standing::Broken(error.clone()),
        };
        if pipeline.schedule.as_ref().is_some_and(|s| !s.enabled) {
            return Standing::Disabled;
        }
        let connection = connections.as_ref().map_err(Clone::clone).and_then(|all| {
            all.usable(&pipeline.destination.connection)
                .cloned()
                .map_err(|e| e.to_string())
        });
        let permitted = connection.and_then(|connection| {
            permit.map_or(Ok(()), |permit| (permit.0)(name, pipeline, &connection))?;
            Ok(Box::new((pipeline.clone(), connection)))
        });
        match (permitted, &pipeline.schedule) {
            (Ok(runnable), Some(_)) => Standing::Scheduled(runnable),
            (Ok(runnable), None) => Standing::OnDemand(runnable),
            (Err(why), schedule) => Standing::Unusable(why, schedule.clone().map(Box::new)),
        }
    }

    /// The schedule that keeps time for it, enabled.
    pub fn schedule(&self) -> Option<&Schedule> {
        match self {
            Standing::Scheduled(runnable) => runnable.0.schedule.as_ref(),
            Standing::Unusable(_, schedule) => schedule.as_deref(),
            _ => None,
        }
    }

    /// What a run would use, when it may run.
    pub fn runnable(&self) -> Option<&(Pipeline, Connection)> {
        match self {
            Standing::Scheduled(runnable) | Standing::OnDemand(runnable) => Some(runnable),
            _ => None,
        }
    }
}

/// The folder's definitions by export name. `connections.toml` is not one of them. Each is
/// parsed on every read: a few small files, and an edited `sql-file` must be seen.
pub fn read_definitions(dir: &Path, connections_file: &Path) -> Result<BTreeMap<String, Definition>, std::io::Error> {
    let mut definitions = BTreeMap::new();
    // Once a read, not once a file; a connections file that is gone matches nothing.
    let connections_file = std::fs::canonicalize(connections_file).ok();
    for entry in std::fs::read_dir(dir)? {
        let file = entry?.path();
        let is_toml = file.extension().is_some_and(|e| e == "toml") && file.is_file();
        if !is_toml || (connections_file.is_some() && std::fs::canonicalize(&file).ok() == connections_file) {
            continue;
        }
        let Some(name) = file.file_stem().and_then(|s| s.to_str()).map(str::to_owned) else {
            continue;
        };
        // Gone between the listing and the read: removed.
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        let parsed = Pipeline::parse(&file, &text).map_err(|e| crate::error_text::chain(&e));
        let mut signature = text;
        for segment in parsed.iter().flat_map(|p| &p.segments) {
            signature.push('\0');
            signature.push_str(&segment.sql);
        }
        definitions.insert(
            name,
            Definition {
                file,
                signature,
                parsed,
            },
        );
    }
    Ok(definitions)
}

/// The connections file, or why it cannot be used.
pub fn read_connections(file: &Path) -> Result<Connections, String> {
    Connections::load_or_empty(file).map_err(|e| crate::error_text::chain(&e))
}
